"""Where runs execute: a local pool of processes, or a Dask cluster. Both call `execute_run`.

`execute_run(task)` executes one run: book/run.ipynb through papermill in a child process
(lab2.runs.child), into the run's staging folder, then published by lab2.runs.staging. A CPU
run's child is forked from a fork server that has imported everything a run needs, once
per sweep; a CUDA run's child (which must not inherit a parent's CUDA state) and any run on
a Dask worker that may not have children of its own starts as a fresh Python. Either way
the child dies with whatever started it, kills its kernel when it is told to stop, and runs
in a process group of its own: a run that is told to stop kills that whole process tree and
leaves nothing behind.
"""

import json
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path

import psutil

from lab2 import PROJECT_ROOT
from lab2.core.summary import FAILED, FINISHED_STATUSES
from lab2.runs import record
from lab2.runs.fingerprint import RUN_NOTEBOOK, checkout_code_files, code_fingerprint, project_path
from lab2.runs.staging import discard, publish, stage, staging_dir

# The clusters a sweep can start (--cluster): Dask on this machine, one worker per GPU, or Slurm jobs.
CLUSTERS = ("local", "local-gpus", "slurm")
POLL_S = 0.5  # how often a running run checks that it should go on
STOP_GRACE_S = 10  # after SIGTERM, time for a papermill child to stop its kernel
CHILD_MODULE = "lab2.runs.child"  # the run's process: imported once by the fork server, forked per run

# The fork server is started on the first forked run and lives as long as this process.
FORK_SERVER = multiprocessing.get_context("forkserver")
FORK_SERVER.set_forkserver_preload([CHILD_MODULE])
_forked_code: dict | None = None  # the checkout's code when the fork server imported it
_forked_code_lock = threading.Lock()


class RunInterrupted(Exception):
    """The sweep was stopped while this run was executing."""


@dataclass
class RunTask:
    """What an executor needs to execute one run."""

    run_id: str
    parameters: dict  # the run notebook's parameters (notebook_parameters)
    run_dir: str
    threads: int | None  # torch threads for the run (None: run_threads of the worker executing it)


def notebook_parameters(config, device: str, data_dir: str) -> dict:
    """book/run.ipynb's parameters for a run: its whole config as `settings`, where it runs, what it reads."""
    return {"settings": config.to_dict(), "device": device, "data_dir": data_dir}


def _notebook_error(notebook: Path) -> str | None:
    """The first error a cell of the executed notebook raised, as 'Name: message'."""
    for cell in record.read_json(notebook).get("cells", []):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, as a container or taskset sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_threads(slots: int) -> int:
    """Torch threads per run: the usable cores that are not busy, shared by `slots` runs, at most cores // slots.

    Busy is the load over the last minute: on a loaded 2-core machine a run given both cores
    stalled at 411 ms per MLP step against 75 ms with one thread.
    """
    cores = usable_cores()
    busy = min(cores - 1, int(os.getloadavg()[0]))
    return max(1, min(cores // slots, (cores - busy) // slots))


def _worker_slots() -> int:
    """How many runs this process executes at once: a Dask worker's threads, else one."""
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError):
        return 1


def _start(task: RunTask, staging: Path):
    """Launch the child that executes one run, in a process group of its own, its output to kernel.log.

    Returns the child as a subprocess.Popen, or as a ForkedRun with the part of Popen's interface used here.
    """
    parameters = {**task.parameters, "out_dir": str(staging)}
    notebook, output = str(RUN_NOTEBOOK), str(staging / record.NOTEBOOK_FILE)
    threads = task.threads or run_threads(_worker_slots())
    # Both: a Dask nanny sets MKL_NUM_THREADS=1 for its workers, and torch heeds it over OMP_NUM_THREADS.
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = staging / record.KERNEL_LOG
    if _can_fork(parameters["device"]):
        process = FORK_SERVER.Process(target=_forked_child, name=f"lab2-run-{task.run_id}",
                                      args=(notebook, output, parameters, threads, str(log), environment))
        process.start()
        return ForkedRun(process)
    command = [sys.executable, "-m", CHILD_MODULE, notebook, output, json.dumps(parameters), str(threads)]
    with open(log, "wb") as kernel_log:
        return subprocess.Popen(command, stdout=kernel_log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                                start_new_session=True, env={**environment, "LAB2_PARENT_PID": str(os.getpid())})


def _can_fork(device: str) -> bool:
    """Whether a run's child can be forked from the fork server: a CPU run, in a process that may
    have children (a Dask worker is a daemon), while the checkout's code is what the server imported.

    The server imports lab2 once; a run forked from it after an edit would execute the old code
    but record the new. Such runs start as a fresh Python, which imports the code as it is now.
    """
    global _forked_code
    if device != "cpu" or multiprocessing.current_process().daemon:
        return False
    code = code_fingerprint(checkout_code_files())
    with _forked_code_lock:
        _forked_code = _forked_code or code  # the first forked run starts the server, which imports this code
        return code == _forked_code


def start_fork_server() -> None:
    """Start the fork server now rather than with the first CPU run; return once it has imported what runs need.

    From the main thread, the server is started with Ctrl-C ignored: it imports torch and
    papermill for seconds before it ignores SIGINT itself (multiprocessing's forkserver does so
    only after its preloading), and a Ctrl-C meanwhile would print its traceback beside the
    sweep's one line. This process goes on taking Ctrl-C; only the server's start is shielded.
    """
    global _forked_code
    with _forked_code_lock:
        _forked_code = _forked_code or code_fingerprint(checkout_code_files())  # the code the server imports
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the server it spawns
        try:
            multiprocessing.forkserver.ensure_running()  # spawns the server; returns before it has imported anything
        finally:
            signal.signal(signal.SIGINT, previous)
    ready = FORK_SERVER.Process(target=os.getpid)  # the server forks it only after its preloading
    ready.start()
    ready.join()


def _forked_child(notebook: str, output: str, parameters: dict, threads: int, log: str, environment: dict) -> None:
    """The forked child: what Popen does for a fresh one (session, log, environment), then the run."""
    from lab2.runs import child  # imported already: the fork server preloaded it

    os.setsid()
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    os.environ.clear()
    os.environ.update(environment)  # this sweep's environment now, not the fork server's when it started
    child.die_with_parent(os.getppid())
    child.main(notebook, output, parameters, threads)


class ForkedRun:
    """A run's child forked by the fork server, with the part of subprocess.Popen's interface execute_run uses."""

    def __init__(self, process: multiprocessing.Process):
        self._process = process
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode  # -N when killed by signal N, as Popen's

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(f"run child {self.pid}", timeout)
        return self._process.exitcode

    def terminate(self) -> None:
        self._process.terminate()


def stop_process_tree(process) -> None:
    """Stop a run's child and everything under it: its kernel, and whatever the kernel started."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    process.terminate()
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for child in descendants:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(descendants, timeout=STOP_GRACE_S)


def execute_run(task: RunTask, should_stop=lambda: False) -> dict:
    """Execute one run into its staging folder and publish it; the caller holds its claim.

    Returns {run_id, status, seconds, error, host}; status 'interrupted' if should_stop()
    became true first (its staging folder is then removed).
    """
    run_dir = Path(task.run_dir)
    staging = stage(run_dir)
    # The notebook as it was when the run started; the modules are fingerprinted by the run itself.
    notebook_code = code_fingerprint([RUN_NOTEBOOK])
    started = time.perf_counter()
    process = _start(task, staging)
    outcome = {"run_id": task.run_id, "host": socket.gethostname(), "error": None}
    try:
        while process.poll() is None:
            if should_stop():
                raise RunInterrupted
            try:
                process.wait(POLL_S)  # returns as soon as the run ends, not at the next poll
            except subprocess.TimeoutExpired:
                pass
    except BaseException:
        stop_process_tree(process)
        discard(run_dir)
        return {**outcome, "status": "interrupted", "seconds": time.perf_counter() - started}
    seconds = time.perf_counter() - started
    error = None
    if process.returncode != 0 or record.run_status(staging) not in (*FINISHED_STATUSES, FAILED):
        error = (_notebook_error(staging / record.NOTEBOOK_FILE)
                 or f"papermill exited with code {process.returncode}; see {run_dir / record.KERNEL_LOG}")
    status = publish(run_dir, seconds, error, code=notebook_code)
    return {**outcome, "status": status, "seconds": seconds,
            "error": error or record.read_run(run_dir).summary.get("error")}


def failed_outcome(task: RunTask, error: BaseException, where: str) -> dict:
    """Record a run as failed because what executed it broke (not the run itself), and say why.

    When the failure cannot be written either (a full disk, a folder that refuses changes),
    nothing is published: the run stays as it was on disk and the next sweep tries it again.
    """
    cause = _os_reason(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}"
    reason = f"{where} failed: {cause}"
    try:
        status = publish(Path(task.run_dir), 0.0, reason)
    except OSError as unrecorded:
        discard(Path(task.run_dir))
        return {"run_id": task.run_id, "status": FAILED, "seconds": 0.0,
                "error": f"{reason}; the failure could not be written either ({_os_reason(unrecorded)}), "
                         "so nothing of it is kept and the next sweep runs it again"}
    return {"run_id": task.run_id, "status": status, "seconds": 0.0, "error": reason}


def _os_reason(error: OSError) -> str:
    """An OSError as 'what, where': 'No space left on device: results/smoke/.mlp-….partial'."""
    where = error.filename and project_path(Path(error.filename))
    return f"{error.strerror or error}" + (f": {where}" if where else "")


# ---------------------------------------------------------------- executors


class LocalExecutor:
    """`jobs` runs at once on this machine, each in its own papermill process."""

    def __init__(self, jobs: int):
        self.capacity = jobs
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="lab2-run")

    def describe(self) -> str:
        return f"{self.capacity} at once on this machine"

    def submit(self, task: RunTask):
        return self._pool.submit(execute_run, task, self._stop.is_set)

    def wait(self, futures, timeout: float):
        return wait_futures(list(futures), timeout=timeout, return_when=FIRST_COMPLETED).done

    def outcome(self, future, task: RunTask) -> dict:
        try:
            return future.result()
        except Exception as error:  # noqa: BLE001 - papermill could not start, the disk is full: the run failed
            return failed_outcome(task, error, "executing it")

    def stop(self, running: dict) -> None:
        """Stop every running run and wait until each has killed its processes."""
        self._stop.set()
        wait_futures(list(running))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _execute_on_worker(task: RunTask) -> dict:
    """execute_run on a Dask worker: it stops when the scheduler releases the task
    (the client cancelled it, or the client is gone)."""
    from distributed import get_worker

    worker = get_worker()
    key = worker.get_current_task()
    log = logging.getLogger("distributed.worker")

    def released() -> bool:
        state = worker.state.tasks.get(key)
        return state is None or state.state not in ("executing", "long-running")

    log.info("lab2: run %s started on %s (worker pid %d)", task.run_id, worker.address, os.getpid())
    outcome = execute_run(task, released)
    log.info("lab2: run %s %s in %.1f s on %s", task.run_id, outcome["status"], outcome["seconds"], worker.address)
    return {**outcome, "worker": worker.address}


def check_worker(data_dir: str | None, results_dir: str, probe: str, device: str = "auto") -> dict:
    """What one worker sees: the results folder (the client's probe file in it), the data, the code, the device."""
    from lab2.core.data import DataError, load_cifar10
    from lab2.core.train import choose_device

    seen = {"host": socket.gethostname(), "problems": []}
    if not (Path(results_dir) / probe).is_file():
        seen["problems"].append(f"does not see the results folder {results_dir} (or sees another one of that name)")
    try:
        seen["data_fingerprint"] = load_cifar10(data_dir).fingerprint
    except DataError as error:
        seen["problems"].append(f"cannot read the data: {error}")
    try:
        choose_device(device)
    except ValueError as error:
        seen["problems"].append(f"cannot run there: {error}")
    seen["code"] = code_fingerprint(checkout_code_files())
    return seen


class DaskExecutor:
    """Runs on the workers of a Dask cluster: an existing scheduler, or one this sweep starts."""

    def __init__(self, client, cluster=None, name: str = ""):
        self.client, self.cluster, self.name = client, cluster, name
        self.capacity = max(1, sum(client.nthreads().values()))  # followed as workers come and go (wait)
        self._members = self._cluster_members()

    def describe(self) -> str:
        workers = self.client.nthreads()
        return f"{self.capacity} at once on {len(workers)} Dask workers of {self.name}"

    def check(self, data_dir: str | None, results_dir: Path, data_fingerprint: str, device: str = "auto") -> list[str]:
        """Problems that would make a worker's runs wrong or lost; checked before any run is submitted."""
        probe = f".lab2-probe-{uuid.uuid4().hex[:12]}"
        (results_dir / probe).write_text("written by the sweep's client; workers must see it\n")
        try:
            seen = self.client.run(check_worker, data_dir, str(results_dir), probe, device)
        finally:
            (results_dir / probe).unlink(missing_ok=True)
        here = code_fingerprint(checkout_code_files())
        problems = []
        for address, view in sorted(seen.items()):
            where = f"worker {address} ({view['host']})"
            problems += [f"{where} {problem}" for problem in view["problems"]]
            if view.get("data_fingerprint") not in (None, data_fingerprint):
                problems.append(f"{where} reads different data (fingerprint {view['data_fingerprint'][:12]}, "
                                f"here {data_fingerprint[:12]})")
            differing = sorted(name for name in here.keys() | view["code"].keys()
                               if here.get(name) != view["code"].get(name))
            if differing:
                problems.append(f"{where} has different code: {', '.join(differing)}")
        return problems

    def submit(self, task: RunTask):
        return self.client.submit(_execute_on_worker, task, key=f"lab2-run-{task.run_id}-{uuid.uuid4().hex[:8]}",
                                  pure=False)

    def wait(self, futures, timeout: float):
        from distributed import wait
        from distributed.client import FIRST_COMPLETED as DASK_FIRST_COMPLETED

        self._replace_lost_workers()
        # Workers join late (Slurm jobs start as the queue allows) and leave: submit as many runs as they can take.
        try:
            self.capacity = max(1, sum(self.client.nthreads().values()))
        except OSError:  # the scheduler is unreachable just now: the runs' futures will say what became of them
            pass
        try:
            return wait(list(futures), timeout=timeout, return_when=DASK_FIRST_COMPLETED).done
        except TimeoutError:
            return set()

    def _cluster_members(self) -> dict:
        """The workers a cluster this sweep started holds, by name: their Slurm job id (None elsewhere)."""
        if self.cluster is None:
            return {}
        return {name: getattr(worker, "job_id", None) for name, worker in list(self.cluster.workers.items())}

    def _replace_lost_workers(self) -> None:
        """Keep a cluster this sweep started at the size it asked for.

        A worker that ended for good (its Slurm job cancelled, out of walltime, its node lost) is
        dropped by the cluster after `distributed.deploy.lost-worker-timeout` (15 s). Scaling to
        the same size again starts another (a new Slurm job), and Dask retries there the runs the
        lost one held, each up to `distributed.scheduler.allowed-failures` times, then it records
        them failed (KilledWorker). Without this, a sweep whose jobs had all ended would wait
        forever for a worker.
        """
        if self.cluster is None:
            return
        members = self._cluster_members()
        for name, job in self._members.items():
            if name not in members:
                lost = f"Slurm job {job} (worker {name})" if job else f"worker {name}"
                print(f"{self.name}: {lost} has ended; starting another in its place "
                      "(Dask retries there the runs it held)", flush=True)
        self._members = members
        if set(self.cluster.worker_spec) - set(members):
            self.cluster.scale(len(self.cluster.plan))  # the same size: starts only the missing ones

    def outcome(self, future, task: RunTask) -> dict:
        """The run's outcome; a run whose workers kept dying (or that raised) is recorded failed."""
        try:
            return future.result()
        except Exception as error:  # noqa: BLE001 - KilledWorker, a lost connection: any means the run failed
            # A worker of a Slurm cluster is a Slurm job: name it, its log and `scontrol show job` say how it ended.
            job = self._members.get(getattr(getattr(error, "last_worker", None), "name", None))
            return failed_outcome(task, error, f"the Dask worker running it (Slurm job {job})" if job
                                  else "the Dask worker running it")

    def stop(self, running: dict) -> None:
        """Cancel the runs; wait while each worker notices, kills its processes and removes its staging folder."""
        self.client.cancel(list(running), force=True)
        deadline = time.monotonic() + STOP_GRACE_S + 10 * POLL_S
        staging = [staging_dir(Path(task.run_dir)) for task, _ in running.values()]
        while any(folder.exists() for folder in staging) and time.monotonic() < deadline:
            time.sleep(POLL_S)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
