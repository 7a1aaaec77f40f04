"""The report's claims, judged on small fake sweeps: judged only on their data, by the one noise rule,
and counted so that the counts add up."""

import itertools

import pandas as pd
import pytest

from lab2.core.config import RunConfig
from lab2.core.summary import OK
from lab2.report import claims, evidence, results
from lab2.report.noise import Estimate
from lab2.report.experiments import (BASELINE, BATCH_SIZE_GRID, GRIDS, LEARNING_RATE_GRID, NO_BATCHNORM,
                                     NO_DROPOUT, Role)
from lab2.report.results import METRICS
from lab2.runs import record

BEST = {"mlp": {"dropout_rate": 0.5, "batch_size": 500, "learning_rate": 1e-3},
        "cnn": {"dropout_rate": 0.0, "batch_size": 100, "learning_rate": 1e-3}}
ROLE_SETTINGS = {NO_DROPOUT: {"dropout_rate": 0.0}, NO_BATCHNORM: {"batchnorm": False}}
EPOCHS = 4


def fake_run(model: str, role: Role, seed: int = 0, finished: bool = True, test_acc: float = 0.5, **settings) -> dict:
    """One planned run of the report's `role` for `model`, finished (ok) with the given test accuracy or missing."""
    settings = {**ROLE_SETTINGS.get(role, {}), **settings}
    config = RunConfig(model=model, **{**BEST[model], **settings}, num_epochs=EPOCHS, seed=seed).to_dict()
    run_id = f"{model}-{role.name}-{'-'.join(f'{v}' for v in settings.values())}-{seed}"
    metrics = {metric: (0.5 if finished else None) for metric in METRICS}
    return {"run_id": run_id, "experiments": [f"{model}/{role.name}"], "roles": [role.label], **config, **metrics,
            "test_acc": test_acc if finished else None, "status": OK if finished else record.MISSING,
            "device_name": "cpu", "used_precision": "fp32"}


def ev(runs: pd.DataFrame) -> pd.DataFrame:
    """The evidence table of fake runs (lab2.report.evidence)."""
    return evidence.build(runs, results.load_reference())


def grid(model: str, field: str, accuracies: dict, seeds=(0,)) -> list[dict]:
    """A grid's runs: accuracies maps each value to a test accuracy (per seed: a list), or None if it has not run."""
    rows = []
    for value, accuracy in accuracies.items():
        for seed in seeds:
            per_seed = accuracy[seed] if isinstance(accuracy, list) else accuracy
            rows.append(fake_run(model, GRIDS[field], seed, per_seed is not None, per_seed or 0.0, **{field: value}))
    return rows


def fake_epochs(runs: pd.DataFrame, curves: dict) -> pd.DataFrame:
    """Per finished run, EPOCHS epochs: curves maps a run id to {column: values}; other columns are flat."""
    rows = []
    for run in results.finished(runs).itertuples():
        curve = curves.get(run.run_id, {})
        for epoch in range(1, EPOCHS + 1):
            values = {column: curve.get(column, [1.0] * EPOCHS)[epoch - 1]
                      for column in ("train_loss", "train_acc", "val_loss", "val_acc")}
            rows.append({"run_id": run.run_id, "epoch": epoch, "num_epochs": EPOCHS, **values})
    return pd.DataFrame(rows)


def test_a_grid_with_missing_values_is_not_judged_and_names_them():
    runs = pd.DataFrame(grid("cnn", "batch_size", {50: None, 100: 0.76, 200: None, 500: None}))
    claim = claims.best_setting(ev(runs), results.load_reference(), "cnn", "batch_size")
    assert claim.outcome == claims.NOT_JUDGED
    assert claim.verdict == "not judged: the CNN's batch sizes 50, 200, 500 have no finished run"
    assert claim.evidence == claims.NO_EVIDENCE  # no number of the one setting that ran stands for the grid


def test_a_claim_comparing_a_missing_setting_is_not_judged():
    runs = pd.DataFrame([fake_run("mlp", BASELINE, test_acc=0.56), fake_run("mlp", NO_BATCHNORM, finished=False)])
    claim = claims.batchnorm_helps(ev(runs), "mlp")
    assert claim.verdict == "not judged: the MLP without BatchNorm has no finished run"
    unplanned = claims.batchnorm_helps(ev(runs[runs["roles"].map(lambda roles: BASELINE.label in roles)]), "mlp")
    assert unplanned.verdict == "not judged: the MLP without BatchNorm is not in this profile's plan"


@pytest.mark.parametrize("accuracies, outcome, detail", [
    # The report's 500 tops the grid, every other value far below beyond noise.
    ({50: [0.50, 0.51, 0.50], 100: [0.50, 0.50, 0.51], 200: [0.545, 0.545, 0.55], 500: [0.56, 0.56, 0.57]},
     claims.HOLDS, "clear difference, beyond noise"),
    # 50 beats the report's 500 by a small step within seed noise.
    ({50: [0.565, 0.561, 0.566], 100: [0.50, 0.50, 0.51], 200: [0.52, 0.52, 0.53], 500: [0.561, 0.562, 0.558]},
     claims.NOISE, "small difference"),
    # 50 beats 500 by a large step beyond noise.
    ({50: [0.60, 0.61, 0.60], 100: [0.50, 0.50, 0.51], 200: [0.52, 0.52, 0.53], 500: [0.561, 0.562, 0.558]},
     claims.FAILS, "large difference, beyond noise"),
])
def test_the_best_setting_holds_only_beyond_noise_and_says_how_large(accuracies, outcome, detail):
    runs = pd.DataFrame(grid("mlp", "batch_size", accuracies, seeds=(0, 1, 2)))
    claim = claims.best_setting(ev(runs), results.load_reference(), "mlp", "batch_size")
    assert (claim.outcome, claim.verdict) == (outcome, f"{outcome}: {detail}")


def test_one_seed_gives_a_direction_and_a_size_only():
    outcome, detail = claims.judge(Estimate.of([0.60]), Estimate.of([0.55]))
    assert (outcome, detail) == (claims.ONE_SEED, "large difference, in the claimed direction")
    outcome, detail = claims.judge(Estimate.of([0.55]), Estimate.of([0.555]))
    assert (outcome, detail) == (claims.ONE_SEED, "small difference, against the claim")


def test_judge_uses_the_noise_rule_for_losses_relative_to_the_number_compared_with():
    # Losses are sized relative to the smaller side: 1.10 against 1.00 is 10 %, a clear difference.
    outcome, detail = claims.judge(Estimate.of([1.10, 1.11, 1.09]), Estimate.of([1.00, 1.01, 0.99]), "train_loss")
    assert (outcome, detail) == (claims.HOLDS, "clear difference, beyond noise")
    outcome, detail = claims.judge(Estimate.of([1.00, 1.01, 0.99]), Estimate.of([1.10, 1.11, 1.09]), "train_loss")
    assert outcome == claims.FAILS


def test_batchnorm_convergence_and_jitter_are_judged_from_the_epochs():
    runs = pd.DataFrame([fake_run("mlp", role, seed) for role in (BASELINE, NO_BATCHNORM) for seed in (0, 1, 2)])
    curves = {}
    for run in runs.itertuples():
        with_bn = run.batchnorm
        first = (1.50 if with_bn else 1.80) + 0.01 * run.seed
        jitter = 0.01 if with_bn else 0.08
        curves[run.run_id] = {"train_loss": [first, 1.2, 1.0, 0.9],
                              "val_loss": [1.5, 1.5 - jitter, 1.5 + jitter, 1.5 - jitter * (1 + 0.1 * run.seed)]}
    epochs = fake_epochs(runs, curves)
    faster = claims.batchnorm_converges_faster(ev(runs), runs, epochs, "mlp")
    assert faster.outcome == claims.HOLDS and "1.510 ± 0.010 with BatchNorm, 1.810 ± 0.010 without" in faster.evidence
    steadier = claims.batchnorm_steadies_training(ev(runs), runs, epochs, "mlp")
    assert steadier.verdict == "holds: large difference, beyond noise"
    without = runs[~runs["batchnorm"]].assign(status=record.MISSING)
    partial = pd.concat([runs[runs["batchnorm"]], without])
    assert claims.batchnorm_converges_faster(ev(partial), partial, epochs, "mlp").verdict == (
        "not judged: the MLP without BatchNorm has no finished run")


def test_learning_rate_turning_points_are_judged_over_the_grid():
    rates = [1e-4, 5e-4, 1e-3, 1e-2]
    runs = pd.DataFrame(grid("mlp", "learning_rate", {rate: 0.5 for rate in rates}, seeds=(0, 1)))

    def epochs_turning_at(turn_of_rate):
        curves = {}
        for run in runs.itertuples():
            turn = turn_of_rate[run.learning_rate]
            curves[run.run_id] = {"val_loss": [1.0 + abs(epoch - turn) * (1 + 0.1 * run.seed)
                                               for epoch in range(1, EPOCHS + 1)]}
        return fake_epochs(runs, curves)

    earlier = claims.larger_learning_rate_turns_earlier(ev(runs), runs, epochs_turning_at(dict(zip(rates, [4, 3, 2, 1]))), "mlp")
    assert earlier.outcome == claims.HOLDS
    assert "lr 0.0001: 4.0 ± 0.0, lr 0.0005: 3.0 ± 0.0" in earlier.evidence  # both seeds turn at the same epoch
    assert earlier.detail == ("from lr 0.0001 to 0.01 a large difference, beyond noise; "
                              "3 of 3 steps between neighbouring rates beyond noise")
    later = claims.larger_learning_rate_turns_earlier(ev(runs), runs, epochs_turning_at(dict(zip(rates, [1, 2, 3, 4]))), "mlp")
    assert later.outcome == claims.FAILS and later.detail.startswith("lr 0.0005 turns later than lr 0.0001")
    partial = runs.assign(status=[record.MISSING if rate == 1e-2 else OK for rate in runs["learning_rate"]])
    missing = claims.larger_learning_rate_turns_earlier(ev(partial), partial, fake_epochs(partial, {}), "mlp")
    assert missing.verdict == "not judged: the MLP's learning rate 0.01 has no finished run"


def partial_plan() -> pd.DataFrame:
    """Both models' report experiments: the MLP's all finished over three seeds, the CNN's best only."""
    rows = [fake_run("mlp", role, seed, test_acc=0.55 + 0.01 * seed) for role, seed in
            itertools.product((BASELINE, NO_DROPOUT, NO_BATCHNORM), (0, 1, 2))]
    rows += grid("mlp", "dropout_rate", {p: [0.55, 0.56, 0.555] for p in (0.0, 0.1, 0.3, 0.5, 0.7)}, seeds=(0, 1, 2))
    rows += grid("mlp", "batch_size", {b: [0.55, 0.56, 0.555] for b in (50, 100, 200, 500)}, seeds=(0, 1, 2))
    rows += grid("mlp", "learning_rate", {r: [0.55, 0.56, 0.555] for r in (1e-2, 1e-3, 5e-4, 1e-4)}, seeds=(0, 1, 2))
    rows += [fake_run("cnn", BASELINE, test_acc=0.76), fake_run("cnn", NO_BATCHNORM, finished=False)]
    rows += grid("cnn", "batch_size", {50: None, 100: 0.76, 200: None, 500: None})
    rows += grid("cnn", "learning_rate", {1e-2: None, 1e-3: 0.76, 5e-4: None, 1e-4: None})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("profile", ["full", "smoke"])
def test_every_claim_has_one_outcome_and_the_counts_add_up(profile):
    runs = partial_plan()
    judged = claims.all_claims(ev(runs), runs, fake_epochs(runs, {}), results.load_reference(), profile)
    assert set(judged["outcome"]) <= set(claims.OUTCOMES)
    counts = claims.verdict_counts(judged)
    assert list(counts.index) == list(claims.OUTCOMES)
    assert counts.sum() == len(judged)
    assert not judged["verdict"].str.contains("not measured|nan", case=False).any()
    assert not judged["evidence"].str.contains("not measured|nan", case=False).any()
    by_claim = judged.set_index("claim")["verdict"]
    assert by_claim["The CNN's best batch size is 100"] == (
        "not judged: the CNN's batch sizes 50, 200, 500 have no finished run")
    assert by_claim["The CNN's best learning rate is 0.001"] == (
        "not judged: the CNN's learning rates 0.0001, 0.0005, 0.01 have no finished run")
    assert by_claim["BatchNorm raises the CNN's test accuracy"] == (
        "not judged: the CNN without BatchNorm has no finished run")
    assert by_claim["The best MLP reaches test accuracy 0.561"].startswith(
        claims.HOLDS if profile == "full" else "not judged: the smoke profile trains a reduced protocol")
    # The two claims of the report's analysis that only the epochs can decide are in the table.
    assert {"BatchNorm makes the MLP converge faster", "BatchNorm makes the MLP's training jitter less",
            "A larger learning rate makes the MLP's validation loss turn (reach its minimum) earlier",
            } <= set(by_claim.index)
