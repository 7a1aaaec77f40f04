"""Can a code change move a committed number? Checked, not guessed.

A committed run records the commit and a sha256 per file of the code that made it. When
those files differ from the checkout, the provenance page asks whether the difference
matters: it trains the same small configurations (each model at its best setting, smoke
size, on the CPU with one thread) once with the recorded commit's code, unpacked from git,
and once with the checkout's, and compares the seven metrics. Equal numbers mean the change
does not move them for these configurations; different numbers are shown as they are.
"""

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pandas as pd

from lab2 import PROJECT_ROOT
from lab2.core.config import MODELS
from lab2.report.results import METRICS
from lab2.runs import record

# Each model's best setting (the CLI's defaults are the report's best MLP), at smoke size.
SMALL_RUNS = {
    "mlp": ["--model", "mlp", "--hidden", "64"],
    "cnn": ["--model", "cnn", "--dropout-rate", "0", "--batch-size", "100", "--channels", "8"],
}
SMOKE_SIZE = ["--num-epochs", "2", "--train-size", "1000", "--eval-size", "200"]
TIMEOUT_S = 300  # one small run, decode cache included
# Decoded data for older code, apart from the checkout's cache: an older commit may store it
# differently and would take the checkout's for damaged. Kept, so a rebuild decodes nothing.
OLD_CODE_CACHE = PROJECT_ROOT / "data" / "cache" / "code-check"


class CheckError(RuntimeError):
    """A check that could not run (commit not in git, no data); the message says why."""


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
    """The seven metrics of one small run trained with the lab2 package found in `checkout`.

    cache: where that code keeps its decoded data (an older commit may store it differently, so
    it gets a folder of its own); None for the checkout's own.
    """
    environment = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1",
                   **({"LAB2_CACHE": str(cache)} if cache else {})}
    command = [sys.executable, "-m", "lab2", "train", "--out", str(out), "--device", "cpu", "--quiet",
               *SMALL_RUNS[model], *SMOKE_SIZE, *(["--data-dir", data] if data else [])]
    finished = subprocess.run(command, cwd=checkout, env=environment, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    try:  # the summary alone: a run of another commit's code may write its other files otherwise
        summary = record.read_summary(out) if finished.returncode == 0 else None
    except ValueError as error:
        raise CheckError(f"the {model.upper()} run failed: {error}") from None
    if summary is None:
        last = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckError(f"the {model.upper()} run failed: {last.split('. ')[0]}")
    return {metric: summary[metric] for metric in METRICS}


def check_commit(commit: str, models=MODELS, data: str | None = None) -> pd.DataFrame:
    """Per model and metric: the number with the commit's code, with the checkout's, and their difference."""
    commit = commit.removesuffix("-dirty")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lab2-code-check-") as folder:
        folder = Path(folder)
        (folder / "then").mkdir()
        _unpack(commit, folder / "then")
        for model in models:
            then = _train(folder / "then", model, folder / f"then-{model}", data, cache=OLD_CODE_CACHE)
            now = _train(PROJECT_ROOT, model, folder / f"now-{model}", data)
            rows += [{"model": model, "metric": metric, "recorded commit": then[metric], "checkout": now[metric],
                      "difference": now[metric] - then[metric]} for metric in METRICS]
    return pd.DataFrame(rows)


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


def check_changed_runs(runs: pd.DataFrame, environments: pd.DataFrame, data: str | None = None) -> pd.DataFrame:
    """One row per recorded commit of finished runs whose code differs from the checkout: how many
    runs, which files, and the largest difference the small runs show (0: the change moves nothing).

    data: CIFAR-10 for the small runs (find_data)."""
    finished = runs[runs["code_changed"].fillna("").ne("") & runs["code_changed"].ne("unknown")]
    if finished.empty or "git_commit" not in environments.columns:
        return pd.DataFrame(columns=["commit", "runs", "files that differ", "largest difference", "outcome"])
    joined = finished.merge(environments[["run_id", "git_commit"]], on="run_id", how="left")
    rows = []
    for commit, group in joined.groupby("git_commit"):
        files = sorted({name.strip() for value in group["code_changed"] for name in value.split(",") if name.strip()})
        models = tuple(model for model in SMALL_RUNS if model in set(group["model"]))
        try:
            largest = check_commit(commit, models, data)["difference"].abs().max()
            outcome = ("the same numbers: the change does not move them" if largest == 0 else
                       "different numbers: the change can move them")
        except (CheckError, subprocess.TimeoutExpired, OSError) as error:
            largest, outcome = "–", f"not checked: {error}"
        rows.append({"commit": commit, "runs": len(group), "files that differ": ", ".join(files),
                     "largest difference": largest, "outcome": outcome})
    return pd.DataFrame(rows)
