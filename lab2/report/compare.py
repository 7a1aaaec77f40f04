"""Comparisons the book makes: metrics per setting over seeds, differences judged by one
noise rule, and the original report's numbers beside the reproduced ones.

The noise rule ("How to read the numbers" on the intro states it for readers):
- A difference of two means is beyond seed-to-seed noise when it exceeds NOISE_Z standard
  errors of the difference, sqrt(s1^2/n1 + s2^2/n2). A number of the original report is one
  run; its noise is taken to be that of one of our seeds of the same setting, so against it
  the standard error is s * sqrt(1/n + 1). With one seed no spread is known, and the verdict
  says so.
- Its size: accuracies in points (hundredths), losses relative to the number compared with;
  below SIZE_STEPS[kind][0] is small, below SIZE_STEPS[kind][1] clear, beyond that large.
"""

import math
from dataclasses import dataclass

import pandas as pd

from lab2.core.config import MODELS
from lab2.report import results
from lab2.report.experiments import ABLATIONS, BASELINE, DROPOUT_KIND_GRID, NO_BATCHNORM, NO_DROPOUT, REPORTED, Role
from lab2.report.results import METRICS

NOISE_Z = 2.0  # standard errors of a difference that count as seed-to-seed noise
# Size steps: (small below, clear below); large from the second. Accuracy in absolute terms
# (0.01 = one point), loss relative to the number compared with.
SIZE_STEPS = {"accuracy": (0.01, 0.03), "loss": (0.05, 0.20)}
SMALL, CLEAR, LARGE, NO_DIFFERENCE = "small", "clear", "large", "none"
# The columns that match a number of the original report (results.load_reference()) to runs: the setting.
SETTING_KEYS = ["model", "dropout_rate", "batch_size", "learning_rate", "batchnorm", "dropout_kind"]
NO_KIND = "-"  # dropout_kind of an MLP: it has element-wise dropout only
# The reader's words for a number (or a comparison of numbers) whose runs are missing, wherever a
# page shows one: a glued number, a table cell, a verdict.
NOT_MEASURED = "not measured"


def measured(value) -> bool:
    """Whether a number was measured: None and NaN stand for one whose runs are missing."""
    return not (pd.api.types.is_scalar(value) and pd.isna(value))


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
    """'0.561 ± 0.004', or '0.561' when there is no spread, or NOT_MEASURED when there is no number."""
    if not measured(mean):
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


def metric_kind(metric: str) -> str:
    """'accuracy' or 'loss': which size steps a metric's differences are measured with."""
    return "loss" if "loss" in metric else "accuracy"


def size_of(difference: float, reference: float, metric: str) -> str:
    """How large a difference is (small / clear / large, or none), by SIZE_STEPS."""
    if difference == 0:
        return NO_DIFFERENCE
    kind = metric_kind(metric)
    magnitude = abs(difference) / abs(reference) if kind == "loss" and reference else abs(difference)
    small, clear = SIZE_STEPS[kind]
    return SMALL if magnitude < small else CLEAR if magnitude < clear else LARGE


@dataclass(frozen=True)
class Verdict:
    """A difference judged by the noise rule: how large, and whether seeds tell it from noise."""

    difference: float  # a - b; nan when either side is missing
    noise: float  # standard error of the difference; nan with one seed
    size: str  # small, clear, large or none (SIZE_STEPS)

    @property
    def measured(self) -> bool:
        return not math.isnan(self.difference)

    @property
    def beyond_noise(self) -> bool | None:
        """True/False by NOISE_Z standard errors; None when the noise is unknown (one seed) or a side is missing."""
        if not self.measured or math.isnan(self.noise):
            return None
        return abs(self.difference) > NOISE_Z * self.noise

    @property
    def text(self) -> str:
        """'large, beyond noise', 'small, within noise', 'clear; one seed, noise unknown', or NOT_MEASURED."""
        if not self.measured:
            return NOT_MEASURED
        if self.size == NO_DIFFERENCE:
            return "no difference"
        beyond = self.beyond_noise
        if beyond is None:
            return f"{self.size}; one seed, noise unknown"
        return f"{self.size}, {'beyond' if beyond else 'within'} noise"


def judge_difference(a: Estimate, b: Estimate, metric: str = "test_acc") -> Verdict:
    """a - b judged by the noise rule (two settings of this reproduction)."""
    difference = a.mean - b.mean
    reference = b.mean
    return Verdict(difference, a.difference_noise(b), size_of(difference, reference, metric) if not math.isnan(difference)
                   else NO_DIFFERENCE)


def judge_against_original(ours: Estimate, original: float, metric: str, original_runs: int = 1) -> Verdict:
    """ours - original judged by the noise rule: the original's runs are as noisy as our seeds."""
    difference = ours.mean - original
    noise = ours.std * math.sqrt(1 / ours.count + 1 / original_runs) if ours.has_spread else math.nan
    return Verdict(difference, noise, size_of(difference, original, metric) if not math.isnan(difference)
                   else NO_DIFFERENCE)


def separated(a: Estimate, b: Estimate) -> bool | None:
    """Whether a and b differ by more than seed noise; None when either has one seed."""
    return judge_difference(a, b).beyond_noise


def difference_phrase(a: Estimate, b: Estimate, digits: int = 3) -> str:
    """a against b in words: '0.012 higher than', '0.012 lower than' or 'the same as'."""
    if not (measured(a.mean) and measured(b.mean)):
        return NOT_MEASURED
    difference = round(a.mean - b.mean, digits)
    if difference == 0:
        return "the same as"
    return f"{abs(difference):.{digits}f} {'higher' if difference > 0 else 'lower'} than"


def noise_phrase(a: Estimate, b: Estimate) -> str:
    """Whether seeds tell a and b apart, in words."""
    if math.isnan(a.mean) or math.isnan(b.mean):
        return "the runs to tell them apart are missing"
    verdict = judge_difference(a, b)
    if verdict.beyond_noise is None:
        return f"the difference is {verdict.size}; with one seed per setting it cannot be told from seed-to-seed noise"
    return f"the difference is {verdict.text.replace('noise', 'seed-to-seed noise')}"


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


def reported_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of experiments the report ran (its roles, experiments.REPORTED), each run once."""
    labels = {role.label for role in REPORTED.values()}
    return runs[runs["roles"].apply(lambda roles: any(label in labels for label in roles))]


def _first_note(notes: pd.Series):
    notes = notes.dropna()
    return notes.iloc[0] if len(notes) else None


def _decimals(value: float) -> int:
    """How many decimals a number was printed with (as the CSV holds it)."""
    text = format(value, ".15g")
    return 15 if "e" in text else len(text.partition(".")[2])


def printed_numbers(values) -> list[float]:
    """The distinct numbers among the values printed for one setting and metric, fullest precision first.

    The report prints a run in full in one section and rounded in another (0.789175 and 0.7892):
    a value that is another rounded to its own decimals is the same number, not a second run.
    """
    distinct: list[float] = []
    for value in sorted(values, key=_decimals, reverse=True):
        if not any(math.isclose(round(kept, _decimals(value)), value, abs_tol=1e-12) for kept in distinct):
            distinct.append(value)
    return distinct


def compare_with_reference(runs: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per model, setting and metric the report printed: its number beside our mean over seeds.

    The report prints some settings in several sections (its best MLP is also a point of each
    grid), at times from different runs: such a setting is one row here, `original_values` its
    distinct numbers (printed_numbers: one printed in full and rounded is one), `original` their
    mean and `original_runs` how many there are. `verdict` is the noise
    rule's (judge_against_original); `beyond_noise` is None with one seed, `size` small,
    clear or large.
    """
    keys = [*SETTING_KEYS, "metric"]
    ours = _comparable_keys(results.finished(reported_runs(runs)))
    long = ours.melt(id_vars=SETTING_KEYS, value_vars=list(METRICS), var_name="metric")
    stats = long.groupby(keys)["value"].agg(["mean", "std", "count"]).reset_index()
    printed = _comparable_keys(reference).groupby(keys, sort=False).agg(
        experiments=("experiment", lambda names: ", ".join(dict.fromkeys(names))),
        role=("role", "first"),
        original=("value", lambda values: sum(printed_numbers(values)) / len(printed_numbers(values))),
        original_runs=("value", lambda values: len(printed_numbers(values))),
        original_values=("value", lambda values: tuple(printed_numbers(values))),
        note=("note", _first_note),
    ).reset_index()
    table = printed.merge(stats.rename(columns={"mean": "reproduced", "count": "seeds"}), on=keys, how="left")
    table["seeds"] = table["seeds"].fillna(0).astype(int)
    table["difference"] = table["reproduced"] - table["original"]
    verdicts = [judge_against_original(Estimate(mean, std, count), original, metric, original_runs)
                for mean, std, count, original, metric, original_runs in
                zip(table["reproduced"], table["std"], table["seeds"], table["original"], table["metric"],
                    table["original_runs"])]
    table["size"] = [verdict.size if verdict.measured else None for verdict in verdicts]
    table["beyond_noise"] = pd.Series([verdict.beyond_noise for verdict in verdicts], dtype=object)
    table["verdict"] = [verdict.text for verdict in verdicts]
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
                     "beyond seed noise": (NOT_MEASURED if not measured(two_d.mean - one_d.mean) else "one seed"
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
    parts = [results.finished(results.runs_of(runs, model, BASELINE)) for model in MODELS]
    chosen = pd.concat(parts, ignore_index=True)
    return chosen.assign(seconds_per_epoch=chosen["run_id"].map(results.epoch_seconds(epochs)))


def spread_note(runs: pd.DataFrame) -> str:
    """How the numbers of these runs are aggregated over seeds, in words."""
    finished = results.finished(runs)
    if finished.empty:
        return "no run has finished yet"
    per_setting = finished.groupby(list(results.SETTING_FIELDS), dropna=False).size()
    fewest, most = int(per_setting.min()), int(per_setting.max())
    if most == 1:
        return "one seed per setting, so no seed-to-seed spread can be given"
    if fewest == most:
        return f"mean ± standard deviation over {most} seeds"
    return (f"mean ± standard deviation over the finished seeds of each setting ({fewest} to {most}; "
            "each table gives the count, and one seed has no spread)")


def ablation_facts(runs: pd.DataFrame, epochs: pd.DataFrame, model: str) -> dict:
    """The numbers a model's chapter quotes about its best setting, without Dropout and without BatchNorm,
    named by each one-setting role's name (test_best, gap_no_dropout, against_no_batchnorm, ...)."""
    facts = {"spread_note": spread_note(runs[runs["model"] == model])}
    estimates = {}
    for role in ABLATIONS:
        chosen = results.finished(results.runs_of(runs, model, role))
        estimates[role] = estimate(chosen)
        first_epoch = epochs[epochs["run_id"].isin(chosen["run_id"]) & (epochs["epoch"] == 1)]
        facts.update({
            f"test_{role.name}": estimates[role].mean,
            f"test_{role.name}_text": estimates[role].format(),
            f"gap_{role.name}": estimate(chosen.assign(gap=chosen["train_acc"] - chosen["val_acc"]), "gap").mean,
            f"first_train_loss_{role.name}": first_epoch["train_loss"].mean(),
        })
    for role in (NO_DROPOUT, NO_BATCHNORM):
        facts[f"against_{role.name}"] = difference_phrase(estimates[BASELINE], estimates[role])
        facts[f"noise_{role.name}"] = noise_phrase(estimates[BASELINE], estimates[role])
    gap_change = facts[f"gap_{BASELINE.name}"] - facts[f"gap_{NO_DROPOUT.name}"]
    facts["gap_change"] = ("narrows" if gap_change < 0 else "widens" if gap_change > 0 else
                           "leaves unchanged" if gap_change == 0 else "cannot yet be said to change")
    loss_change = facts[f"first_train_loss_{BASELINE.name}"] - facts[f"first_train_loss_{NO_BATCHNORM.name}"]
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
