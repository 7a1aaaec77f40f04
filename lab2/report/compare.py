"""Comparisons the book makes: metrics per setting over seeds, differences against seed noise,
and the original report's numbers beside the reproduced ones.

Seed noise: a number lies within the seed spread of a setting when it is within
mean ± SPREAD_Z × (sample std of the seeds); two settings are told apart when their means
differ by more than SPREAD_Z standard errors of the difference. With one seed there is no
spread, and every judgement says so.
"""

import math
from dataclasses import dataclass

import pandas as pd

from lab2.report import results
from lab2.report.experiments import BASELINE, DROPOUT_KIND_GRID, WITHOUT_BATCHNORM, WITHOUT_DROPOUT, Role
from lab2.report.results import METRICS

SPREAD_Z = 2.0  # how many standard deviations (or standard errors) count as "within noise"
# The columns that match a number of the original report (results.load_reference()) to runs.
REFERENCE_KEYS = ["model", "role", "dropout_rate", "batch_size", "learning_rate", "batchnorm", "dropout_kind"]
NO_KIND = "-"  # dropout_kind of an MLP: it has element-wise dropout only
NOT_MEASURED = "not measured"  # a number or comparison whose runs are missing


@dataclass(frozen=True)
class Estimate:
    """One metric over the seeds of one setting: mean, sample std (nan from one seed), count."""

    mean: float
    std: float
    count: int

    @classmethod
    def of(cls, values) -> "Estimate":
        values = pd.Series(values, dtype=float).dropna()
        return cls(float(values.mean()), float(values.std()) if len(values) > 1 else math.nan, len(values))

    @property
    def has_spread(self) -> bool:
        return self.count > 1 and not math.isnan(self.std)

    def format(self, digits: int = 3) -> str:
        return plus_minus(self.mean, self.std, digits)

    def difference_noise(self, other: "Estimate") -> float:
        """Standard error of (self.mean - other.mean); nan unless both have several seeds."""
        if not (self.has_spread and other.has_spread):
            return math.nan
        return math.sqrt(self.std ** 2 / self.count + other.std ** 2 / other.count)


def plus_minus(mean: float, std: float, digits: int = 3) -> str:
    """'0.561 ± 0.004', or '0.561' when there is no spread, or 'not measured' when there is no number."""
    if pd.isna(mean):
        return NOT_MEASURED
    if pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def estimate(runs: pd.DataFrame, metric: str = "test_acc") -> Estimate:
    """The metric over the finished runs given (the seeds of one setting)."""
    return Estimate.of(results.finished(runs)[metric])


def experiment_estimate(runs: pd.DataFrame, model: str, experiment: Role | str, metric: str = "test_acc") -> Estimate:
    """The metric of a one-setting experiment (the baseline, without dropout, ...) over its seeds."""
    return estimate(results.runs_of(runs, model, experiment), metric)


def separated(a: Estimate, b: Estimate) -> bool | None:
    """Whether a and b differ by more than seed noise; None when either has one seed."""
    noise = a.difference_noise(b)
    return None if math.isnan(noise) else abs(a.mean - b.mean) > SPREAD_Z * noise


def difference_phrase(a: Estimate, b: Estimate, digits: int = 3) -> str:
    """a against b in words: '0.012 higher than', '0.012 lower than' or 'the same as'."""
    if math.isnan(a.mean) or math.isnan(b.mean):
        return NOT_MEASURED
    difference = round(a.mean - b.mean, digits)
    if difference == 0:
        return "the same as"
    return f"{abs(difference):.{digits}f} {'higher' if difference > 0 else 'lower'} than"


def noise_phrase(a: Estimate, b: Estimate) -> str:
    """Whether seeds tell a and b apart, in words."""
    if math.isnan(a.mean) or math.isnan(b.mean):
        return "the runs to tell them apart are missing"
    apart = separated(a, b)
    if apart is None:
        return "with one seed per setting it cannot be told from seed-to-seed noise"
    return "the difference is beyond seed-to-seed noise" if apart else "the difference is within seed-to-seed noise"


def grid_axes(runs: pd.DataFrame) -> list[str]:
    """The fields an experiment varies, read from its planned runs (finished or not)."""
    return results.varying_fields(runs)


def grid_estimates(runs: pd.DataFrame, model: str, experiment: Role | str, metric: str = "test_acc") -> pd.DataFrame:
    """One row per grid value of an experiment: the value and the metric's Estimate, best first."""
    planned = results.runs_of(runs, model, experiment)
    axes = results.varying_fields(planned)
    if len(axes) != 1:
        raise ValueError(f"{model}: {getattr(experiment, 'label', experiment)} varies {axes or 'nothing'}; "
                         "expected one grid axis")
    chosen = results.finished(planned)
    rows = [{"value": value, "estimate": estimate(group, metric)} for value, group in chosen.groupby(axes[0])]
    table = pd.DataFrame(rows, columns=["value", "estimate"])
    table["mean"] = [e.mean for e in table["estimate"]]
    return table.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


def _comparable_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """Key columns in one spelling on both sides: rounded floats, a placeholder kind for MLPs."""
    frame = frame.copy()
    for column in ("dropout_rate", "learning_rate"):
        frame[column] = frame[column].astype(float).round(10)
    frame["batch_size"] = frame["batch_size"].astype(int)
    frame["batchnorm"] = frame["batchnorm"].astype(bool)
    frame["dropout_kind"] = frame["dropout_kind"].where(frame["model"] == "cnn", NO_KIND).astype(str)
    return frame


def compare_with_reference(runs: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Every number of the original report beside the reproduced mean over seeds and the difference.

    `within_spread` is True/False when the setting has several seeds, and missing with one.
    """
    reproduced = _comparable_keys(results.by_experiment(results.finished(runs)))
    long = reproduced.melt(id_vars=REFERENCE_KEYS, value_vars=list(METRICS), var_name="metric")
    stats = long.groupby(REFERENCE_KEYS + ["metric"])["value"].agg(["mean", "std", "count"]).reset_index()
    table = _comparable_keys(reference).rename(columns={"value": "original"})
    table = table.merge(stats.rename(columns={"mean": "reproduced", "count": "seeds"}),
                        on=REFERENCE_KEYS + ["metric"], how="left")
    table["seeds"] = table["seeds"].fillna(0).astype(int)
    table["difference"] = table["reproduced"] - table["original"]
    spread_known = table["seeds"] > 1
    within = (table["difference"].abs() <= SPREAD_Z * table["std"]).astype(object)
    table["within_spread"] = within.where(spread_known, None)
    return table


def dropout_kind_pairs(runs: pd.DataFrame, epochs: pd.DataFrame, dropout_rate: float = 0.0) -> pd.DataFrame:
    """Per seed: the CNN's element-wise (1d) and channel-wise (2d) runs at one rate and the largest
    difference between their per-epoch metrics (0 means bit-identical)."""
    grid = results.finished(results.runs_of(runs, "cnn", DROPOUT_KIND_GRID))
    at_rate = grid[grid["dropout_rate"].round(10) == round(dropout_rate, 10)]
    if at_rate.empty:
        return pd.DataFrame(columns=["seed", "run (1d)", "run (2d)", "max difference"])
    pairs = at_rate.pivot_table(index="seed", columns="dropout_kind", values="run_id", aggfunc="first")
    pairs = pairs.reindex(columns=["1d", "2d"]).dropna().reset_index().rename_axis(columns=None)
    pairs["max difference"] = [results.history_difference(epochs, a, b) for a, b in zip(pairs["1d"], pairs["2d"])]
    return pairs.rename(columns={"1d": "run (1d)", "2d": "run (2d)"})


def kind_differences(runs: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per dropout rate: channel-wise (2d) minus element-wise (1d) dropout, and whether seeds tell them apart."""
    grid = results.finished(results.runs_of(runs, "cnn", DROPOUT_KIND_GRID))
    rows = []
    for rate, group in grid.groupby("dropout_rate"):
        two_d = estimate(group[group["dropout_kind"] == "2d"], metric)
        one_d = estimate(group[group["dropout_kind"] == "1d"], metric)
        apart = separated(two_d, one_d)
        rows.append({"dropout_rate": rate, "2d": two_d.format(), "1d": one_d.format(),
                     "2d - 1d": round(two_d.mean - one_d.mean, 4),
                     "beyond seed noise": ("not run" if math.isnan(two_d.mean - one_d.mean) else "one seed"
                                           if apart is None else "yes" if apart else "no")})
    columns = ["dropout_rate", "2d", "1d", "2d - 1d", "beyond seed noise"]
    return pd.DataFrame(rows, columns=columns).set_index("dropout_rate")


def dropout_kind_facts(runs: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    """What the CNN chapter says of channel-wise against element-wise dropout: at p = 0 (`pairs`, from
    dropout_kind_pairs) whether the two kinds computed the same, and above 0 which kind wins where."""
    kinds = kind_differences(runs)
    positive = kinds[(kinds.index > 0) & kinds["2d - 1d"].notna()]
    largest = pairs["max difference"].max() if len(pairs) else math.nan
    return {
        "pairs": len(pairs), "largest_difference": largest,
        "identical": NOT_MEASURED if pairs.empty else "bit-identical" if largest == 0 else "not bit-identical",
        "best_rate": positive["2d - 1d"].abs().idxmax() if len(positive) else math.nan,
        "best_gap": positive["2d - 1d"].abs().max(), "wins_2d": int((positive["2d - 1d"] > 0).sum()),
        "rates": len(positive),
        "separated": int((positive["beyond seed noise"] == "yes").sum()) if len(positive) else math.nan,
    }


def best_runs(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Each model's best-setting runs (every seed), with their mean seconds per epoch."""
    parts = [results.finished(results.runs_of(runs, model, BASELINE)) for model in ("mlp", "cnn")]
    chosen = pd.concat(parts, ignore_index=True)
    return chosen.assign(seconds_per_epoch=chosen["run_id"].map(results.epoch_seconds(epochs)))


def spread_note(runs: pd.DataFrame) -> str:
    """How the page's numbers are aggregated over seeds, in words."""
    seeds = results.finished(runs)["seed"].nunique()
    if seeds == 0:
        return "no run has finished yet, so every number is missing"
    if seeds > 1:
        return f"mean ± standard deviation over {seeds} seeds"
    return "one seed per setting, so no seed-to-seed spread can be given"


# How ablation_facts names the facts of each one-setting experiment (test_best, gap_no_dropout, ...).
ABLATION_FACTS = {"best": BASELINE, "no_dropout": WITHOUT_DROPOUT, "no_batchnorm": WITHOUT_BATCHNORM}


def ablation_facts(runs: pd.DataFrame, epochs: pd.DataFrame, model: str) -> dict:
    """The numbers a model's chapter quotes about its best setting, without Dropout and without BatchNorm."""
    facts = {"spread_note": spread_note(runs)}
    estimates = {}
    for name, role in ABLATION_FACTS.items():
        chosen = results.finished(results.runs_of(runs, model, role))
        estimates[name] = estimate(chosen)
        first_epoch = epochs[epochs["run_id"].isin(chosen["run_id"]) & (epochs["epoch"] == 1)]
        facts.update({
            f"test_{name}": estimates[name].mean,
            f"test_{name}_text": estimates[name].format(),
            f"gap_{name}": estimate(chosen.assign(gap=chosen["train_acc"] - chosen["val_acc"]), "gap").mean,
            f"first_train_loss_{name}": first_epoch["train_loss"].mean(),
        })
    for name in ("no_dropout", "no_batchnorm"):
        facts[f"against_{name}"] = difference_phrase(estimates["best"], estimates[name])
        facts[f"noise_{name}"] = noise_phrase(estimates["best"], estimates[name])
    gap_change = facts["gap_best"] - facts["gap_no_dropout"]
    facts["gap_change"] = ("narrows" if gap_change < 0 else "widens" if gap_change > 0 else
                           "leaves unchanged" if gap_change == 0 else "cannot yet be said to change")
    loss_change = facts["first_train_loss_best"] - facts["first_train_loss_no_batchnorm"]
    facts["first_loss_change"] = ("lower" if loss_change < 0 else "higher" if loss_change > 0 else
                                  "the same" if loss_change == 0 else NOT_MEASURED)
    return facts


def grid_facts(runs: pd.DataFrame, model: str, experiment: Role | str) -> dict:
    """The numbers a chapter quotes about one grid, keyed without prefix: the best value and its
    runner-up, and training accuracy and train - validation gap at the grid's two ends.

    Values of settings that have not finished are nan (their phrases say so).
    """
    table = grid_estimates(runs, model, experiment)
    nothing = pd.Series({"value": math.nan, "estimate": Estimate(math.nan, math.nan, 0)})
    best = table.iloc[0] if len(table) else nothing
    runner_up = table.iloc[1] if len(table) > 1 else nothing
    worst = table.iloc[-1] if len(table) > 1 else nothing
    planned = results.runs_of(runs, model, experiment)
    field = grid_axes(planned)[0]
    chosen = results.finished(planned)
    low, high = planned[field].min(), planned[field].max()
    ends = {"low": chosen[chosen[field] == low], "high": chosen[chosen[field] == high]}
    facts = {
        "best": best["value"], "best_text": best["estimate"].format(),
        "runner_up": runner_up["value"], "runner_up_text": runner_up["estimate"].format(),
        "noise": noise_phrase(best["estimate"], runner_up["estimate"]),
        "worst": worst["value"], "worst_text": worst["estimate"].format(),
        "low": low, "high": high,
    }
    for end, group in ends.items():
        facts[f"train_acc_{end}"] = group["train_acc"].mean()
        facts[f"gap_{end}"] = (group["train_acc"] - group["val_acc"]).mean()
    return facts
