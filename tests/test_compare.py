"""The book's statistics: seed spread, differences against noise, the reference match, turning points."""

import math

import pandas as pd
import pytest

from lab2.report import claims, compare, results
from lab2.report.compare import Estimate
from lab2.report.experiments import BASELINE
from lab2.report.results import METRICS


def fake_runs(test_accs: list[float], model: str = "mlp") -> pd.DataFrame:
    """One finished run per seed of the report's best MLP, with the given test accuracies."""
    return pd.DataFrame([{
        "run_id": f"{model}-{seed}", "experiments": [f"{model}/baseline"], "roles": [BASELINE.label], "model": model,
        "dropout_rate": 0.5,
        "batch_size": 500, "learning_rate": 1e-3, "batchnorm": True, "dropout_kind": "2d", "seed": seed,
        "status": "ok", **{metric: 0.5 for metric in METRICS}, "test_acc": accuracy,
    } for seed, accuracy in enumerate(test_accs)])


def test_estimate_has_no_spread_from_one_seed():
    one = Estimate.of([0.56])
    assert one.count == 1 and math.isnan(one.std) and not one.has_spread
    assert one.format() == "0.560"
    three = Estimate.of([0.55, 0.56, 0.57])
    assert three.format() == "0.560 ± 0.010"
    assert compare.separated(one, three) is None


def test_differences_are_judged_against_seed_noise():
    base = Estimate.of([0.55, 0.56, 0.57])
    assert compare.separated(Estimate.of([0.60, 0.61, 0.62]), base) is True
    assert compare.separated(Estimate.of([0.56, 0.57, 0.58]), base) is False
    assert claims.judge(Estimate.of([0.60, 0.61, 0.62]), base) == claims.HOLDS
    assert claims.judge(base, Estimate.of([0.60, 0.61, 0.62])) == claims.FAILS
    assert claims.judge(Estimate.of([0.56, 0.57, 0.58]), base) == claims.NOISE
    assert claims.judge(Estimate.of([0.6]), Estimate.of([0.5])) == claims.HOLDS + claims.ONE_SEED


@pytest.mark.parametrize("accuracies, within", [([0.55], None), ([0.556, 0.561, 0.566], True), ([0.60, 0.61, 0.62], False)])
def test_reference_numbers_are_matched_and_judged_within_spread(accuracies, within):
    reference = results.load_reference()
    comparison = compare.compare_with_reference(fake_runs(accuracies), reference)
    row = comparison[(comparison["model"] == "mlp") & (comparison["experiment"] == "best")
                     & (comparison["metric"] == "test_acc")].iloc[0]
    assert row["seeds"] == len(accuracies)
    assert row["reproduced"] == pytest.approx(sum(accuracies) / len(accuracies))
    assert row["difference"] == pytest.approx(row["reproduced"] - row["original"])
    assert row["within_spread"] is within
    # Only the best MLP was run: every other number of the report is unmatched.
    assert (comparison["seeds"] > 0).sum() == len(METRICS)


def test_turning_point_is_the_epoch_of_lowest_validation_loss():
    epochs = pd.DataFrame({"run_id": "r", "epoch": [1, 2, 3, 4], "train_loss": [2.0, 1.5, 1.0, 0.5],
                           "val_loss": [2.0, 1.2, 1.4, 1.6], "val_acc": [0.3, 0.5, 0.55, 0.56]})
    point = results.turning_points(epochs).iloc[0]
    assert (point["turning_epoch"], point["last_epoch"], point["epochs_past_turn"]) == (2, 4, 2)
    assert (point["val_acc_turn"], point["val_acc_last"]) == (0.5, 0.56)
    best = results.best_within(epochs, 2).iloc[0]
    assert (best["best_val_acc_early"], best["best_val_acc_all"]) == (0.5, 0.56)


def test_a_setting_run_on_a_gpu_and_a_cpu_stays_one_setting(tmp_path):
    # A CPU computes in fp32 whatever the setting says; env.json records that, config.json the setting.
    from lab2.config import RunConfig
    from lab2.runs import record

    folder = tmp_path / "full"
    planned = []
    for seed, device_precision in ((0, "tf32"), (1, "fp32")):
        config = RunConfig(model="mlp", seed=seed, precision="tf32")
        run_dir = folder / f"mlp-{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / record.ENVIRONMENT_FILE).write_text(f'{{"precision": "{device_precision}"}}')
        (run_dir / record.SUMMARY_FILE).write_text('{"status": "ok", "test_acc": 0.5}')
        planned.append({"run_id": f"mlp-{seed}", "experiments": ["mlp/best"], "config": config.to_dict()})
    record.write_manifest(folder, {"profile": "full", "experiments": {"mlp/best": {}}, "runs": planned})
    runs = results.load_runs("full", tmp_path)
    assert results.varying_fields(runs) == []  # seed is not a setting field
    assert list(runs["used_precision"]) == ["tf32", "fp32"]
