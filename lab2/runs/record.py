"""The run record: one run's folder and its files, and the state a folder is in.

The one module that knows how a run is stored; the sweep, the reader, the book and the CLI go
through it. A run lives in `results/<profile>/<run-id>/`:

    config.json   its resolved settings
    metrics.csv   one row per epoch
    env.json      versions, device, data source and checksum, and the code fingerprint (lab2.runs.fingerprint)
    run.ipynb     the executed run notebook (sweeps only), kernel.log its output
    summary.json  the metrics, status and seconds; written last, so it marks the run complete

A run ends with a status of lab2.core.summary (ok, diverged, failed); a folder can also be
corrupt (its summary.json does not parse) or missing. Beside the run folders, the entries
with hidden names are the sweep's bookkeeping, never runs: staging folders
(lab2.runs.staging) and claims (lab2.runs.claims). The profile's manifest is
lab2.runs.manifest's, a snapshot of a profile lab2.runs.snapshot's.
"""

import json
import os
import re
import tempfile
from pathlib import Path

from lab2 import PROJECT_ROOT
from lab2.core.atomic import atomic_write, write_json
from lab2.core.config import MODELS, RUN_ID_HASH_LENGTH
from lab2.runs.fingerprint import RUN_NOTEBOOK, changed_code, code_fingerprint, run_code_files

RESULTS_ROOT = PROJECT_ROOT / "results"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
ENVIRONMENT_FILE = "env.json"
SUMMARY_FILE = "summary.json"
NOTEBOOK_FILE = RUN_NOTEBOOK.name  # the run notebook, as the run executed it
KERNEL_LOG = "kernel.log"

# The state of a run folder that is not a status its run ended with (lab2.core.summary).
CORRUPT = "corrupt"  # summary.json is there but does not parse; the next sweep reruns it
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
    """The runs of a profile folder that have ended (bookkeeping aside), each with its summary_stamp."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    stamps = {run.name: summary_stamp(run) for run in folder.iterdir() if run.is_dir() and not is_bookkeeping(run)}
    return {name: stamp for name, stamp in stamps.items() if stamp is not None}


def run_code_changes(run_dir: Path) -> list[str] | None:
    """The files of a finished run's code fingerprint (env.json) that now differ; None if it recorded none."""
    return changed_code(read_json(Path(run_dir) / ENVIRONMENT_FILE).get("code_fingerprint"))


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
