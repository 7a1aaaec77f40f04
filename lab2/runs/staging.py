"""Staging and publishing: a run is built out of sight and appears whole, in one rename.

A sweep builds a run's folder as `.<run-id>.partial/` beside where it will live (the caller
holds the run's claim, lab2.runs.locks) and publishes it with one rename, so a run folder
exists only once its run has ended. A run that stops before it ends leaves only its staging
folder, which `clean_stale_staging` removes once no live process holds its claim.
"""

import os
import shutil
from pathlib import Path

from lab2.core.atomic import write_json
from lab2.core.summary import failed_summary
from lab2.runs.locks import try_claim
from lab2.runs.record import (CORRUPT, ENVIRONMENT_FILE, KERNEL_LOG, MISSING, SUMMARY_FILE, bookkeeping_path, read_json,
                              read_run, run_status)

STAGING_SUFFIX = ".partial"
REPLACED_SUFFIX = ".replaced"  # an earlier attempt, moved aside for the moment its successor is published


def staging_dir(run_dir: Path) -> Path:
    """Where a run is built before it is published: `.<run-id>.partial/` beside it."""
    return bookkeeping_path(run_dir, STAGING_SUFFIX)


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
    written = read_run(staging, run_dir.name) if error is None else None
    if written is not None and written.status == MISSING:
        error = f"the run ended without a summary; see {run_dir / KERNEL_LOG}"
    elif written is not None and written.status == CORRUPT:  # published as it is, it would be read as corrupt
        error = f"the run wrote a damaged record: {written.damaged_file.name}: {written.damage}"
    if error is not None:
        write_json(staging / SUMMARY_FILE, failed_summary(error, seconds))
    if run_dir.exists():  # an earlier failed or corrupt attempt, now replaced
        replaced = bookkeeping_path(run_dir, REPLACED_SUFFIX)
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(run_dir, replaced)
        os.replace(staging, run_dir)
        shutil.rmtree(replaced, ignore_errors=True)
    else:
        os.replace(staging, run_dir)
    return run_status(run_dir)


def clean_stale_staging(folder: Path) -> list[Path]:
    """Remove staging folders that no live process is building (left by a sweep that died)."""
    removed = []
    for staging in sorted(Path(folder).glob(f".*{STAGING_SUFFIX}")):
        run_dir = folder / staging.name[1:-len(STAGING_SUFFIX)]
        claim = try_claim(run_dir)
        if claim is None:
            continue  # another sweep is building it right now
        try:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
        finally:
            claim.release()
    return removed
