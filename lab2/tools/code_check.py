"""`python -m lab2 code-check`: can a code change move a committed number? Checked by training, not guessed.

A committed run records the commit and a sha256 per file of the code that made it. When those
files differ from the checkout, this command asks whether the difference matters: for each
recorded commit of such runs it trains the same small configurations (each model at its best
setting, smoke size, on the CPU with one thread) once with that commit's code, unpacked from git,
and once with the checkout's (trained once, for every commit), and compares the numbers of their
summaries. Equal numbers mean the change does not move them for these configurations; different
numbers are stored as they are. The verdict goes to the profile's results folder
(lab2.runs.code_verdict), where the book's provenance page reads it: the book itself trains
nothing. Run it when the code a committed run depends on changes; the page says when.
"""

import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from lab2 import PROJECT_ROOT
from lab2.core.data import cache_dir
from lab2.core.summary import SUMMARY_KEYS
from lab2.core.train import git_commit
from lab2.runs import record
from lab2.runs.code_verdict import (CODE_CHECK_FILE, commit_outcome, commits_to_check, make_verdict,
                                    write_verdict)
from lab2.runs.fingerprint import checkout_run_code, code_fingerprint, project_path
from lab2.runs.manifest import load_manifest

# Each model's best setting (the CLI's defaults are the report's best MLP), at smoke size.
SMALL_RUNS = {
    "mlp": ["--model", "mlp", "--hidden", "64"],
    "cnn": ["--model", "cnn", "--dropout-rate", "0", "--batch-size", "100", "--channels", "8"],
}
SMOKE_SIZE = ["--num-epochs", "2", "--train-size", "1000", "--eval-size", "200"]
COMPARED = tuple(key for key in SUMMARY_KEYS if key not in ("status", "seconds"))  # every number but the wall time
TIMEOUT_S = 300  # one small run, decode cache included
# Decoded data for older code, in a folder of its own within the decode cache: an older commit may store
# it differently and would take the checkout's for damaged. Kept, so a later check decodes nothing.
OLD_CODE_CACHE = "code-check"


class CheckError(RuntimeError):
    """A check that cannot run (no results, a commit not in git, a run that fails); the message says why."""


def _unpack(commit: str, into: Path) -> None:
    """The commit's lab2 package and run notebook, from git, into a folder."""
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", "--format=tar", commit, "lab2", "book/run.ipynb"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise CheckError(f"commit {commit[:12]} is not in this clone's git history")
    archive_file = into / "code.tar"
    archive_file.write_bytes(archive.stdout)
    with tarfile.open(archive_file) as tar:
        tar.extractall(into, filter="data")


def _train(checkout: Path, model: str, out: Path, data: str | None, cache: Path | None = None) -> dict:
    """The numbers of one small run's summary (COMPARED), trained with the lab2 package found in `checkout`.

    cache: where that code keeps its decoded data (an older commit may store it differently, so
    it gets a folder of its own); None for the checkout's own.
    """
    environment = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1",
                   **({"LAB2_CACHE": str(cache)} if cache else {})}
    command = [sys.executable, "-m", "lab2", "train", "--out", str(out), "--device", "cpu", "--quiet",
               *SMALL_RUNS[model], *SMOKE_SIZE, *(["--data-dir", data] if data else [])]
    try:
        finished = subprocess.run(command, cwd=checkout, env=environment, capture_output=True, text=True,
                                  timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise CheckError(f"the {model.upper()} run took more than {TIMEOUT_S} s") from None
    try:  # the summary alone: a run of another commit's code may write its other files otherwise
        summary = record.read_summary(out) if finished.returncode == 0 else None
    except ValueError as error:
        raise CheckError(f"the {model.upper()} run failed: {error}") from None
    if summary is None:
        last = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckError(f"the {model.upper()} run failed: {last.split('. ')[0]}")
    return {key: summary[key] for key in COMPARED if key in summary}


def check_commit(commit: str, models, data: str | None, scratch: Path, checkout_runs: dict) -> dict:
    """What the small runs of `models` show with the commit's code against the checkout's: the difference of
    each number and the largest.

    checkout_runs: {model: numbers} of the checkout's small runs, filled as they are trained (once for all commits).
    """
    code = Path(tempfile.mkdtemp(prefix="commit-", dir=scratch))
    _unpack(commit.removesuffix("-dirty"), code)
    differences = []
    for model in models:
        then = _train(code, model, code / f"run-{model}", data, cache=cache_dir() / OLD_CODE_CACHE)
        if model not in checkout_runs:
            checkout_runs[model] = _train(PROJECT_ROOT, model, scratch / f"checkout-{model}", data)
        now = checkout_runs[model]
        differences += [{"model": model, "metric": key, "recorded_commit": then[key], "checkout": now[key],
                         "difference": now[key] - then[key]} for key in COMPARED if key in then and key in now]
    return {"largest_difference": max(abs(row["difference"]) for row in differences), "differences": differences}


def find_data(data_source: str) -> str | None:
    """The data the runs were made from: where the sweep found it, else $LAB2_DATA (relative to the
    project, as the Makefile gives it); None when neither is here (the run then looks in data/)."""
    recorded = Path(data_source.partition(":")[2])
    if recorded.exists():
        return str(recorded)
    given = os.environ.get("LAB2_DATA")
    if given:
        for candidate in (Path(given), PROJECT_ROOT / given):
            if candidate.exists():
                return str(candidate.resolve())
    return None


def code_check(profile: str, results_root: Path | None = None, data_dir: Path | None = None) -> int:
    """Check every recorded commit of the profile's finished runs whose code differs from the checkout, and
    store the verdict in results/<profile>/ (CODE_CHECK_FILE); 0 when every commit could be checked.

    data_dir: CIFAR-10 for the small runs (default: where the sweep found it, find_data).
    Raises CheckError before any training when the profile has no results or its folder cannot be written.
    """
    try:
        manifest = load_manifest(profile, results_root)
    except (FileNotFoundError, record.RecordError) as error:
        raise CheckError(str(error)) from None
    folder = record.profile_dir(profile, results_root)
    problem = record.check_writable(folder)
    if problem:
        raise CheckError(f"the verdict cannot be stored: {problem}")
    to_check = commits_to_check(folder, manifest)
    if not to_check:
        print(f"code-check: no finished run of profile {profile} was made by code that differs from the checkout; "
              "nothing to train")
    data = str(data_dir) if data_dir else find_data(manifest["data_source"])
    checked_code = code_fingerprint(checkout_run_code())  # before training: the code the checkout's runs use
    outcomes, checkout_runs = {}, {}
    with tempfile.TemporaryDirectory(prefix="lab2-code-check-") as scratch:
        for group in to_check:
            started = time.perf_counter()
            try:
                outcomes[group.commit] = check_commit(group.commit, group.models, data, Path(scratch), checkout_runs)
            except (CheckError, OSError) as error:
                outcomes[group.commit] = {"error": str(error)}
            print(f"code-check: commit {group.commit[:12]} (runs: {len(group.runs)}, {', '.join(group.models)}): "
                  f"{commit_outcome(outcomes[group.commit])} ({time.perf_counter() - started:.0f} s)", flush=True)
    write_verdict(folder, make_verdict(profile, time.strftime("%Y-%m-%d %H:%M:%S %Z"), git_commit(), checked_code,
                                       outcomes))
    print(f"code-check: verdict stored in {project_path(folder / CODE_CHECK_FILE)}")
    return 1 if any("error" in outcome for outcome in outcomes.values()) else 0
