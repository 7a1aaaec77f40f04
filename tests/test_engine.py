"""The sweep as an engine: two sweeps on one folder, SIGHUP, and a Dask worker that dies mid-run."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lab2.core.data import PROJECT_ROOT
from lab2.core.summary import FAILED, OK
from lab2.runs import record
from lab2.runs.executors import CHILD_MODULE
from lab2.runs.sweep import gpu_cluster
from test_sweep import write_params

RUN_FILES = {record.CONFIG_FILE, record.METRICS_FILE, record.ENVIRONMENT_FILE, record.SUMMARY_FILE,
             record.NOTEBOOK_FILE, record.KERNEL_LOG}


def sweep_command(params: Path, root: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lab2", "sweep", "--profile", "tiny", "--params", str(params),
            "--results", str(root), "--data-dir", str(data), *extra]


def published(profile_dir: Path) -> dict[str, str]:
    """Status of every visible run folder; each must be complete."""
    runs = {}
    for folder in profile_dir.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            assert RUN_FILES <= {p.name for p in folder.iterdir()}, folder
            runs[folder.name] = json.loads((folder / record.SUMMARY_FILE).read_text())["status"]
    return runs


def leftovers(profile_dir: Path) -> list[str]:
    return sorted(p.name for p in profile_dir.glob(".*") if p.name.endswith((".partial", ".replaced")))


def wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_sweeps_on_one_folder_execute_every_run_once(tmp_path, image_archive):
    params = write_params(tmp_path / "params")
    root = tmp_path / "results"
    command = sweep_command(params, root, image_archive, "--jobs", "1")
    sweeps = [subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in sweeps]
    assert [process.returncode for process in sweeps] == [0, 0], outputs
    assert not any("Traceback" in output for output in outputs)
    ran = [int(re.search(r"(\d+) ran, ", output).group(1)) for output in outputs]
    assert sum(ran) == 2, outputs  # each run executed by exactly one of the two
    assert sorted(published(root / "tiny").values()) == [OK, OK]
    assert leftovers(root / "tiny") == []


def run_processes(tree: psutil.Process) -> tuple[list, list]:
    """The runs' child processes under `tree` (each leads a session of its own) and their kernels (in it)."""
    sessions = {}
    for process in tree.children(recursive=True):
        try:
            sessions[process] = os.getsid(process.pid)
        except ProcessLookupError:
            pass
    children = [process for process, session in sessions.items() if session == process.pid]
    leaders = {process.pid for process in children}
    kernels = [process for process, session in sessions.items() if session in leaders and process.pid not in leaders]
    return children, kernels


def test_sighup_stops_every_process_the_sweep_started(tmp_path, image_archive):
    params = write_params(tmp_path / "params")
    root = tmp_path / "results"
    sweeper = subprocess.Popen(sweep_command(params, root, image_archive, "--jobs", "2"), cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tree = psutil.Process(sweeper.pid)
    wait_for(lambda: run_processes(tree)[1], 120, "a run's kernel to start")
    started = tree.children(recursive=True)  # the fork server, the runs' processes and their kernels
    sweeper.send_signal(signal.SIGHUP)
    output = sweeper.communicate(timeout=60)[0]
    assert sweeper.returncode == 1 and "interrupted" in output and "Traceback" not in output
    _, alive = psutil.wait_procs(started, timeout=10)
    assert alive == [], [" ".join(p.cmdline())[:80] for p in alive]  # no papermill, no kernel left behind
    assert leftovers(root / "tiny") == []


@pytest.mark.parametrize("retries", [None, pytest.param(0, marks=pytest.mark.slow)])
def test_a_dask_worker_killed_mid_run_is_retried_and_nothing_is_lost(tmp_path, image_archive, retries):
    """Dask retries a run whose worker died; with no retries left the run is recorded failed, the other goes on."""
    params = write_params(tmp_path / "params")
    root = tmp_path / "results"
    environment = dict(os.environ)
    if retries is not None:
        environment["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = str(retries)
    sweeper = subprocess.Popen(sweep_command(params, root, image_archive, "--cluster", "local", "--jobs", "2"),
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=environment)

    run = wait_for(lambda: run_processes(psutil.Process(sweeper.pid))[0], 180, "a run to start on a Dask worker")[0]
    worker = run.parent()  # a Dask worker is a daemon, which may have no fork server: it starts its runs itself
    assert CHILD_MODULE in " ".join(run.cmdline())
    worker.kill()  # the worker process dies mid-run; its nanny starts a new one
    output = sweeper.communicate(timeout=300)[0]
    assert "Traceback" not in output
    if retries is None:
        assert sweeper.returncode == 0 and "2 ran, 0 cached, 0 failed" in output, output
        assert sorted(published(root / "tiny").values()) == [OK, OK]
    else:
        assert sweeper.returncode == 1 and "1 ran, 0 cached, 1 failed" in output and "KilledWorker" in output, output
        assert sorted(json.loads((folder / record.SUMMARY_FILE).read_text())["status"]
                      for folder in (root / "tiny").iterdir() if folder.is_dir()) == sorted([FAILED, OK])
    assert leftovers(root / "tiny") == []
    assert not run.is_running() or run.status() == psutil.STATUS_ZOMBIE  # the killed worker's run died with it


def test_a_device_the_dask_workers_cannot_use_is_refused_before_any_run(tmp_path, image_archive, capsys):
    """--scheduler: the device is the workers' to have, so each worker checks it before anything is submitted."""
    import torch
    from distributed import LocalCluster

    from lab2.__main__ import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    params = write_params(tmp_path / "params")
    with LocalCluster(n_workers=1, processes=False, protocol="tcp", dashboard_address=None) as cluster:
        with pytest.raises(SystemExit) as exit_:
            main(sweep_command(params, tmp_path / "results", image_archive, "--scheduler", cluster.scheduler_address,
                               "--device", "cuda")[3:])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "the Dask workers cannot run this sweep" in err and "Traceback" not in err
    assert "cannot run there: --device cuda: CUDA is not available on this machine" in err
    assert not (tmp_path / "results").exists()


def test_local_gpus_pins_one_worker_to_each_gpu():
    """The --cluster local-gpus layout, built on a CPU: each worker sees only its own GPU index."""
    from distributed import Client

    with gpu_cluster([0, 1], runs_per_gpu=2) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        assert sorted(seen.values()) == ["0", "1"] and set(client.nthreads().values()) == {2}
