"""A run's process: forked from the fork server for a CPU run, a fresh Python otherwise; the same run either way."""

import csv
import json

from lab2.core.config import RunConfig
from lab2.core.summary import OK
from lab2.runs import record
from lab2.runs.executors import RunTask, execute_run, notebook_parameters

TINY = {"model": "cnn", "num_epochs": 2, "train_size": 200, "eval_size": 50, "batch_size": 50, "channels": 4}


def executed(tmp_path, data, device: str, threads: int) -> dict:
    """Execute one tiny run as a sweep does; what its folder holds."""
    run_dir = tmp_path / f"{device}-{threads}"
    config = RunConfig.from_dict(TINY)
    outcome = execute_run(RunTask(run_dir.name, notebook_parameters(config, device, str(data)), str(run_dir), threads))
    assert outcome["status"] == OK, outcome
    with open(run_dir / record.METRICS_FILE) as metrics:
        rows = [{key: value for key, value in row.items() if key != "seconds"} for row in csv.DictReader(metrics)]
    outputs = [output for cell in json.loads((run_dir / record.NOTEBOOK_FILE).read_text())["cells"]
               for output in cell.get("outputs", [])]
    return {"metrics": rows, "environment": json.loads((run_dir / record.ENVIRONMENT_FILE).read_text()),
            "figures": sum("image/png" in output.get("data", {}) for output in outputs),
            "log": (run_dir / record.KERNEL_LOG).read_text()}


def test_a_forked_run_is_the_run_a_fresh_process_executes(tmp_path, image_archive):
    forked = executed(tmp_path, image_archive, "cpu", threads=1)  # a CPU run: forked from the fork server
    fresh = executed(tmp_path, image_archive, "auto", threads=1)  # "auto" may mean CUDA: a fresh Python
    assert forked["metrics"] == fresh["metrics"] and len(forked["metrics"]) == TINY["num_epochs"]
    assert forked["environment"] == fresh["environment"]  # the code fingerprint included
    for run in (forked, fresh):
        assert run["figures"] == 1  # matplotlib was imported before the kernel chose its inline backend
        assert "Traceback" not in run["log"] and "NOTE:" not in run["log"]  # the kernel knows its parent


def test_a_forked_run_takes_the_threads_it_is_given(tmp_path, image_archive):
    # The fork server imported torch once with its own OMP_NUM_THREADS; each run applies its own count.
    assert executed(tmp_path, image_archive, "cpu", threads=2)["environment"]["cpu_threads"] == 2


def test_after_an_edit_runs_start_as_a_fresh_python_that_imports_the_code_as_it_is(monkeypatch, tmp_path):
    from lab2.runs import executors

    source = tmp_path / "layers.py"
    source.write_text("P = 0.5\n")
    monkeypatch.setattr(executors, "checkout_code_files", lambda: [source])
    monkeypatch.setattr(executors, "_forked_code", None)
    assert executors._can_fork("cpu")  # the first forked run: the server imports the code as it is
    assert executors._can_fork("cpu")
    source.write_text("P = 0.4\n")  # edited while the sweep goes on: a fork would execute P = 0.5
    assert not executors._can_fork("cpu")
    assert not executors._can_fork("cuda")  # a CUDA run never inherits a forked state
