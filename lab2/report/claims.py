"""The original report's claims, each judged from the numbers of one profile.

Every judgement returns a Claim: where the report makes it, what it says, the evidence
measured here, and an outcome with its detail. A claim is judged only when every setting it
compares has finished runs; until then it is 'not judged', and the detail names what is
missing. A claim compares two quantities, and the one noise rule (lab2.report.noise) decides.
A claim that one is larger ('BatchNorm raises test accuracy') holds or does not hold when their
difference lies beyond seed-to-seed noise, and is 'within seed noise' when it does not. A claim
that one is no worse ('stopping early loses nothing', 'the best MLP reaches 0.561') does not hold
when it is worse (or, for a number, differs) beyond noise, and holds otherwise. With one seed the
noise is unknown, so only the direction is given. The detail says how large the difference is.
The claims are about the report's protocol, so they read its runs only (results.protocol).
"""

import math
from dataclasses import dataclass

import pandas as pd

from lab2.core.config import FIELD_LABELS, MODEL_LABELS, MODELS
from lab2.report import evidence, results
from lab2.report.experiments import (BASELINE, DEPARTURES, DROPOUT_KIND_GRID, DROPOUT_RATE_GRID, GRIDS,
                                     LEARNING_RATE_GRID, NARROW_DROPOUT_RATE_GRID, NO_BATCHNORM, NO_DROPOUT, Role)
from lab2.report.noise import NO_DIFFERENCE, NOISE_Z, Estimate, Verdict, judge_difference, number
from lab2.report.results import FULL_PROFILE

HOLDS, FAILS, NOISE, ONE_SEED, NOT_JUDGED = (
    "holds", "does not hold", "within seed noise", "one seed, noise unknown", "not judged")
OUTCOMES = (HOLDS, FAILS, NOISE, ONE_SEED, NOT_JUDGED)  # every claim has exactly one
ENOUGH_EPOCHS = 30  # the report: "about 30 epochs are enough"
# Epoch counts have no size steps of their own: like losses, they are sized relative to the number compared with.
EPOCHS_SIZED_AS = "val_loss"
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
    verdict = judge_difference(larger, smaller, metric)
    size = "no difference" if verdict.size == NO_DIFFERENCE else f"{verdict.size} difference"
    if verdict.beyond_noise is None:
        direction = ("" if verdict.difference == 0 else
                     ", in the claimed direction" if verdict.difference > 0 else ", against the claim")
        return ONE_SEED, size + direction
    if not verdict.beyond_noise:
        return NOISE, size
    return (HOLDS if verdict.difference > 0 else FAILS), f"{size}, beyond noise"


def judge_no_worse(verdict: Verdict, either_way: bool = False) -> tuple[str, str]:
    """(outcome, detail) of the claim that a is no worse than b (`either_way`: that a is b), from the
    verdict of the noise rule on a - b."""
    size = "no difference" if verdict.size == NO_DIFFERENCE else f"{verdict.size} difference"
    if verdict.beyond_noise is None:
        return ONE_SEED, size
    against = verdict.beyond_noise and (either_way or verdict.difference < 0)
    return (FAILS if against else HOLDS), f"{size}, {'beyond' if verdict.beyond_noise else 'within'} noise"


def _zero_like(estimate: Estimate) -> Estimate:
    """An exact zero to judge an estimate against: only the estimate's own spread counts as noise."""
    return Estimate(0.0, 0.0 if estimate.has_spread else math.nan, estimate.count)


def what_is_missing(ev: pd.DataFrame, model: str, *roles: Role, who: str = "") -> str:
    """What of these experiments has no finished run, in words ('' when every setting has one).

    'the MLP without BatchNorm has no finished run', "the CNN's batch sizes 50, 200, 500 have no finished run";
    `who` names the model where its name alone is ambiguous ('the half-width CNN').
    """
    name, parts = MODEL_LABELS[model], []
    for role in roles:
        settings = evidence.rows(ev, model, role, "test_acc")
        label = f"the {name}'s best setting" if role == BASELINE else f"the {name} {role.label}"
        if settings.empty:
            parts.append(f"{label} is not in this profile's plan")
            continue
        unrun = settings[settings["finished"] == 0]
        axes = settings["axes"].iloc[0]
        if len(axes) != 1:
            parts += [f"{label} has no finished run"] if len(unrun) == len(settings) else []
        elif len(unrun):
            field = axes[0]
            values = ", ".join(f"{value:g}" for value in sorted(unrun[field]))
            words = FIELD_LABELS[field] + ("s" if len(unrun) > 1 else "")
            parts.append(f"{who or 'the ' + name}'s {words} {values} {'have' if len(unrun) > 1 else 'has'} no finished run")
    return "; ".join(parts)


def _not_judged(source: str, claim: str, why: str, evidence_text: str = NO_EVIDENCE) -> Claim:
    return Claim(source, claim, evidence_text, NOT_JUDGED, why)


def _judged(source: str, claim: str, evidence_text: str, larger: Estimate, smaller: Estimate, metric: str,
            missing: str) -> Claim:
    """The claim larger > smaller, judged unless something it compares is missing (`missing`, in words)."""
    if missing:
        return _not_judged(source, claim, missing)
    return Claim(source, claim, evidence_text, *judge(larger, smaller, metric))


def _per_run(runs: pd.DataFrame, model: str, role: Role, quantity) -> Estimate:
    """A quantity of each finished run of one role (`quantity`: the runs -> a value per run), over the runs."""
    return Estimate.of(quantity(results.finished(results.runs_of(runs, model, role))))


def _per_history(epochs: pd.DataFrame, runs: pd.DataFrame, model: str, role: Role, measure) -> Estimate:
    """A quantity of each finished run's epochs (`measure`: its epochs in order -> a number), over the runs."""
    ids = results.finished(results.runs_of(runs, model, role))["run_id"]
    chosen = epochs[epochs["run_id"].isin(ids)].sort_values(["run_id", "epoch"])
    return Estimate.of([measure(history) for _, history in chosen.groupby("run_id")])


JITTER_EPOCHS = 3  # two epoch-to-epoch changes at least, to have a spread


def higher_test_accuracy(ev, source: str, claim: str, larger: tuple[str, Role], smaller: tuple[str, Role],
                         shown: str = "test accuracy {} with, {} without") -> Claim:
    """The claim that the (model, role) `larger` reaches a higher test accuracy than `smaller`; `shown` words the two."""
    a, b = (evidence.estimate(ev, *side) for side in (larger, smaller))
    missing = "; ".join(part for side in dict.fromkeys((larger, smaller)) if (part := what_is_missing(ev, *side)))
    return _judged(source, claim, shown.format(a.format(), b.format()), a, b, "test_acc", missing)


def dropout_narrows_gap_mlp(ev, runs) -> Claim:
    with_dropout = _per_run(runs, "mlp", BASELINE, results.overfitting_gap)
    without = _per_run(runs, "mlp", NO_DROPOUT, results.overfitting_gap)
    return _judged("3 analysis", "Dropout reduces the MLP's overfitting (train - validation accuracy gap)",
                   f"gap {without.format()} without dropout, {with_dropout.format()} with", without, with_dropout,
                   "train_acc", what_is_missing(ev, "mlp", BASELINE, NO_DROPOUT))


def batchnorm_helps(ev, model: str) -> Claim:
    name = MODEL_LABELS[model]
    return higher_test_accuracy(ev, f"{1 if model == 'mlp' else 2} {name}", f"BatchNorm raises the {name}'s test accuracy",
                                (model, BASELINE), (model, NO_BATCHNORM))


def batchnorm_converges_faster(ev, runs, epochs, model: str) -> Claim:
    """The report (3.1): with BatchNorm training converges faster; measured as the training loss after epoch 1."""
    first = lambda history: float(history["train_loss"].iloc[0])  # noqa: E731 - how far one pass got
    with_bn, without = (_per_history(epochs, runs, model, role, first) for role in (BASELINE, NO_BATCHNORM))
    return _judged("3.1 analysis", f"BatchNorm makes the {MODEL_LABELS[model]} converge faster",
                   f"training loss after the first epoch: {with_bn.format()} with BatchNorm, {without.format()} without",
                   without, with_bn, "train_loss", what_is_missing(ev, model, BASELINE, NO_BATCHNORM))


def batchnorm_steadies_training(ev, runs, epochs, model: str) -> Claim:
    """The report (3.1): with BatchNorm training jitters less: the spread of the epoch-to-epoch changes of validation loss."""
    claim = f"BatchNorm makes the {MODEL_LABELS[model]}'s training jitter less"
    missing = what_is_missing(ev, model, BASELINE, NO_BATCHNORM)
    if not missing and epochs["num_epochs"].max() < JITTER_EPOCHS:
        return _not_judged("3.1 analysis", claim, f"this profile's runs train fewer than {JITTER_EPOCHS} epochs, "
                           "too few changes of validation loss to have a spread")
    jitter = lambda history: float(history["val_loss"].diff().std())  # noqa: E731
    with_bn, without = (_per_history(epochs, runs, model, role, jitter) for role in (BASELINE, NO_BATCHNORM))
    return _judged("3.1 analysis", claim,
                   f"standard deviation of the epoch-to-epoch change in validation loss: {with_bn.format(4)} with "
                   f"BatchNorm, {without.format(4)} without", without, with_bn, "val_loss", missing)


def reported_best(reference: pd.DataFrame, model: str, field: str):
    """The value of `field` in the report's best setting of `model`."""
    return reference[(reference["model"] == model) & (reference["role"] == BASELINE.label)][field].iloc[0]


def best_setting(ev, reference, model: str, field: str) -> Claim:
    """The report's best value of one grid: best only if it beats every other value beyond noise."""
    claimed = reported_best(reference, model, field)
    claim = f"The {MODEL_LABELS[model]}'s best {FIELD_LABELS[field]} is {claimed:g}"
    missing = what_is_missing(ev, model, GRIDS[field])
    if missing:
        return _not_judged("5 grids", claim, missing)
    table = evidence.ranked(evidence.rows(ev, model, GRIDS[field], "test_acc"))
    at_claimed = results.matching(table, **{field: claimed})
    if at_claimed.empty or len(table) < 2:
        return _not_judged("5 grids", claim, f"this profile's grid does not run {claimed:g} beside other values")
    claimed_estimate = at_claimed["estimate"].iloc[0]
    best_other = table.drop(index=at_claimed.index).iloc[0]
    if claimed_estimate.mean >= best_other["mean"]:
        text = (f"{claimed:g} gives the highest test accuracy, {claimed_estimate.format()}; the next, "
                f"{best_other[field]:g}, gives {best_other['estimate'].format()}")
    else:
        text = (f"{best_other[field]:g} gives the highest test accuracy, {best_other['estimate'].format()}; "
                f"{claimed:g} gives {claimed_estimate.format()}")
    return Claim("5 grids", claim, text, *judge(claimed_estimate, best_other["estimate"]))


def high_dropout_inverts_accuracy(ev, runs, model: str, rate: float = 0.7) -> Claim:
    """The report (5): at dropout 0.7 training accuracy fell below validation accuracy (last epoch)."""
    name = MODEL_LABELS[model]
    claim = f"At dropout {rate:g} the {name}'s training accuracy falls below validation accuracy"
    at_rate = evidence.rows(ev, model, DROPOUT_RATE_GRID, "train_acc", dropout_rate=rate)
    if at_rate.empty:
        return _not_judged("5 grids", claim, f"this profile runs no {name} at dropout rate {rate:g}")
    if at_rate["finished"].iloc[0] == 0:
        return _not_judged("5 grids", claim, f"the {name}'s dropout rate {rate:g} has no finished run")
    ids = set(at_rate["run_ids"].iloc[0])
    margin = Estimate.of(-results.overfitting_gap(results.finished(runs[runs["run_id"].isin(ids)])))
    return Claim("5 grids", claim, f"validation minus training accuracy at the last epoch: {margin.format()}",
                 *judge(margin, _zero_like(margin), "val_acc"))


def larger_learning_rate_turns_earlier(ev, runs, epochs, model: str) -> Claim:
    """The report (5): the epoch of lowest validation loss comes earlier as the learning rate grows.

    Each step between neighbouring rates is judged; the claim fails if any step goes against it
    beyond noise, and otherwise takes the verdict of the smallest rate against the largest.
    """
    name = MODEL_LABELS[model]
    claim = f"A larger learning rate makes the {name}'s validation loss turn (reach its minimum) earlier"
    missing = what_is_missing(ev, model, LEARNING_RATE_GRID)
    if missing:
        return _not_judged("5 grids", claim, missing)
    grid = results.finished(results.runs_of(runs, model, LEARNING_RATE_GRID))
    turning = results.turning_points(epochs[epochs["run_id"].isin(grid["run_id"])]).merge(
        grid[["run_id", "learning_rate"]], on="run_id")
    by_rate = {rate: Estimate.of(group["turning_epoch"]) for rate, group in turning.groupby("learning_rate")}
    rates = sorted(by_rate)
    text = "epoch of lowest validation loss: " + ", ".join(f"lr {rate:g}: {by_rate[rate].format(1)}" for rate in rates)
    steps = [(low, high, judge(by_rate[low], by_rate[high], EPOCHS_SIZED_AS)) for low, high in zip(rates, rates[1:])]
    against = [(low, high, detail) for low, high, (outcome, detail) in steps if outcome == FAILS]
    if against:
        low, high, detail = against[0]
        return Claim("5 grids", claim, text, FAILS, f"lr {high:g} turns later than lr {low:g} ({detail})")
    outcome, detail = judge(by_rate[rates[0]], by_rate[rates[-1]], EPOCHS_SIZED_AS)
    beyond = sum(step_outcome == HOLDS for _, _, (step_outcome, _) in steps)
    return Claim("5 grids", claim, text, outcome,
                 f"from lr {rates[0]:g} to {rates[-1]:g} a {detail}; {beyond} of {len(steps)} steps between "
                 "neighbouring rates beyond noise")


def narrow_cnn_like_mlp(ev) -> Claim:
    claim = "A half-width CNN, like the MLP, gains from dropout"
    missing = what_is_missing(ev, "cnn", NARROW_DROPOUT_RATE_GRID, who="the half-width CNN")
    if missing:
        return _not_judged("5 grids", claim, missing)
    table = evidence.ranked(evidence.rows(ev, "cnn", NARROW_DROPOUT_RATE_GRID, "test_acc"))
    no_dropout = table[table["dropout_rate"] == 0.0]["estimate"].iloc[0]
    with_dropout = table[table["dropout_rate"] > 0.0].iloc[0]
    return Claim("5 grids", claim,
                 f"best p > 0: p = {with_dropout['dropout_rate']:g}, test accuracy {with_dropout['estimate'].format()}; "
                 f"p = 0: {no_dropout.format()}", *judge(with_dropout["estimate"], no_dropout))


def dropout_kind_pairs(runs: pd.DataFrame, epochs: pd.DataFrame, dropout_rate: float = 0.0) -> pd.DataFrame:
    """Per seed: the CNN's element-wise (1d) and channel-wise (2d) runs at one rate and the largest
    difference between their per-epoch metrics (0 means bit-identical)."""
    grid = results.finished(results.runs_of(runs, "cnn", DROPOUT_KIND_GRID))
    at_rate = results.matching(grid, dropout_rate=float(dropout_rate))
    if at_rate.empty:
        return pd.DataFrame(columns=["seed", "run (1d)", "run (2d)", "max difference"])
    pairs = at_rate.pivot_table(index="seed", columns="dropout_kind", values="run_id", aggfunc="first")
    pairs = pairs.reindex(columns=["1d", "2d"]).dropna().reset_index().rename_axis(columns=None)
    pairs["max difference"] = [results.history_difference(epochs, a, b) for a, b in zip(pairs["1d"], pairs["2d"])]
    return pairs.rename(columns={"1d": "run (1d)", "2d": "run (2d)"})


def dropout_kind_at_zero(ev, runs, epochs) -> Claim:
    claim = "Dropout2d and element-wise dropout differ at the CNN's best setting (p = 0)"
    at_zero = evidence.rows(ev, "cnn", DROPOUT_KIND_GRID, "test_acc", dropout_rate=0.0)
    missing_kinds = sorted(at_zero.loc[at_zero["finished"] == 0, "dropout_kind"])
    if at_zero.empty or missing_kinds:
        why = (f"the CNN's dropout kind {', '.join(missing_kinds)} at p = 0 has no finished run" if missing_kinds else
               "this profile runs no CNN dropout kind at p = 0")
        return _not_judged("2 CNN", claim, why)
    differences = dropout_kind_pairs(runs, epochs, dropout_rate=0.0)["max difference"]
    if differences.max() == 0.0:
        seeds = f"all {len(differences)} seeds" if len(differences) > 1 else "its one seed"
        text = f"the 1d and 2d runs are bit-identical for {seeds}: both layers are the identity"
    else:
        text = (f"the 1d and 2d runs differ by up to {differences.max():.2g} though both layers are the identity: "
                "non-deterministic kernels, i.e. run-to-run noise")
    return Claim("2 CNN", claim, text, FAILS, "both layers are the identity at p = 0")


def thirty_epochs_enough(epochs) -> Claim:
    """The report (4.2): about 30 epochs are enough: stopping there loses no best validation accuracy."""
    claim = f"About {ENOUGH_EPOCHS} epochs are enough"
    longest = int(epochs["num_epochs"].max()) if len(epochs) else 0
    if longest <= ENOUGH_EPOCHS:
        why = (f"this profile trains {longest} epochs; the claim needs more than {ENOUGH_EPOCHS}" if longest else
               "no run has finished")
        return _not_judged("4.2 question", claim, why, f"no run of more than {ENOUGH_EPOCHS} epochs")
    long_runs = epochs[epochs["num_epochs"] > ENOUGH_EPOCHS]
    best = results.best_within(long_runs, ENOUGH_EPOCHS)
    kept = Estimate.of(best["best_val_acc_early"] - best["best_val_acc_all"])  # <= 0: what stopping early costs
    turning = results.turning_points(long_runs)
    worst = (best["best_val_acc_early"] - best["best_val_acc_all"]).min()
    text = (f"best validation accuracy by epoch {ENOUGH_EPOCHS} minus over all epochs, over {len(best)} runs: "
            f"{kept.format(4)} (at worst {worst:.4f}); "
            f"validation loss is lowest by epoch {ENOUGH_EPOCHS} in "
            f"{int((turning['turning_epoch'] <= ENOUGH_EPOCHS).sum())} of {len(turning)} runs")
    return Claim("4.2 question", claim, text, *judge_no_worse(judge_difference(kept, _zero_like(kept), "val_acc")))


def early_stopping_at_turning_point(epochs) -> Claim:
    """The report (4.2): stopping at the epoch of lowest validation loss loses no validation accuracy."""
    claim = "Stopping at the validation-loss turning point loses no accuracy"
    if epochs.empty:
        return _not_judged("4.2 question", claim, "no run has finished", "no run has finished yet")
    turning = results.turning_points(epochs)
    turned = turning[turning["epochs_past_turn"] > 0]
    text = f"validation loss turned before the last epoch in {len(turned)} of {len(turning)} runs"
    if turned.empty:
        return _not_judged("4.2 question", claim, "no run's validation loss turned before its last epoch", text)
    change = Estimate.of(turned["val_acc_turn"] - turned["val_acc_last"])
    text += (f"; validation accuracy at the turning point minus at the last epoch, over those runs: "
             f"{change.format(4)} (mean ± std over runs)")
    return Claim("4.2 question", claim, text,
                 *judge_no_worse(judge_difference(change, _zero_like(change), "val_acc")))


def headline_numbers(ev, reference, profile: str) -> list[Claim]:
    claims = []
    for model in MODELS:
        name = MODEL_LABELS[model]
        row = evidence.rows(ev, model, BASELINE, "test_acc")
        original = evidence.printed_numbers(
            reference[(reference["model"] == model) & (reference["role"] == BASELINE.label)
                      & (reference["metric"] == "test_acc")]["value"])
        claim = f"The best {name} reaches test accuracy {sum(original) / len(original):.3f}"
        if row.empty or row["count"].iloc[0] == 0:
            claims.append(_not_judged("6 summary", claim, what_is_missing(ev, model, BASELINE)))
            continue
        ours = row["estimate"].iloc[0]
        text = f"reproduced {ours.format()}, difference {number(row['verdict'].iloc[0].difference, 4, sign=True)}"
        if profile != FULL_PROFILE:
            claims.append(_not_judged("6 summary", claim, f"the {profile} profile trains a reduced protocol", text))
            continue
        claims.append(Claim("6 summary", claim, text, *judge_no_worse(row["verdict"].iloc[0], either_way=True)))
    return claims


def single_runs_resolve_grids(ev, reference) -> Claim:
    """How many of the report's grid rankings rest on gaps within the noise of two single runs."""
    settings = evidence.rows(ev, metric="test_acc").drop_duplicates("run_ids")
    typical_std = settings.loc[settings["count"] > 1, "std"].median()
    claim = "One run per setting is enough to rank the settings of a grid"
    if pd.isna(typical_std):
        return _not_judged("5 grids", claim, "no setting has several seeds, so seed-to-seed noise is unknown")
    # The one rule for two single runs: the standard error of their difference is sqrt(1 + 1) seed deviations.
    noise = NOISE_Z * math.sqrt(2) * typical_std
    grids = reference[reference["role"].isin([grid.label for grid in GRIDS.values()]) & (reference["metric"] == "test_acc")]
    gaps = pd.concat([grid["value"].max() - grid["value"] for _, grid in grids.groupby(["model", "experiment"])])
    close, total = int(((gaps > 0) & (gaps < noise)).sum()), int((gaps > 0).sum())
    text = (f"median seed std of test accuracy here: {typical_std:.4f}, so two single runs differ by up to "
            f"{noise:.4f} by chance ({NOISE_Z:g} standard errors); {close} of the report's {total} gaps to a grid's "
            "best lie within that")
    return Claim("5 grids", claim, text, FAILS if close else HOLDS,
                 f"{close} of {total} rankings rest on a gap within noise" if close else "every gap beyond noise")


COLUMNS = ["source", "claim", "evidence", "verdict", "outcome"]


def all_claims(ev: pd.DataFrame, runs: pd.DataFrame, epochs: pd.DataFrame, reference: pd.DataFrame,
               profile: str) -> pd.DataFrame:
    """Every claim judged, one row each, in the report's order: `verdict` to show, `outcome` to count.

    ev is the page's evidence table (evidence.build); only the rows, runs and epochs of the report's
    protocol are read."""
    ev = ev[~ev["role"].isin({role.label for role in DEPARTURES})]
    runs, epochs = results.protocol(runs), results.protocol_epochs(epochs, runs)
    claims = [
        higher_test_accuracy(ev, "1 MLP", "Dropout (p = 0.5) raises the MLP's test accuracy", ("mlp", BASELINE),
                             ("mlp", NO_DROPOUT)),
        batchnorm_helps(ev, "mlp"), batchnorm_helps(ev, "cnn"),
        dropout_kind_at_zero(ev, runs, epochs), dropout_narrows_gap_mlp(ev, runs),
        *(judged for model in MODELS for judged in (batchnorm_converges_faster(ev, runs, epochs, model),
                                                    batchnorm_steadies_training(ev, runs, epochs, model))),
        early_stopping_at_turning_point(epochs), thirty_epochs_enough(epochs),
        higher_test_accuracy(ev, "4.3 question", "The CNN classifies CIFAR-10 better than the MLP", ("cnn", BASELINE),
                             ("mlp", BASELINE), "test accuracy CNN {}, MLP {}"),
        *(best_setting(ev, reference, model, field) for model in MODELS for field in GRIDS),
        *(larger_learning_rate_turns_earlier(ev, runs, epochs, model) for model in MODELS),
        high_dropout_inverts_accuracy(ev, runs, "mlp"), high_dropout_inverts_accuracy(ev, runs, "cnn"),
        narrow_cnn_like_mlp(ev), single_runs_resolve_grids(ev, reference), *headline_numbers(ev, reference, profile),
    ]
    return pd.DataFrame([[claim.source, claim.claim, claim.evidence, claim.verdict, claim.outcome]
                         for claim in claims], columns=COLUMNS)


def verdict_counts(judged: pd.DataFrame) -> pd.Series:
    """How many claims have each outcome, every outcome listed (0 when none): they add up to len(judged)."""
    return judged["outcome"].value_counts().reindex(list(OUTCOMES), fill_value=0)
