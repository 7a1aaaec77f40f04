"""The prepared device check: one call that measures the GPU and runs the full sweep.

Stages, each reported even if a later one fails: versions and device; the lab2-vs-torch.nn
benchmark; the seconds of one epoch of each model under the full protocol (TF32 and bf16);
then the sweep, stopped cleanly at the time budget so that every finished run is kept and
a later call resumes the rest, and `--archive` packs the finished runs for the trip home.
`--dry-run` rehearses all of it on a CPU at toy sizes.
"""

import json
import platform
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch

from lab2.atomic import write_json
from lab2.bench import run_bench
from lab2.config import RunConfig
from lab2.data import load_cifar10, split
from lab2.report.results import RESULTS_ROOT
from lab2.train import fit

# Training FLOPs per image of the report's CNN (C = 256): forward conv1 + conv2 + linear
# = 2 * (28*28*256*3*25 + 10*10*256*256*25 + 6400*10) = 0.35 GFLOP, times 3 with backward.
CNN_TRAIN_FLOP_PER_IMAGE = 3 * 2 * (28 * 28 * 256 * 3 * 25 + 10 * 10 * 256 * 256 * 25 + 6400 * 10)
TF32_PEAK_FLOPS = {"H100": 495e12, "H200": 495e12}  # dense TF32 tensor-core peak, vendor datasheets
SWEEP_GRACE_S = 30  # after SIGTERM, time for the sweep to stop its workers and kernels


def _say(text: str) -> None:
    print(text, flush=True)


def describe_device() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info.update(device_name=properties.name, multiprocessors=properties.multi_processor_count,
                    memory_gib=round(properties.total_memory / 2**30, 1))
    return info


def time_epochs(data_dir, device: torch.device, tiny: bool) -> list[dict]:
    """Seconds of one epoch (the second, after cuDNN's autotuning) for each model and precision."""
    dataset = load_cifar10(data_dir)
    cases = [
        RunConfig(model="mlp", dropout_rate=0.5, batch_size=500, num_epochs=2),
        RunConfig(model="cnn", dropout_rate=0.0, batch_size=100, num_epochs=2, precision="tf32"),
        RunConfig(model="cnn", dropout_rate=0.0, batch_size=100, num_epochs=2, precision="bf16"),
    ]
    rows = []
    for config in cases:
        if tiny:
            config = RunConfig(**{**config.to_dict(), "train_size": 500, "eval_size": 200, "channels": 8})
        splits = split(dataset, config.train_size, config.eval_size)
        result = fit(config, splits, device, progress=False)
        seconds = result.history[-1]["seconds"]
        row = {"model": config.model, "precision": config.precision, "channels": config.channels,
               "images": len(splits.train_images), "epoch_seconds": seconds,
               "images_per_s": len(splits.train_images) / seconds}
        if config.model == "cnn" and device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            peak = next((flops for key, flops in TF32_PEAK_FLOPS.items() if key in name), None)
            if peak:
                floor = len(splits.train_images) * CNN_TRAIN_FLOP_PER_IMAGE / peak
                row.update(tf32_floor_seconds=floor, times_floor=seconds / floor)
        rows.append(row)
        _say(json.dumps(row))
    return rows


def run_sweep_until(profile: str, jobs: int | None, data_dir, deadline: float, dry_run: bool) -> int:
    """Run the sweep in a child process; SIGTERM it at the deadline so it stops cleanly."""
    command = [sys.executable, "-m", "lab2", "sweep", "--profile", profile]
    command += ["--jobs", str(jobs)] if jobs else []
    command += ["--data-dir", str(data_dir)] if data_dir else []
    command += ["--dry-run"] if dry_run else []
    child = subprocess.Popen(command)
    try:
        return child.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        _say("gpu-check: time budget reached, stopping the sweep (it resumes on the next call)")
        child.send_signal(signal.SIGTERM)
        try:
            return child.wait(timeout=SWEEP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()


def pack_results(profile: str, archive: Path) -> int:
    """Pack the profile's finished runs (not staging folders) into a .tar.gz; how many runs."""
    folder = RESULTS_ROOT / profile
    runs = [p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")] if folder.is_dir() else []
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in [folder / name for name in ("manifest.json", "gpu_check.json") if (folder / name).is_file()] + runs:
            tar.add(path, arcname=str(path.relative_to(RESULTS_ROOT.parent)))
    return len(runs)


def gpu_check(profile: str = "full", budget_s: float = 480, jobs: int | None = None, data_dir=None,
              dry_run: bool = False, archive: Path | None = None) -> int:
    started = time.time()
    deadline = started + budget_s
    if not torch.cuda.is_available() and not dry_run:
        _say("gpu-check: no CUDA device here; rehearse with --dry-run")
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    report = {"device": describe_device(), "budget_s": budget_s}
    _say(json.dumps(report["device"]))
    if device.type == "cuda":
        subprocess.run(["nvidia-smi", "-L"], check=False)

    stages = [
        ("bench", lambda: [dict(vars(r), ratio=r.ratio) for r in run_bench(
            ["mlp", "cnn"], device, 8 if dry_run else 256, repeats=1 if dry_run else 7,
            steps_per_block=2 if dry_run else 20)]),
        ("epochs", lambda: time_epochs(data_dir, device, tiny=dry_run)),
    ]
    for name, stage in stages:
        stage_started = time.time()
        try:
            report[name] = stage()
        except Exception as error:  # noqa: BLE001 - a failed stage must not cost the sweep
            report[name] = {"error": f"{type(error).__name__}: {error}"}
        _say(f"gpu-check: {name} took {time.time() - stage_started:.1f} s: {json.dumps(report[name])}")

    sweep_started = time.time()
    report["sweep_exit_code"] = run_sweep_until(profile, jobs, data_dir, deadline, dry_run)
    report["sweep_wall_s"] = time.time() - sweep_started
    report["total_wall_s"] = time.time() - started
    _say(f"gpu-check: sweep exit code {report['sweep_exit_code']} after {report['sweep_wall_s']:.1f} s")
    if not dry_run:
        write_json(RESULTS_ROOT / profile / "gpu_check.json", report)
    if archive is not None:
        _say(f"gpu-check: packed {pack_results(profile, archive)} finished runs into {archive}")
    return 0
