"""The sweep: grid expansion, params validation, cache, failures, interruption, the run notebook."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import papermill
import pytest
import yaml

from lab2.report import results
from lab2.__main__ import main
from lab2.core.data import PROJECT_ROOT
from lab2.core.config import MODELS
from lab2.runs.grid import GridError, baseline_config, plan
from lab2.core.summary import FAILED, OK
from lab2.runs.fingerprint import RUN_NOTEBOOK
from lab2.runs.sweep import sweep

TINY_EXPERIMENTS = {
    "model": "mlp",
    "baseline": {"dropout_rate": 0.5, "batch_size": 50},
    "experiments": {
        "best": {},
        "no_dropout": {"dropout_rate": 0.0},
        "grid_dropout_rate": {"dropout_rate": [0.0, 0.5]},
    },
}
TINY_PROFILES = {"tiny": {"description": "one epoch on test data", "seeds": [0],
                          "set": {"num_epochs": 1, "eval_size": 50, "hidden": 16}}}


def write_params(folder: Path, experiments=TINY_EXPERIMENTS, profiles=TINY_PROFILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mlp.yaml").write_text(yaml.safe_dump(experiments))
    (folder / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    return folder


def finished_runs(profile_dir: Path) -> dict[str, str]:
    """Visible run folders and their status; every one must hold a summary."""
    return {p.name: json.loads((p / "summary.json").read_text())["status"]
            for p in profile_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}


def test_grid_expands_and_shares_configs(tmp_path):
    profile, runs, _ = plan("tiny", write_params(tmp_path / "params"))
    assert profile.seeds == [0] and len(runs) == 2
    by_rate = {run.config.dropout_rate: sorted(run.experiments) for run in runs}
    assert by_rate == {0.5: ["mlp/best", "mlp/grid_dropout_rate"],
                       0.0: ["mlp/grid_dropout_rate", "mlp/no_dropout"]}
    assert all(run.config.num_epochs == 1 and run.config.hidden == 16 for run in runs)


def test_project_grid_covers_every_experiment_of_the_report():
    profile, runs, _ = plan("full")
    assert len(profile.seeds) >= 3
    planned = {e for run in runs for e in run.experiments}
    reference = results.load_reference()
    assert {f"{m}/{e}" for m, e in zip(reference.model, reference.experiment)} <= planned
    assert all(run.config.num_epochs == 50 and run.config.train_size is None for run in runs)
    quick = plan("quick").runs
    widths = {run.config.channels for run in quick if "cnn/narrow_dropout_rate" in run.experiments}
    wide = {run.config.channels for run in quick if "cnn/best" in run.experiments}
    assert widths == {min(wide) // 2}  # the narrow CNN stays half as wide under the quick profile


@pytest.mark.parametrize("profile", [None, "full", "quick", "smoke"])
def test_a_models_baseline_is_the_run_of_its_best_experiment(profile):
    """baseline_config: the one place the tools read each model's best setting from (params/)."""
    runs = plan(profile or "full").runs
    for model in MODELS:
        best = next(run.config for run in runs if f"{model}/best" in run.experiments and run.config.seed == 0)
        assert baseline_config(model, profile) == best


@pytest.mark.parametrize("edit, message", [
    (lambda e, p: e["experiments"]["best"].update(droput_rate=0.1),
     "mlp.yaml: experiments.best.droput_rate: unknown key; allowed keys are"),
    (lambda e, p: e["baseline"].update(batch_size="big"),
     "mlp.yaml: baseline.batch_size: must be an integer, got 'big'"),
    (lambda e, p: e["experiments"]["grid_dropout_rate"].update(dropout_rate=[0.0, 1.5]),
     "mlp.yaml: experiments.grid_dropout_rate.dropout_rate: must be in [0, 1), got 1.5"),
    (lambda e, p: e.update(model="rnn"), f"mlp.yaml: model: must be one of {', '.join(MODELS)}, got 'rnn'"),
    (lambda e, p: p["tiny"]["set"].update(channels={128: 8}),
     "profiles.yaml: tiny.set.channels: no entry for 256"),
    (lambda e, p: p["tiny"].update(seeds=[]), "profiles.yaml: tiny.seeds: must be a non-empty list"),
])
def test_bad_params_are_refused_naming_file_and_key(tmp_path, edit, message):
    experiments, profiles = json.loads(json.dumps(TINY_EXPERIMENTS)), json.loads(json.dumps(TINY_PROFILES))
    edit(experiments, profiles)
    params = write_params(tmp_path / "params", experiments, profiles)
    with pytest.raises(GridError) as error:
        plan("tiny", params)
    assert message in str(error.value)


def test_sweep_cli_refuses_bad_input_before_writing(tmp_path, image_archive, capsys):
    import torch

    params = write_params(tmp_path / "params")
    results_root = tmp_path / "results"
    no_cuda = [] if torch.cuda.is_available() else [
        (["--device", "cuda"], "--device cuda: CUDA is not available on this machine; use cpu or auto")]
    for extra, message in no_cuda + [
                           (["--device", "tpu"], "--device tpu: not a device lab2 runs on; allowed: cpu, cuda, cuda:N or auto"),
                           (["--params", str(params / "profiles.yaml")], "profiles.yaml: a file, not a folder"),
                           (["--scheduler", "tls://127.0.0.1:8786"], "tls:// needs Dask's TLS settings"),
                           (["--scheduler", "wss://127.0.0.1:8786"], "wss:// needs Dask's TLS settings"),
                           (["--scheduler", "ucx://127.0.0.1:8786"], "ucx:// needs UCX for Dask (the distributed-ucxx"),
                           (["--scheduler", "inproc://127.0.0.1/1/2"], "inproc:// is the address of a scheduler inside"),
                           (["--scheduler", "ws://127.0.0.1:1"], "cannot connect (Connection refused)"),
                           (["--profile", "huge"], "unknown profile 'huge'"),
                           (["--jobs", "0"], "--jobs: must be an integer >= 1"),
                           (["--threads", "0"], "--threads: must be an integer >= 1"),
                           (["--seeds", "0,3"], "--seeds: profile tiny has no seed 3; allowed: 0"),
                           (["--cluster", "local", "--scheduler", "tcp://127.0.0.1:1"], "give one"),
                           (["--data-dir", str(tmp_path / "nothing")], "--data-dir: No CIFAR-10 found"),
                           (["--params", str(tmp_path / "no-params")], "no-params: no such folder"),
                           (["--scheduler", "foo://x:1"], "unknown address scheme 'foo'; allowed: "),
                           (["--scheduler", "tcp://127.0.0.1:1"], "cannot connect (Connection refused)")]:
        with pytest.raises(SystemExit) as exit_:
            main(["sweep", "--profile", "tiny", "--params", str(params), "--results", str(results_root),
                  "--data-dir", str(image_archive), *extra])
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert exit_.value.code == 2 and len(errors) == 1 and message in errors[0], (extra, errors)
    assert not results_root.exists()


def test_dry_run_lists_and_runs_nothing(tmp_path, image_archive, capsys):
    params = write_params(tmp_path / "params")
    code = sweep("tiny", dry_run=True, data_dir=image_archive, results_root=tmp_path / "results", params_dir=params)
    assert code == 0 and "2 runs, 0 cached, 2 to run" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()


def test_second_sweep_is_cached_and_a_changed_parameter_reruns_only_its_runs(tmp_path, image_archive, capsys):
    params = write_params(tmp_path / "params")
    root = tmp_path / "results"
    assert sweep("tiny", jobs=2, data_dir=image_archive, results_root=root, params_dir=params) == 0
    first = finished_runs(root / "tiny")
    assert sorted(first.values()) == [OK, OK]
    capsys.readouterr()
    assert sweep("tiny", jobs=2, data_dir=image_archive, results_root=root, params_dir=params) == 0
    assert "0 ran, 2 cached, 0 failed" in capsys.readouterr().out
    changed = json.loads(json.dumps(TINY_EXPERIMENTS))
    changed["experiments"]["grid_dropout_rate"]["dropout_rate"] = [0.0, 0.3, 0.5]
    write_params(params, changed)
    assert sweep("tiny", jobs=2, data_dir=image_archive, results_root=root, params_dir=params) == 0
    assert "1 ran, 2 cached, 0 failed" in capsys.readouterr().out
    assert set(first) < set(finished_runs(root / "tiny"))

    runs, epochs, _ = results.load_results("tiny", root)
    assert len(runs) == 3 and set(runs.status) == {OK}
    assert len(epochs) == 3 and {"dropout_rate", "val_acc", "epoch"} <= set(epochs.columns)
    assert len(results.runs_of(runs, "mlp", "grid_dropout_rate")) == 3
    assert set(results.by_experiment(runs).experiment) == {"best", "no_dropout", "grid_dropout_rate"}
    assert results.finished(runs).groupby("dropout_rate").size().tolist() == [1, 1, 1]  # one seed per setting


def test_a_failing_run_is_recorded_and_the_others_go_on(tmp_path, image_archive, capsys):
    experiments = json.loads(json.dumps(TINY_EXPERIMENTS))
    # A hidden layer of 3,072 x 10^9 weights passes every check and fails when the run allocates it.
    experiments["experiments"]["too_big"] = {"hidden": 10**9}
    profiles = {"tiny": {**TINY_PROFILES["tiny"], "set": {"num_epochs": 1, "eval_size": 50}}}
    params = write_params(tmp_path / "params", experiments, profiles)
    root = tmp_path / "results"
    assert sweep("tiny", jobs=2, data_dir=image_archive, results_root=root, params_dir=params) == 1
    out = capsys.readouterr().out
    assert "2 ran, 0 cached, 1 failed" in out and "RuntimeError" in out and "allocate" in out
    statuses = finished_runs(root / "tiny")
    assert sorted(statuses.values()) == sorted([FAILED, OK, OK])
    failed = next(root / "tiny" / rid for rid, status in statuses.items() if status == FAILED)
    assert (failed / "run.ipynb").is_file()  # the partly executed notebook is kept
    # A failed run is not cached: the next sweep tries it again.
    assert sweep("tiny", jobs=2, data_dir=image_archive, results_root=root, params_dir=params) == 1
    assert "0 ran, 2 cached, 1 failed" in capsys.readouterr().out


def test_an_interrupted_sweep_leaves_nothing_half_done_and_resumes(tmp_path, image_archive):
    params = write_params(tmp_path / "params")
    root = tmp_path / "results"
    command = [sys.executable, "-m", "lab2", "sweep", "--profile", "tiny", "--jobs", "1", "--params", str(params),
               "--results", str(root), "--data-dir", str(image_archive)]
    sweeper = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while not list((root / "tiny").glob(".*.partial")) and time.time() < deadline:
        time.sleep(0.2)
    sweeper.send_signal(signal.SIGTERM)
    output = sweeper.communicate(timeout=30)[0].decode()
    assert sweeper.returncode == 1 and "interrupted" in output
    assert finished_runs(root / "tiny") == {} or set(finished_runs(root / "tiny").values()) == {OK}
    assert subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True).returncode == 0
    assert sorted(finished_runs(root / "tiny").values()) == [OK, OK]
    assert not list((root / "tiny").glob(".*.partial"))


def test_run_notebook_executes_with_papermill(tmp_path, image_archive):
    """The CI-executed notebook test: the run notebook with smoke parameters."""
    executed = papermill.execute_notebook(
        str(RUN_NOTEBOOK), str(tmp_path / "run.ipynb"), cwd=str(PROJECT_ROOT), progress_bar=False,
        parameters={"settings": {"model": "cnn", "channels": 4, "num_epochs": 2, "train_size": 200, "eval_size": 100,
                                 "batch_size": 50},
                    "data_dir": str(image_archive), "out_dir": str(tmp_path / "run")},
    )
    outputs = [output for cell in executed.cells for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in outputs)  # the curves
    assert any("text/html" in output.get("data", {}) for output in outputs)  # the summary table
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == OK


def edited(edit) -> tuple[dict, dict]:
    experiments, profiles = json.loads(json.dumps(TINY_EXPERIMENTS)), json.loads(json.dumps(TINY_PROFILES))
    edit(experiments, profiles)
    return experiments, profiles


@pytest.mark.parametrize("edit, message", [
    (lambda e, p: p["tiny"]["set"].update(train_size=100_000),
     "mlp/best, mlp/grid_dropout_rate, mlp/no_dropout: train_size: must be at most the 1040 training images, got 100000"),
    (lambda e, p: p["tiny"]["set"].update(eval_size=20_000), "eval_size: must be at most 260"),
    (lambda e, p: e["experiments"].update(big_batches={"batch_size": 5000}),
     "mlp/big_batches: batch_size: must be at most the 1040 training images, got 5000"),
])
def test_sizes_the_data_cannot_give_are_refused_before_any_run(tmp_path, image_archive, capsys, edit, message):
    params = write_params(tmp_path / "params", *edited(edit))
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--profile", "tiny", "--params", str(params), "--results", str(tmp_path / "results"),
              "--data-dir", str(image_archive)])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_key_given_twice_is_refused_naming_its_line(tmp_path):
    params = write_params(tmp_path / "params")
    text = (params / "mlp.yaml").read_text()
    (params / "mlp.yaml").write_text(text.replace("  best: {}\n", "  best: {}\n  best:\n    dropout_rate: 0.3\n"))
    with pytest.raises(GridError, match=r"mlp.yaml, line \d+: not valid YAML: found 'best' a second time"):
        plan("tiny", params)
    (params / "mlp.yaml").write_text(text)
    (params / "profiles.yaml").write_text((params / "profiles.yaml").read_text() + "tiny:\n  seeds: [0]\n")
    with pytest.raises(GridError, match=r"profiles.yaml, line \d+: not valid YAML: found 'tiny' a second time"):
        plan("tiny", params)


def test_a_profile_never_collapses_a_declared_grid(tmp_path):
    params = write_params(tmp_path / "params", *edited(
        lambda e, p: e["experiments"].update(width={"hidden": [32, 48]})))
    with pytest.raises(GridError, match=r"experiments.width.hidden: the grid \[32, 48\] would become \[16, 16\] "
                                        r"under profile tiny"):
        plan("tiny", params)
    mapped = write_params(tmp_path / "mapped", *edited(lambda e, p: (
        e["experiments"].update(width={"hidden": [32, 48]}), p["tiny"]["set"].update(hidden={1024: 16, 32: 8, 48: 12}))))
    widths = sorted(run.config.hidden for run in plan("tiny", mapped).runs)
    assert widths == [8, 12, 16, 16]


def test_a_mapping_error_names_the_params_folder_given(tmp_path):
    params = write_params(tmp_path / "copy", *edited(lambda e, p: (
        e.update(model="cnn"), e["baseline"].update(channels=256), p["tiny"]["set"].update(channels={128: 8}))))
    with pytest.raises(GridError) as error:
        plan("tiny", params)
    assert str(error.value).startswith(f"{params / 'profiles.yaml'}: tiny.set.channels: no entry for 256")


@pytest.mark.parametrize("scheme, message", [("tcp", "sent no Dask handshake"),
                                             ("ws", "no Dask scheduler with workers answered (Non-websocket response)")])
def test_a_port_held_by_another_server_is_no_scheduler(tmp_path, image_archive, capsys, scheme, message):
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["sweep", "--profile", "tiny", "--params", str(write_params(tmp_path / "params")),
                  "--results", str(tmp_path / "results"), "--data-dir", str(image_archive),
                  "--scheduler", f"{scheme}://127.0.0.1:{server.server_port}"])
    finally:
        server.shutdown()
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert exit_.value.code == 2 and len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda e, p: e["experiments"]["best"].update(hidden=-3), "mlp.yaml: experiments.best.hidden: must be an integer >= 1, got -3"),
    (lambda e, p: e["experiments"]["best"].update(hidden=0), "mlp.yaml: experiments.best.hidden: must be an integer >= 1, got 0"),
    (lambda e, p: e["experiments"]["best"].update(hidden=1e9), "mlp.yaml: experiments.best.hidden: must be an integer, got 1000000000.0"),
    (lambda e, p: e["experiments"]["best"].update(num_epochs=0), "mlp.yaml: experiments.best.num_epochs: must be an integer >= 1, got 0"),
    (lambda e, p: e["experiments"]["best"].update(train_size=0), "mlp.yaml: experiments.best.train_size: must be an integer >= 2"),
    (lambda e, p: e["experiments"]["best"].update(eval_size=-1), "mlp.yaml: experiments.best.eval_size: must be an integer >= 1"),
    (lambda e, p: p["tiny"]["set"].update(hidden=-3), "profiles.yaml: tiny.set.hidden: must be an integer >= 1, got -3"),
    (lambda e, p: p["tiny"]["set"].update(channels={256: 0, 128: 4}), "profiles.yaml: tiny.set.channels.256: must be an integer >= 1, got 0"),
], ids=["hidden-3", "hidden0", "hidden1e9", "epochs0", "train_size0", "eval_size-1", "profile-hidden", "profile-map"])
def test_a_value_is_checked_where_it_is_written_whatever_the_profile(tmp_path, image_archive, capsys, edit, message):
    """The tiny profile sets hidden, num_epochs and eval_size for every run: an experiment's bad value is refused
    all the same, blamed on its experiment file, and a profile's bad value on profiles.yaml."""
    experiments, profiles = json.loads(json.dumps(TINY_EXPERIMENTS)), json.loads(json.dumps(TINY_PROFILES))
    profiles["tiny"]["set"]["train_size"] = 500
    edit(experiments, profiles)
    params = write_params(tmp_path / "params", experiments, profiles)
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--profile", "tiny", "--params", str(params), "--results", str(tmp_path / "results"),
              "--data-dir", str(image_archive), "--dry-run"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert exit_.value.code == 2 and len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "results").exists()


def test_jobs_beyond_the_cores_is_said_and_never_more_than_the_runs(tmp_path, image_archive, capsys):
    from lab2.runs.executors import usable_cores

    params = write_params(tmp_path / "params")
    assert main(["sweep", "--profile", "tiny", "--params", str(params), "--results", str(tmp_path / "results"),
                 "--data-dir", str(image_archive), "--jobs", "1000"]) == 0
    out = capsys.readouterr().out
    cores = usable_cores()
    assert f"--jobs 1000: more than this machine's {cores} usable cores; 2 runs at once (2 to execute)" in out
    assert "sweep tiny: 2 runs to execute, 2 at once on this machine" in out and "2 ran, 0 cached, 0 failed" in out


def assert_interrupted_in_one_line(sweeper: subprocess.Popen) -> None:
    """Ctrl-C to the sweep's process group (a terminal's job): exit 130 and the sweep's one line, no traceback."""
    os.killpg(sweeper.pid, signal.SIGINT)
    out, err = sweeper.communicate(timeout=60)
    assert sweeper.returncode == 130, (out, err)
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, err
    assert err.strip().splitlines()[-1] == ("python -m lab2 sweep: interrupted; finished runs are kept; "
                                            "run the sweep again to resume"), err


def test_ctrl_c_while_the_command_imports_lab2_is_one_line(tmp_path, image_archive):
    """Ctrl-C in the command's first fraction of a second, while python -m lab2 imports lab2 and its libraries and
    before main() runs: the same one line and exit 130, no traceback through the import machinery, nothing written."""
    import psutil

    params = write_params(tmp_path / "params")
    command = [sys.executable, "-m", "lab2", "sweep", "--profile", "tiny", "--jobs", "1", "--params", str(params),
               "--results", str(tmp_path / "results"), "--data-dir", str(image_archive)]
    for _ in range(3):
        sweeper = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        # Python's own start ends near 11 MB; from 14 MB on, lab2's imports are under way (they reach ~25 MB before
        # main() runs), so the signal lands in them or just after: both must give the one line.
        process = psutil.Process(sweeper.pid)
        deadline = time.time() + 30
        while sweeper.poll() is None and time.time() < deadline and process.memory_info().rss < 14 * 2**20:
            time.sleep(0.002)
        assert_interrupted_in_one_line(sweeper)
    assert not (tmp_path / "results").exists()


def test_ctrl_c_while_the_sweep_starts_is_one_line(tmp_path, image_archive):
    """Ctrl-C (SIGINT to the terminal's process group) while the fork server imports torch and papermill, the
    first seconds of a sweep: one line, no traceback from the sweep or its fork server, nothing written."""
    import psutil

    params = write_params(tmp_path / "params")
    command = [sys.executable, "-m", "lab2", "sweep", "--profile", "tiny", "--jobs", "1", "--params", str(params),
               "--results", str(tmp_path / "results"), "--data-dir", str(image_archive)]
    sweeper = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # a process group of its own, as a terminal's job is

    def command_line(process) -> str:
        try:
            return " ".join(process.cmdline())
        except psutil.NoSuchProcess:  # ended since it was listed, or a zombie (a subclass): not the server
            return ""

    def fork_server() -> bool:
        try:
            children = psutil.Process(sweeper.pid).children()
        except psutil.NoSuchProcess:
            return False
        return any("forkserver" in command_line(child) for child in children)

    deadline = time.time() + 120
    while not fork_server() and time.time() < deadline and sweeper.poll() is None:
        time.sleep(0.05)
    assert fork_server(), "the sweep never started its fork server"
    time.sleep(0.5)  # the server is importing now (it takes seconds); at once, Python's own start would not have run
    assert_interrupted_in_one_line(sweeper)
    assert not (tmp_path / "results").exists()  # stopped before anything was written


def test_runs_of_each_seed_start_longest_first_and_seeds_stay_in_order(tmp_path):
    from lab2.runs.sweep import longest_first

    experiments = json.loads(json.dumps(TINY_EXPERIMENTS))
    experiments["experiments"] = {"few": {"train_size": 100}, "all": {}, "many": {"train_size": 800}}
    profiles = {"tiny": {**TINY_PROFILES["tiny"], "seeds": [0, 1]}}
    runs = plan("tiny", write_params(tmp_path / "params", experiments, profiles)).runs
    ordered = longest_first([(run, str(index)) for index, run in enumerate(runs)], data_images=1040)
    names = [(run.config.seed, run.experiments[0]) for run, _ in ordered]
    # All 1040 training images > 800 > 100 (one epoch each, as the profile sets); seed 0 before seed 1.
    assert names == [(0, "mlp/all"), (0, "mlp/many"), (0, "mlp/few"), (1, "mlp/all"), (1, "mlp/many"), (1, "mlp/few")]


def test_a_run_gets_the_free_cores_of_its_share(monkeypatch):
    from lab2.runs import executors

    monkeypatch.setattr(executors, "usable_cores", lambda: 2)
    for load, jobs, threads in ((0.1, 1, 2), (1.2, 1, 1), (0.1, 2, 1), (3.0, 1, 1), (0.0, 4, 1)):
        monkeypatch.setattr(executors.os, "getloadavg", lambda: (load, load, load))
        assert executors.run_threads(jobs) == threads, (load, jobs)
