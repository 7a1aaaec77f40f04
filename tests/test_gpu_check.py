"""The device call: the sweep of missing CNN runs, the step mode it chooses, its stop at the budget,
and its packing: archives per model that only grow."""

import json
import os
import sys
import tarfile
import time

import pytest
import torch
from conftest import make_run

from lab2.core.summary import OK
from lab2.tools.gpu_check import Packer, check_verdict, choose_sweep_mode, run_sweep, start_mode_check, sweep_command
from lab2.runs.grid import plan


def test_the_sweep_runs_the_missing_cnn_runs_seed_zero_first():
    command = sweep_command("full", None, None, None)
    assert command[3:] == ["sweep", "--profile", "full", "--only", "cnn/*", "--keep-finished"]  # the sweep's jobs
    assert sweep_command("full", 6, None, None)[-2:] == ["--jobs", "6"]
    # No --seeds: every seed, in the plan's seed-major order, so seed 0 of every setting comes first.
    runs = [run for run in plan("full").runs if run.config.model == "cnn"]
    seeds = [run.config.seed for run in runs]
    assert seeds == sorted(seeds) and set(seeds) == {0, 1, 2} and len(runs) == 63


def epoch_row(mode, first, epoch, precision="tf32"):
    return {"model": "cnn", "precision": precision, "step_mode": mode, "first_epoch_seconds": first,
            "epoch_seconds": epoch}


def test_the_sweep_mode_is_the_fastest_run_compile_included():
    epochs = [epoch_row("eager", 2.0, 1.456), epoch_row("cuda_graph", 1.5, 1.049), epoch_row("compiled", 90.0, 0.3),
              epoch_row("compiled", 90.0, 0.1, precision="bf16"),  # bf16 is reported, never chosen
              {"model": "cnn", "precision": "tf32", "step_mode": "broken", "error": "RuntimeError: ..."}]
    compiles = {"cold": {"first_epoch_seconds": 60.0}, "warm": {"first_epoch_seconds": 6.0}}
    # 50 epochs, 3 seeds: compiled pays (60 + 2 * 6) / 3 = 24 s once and saves 0.75 s an epoch.
    choice = choose_sweep_mode(epochs, compiles, num_epochs=50, seeds=3)
    assert choice["mode"] == "compiled"
    assert choice["estimated_run_seconds"] == {"eager": 73.34, "cuda_graph": 52.9, "compiled": 38.7}
    # Two epochs and one seed (the smoke profile): the compile never pays for itself.
    assert choose_sweep_mode(epochs, compiles, num_epochs=2, seeds=1)["mode"] == "cuda_graph"
    # Without the compile stage's numbers, the epoch stage's first epoch counts as the compile.
    assert choose_sweep_mode(epochs, {"error": "..."}, num_epochs=50, seeds=3)["estimated_run_seconds"]["compiled"] == 104.7
    assert choose_sweep_mode([], {}, num_epochs=50, seeds=3)["mode"] == "eager"


def test_a_mode_whose_check_runs_no_test_has_not_passed():
    verdict = check_verdict(start_mode_check("no_such_mode", torch.device("cpu")))
    assert verdict["passed"] is False and verdict["exit_code"] == 5  # pytest: no tests collected


def test_the_sweep_is_stopped_at_the_deadline_and_packed(tmp_path):
    profile_dir, out = tmp_path / "results" / "full", tmp_path / "out"
    out.mkdir()
    packer = Packer(profile_dir, out)
    started = time.time()
    outcome = run_sweep([sys.executable, "-c", "import time; time.sleep(60)"], started + 1, packer, dict(os.environ))
    assert outcome["exit_code"] == "stopped at the budget" and time.time() - started < 10
    finished = run_sweep([sys.executable, "-c", "pass"], time.time() + 30, packer, dict(os.environ))
    assert finished["exit_code"] == 0 and finished["wall_s"] < 10 and finished["runs_packed"] == 0


def test_packer_packs_only_new_finished_runs_per_model(tmp_path):
    profile_dir, out = tmp_path / "results" / "full", tmp_path / "out"
    out.mkdir()
    make_run(profile_dir, "mlp-committed", "cpu")
    (profile_dir / "manifest.json").write_text("{}")
    packer = Packer(profile_dir, out)
    assert packer() == 0 and not list(out.iterdir())
    make_run(profile_dir, "cnn-aaa", "NVIDIA H200")
    (profile_dir / ".cnn-bbb.partial").mkdir()  # still running: not packed
    assert packer() == 1
    make_run(profile_dir, "mlp-new", "NVIDIA H200")
    assert packer() == 2
    with tarfile.open(out / "results-full-mlp.tgz") as tar:
        names = tar.getnames()
    assert "results/full/mlp-new/summary.json" in names and "results/full/manifest.json" in names
    assert not any("committed" in name for name in names)
    assert sorted(p.name for p in out.iterdir()) == ["results-full-cnn.tgz", "results-full-mlp.tgz"]


def test_packer_packs_a_committed_run_done_again(tmp_path):
    profile_dir, out = tmp_path / "results" / "full", tmp_path / "out"
    out.mkdir()
    committed = make_run(profile_dir, "mlp-committed", "cpu")
    packer = Packer(profile_dir, out)
    (committed / "summary.json").unlink()  # a sweep publishes a redone run as a new folder
    (committed / "summary.json").write_text(json.dumps({"status": OK}))
    assert packer() == 1
    with tarfile.open(out / "results-full-mlp.tgz") as tar:
        assert "results/full/mlp-committed/summary.json" in tar.getnames()
