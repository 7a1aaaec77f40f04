"""The predictions of "Why the numbers differ" judged on runs made up here: the calibration rule,
what counts as a held prediction, and protocol statistics that leave the departures out."""

import pandas as pd
import pytest

from lab2.core.config import RunConfig
from lab2.report import predictions, results
from lab2.report.noise import Verdict
from lab2.report.experiments import BASELINE, DEPARTURES, PIXEL_NOISE_GRID

REPORT = {"train_loss": 0.60, "train_acc": 0.79, "val_loss": 1.44, "val_acc": 0.55, "test_acc": 0.56}
METRICS = tuple(REPORT)
SPREAD = {"train_loss": 0.004, "train_acc": 0.002, "val_loss": 0.01, "val_acc": 0.002, "test_acc": 0.002}


def seeds(role: str, values: dict, device: str = "cpu", **fields) -> list[dict]:
    """Three finished runs of one setting, whose metrics are `values` spread by SPREAD (mean exactly `values`)."""
    config = {**RunConfig().to_dict(), **fields}
    rows = []
    for seed, step in enumerate((-1, 0, 1)):
        metrics = {metric: values[metric] + step * SPREAD[metric] for metric in METRICS}
        rows.append({**config, **metrics, "seed": seed, "run_id": f"{role}-{fields}-{seed}", "roles": [role],
                     "experiments": [f"mlp/{role}"], "status": "ok", "device": device,
                     "device_name": "cpu" if device == "cpu" else "NVIDIA H200",
                     "used_precision": "fp32" if device == "cpu" else "tf32", "pixel_rmse": 0.0})
    return rows


def shifted(**differences) -> dict:
    return {metric: REPORT[metric] + differences.get(metric, 0.0) for metric in METRICS}


def reference(*settings: dict) -> pd.DataFrame:
    """The report's numbers (REPORT) for each setting, as results.load_reference has them."""
    rows = [{"model": "mlp", "experiment": "best", "role": "best", "dropout_kind": None, "note": None,
             "dropout_rate": 0.5, "batch_size": 500, "learning_rate": 0.001, "batchnorm": True,
             **setting, "metric": metric, "value": value}
            for setting in settings for metric, value in REPORT.items()]
    return pd.DataFrame(rows)


SPEC = {"lost_detail": {"calibration_metrics": ["train_loss", "train_acc", "val_loss"],
                        "metrics": ["train_loss", "train_acc", "val_loss"],
                        "settings": [{"batch_size": 50}, {"batchnorm": False}]}}


def test_calibration_takes_the_lowest_level_at_which_the_best_setting_agrees_and_judges_the_others_at_it():
    runs = pd.DataFrame([
        *seeds(BASELINE.label, shifted(train_loss=0.10), device="cuda"),
        *seeds(PIXEL_NOISE_GRID.label, shifted(train_loss=0.08), pixel_noise=4.0),  # clear, beyond noise
        *seeds(PIXEL_NOISE_GRID.label, shifted(train_loss=0.02), pixel_noise=8.0),  # small: agrees
        *seeds(PIXEL_NOISE_GRID.label, shifted(), pixel_noise=12.0),  # agrees too, but higher
        *seeds("noise", shifted(train_loss=0.001), pixel_noise=8.0, batch_size=50),  # within noise: held
        *seeds("noise", shifted(train_acc=-0.05), pixel_noise=8.0, batchnorm=False),  # large: did not hold
        *seeds("noise", shifted(), pixel_noise=12.0, batchnorm=False),  # another level: not looked at
    ])
    found = predictions.lost_detail(runs, reference({}, {"batch_size": 50}, {"batchnorm": False}), SPEC)
    assert found.level == 8.0
    assert found.counts == {"held": 5, "did not hold": 1, "not judged": 0, "total": 6}
    failed = found.prediction[found.prediction["outcome"] == predictions.FAILED]
    assert failed[["setting", "metric"]].values.tolist() == [["without BatchNorm", "train_acc"]]


def test_a_prediction_without_its_runs_is_not_judged_and_no_level_is_chosen_without_an_agreeing_one():
    runs = pd.DataFrame([*seeds(BASELINE.label, shifted(), device="cuda"),
                         *seeds(PIXEL_NOISE_GRID.label, shifted(train_loss=0.2), pixel_noise=4.0)])
    found = predictions.lost_detail(runs, reference({}, {"batch_size": 50}, {"batchnorm": False}), SPEC)
    assert found.level is None
    assert found.counts == {"held": 0, "did not hold": 0, "not judged": 6, "total": 6}


@pytest.mark.parametrize("prediction, difference, noise, size, expected", [
    ("same", 0.0, 0.0, "none", True),  # bit for bit
    ("same", 0.001, 0.002, "small", True),  # within noise
    ("same", 0.05, 0.002, "clear", False),
    ("higher small", 0.01, 0.002, "small", True),
    ("higher small", 0.10, 0.002, "clear", False),  # the right way, but larger than predicted
    ("higher small", -0.01, 0.002, "small", False),  # the wrong way
    ("lower clear", -0.001, 0.002, "small", False),  # within noise: no change seen
    ("lower clear", -0.10, float("nan"), "clear", None),  # one seed: noise unknown
])
def test_a_predicted_change_holds_when_its_direction_is_beyond_noise_and_its_size_is_the_one_predicted(
        prediction, difference, noise, size, expected):
    assert predictions.predicted_held(prediction, Verdict(difference, noise, size)) is expected


def test_variants_are_judged_against_standard_batchnorm_on_the_same_device_only():
    spec = {"batchnorm_variants": {"metrics": ["train_loss"], "running_in_training": {50: {"train_loss": "lower clear"}}}}
    common = dict(precision="fp32", batch_size=50)
    runs = pd.DataFrame([
        *seeds(BASELINE.label, shifted(), device="cuda"),
        *seeds("standard on a GPU", shifted(train_loss=0.5), device="cuda", **common),  # another device: ignored
        *seeds("standard", shifted(train_loss=0.2), **common),
        *seeds("variant", shifted(train_loss=0.1), batchnorm_variant="running_in_training", **common),
    ])
    found = predictions.batchnorm_variants(runs, reference({"batch_size": 50}), spec)
    row = found.table.iloc[0]
    assert row["measured"].difference == pytest.approx(-0.1)  # against the CPU's standard BatchNorm
    assert row["prediction"] == predictions.HELD
    assert found.counts["running_in_training"]["held"] == 1
    assert found.explains["running_in_training"] == {50: False}  # 0.7 against the report's 0.6: clear, beyond noise


def test_a_variant_is_compared_with_standard_batchnorm_on_the_seeds_both_have():
    """Seed 0 of the variant against seed 0 of standard BatchNorm, not against the mean of its three seeds: a
    variant whose training never reads what it changes trains bit for bit as standard, and 'same' holds."""
    spec = {"batchnorm_variants": {"metrics": ["train_loss"], "momentum_swapped": {50: {"train_loss": "same"}}}}
    common = dict(precision="fp32", batch_size=50)
    standard = seeds("standard", shifted(train_loss=0.2), **common)  # seed 0 lies one spread below their mean
    variant = [{**standard[0], "run_id": "variant-0", "batchnorm_variant": "momentum_swapped"}]
    runs = pd.DataFrame([*seeds(BASELINE.label, shifted(), device="cuda"), *standard, *variant])
    row = predictions.batchnorm_variants(runs, reference({"batch_size": 50}), spec).table.iloc[0]
    assert row["measured"].difference == 0.0 and row["standard"].count == 1
    assert row["prediction"] == predictions.HELD


def test_protocol_statistics_leave_out_every_run_that_departs_from_the_protocol():
    departure = DEPARTURES[0].label
    runs = pd.DataFrame({"run_id": ["a", "b", "c", "d"],
                         "roles": [[BASELINE.label], [departure], [departure, BASELINE.label], [None]]})
    assert results.protocol(runs)["run_id"].tolist() == ["a", "c", "d"]  # an appendix experiment is the protocol's
    epochs = pd.DataFrame({"run_id": ["a", "b", "b", "d"], "epoch": [1, 1, 2, 1]})
    assert results.protocol_epochs(epochs, runs)["run_id"].tolist() == ["a", "d"]


def test_the_committed_predictions_name_only_settings_and_metrics_that_exist():
    spec = predictions.read()
    fields = set(RunConfig().to_dict())
    for setting in spec["lost_detail"]["settings"]:
        assert set(setting) <= set(predictions.SETTING)
        RunConfig(**setting)
    for variant, by_batch in spec["batchnorm_variants"].items():
        if variant == "metrics":
            continue
        RunConfig(batchnorm_variant=variant)
        for expected in by_batch.values():
            assert set(expected) == set(spec["batchnorm_variants"]["metrics"])
            for prediction in expected.values():
                assert prediction == "same" or prediction.split()[0] in ("higher", "lower")
    assert "batchnorm_variant" in fields
