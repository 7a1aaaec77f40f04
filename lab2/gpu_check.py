"""The prepared device call: measure the GPU, then sweep the full profile and pack it as it goes.

A lent GPU gives a session minutes, and only files already in the call's output folder
come back, even when the call is cut off. So every stage writes its result into the
report (`gpu_check.json`, rewritten atomically after each stage) and prints one line,
and while the sweeps run, the runs finished so far are re-packed into one archive per
model (written beside, then renamed) every time another one finishes.

Stages: the device and versions; the data and its fingerprint (against the committed
manifest, since run ids hash it); the CUDA-graph check (tests/test_step.py: if the
captured step does not reproduce the eager one, the sweeps fall back to eager steps);
the lab2-vs-torch.nn benchmark in both step modes; one epoch of each model under the
full protocol (TF32 and bf16, eager and captured) against the arithmetic floor; the
kernels a CNN step spends its time in (the first call found the captured epoch at 12x
the arithmetic floor: the profile says where the rest goes); then the
sweeps in lanes that share the GPU (CNN seed 0 then the other CNN seeds in one, the
MLP in the other), stopped cleanly at the time budget. `--dry-run` rehearses all of it
on a CPU: toy sizes, and real sweeps of the smoke profile into the output folder.
"""

import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from lab2 import PROJECT_ROOT
from lab2.atomic import write_json
from lab2.bench import make_trainer, random_batch, run_bench
from lab2.config import RunConfig
from lab2.data import load_cifar10, split
from lab2.runs import record
from lab2.runs.archive import pack_runs
from lab2.runs.grid import get_profile
from lab2.step import STEP_MODE_ENV, STEP_MODES
from lab2.train import fit

# Training FLOPs per image of the report's CNN (C = 256): forward conv1 + conv2 + linear
# = 2 * (28*28*256*3*25 + 10*10*256*256*25 + 6400*10) = 0.35 GFLOP, times 3 with backward.
CNN_TRAIN_FLOP_PER_IMAGE = 3 * 2 * (28 * 28 * 256 * 3 * 25 + 10 * 10 * 256 * 256 * 25 + 6400 * 10)
TF32_PEAK_FLOPS = {"H100": 495e12, "H200": 495e12}  # dense TF32 tensor-core peak, vendor datasheets
SWEEP_GRACE_S = 30  # after SIGTERM, time for a sweep to stop its runs and kernels
PACK_EVERY_S = 5  # how often the sweeps' results folder is looked at for newly finished runs
REPORT_FILE = "gpu_check.json"
CUDA_JOBS_PER_LANE = 4


@dataclass
class Lane:
    """Sweeps that run one after another, beside the other lanes: (--only glob, seeds) each."""

    name: str
    sweeps: list[tuple[str, list[int] | None]]


def sweep_lanes(seeds: list[int]) -> list[Lane]:
    """CNN seed 0 first (it decides the CNN rows), then its other seeds; the MLP beside it."""
    first, rest = seeds[:1], seeds[1:]
    return [Lane("cnn", [("cnn/*", first)] + ([("cnn/*", rest)] if rest else [])), Lane("mlp", [("mlp/*", None)])]


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


def check_data(data_dir, profile_dir: Path) -> dict:
    """The data's source and fingerprint, and whether the profile's manifest was made from the same."""
    dataset = load_cifar10(data_dir)
    info = {"source": dataset.source, "fingerprint": dataset.fingerprint, "images": len(dataset.train_labels)}
    manifest = profile_dir / record.MANIFEST_FILE
    if manifest.is_file():
        expected = json.loads(manifest.read_text()).get("data_fingerprint")
        info["matches_manifest"] = expected == dataset.fingerprint
        if not info["matches_manifest"]:
            _say(f"gpu-check: WARNING: data fingerprint {dataset.fingerprint[:12]} differs from {manifest}'s "
                 f"{str(expected)[:12]}: the runs made here get other ids than the committed ones")
    return info


def start_capture_check() -> subprocess.Popen:
    """Start the step tests (on a GPU: captured against eager), to run while the data decodes."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_step.py"]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def capture_verdict(tests: subprocess.Popen) -> dict:
    """The step tests' outcome; it decides whether the sweeps replay captured steps."""
    output, _ = tests.communicate()
    lines = output.strip().splitlines()
    verdict = {"passed": tests.returncode == 0, "pytest": lines[-1] if lines else "", "exit_code": tests.returncode,
               "failures": [line for line in lines if line.startswith("FAILED")][:10]}
    if not verdict["passed"]:  # the assertions' own words, so that one call is enough to tell why
        verdict["details"] = [line for line in lines if line.startswith(("E ", ">"))][:40]
    return verdict


def _floor_ratio(config: RunConfig, images: int, seconds: float, device: torch.device) -> dict:
    """The CNN epoch's TF32 arithmetic floor on this GPU and how many times slower the epoch was."""
    if config.model != "cnn" or device.type != "cuda":
        return {}
    name = torch.cuda.get_device_name(device)
    peak = next((flops for key, flops in TF32_PEAK_FLOPS.items() if key in name), None)
    if peak is None:
        return {}
    floor = images * CNN_TRAIN_FLOP_PER_IMAGE / peak
    return {"tf32_floor_seconds": floor, "times_floor": seconds / floor}


def time_epochs(data_dir, device: torch.device, tiny: bool, step_modes) -> list[dict]:
    """Seconds of one epoch (the second, after autotuning and capture) per step mode, model and precision.

    Eager first, and each case on its own: a capture that breaks must not cost the eager numbers.
    """
    dataset = load_cifar10(data_dir)
    cases = [
        RunConfig(model="mlp", dropout_rate=0.5, batch_size=500, num_epochs=2),
        RunConfig(model="cnn", dropout_rate=0.0, batch_size=100, num_epochs=2, precision="tf32"),
        RunConfig(model="cnn", dropout_rate=0.0, batch_size=100, num_epochs=2, precision="bf16"),
    ]
    rows = []
    for mode in step_modes:
        for config in cases:
            if tiny:
                config = RunConfig(**{**config.to_dict(), "train_size": 500, "eval_size": 200, "channels": 8})
            splits = split(dataset, config.train_size, config.eval_size)
            row = {"model": config.model, "precision": config.precision, "step_mode": mode,
                   "channels": config.channels, "images": len(splits.train_images)}
            try:
                seconds = fit(config, splits, device, progress=False, step_mode=mode).history[-1]["seconds"]
            except Exception as error:  # noqa: BLE001 - reported in its row; the other cases go on
                row["error"] = f"{type(error).__name__}: {error}"
            else:
                row.update(epoch_seconds=seconds, images_per_s=len(splits.train_images) / seconds,
                           **_floor_ratio(config, len(splits.train_images), seconds, device))
            rows.append(row)
            _say(f"gpu-check: epoch {json.dumps(row)}")
    return rows


def bench_modes(device: torch.device, tiny: bool, step_modes) -> list[dict]:
    """lab2's layers against torch.nn's in each step mode, eager first, each case on its own."""
    rows = []
    for mode in step_modes:
        for model in ("mlp", "cnn"):
            try:
                result, = run_bench([model], device, 8 if tiny else 256, repeats=1 if tiny else 7,
                                    steps_per_block=2 if tiny else 20, modes=(mode,))
                row = dict(vars(result), ratio=result.ratio)
            except Exception as error:  # noqa: BLE001 - reported in its row; the other cases go on
                row = {"model": model, "step_mode": mode, "error": f"{type(error).__name__}: {error}"}
            rows.append(row)
            _say(f"gpu-check: bench {json.dumps(row)}")
    return rows


def profile_cnn_step(device: torch.device, tiny: bool, steps: int = 20, top: int = 15) -> list[dict]:
    """Where an eager CNN training step (batch 100, TF32) spends its time: the costliest kernels per step."""
    from torch.profiler import ProfilerActivity, profile

    config = RunConfig(model="cnn", dropout_rate=0.0, batch_size=100, channels=8 if tiny else 256)
    train = make_trainer(config, "lab2", device, *random_batch(config.batch_size, device), "eager")
    train(5)  # autotuning and first-call costs stay out of the profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        train(steps)
    on_device = device.type == "cuda"

    def self_time(event) -> float:  # microseconds; the attribute's name changed across torch versions
        if on_device:
            return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
        return event.self_cpu_time_total

    events = sorted(profiler.key_averages(), key=self_time, reverse=True)[:top]
    return [{"name": event.key[:90], "calls_per_step": event.count / steps,
             "ms_per_step": self_time(event) / 1000 / steps} for event in events]


class Packer:
    """Re-packs the runs this call finished, one archive per model, whenever another finishes."""

    def __init__(self, profile_dir: Path, out: Path):
        self.profile_dir, self.out = profile_dir, out
        self.before = record.published_runs(profile_dir)  # committed runs stay out of the archives
        self.packed: set[str] = set()

    def __call__(self) -> int:
        # New runs, and runs done again (a new summary): what this call made.
        new = {name for name, stamp in record.published_runs(self.profile_dir).items() if self.before.get(name) != stamp}
        for model in sorted({name.split("-")[0] for name in new}):
            runs = {name for name in new if name.startswith(f"{model}-")}
            if runs != {name for name in self.packed if name.startswith(f"{model}-")}:  # only archives that grew
                pack_runs(self.profile_dir, runs, self.out / f"results-{self.profile_dir.name}-{model}.tgz")
        self.packed = new
        return len(self.packed)


def _sweep_command(profile: str, only: str, seeds, jobs: int | None, data_dir, results_root) -> list[str]:
    # Committed runs are kept even where the code has changed since: device time goes to missing runs.
    command = [sys.executable, "-m", "lab2", "sweep", "--profile", profile, "--only", only, "--keep-finished"]
    command += ["--seeds", ",".join(map(str, seeds))] if seeds else []
    command += ["--jobs", str(jobs)] if jobs else []
    command += ["--data-dir", str(data_dir)] if data_dir else []
    command += ["--results", str(results_root)] if results_root else []
    return command


def run_lanes(lanes: list[Lane], command_for, deadline: float, packer: Packer, environment: dict) -> list[dict]:
    """Run each lane's sweeps in turn, the lanes side by side, packing as runs finish; stop at the deadline."""
    pending = {lane.name: list(lane.sweeps) for lane in lanes}
    running: dict[str, tuple[subprocess.Popen, dict]] = {}
    outcomes = []

    def start_next(lane: str) -> None:
        if pending[lane]:
            only, seeds = pending[lane].pop(0)
            record = {"lane": lane, "only": only, "seeds": seeds, "started_s": time.time()}
            running[lane] = (subprocess.Popen(command_for(only, seeds), env=environment), record)

    for lane in pending:
        start_next(lane)
    while running and time.time() < deadline:
        time.sleep(PACK_EVERY_S)
        packer()
        for lane, (process, record) in list(running.items()):
            if process.poll() is not None:
                del running[lane]
                wall_s = round(time.time() - record.pop("started_s"), 1)
                outcomes.append({**record, "exit_code": process.returncode, "wall_s": wall_s})
                _say(f"gpu-check: sweep {record['only']} seeds {record['seeds'] or 'all'} exit code "
                     f"{process.returncode} after {outcomes[-1]['wall_s']} s; {packer()} runs packed")
                start_next(lane)
    if running:
        _say("gpu-check: time budget reached, stopping the sweeps (a later call resumes them)")
        for process, _ in running.values():
            process.send_signal(signal.SIGTERM)
        for lane, (process, record) in running.items():
            try:
                process.wait(timeout=SWEEP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            wall_s = round(time.time() - record.pop("started_s"), 1)
            outcomes.append({**record, "exit_code": "stopped at the budget", "wall_s": wall_s})
    packer()
    return outcomes


def gpu_check(profile: str = "full", budget_s: float = 480, jobs: int | None = None, data_dir=None,
              dry_run: bool = False, out: Path = PROJECT_ROOT / "results" / "gpu-check") -> int:
    started = time.time()
    deadline = started + budget_s - SWEEP_GRACE_S
    if not torch.cuda.is_available() and not dry_run:
        _say("gpu-check: no CUDA device here; rehearse with --dry-run")
        return 2
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # A rehearsal sweeps the smoke profile for real, into the output folder, not results/.
    results_root = out / "dry-run-results" if dry_run else None
    profile = "smoke" if dry_run else profile
    profile_dir = (results_root or PROJECT_ROOT / "results") / profile
    report = {"profile": profile, "budget_s": budget_s, "dry_run": dry_run}

    def stage(name: str, function):
        stage_started = time.time()
        try:
            report[name] = function()
        except Exception as error:  # noqa: BLE001 - a failed stage must not cost the sweep
            report[name] = {"error": f"{type(error).__name__}: {error}"}
        write_json(out / REPORT_FILE, report)
        shown = f"{len(report[name])} rows, above" if isinstance(report[name], list) else json.dumps(report[name])
        _say(f"gpu-check: {name} took {time.time() - stage_started:.1f} s: {shown}")
        return report[name]

    stage("device", describe_device)
    capture_tests = start_capture_check()
    stage("data", lambda: check_data(data_dir, profile_dir))
    capture = stage("capture", lambda: capture_verdict(capture_tests))
    step_modes = STEP_MODES if device.type == "cuda" else ("eager",)
    sweep_mode = "cuda_graph" if device.type == "cuda" and capture.get("passed") else "eager"
    stage("bench", lambda: bench_modes(device, dry_run, step_modes))
    stage("epochs", lambda: time_epochs(data_dir, device, dry_run, step_modes))
    stage("profile", lambda: profile_cnn_step(device, dry_run))

    environment = {**os.environ, STEP_MODE_ENV: sweep_mode}
    lane_jobs = jobs or (CUDA_JOBS_PER_LANE if device.type == "cuda" else 1)
    packer = Packer(profile_dir, out)
    _say(f"gpu-check: sweeping {profile} with {sweep_mode} steps, {lane_jobs} jobs per lane, "
         f"until {deadline - started:.0f} s")
    sweep_started = time.time()
    report["sweep_step_mode"] = sweep_mode
    report["sweeps"] = run_lanes(
        sweep_lanes(get_profile(profile).seeds),
        lambda only, seeds: _sweep_command(profile, only, seeds, lane_jobs, data_dir, results_root),
        deadline, packer, environment)
    report["sweep_wall_s"] = round(time.time() - sweep_started, 1)
    report["runs_packed"] = len(packer.packed)
    report["runs_per_minute"] = round(60 * len(packer.packed) / max(report["sweep_wall_s"], 1e-9), 2)
    report["total_wall_s"] = round(time.time() - started, 1)
    write_json(out / REPORT_FILE, report)
    _say(f"gpu-check: done in {report['total_wall_s']} s: {report['runs_packed']} runs packed in {out} "
         f"({report['runs_per_minute']} runs/min)")
    return 0
