"""The training loop: it learns, it is deterministic, it records divergence, it writes its files."""

import csv
import dataclasses
import json
import math

import pytest
import torch

from lab2.core import step, train
from lab2.core.config import MODELS, ConfigError, RunConfig
from lab2.core.summary import DIVERGED, OK, SUMMARY_KEYS
from lab2.core.train import fit
from lab2.runs import record
from lab2.runs.fingerprint import changed_code
from lab2.runs.record import save_run

CPU = torch.device("cpu")


def small(**fields) -> RunConfig:
    values = dict(model="mlp", hidden=64, channels=4, batch_size=50, num_epochs=3, dropout_rate=0.3)
    return RunConfig(**{**values, **fields})


@pytest.mark.parametrize("model", MODELS)
def test_learns_separable_data_well_above_chance(splits, model):
    result = fit(small(model=model), splits, CPU, progress=False)
    assert result.summary["status"] == OK
    assert result.summary["test_acc"] > 0.6  # chance is 0.1
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_summary_holds_the_reports_numbers(splits):
    result = fit(small(), splits, CPU, progress=False)
    summary, history = result.summary, result.history
    assert set(SUMMARY_KEYS) <= set(summary)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert summary["train_loss"] == history[-1]["train_loss"] and summary["val_acc"] == history[-1]["val_acc"]
    best = max(row["val_acc"] for row in history)
    assert summary["best_val_acc"] == best
    # Test is taken at the last epoch that reached the best validation accuracy (>=).
    assert summary["best_epoch"] == max(row["epoch"] for row in history if row["val_acc"] == best)
    assert 0 <= summary["test_acc"] <= 1 and summary["seconds"] > 0


def test_same_seed_same_metrics_other_seed_other_metrics(splits):
    def metrics(seed):
        history = fit(small(seed=seed, model="cnn"), splits, CPU, progress=False).history
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert metrics(0) == metrics(0)
    assert metrics(0) != metrics(1)


def test_reference_layers_train_alike(splits):
    ours = fit(small(), splits, CPU, progress=False).summary["test_acc"]
    theirs = fit(small(), splits, CPU, progress=False, layers="torch").summary["test_acc"]
    assert abs(ours - theirs) < 0.1


def test_a_nan_loss_is_reported_as_diverged(splits, monkeypatch):
    real_cross_entropy = step.F.cross_entropy

    def exploding(logits, labels, **kwargs):
        return real_cross_entropy(logits, labels, **kwargs) * math.inf

    monkeypatch.setattr(step.F, "cross_entropy", exploding)
    result = fit(small(), splits, CPU, progress=False)
    assert result.summary["status"] == DIVERGED
    assert result.history == [] and result.summary["test_acc"] is None
    assert result.summary["diverged_epoch"] == 1 and result.summary["error"] == "diverged at epoch 1: training loss is nan"


def test_a_loss_far_above_an_untrained_models_stops_the_run_as_diverged(splits):
    # Adam at learning rate 1.0 throws a CNN's logits far out without BatchNorm: a finite loss, at chance accuracy.
    result = fit(small(model="cnn", batchnorm=False, learning_rate=1.0), splits, CPU, progress=False)
    assert result.summary["status"] == DIVERGED
    epoch = result.summary["diverged_epoch"]
    assert len(result.history) == epoch - 1  # the epochs before are kept, the one that diverged is not
    assert f"diverged at epoch {epoch}: " in result.summary["error"] and "is above 23.0" in result.summary["error"]


def test_save_run_writes_every_file_summary_last(splits, tmp_path, monkeypatch):
    written = []
    real_write_json = record.write_json
    monkeypatch.setattr(record, "write_json", lambda path, value: (written.append(str(path)), real_write_json(path, value)))
    config = small(num_epochs=2)
    result = fit(config, splits, CPU, progress=False)
    result.environment = {"device": "cpu"}
    save_run(tmp_path, config, result)
    assert json.loads((tmp_path / "config.json").read_text()) == config.to_dict()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert len(rows) == 2 and float(rows[1]["val_acc"]) == result.history[1]["val_acc"]
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == OK
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind
    assert written[-1].endswith("summary.json")  # the file that marks the run complete comes last
    # The code that computed the numbers, per file; the run machinery and the book's analysis excluded.
    code = json.loads((tmp_path / "env.json").read_text())["code_fingerprint"]
    assert {"lab2/core/layers.py", "lab2/core/train.py", "lab2/core/models.py"} <= set(code)
    assert not [name for name in code if name.startswith(("lab2/runs/", "lab2/report/"))]
    assert changed_code(code) == []


def test_device_choice():
    assert train.choose_device("cpu") == CPU
    assert train.choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train.choose_device("cuda")


def test_every_config_is_checked_where_it_is_made():
    with pytest.raises(ConfigError) as refused:
        RunConfig(dropout_rate=1.0)
    assert refused.value.field == "dropout_rate"
    with pytest.raises(ConfigError) as refused:
        dataclasses.replace(RunConfig(), batch_size=0)
    assert refused.value.field == "batch_size"
