"""File-system faults meet the sweep: a full disk, a read-only results folder, a run folder that refuses changes.

Each fault is real: a small tmpfs that fills up, a mount remounted read-only, `chattr +i`.
They need root (as on the project's machines); elsewhere they are skipped with the reason.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_sweep import TINY_EXPERIMENTS, TINY_PROFILES, finished_runs, write_params

from lab2 import PROJECT_ROOT
from lab2.core.summary import FAILED, OK


def sweep_cli(params: Path, results: Path, data: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lab2", "sweep", "--profile", "tiny", "--jobs", "1", "--params", str(params),
               "--results", str(results), "--data-dir", str(data)]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture()
def mount(tmp_path):
    """mount(size_bytes) -> a fresh tmpfs folder; unmounted after the test."""
    mounted = []

    def make(size: int) -> Path:
        folder = tmp_path / f"mount{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); needs root")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def numbers(run_dir: Path) -> dict:
    """A run's summary without its wall-clock seconds."""
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("seconds")
    return summary


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@pytest.mark.slow  # four tiny sweeps
def test_a_full_disk_keeps_finished_runs_and_ends_with_the_table(tmp_path, image_archive, mount):
    params = write_params(tmp_path / "params")
    reference = tmp_path / "reference"
    assert sweep_cli(params, reference, image_archive).returncode == 0
    runs = finished_runs(reference / "tiny")
    largest = max(folder_bytes(reference / "tiny" / rid) for rid in runs)
    manifest = (reference / "tiny" / "manifest.json").stat().st_size
    # Room for the manifest, the claims and one and a half runs (tmpfs counts whole 4 KiB pages).
    results = mount(4096 * (8 + (manifest + int(1.5 * largest)) // 4096))
    done = sweep_cli(params, results, image_archive)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "run id" in done.stdout and "No space left on device" in done.stdout
    assert "so nothing of it is kept and the next sweep runs it again" in done.stdout
    kept = finished_runs(results / "tiny")
    assert list(kept.values()) == [OK]  # the run that fitted is published whole
    assert not list((results / "tiny").glob(".*.partial"))
    rid = next(iter(kept))
    assert numbers(results / "tiny" / rid) == numbers(reference / "tiny" / rid)
    # With room again, the next sweep keeps that run and makes the other.
    subprocess.run(["mount", "-o", "remount,size=64m", str(results)], check=True)
    again = sweep_cli(params, results, image_archive)
    assert again.returncode == 0 and "1 ran, 1 cached, 0 failed" in again.stdout
    assert finished_runs(results / "tiny") == runs


@pytest.mark.slow  # three tiny sweeps
def test_a_read_only_results_folder_serves_cached_runs_and_refuses_new_ones(tmp_path, image_archive, mount):
    params = write_params(tmp_path / "params")
    results = mount(64 * 2**20)
    assert sweep_cli(params, results, image_archive).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(results)], check=True)
    cached = sweep_cli(params, results, image_archive)
    assert cached.returncode == 0 and "0 ran, 2 cached, 0 failed" in cached.stdout, cached.stderr[-2000:]
    grown = json.loads(json.dumps(TINY_EXPERIMENTS))
    grown["experiments"]["grid_dropout_rate"]["dropout_rate"] = [0.0, 0.3, 0.5]
    write_params(params, grown)
    refused = sweep_cli(params, results, image_archive)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"--results: {results / 'tiny'} is not writable (Read-only file system)" in refused.stderr


def test_a_run_folder_that_refuses_changes_is_named_before_any_run(tmp_path, image_archive):
    experiments = json.loads(json.dumps(TINY_EXPERIMENTS))
    experiments["experiments"]["too_big"] = {"hidden": 10**9}  # fails when the run allocates its weights
    profiles = {"tiny": {**TINY_PROFILES["tiny"], "set": {"num_epochs": 1, "eval_size": 50}}}
    params = write_params(tmp_path / "params", experiments, profiles)
    results = tmp_path / "results"
    assert sweep_cli(params, results, image_archive).returncode == 1
    failed = next(results / "tiny" / rid for rid, status in finished_runs(results / "tiny").items() if status == FAILED)
    if subprocess.run(["chattr", "+i", str(failed)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible here (needs root and a file system with attributes)")
    try:
        done = sweep_cli(params, results, image_archive)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert f"{failed} cannot be replaced (Operation not permitted)" in done.stderr
        assert "sweep tiny:" not in done.stdout  # refused before any run started
    finally:
        subprocess.run(["chattr", "-i", str(failed)], capture_output=True)
    shutil.rmtree(results)
