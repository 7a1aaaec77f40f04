"""The original report's claims, each judged from the numbers of one profile.

Every judgement returns a Claim: where the report makes it, what it says, the evidence
measured here, and an outcome with its detail. A claim is judged only when every setting it
compares has finished runs; until then it is 'not judged', and the detail names what is
missing. Differences are judged by the one noise rule of compare (judge_difference): 'holds'
or 'does not hold' when the difference lies beyond seed-to-seed noise, 'within seed noise'
when it does not, and with one seed the noise is unknown, so only the direction is given.
The detail says how large the difference is (compare.SIZE_STEPS).
"""

import math
from dataclasses import dataclass

import pandas as pd

from lab2.core.config import MODELS, RunConfig
from lab2.report import compare, results
from lab2.report.compare import Estimate
from lab2.report.experiments import (BASELINE, DROPOUT_KIND_GRID, DROPOUT_RATE_GRID, GRIDS, LEARNING_RATE_GRID,
                                     NARROW_DROPOUT_RATE_GRID, NO_BATCHNORM, NO_DROPOUT, Role)

HOLDS, FAILS, NOISE, ONE_SEED, NOT_JUDGED = (
    "holds", "does not hold", "within seed noise", "one seed, noise unknown", "not judged")
OUTCOMES = (HOLDS, FAILS, NOISE, ONE_SEED, NOT_JUDGED)  # every claim has exactly one
FULL_PROFILE = "full"
ENOUGH_EPOCHS = 30  # the report: "about 30 epochs are enough"
# Accuracy that stopping early may cost and still count as "enough": one point, the
# size of difference the report's single runs cannot resolve.
ENOUGH_TOLERANCE = 0.01
# Epoch counts have no size steps of their own: like losses, they are sized relative to the
# number compared with (compare.SIZE_STEPS["loss"]).
EPOCHS_SIZED_AS = "val_loss"
# A grid's field in words, singular and plural.
FIELD_WORDS = {"dropout_rate": ("dropout rate", "dropout rates"), "batch_size": ("batch size", "batch sizes"),
               "learning_rate": ("learning rate", "learning rates"), "dropout_kind": ("dropout kind", "dropout kinds")}
NO_EVIDENCE = "—"  # the evidence of a claim that is not judged: its detail says why


@dataclass
class Claim:
    source: str  # where the report makes the claim
    claim: str
    evidence: str
    outcome: str  # one of OUTCOMES
    detail: str = ""  # how large the difference is, or what is missing

    @property
    def verdict(self) -> str:
        """The outcome with its detail: 'holds: large difference, beyond noise'."""
        return f"{self.outcome}: {self.detail}" if self.detail else self.outcome


def judge(larger: Estimate, smaller: Estimate, metric: str = "test_acc") -> tuple[str, str]:
    """(outcome, detail) of the claim larger.mean > smaller.mean, by the noise rule."""
    verdict = compare.judge_difference(larger, smaller, metric)
    size = "no difference" if verdict.size == compare.NO_DIFFERENCE else f"{verdict.size} difference"
    if verdict.beyond_noise is None:
        direction = ("" if verdict.difference == 0 else
                     ", in the claimed direction" if verdict.difference > 0 else ", against the claim")
        return ONE_SEED, size + direction
    if not verdict.beyond_noise:
        return NOISE, size
    return (HOLDS if verdict.difference > 0 else FAILS), f"{size}, beyond noise"


def _zero_like(estimate: Estimate) -> Estimate:
    """An exact zero to judge an estimate against: only the estimate's own spread counts as noise."""
    return Estimate(0.0, 0.0 if estimate.has_spread else math.nan, estimate.count)


def _name(model: str) -> str:
    return model.upper()


def _values_text(field: str, values) -> str:
    singular, plural = FIELD_WORDS.get(field, (field, field))
    return f"{plural if len(values) > 1 else singular} {', '.join(f'{value:g}' for value in values)}"


def what_is_missing(runs: pd.DataFrame, model: str, *roles: Role, who: str = "") -> str:
    """What of these experiments has no finished run, in words ('' when every setting has one).

    'the MLP without BatchNorm has no finished run', 'the CNN's batch sizes 50, 200, 500 have no finished run';
    `who` names the model where its name alone is ambiguous ('the half-width CNN').
    """
    parts = []
    for role in roles:
        planned = results.runs_of(runs, model, role)
        name = f"the {_name(model)}'s best setting" if role == BASELINE else f"the {_name(model)} {role.label}"
        if planned.empty:
            parts.append(f"{name} is not in this profile's plan")
            continue
        axes = results.varying_fields(planned)
        done = results.finished(planned)
        if len(axes) != 1:
            if done.empty:
                parts.append(f"{name} has no finished run")
            continue
        field = axes[0]
        missing_values = sorted(set(planned[field]) - set(done[field]))
        if missing_values:
            have = "have" if len(missing_values) > 1 else "has"
            values = _values_text(field, missing_values)
            parts.append(f"{who or 'the ' + _name(model)}'s {values} {have} no finished run")
    return "; ".join(parts)


def _not_judged(source: str, claim: str, why: str, evidence: str = NO_EVIDENCE) -> Claim:
    return Claim(source, claim, evidence, NOT_JUDGED, why)


def _judged(source: str, claim: str, evidence: str, larger: Estimate, smaller: Estimate, metric: str,
            missing: str) -> Claim:
    """The claim larger > smaller, judged unless something it compares is missing (`missing`, in words)."""
    if missing:
        return _not_judged(source, claim, missing)
    return Claim(source, claim, evidence, *judge(larger, smaller, metric))


def _gap(runs: pd.DataFrame) -> Estimate:
    """Training minus validation accuracy at the last epoch: how much a model overfits."""
    finished = results.finished(runs)
    return Estimate.of(finished["train_acc"] - finished["val_acc"])


def _test(runs, model, experiment) -> Estimate:
    return compare.experiment_estimate(runs, model, experiment)


def _per_run(epochs: pd.DataFrame, runs: pd.DataFrame, measure) -> Estimate:
    """A quantity of each finished run's epochs (`measure`: its epochs in order -> a number), over the runs."""
    chosen = epochs[epochs["run_id"].isin(results.finished(runs)["run_id"])].sort_values(["run_id", "epoch"])
    return Estimate.of([measure(history) for _, history in chosen.groupby("run_id")])


def first_epoch_loss(history: pd.DataFrame) -> float:
    """Training loss after the first epoch: how far a run got in one pass over the data."""
    return float(history["train_loss"].iloc[0])


JITTER_EPOCHS = 3  # two epoch-to-epoch changes at least, to have a spread


def validation_jitter(history: pd.DataFrame) -> float:
    """Standard deviation of the epoch-to-epoch changes in validation loss: how much a run's curve jitters."""
    return float(history["val_loss"].diff().std())


def dropout_helps_mlp(runs) -> Claim:
    with_dropout, without = _test(runs, "mlp", BASELINE), _test(runs, "mlp", NO_DROPOUT)
    return _judged("1 MLP", "Dropout (p = 0.5) raises the MLP's test accuracy",
                   f"test accuracy {with_dropout.format()} with, {without.format()} without", with_dropout, without,
                   "test_acc", what_is_missing(runs, "mlp", BASELINE, NO_DROPOUT))


def dropout_narrows_gap_mlp(runs) -> Claim:
    with_dropout = _gap(results.runs_of(runs, "mlp", BASELINE))
    without = _gap(results.runs_of(runs, "mlp", NO_DROPOUT))
    return _judged("3 analysis", "Dropout reduces the MLP's overfitting (train - validation accuracy gap)",
                   f"gap {without.format()} without dropout, {with_dropout.format()} with", without, with_dropout,
                   "train_acc", what_is_missing(runs, "mlp", BASELINE, NO_DROPOUT))


def batchnorm_helps(runs, model: str) -> Claim:
    with_bn, without = _test(runs, model, BASELINE), _test(runs, model, NO_BATCHNORM)
    return _judged(f"{1 if model == 'mlp' else 2} {_name(model)}",
                   f"BatchNorm raises the {_name(model)}'s test accuracy",
                   f"test accuracy {with_bn.format()} with, {without.format()} without", with_bn, without, "test_acc",
                   what_is_missing(runs, model, BASELINE, NO_BATCHNORM))


def _with_and_without_batchnorm(runs, epochs, model: str, measure) -> tuple[Estimate, Estimate]:
    return (_per_run(epochs, results.runs_of(runs, model, BASELINE), measure),
            _per_run(epochs, results.runs_of(runs, model, NO_BATCHNORM), measure))


def batchnorm_converges_faster(runs, epochs, model: str) -> Claim:
    """The report (3.1): with BatchNorm training converges faster; measured as the training loss after epoch 1."""
    with_bn, without = _with_and_without_batchnorm(runs, epochs, model, first_epoch_loss)
    return _judged("3.1 analysis", f"BatchNorm makes the {_name(model)} converge faster",
                   f"training loss after the first epoch: {with_bn.format()} with BatchNorm, "
                   f"{without.format()} without",
                   without, with_bn, "train_loss", what_is_missing(runs, model, BASELINE, NO_BATCHNORM))


def batchnorm_steadies_training(runs, epochs, model: str) -> Claim:
    """The report (3.1): with BatchNorm training jitters less; measured on the validation-loss curve."""
    claim = f"BatchNorm makes the {_name(model)}'s training jitter less"
    missing = what_is_missing(runs, model, BASELINE, NO_BATCHNORM)
    if not missing and epochs["num_epochs"].max() < JITTER_EPOCHS:
        return _not_judged("3.1 analysis", claim, f"this profile's runs train fewer than {JITTER_EPOCHS} epochs, "
                           "too few changes of validation loss to have a spread")
    with_bn, without = _with_and_without_batchnorm(runs, epochs, model, validation_jitter)
    return _judged("3.1 analysis", claim,
                   f"standard deviation of the epoch-to-epoch change in validation loss: {with_bn.format(4)} with "
                   f"BatchNorm, {without.format(4)} without", without, with_bn, "val_loss", missing)


def reported_best(reference: pd.DataFrame, model: str, field: str):
    """The value of `field` in the report's best setting of `model`."""
    return reference[(reference["model"] == model) & (reference["role"] == BASELINE.label)][field].iloc[0]


def best_setting(runs, reference, model: str, field: str) -> Claim:
    """The report's best value of one grid: best only if it beats every other value beyond noise."""
    claimed = reported_best(reference, model, field)
    singular = FIELD_WORDS[field][0]
    claim = f"The {_name(model)}'s best {singular} is {claimed:g}"
    missing = what_is_missing(runs, model, GRIDS[field])
    if missing:
        return _not_judged("5 grids", claim, missing)
    table = compare.grid_estimates(runs, model, GRIDS[field])
    at_claimed = table[table["value"].round(10) == round(claimed, 10)]
    if at_claimed.empty or len(table) < 2:
        return _not_judged("5 grids", claim, f"this profile's grid does not run {claimed:g} beside other values")
    claimed_estimate = at_claimed["estimate"].iloc[0]
    others = table.drop(index=at_claimed.index)
    best_other = others.iloc[0]
    if claimed_estimate.mean >= best_other["mean"]:
        evidence = (f"{claimed:g} gives the highest test accuracy, {claimed_estimate.format()}; the next, "
                    f"{best_other['value']:g}, gives {best_other['estimate'].format()}")
    else:
        evidence = (f"{best_other['value']:g} gives the highest test accuracy, {best_other['estimate'].format()}; "
                    f"{claimed:g} gives {claimed_estimate.format()}")
    return Claim("5 grids", claim, evidence, *judge(claimed_estimate, best_other["estimate"]))


def high_dropout_inverts_accuracy(runs, model: str, rate: float = 0.7) -> Claim:
    claim = f"At dropout {rate:g} the {_name(model)}'s training accuracy falls below validation accuracy"
    grid = results.runs_of(runs, model, DROPOUT_RATE_GRID)
    at_rate = grid[grid["dropout_rate"].round(10) == round(rate, 10)]
    if at_rate.empty:
        return _not_judged("5 grids", claim, f"this profile runs no {_name(model)} at dropout rate {rate:g}",
                           f"no run at dropout rate {rate:g} is planned in this profile")
    finished = results.finished(at_rate)
    if finished.empty:
        return _not_judged("5 grids", claim, f"the {_name(model)}'s dropout rate {rate:g} has no finished run",
                           f"no run at dropout rate {rate:g} has finished yet")
    margin = Estimate.of(finished["val_acc"] - finished["train_acc"])
    return Claim("5 grids", claim, f"validation - training accuracy at the last epoch: {margin.format()}",
                 *judge(margin, _zero_like(margin), "val_acc"))


def larger_learning_rate_turns_earlier(runs, epochs, model: str) -> Claim:
    """The report (5): the epoch of lowest validation loss comes earlier as the learning rate grows.

    Each step between neighbouring rates is judged; the claim fails if any step goes against it
    beyond noise, and otherwise takes the verdict of the smallest rate against the largest.
    """
    claim = f"A larger learning rate makes the {_name(model)}'s validation loss turn (reach its minimum) earlier"
    missing = what_is_missing(runs, model, LEARNING_RATE_GRID)
    if missing:
        return _not_judged("5 grids", claim, missing)
    grid = results.finished(results.runs_of(runs, model, LEARNING_RATE_GRID))
    turning = results.turning_points(epochs[epochs["run_id"].isin(grid["run_id"])]).merge(
        grid[["run_id", "learning_rate"]], on="run_id")
    by_rate = {rate: Estimate.of(group["turning_epoch"]) for rate, group in turning.groupby("learning_rate")}
    rates = sorted(by_rate)
    evidence = "epoch of lowest validation loss: " + ", ".join(
        f"lr {rate:g}: {by_rate[rate].format(1)}" for rate in rates)
    steps = [(low, high, judge(by_rate[low], by_rate[high], EPOCHS_SIZED_AS)) for low, high in zip(rates, rates[1:])]
    against = [(low, high, detail) for low, high, (outcome, detail) in steps if outcome == FAILS]
    if against:
        low, high, detail = against[0]
        return Claim("5 grids", claim, evidence, FAILS, f"lr {high:g} turns later than lr {low:g} ({detail})")
    outcome, detail = judge(by_rate[rates[0]], by_rate[rates[-1]], EPOCHS_SIZED_AS)
    beyond = sum(step_outcome == HOLDS for _, _, (step_outcome, _) in steps)
    return Claim("5 grids", claim, evidence, outcome,
                 f"from lr {rates[0]:g} to {rates[-1]:g} a {detail}; {beyond} of {len(steps)} steps between "
                 "neighbouring rates beyond noise")


def narrow_cnn_like_mlp(runs) -> Claim:
    claim = "A half-width CNN, like the MLP, gains from dropout"
    missing = what_is_missing(runs, "cnn", NARROW_DROPOUT_RATE_GRID, who="the half-width CNN")
    if missing:
        return _not_judged("5 grids", claim, missing)
    table = compare.grid_estimates(runs, "cnn", NARROW_DROPOUT_RATE_GRID)
    no_dropout = table[table["value"] == 0.0]["estimate"].iloc[0]
    with_dropout = table[table["value"] > 0.0].iloc[0]
    return Claim("5 grids", claim,
                 f"best p > 0: p = {with_dropout['value']:g}, test accuracy {with_dropout['estimate'].format()}; "
                 f"p = 0: {no_dropout.format()}", *judge(with_dropout["estimate"], no_dropout))


def dropout_kind_at_zero(runs, epochs) -> Claim:
    claim = "Dropout2d and element-wise dropout differ at the CNN's best setting (p = 0)"
    planned = results.runs_of(runs, "cnn", DROPOUT_KIND_GRID)
    at_zero = planned[planned["dropout_rate"] == 0.0]
    missing_kinds = sorted(set(at_zero["dropout_kind"]) - set(results.finished(at_zero)["dropout_kind"]))
    if at_zero.empty or missing_kinds:
        why = (f"the CNN's dropout kind {', '.join(missing_kinds)} at p = 0 has no finished run" if missing_kinds else
               "this profile runs no CNN dropout kind at p = 0")
        return _not_judged("2 CNN", claim, why)
    differences = compare.dropout_kind_pairs(runs, epochs, dropout_rate=0.0)["max difference"]
    if differences.max() == 0.0:
        seeds = f"all {len(differences)} seeds" if len(differences) > 1 else "its one seed"
        evidence = f"the 1d and 2d runs are bit-identical for {seeds}: both layers are the identity"
    else:
        evidence = (f"the 1d and 2d runs differ by up to {differences.max():.2g} though both layers are the identity: "
                    "non-deterministic kernels, i.e. run-to-run noise")
    return Claim("2 CNN", claim, evidence, FAILS, "both layers are the identity at p = 0")


def cnn_beats_mlp(runs) -> Claim:
    cnn, mlp = _test(runs, "cnn", BASELINE), _test(runs, "mlp", BASELINE)
    missing = "; ".join(part for part in (what_is_missing(runs, "cnn", BASELINE), what_is_missing(runs, "mlp", BASELINE))
                        if part)
    return _judged("4.3 question", "The CNN classifies CIFAR-10 better than the MLP",
                   f"test accuracy CNN {cnn.format()}, MLP {mlp.format()}", cnn, mlp, "test_acc", missing)


def thirty_epochs_enough(epochs) -> Claim:
    claim = f"About {ENOUGH_EPOCHS} epochs are enough"
    longest = int(epochs["num_epochs"].max()) if len(epochs) else 0
    if longest <= ENOUGH_EPOCHS:
        why = (f"this profile trains {longest} epochs; the claim needs more than {ENOUGH_EPOCHS}" if longest else
               "no run has finished")
        return _not_judged("4.2 question", claim, why, f"no run of more than {ENOUGH_EPOCHS} epochs")
    long_runs = epochs[epochs["num_epochs"] > ENOUGH_EPOCHS]
    best = results.best_within(long_runs, ENOUGH_EPOCHS)
    lost = best["best_val_acc_all"] - best["best_val_acc_early"]
    turning = results.turning_points(long_runs)
    too_short = int((lost > ENOUGH_TOLERANCE).sum())
    evidence = (f"stopping at epoch {ENOUGH_EPOCHS} loses {lost.mean():.4f} best validation accuracy on average "
                f"(at most {lost.max():.4f}); {too_short} of {len(best)} runs lose more than {ENOUGH_TOLERANCE:g}; "
                f"validation loss is lowest by epoch {ENOUGH_EPOCHS} in "
                f"{int((turning['turning_epoch'] <= ENOUGH_EPOCHS).sum())} of {len(turning)} runs")
    detail = f"{too_short} of {len(best)} runs lose more than {ENOUGH_TOLERANCE:g} by stopping at epoch {ENOUGH_EPOCHS}"
    return Claim("4.2 question", claim, evidence, HOLDS if too_short == 0 else FAILS, detail)


def early_stopping_at_turning_point(epochs) -> Claim:
    claim = "Stopping at the validation-loss turning point loses no accuracy"
    if epochs.empty:
        return _not_judged("4.2 question", claim, "no run has finished", "no run has finished yet")
    turning = results.turning_points(epochs)
    turned = turning[turning["epochs_past_turn"] > 0]
    evidence = f"validation loss turned before the last epoch in {len(turned)} of {len(turning)} runs"
    if turned.empty:
        return _not_judged("4.2 question", claim, "no run's validation loss turned before its last epoch", evidence)
    change = Estimate.of(turned["val_acc_turn"] - turned["val_acc_last"])
    evidence += (f"; validation accuracy at the turning point minus at the last epoch, over those runs: "
                 f"{change.format(4)} (mean ± std over runs)")
    # The claim holds unless the change is negative beyond the spread over runs.
    outcome, detail = judge(change, _zero_like(change), "val_acc")
    if outcome == FAILS:
        return Claim("4.2 question", claim, evidence, FAILS, f"accuracy kept rising after the loss turned ({detail})")
    if outcome == NOISE:
        return Claim("4.2 question", claim, evidence, HOLDS, f"a {detail}, within the spread over runs")
    return Claim("4.2 question", claim, evidence, outcome, detail)


def headline_numbers(runs, reference, profile: str) -> list[Claim]:
    comparison = compare.compare_with_reference(runs, reference)
    claims = []
    for model in MODELS:
        row = comparison[(comparison["model"] == model) & (comparison["role"] == BASELINE.label)
                         & (comparison["metric"] == "test_acc")].iloc[0]
        claim = f"The best {_name(model)} reaches test accuracy {row['original']:.3f}"
        if row["seeds"] == 0:
            claims.append(_not_judged("6 summary", claim, what_is_missing(runs, model, BASELINE)))
            continue
        estimate = Estimate(row["reproduced"], row["std"], row["seeds"])
        evidence = f"reproduced {estimate.format()}, difference {row['difference']:+.4f}"
        if profile != FULL_PROFILE:
            claims.append(_not_judged("6 summary", claim, f"the {profile} profile trains a reduced protocol", evidence))
            continue
        size = "no difference" if row["size"] == compare.NO_DIFFERENCE else f"{row['size']} difference"
        if row["beyond_noise"] is None:
            outcome, detail = ONE_SEED, size
        else:
            outcome = FAILS if row["beyond_noise"] else HOLDS
            detail = f"{size}, {'beyond' if row['beyond_noise'] else 'within'} noise"
        claims.append(Claim("6 summary", claim, evidence, outcome, detail))
    return claims


def single_runs_resolve_grids(runs, reference) -> Claim:
    """How many of the report's grid rankings rest on gaps smaller than seed noise."""
    spread = results.seed_spread(runs, list(results.SETTING_FIELDS), ["test_acc"])
    typical_std = spread["test_acc_std"].median()
    claim = "One run per setting is enough to rank the settings of a grid"
    if pd.isna(typical_std):
        return _not_judged("5 grids", claim, "no setting has several seeds, so seed-to-seed noise is unknown")
    # Two single runs differ by seed noise alone with standard deviation sqrt(2) * std.
    noise = compare.NOISE_Z * math.sqrt(2) * typical_std
    grid_labels = [grid.label for grid in GRIDS.values()]
    grids = reference[reference["role"].isin(grid_labels) & (reference["metric"] == "test_acc")]
    close, total = 0, 0
    for _, grid in grids.groupby(["model", "experiment"]):
        gaps = grid["value"].max() - grid["value"]
        close += int(((gaps > 0) & (gaps < noise)).sum())
        total += int((gaps > 0).sum())
    evidence = (f"median seed std of test accuracy here: {typical_std:.4f}, so single runs differ by up to "
                f"{noise:.4f} by chance; {close} of the report's {total} gaps to a grid's best lie below that")
    return Claim("5 grids", claim, evidence, FAILS if close else HOLDS,
                 f"{close} of {total} gaps within noise" if close else "every gap beyond noise")


def dropout_scaling() -> Claim:
    # torch only here and in cnn_channels: pages that judge other claims need not load it.
    import torch

    from lab2.core import layers

    p = 0.5
    torch.manual_seed(0)
    kept = layers.dropout(torch.ones(10_000), p, training=True).max().item()
    return Claim("3 analysis", "Dropout multiplies the kept units by (1 - p) in training",
                 f"lab2 and torch.nn keep units at {kept:g} = 1 / (1 - p) for p = {p:g} (inverted dropout), "
                 f"not {1 - p:g}, so that eval can return the input unchanged", FAILS)


def cnn_channels() -> Claim:
    from lab2.core.models import build_model

    features = {channels: build_model(RunConfig(model="cnn", channels=channels))[-1].in_features
                for channels in (256, 1024)}
    return Claim("2 CNN", "The CNN has hidden_channels (1024, 1024)",
                 f"the printed Linear(6400, 10) needs 256 channels (256 channels give {features[256]} inputs, "
                 f"1024 give {features[1024]})", FAILS)


COLUMNS = ["source", "claim", "evidence", "verdict", "outcome"]


def all_claims(runs, epochs, reference, profile: str) -> pd.DataFrame:
    """Every claim judged, one row each, in the report's order: `verdict` to show, `outcome` to count.

    The claims are about the report's protocol, so they read its runs only (results.protocol)."""
    runs, epochs = results.protocol(runs), results.protocol_epochs(epochs, runs)
    claims = [
        dropout_helps_mlp(runs), batchnorm_helps(runs, "mlp"), cnn_channels(), batchnorm_helps(runs, "cnn"),
        dropout_kind_at_zero(runs, epochs), dropout_narrows_gap_mlp(runs), dropout_scaling(),
        *(judged for model in MODELS for judged in (batchnorm_converges_faster(runs, epochs, model),
                                                    batchnorm_steadies_training(runs, epochs, model))),
        early_stopping_at_turning_point(epochs), thirty_epochs_enough(epochs), cnn_beats_mlp(runs),
        *(best_setting(runs, reference, model, field) for model in MODELS for field in GRIDS),
        *(larger_learning_rate_turns_earlier(runs, epochs, model) for model in MODELS),
        high_dropout_inverts_accuracy(runs, "mlp"), high_dropout_inverts_accuracy(runs, "cnn"),
        narrow_cnn_like_mlp(runs), single_runs_resolve_grids(runs, reference),
        *headline_numbers(runs, reference, profile),
    ]
    return pd.DataFrame([[claim.source, claim.claim, claim.evidence, claim.verdict, claim.outcome]
                         for claim in claims], columns=COLUMNS)


def verdict_counts(judged: pd.DataFrame) -> pd.Series:
    """How many claims have each outcome, every outcome listed (0 when none): they add up to len(judged)."""
    return judged["outcome"].value_counts().reindex(list(OUTCOMES), fill_value=0)
