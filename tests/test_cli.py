"""`python -m lab2 train`: a real run writes its files; bad values are refused before any work."""

import json
import subprocess
import sys

import pytest

from lab2.__main__ import main
from lab2.core.config import FIELD_NAMES, MODELS, RunConfig
from lab2.core.summary import OK
from lab2.runs.grid import baseline_config


def train_args(data, out, *extra):
    return ["train", "--data-dir", str(data), "--out", str(out), "--hidden", "32", "--batch-size", "50",
            "--num-epochs", "2", "--quiet", *extra]


def test_train_writes_its_four_files(pickle_dir, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(pickle_dir, out, "--train-size", "400")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "env.json", "metrics.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == OK and summary["test_acc"] > 0.3
    env = json.loads((out / "env.json").read_text())
    assert env["data_source"].startswith("pickle:") and len(env["data_fingerprint"]) == 64
    assert {"torch", "device", "git_commit"} <= set(env)
    assert json.loads((out / "config.json").read_text())["train_size"] == 400


def test_every_config_field_has_a_flag_with_help():
    usage = subprocess.run([sys.executable, "-m", "lab2", "train", "--help"], capture_output=True, text=True).stdout
    for name in FIELD_NAMES:
        spelled = "--no-batchnorm" if name == "batchnorm" else "--" + name.replace("_", "-")
        assert spelled in usage
    for common in ("--device", "--data-dir", "--out"):
        assert common in usage


def test_train_without_flags_runs_the_reports_best_mlp():
    assert RunConfig() == baseline_config("mlp")


@pytest.mark.parametrize("extra, message", [
    (["--learning-rate", "-0.1"], "--learning-rate: must be in (0, 1], got -0.1"),
    (["--dropout-rate", "1.5"], "--dropout-rate: must be in [0, 1), got 1.5"),
    (["--model", "rnn"], "--model: invalid choice: 'rnn'"),
    (["--batch-size", "600", "--train-size", "500"], "--batch-size: must be at most train_size (500), got 600"),
    (["--batch-size", "5000"], "--batch-size: must be at most the 1040 training images, got 5000"),
    (["--train-size", "5000"], "--train-size: must be at most the 1040 training images, got 5000"),
    (["--eval-size", "5000"], "--eval-size: must be at most 260 (the data has 260 validation and"),
    (["--num-epochs", "0"], "--num-epochs: must be an integer >= 1, got 0"),
    (["--device", "tpu"], "--device tpu: not a device lab2 runs on; allowed: cpu, cuda, cuda:N or auto"),
    (["--device", "cuda:x"], "--device cuda:x: not a device lab2 runs on"),
])
def test_bad_values_are_refused_naming_the_flag(pickle_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(train_args(pickle_dir, out, *extra))
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], errors
    assert not out.exists()  # refused before any work: nothing written


def test_a_batch_larger_than_the_training_set_is_one_error_naming_the_flag(pickle_dir, tmp_path, capsys):
    """The check needs the data, so it runs after the flags are parsed, and still speaks in flags."""
    with pytest.raises(SystemExit) as exit_:
        main(train_args(pickle_dir, tmp_path / "run", "--batch-size", "5000"))
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == ["python -m lab2 train: error: --batch-size: must be at most the 1040 training images, got 5000"]
    assert not (tmp_path / "run").exists()


def test_a_cuda_device_without_cuda_is_refused_by_train_and_bench(pickle_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for command in (train_args(pickle_dir, tmp_path / "run", "--device", "cuda"),
                    ["bench", "--device", "cuda"], ["bench", "--device", "tpu"]):
        with pytest.raises(SystemExit) as exit_:
            main(command)
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert exit_.value.code == 2 and len(errors) == 1 and "--device " in errors[0], errors
    assert not (tmp_path / "run").exists()


def test_missing_data_path_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(train_args(tmp_path / "no-such-data", tmp_path / "run"))
    err = capsys.readouterr().err
    assert "--data-dir: No CIFAR-10 found" in err and "no-such-data" in err
    assert not (tmp_path / "run").exists()


def test_finished_run_is_not_overwritten(pickle_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(train_args(pickle_dir, out))
    assert "already holds a finished run" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == "{}"


def test_bench_runs_and_reports_a_ratio(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", ",".join(MODELS), "--channels", "4", "--repeats", "1", "--steps", "2",
                 "--device", "cpu", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["model"] for row in rows] == list(MODELS) and all(row["ratio"] > 0 for row in rows)
    # Each model's best setting, as params/ declares it.
    assert [row["batch_size"] for row in rows] == [baseline_config(model).batch_size for model in MODELS]
    assert "ratio" in capsys.readouterr().out


def test_overhead_bench_times_a_real_run_and_splits_fit_from_fixed_cost(image_archive, tmp_path, capsys):
    out = tmp_path / "overhead.json"
    assert main(["bench", "--overhead", "--models", "mlp", "--repeats", "1", "--data-dir", str(image_archive),
                 "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["model"] == "mlp" and 0 < row["fit_s"] < row["wall_s"]
    assert row["fixed_s"] == pytest.approx(row["wall_s"] - row["fit_s"])
    assert "fixed s" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "--overhead", "--models", "rnn"])
    assert f"--models: rnn is no model; allowed: {', '.join(MODELS)}" in capsys.readouterr().err
