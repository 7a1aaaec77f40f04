"""Run a profile's grid through papermill: cached, parallel, failure-isolated, resumable.

Each run executes book/run.ipynb into a hidden staging folder `.<run-id>.partial/`; when
papermill returns, the folder is renamed to `<run-id>/` in one step. So a run folder
exists only once its run has finished (ok, diverged or failed), a sweep killed part-way
leaves only staging folders, and the next sweep deletes those and starts them again.
"""

import fnmatch
import json
import os
import shutil
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from lab2.atomic import write_json
from lab2.config import run_id
from lab2.data import PROJECT_ROOT, DataError, load_cifar10
from lab2.grid import PARAMS_DIR, GridError, PlannedRun, plan

RESULTS_ROOT = PROJECT_ROOT / "results"
RUN_NOTEBOOK = PROJECT_ROOT / "book" / "run.ipynb"
MANIFEST = "manifest.json"
FINISHED_STATUSES = ("ok", "diverged")  # a failed run is retried by the next sweep
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


def execute_run(task: RunTask) -> dict:
    """Execute the run notebook for one config (in a worker process); returns its outcome."""
    import papermill

    os.environ["OMP_NUM_THREADS"] = str(task.threads)  # inherited by the notebook's kernel
    final = Path(task.run_dir)
    staging = final.parent / f".{final.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # The kernel inherits this process's stderr; its start-up chatter goes to a log in the run
    # folder rather than over the sweep's progress bar (cell errors are in the notebook).
    log = os.open(staging / "kernel.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    os.close(log)
    started = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(RUN_NOTEBOOK), str(staging / "run.ipynb"),
            parameters={**task.parameters, "out_dir": str(staging)},
            cwd=str(PROJECT_ROOT), progress_bar=False, log_output=False,
        )
    except Exception as exc:  # noqa: BLE001 - any failure is recorded, and the sweep goes on
        error = f"{type(exc).__name__}: {exc}".strip()[-2000:]
    if error is not None or run_status(staging) is None:
        from lab2.train import SUMMARY_KEYS

        summary = {key: None for key in SUMMARY_KEYS}
        summary.update(status="failed", seconds=time.perf_counter() - started, error=error or "no summary written")
        write_json(staging / "summary.json", summary)
    shutil.rmtree(final, ignore_errors=True)  # an earlier failed attempt, now replaced
    os.replace(staging, final)
    return {"run_id": task.run_id, "status": run_status(final), "seconds": time.perf_counter() - started,
            "error": error}


def _select(runs: list[PlannedRun], ids: list[str], only: str | None):
    if only is None:
        return list(zip(runs, ids))
    chosen = [(run, rid) for run, rid in zip(runs, ids)
              if fnmatch.fnmatch(rid, only) or any(fnmatch.fnmatch(e, only) for e in run.experiments)]
    if not chosen:
        raise SweepError(f"--only {only!r} matches no run id or experiment (experiments look like 'mlp/best')")
    return chosen


def _print_table(rows: list[tuple[str, str, str, str]]) -> None:
    print(f"{'run id':<18} {'status':<10} {'seconds':>8}  experiments")
    for rid, status, seconds, experiments in rows:
        print(f"{rid:<18} {status:<10} {seconds:>8}  {experiments}")


def sweep(profile: str = "quick", jobs: int | None = None, only: str | None = None, dry_run: bool = False,
          data_dir=None, device: str = "auto", results_root: Path | None = None,
          params_dir: Path = PARAMS_DIR) -> int:
    """Execute every missing run of the profile's grid; 0 if all runs finished, 1 otherwise."""
    try:
        chosen_profile, runs = plan(profile, Path(params_dir))
    except GridError as error:
        raise SweepError(str(error)) from None
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs: must be an integer >= 1, got {jobs}")
    try:
        dataset = load_cifar10(data_dir)
    except DataError as error:
        raise SweepError(f"--data-dir: {error}") from None
    ids = [run_id(run.config, dataset.fingerprint) for run in runs]
    selected = _select(runs, ids, only)
    out = Path(results_root or RESULTS_ROOT) / chosen_profile.name
    cached = [(run, rid) for run, rid in selected if run_status(out / rid) in FINISHED_STATUSES]
    pending = [(run, rid) for run, rid in selected if run_status(out / rid) not in FINISHED_STATUSES]

    if dry_run:
        _print_table([(rid, "cached" if (run, rid) in cached else "would run", "", ", ".join(run.experiments))
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


def _worker_init() -> None:
    # SIGTERM unwinds like Ctrl-C, so nbclient shuts the run's kernel down on the way out.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def _execute(tasks: list[RunTask], jobs: int, profile: str) -> list[dict]:
    """Run tasks on `jobs` processes with a progress bar; stop cleanly on Ctrl-C or SIGTERM."""
    outcomes: list[dict] = []
    if not tasks:
        return outcomes

    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    bar = tqdm(total=len(tasks), desc=f"sweep {profile}", unit="run")
    # spawn, not fork: a forked copy of a process that has touched torch threads can deadlock.
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_worker_init)
    try:
        futures = {pool.submit(execute_run, task) for task in tasks}
        while futures:
            done, futures = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                outcomes.append(future.result())
                bar.update(1)
                bar.set_postfix(failed=sum(o["status"] not in FINISHED_STATUSES for o in outcomes))
    except KeyboardInterrupt:
        bar.write("sweep interrupted: stopping workers; finished runs are kept")
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        signal.signal(signal.SIGTERM, previous)
    return outcomes
