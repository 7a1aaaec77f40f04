"""The book's evidence: the noise rule, the evidence table and its pivots against the report, turning points."""

import json
import math

import pandas as pd
import pytest

from conftest import TEST_FINGERPRINT, write_run

from lab2.core.config import RunConfig
from lab2.core.summary import OK
from lab2.report import claims, evidence, noise, results, tables
from lab2.report.experiments import BASELINE
from lab2.report.noise import Estimate
from lab2.report.results import METRICS
from lab2.runs import record
from lab2.runs.manifest import write_manifest


def fake_runs(test_accs: list[float], model: str = "mlp") -> pd.DataFrame:
    """One finished run per seed of the report's best MLP, with the given test accuracies."""
    return pd.DataFrame([{
        **RunConfig(model=model, seed=seed).to_dict(), "run_id": f"{model}-{seed}", "experiments": [f"{model}/best"],
        "roles": [BASELINE.label], "status": OK, "device_name": "cpu", "used_precision": "fp32",
        **{metric: 0.5 for metric in METRICS}, "test_acc": accuracy,
    } for seed, accuracy in enumerate(test_accs)])


def against_report(runs: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    return evidence.against_report(evidence.build(runs, reference), reference)


def test_estimate_has_no_spread_from_one_seed():
    one = Estimate.of([0.56])
    assert one.count == 1 and math.isnan(one.std) and not one.has_spread
    assert one.format() == "0.560"
    three = Estimate.of([0.55, 0.56, 0.57])
    assert three.format() == "0.560 ± 0.010"
    assert noise.judge_difference(one, three).beyond_noise is None


def test_differences_are_judged_against_seed_noise():
    base = Estimate.of([0.55, 0.56, 0.57])
    assert noise.judge_difference(Estimate.of([0.60, 0.61, 0.62]), base).beyond_noise is True
    assert noise.judge_difference(Estimate.of([0.56, 0.57, 0.58]), base).beyond_noise is False
    assert claims.judge(Estimate.of([0.60, 0.61, 0.62]), base) == (claims.HOLDS, "large difference, beyond noise")
    assert claims.judge(base, Estimate.of([0.60, 0.61, 0.62]))[0] == claims.FAILS
    assert claims.judge(Estimate.of([0.56, 0.57, 0.58]), base) == (claims.NOISE, "small difference")
    assert claims.judge(Estimate.of([0.6]), Estimate.of([0.5]))[0] == claims.ONE_SEED


@pytest.mark.parametrize("difference, reference, metric, size", [
    (0.0, 0.5, "test_acc", noise.NO_DIFFERENCE),
    (0.0099, 0.5, "test_acc", noise.SMALL), (-0.01, 0.5, "val_acc", noise.CLEAR),
    (0.0299, 0.5, "test_acc", noise.CLEAR), (0.03, 0.5, "train_acc", noise.LARGE),
    # Losses relative to the number compared with: 5 % and 20 %.
    (0.049, 1.0, "test_loss", noise.SMALL), (-0.05, 1.0, "val_loss", noise.CLEAR),
    (0.199, 1.0, "train_loss", noise.CLEAR), (0.2, 1.0, "train_loss", noise.LARGE),
    (0.03, 0.1, "train_loss", noise.LARGE),  # 0.03 is 30 % of a training loss of 0.1
])
def test_the_size_of_a_difference_steps_at_one_and_three_points_or_five_and_twenty_percent(
        difference, reference, metric, size):
    assert noise.size_of(difference, reference, metric) == size


def test_a_verdict_says_its_size_and_whether_seeds_tell_it_from_noise():
    original = 0.561
    assert noise.judge_against_original(Estimate.of([0.60, 0.61, 0.62]), original, "test_acc").text == (
        "large, beyond noise")
    assert noise.judge_against_original(Estimate.of([0.556, 0.561, 0.566]), original, "test_acc").text == (
        "small, within noise")
    assert noise.judge_against_original(Estimate.of([0.58]), original, "test_acc").text == (
        "clear; one seed, noise unknown")
    assert noise.judge_against_original(Estimate.of([]), original, "test_acc").text == noise.NOT_MEASURED


def best_row(comparison: pd.DataFrame, model: str = "mlp", metric: str = "test_acc") -> pd.Series:
    """The one row of a model's best setting and a metric."""
    rows = comparison[(comparison["model"] == model) & (comparison["dropout_rate"] == 0.5)
                      & (comparison["batch_size"] == 500) & (comparison["learning_rate"] == 0.001)
                      & comparison["batchnorm"] & (comparison["metric"] == metric)]
    assert len(rows) == 1
    return rows.iloc[0]


@pytest.mark.parametrize("accuracies, beyond, verdict", [
    ([0.55], None, "clear; one seed, noise unknown"),
    ([0.556, 0.561, 0.566], False, "small, within noise"),
    ([0.60, 0.61, 0.62], True, "large, beyond noise"),
])
def test_reference_numbers_are_matched_and_judged_by_the_noise_rule(accuracies, beyond, verdict):
    reference = results.load_reference()
    comparison = against_report(fake_runs(accuracies), reference)
    row = best_row(comparison)
    assert row["seeds"] == len(accuracies)
    assert row["reproduced"] == pytest.approx(sum(accuracies) / len(accuracies))
    assert row["difference"] == pytest.approx(row["reproduced"] - row["original"])
    assert row["beyond_noise"] is beyond
    assert row["verdict"].text == verdict
    # Only the best MLP was run: every other number of the report is unmatched.
    assert (comparison["seeds"] > 0).sum() == len(METRICS)


def test_each_model_setting_and_metric_is_one_row_though_the_report_printed_it_in_several_sections():
    reference = results.load_reference()
    comparison = against_report(fake_runs([0.56]), reference)
    keys = [*evidence.SETTING_KEYS, "metric"]
    assert not comparison.duplicated(keys).any()
    assert len(comparison) == len(reference.assign(key=reference.apply(evidence.setting_key, axis=1))
                                  .drop_duplicates(["key", "metric"]))
    row = best_row(comparison)
    # The best MLP is also a point of each of the report's grids; it printed the same run each time,
    # in full in one section and rounded in another.
    assert row["printed_in"] == "best, grid_dropout_rate, grid_batch_size, grid_learning_rate"
    assert row["original_runs"] == 1 and row["original_values"] == pytest.approx((0.561,), abs=1e-6)
    assert row["original"] == pytest.approx(0.561, abs=1e-6)
    train_acc = best_row(comparison, metric="train_acc")
    assert train_acc["original_runs"] == 1 and train_acc["original"] == pytest.approx(0.789175, abs=1e-6)


def test_a_setting_printed_with_different_values_is_compared_with_their_mean():
    reference = results.load_reference()
    best = (reference["model"] == "mlp") & (reference["experiment"] == "grid_batch_size") & (
        reference["batch_size"] == 500) & (reference["metric"] == "test_acc")
    assert best.sum() == 1
    reference.loc[best, "value"] = 0.571  # another run than the 0.561 of the other sections
    row = best_row(against_report(fake_runs([0.56]), reference))
    assert row["original_runs"] == 2 and sorted(row["original_values"]) == pytest.approx([0.561, 0.571], abs=1e-6)
    assert row["original"] == pytest.approx(0.566)
    assert evidence.printed_numbers([0.7891750365, 0.7892, 0.789]) == [0.7891750365]
    assert evidence.printed_numbers([0.5613, 0.561]) == [0.5613]  # 0.561 may be 0.5613 rounded
    assert evidence.printed_numbers([0.5613, 0.562]) == [0.5613, 0.562]


def test_the_original_page_counts_each_number_once_and_the_counts_add_up():
    comparison = against_report(fake_runs([0.55, 0.56, 0.61]), results.load_reference())
    counts = tables.reference_counts(comparison)
    assert counts["numbers"] == len(comparison)
    assert counts["numbers"] == counts["without_runs"] + counts["beyond"] + counts["within"] + counts["one_seed"]
    assert counts["beyond"] == counts["beyond_large"] + counts["beyond_clear"] + counts["beyond_small"]
    assert counts["with_runs"] == len(METRICS)
    by_metric = tables.agreement_by_metric(comparison)
    assert by_metric["numbers"].sum() == len(comparison)
    assert (by_metric["beyond noise"] + by_metric["within noise"] + by_metric["one seed"]).sum() == counts["with_runs"]
    shown = tables.reference_table(comparison)
    assert len(shown) == len(comparison)
    assert not shown.astype(str).apply(lambda column: column.str.contains("nan", case=False)).any().any()
    # A number without runs says so in its own column, and has no difference or verdict.
    unmeasured = shown["seeds"] == 0
    assert unmeasured.any() and (shown.loc[unmeasured, "reproduced"] == noise.NOT_MEASURED).all()
    assert (shown.loc[unmeasured, ["difference", "verdict"]] == "").all().all()
    assert not shown.loc[~unmeasured].astype(str).apply(lambda column: column.str.contains(noise.NOT_MEASURED)).any().any()
    # Largest disagreements first; numbers without runs last.
    assert list(shown["seeds"].iloc[:len(METRICS)] > 0) == [True] * len(METRICS)
    ranks = [tables.SIZE_ORDER.index(size) for size in
             comparison.loc[tables.disagreement_order(comparison).index[:len(METRICS)], "size"]]
    assert ranks == sorted(ranks)


def test_a_number_whose_runs_are_missing_reads_the_same_wherever_it_is_shown():
    nothing = Estimate.of([])
    assert not noise.measured(nothing.mean) and not noise.measured(None) and noise.measured(0.0)
    assert nothing.format() == noise.judge_difference(nothing, Estimate.of([0.5])).text == noise.NOT_MEASURED
    assert noise.difference_phrase(nothing, Estimate.of([0.5])) == noise.NOT_MEASURED
    assert noise.number(float("nan")) == noise.plus_minus(float("nan"), 0.1) == noise.NOT_MEASURED
    comparison = against_report(fake_runs([0.55, 0.56]), results.load_reference())
    by_metric = tables.agreement_by_metric(comparison)
    unmeasured = by_metric[by_metric["with runs"] == 0]
    assert len(unmeasured) and (unmeasured[["median difference", "range", "direction"]] == noise.NOT_MEASURED).all().all()


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
    from lab2.core.config import RunConfig, run_id

    folder = tmp_path / "full"
    planned = []
    for seed, device_precision in ((0, "tf32"), (1, "fp32")):
        config = RunConfig(model="mlp", seed=seed, precision="tf32")
        run_dir = write_run(folder / run_id(config, TEST_FINGERPRINT), config, {"precision": device_precision})
        planned.append({"run_id": run_dir.name, "experiments": ["mlp/best"], "config": config.to_dict()})
    write_manifest(folder, {"profile": "full", "experiments": {"mlp/best": {}}, "runs": planned})
    runs = results.load_results("full", tmp_path).runs
    assert results.varying_fields(runs) == []  # seed is not a setting field
    assert list(runs["used_precision"]) == ["tf32", "fp32"]


@pytest.mark.parametrize("value, digits, sign, shown", [
    (0.5612, 3, False, "0.561"), (-0.0004, 3, True, "-0.0004"), (0.00004, 3, False, "0.00004"), (0.0, 3, True, "+0.000"),
    (0.0002, 4, False, "0.0002"),
])
def test_a_real_but_small_number_never_reads_as_zero(value, digits, sign, shown):
    assert noise.number(value, digits, sign) == shown
    assert noise.plus_minus(0.561, 0.0003) == "0.561 ± 0.0003"


def test_the_evidence_table_has_a_row_per_experiment_setting_and_metric_with_what_ran():
    runs = pd.concat([fake_runs([0.55, 0.56]), fake_runs([0.5]).assign(run_id="x", status="missing", seed=2)])
    table = evidence.build(runs, results.load_reference())
    assert len(table) == len(METRICS) and set(table["metric"]) == set(METRICS)
    row = table[table["metric"] == "test_acc"].iloc[0]
    assert (row["planned"], row["finished"], row["seeds"], row["planned_seeds"]) == (3, 2, (0, 1), (0, 1, 2))
    assert row["estimate"].mean == pytest.approx(0.555) and row["original"] == pytest.approx(0.561, abs=1e-6)
    assert evidence.estimate(table, "mlp", BASELINE).count == 2
    assert evidence.missing_seeds(table)["lacking"].tolist() == [(2,)]
