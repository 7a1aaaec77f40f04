"""The prepared device call: measure the CNN's step modes, choose the fastest, sweep the missing CNN runs.

A lent GPU gives a session minutes, and only files already in the call's output folder
come back, even when the call is cut off. So every stage writes its result into the
report (`gpu_check.json`, rewritten atomically after each stage) and prints one line,
and while the sweep runs, the runs finished so far are re-packed into one archive per
model (written beside, then renamed) every time another one finishes.

The MLP half of the full profile is done, so the call measures and sweeps the CNN only.
Stages: the device and versions; the data and its fingerprint (against the committed
manifest, since run ids hash it); the correctness check of each step mode beyond eager
(tests/test_step.py on this device: captured and compiled steps against eager ones, run
while the data decodes); a mode whose check fails is neither measured nor used. For
eager and every mode that passed: the lab2-vs-torch.nn CNN benchmark; one CNN epoch of
the full protocol (TF32, and bf16, which is reported, never swept) against the arithmetic
floor; then where an eager CNN step spends its time, and a cold and a warm compile (one
run in a new process with an empty compile cache, then another that finds it filled).
The sweep uses the mode whose run is estimated fastest, compile and capture included
(`choose_sweep_mode`), unless $LAB2_STEP_MODE names one, and records it in every run's
env.json. It is one `sweep --only 'cnn/*' --keep-finished`: only missing runs, seed 0 of
every setting first, then seeds 1 and 2 (the sweep's seed-major order), as many at once as
the sweep's default for the device (4 on a GPU) or --jobs, stopped cleanly at the time
budget. Every other compile of the call writes to one inductor cache, so the checks, the
stages and the sweep's runs of a setting compile it once between them.
`--dry-run` rehearses all of it on a CPU: toy sizes, and a real sweep of the smoke
profile's CNN runs into the output folder.
"""

import dataclasses
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lab2 import PROJECT_ROOT
from lab2.core.atomic import write_json
from lab2.tools.bench import make_trainer, random_batch, run_bench
from lab2.core.config import RunConfig, flag
from lab2.core.data import load_cifar10, split
from lab2.core.models import multiply_adds
from lab2.runs import record
from lab2.runs.archive import pack_runs
from lab2.runs.grid import baseline_config, plan
from lab2.runs.manifest import MANIFEST_FILE, read_manifest
from lab2.core.step import COMPILE_CACHE_ENV, STEP_MODE_ENV, choose_step_mode, modes_on
from lab2.core.train import fit

# Training FLOPs per image: 2 per multiply-add of the forward pass (conv1 + conv2 + linear; for the
# report's CNN, C = 256, 0.35 GFLOP), times 3 with the backward pass.
TRAIN_FLOP_PER_MULTIPLY_ADD = 3 * 2
TF32_PEAK_FLOPS = {"H100": 495e12, "H200": 495e12}  # dense TF32 tensor-core peak, vendor datasheets
SWEEP_GRACE_S = 30  # after SIGTERM, time for a sweep to stop its runs and kernels
PACK_EVERY_S = 5  # how often the sweep's results folder is looked at for newly finished runs
REPORT_FILE = "gpu_check.json"
SWEPT = "cnn/*"  # the MLP half is done: a call's sweep time goes to the CNN


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
    manifest = profile_dir / MANIFEST_FILE
    if manifest.is_file():
        expected = read_manifest(manifest).get("data_fingerprint")
        info["matches_manifest"] = expected == dataset.fingerprint
        if not info["matches_manifest"]:
            _say(f"gpu-check: WARNING: data fingerprint {dataset.fingerprint[:12]} differs from {manifest}'s "
                 f"{str(expected)[:12]}: the runs made here get other ids than the committed ones")
    return info


def start_mode_check(mode: str, device: torch.device) -> subprocess.Popen:
    """Start the step tests of one mode on this device, slow ones included, to run while the data decodes.

    tests/test_step.py names each case by device and mode (`[cuda-compiled-...]`), so a
    keyword selects one mode's tests on one device.
    """
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_step.py",
               "-m", "slow or not slow", "-k", f"{device.type} and {mode}"]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def check_verdict(tests: subprocess.Popen) -> dict:
    """A mode's tests' outcome: passed only when some ran and none failed (pytest exit code 0)."""
    output, _ = tests.communicate()
    lines = output.strip().splitlines()
    verdict = {"passed": tests.returncode == 0, "pytest": lines[-1] if lines else "", "exit_code": tests.returncode,
               "failures": [line for line in lines if line.startswith("FAILED")][:10]}
    if not verdict["passed"]:  # the assertions' own words, so that one call is enough to tell why
        verdict["details"] = [line for line in lines if line.startswith(("E ", ">"))][:40]
    return verdict


TINY_SIZES = {"train_size": 500, "eval_size": 200, "channels": 8}  # a rehearsal's CNN (--dry-run)


def epoch_case(tiny: bool, precision: str = "tf32") -> RunConfig:
    """The CNN run timed by the epoch and compile stages: the report's best (params/: its baseline), two
    epochs, toy sizes when tiny."""
    sizes = TINY_SIZES if tiny else {}
    return dataclasses.replace(baseline_config("cnn"), num_epochs=2, precision=precision, **sizes)


def _floor_ratio(config: RunConfig, images: int, seconds: float, device: torch.device) -> dict:
    """The CNN epoch's TF32 arithmetic floor on this GPU and how many times slower the epoch was."""
    if config.model != "cnn" or device.type != "cuda":
        return {}
    name = torch.cuda.get_device_name(device)
    peak = next((flops for key, flops in TF32_PEAK_FLOPS.items() if key in name), None)
    if peak is None:
        return {}
    floor = images * TRAIN_FLOP_PER_MULTIPLY_ADD * multiply_adds(config) / peak
    return {"tf32_floor_seconds": floor, "times_floor": seconds / floor}


def time_epochs(data_dir, device: torch.device, tiny: bool, step_modes) -> list[dict]:
    """Seconds of the CNN's first epoch (autotuning, compile, capture included) and second, per mode and precision.

    Eager first, and each case on its own: a capture or compile that breaks must not cost the eager numbers.
    """
    dataset = load_cifar10(data_dir)
    rows = []
    for mode in step_modes:
        for precision in ("tf32", "bf16"):
            config = epoch_case(tiny, precision)
            splits = split(dataset, config.train_size, config.eval_size)
            row = {"model": config.model, "precision": config.precision, "step_mode": mode,
                   "channels": config.channels, "images": len(splits.train_images)}
            try:
                history = fit(config, splits, device, progress=False, step_mode=mode).history
            except Exception as error:  # noqa: BLE001 - reported in its row; the other cases go on
                row["error"] = f"{type(error).__name__}: {error}"
            else:
                seconds = history[-1]["seconds"]
                row.update(first_epoch_seconds=history[0]["seconds"], epoch_seconds=seconds,
                           images_per_s=len(splits.train_images) / seconds,
                           **_floor_ratio(config, len(splits.train_images), seconds, device))
            rows.append(row)
            _say(f"gpu-check: epoch {json.dumps(row)}")
    return rows


def time_compiles(data_dir, tiny: bool, scratch: Path) -> dict:
    """A cold and a warm compile: the epoch case trained by `python -m lab2 train` in compiled mode, twice.

    Each is a new process, as a sweep's run is; they share a compile cache that is empty
    before the first. The first epoch holds the compile (and, on a GPU, the capture).
    """
    config = epoch_case(tiny)
    defaults = RunConfig()
    flags = [part for name, value in config.to_dict().items() if value != getattr(defaults, name)
             for part in (flag(name), str(value))]
    flags += ["--data-dir", str(data_dir)] if data_dir else []
    environment = {**os.environ, STEP_MODE_ENV: "compiled", COMPILE_CACHE_ENV: str(scratch / "compile-cache")}
    runs = {}
    for name in ("cold", "warm"):
        run_dir = scratch / name
        started = time.time()
        done = subprocess.run([sys.executable, "-m", "lab2", "train", *flags, "--quiet", "--out", str(run_dir)],
                              cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name} run exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        run = record.read_run(run_dir)
        if run.status == record.CORRUPT:
            raise RuntimeError(f"{name} run: {run.problem()}")
        seconds = [epoch["seconds"] for epoch in run.epochs]
        runs[name] = {"process_seconds": round(time.time() - started, 1), "first_epoch_seconds": seconds[0],
                      "epoch_seconds": seconds[-1], "step_mode": run.environment["step_mode"]}
    return runs


def bench_modes(device: torch.device, tiny: bool, step_modes) -> list[dict]:
    """lab2's layers against torch.nn's in the CNN, in each step mode, eager first, each case on its own."""
    rows = []
    for mode in step_modes:
        try:
            channels = TINY_SIZES["channels"] if tiny else baseline_config("cnn").channels
            result, = run_bench(["cnn"], device, channels, repeats=1 if tiny else 7,
                                steps_per_block=2 if tiny else 20, modes=(mode,))
            row = dict(vars(result), ratio=result.ratio)
        except Exception as error:  # noqa: BLE001 - reported in its row; the other cases go on
            row = {"model": "cnn", "step_mode": mode, "error": f"{type(error).__name__}: {error}"}
        rows.append(row)
        _say(f"gpu-check: bench {json.dumps(row)}")
    return rows


def profile_cnn_step(device: torch.device, tiny: bool, steps: int = 20, top: int = 15) -> list[dict]:
    """Where an eager training step of the report's best CNN (TF32) spends its time: the costliest kernels per step."""
    from torch.profiler import ProfilerActivity, profile

    config = baseline_config("cnn")
    if tiny:
        config = dataclasses.replace(config, channels=TINY_SIZES["channels"])
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


def choose_sweep_mode(epochs: list[dict], compiles: dict, num_epochs: int, seeds: int) -> dict:
    """The step mode whose CNN run is estimated fastest: its first epoch plus num_epochs - 1 more.

    The first epoch holds what a mode pays once per run: cuDNN's autotuning, a capture, a
    compile. A setting compiles cold for its first seed and loads warm from the call's cache
    for its other seeds, so compiled's first epoch is their mean over the profile's seeds
    (the epoch stage's own, when the compile stage has no numbers). TF32 rows only: the
    protocol's precision.
    """
    estimates = {}
    for row in epochs:
        if row["precision"] != "tf32" or "error" in row:
            continue
        first = row["first_epoch_seconds"]
        if row["step_mode"] == "compiled" and {"cold", "warm"} <= set(compiles):
            first = (compiles["cold"]["first_epoch_seconds"]
                     + (seeds - 1) * compiles["warm"]["first_epoch_seconds"]) / seeds
        estimates[row["step_mode"]] = round(first + (num_epochs - 1) * row["epoch_seconds"], 2)
    mode = min(estimates, key=estimates.get) if estimates else "eager"
    return {"mode": mode, "estimated_run_seconds": estimates, "num_epochs": num_epochs, "seeds": seeds}


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


def sweep_command(profile: str, jobs: int | None, data_dir, results_root) -> list[str]:
    """The call's one sweep: the missing CNN runs of every seed, which the sweep orders seed-major.

    Committed runs are kept even where the code has changed since: device time goes to missing runs.
    Without `jobs`, the sweep runs as many at once as its default for the device.
    """
    command = [sys.executable, "-m", "lab2", "sweep", "--profile", profile, "--only", SWEPT, "--keep-finished"]
    command += ["--jobs", str(jobs)] if jobs else []
    command += ["--data-dir", str(data_dir)] if data_dir else []
    command += ["--results", str(results_root)] if results_root else []
    return command


def run_sweep(command: list[str], deadline: float, packer: Packer, environment: dict) -> dict:
    """Run the sweep, packing as its runs finish; at the deadline stop it (SIGTERM, then a grace period)."""
    started = time.time()
    process = subprocess.Popen(command, env=environment)
    while process.poll() is None and time.time() < deadline:
        try:
            process.wait(timeout=max(0.0, min(PACK_EVERY_S, deadline - time.time())))
        except subprocess.TimeoutExpired:
            pass
        packer()
    exit_code = process.poll()
    if exit_code is None:
        _say("gpu-check: time budget reached, stopping the sweep (a later call resumes it)")
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SWEEP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        exit_code = "stopped at the budget"
    return {"command": command[3:], "exit_code": exit_code, "wall_s": round(time.time() - started, 1),
            "runs_packed": packer()}


def gpu_check(profile: str = "full", budget_s: float = 480, jobs: int | None = None, data_dir=None,
              dry_run: bool = False, out: Path = PROJECT_ROOT / "results" / "gpu-check") -> int:
    started = time.time()
    deadline = started + budget_s - SWEEP_GRACE_S
    if not torch.cuda.is_available() and not dry_run:
        _say("gpu-check: no CUDA device here; rehearse with --dry-run")
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    requested = os.environ.get(STEP_MODE_ENV, "auto")
    try:
        forced = None if requested == "auto" else choose_step_mode(device, requested)
    except ValueError as error:
        _say(f"gpu-check: ${STEP_MODE_ENV}: {error}")
        return 2
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # A rehearsal sweeps the smoke profile for real, into the output folder, not results/.
    results_root = out / "dry-run-results" if dry_run else None
    profile = "smoke" if dry_run else profile
    profile_dir = (results_root or PROJECT_ROOT / "results") / profile
    # One inductor cache for the compiles of this call (checks, stages, the sweep's runs), empty at its
    # start: a setting is compiled once. Outside `out`, whose files all travel home.
    scratch = Path(tempfile.mkdtemp(prefix="lab2-gpu-check-"))
    os.environ[COMPILE_CACHE_ENV] = str(scratch / "compile-cache")
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

    try:
        stage("device", describe_device)
        checked = [mode for mode in modes_on(device) if mode != "eager"]  # eager is the reference
        tests = {mode: start_mode_check(mode, device) for mode in checked}
        stage("data", lambda: check_data(data_dir, profile_dir))
        checks = stage("checks", lambda: {mode: check_verdict(process) for mode, process in tests.items()})
        step_modes = ["eager"] + [mode for mode in checked if checks.get(mode, {}).get("passed")]
        stage("bench", lambda: bench_modes(device, dry_run, step_modes))
        epochs = stage("epochs", lambda: time_epochs(data_dir, device, dry_run, step_modes))
        stage("profile", lambda: profile_cnn_step(device, dry_run))
        compiles = stage("compile", lambda: time_compiles(data_dir, dry_run, scratch / "compile-measure")
                         if "compiled" in step_modes else {"skipped": "compiled did not pass its check"})

        cnn_runs = [run for run in plan(profile).runs if run.config.model == "cnn"]
        choice = choose_sweep_mode(epochs if isinstance(epochs, list) else [], compiles,
                                   max(run.config.num_epochs for run in cnn_runs),
                                   len({run.config.seed for run in cnn_runs}))
        if forced:  # the operator's word wins; what was measured is still reported
            choice.update(mode=forced, chosen_by=STEP_MODE_ENV)
        report["sweep_step_mode"] = choice
        write_json(out / REPORT_FILE, report)

        packer = Packer(profile_dir, out)
        if time.time() >= deadline:
            _say("gpu-check: the stages used the whole budget; no sweep")
            report["sweep"] = {"skipped": "no time left"}
        else:
            _say(f"gpu-check: sweeping {profile} {SWEPT} with {choice['mode']} steps until {deadline - started:.0f} s "
                 f"(estimated seconds per run: {choice['estimated_run_seconds']})")
            environment = {**os.environ, STEP_MODE_ENV: choice["mode"]}
            report["sweep"] = run_sweep(sweep_command(profile, jobs, data_dir, results_root), deadline, packer,
                                        environment)
            report["runs_per_minute"] = round(60 * len(packer.packed) / max(report["sweep"]["wall_s"], 1e-9), 2)
        report["runs_packed"] = len(packer.packed)
        report["compile_cache_mb"] = round(sum(f.stat().st_size for f in scratch.rglob("*") if f.is_file()) / 2**20, 1)
        report["total_wall_s"] = round(time.time() - started, 1)
        write_json(out / REPORT_FILE, report)
        _say(f"gpu-check: done in {report['total_wall_s']} s: {report['runs_packed']} runs packed in {out} "
             f"({report.get('runs_per_minute', 0)} runs/min)")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
