"""A snapshot of a profile's results: what a reader sees while a sweep works on them.

`snapshot_profile` copies the manifest, the code check's stored verdict and each run that has
ended (never a run half-way) into another results root, and writes beside them IN_FLIGHT_FILE:
the runs a sweep was executing then (their claims, lab2.runs.locks). The book reads its pages from one snapshot,
so every page shows the same runs.
"""

import os
import shutil
from pathlib import Path

from lab2.core.atomic import write_json
from lab2.runs.code_verdict import CODE_CHECK_FILE
from lab2.runs.locks import claimed_runs
from lab2.runs.manifest import load_manifest, write_manifest
from lab2.runs.record import SUMMARY_FILE, profile_dir, read_json, summary_stamp

IN_FLIGHT_FILE = "in-flight.json"  # in a snapshot of results: the runs a sweep was executing


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # a published file is never rewritten in place, so a link is a snapshot
    except OSError:
        shutil.copy2(source, target)


def snapshot_profile(profile: str, results_root: Path | None, target_root: Path) -> dict[str, str]:
    """Copy a profile's results as they are now into target_root/<profile>/; returns the runs in flight.

    What a reader of results sees while a sweep works on them: the manifest, the code check's
    verdict and each run that has ended (its files, summary.json last, taken again if the run was replaced meanwhile),
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
    verdict = source / CODE_CHECK_FILE
    if verdict.is_file() and not verdict.is_symlink():  # replaced whole when rewritten, so a link is a snapshot
        _link_or_copy(verdict, target / CODE_CHECK_FILE)
    in_flight = claimed_runs(source, run_ids)
    write_json(target / IN_FLIGHT_FILE, in_flight)
    return in_flight


def runs_in_flight(profile: str, results_root: Path | None = None) -> dict[str, str]:
    """The runs a snapshot found in flight ({} for results that are not a snapshot)."""
    return read_json(profile_dir(profile, results_root) / IN_FLIGHT_FILE)
