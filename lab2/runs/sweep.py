"""Run a profile's grid: cached by config, data and code, parallel, failure-isolated, resumable.

Each pending run is claimed (lab2.runs.locks), executed by an executor (lab2.runs.executors:
a local pool, or the workers of a Dask cluster) into a hidden staging folder, and published
by one rename (lab2.runs.staging). So a run folder exists only once its run has ended; a
sweep stopped part-way (Ctrl-C, SIGTERM, SIGHUP, its death) stops every run it started and
leaves only staging folders, which the next sweep removes; and two sweeps on one results
folder never run the same run twice: the second waits for the runs the first has claimed
and reports them.
"""

import fnmatch
import os
import signal
import socket
import time
from pathlib import Path

from tqdm import tqdm

from lab2.core.config import run_id
from lab2.core.data import DataError, default_data_dir, load_cifar10, locate, size_problem, split_counts
from lab2.core.summary import FINISHED_STATUSES
from lab2.runs import record
from lab2.runs.executors import (CLUSTERS, DaskExecutor, LocalExecutor, RunTask, failed_outcome, notebook_parameters,
                                 run_threads, start_fork_server, usable_cores)
from lab2.runs.grid import PARAMS_DIR, GridError, PlannedRun, plan
from lab2.runs.locks import claim_holder, try_claim
from lab2.runs.manifest import make_manifest, manifest_changed, write_manifest
from lab2.runs.staging import clean_stale_staging, discard

CUDA_JOBS = 4  # small runs leave a GPU mostly idle; see the README for the measurement
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # Ctrl-C is SIGINT, already a KeyboardInterrupt
RETRY_CLAIMS_S = 2.0  # how often a sweep looks again at runs that another sweep holds
CONNECT_TIMEOUT_S = 20
HANDSHAKE_TIMEOUT_S = 5.0  # a Dask scheduler greets a new connection at once


class SweepError(ValueError):
    """Bad sweep input (params, profile, data, cluster): reported before any run starts."""


def default_jobs(device: str) -> int:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return CUDA_JOBS
    # One single-threaded run per core beats one run on every core: the models are small.
    return max(1, min(4, usable_cores()))


def longest_first(pending: list, data_images: int) -> list:
    """Pending (run, run id) pairs in seed-major order, the longest runs of each seed first, so
    that a long run does not end alone after the others (work = multiply-adds x images x epochs)."""
    from lab2.core.models import multiply_adds

    def work(run) -> int:
        images = run.config.train_size or data_images
        return multiply_adds(run.config) * images * run.config.num_epochs

    seeds = list(dict.fromkeys(run.config.seed for run, _ in pending))
    return sorted(pending, key=lambda pair: (seeds.index(pair[0].config.seed), -work(pair[0])))


def pending_reason(run: record.RunRecord, keep_finished: bool = False) -> str | None:
    """Why a run must execute ('new', 'failed before', 'corrupt', 'code changed: FILES'); None if cached.

    A finished run that recorded no code fingerprint (made before runs recorded one) stays
    cached: its code is unknown, and the book says so. With keep_finished, so does a finished
    run whose code has changed since (an edited message need not cost a GPU hour); the book
    still names the changed files.
    """
    if run.status == record.MISSING:
        return "new"
    if run.status == record.CORRUPT:
        return record.CORRUPT
    if run.status not in FINISHED_STATUSES:
        return "failed before"
    changed = None if keep_finished else record.run_code_changes(run)
    return f"code changed: {', '.join(changed)}" if changed else None


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


def _check_sizes(selected, dataset) -> None:
    """Refuse runs whose subset sizes the data cannot give, naming their experiments, before any run starts."""
    problems: dict[str, dict[str, None]] = {}  # problem -> its experiments, in order, once each
    for run, _ in selected:
        problem = size_problem(dataset, run.config.train_size, run.config.eval_size, run.config.batch_size)
        if problem:
            problems.setdefault(problem, {}).update(dict.fromkeys(run.experiments))
    if problems:
        named = (f"{_first_of(list(experiments))}: {problem}" for problem, experiments in problems.items())
        raise SweepError("; ".join(named) + f" ({dataset.source}); lower it in params/ or the profile")


def _first_of(experiments: list[str]) -> str:
    """'a, b, c and 13 more experiments'."""
    shown = ", ".join(experiments[:3])
    return shown + (f" and {len(experiments) - 3} more experiments" if len(experiments) > 3 else "")


def _results_problem(out: Path, run_dirs: list[Path], writes: bool) -> str | None:
    """Why this sweep could not record its runs in out (None if it can), found before any run starts.

    A real write and a real rename, since permission bits do not tell for root, read-only
    mounts, full disks or immutable folders.
    """
    if not writes:
        return None
    problem = record.check_writable(out)
    if problem:
        return f"--results: {problem}"
    for run_dir in run_dirs:
        if run_dir.exists():  # a failed or changed run, to be replaced by its new one
            probe = run_dir.with_name(f".{run_dir.name}.replace-check")
            try:
                os.replace(run_dir, probe)
                os.replace(probe, run_dir)
            except OSError as error:
                return (f"{run_dir} cannot be replaced ({error.strerror}), so its run could not be published; "
                        "make it writable or remove it")
    return None


def _check_engine(scheduler: str | None, cluster: str | None) -> None:
    """Refuse engine flags that cannot work here, before the data is read."""
    if scheduler and cluster:
        raise SweepError("--scheduler and --cluster: give one (an existing cluster, or one to start)")
    if scheduler:
        problem = _scheduler_problem(scheduler)
        if problem:
            raise SweepError(f"--scheduler {scheduler}: {problem}")
    if cluster is not None and cluster not in CLUSTERS:
        raise SweepError(f"--cluster: must be one of {', '.join(CLUSTERS)}, got {cluster!r}")
    if cluster == "slurm":
        try:
            import dask_jobqueue  # noqa: F401
        except ImportError:
            raise SweepError("--cluster slurm: needs dask-jobqueue; install it with `pip install .[cluster]`") from None
    if cluster == "local-gpus":
        import torch

        if torch.cuda.device_count() == 0:
            raise SweepError("--cluster local-gpus: no GPU is visible on this machine; use --cluster local")


def _jobs_here(jobs: int, runs: int, device: str) -> int:
    """--jobs for runs on this machine: never more at once than there are runs to execute, and said once when
    more than the machine's cores were asked for (each run is a process of its own)."""
    if runs == 0:
        return jobs
    fitted, cores = min(jobs, runs), usable_cores()
    if jobs > cores:
        share = ", which share the cores, one thread each" if device == "cpu" and fitted > cores else ""
        print(f"--jobs {jobs}: more than this machine's {cores} usable cores; {fitted} runs at once "
              f"({runs} to execute){share}", flush=True)
    return fitted


def _check_device(device: str, scheduler: str | None, cluster: str | None) -> None:
    """Refuse a device the runs cannot use, before any run: here, where this machine executes them
    (the local pool, --cluster local or local-gpus); by its spelling alone for workers elsewhere
    (--scheduler, --cluster slurm), which check it themselves (DaskExecutor.check)."""
    from lab2.core.train import choose_device, parse_device

    try:
        if scheduler or cluster == "slurm":
            if device != "auto":
                parse_device(device)
        else:
            choose_device(device)
    except ValueError as error:
        raise SweepError(str(error)) from None


def _start_engine(jobs: int | None, device: str, scheduler: str | None, cluster: str | None):
    """The executor: a local pool (no flags), a Dask scheduler by address, or a cluster this sweep starts."""
    if not scheduler and not cluster:
        if device == "cpu":
            start_fork_server()  # here, in the main thread, where its start can be shielded from Ctrl-C
        return LocalExecutor(jobs or default_jobs(device))
    from distributed import Client

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - each scheme fails its own way (OSError, TimeoutError, WebSocketError, ...)
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise SweepError(f"--scheduler {scheduler}: no Dask scheduler with workers answered ({reason})") from None
        return DaskExecutor(client, name=scheduler)
    if cluster == "local":
        from distributed import LocalCluster

        started = LocalCluster(n_workers=jobs or default_jobs(device), threads_per_worker=1, processes=True,
                               dashboard_address=None)
    elif cluster == "local-gpus":
        import torch

        started = gpu_cluster(list(range(torch.cuda.device_count())), jobs or CUDA_JOBS)
    else:
        from dask_jobqueue import SLURMCluster

        try:
            started = SLURMCluster()  # queue, cores, memory, walltime: from Dask's config (jobqueue.slurm)
        except ValueError as error:  # no cores or memory per job there, a memory that does not parse
            raise SweepError("--cluster slurm: Dask's config (jobqueue.slurm, e.g. ~/.config/dask/jobqueue.yaml or "
                             "DASK_JOBQUEUE__SLURM__CORES) describes no job: "
                             + str(error).splitlines()[0].split(", for example")[0]) from None
        # dask-jobqueue submits in the background and only logs a refusal, so a job Slurm cannot run
        # (no such partition, more cores or memory than a node has, no sbatch here) would leave the
        # sweep waiting forever. Slurm judges the job script first; --test-only submits nothing.
        import subprocess

        try:
            test = subprocess.run(["sbatch", "--test-only"], input=started.job_script(), capture_output=True,
                                  text=True, timeout=CONNECT_TIMEOUT_S)
            refused = ("Slurm refuses the worker job that Dask's config (jobqueue.slurm) describes: "
                       + " ".join(test.stderr.split())) if test.returncode else None
        except (OSError, subprocess.TimeoutExpired) as error:
            refused = f"sbatch could not be run here ({error})"
        if refused:
            started.close()
            raise SweepError(f"--cluster slurm: {refused}")
        started.scale(jobs=jobs or 1)
    client = Client(started)
    client.wait_for_workers(1, timeout=None if cluster == "slurm" else 120)
    return DaskExecutor(client, started, name=f"--cluster {cluster}")


def _scheduler_problem(address: str) -> str | None:
    """Why address is no Dask scheduler this sweep can use (None if it may be one), told in seconds.

    A scheme that cannot work from here is refused by name: inproc:// (a scheduler inside
    another process), ucx:// without UCX installed, tls:// and wss:// without Dask's TLS
    settings. Then a port where nothing listens is refused at once. And a Dask scheduler
    speaks first: on a new TCP connection it sends its handshake (a frame naming its
    compression and pickle protocol) before reading anything, so one held by another server
    (which waits for a request) is told apart within HANDSHAKE_TIMEOUT_S, where distributed
    itself would wait forever. (Over ws:// the handshake comes after an HTTP upgrade, so
    there distributed's own connection attempt tells: _start_engine.)
    """
    import importlib.util

    import dask
    from distributed.comm import parse_address
    from distributed.comm.registry import backends

    try:
        scheme, location = parse_address(address)
    except ValueError as error:
        return str(error)
    if scheme not in backends:
        usable = sorted(set(backends) - {"inproc"})  # inproc:// is refused below, whatever follows it
        return f"unknown address scheme {scheme!r}; allowed: {', '.join(usable)} (e.g. tcp://HOST:8786)"
    if scheme == "inproc":
        return ("inproc:// is the address of a scheduler inside the Python process that started it, and a sweep is a "
                "process of its own; give the scheduler's tcp:// address")
    if scheme == "ucx" and importlib.util.find_spec("distributed_ucxx") is None:
        return ("ucx:// needs UCX for Dask (the distributed-ucxx package), which is not installed here; "
                "give the scheduler's tcp:// address")
    if scheme in ("tls", "wss") and not dask.config.get("distributed.comm.tls.ca-file", None):
        return (f"{scheme}:// needs Dask's TLS settings (distributed.comm.tls.ca-file, .client.cert and .client.key, "
                "e.g. in ~/.config/dask/distributed.yaml), and none are set here; set them, or give a tcp:// address")
    if scheme == "ucx":
        return None  # UCX's own transport: left to distributed
    host, _, port = location.rpartition(":")
    if not port.isdigit():
        return f"no port; give HOST:PORT, e.g. {scheme}://10.0.0.5:8786"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=HANDSHAKE_TIMEOUT_S) as connection:
            if scheme != "tcp":
                return None  # TLS or a web socket: the handshake follows its own; distributed's connection tells
            connection.settimeout(HANDSHAKE_TIMEOUT_S)
            first = connection.recv(256)
    except socket.timeout:
        return (f"something listens there but sent no Dask handshake within {HANDSHAKE_TIMEOUT_S:g} s; "
                "it is not a Dask scheduler")
    except OSError as error:
        return f"cannot connect ({error.strerror or error}); is the scheduler running, and is this its address?"
    if b"compression" not in first:
        return f"something answers there, but not a Dask scheduler (it sent {first[:24]!r})"
    return None


def gpu_cluster(gpus: list[int], runs_per_gpu: int):
    """A Dask cluster on this machine with one worker per GPU, pinned to it by CUDA_VISIBLE_DEVICES."""
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {f"gpu{index}": {"cls": Nanny, "options": {"nthreads": runs_per_gpu,
                                                        "env": {"CUDA_VISIBLE_DEVICES": str(index)},
                                                        "dashboard_address": None}}
               for index in gpus}
    return SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}})


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _print_table(rows: list[tuple[str, str, str, str]]) -> None:
    print(f"{'run id':<18} {'status':<14} {'seconds':>8}  experiments")
    for rid, status, seconds, experiments in rows:
        print(f"{rid:<18} {status:<14} {seconds:>8}  {experiments}")


def sweep(profile: str = "quick", jobs: int | None = None, only: str | None = None, dry_run: bool = False,
          data_dir=None, device: str = "auto", results_root: Path | None = None,
          params_dir: Path = PARAMS_DIR, seeds: list[int] | None = None,
          scheduler: str | None = None, cluster: str | None = None, keep_finished: bool = False,
          threads: int | None = None) -> int:
    """Execute every pending run of the profile's grid; 0 if every selected run has finished, 1 otherwise."""
    try:
        chosen_profile, runs, experiments = plan(profile, Path(params_dir))
    except GridError as error:
        raise SweepError(str(error)) from None
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs: must be an integer >= 1, got {jobs}")
    if threads is not None and threads < 1:
        raise SweepError(f"--threads: must be an integer >= 1, got {threads}")
    check_seeds(seeds, chosen_profile)
    _check_engine(scheduler, cluster)
    _check_device(device, scheduler, cluster)
    try:
        dataset = load_cifar10(data_dir)
        # Every run (and every Dask worker, whatever its LAB2_DATA) reads the very same data, found here once.
        data_path = str(locate(data_dir if data_dir is not None else default_data_dir())[1].resolve())
    except DataError as error:
        raise SweepError(f"--data-dir: {error}") from None
    ids = [run_id(run.config, dataset.fingerprint) for run in runs]
    selected = _select(runs, ids, only, seeds)
    _check_sizes(selected, dataset)
    out = record.profile_dir(chosen_profile.name, results_root)
    on_disk = {rid: record.read_run(out / rid) for _, rid in selected}
    reasons = {rid: pending_reason(on_disk[rid], keep_finished) for _, rid in selected}
    cached = [rid for _, rid in selected if reasons[rid] is None]
    pending = [(run, rid) for run, rid in selected if reasons[rid] is not None]
    experiments_of = {rid: ", ".join(run.experiments) for run, rid in selected}
    corrupt = [on_disk[rid] for rid in reasons if reasons[rid] == record.CORRUPT]
    stamps = {rid: record.summary_stamp(out / rid) for _, rid in pending}  # to notice another sweep's work

    if dry_run:
        _print_table([(rid, "cached" if reasons[rid] is None else "would run", "",
                       experiments_of[rid] + (f"  [{reasons[rid]}]" if reasons[rid] else "")) for _, rid in selected])
        _report_corrupt(corrupt)
        print(f"\nprofile {chosen_profile.name}: {len(selected)} runs, {len(cached)} cached, {len(pending)} to run")
        return 0

    local = not scheduler and not cluster
    if local and device == "auto":
        from lab2.core.train import choose_device

        # Resolved here, where the runs will execute: a CPU run's process is forked (lab2.runs.executors).
        device = choose_device(device).type
    if jobs is not None and not scheduler and cluster in (None, "local"):  # processes on this machine
        jobs = _jobs_here(jobs, len(pending), device)
    threads = threads or (run_threads(jobs or default_jobs(device)) if local else None)
    pending = longest_first(pending, split_counts(dataset)["train"])
    tasks = [RunTask(rid, notebook_parameters(run.config, device, data_path), str(out / rid), threads)
             for run, rid in pending]
    manifest = make_manifest(chosen_profile, experiments, runs, ids, dataset.source, dataset.fingerprint)
    # Nothing to write when every run is cached and the plan is unchanged: a read-only results folder works.
    changed = manifest_changed(out, manifest)
    problem = _results_problem(out, [Path(task.run_dir) for task in tasks], bool(tasks) or changed)
    if problem:
        raise SweepError(problem)
    # A cluster that cannot be reached, or whose workers cannot run this sweep, is refused before anything is written.
    executor = _start_engine(jobs, device, scheduler, cluster) if tasks else None
    try:
        created = [folder for folder in (out, *out.parents) if not folder.exists()]  # deepest first
        out.mkdir(parents=True, exist_ok=True)
        if isinstance(executor, DaskExecutor):
            problems = executor.check(data_path, out, dataset.fingerprint, device)
            if problems:
                for folder in created:  # refused: no folder is left behind
                    folder.rmdir()
                raise SweepError("the Dask workers cannot run this sweep:\n  " + "\n  ".join(problems))
        try:
            clean_stale_staging(out)
            if changed:
                write_manifest(out, manifest)
        except OSError as error:
            raise SweepError(f"cannot write to {out} ({error.strerror}); nothing was run") from None
        _report_corrupt(corrupt)
        outcomes, elsewhere, interrupted = [], [], 0
        if executor is not None:
            print(f"sweep {chosen_profile.name}: {len(tasks)} runs to execute, {executor.describe()}", flush=True)
            outcomes, elsewhere, interrupted = _drive(executor, tasks, chosen_profile.name, stamps)
    finally:
        if executor is not None:
            executor.close()

    rows = [(rid, "cached", "", experiments_of[rid]) for rid in cached]
    rows += [(o["run_id"], o["status"], f"{o['seconds']:.1f}", experiments_of[o["run_id"]]) for o in outcomes]
    rows += [(rid, f"{status} (other)", "", experiments_of[rid]) for rid, status in elsewhere]
    _print_table(rows)
    failed = [o for o in outcomes if o["status"] not in FINISHED_STATUSES]
    failed_elsewhere = [rid for rid, status in elsewhere if status not in FINISHED_STATUSES]
    ran = len(outcomes) - len(failed)
    print(f"\nprofile {chosen_profile.name}: {ran} ran, {len(cached)} cached, {len(failed)} failed"
          + (f", {len(elsewhere)} run by another sweep" if elsewhere else "") + f" -> {out}")
    for outcome in failed:
        print(f"  {outcome['run_id']} failed: {outcome['error']}")
    for rid in failed_elsewhere:
        print(f"  {rid} failed in another sweep: see {out / rid}")
    if interrupted:
        print(f"  interrupted: {interrupted} runs not finished; run the sweep again to resume")
    return 1 if failed or failed_elsewhere or interrupted else 0


def _report_corrupt(runs: list[record.RunRecord]) -> None:
    for run in runs:
        print(f"  corrupt: {run.problem()}; the run is executed again")


def _drive(executor, tasks: list[RunTask], profile: str, stamps: dict):
    """Claim and execute tasks, executor.capacity at a time; stop every run on Ctrl-C, SIGTERM or SIGHUP.

    Returns (outcomes of the runs executed here, [(run id, status)] of runs another sweep
    executed meanwhile, number of runs left unfinished by an interruption).
    """
    outcomes, elsewhere = [], []
    queue, held, running = list(tasks), [], {}
    announced = set()  # runs held by another sweep that we have said we wait for
    previous = {signum: signal.signal(signum, _raise_keyboard_interrupt) for signum in STOP_SIGNALS}
    bar = tqdm(total=len(tasks), desc=f"sweep {profile}", unit="run")
    retry_at = 0.0
    try:
        while queue or running or held:
            if held and not queue and time.monotonic() >= retry_at:
                queue, held = held, []  # look again at runs another sweep was executing
                retry_at = time.monotonic() + RETRY_CLAIMS_S
            while queue and len(running) < executor.capacity:
                task = queue.pop(0)
                run_dir = Path(task.run_dir)
                try:
                    claim = try_claim(run_dir)
                except OSError as error:  # a full disk: this run cannot start, the others may
                    outcomes.append(failed_outcome(task, error, "claiming it"))
                    bar.update(1)
                    continue
                if claim is None:
                    if task.run_id not in announced:
                        announced.add(task.run_id)
                        bar.write(f"{task.run_id}: claimed by {claim_holder(run_dir)}; waiting for it")
                    held.append(task)
                    continue
                if record.summary_stamp(run_dir) != stamps[task.run_id]:
                    # Another sweep executed it since we planned: report its outcome, do not repeat it.
                    claim.release()
                    elsewhere.append((task.run_id, record.run_status(run_dir)))
                    bar.update(1)
                    continue
                running[executor.submit(task)] = (task, claim)
            if not running:
                time.sleep(0.5)
                continue
            for future in executor.wait(running, timeout=0.5):
                task, claim = running.pop(future)
                outcomes.append(executor.outcome(future, task))
                claim.release()
                bar.update(1)
                bar.set_postfix(failed=sum(o["status"] not in FINISHED_STATUSES for o in outcomes))
    except KeyboardInterrupt:
        for signum in (*STOP_SIGNALS, signal.SIGINT):  # a second signal must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        bar.write("sweep interrupted: stopping the runs in progress; finished runs are kept")
        executor.stop(running)
        for task, claim in running.values():
            discard(Path(task.run_dir))
            claim.release()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    finally:
        bar.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    finished = {o["run_id"] for o in outcomes if o["status"] != "interrupted"}
    outcomes = [o for o in outcomes if o["run_id"] in finished]
    return outcomes, elsewhere, len(tasks) - len(outcomes) - len(elsewhere)
