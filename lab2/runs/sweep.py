"""Run a profile's grid through papermill: cached, parallel, failure-isolated, resumable.

Each run executes book/run.ipynb with papermill, in a process of its own, into a hidden
staging folder `.<run-id>.partial/`; when papermill exits, the folder is renamed to
`<run-id>/` in one step. So a run folder
exists only once its run has finished (ok, diverged or failed), a sweep killed part-way
leaves only staging folders, and the next sweep deletes those and starts them again.
"""

import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lab2.atomic import write_json
from lab2.config import run_id
from lab2.data import PROJECT_ROOT, DataError, load_cifar10
from lab2.runs.grid import PARAMS_DIR, GridError, PlannedRun, plan
from lab2.report.results import FINISHED_STATUSES, RESULTS_ROOT  # a failed run is retried by the next sweep
from lab2.train import failed_summary

RUN_NOTEBOOK = PROJECT_ROOT / "book" / "run.ipynb"
MANIFEST = "manifest.json"
CUDA_JOBS = 4  # small runs leave a GPU mostly idle; see the README for the measurement


class SweepError(ValueError):
    """Bad sweep input (params, profile, data): reported before any run starts."""


@dataclass
class RunTask:
    """What a worker process needs to execute one run."""

    run_id: str
    parameters: dict
    run_dir: str
    threads: int


def run_status(run_dir: Path) -> str | None:
    """The status recorded in a finished run's summary.json, or None if there is none."""
    try:
        return json.loads((run_dir / "summary.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def default_jobs(device: str) -> int:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return CUDA_JOBS
    # One single-threaded run per core beats one run on every core: the models are small.
    return max(1, min(4, os.cpu_count() or 1))


def staging_dir(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.partial"


def _start(task: RunTask) -> subprocess.Popen:
    """Launch papermill for one run, into its staging folder, in a process group of its own.

    A separate process (not a pool worker) so that stopping a sweep can kill it outright;
    its kernel notices that its parent is gone and exits too.
    """
    staging = staging_dir(Path(task.run_dir))
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    parameters = {**task.parameters, "out_dir": str(staging)}
    command = [sys.executable, "-m", "papermill", str(RUN_NOTEBOOK), str(staging / "run.ipynb"),
               "-y", json.dumps(parameters), "--cwd", str(PROJECT_ROOT), "--no-progress-bar"]
    # Papermill's and the kernel's own chatter goes to a log in the run folder, not over the
    # sweep's progress bar; an error in a cell is kept in the executed notebook.
    with open(staging / "kernel.log", "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                                start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": str(task.threads)})


def _notebook_error(notebook: Path) -> str | None:
    """The first error a cell of the executed notebook raised, as 'Name: message'."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return None
    for cell in cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def _publish(task: RunTask, return_code: int, seconds: float) -> dict:
    """Record a failure if there was one, then make the run visible in one rename."""
    final = Path(task.run_dir)
    staging = staging_dir(final)
    error = None
    if return_code != 0 or run_status(staging) is None:
        error = (_notebook_error(staging / "run.ipynb")
                 or f"papermill exited with code {return_code}; see {final / 'kernel.log'}")
        write_json(staging / "summary.json", failed_summary(error, seconds))
    shutil.rmtree(final, ignore_errors=True)  # an earlier failed attempt, now replaced
    os.replace(staging, final)
    return {"run_id": task.run_id, "status": run_status(final), "seconds": seconds, "error": error}


def _select(runs: list[PlannedRun], ids: list[str], only: str | None, seeds: list[int] | None = None):
    chosen = list(zip(runs, ids))
    if seeds is not None:
        chosen = [(run, rid) for run, rid in chosen if run.config.seed in seeds]
    if only is None:
        return chosen
    chosen = [(run, rid) for run, rid in chosen
              if fnmatch.fnmatch(rid, only) or any(fnmatch.fnmatch(e, only) for e in run.experiments)]
    if not chosen:
        raise SweepError(f"--only {only!r} matches no run id or experiment (experiments look like 'mlp/best')")
    return chosen


def check_seeds(seeds: list[int] | None, profile) -> None:
    """Refuse a --seeds value that names a seed the profile does not run."""
    if seeds is None:
        return
    unknown = [seed for seed in seeds if seed not in profile.seeds]
    if unknown or not seeds:
        raise SweepError(f"--seeds: profile {profile.name} has no seed {', '.join(map(str, unknown)) or '(none given)'}; "
                         f"allowed: {', '.join(map(str, profile.seeds))}")


def _print_table(rows: list[tuple[str, str, str, str]]) -> None:
    print(f"{'run id':<18} {'status':<10} {'seconds':>8}  experiments")
    for rid, status, seconds, experiments in rows:
        print(f"{rid:<18} {status:<10} {seconds:>8}  {experiments}")


def sweep(profile: str = "quick", jobs: int | None = None, only: str | None = None, dry_run: bool = False,
          data_dir=None, device: str = "auto", results_root: Path | None = None,
          params_dir: Path = PARAMS_DIR, seeds: list[int] | None = None) -> int:
    """Execute every missing run of the profile's grid; 0 if all runs finished, 1 otherwise."""
    try:
        chosen_profile, runs = plan(profile, Path(params_dir))
    except GridError as error:
        raise SweepError(str(error)) from None
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs: must be an integer >= 1, got {jobs}")
    check_seeds(seeds, chosen_profile)
    try:
        dataset = load_cifar10(data_dir)
    except DataError as error:
        raise SweepError(f"--data-dir: {error}") from None
    ids = [run_id(run.config, dataset.fingerprint) for run in runs]
    selected = _select(runs, ids, only, seeds)
    out = Path(results_root or RESULTS_ROOT) / chosen_profile.name
    done = {rid for _, rid in selected if run_status(out / rid) in FINISHED_STATUSES}
    cached = [(run, rid) for run, rid in selected if rid in done]
    pending = [(run, rid) for run, rid in selected if rid not in done]

    if dry_run:
        _print_table([(rid, "cached" if rid in done else "would run", "", ", ".join(run.experiments))
                      for run, rid in selected])
        print(f"\nprofile {chosen_profile.name}: {len(selected)} runs, {len(cached)} cached, {len(pending)} to run")
        return 0

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.partial"):  # left by a sweep that was killed
        shutil.rmtree(stale)
    write_json(out / MANIFEST, {
        "profile": chosen_profile.name,
        "description": chosen_profile.description,
        "seeds": chosen_profile.seeds,
        "data_source": dataset.source,
        "data_fingerprint": dataset.fingerprint,
        "runs": [{"run_id": rid, "experiments": run.experiments, "config": run.config.to_dict()}
                 for run, rid in zip(runs, ids)],
    })
    jobs = jobs or default_jobs(device)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    data_path = str(Path(data_dir).resolve()) if data_dir is not None else None
    tasks = [RunTask(rid, {**run.config.to_dict(), "device": device, "data_dir": data_path}, str(out / rid), threads)
             for run, rid in pending]

    outcomes = _execute(tasks, jobs, chosen_profile.name)
    experiments_of = {rid: ", ".join(run.experiments) for run, rid in selected}
    rows = [(rid, "cached", "", experiments_of[rid]) for _, rid in cached]
    rows += [(o["run_id"], o["status"], f"{o['seconds']:.1f}", experiments_of[o["run_id"]]) for o in outcomes]
    _print_table(rows)
    failed = [o for o in outcomes if o["status"] not in FINISHED_STATUSES]
    ran = len(outcomes) - len(failed)
    print(f"\nprofile {chosen_profile.name}: {ran} ran, {len(cached)} cached, {len(failed)} failed "
          f"-> {out}")
    for outcome in failed:
        print(f"  {outcome['run_id']} failed: {outcome['error']}")
    interrupted = len(outcomes) < len(tasks)
    if interrupted:
        print(f"  interrupted: {len(tasks) - len(outcomes)} runs not finished; run the sweep again to resume")
    return 1 if failed or interrupted else 0


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _execute(tasks: list[RunTask], jobs: int, profile: str) -> list[dict]:
    """Run tasks, `jobs` processes at a time, with a progress bar; stop cleanly on Ctrl-C or SIGTERM."""
    outcomes: list[dict] = []
    if not tasks:
        return outcomes
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    bar = tqdm(total=len(tasks), desc=f"sweep {profile}", unit="run")
    queue, running = list(tasks), {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                task = queue.pop(0)
                running[task.run_id] = (task, _start(task), time.perf_counter())
            time.sleep(0.2)
            for rid, (task, process, started) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[rid]
                outcomes.append(_publish(task, process.returncode, time.perf_counter() - started))
                bar.update(1)
                bar.set_postfix(failed=sum(o["status"] not in FINISHED_STATUSES for o in outcomes))
    except KeyboardInterrupt:
        bar.write("sweep interrupted: stopping the runs in progress; finished runs are kept")
        for _, process, _ in running.values():
            # The whole process group: the run's process and anything it started.
            os.killpg(process.pid, signal.SIGKILL)
        for _, process, _ in running.values():
            process.wait()
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous)
    return outcomes

