"""The run record: one run's folder, its files and statuses, staging, publishing, claims, the manifest.

The one module that knows how a run is stored; the trainer, the sweep, the reader, the book
and the CLI go through it. A run lives in `results/<profile>/<run-id>/`:

    config.json   its resolved settings
    metrics.csv   one row per epoch
    env.json      versions, device, data source and checksum, and the code fingerprint
    run.ipynb     the executed run notebook (sweeps only), kernel.log its output
    summary.json  the metrics, status and seconds; written last, so it marks the run complete

A sweep builds the folder as `.<run-id>.partial/` and publishes it with one rename, so a
run folder exists only once its run has ended. Before it starts a run, a sweep claims it
with an exclusive lock on `.<run-id>.claim`: the operating system releases the lock when
the holder dies, however it dies, so a dead sweep's claims are taken over by the next.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

from lab2 import PROJECT_ROOT
from lab2.core.atomic import atomic_write, write_json
from lab2.core.config import MODELS, RUN_ID_HASH_LENGTH

RESULTS_ROOT = PROJECT_ROOT / "results"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
ENVIRONMENT_FILE = "env.json"
SUMMARY_FILE = "summary.json"
NOTEBOOK_FILE = "run.ipynb"
KERNEL_LOG = "kernel.log"
MANIFEST_FILE = "manifest.json"
IN_FLIGHT_FILE = "in-flight.json"  # in a snapshot of results: the runs a sweep was executing

OK = "ok"  # trained to its last epoch
DIVERGED = "diverged"  # stopped when its loss ran away (lab2.core.train.DIVERGED_LOSS); keeps the epochs before
FINISHED_STATUSES = (OK, DIVERGED)  # runs that ended as they should: a sweep keeps them
FAILED = "failed"  # ended without metrics; the next sweep tries it again
CORRUPT = "corrupt"  # summary.json is there but does not parse; the next sweep reruns it
MISSING = "missing"  # no run folder (yet)

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
SUMMARY_KEYS = (
    "train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "best_epoch",
    "test_loss", "test_acc", "status", "seconds",
)

RUN_NOTEBOOK = PROJECT_ROOT / "book" / NOTEBOOK_FILE  # the notebook a sweep executes per run
# The code a run's numbers depend on is the lab2 core it imports (and lab2/__init__.py, which
# resolves its public names). The run machinery (lab2.runs), the tools and the book's analysis
# (lab2.report) schedule, measure, store and show runs but compute none of their numbers, so
# editing them leaves runs cached.
FINGERPRINTED_MODULES = ("lab2", "lab2.core")


# A run id as lab2.core.config.run_id makes it: the model and a hex digest. Checked before any id read
# from a file becomes a path, so no manifest or archive entry can point outside results/.
RUN_ID_PATTERN = re.compile(rf"^(?:{'|'.join(MODELS)})-[0-9a-f]{{{RUN_ID_HASH_LENGTH}}}$")


class RecordError(ValueError):
    """A results file that cannot be used (a damaged manifest, a foreign run id); names the file."""


def is_run_id(name: str) -> bool:
    return isinstance(name, str) and RUN_ID_PATTERN.fullmatch(name) is not None


# ---------------------------------------------------------------- folders and statuses


def profile_dir(profile: str, results_root: Path | None = None) -> Path:
    return Path(results_root or RESULTS_ROOT) / profile


def staging_dir(run_dir: Path) -> Path:
    """Where a run is built before it is published: `.<run-id>.partial/` beside it."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.partial"


def is_staging(path: Path) -> bool:
    """Whether a folder entry is the record's own bookkeeping (a staging folder, a claim), not a run: a hidden name."""
    return Path(path).name.startswith(".")


def read_json(path: Path) -> dict:
    """A JSON file of a run as a dict; {} when it is missing or does not parse."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_summary(run_dir: Path) -> dict | None:
    """summary.json of a run; None if there is none; raises ValueError if it does not parse."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ValueError(f"{path}: unreadable ({error})") from None
    try:
        summary = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("status"), str):
        raise ValueError(f"{path}: no status recorded")
    return summary


def run_status(run_dir: Path) -> str:
    """ok, diverged, failed, corrupt (summary.json does not parse) or missing."""
    try:
        summary = read_summary(run_dir)
    except ValueError:
        return CORRUPT
    return MISSING if summary is None else summary["status"]


def summary_path(run_dir: Path) -> Path:
    return Path(run_dir) / SUMMARY_FILE


def summary_stamp(run_dir: Path) -> tuple[int, int] | None:
    """Identifies the summary.json a run folder holds now (inode, mtime): it changes when the run is redone."""
    try:
        stat = summary_path(run_dir).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def published_runs(folder: Path) -> dict[str, tuple[int, int]]:
    """The runs of a profile folder that have ended (staging folders aside), each with its summary_stamp."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    stamps = {run.name: summary_stamp(run) for run in folder.iterdir() if run.is_dir() and not is_staging(run)}
    return {name: stamp for name, stamp in stamps.items() if stamp is not None}


# ---------------------------------------------------------------- writing a run


def failed_summary(error: str, seconds: float) -> dict:
    """The summary of a run that did not finish: status 'failed', the error, no metrics."""
    return {**{key: None for key in SUMMARY_KEYS}, "status": FAILED, "seconds": seconds, "error": error}


def failed_result(error: BaseException, seconds: float):
    """The record of a run that raised."""
    from lab2.core.train import RunResult

    return RunResult([], failed_summary("".join(traceback.format_exception_only(error)).strip(), seconds))


def save_run(out_dir, config, result) -> None:
    """Write config.json, metrics.csv, env.json (with the code fingerprint) and, last, summary.json."""
    out_dir = Path(out_dir)
    write_json(out_dir / CONFIG_FILE, config.to_dict())
    with atomic_write(out_dir / METRICS_FILE) as handle:
        handle.write(",".join(METRIC_COLUMNS) + "\n")
        for row in result.history:
            handle.write(",".join(repr(row[column]) for column in METRIC_COLUMNS) + "\n")
    code = code_fingerprint(imported_code_files())
    write_json(out_dir / ENVIRONMENT_FILE, {**result.environment, "code_fingerprint": code})
    # summary.json marks the run complete, so it is written after everything else.
    write_json(out_dir / SUMMARY_FILE, result.summary)


def check_writable(out_dir: Path) -> str | None:
    """Why a run cannot be written to out_dir (None if it can): a finished run, or no write access."""
    out_dir = Path(out_dir)
    if (out_dir / SUMMARY_FILE).exists():
        return f"{out_dir} already holds a finished run; choose another folder or remove it"
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, so {out_dir} cannot be created"
    try:  # a real write: permission bits do not tell for root, read-only mounts or full disks
        descriptor, probe = tempfile.mkstemp(dir=existing, prefix=".lab2-write-check-")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        return f"{existing} is not writable ({error.strerror}), so {out_dir} cannot be written"
    return None


def stage(run_dir: Path) -> Path:
    """A fresh, empty staging folder for run_dir (the caller holds the run's claim)."""
    staging = staging_dir(run_dir)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def discard(run_dir: Path) -> None:
    """Remove a run's staging folder: a run stopped before it ended leaves nothing behind."""
    shutil.rmtree(staging_dir(run_dir), ignore_errors=True)


def publish(run_dir: Path, seconds: float, error: str | None = None, code: dict | None = None) -> str:
    """Record a failure if there was one, add code fingerprints, then make the run visible in one rename.

    error: why the run failed (None: it ended and wrote its own summary, if it did).
    code: more {file: sha256} for env.json, e.g. the notebook the run executed.
    """
    run_dir = Path(run_dir)
    staging = staging_dir(run_dir)
    staging.mkdir(parents=True, exist_ok=True)
    if code:
        environment = read_json(staging / ENVIRONMENT_FILE)
        if environment:
            environment["code_fingerprint"] = {**environment.get("code_fingerprint", {}), **code}
            try:
                write_json(staging / ENVIRONMENT_FILE, environment)
            except OSError:
                pass  # a full disk: the run keeps env.json as it wrote it (its modules' fingerprint), not lost for this
    if error is None and run_status(staging) in (MISSING, CORRUPT):
        error = f"the run ended without a summary; see {run_dir / KERNEL_LOG}"
    if error is not None:
        write_json(staging / SUMMARY_FILE, failed_summary(error, seconds))
    if run_dir.exists():  # an earlier failed or corrupt attempt, now replaced
        replaced = run_dir.parent / f".{run_dir.name}.replaced"
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(run_dir, replaced)
        os.replace(staging, run_dir)
        shutil.rmtree(replaced, ignore_errors=True)
    else:
        os.replace(staging, run_dir)
    return run_status(run_dir)


# ---------------------------------------------------------------- claims


class Claim:
    """An exclusive lock on one run, held from before it starts until it is published."""

    def __init__(self, path: Path, descriptor: int):
        self.path, self._descriptor = path, descriptor

    def release(self) -> None:
        if self._descriptor is None:
            return
        # Removed while still locked, so a sweep waiting on this file notices it is gone and retries.
        self.path.unlink(missing_ok=True)
        os.close(self._descriptor)
        self._descriptor = None


def claim_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.claim"


def try_claim(run_dir: Path) -> Claim | None:
    """Claim a run for this process; None if another live process holds it."""
    path = claim_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        try:
            current = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n".encode())
            return Claim(path, descriptor)
        os.close(descriptor)  # the holder released and removed it between our open and our lock


def claim_holder(run_dir: Path) -> str:
    """Who holds a run's claim, as the holder wrote it ('host pid N since HH:MM:SS')."""
    try:
        return claim_path(run_dir).read_text().strip() or "another sweep"
    except OSError:
        return "another sweep"


def clean_stale_staging(folder: Path) -> list[Path]:
    """Remove staging folders that no live process is building (left by a sweep that died)."""
    removed = []
    for staging in sorted(Path(folder).glob(".*.partial")):
        run_dir = folder / staging.name[1:-len(".partial")]
        claim = try_claim(run_dir)
        if claim is None:
            continue  # another sweep is building it right now
        try:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
        finally:
            claim.release()
    return removed


def claimed_runs(folder: Path, run_ids) -> dict[str, str]:
    """{run id: holder} of the runs a live process holds a claim on: being executed right now.

    Only looks: an existing claim file is opened read-only and tested with a shared lock, so a
    read-only results folder can be asked too and no claim is ever taken.
    """
    held = {}
    for rid in run_ids:
        path = claim_path(Path(folder) / rid)
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
        except BlockingIOError:
            held[rid] = claim_holder(Path(folder) / rid)
        finally:
            os.close(descriptor)
    return held


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # a published file is never rewritten in place, so a link is a snapshot
    except OSError:
        shutil.copy2(source, target)


def snapshot_profile(profile: str, results_root: Path | None, target_root: Path) -> dict[str, str]:
    """Copy a profile's results as they are now into target_root/<profile>/; returns the runs in flight.

    What a reader of results sees while a sweep works on them: the manifest and each run that
    has ended (its files, summary.json last, taken again if the run was replaced meanwhile),
    never a run half-way. The runs a sweep was executing are written to IN_FLIGHT_FILE.
    """
    source = profile_dir(profile, results_root)
    manifest = load_manifest(profile, results_root)
    target = profile_dir(profile, target_root)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    run_ids = [entry["run_id"] for entry in manifest["runs"]]
    for rid in run_ids:
        run_dir = source / rid
        if run_dir.is_symlink() or not run_dir.is_dir():
            continue  # not a run this folder holds (run ids are checked, links are not followed)
        for _ in range(3):
            stamp = summary_stamp(run_dir)
            if stamp is None:
                break
            copy = target / rid
            shutil.rmtree(copy, ignore_errors=True)
            copy.mkdir()
            files = sorted((p for p in run_dir.iterdir() if p.is_file() and not p.is_symlink()),
                           key=lambda p: p.name == SUMMARY_FILE)
            for path in files:
                _link_or_copy(path, copy / path.name)
            if summary_stamp(run_dir) == stamp:
                break
    write_manifest(target, manifest)
    in_flight = claimed_runs(source, run_ids)
    write_json(target / IN_FLIGHT_FILE, in_flight)
    return in_flight


def runs_in_flight(profile: str, results_root: Path | None = None) -> dict[str, str]:
    """The runs a snapshot found in flight ({} for results that are not a snapshot)."""
    return read_json(profile_dir(profile, results_root) / IN_FLIGHT_FILE)


# ---------------------------------------------------------------- the manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    write_json(Path(folder) / MANIFEST_FILE, manifest)


def read_manifest(path: Path) -> dict:
    """A manifest file, checked: it parses, and every entry has a well-formed run id, experiments and a config.

    Raises RecordError naming the file and the entry, so a damaged or foreign manifest stops
    the book or the sweep before any of its ids is used as a path.
    """
    path = Path(path)
    where = project_path(path)
    try:
        manifest = json.loads(path.read_text())
    except OSError as error:
        raise RecordError(f"{where}: unreadable ({error.strerror})") from None
    except ValueError as error:
        raise RecordError(f"{where}: not valid JSON ({error}); remove it and sweep again to rewrite it") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), list):
        raise RecordError(f"{where}: not a sweep manifest (no list of runs); remove it and sweep again to rewrite it")
    for index, entry in enumerate(manifest["runs"]):
        if not isinstance(entry, dict):
            raise RecordError(f"{where}: runs[{index}] is not a mapping")
        if not is_run_id(entry.get("run_id")):
            raise RecordError(f"{where}: runs[{index}].run_id {entry.get('run_id')!r} is not a run id "
                              f"(a model and {RUN_ID_HASH_LENGTH} hex digits, e.g. mlp-0123456789ab)")
        for key, kind in (("config", dict), ("experiments", list)):
            if not isinstance(entry.get(key), kind):
                raise RecordError(f"{where}: runs[{index}] ({entry['run_id']}) has no {key} "
                                  f"({'a mapping of settings' if kind is dict else 'a list of experiment names'})")
    return manifest


def load_manifest(profile: str, results_root: Path | None = None) -> dict:
    """The profile's planned runs as its last sweep wrote them (checked by read_manifest)."""
    path = profile_dir(profile, results_root) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No results for profile {profile!r}: {path} is missing; "
                                f"run `python -m lab2 sweep --profile {profile}` first")
    manifest = read_manifest(path)
    if "experiments" not in manifest:
        raise RecordError(f"{project_path(path)} was written by an older sweep, without the experiments as params/ "
                          f"declares them; sweep again (`python -m lab2 sweep --profile {profile} --keep-finished` "
                          "executes only the runs that have not finished)")
    return manifest


# ---------------------------------------------------------------- code fingerprints


def imported_code_files() -> list[Path]:
    """The lab2 core modules this process has imported.

    Read from sys.modules after the run rather than from a list or an import walk: lab2
    resolves its public names lazily (lab2/__init__.py), so only what was loaded is
    exactly the code that ran.
    """
    files = []
    for name, module in list(sys.modules.items()):
        if not (name in FINGERPRINTED_MODULES or name.startswith("lab2.core.")):
            continue
        path = getattr(module, "__file__", None)
        if path:
            files.append(Path(path))
    return sorted(files)


def checkout_code_files() -> list[Path]:
    """The code a sweep and its workers must share: lab2 (the book's analysis aside) and the run notebook."""
    report = PROJECT_ROOT / "lab2" / "report"
    return sorted(p for p in (PROJECT_ROOT / "lab2").rglob("*.py") if report not in p.parents) + [RUN_NOTEBOOK]


def project_path(path: Path) -> str:
    """A path relative to the project root when it lies inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def file_sha256(path: Path) -> str | None:
    """sha256 of a source file; of a notebook, of its code cells only. None if it is gone."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError:
        return None
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(content)["cells"]
        except (ValueError, KeyError, TypeError):
            return hashlib.sha256(content).hexdigest()
        code = ["".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                for cell in cells if cell.get("cell_type") == "code"]
        content = json.dumps(code).encode()
    return hashlib.sha256(content).hexdigest()


def code_fingerprint(files) -> dict[str, str]:
    """{project-relative path: sha256} of each file."""
    return {project_path(path): file_sha256(path) for path in files}


def changed_code(recorded: dict | None) -> list[str] | None:
    """The fingerprinted files whose content now differs from what a run recorded; None if it recorded none."""
    if not recorded:
        return None
    return sorted(name for name, digest in recorded.items() if file_sha256(PROJECT_ROOT / name) != digest)


def run_code_changes(run_dir: Path) -> list[str] | None:
    """changed_code for a finished run's env.json."""
    return changed_code(read_json(Path(run_dir) / ENVIRONMENT_FILE).get("code_fingerprint"))
