"""The original report's claims, each judged from the numbers of one profile.

Every judgement returns a Claim: what the report says, the evidence measured here, and a
verdict. Verdicts: 'holds' and 'does not hold' when the measured difference has (or lacks)
the claimed sign and lies beyond seed noise; 'within seed noise' when it does not; one seed
gives a direction only, and the verdict says so. Claims that need the report's full
protocol (its numbers, its 50 epochs) are 'not comparable' under a reduced profile.
"""

import math
from dataclasses import asdict, dataclass

import pandas as pd

from lab2.config import RunConfig
from lab2.report import compare, results
from lab2.report.compare import Estimate
from lab2.report.experiments import (BASELINE, DROPOUT_RATE_GRID, GRIDS, NARROW_DROPOUT_RATE_GRID, WITHOUT_BATCHNORM,
                                     WITHOUT_DROPOUT)

HOLDS, FAILS, NOISE, TIE = "holds", "does not hold", "within seed noise", "no difference"
ONE_SEED = " (one seed: direction only)"
MISSING = "not measured (runs missing)"
FULL_PROFILE = "full"
ENOUGH_EPOCHS = 30  # the report: "about 30 epochs are enough"
# Accuracy that stopping early may cost and still count as "enough": one point, the
# size of difference the report's single runs cannot resolve.
ENOUGH_TOLERANCE = 0.01
MODELS = ("mlp", "cnn")


@dataclass
class Claim:
    source: str  # where the report makes the claim
    claim: str
    evidence: str
    verdict: str


def judge(larger: Estimate, smaller: Estimate) -> str:
    """Whether larger.mean > smaller.mean, beyond seed noise where seeds allow."""
    if math.isnan(larger.mean) or math.isnan(smaller.mean):
        return MISSING
    if larger.mean == smaller.mean:
        return TIE
    apart = compare.separated(larger, smaller)
    if apart is False:
        return NOISE
    verdict = HOLDS if larger.mean > smaller.mean else FAILS
    return verdict if apart else verdict + ONE_SEED


def _zero_like(estimate: Estimate) -> Estimate:
    """An exact zero to judge an estimate against: only the estimate's own spread counts as noise."""
    return Estimate(0.0, 0.0 if estimate.has_spread else math.nan, estimate.count)


def _gap(runs: pd.DataFrame) -> Estimate:
    """Training minus validation accuracy at the last epoch: how much a model overfits."""
    finished = results.finished(runs)
    return Estimate.of(finished["train_acc"] - finished["val_acc"])


def _test(runs, model, experiment) -> Estimate:
    return compare.experiment_estimate(runs, model, experiment)


def dropout_helps_mlp(runs) -> Claim:
    with_dropout, without = _test(runs, "mlp", BASELINE), _test(runs, "mlp", WITHOUT_DROPOUT)
    return Claim("1 MLP", "Dropout (p = 0.5) raises the MLP's test accuracy",
                 f"test accuracy {with_dropout.format()} with, {without.format()} without", judge(with_dropout, without))


def dropout_narrows_gap_mlp(runs) -> Claim:
    with_dropout = _gap(results.runs_of(runs, "mlp", BASELINE))
    without = _gap(results.runs_of(runs, "mlp", WITHOUT_DROPOUT))
    return Claim("3 analysis", "Dropout reduces the MLP's overfitting (train - validation accuracy gap)",
                 f"gap {without.format()} without dropout, {with_dropout.format()} with", judge(without, with_dropout))


def batchnorm_helps(runs, model: str) -> Claim:
    with_bn, without = _test(runs, model, BASELINE), _test(runs, model, WITHOUT_BATCHNORM)
    return Claim(f"{1 if model == 'mlp' else 2} {model.upper()}", f"BatchNorm raises the {model.upper()}'s test accuracy",
                 f"test accuracy {with_bn.format()} with, {without.format()} without", judge(with_bn, without))


def reported_best(reference: pd.DataFrame, model: str, field: str):
    """The value of `field` in the report's best setting of `model`."""
    return reference[(reference["model"] == model) & (reference["role"] == BASELINE.label)][field].iloc[0]


def best_setting(runs, reference, model: str, field: str) -> Claim:
    claimed = reported_best(reference, model, field)
    table = compare.grid_estimates(runs, model, GRIDS[field])
    if table.empty:
        return Claim("5 grids", f"The {model.upper()}'s best {field} is {claimed:g}", "no run of the grid has finished",
                     MISSING)
    found = table.iloc[0]
    at_claimed = table[table["value"].round(10) == round(claimed, 10)]["estimate"]
    claimed_estimate = at_claimed.iloc[0] if len(at_claimed) else Estimate(math.nan, math.nan, 0)
    evidence = (f"best {field} = {found['value']:g} (test accuracy {found['estimate'].format()}); "
                f"{claimed:g} gives {claimed_estimate.format()}")
    if math.isclose(found["value"], claimed) or claimed_estimate.mean == found["estimate"].mean:
        verdict = HOLDS if found["estimate"].has_spread else HOLDS + ONE_SEED
    else:
        verdict = judge(claimed_estimate, found["estimate"])
    return Claim("5 grids", f"The {model.upper()}'s best {field} is {claimed:g}", evidence, verdict)


def high_dropout_inverts_accuracy(runs, model: str, rate: float = 0.7) -> Claim:
    grid = results.runs_of(runs, model, DROPOUT_RATE_GRID)
    finished = results.finished(grid[grid["dropout_rate"].round(10) == rate])
    margin = Estimate.of(finished["val_acc"] - finished["train_acc"])
    zero = _zero_like(margin)
    return Claim("5 grids", f"At dropout {rate:g} the {model.upper()}'s training accuracy falls below validation accuracy",
                 f"validation - training accuracy at the last epoch: {margin.format()}", judge(margin, zero))


def narrow_cnn_like_mlp(runs) -> Claim:
    table = compare.grid_estimates(runs, "cnn", NARROW_DROPOUT_RATE_GRID)
    claim = "A half-width CNN, like the MLP, gains from dropout"
    if not ((table["value"] == 0.0).any() and (table["value"] > 0.0).any()):
        return Claim("5 grids", claim, "the runs with and without dropout have not all finished", MISSING)
    no_dropout = table[table["value"] == 0.0]["estimate"].iloc[0]
    with_dropout = table[table["value"] > 0.0].iloc[0]
    return Claim("5 grids", claim,
                 f"best p > 0: p = {with_dropout['value']:g}, test accuracy {with_dropout['estimate'].format()}; "
                 f"p = 0: {no_dropout.format()}", judge(with_dropout["estimate"], no_dropout))


def dropout_kind_at_zero(runs, epochs) -> Claim:
    differences = compare.dropout_kind_pairs(runs, epochs, dropout_rate=0.0)["max difference"]
    claim = "Dropout2d and element-wise dropout differ at the CNN's best setting (p = 0)"
    if differences.empty:
        return Claim("2 CNN", claim, "no pair of runs", MISSING)
    if differences.max() == 0.0:
        evidence = f"the 1d and 2d runs are bit-identical for all {len(differences)} seed(s): both layers are the identity"
    else:
        evidence = (f"the 1d and 2d runs differ by up to {differences.max():.2g} though both layers are the identity: "
                    "non-deterministic kernels, i.e. run-to-run noise")
    return Claim("2 CNN", claim, evidence, FAILS)


def cnn_beats_mlp(runs) -> Claim:
    cnn, mlp = _test(runs, "cnn", BASELINE), _test(runs, "mlp", BASELINE)
    return Claim("4.3 question", "The CNN classifies CIFAR-10 better than the MLP",
                 f"test accuracy CNN {cnn.format()}, MLP {mlp.format()}", judge(cnn, mlp))


def thirty_epochs_enough(epochs) -> Claim:
    claim = f"About {ENOUGH_EPOCHS} epochs are enough"
    longest = int(epochs["num_epochs"].max()) if len(epochs) else 0
    if longest <= ENOUGH_EPOCHS:
        return Claim("4.2 question", claim, f"this profile trains {longest} epochs; the claim needs more than "
                     f"{ENOUGH_EPOCHS}", "not testable in this profile")
    long_runs = epochs[epochs["num_epochs"] > ENOUGH_EPOCHS]
    best = results.best_within(long_runs, ENOUGH_EPOCHS)
    lost = best["best_val_acc_all"] - best["best_val_acc_early"]
    turning = results.turning_points(long_runs)
    too_short = int((lost > ENOUGH_TOLERANCE).sum())
    evidence = (f"stopping at epoch {ENOUGH_EPOCHS} loses {lost.mean():.4f} best validation accuracy on average "
                f"(at most {lost.max():.4f}); {too_short} of {len(best)} runs lose more than {ENOUGH_TOLERANCE:g}; "
                f"validation loss is lowest by epoch {ENOUGH_EPOCHS} in "
                f"{int((turning['turning_epoch'] <= ENOUGH_EPOCHS).sum())} of {len(turning)} runs")
    return Claim("4.2 question", claim, evidence, HOLDS if too_short == 0 else FAILS)


def early_stopping_at_turning_point(epochs) -> Claim:
    claim = "Stopping at the validation-loss turning point loses no accuracy"
    if epochs.empty:
        return Claim("4.2 question", claim, "no run has finished", MISSING)
    turning = results.turning_points(epochs)
    turned = turning[turning["epochs_past_turn"] > 0]
    change = Estimate.of(turned["val_acc_turn"] - turned["val_acc_last"])
    evidence = (f"validation loss turned before the last epoch in {len(turned)} of {len(turning)} runs; "
                f"validation accuracy at the turning point minus at the last epoch, over those runs: "
                f"{change.format(4)} (mean ± std over runs)")
    if turned.empty:
        return Claim("4.2 question", claim, evidence, "not testable in this profile")
    # The claim holds unless the change is negative beyond the spread over runs.
    verdict = judge(change, _zero_like(change))
    if verdict.startswith(FAILS):
        verdict = f"{FAILS}: accuracy kept rising after the loss turned"
    elif verdict == NOISE:
        verdict = f"{HOLDS}: the change is within the spread over runs"
    return Claim("4.2 question", claim, evidence, verdict)


def headline_numbers(runs, reference, profile: str) -> list[Claim]:
    comparison = compare.compare_with_reference(runs, reference)
    claims = []
    for model in MODELS:
        row = comparison[(comparison["model"] == model) & (comparison["role"] == BASELINE.label)
                         & (comparison["metric"] == "test_acc")].iloc[0]
        number = row["original"]
        estimate = Estimate(row["reproduced"], row["std"], row["seeds"])
        evidence = f"reproduced {estimate.format()}, difference {row['difference']:+.3f}"
        if row["seeds"] == 0:
            evidence, verdict = "no run of this setting has finished", MISSING
        elif profile != FULL_PROFILE:
            verdict = f"not comparable: the {profile} profile trains a reduced protocol"
        elif row["within_spread"] is None:
            verdict = "one seed: no spread to judge"
        else:
            verdict = HOLDS if row["within_spread"] else FAILS
        claims.append(Claim("6 summary", f"The best {model.upper()} reaches test accuracy {number:.3f}", evidence, verdict))
    return claims


def single_runs_resolve_grids(runs, reference) -> Claim:
    """How many of the report's grid rankings rest on gaps smaller than seed noise."""
    spread = results.seed_spread(runs, list(results.SETTING_FIELDS), ["test_acc"])
    typical_std = spread["test_acc_std"].median()
    claim = "One run per setting is enough to rank the settings of a grid"
    if pd.isna(typical_std):
        return Claim("5 grids", claim, "one seed: seed-to-seed spread unknown", "cannot be judged with one seed")
    # Two single runs differ by seed noise alone with standard deviation sqrt(2) * std.
    noise = compare.SPREAD_Z * math.sqrt(2) * typical_std
    grid_labels = [grid.label for grid in GRIDS.values()]
    grids = reference[reference["role"].isin(grid_labels) & (reference["metric"] == "test_acc")]
    close, total = 0, 0
    for _, grid in grids.groupby(["model", "experiment"]):
        gaps = grid["value"].max() - grid["value"]
        close += int(((gaps > 0) & (gaps < noise)).sum())
        total += int((gaps > 0).sum())
    evidence = (f"median seed std of test accuracy here: {typical_std:.4f}, so single runs differ by up to "
                f"{noise:.4f} by chance; {close} of the report's {total} gaps to a grid's best lie below that")
    return Claim("5 grids", claim, evidence, FAILS if close else HOLDS)


def dropout_scaling() -> Claim:
    # torch only here and in cnn_channels: pages that judge other claims need not load it.
    import torch

    from lab2 import layers

    p = 0.5
    torch.manual_seed(0)
    kept = layers.dropout(torch.ones(10_000), p, training=True).max().item()
    return Claim("3 analysis", "Dropout multiplies the kept units by (1 - p) in training",
                 f"lab2 and torch.nn keep units at {kept:g} = 1 / (1 - p) for p = {p:g} (inverted dropout), "
                 f"not {1 - p:g}, so that eval can return the input unchanged", FAILS)


def cnn_channels() -> Claim:
    from lab2.models import build_model

    features = {channels: build_model(RunConfig(model="cnn", channels=channels))[-1].in_features
                for channels in (256, 1024)}
    return Claim("2 CNN", "The CNN has hidden_channels (1024, 1024)",
                 f"the printed Linear(6400, 10) needs 256 channels (256 channels give {features[256]} inputs, "
                 f"1024 give {features[1024]})", FAILS)


def all_claims(runs, epochs, reference, profile: str) -> pd.DataFrame:
    """Every claim judged, one row each, in the report's order."""
    claims = [
        dropout_helps_mlp(runs), batchnorm_helps(runs, "mlp"), cnn_channels(), batchnorm_helps(runs, "cnn"),
        dropout_kind_at_zero(runs, epochs), dropout_narrows_gap_mlp(runs), dropout_scaling(),
        early_stopping_at_turning_point(epochs), thirty_epochs_enough(epochs), cnn_beats_mlp(runs),
        *(best_setting(runs, reference, model, field) for model in MODELS for field in GRIDS),
        high_dropout_inverts_accuracy(runs, "mlp"), high_dropout_inverts_accuracy(runs, "cnn"),
        narrow_cnn_like_mlp(runs), single_runs_resolve_grids(runs, reference),
        *headline_numbers(runs, reference, profile),
    ]
    return pd.DataFrame([asdict(claim) for claim in claims])


def verdict_counts(judged: pd.DataFrame) -> pd.Series:
    """How many claims got each verdict, qualifiers ('(one seed...)', ': why') stripped."""
    return judged["verdict"].str.split(" (", regex=False).str[0].str.split(":").str[0].value_counts()
