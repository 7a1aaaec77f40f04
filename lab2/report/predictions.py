"""The predictions of "Why the numbers differ", judged on the runs.

book/data/predictions.yaml states them; it was committed before the runs that test them, so
nothing here chooses what to predict: this module only looks up runs and applies the book's
noise rule (lab2.report.noise).

- `lost_detail`: the noise level calibrated on the best setting alone, then, at that level,
  each of the other settings against the report's numbers.
- `batchnorm_variants`: each BatchNorm variant against standard BatchNorm on the same device,
  per batch size, against what it predicted; and against the report's numbers.
- `device_effect`: the same setting as read on the H200 (tf32) and on the CPU (fp32).

Runs are found by their settings, not by experiment names: a prediction names settings as
changes from the MLP's best setting.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from lab2 import PROJECT_ROOT
from lab2.core.summary import METRICS
from lab2.report import results
from lab2.report.evidence import devices, report_numbers, setting_key, value_name, value_words
from lab2.report.experiments import BASELINE
from lab2.report.noise import (NO_DIFFERENCE, NOT_MEASURED, Estimate, Verdict, agrees, judge_against_original,
                               judge_difference, number)

PREDICTIONS_FILE = PROJECT_ROOT / "book" / "data" / "predictions.yaml"
HELD, FAILED, NOT_JUDGED = "held", "did not hold", "not judged"
# The setting a prediction changes, and how runs leave the report's protocol on purpose.
SETTING = ("dropout_rate", "batch_size", "learning_rate", "batchnorm")
AS_READ = {"jpeg_quality": None, "pixel_noise": 0.0, "batchnorm_variant": "standard"}
STANDARD = "standard"
# The numbers of a run these comparisons read: its last epoch's four, and test accuracy.
COMPARED_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc")


def read(path: Path = PREDICTIONS_FILE) -> dict:
    return yaml.safe_load(Path(path).read_text())


def outcome(held: bool | None) -> str:
    return NOT_JUDGED if held is None else HELD if held else FAILED


def best_mlp_setting(runs: pd.DataFrame) -> dict:
    """The MLP's best setting (its baseline in params/), as the fields a prediction changes."""
    best = results.runs_of(runs, "mlp", BASELINE)
    return {field: best[field].iloc[0].item() if hasattr(best[field].iloc[0], "item") else best[field].iloc[0]
            for field in SETTING} if len(best) else {}


def select(runs: pd.DataFrame, **values) -> pd.DataFrame:
    """The MLP runs (finished or not) whose fields have these values (results.matching)."""
    return results.matching(runs[runs["model"] == "mlp"], **values)


def setting_words(changes: dict) -> str:
    """{'batch_size': 50} -> 'batch size 50'; {'batchnorm': False} -> 'without BatchNorm'."""
    return ", ".join(value_words(field, value) for field, value in changes.items()) or "the best setting"


def original(printed: dict, setting: dict, metric: str) -> tuple[float, int]:
    """The report's number for an MLP setting and metric (the mean of its distinct printings) and how many runs
    it is; `printed` is evidence.report_numbers of the report's numbers."""
    found = printed.get((setting_key({"model": "mlp", "dropout_kind": None, **setting}), metric), {}).get("values", ())
    return (sum(found) / len(found), len(found)) if found else (math.nan, 0)


def _against_report(chosen: pd.DataFrame, printed: dict, setting: dict, metric: str) -> dict:
    ours = Estimate.of(results.finished(chosen)[metric])
    value, printings = original(printed, setting, metric)
    verdict = judge_against_original(ours, value, metric, max(printings, 1))
    return {"ours": ours, "original": value, "verdict": verdict, "agrees": agrees(verdict)}


@dataclass
class LostDetail:
    level: float | None  # the calibrated noise level (grey levels); None when no level agrees yet
    calibration: pd.DataFrame  # per level and metric: the best setting with noise against the report
    prediction: pd.DataFrame  # per setting and metric: as read, with noise, the report's, the outcome
    cost: pd.DataFrame  # the same for test accuracy, which is not predicted, at the best setting and the others
    counts: dict  # held, did not hold, not judged, total


def lost_detail(runs: pd.DataFrame, reference: pd.DataFrame, spec: dict | None = None) -> LostDetail:
    spec, printed = (spec or read())["lost_detail"], report_numbers(reference)
    best = best_mlp_setting(runs)
    noisy = select(runs, jpeg_quality=None, batchnorm_variant=STANDARD, **best)
    levels = sorted(level for level in noisy["pixel_noise"].unique() if level > 0)
    rows, level = [], None
    for candidate in levels:
        chosen = select(noisy, pixel_noise=float(candidate))
        found = [{"pixel noise": candidate, "metric": metric, **_against_report(chosen, printed, best, metric)}
                 for metric in spec["calibration_metrics"]]
        rows += found
        if level is None and all(row["agrees"] for row in found):
            level = float(candidate)
    calibration = _frame(rows)

    prediction = _frame(_with_noise(runs, printed, best, spec["settings"], spec["metrics"], level))
    # What the noise costs: test accuracy is not predicted (noise carries no signal, so it costs some).
    cost = _frame(_with_noise(runs, printed, best, [{}, *spec["settings"]], ["test_acc"], level))
    return LostDetail(level, calibration, prediction, cost, _counts(prediction["outcome"]) if len(prediction) else {})


def _with_noise(runs, printed: dict, best: dict, settings: list[dict], metrics, level: float | None) -> list[dict]:
    """Per setting and metric: our runs as read (the report's protocol, any device; with the devices they ran on) and
    with noise at `level`."""
    rows = []
    for changes in settings:
        setting = {**best, **changes}
        as_read = results.finished(select(runs, **{**AS_READ, **setting, "precision": "tf32"}))
        with_noise = select(runs, **{**AS_READ, **setting, "pixel_noise": level}) if level else runs.iloc[:0]
        where = devices(as_read) or NOT_MEASURED
        for metric in metrics:
            rows.append({"setting": setting_words(changes), "metric": metric,
                         "as read": f"{Estimate.of(as_read[metric]).format()} ({where})",
                         **_against_report(with_noise, printed, setting, metric)})
    return rows


def _frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as a table, each with its outcome."""
    frame = pd.DataFrame(rows)
    return frame.assign(outcome=frame["agrees"].map(outcome)) if len(frame) else frame


def _counts(outcomes: pd.Series) -> dict:
    """How many of these outcomes (HELD, FAILED, NOT_JUDGED) there are of each, and in all."""
    return {**{outcome: int((outcomes == outcome).sum()) for outcome in (HELD, FAILED, NOT_JUDGED)}, "total": len(outcomes)}


def predicted_held(prediction: str, verdict: Verdict) -> bool | None:
    """Whether a measured difference is what 'same', or '<higher|lower> <size>', predicted.

    'same' holds when the difference is none, or within noise; a direction holds when the
    difference has that sign beyond noise and the size the prediction gave.
    """
    if not verdict.measured:
        return None
    if prediction == "same":
        return True if verdict.size == NO_DIFFERENCE else None if verdict.beyond_noise is None else not verdict.beyond_noise
    direction, size = prediction.split()
    if verdict.beyond_noise is None:
        return None
    sign_held = (verdict.difference > 0) == (direction == "higher")
    return bool(verdict.beyond_noise and sign_held and verdict.size == size)


@dataclass
class Variants:
    table: pd.DataFrame  # per variant, batch size and metric: standard, variant, report; predicted, measured, outcome
    counts: dict  # {variant: {held, did not hold, not judged, total}} of its predicted changes
    explains: dict  # {variant: {batch size: True/False/None}}: all its training numbers agree with the report's

    def agreement(self, variant: str) -> dict:
        """Of a variant's batch sizes: at how many its training numbers agree with the report's (explains), at how
        many that waits for more seeds (explains_waiting), and how many there are (batch_sizes)."""
        verdicts = list(self.explains[variant].values())
        return {"explains": sum(agrees is True for agrees in verdicts),
                "explains_waiting": sum(agrees is None for agrees in verdicts), "batch_sizes": len(verdicts)}


def batchnorm_variants(runs: pd.DataFrame, reference: pd.DataFrame, spec: dict | None = None) -> Variants:
    spec, printed = (spec or read())["batchnorm_variants"], report_numbers(reference)
    best = best_mlp_setting(runs)
    rows = []
    for variant, by_batch in ((name, value) for name, value in spec.items() if name != "metrics"):
        for batch_size, predicted in by_batch.items():
            setting = {**best, "batch_size": int(batch_size)}
            same_device = {**AS_READ, **setting, "precision": "fp32"}
            standard = results.on_cpu(select(runs, **same_device))
            changed = results.on_cpu(select(runs, **{**same_device, "batchnorm_variant": variant}))
            # Variant against standard on the seeds both have finished: a seed's weights, batches and dropout
            # masks are the same on both sides, so what differs is the layer (bit for bit where training never
            # reads what the variant changes).
            ended = [results.finished(side) for side in (changed, standard)]
            seeds = set(ended[0]["seed"]) & set(ended[1]["seed"])
            paired = [side[side["seed"].isin(seeds)] for side in ended]
            for metric in spec["metrics"]:
                measured = judge_difference(*(Estimate.of(side[metric]) for side in paired), metric)
                judged = _against_report(paired[0], printed, setting, metric)  # the variant on the paired seeds too
                rows.append({"variant": variant, "batch size": int(batch_size), "metric": metric,
                             "standard": Estimate.of(paired[1][metric]), "variant value": judged["ours"],
                             "predicted": predicted[metric], "measured": measured,
                             "prediction": outcome(predicted_held(predicted[metric], measured)),
                             "original": judged["original"], "against the report": judged["verdict"],
                             "agrees": judged["agrees"]})
    table = pd.DataFrame(rows)
    counts, explains = {}, {}
    for variant, group in table.groupby("variant", sort=False) if len(table) else ():
        counts[variant] = _counts(group["prediction"])
        explains[variant] = {batch: _all(part["agrees"]) for batch, part in group.groupby("batch size")}
    return Variants(table, counts, explains)


def _all(values: pd.Series) -> bool | None:
    """True when every value is True, False when one is False, None otherwise (something not judged)."""
    if (values == False).any():  # noqa: E712 - values are True, False or None
        return False
    return True if values.map(lambda value: value is True).all() else None


def device_effect(runs: pd.DataFrame, metrics=COMPARED_METRICS, dropout_rates=(0.5, 0.0)) -> pd.DataFrame:
    """The best setting and the one without dropout as read: the H200 in tf32 against the CPU in fp32."""
    best = best_mlp_setting(runs)
    rows = []
    for rate in dropout_rates:
        setting = {**AS_READ, **best, "dropout_rate": rate}
        gpu = results.finished(results.on_gpu(select(runs, **setting, precision="tf32")))
        cpu = results.finished(results.on_cpu(select(runs, **setting, precision="fp32")))
        for metric in metrics:
            a, b = Estimate.of(cpu[metric]), Estimate.of(gpu[metric])
            rows.append({"dropout_rate": rate, "metric": metric, "H200, tf32": b, "CPU, fp32": a,
                         "verdict": judge_difference(a, b, metric)})
    return pd.DataFrame(rows)


def shown(frame: pd.DataFrame, headings: dict[str, str]) -> pd.DataFrame:
    """`frame`'s columns under the chapter's headings ({column: heading}), each value as the chapter prints it: an
    estimate as mean ± std, a verdict as its difference and size, the report's number to three decimals, a
    metric by its label, a BatchNorm variant by its name, an agreement as yes, no or not judged."""
    def text(column: str, value):
        if isinstance(value, Estimate):
            return value.format()
        if isinstance(value, Verdict):
            return value.shown()
        if column == "metric":
            return METRICS[value].label
        if column == "original":
            return number(value)
        if column == "variant":
            return value_name("batchnorm_variant", value)
        if column == "agrees":
            return {True: "yes", False: "no"}.get(value, NOT_JUDGED)
        return value
    return pd.DataFrame({heading: [text(column, value) for value in frame[column]] for column, heading in headings.items()})
