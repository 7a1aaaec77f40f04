"""The book's evidence: every number a page states about a profile's runs, in one table built once.

`build(runs, reference)` gives one row per model, experiment, setting and metric:
- the experiment as params/ names it and the role it plays in a chapter (None: the appendix);
- what ran: runs planned, finished (ok) and diverged, the finished seeds and the devices they ran on;
- ours: mean, standard deviation and count over the finished seeds;
- the report's, for the experiments the report ran (experiments.REPORTED): the distinct numbers
  it printed for that setting (`printed_numbers`), their mean and how many, and the sections that
  printed them;
- ours minus the report's, judged by the noise rule (lab2.report.noise).
Sections, claims, findings and the comparison page are filters and pivots of it (`rows`,
`estimate`, `pivot`, `against_report`).
"""

import math

import pandas as pd

from lab2.core.config import FIELD_LABELS
from lab2.report import results
from lab2.report.experiments import REPORTED, Role
from lab2.report.noise import NOT_MEASURED, Estimate, judge_against_original
from lab2.report.results import METRICS, SETTING_FIELDS

# The fields that match a number of the report to our runs: its setting (the report varied no other).
SETTING_KEYS = ["model", "dropout_rate", "batch_size", "learning_rate", "batchnorm", "dropout_kind"]
NO_KIND = "-"  # the dropout kind of an MLP, which has element-wise dropout only
NOT_IN_REPORT = "–"  # a table's cell for a setting or metric the report did not print
# Values that params/ spells otherwise than a reader says them.
VALUE_NAMES = {"batchnorm_variant": {"momentum_swapped": "momentum swapped",
                                     "running_in_training": "running statistics in training"}}


def value_name(field: str, value) -> str:
    """A setting's value in words, without its field: 'running statistics in training', '0.5'."""
    return VALUE_NAMES.get(field, {}).get(value) or str(value).replace("_", " ")


def value_words(field: str, value) -> str:
    """A setting's value as a reader says it: 'batch size 50', 'without BatchNorm', 'JPEG quality as read'."""
    if field == "batchnorm":
        return "with BatchNorm" if value else "without BatchNorm"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{FIELD_LABELS[field]} as read" if field == "jpeg_quality" else f"{FIELD_LABELS[field]} unset"
    if isinstance(value, float):
        value = f"{value:g}"
    return f"{FIELD_LABELS.get(field, field)} {value_name(field, value)}"


def printed_numbers(values) -> list[float]:
    """The distinct numbers among the values printed for one setting and metric, fullest precision first.

    The report prints a run in full in one section and rounded in another (0.789175 and 0.7892):
    a value that is another rounded to its own decimals is the same number, not a second run.
    """
    def decimals(value: float) -> int:
        text = format(value, ".15g")
        return 15 if "e" in text else len(text.partition(".")[2])

    distinct: list[float] = []
    for value in sorted(values, key=decimals, reverse=True):
        if not any(math.isclose(round(kept, decimals(value)), value, abs_tol=1e-12) for kept in distinct):
            distinct.append(value)
    return distinct


def setting_key(row) -> tuple:
    """The setting of a run (or of a number of the report) in one spelling on both sides."""
    kind = row["dropout_kind"] if row["model"] == "cnn" else NO_KIND
    return (row["model"], round(float(row["dropout_rate"]), 10), int(row["batch_size"]),
            round(float(row["learning_rate"]), 10), bool(row["batchnorm"]), str(kind))


def report_numbers(reference: pd.DataFrame) -> dict[tuple, dict]:
    """(setting key, metric) -> the report's distinct numbers for it and the sections that printed them."""
    found = {}
    for (key, metric), group in reference.groupby([reference.apply(setting_key, axis=1), "metric"], sort=False):
        found[key, metric] = {"values": tuple(printed_numbers(group["value"])),
                              "printed_in": ", ".join(dict.fromkeys(group["experiment"]))}
    return found


def devices(finished: pd.DataFrame) -> str:
    """'3 on NVIDIA H200 tf32', or each device with its count when they differ."""
    kinds = (finished["device_name"].fillna("unknown device") + " " + finished["used_precision"].fillna("")).str.strip()
    return ", ".join(f"{count} on {kind}" for kind, count in kinds.value_counts().items())


def build(runs: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """The evidence table of a profile's runs (results.load_results) against the report's numbers (results.load_reference)."""
    printed = report_numbers(reference)
    reported = {role.label for role in REPORTED.values()}
    rows = []
    for (model, experiment), planned in results.by_experiment(runs).groupby(["model", "experiment_id"], sort=False):
        role = planned["role"].iloc[0]
        axes = results.varying_fields(planned)
        for _, setting in planned.groupby(axes or ["model"], sort=True, dropna=False):
            first, finished = setting.iloc[0], results.finished(setting)
            common = {
                "model": model, "experiment": experiment, "role": role, "axes": tuple(axes),
                "label": ", ".join(value_words(axis, first[axis]) for axis in axes) or (role or experiment),
                **{field: first[field] for field in SETTING_FIELDS},
                "planned": len(setting), "finished": len(finished), "diverged": len(results.diverged(setting)),
                "diverged_at": tuple((int(run.seed), run.diverged_epoch) for run in results.diverged(setting).itertuples()),
                "planned_seeds": tuple(sorted(setting["seed"])), "seeds": tuple(sorted(finished["seed"])),
                "devices": devices(finished), "run_ids": tuple(setting["run_id"]),
            }
            key = setting_key(first)
            for metric in METRICS:
                ours = Estimate.of(finished[metric])
                report = printed.get((key, metric), {}) if role in reported else {}
                values = report.get("values", ())
                original = sum(values) / len(values) if values else math.nan
                rows.append({**common, "metric": metric, "estimate": ours, "mean": ours.mean, "std": ours.std,
                             "count": ours.count, "original": original, "original_values": values,
                             "printed_in": report.get("printed_in", ""),
                             "verdict": judge_against_original(ours, original, metric, max(len(values), 1))})
    return pd.DataFrame(rows)


def rows(evidence: pd.DataFrame, model: str | None = None, role: Role | str | None = None, metric: str | None = None,
         **setting) -> pd.DataFrame:
    """The rows of one model, role (a Role, or an experiment's params/ name), metric and setting values."""
    mask = pd.Series(True, index=evidence.index)
    if model is not None:
        mask &= evidence["model"] == model
    if isinstance(role, Role):
        mask &= evidence["role"] == role.label
    elif role is not None:
        mask &= evidence["experiment"] == f"{model}/{role}"
    if metric is not None:
        mask &= evidence["metric"] == metric
    return results.matching(evidence[mask], **setting)


def estimate(evidence: pd.DataFrame, model: str, role: Role | str, metric: str = "test_acc", **setting) -> Estimate:
    """Our estimate of one metric for one setting (of a one-setting role, or the values given); a missing one is empty."""
    chosen = rows(evidence, model, role, metric, **setting)
    return chosen["estimate"].iloc[0] if len(chosen) == 1 else Estimate(math.nan, math.nan, 0)


def ranked(chosen: pd.DataFrame) -> pd.DataFrame:
    """Settings (one row each, of one metric) that have finished runs, highest mean first (ties keep their order)."""
    return chosen[chosen["count"] > 0].sort_values("mean", ascending=False, kind="stable")


def missing_seeds(chosen: pd.DataFrame) -> pd.DataFrame:
    """The settings (one row each) some of whose planned seeds have not ended (finished or diverged), with those seeds."""
    settings = chosen.drop_duplicates("label")
    lacking = [tuple(seed for seed in planned if seed not in done and seed not in {seed for seed, _ in diverged})
               for planned, done, diverged in zip(settings["planned_seeds"], settings["seeds"], settings["diverged_at"])]
    return settings.assign(lacking=lacking)[[bool(seeds) for seeds in lacking]]


def pivot(chosen: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """A section's table: a column per setting that ran; rows seeds, then per metric ours, the report's
    number (if it printed one) and the difference with its verdict."""
    table = {}
    for label, setting in chosen.groupby("label", sort=False):
        first = setting.iloc[0]
        if first["finished"] + first["diverged"] == 0:
            continue
        seeds = f"{first['finished']}" + (f" ({first['devices']}: mixed)" if "," in first["devices"] else "")
        if first["diverged"]:
            seeds += "; " + ", ".join(f"seed {seed} diverged at epoch {'?' if pd.isna(epoch) else int(epoch)}"
                                      for seed, epoch in first["diverged_at"]) + ", not counted"
        cells = {("", "seeds"): seeds}
        for row in setting[setting["metric"].isin(metrics)].itertuples():
            printed = bool(row.original_values)
            cells[row.metric, "ours"] = row.estimate.format() if row.finished else "diverged"
            cells[row.metric, "original"] = " / ".join(f"{value:.3f}" for value in row.original_values) or NOT_IN_REPORT
            cells[row.metric, "difference"] = row.verdict.shown() if printed and row.finished else NOT_IN_REPORT
        table[label] = cells
    frame = pd.DataFrame(table)
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["metric", ""]) if len(frame) else frame.index
    return frame


def against_report(evidence: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per model, setting and metric the report printed: its number beside our mean over seeds.

    A setting the report printed in several sections (its best MLP is also a point of each grid) is
    one row; `original` is the mean of its distinct numbers, `original_runs` how many there are. A
    number whose setting is in no experiment of the profile has no runs (`seeds` 0).
    """
    reported = evidence[evidence["original_values"].map(bool)]
    ours = {(setting_key(row), row["metric"]): row for _, row in reported.iterrows()}
    out = []
    for (key, metric), found in report_numbers(reference).items():
        row, values = ours.get((key, metric)), found["values"]
        out.append({**dict(zip(SETTING_KEYS, key)), "metric": metric, "printed_in": found["printed_in"],
                    "original_values": values, "original": sum(values) / len(values), "original_runs": len(values),
                    "seeds": 0 if row is None else row["count"],
                    "estimate": Estimate(math.nan, math.nan, 0) if row is None else row["estimate"],
                    "verdict": None if row is None else row["verdict"]})
    table = pd.DataFrame(out)
    table["reproduced"] = table["estimate"].map(lambda estimate: estimate.mean)
    table["std"] = table["estimate"].map(lambda estimate: estimate.std)
    table["difference"] = table["reproduced"] - table["original"]
    table["size"] = table["verdict"].map(lambda verdict: verdict.size if verdict and verdict.measured else None)
    table["beyond_noise"] = table["verdict"].map(lambda verdict: verdict.beyond_noise if verdict else None).astype(object)
    return table


def by_metric(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per model and metric, over the report's numbers (against_report, each number once): how many there are
    and have runs; of those, how many differ beyond noise, within it or on one seed; how many of ours are
    higher and lower, and the median, smallest and largest difference. Its one sign, if it has one:
    'all higher', 'all lower', 'mixed', or NOT_MEASURED without runs."""
    rows = []
    for (model, metric), group in comparison.groupby(["model", "metric"], sort=False):
        measured = group[group["seeds"] > 0]
        differences, beyond = measured["difference"], measured["beyond_noise"]
        higher, lower = int((differences > 0).sum()), int((differences < 0).sum())
        sign = (NOT_MEASURED if measured.empty else "all higher" if higher == len(measured) else
                "all lower" if lower == len(measured) else "mixed")
        rows.append({"model": model, "metric": metric, "numbers": len(group), "with_runs": len(measured),
                     "beyond": int(beyond.map(lambda value: value is True).sum()),
                     "within": int(beyond.map(lambda value: value is False).sum()), "one_seed": int(beyond.isna().sum()),
                     "higher": higher, "lower": lower, "sign": sign, "median": differences.median(),
                     "smallest": differences.min(), "largest": differences.max()})
    return pd.DataFrame(rows)


def spread_note(chosen: pd.DataFrame) -> str:
    """How these rows' numbers are aggregated over seeds, in words."""
    settings = chosen.drop_duplicates(["experiment", "label"])
    counts = settings.loc[settings["finished"] > 0, "finished"]
    if counts.empty:
        return "no run has finished yet"
    if counts.max() == 1:
        return "one seed per setting, so no seed-to-seed spread can be given"
    if counts.min() == counts.max():
        return f"mean ± standard deviation over {counts.max()} seeds"
    return (f"mean ± standard deviation over the finished seeds of each setting ({counts.min()} to {counts.max()}; "
            "each table gives the count, and one seed has no spread)")


