"""sweep --cluster slurm against a real Slurm: a one-node slurmctld + slurmd on this machine
(tests/slurm/local_slurm.sh), and dask-jobqueue submitting real sbatch jobs as its workers.

Run by `make test-all` (which installs Slurm and munge first, `make slurm`, as root). The
fixture starts the daemons unless they already run, and stops them after, if it started them.
"""

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest
import yaml

from lab2.core.data import PROJECT_ROOT
from lab2.core.summary import FAILED, OK
from lab2.runs import record
from lab2.runs.executors import CHILD_MODULE
from test_engine import leftovers, published, sweep_command, wait_for
from test_sweep import write_params

pytestmark = pytest.mark.slow

LOCAL_SLURM = Path(__file__).parent / "slurm" / "local_slurm.sh"
SWEEP_TIMEOUT_S = 600


def local_slurm(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LOCAL_SLURM), command], capture_output=True, text=True, timeout=300)


def daemon_pids(conf: Path) -> list[int]:
    """munged, slurmctld and slurmd of this Slurm, from its pid files."""
    folder = conf.parent
    return [int(path.read_text()) for path in (folder / "slurmctld.pid", folder / "slurmd.pid",
                                               folder / "munge" / "munged.pid") if path.is_file()]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """SLURM_CONF and the partition of a running one-node Slurm; started here (and stopped after) if none runs."""
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed (requirements.txt: `make venv`)")
    conf = Path(local_slurm("env").stdout.strip().removeprefix("export SLURM_CONF="))
    started_here = local_slurm("status").returncode != 0
    if started_here:
        if os.geteuid() != 0:
            pytest.skip("no local Slurm runs (`tests/slurm/local_slurm.sh start`, as root) and this is not root")
        if not shutil.which("slurmctld") or not shutil.which("munged"):
            pytest.skip("slurm-wlm and munge are not installed: `make slurm` installs them (as root)")
        began = time.perf_counter()
        start = local_slurm("start")
        assert start.returncode == 0, start.stdout + start.stderr
        print(f"local Slurm started in {time.perf_counter() - began:.1f} s: {start.stderr.strip()}")
    environment = {**os.environ, "SLURM_CONF": str(conf)}
    partitions = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, env=environment, check=True)
    pids = daemon_pids(conf)
    yield {"conf": conf, "partition": partitions.stdout.split()[0].rstrip("*"), "environment": environment}
    if started_here:
        # Its folder is removed by stop: keep the daemons' logs and the finished jobs with the test's files.
        kept = tmp_path_factory.mktemp("slurm-logs")
        for name in ("slurmctld.log", "slurmd.log", "jobs.txt"):
            if (conf.parent / name).is_file():
                shutil.copy(conf.parent / name, kept / name)
        stop = local_slurm("stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not conf.parent.exists() and not any(psutil.pid_exists(pid) for pid in pids)


@pytest.fixture
def slurm_sweep(slurm, tmp_path, image_archive):
    """A function running the tiny profile's sweep through --cluster slurm; and where the jobs' logs go.

    dask-jobqueue reads its jobqueue.yaml from a Dask config folder of the test's own (DASK_CONFIG),
    so neither ~/.config/dask nor anything global is read or written.
    """
    params = write_params(tmp_path / "params")
    logs = tmp_path / "slurm-logs"
    job_name = f"lab2-test-{uuid.uuid4().hex[:8]}"
    (tmp_path / "dask").mkdir()
    (tmp_path / "dask" / "jobqueue.yaml").write_text(yaml.safe_dump({"jobqueue": {"slurm": {
        "queue": slurm["partition"], "cores": 1, "processes": 1, "memory": "2GB", "walltime": "00:15:00",
        "name": job_name, "log-directory": str(logs), "local-directory": str(tmp_path / "worker-scratch"),
    }}}))
    environment = {**slurm["environment"], "DASK_CONFIG": str(tmp_path / "dask")}

    def start(root: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(sweep_command(params, root, image_archive, "--cluster", "slurm", *extra),
                                cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**environment, **(env or {})})

    return {"start": start, "params": params, "logs": logs, "job_name": job_name, "environment": environment,
            "partition": slurm["partition"]}


def runs_by_job(logs: Path) -> dict[str, dict[str, list[str]]]:
    """What each Slurm job's Dask worker logged about runs: {job id: {run id: ["started", its status, ...]}}."""
    jobs = {}
    for log in logs.glob("*.err"):
        job = re.search(r"-(\d+)\.err$", log.name).group(1)
        for rid, what in re.findall(rf"lab2: run (\S+) (started|{OK}|{FAILED}|interrupted)", log.read_text()):
            jobs.setdefault(job, {}).setdefault(rid, []).append(what)
    return jobs


def slurm_job(job: str, environment: dict) -> dict[str, str]:
    """`scontrol show job` as a dict: the controller keeps a finished job for MinJobAge (300 s)."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, env=environment,
                           check=True).stdout
    return dict(field.split("=", 1) for field in shown.split() if "=" in field)


def numbers(run_dir: Path) -> tuple[dict, list[dict], int]:
    """A run's summary and metrics without their timings, and the threads it trained with."""
    summary = json.loads((run_dir / record.SUMMARY_FILE).read_text())
    summary.pop("seconds")
    rows = [line.split(",") for line in (run_dir / record.METRICS_FILE).read_text().splitlines()]
    metrics = [{key: value for key, value in zip(rows[0], row) if key != "seconds"} for row in rows[1:]]
    return summary, metrics, json.loads((run_dir / record.ENVIRONMENT_FILE).read_text())["cpu_threads"]


def processes_of_job(job: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("SLURM_JOB_ID") == job:
                found.append(process)
        except psutil.Error:
            pass
    return found


def test_a_sweep_through_slurm_runs_in_slurm_jobs_and_equals_a_local_sweep(slurm_sweep, tmp_path, image_archive):
    began = time.perf_counter()
    sweeper = slurm_sweep["start"](tmp_path / "slurm", "--jobs", "2")
    output = sweeper.communicate(timeout=SWEEP_TIMEOUT_S)[0]
    seconds = time.perf_counter() - began
    assert sweeper.returncode == 0 and "2 ran, 0 cached, 0 failed" in output, output
    assert "on 1 Dask workers of --cluster slurm" in output or "on 2 Dask workers of --cluster slurm" in output
    assert "Traceback" not in output
    runs = published(tmp_path / "slurm" / "tiny")
    assert sorted(runs.values()) == [OK, OK] and leftovers(tmp_path / "slurm" / "tiny") == []

    # Every run was executed, once, by a Dask worker inside a real Slurm job, which Slurm knows by our job name.
    jobs = runs_by_job(slurm_sweep["logs"])
    executed = [rid for seen in jobs.values() for rid, what in seen.items() if what == ["started", OK]]
    assert sorted(executed) == sorted(runs) and sum(map(len, jobs.values())) == len(runs), jobs
    for job in jobs:
        shown = slurm_job(job, slurm_sweep["environment"])
        assert (shown["JobName"], shown["Partition"]) == (slurm_sweep["job_name"], slurm_sweep["partition"]), shown
        assert shown["JobState"] in ("COMPLETED", "CANCELLED"), shown  # the sweep scancels its workers at its end
    # No job of the sweep is left in the queue (once Slurm has ended the ones the sweep cancelled).
    wait_for(lambda: subprocess.run(["squeue", "-h", "-n", slurm_sweep["job_name"]], capture_output=True, text=True,
                                    env=slurm_sweep["environment"], check=True).stdout == "", 60, "an empty queue")

    # The same grid swept here, with as many threads per run as the Slurm runs had: the same runs, the same numbers.
    threads = {numbers(tmp_path / "slurm" / "tiny" / rid)[2] for rid in runs}
    assert len(threads) == 1
    local = subprocess.run(sweep_command(slurm_sweep["params"], tmp_path / "local", image_archive,
                                         "--threads", str(threads.pop())),
                           cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S)
    assert local.returncode == 0, local.stdout + local.stderr
    assert sorted(published(tmp_path / "local" / "tiny")) == sorted(runs)
    for rid in runs:
        assert numbers(tmp_path / "local" / "tiny" / rid) == numbers(tmp_path / "slurm" / "tiny" / rid), rid
    print(f"sweep through --cluster slurm: {seconds:.1f} s for 2 runs in Slurm jobs {', '.join(sorted(jobs))}")


@pytest.mark.parametrize("retries", [None, 0], ids=["retried", "no-retries"])
def test_a_slurm_job_cancelled_mid_run(slurm_sweep, tmp_path, retries):
    """scancel the only job while a run executes in it: the sweep starts another job, where Dask retries
    the run; with no retries allowed the run is recorded failed, naming the job; it never hangs."""
    extra_env = {} if retries is None else {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(retries)}
    began = time.perf_counter()
    sweeper = slurm_sweep["start"](tmp_path / "results", "--jobs", "1", env=extra_env)

    def a_run_in_a_job():
        for process in psutil.process_iter():
            try:
                environment = process.environ()
                if (environment.get("SLURM_JOB_NAME") == slurm_sweep["job_name"]
                        and CHILD_MODULE in " ".join(process.cmdline())):
                    return process, environment["SLURM_JOB_ID"]
            except psutil.Error:
                pass
        return None

    run, job = wait_for(a_run_in_a_job, 300, "a run to start in a Slurm job")
    time.sleep(2)  # well into the run: its kernel is up
    assert run.is_running()
    subprocess.run(["scancel", job], env=slurm_sweep["environment"], check=True)
    output = sweeper.communicate(timeout=SWEEP_TIMEOUT_S)[0]
    seconds = time.perf_counter() - began
    assert "Traceback" not in output
    assert f"--cluster slurm: Slurm job {job} (worker" in output and "has ended; starting another" in output, output
    assert slurm_job(job, slurm_sweep["environment"])["JobState"] == "CANCELLED"
    cancelled = next(rid for rid, what in runs_by_job(slurm_sweep["logs"])[job].items() if what == ["started"])
    profile = tmp_path / "results" / "tiny"
    statuses = {folder.name: json.loads((folder / record.SUMMARY_FILE).read_text())["status"]
                for folder in profile.iterdir() if folder.is_dir() and not folder.name.startswith(".")}
    if retries is None:
        assert sweeper.returncode == 0 and "2 ran, 0 cached, 0 failed" in output, output
        assert sorted(published(profile).values()) == [OK, OK]
        retried_in = [other for other, seen in runs_by_job(slurm_sweep["logs"]).items()
                      if seen.get(cancelled) == ["started", OK]]
        assert retried_in and job not in retried_in  # finished in the job started in place of the cancelled one
    else:
        assert sweeper.returncode == 1 and "1 ran, 0 cached, 1 failed" in output, output
        assert statuses[cancelled] == FAILED and sorted(statuses.values()) == sorted([FAILED, OK])
        reason = json.loads((profile / cancelled / record.SUMMARY_FILE).read_text())["error"]
        assert reason.startswith(f"the Dask worker running it (Slurm job {job}) failed: KilledWorker"), reason
        assert f"{cancelled} failed: the Dask worker running it (Slurm job {job})" in output
    assert leftovers(profile) == []
    # Slurm stopped every process of the cancelled job: worker, papermill, kernel.
    wait_for(lambda: not processes_of_job(job), 60, f"job {job}'s processes to end")
    print(f"scancel mid-run ({'retried' if retries is None else 'no retries'}): sweep took {seconds:.1f} s")
