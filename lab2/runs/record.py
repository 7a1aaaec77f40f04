"""The run record: one run's folder and its files, and the state a folder is in.

The one module that knows how a run is stored; the sweep, the reader, the book and the CLI go
through it. A run lives in `results/<profile>/<run-id>/`:

    config.json   its resolved settings
    metrics.csv   one row per epoch
    env.json      versions, device, data source and checksum, and the code fingerprint (lab2.runs.fingerprint)
    run.ipynb     the executed run notebook (sweeps only), kernel.log its output
    summary.json  the metrics, status and seconds; written last, so it marks the run complete

A run ends with a status of lab2.core.summary (ok, diverged, failed); a folder can also be
corrupt or missing. Every reader of a run folder (the sweep, the book, unpack-results) goes
through `read_run`, which reads and checks each file once, so a damaged file is found the
same way everywhere: a run that ended as it should (ok, diverged) is corrupt unless
summary.json, config.json, env.json and metrics.csv all parse and agree with each other and
with the folder's name (the run id hashes the config and env.json's data fingerprint;
metrics.csv holds one row per epoch the summary counts, its last row the summary's numbers),
and its run.ipynb, when it has one (a sweep's run does, `lab2 train`'s does not), parses as a
notebook. A failed run is read by its summary alone: it runs again anyway. kernel.log is the
run's console output, kept for people; nothing reads it. Beside the run folders, the entries
with hidden names are the sweep's bookkeeping, never runs: staging folders
(lab2.runs.staging) and claims (lab2.runs.locks). The profile's manifest is
lab2.runs.manifest's, a snapshot of a profile lab2.runs.snapshot's.
"""

import csv
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lab2 import PROJECT_ROOT
from lab2.core.atomic import atomic_write, write_json
from lab2.core.config import MODELS, RUN_ID_HASH_LENGTH, ConfigError, RunConfig, run_id
from lab2.core.summary import DIVERGED, FAILED, FINISHED_STATUSES, OK
from lab2.runs.fingerprint import RUN_NOTEBOOK, changed_code, code_fingerprint, run_code_files

RESULTS_ROOT = PROJECT_ROOT / "results"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
ENVIRONMENT_FILE = "env.json"
SUMMARY_FILE = "summary.json"
NOTEBOOK_FILE = RUN_NOTEBOOK.name  # the run notebook, as the run executed it
KERNEL_LOG = "kernel.log"

# The state of a run folder that is not a status its run ended with (lab2.core.summary).
CORRUPT = "corrupt"  # a file of the run cannot be read or disagrees with the others (read_run); the next sweep reruns it
MISSING = "missing"  # no run folder (yet)

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")

# A run id as lab2.core.config.run_id makes it: the model and a hex digest. Checked before any id read
# from a file becomes a path, so no manifest or archive entry can point outside results/.
RUN_ID_PATTERN = re.compile(rf"^(?:{'|'.join(MODELS)})-[0-9a-f]{{{RUN_ID_HASH_LENGTH}}}$")


class RecordError(ValueError):
    """A results file that cannot be used (a damaged manifest, a foreign run id); names the file."""


def is_run_id(name: str) -> bool:
    return isinstance(name, str) and RUN_ID_PATTERN.fullmatch(name) is not None


# ---------------------------------------------------------------- folders and their states


def profile_dir(profile: str, results_root: Path | None = None) -> Path:
    return Path(results_root or RESULTS_ROOT) / profile


def bookkeeping_path(run_dir: Path, suffix: str) -> Path:
    """An entry kept for a run beside its folder, `.<run-id><suffix>`: hidden, so never taken for a run."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}{suffix}"


def is_bookkeeping(path: Path) -> bool:
    """Whether a folder entry is bookkeeping (a staging folder, a claim), not a run: a hidden name."""
    return Path(path).name.startswith(".")


def read_json(path: Path) -> dict:
    """A JSON file as a dict, {} when it is missing or does not parse: for bookkeeping and a run being written;
    a run folder is read by read_run."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_summary(run_dir: Path) -> dict | None:
    """summary.json of a run; None if there is none; raises ValueError naming the file if it does not parse."""
    try:
        return _read_summary(Path(run_dir))
    except _Damaged as damaged:
        raise ValueError(str(damaged)) from None


def _read_summary(folder: Path) -> dict | None:
    path = folder / SUMMARY_FILE
    summary = _read_json_file(path, missing_ok=True)
    if summary is not None and not isinstance(summary.get("status"), str):
        raise _Damaged(path, "no status recorded")
    return summary


@dataclass(frozen=True)
class RunRecord:
    """A run folder as read_run found it: its state and, unless it is corrupt or missing, its files' contents."""

    folder: Path
    status: str  # ok, diverged, failed (lab2.core.summary), corrupt or missing
    summary: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    epochs: list = field(default_factory=list)  # metrics.csv's rows, {column: number}, epoch by epoch
    damaged_file: Path | None = None  # corrupt: the file at fault
    damage: str | None = None  # corrupt: what is wrong with it

    @property
    def notebook(self) -> Path | None:
        """The executed run notebook, if the run has one and is not corrupt."""
        path = self.folder / NOTEBOOK_FILE
        return path if self.status != CORRUPT and path.is_file() else None

    def problem(self) -> str:
        """'<file>: <what is wrong>' of a corrupt run."""
        return f"{self.damaged_file}: {self.damage}"


class _Damaged(Exception):
    """A file of a run that cannot be used: which one, and why."""

    def __init__(self, path: Path, damage: str):
        super().__init__(f"{path}: {damage}")
        self.path, self.damage = path, damage


def _read_json_file(path: Path, missing_ok: bool = False) -> dict | None:
    """A JSON object from a run's file; None if it is missing and may be; _Damaged otherwise."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise _Damaged(path, "missing") from None
    except UnicodeDecodeError as error:
        raise _Damaged(path, f"garbled (byte {error.start} is not text)") from None
    except OSError as error:
        raise _Damaged(path, f"unreadable ({error.strerror or error})") from None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise _Damaged(path, f"not valid JSON, cut off or garbled ({error})") from None
    if not isinstance(value, dict):
        raise _Damaged(path, "not a JSON object")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_epochs(path: Path) -> list[dict]:
    """metrics.csv as numbers, checked: the header, every row whole, epochs 1, 2, 3, ... in order."""
    try:
        text = Path(path).read_text()
        rows = list(csv.reader(text.splitlines()))
    except FileNotFoundError:
        raise _Damaged(path, "missing") from None
    except UnicodeDecodeError as error:
        raise _Damaged(path, f"garbled (byte {error.start} is not text)") from None
    except (OSError, csv.Error) as error:
        raise _Damaged(path, f"unreadable ({getattr(error, 'strerror', None) or error})") from None
    if not rows or tuple(rows[0]) != METRIC_COLUMNS:
        raise _Damaged(path, f"its header is not {','.join(METRIC_COLUMNS)}")
    if not text.endswith("\n"):  # every row is written with its end of line (save_run): a cut may leave a number
        raise _Damaged(path, f"line {len(rows)} has no end of line (cut off)")
    epochs = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(METRIC_COLUMNS):
            raise _Damaged(path, f"line {line} has {len(row)} fields, not {len(METRIC_COLUMNS)} (cut off or garbled)")
        try:
            values = dict(zip(METRIC_COLUMNS, map(float, row)))
        except ValueError:
            raise _Damaged(path, f"line {line} holds something that is not a number: {','.join(row)[:80]!r}") from None
        if values["epoch"] != len(epochs) + 1:
            raise _Damaged(path, f"line {line} is epoch {row[0]}, not {len(epochs) + 1}")
        epochs.append({**values, "epoch": len(epochs) + 1})
    return epochs


def _check_agreement(folder: Path, name: str, summary: dict, config: RunConfig, environment: dict,
                     epochs: list[dict]) -> None:
    """Raise _Damaged when the files of a finished run disagree with each other or with its folder's name."""
    metrics = folder / METRICS_FILE
    if summary["status"] == OK:
        expected = config.num_epochs
    else:  # diverged: the epochs before the one that ran away
        diverged_epoch = summary.get("diverged_epoch")
        expected = diverged_epoch - 1 if _is_number(diverged_epoch) else None
    if expected is not None and len(epochs) != expected:
        raise _Damaged(metrics, f"{len(epochs)} epochs, but the run {summary['status']} after {expected} "
                                "(cut off, or from another run)")
    if epochs:
        last = epochs[-1]
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            value = summary.get(key)
            if not _is_number(value) or not math.isclose(value, last[key], rel_tol=1e-9, abs_tol=1e-12):
                raise _Damaged(metrics, f"its last epoch's {key} is {last[key]!r}, but summary.json says {value!r} "
                                        "(garbled, or from another run)")
    if is_run_id(name):
        fingerprint = environment.get("data_fingerprint")
        if not isinstance(fingerprint, str):
            raise _Damaged(folder / ENVIRONMENT_FILE, "no data_fingerprint recorded")
        made = run_id(config, fingerprint)
        if made != name:
            raise _Damaged(folder / CONFIG_FILE, f"its settings and env.json's data fingerprint make run {made}, "
                                                 f"not {name}")


def read_run(run_dir: Path, name: str | None = None) -> RunRecord:
    """A run folder read and checked (see the module's docstring): the one way a run's files are read.

    name: the run id the folder holds (default: the folder's own name; a staging folder's is
    its run's). Never raises for what the folder holds: a damaged file makes the run corrupt.
    """
    folder = Path(run_dir)
    name = name or folder.name
    try:
        summary = _read_summary(folder)
    except _Damaged as damaged:
        return RunRecord(folder, CORRUPT, damaged_file=damaged.path, damage=damaged.damage)
    if summary is None:
        return RunRecord(folder, MISSING)
    status = summary["status"]
    if status == FAILED:
        environment = read_json(folder / ENVIRONMENT_FILE)
        return RunRecord(folder, FAILED, summary, read_json(folder / CONFIG_FILE), environment)
    try:
        if status not in FINISHED_STATUSES:
            raise _Damaged(folder / SUMMARY_FILE, f"status {status!r} is none of {', '.join((OK, DIVERGED, FAILED))}")
        values = _read_json_file(folder / CONFIG_FILE)
        try:
            config = RunConfig.from_dict(values)
        except ConfigError as error:
            raise _Damaged(folder / CONFIG_FILE, str(error)) from None
        environment = _read_json_file(folder / ENVIRONMENT_FILE)
        epochs = _read_epochs(folder / METRICS_FILE)
        _check_agreement(folder, name, summary, config, environment, epochs)
        notebook = folder / NOTEBOOK_FILE
        if notebook.exists() and not isinstance(_read_json_file(notebook).get("cells"), list):
            raise _Damaged(notebook, "not a notebook (no cells)")
    except _Damaged as damaged:
        return RunRecord(folder, CORRUPT, summary, damaged_file=damaged.path, damage=damaged.damage)
    return RunRecord(folder, status, summary, values, environment, epochs)


def run_status(run_dir: Path) -> str:
    """ok, diverged, failed, corrupt (a file is damaged, read_run) or missing."""
    return read_run(run_dir).status


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
    """The runs of a profile folder that have ended (bookkeeping aside), each with its summary_stamp."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    stamps = {run.name: summary_stamp(run) for run in folder.iterdir() if run.is_dir() and not is_bookkeeping(run)}
    return {name: stamp for name, stamp in stamps.items() if stamp is not None}


def run_code_changes(run: RunRecord) -> list[str] | None:
    """The files of a finished run's code fingerprint (env.json) that now differ; None if it recorded none."""
    return changed_code(run.environment.get("code_fingerprint"))


# ---------------------------------------------------------------- writing a run


def save_run(out_dir, config, result) -> None:
    """Write config.json, metrics.csv, env.json (with the code fingerprint) and, last, summary.json."""
    out_dir = Path(out_dir)
    write_json(out_dir / CONFIG_FILE, config.to_dict())
    with atomic_write(out_dir / METRICS_FILE) as handle:
        handle.write(",".join(METRIC_COLUMNS) + "\n")
        for row in result.history:
            handle.write(",".join(repr(row[column]) for column in METRIC_COLUMNS) + "\n")
    code = code_fingerprint(run_code_files())
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
