"""Why our numbers differ from the report's: the computations of the chapter "Why the numbers differ".

- `lr_rule_firings`: how often the course framework's learning-rate rule, which lab2 does not
  follow, would have fired in our runs.
- `fidelity_runs` / `fidelity_table` / `fidelity_differences`: the data-fidelity experiment
  (lab2.core.fidelity) per level, with the pixel error each level causes, against the images as
  read on the same device (the CPU, in fp32).

The data copy itself is measured in lab2.core.data_check; the explanations tested by prediction are
judged in lab2.report.predictions.
"""

import numpy as np
import pandas as pd

from lab2.core.summary import METRICS
from lab2.report import predictions, results
from lab2.report.noise import Estimate, judge_difference, plus_minus
from lab2.report.experiments import JPEG_QUALITY_GRID, PIXEL_NOISE_GRID

# The course framework's rule: lr *= LR_DECAY when an epoch's training loss exceeds the
# largest of the LR_WINDOW epochs before it.
LR_DECAY, LR_WINDOW = 0.9995, 3


def lr_rule_firings(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per finished run: the epochs at which the framework's rule would have lowered the learning
    rate, and the factor it would have reached by the last epoch."""
    rows = []
    for run_id, history in epochs.sort_values("epoch").groupby("run_id"):
        losses = history["train_loss"].to_numpy()
        fired = [int(epoch) for index, epoch in enumerate(history["epoch"])
                 if index >= LR_WINDOW and losses[index] > losses[index - LR_WINDOW:index].max()]
        rows.append({"run_id": run_id, "firings": len(fired), "factor": LR_DECAY ** len(fired)})
    return pd.DataFrame(rows, columns=["run_id", "firings", "factor"])


def fidelity_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The MLP runs of the fidelity experiment and, at the level 'as read', the same settings as read
    on the device the fidelity runs used (the CPU, in fp32), each with `level` and `kind`."""
    jpeg = results.runs_of(runs, "mlp", JPEG_QUALITY_GRID)
    noise = results.runs_of(runs, "mlp", PIXEL_NOISE_GRID)
    rates = sorted(set(jpeg["dropout_rate"]) | set(noise["dropout_rate"]), reverse=True)
    best = predictions.best_mlp_setting(runs)
    as_read = [results.on_cpu(predictions.select(runs, **{**predictions.AS_READ, **best, "dropout_rate": rate,
                                                          "precision": "fp32"})) for rate in rates]
    parts = [part.assign(kind="as read", level="as read") for part in as_read]
    parts.append(jpeg.assign(kind="JPEG", level=[f"JPEG {q:.0f}" for q in jpeg["jpeg_quality"]]))
    parts.append(noise.assign(kind="noise", level=[f"noise {n:g}" for n in noise["pixel_noise"]]))
    return pd.concat(parts, ignore_index=True).drop_duplicates(["run_id", "kind"]).reset_index(drop=True)


def fidelity_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dropout rate and fidelity level: pixel error and each metric as mean ± std over seeds."""
    chosen = results.finished(fidelity_runs(runs))
    rows = []
    for (rate, level), group in chosen.groupby(["dropout_rate", "level"], sort=False):
        row = {"dropout rate": f"{rate:g}", "level": level, "seeds": len(group),
               "pixel error (RMS grey levels)": f"{group['pixel_rmse'].mean():.2f}"}
        for metric in predictions.COMPARED_METRICS:
            estimate = Estimate.of(group[metric])
            row[METRICS[metric].label] = plus_minus(estimate.mean, estimate.std)
        rows.append(row)
    return pd.DataFrame(rows)


def fidelity_differences(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dropout rate and degraded level: each metric minus the images as read on the same CPU, judged by the noise rule."""
    chosen = results.finished(fidelity_runs(runs))
    rows = []
    for rate, at_rate in chosen.groupby("dropout_rate", sort=False):
        as_read = at_rate[at_rate["kind"] == "as read"]
        for level, group in at_rate[at_rate["kind"] != "as read"].groupby("level", sort=False):
            row = {"dropout rate": f"{rate:g}", "level": level}
            for metric in predictions.COMPARED_METRICS:
                verdict = judge_difference(Estimate.of(group[metric]), Estimate.of(as_read[metric]), metric)
                row[METRICS[metric].label] = verdict.shown()
            rows.append(row)
    return pd.DataFrame(rows)


def level_direction(runs: pd.DataFrame, level: str, metric: str = "train_loss") -> float:
    """A degraded level's mean `metric` minus the images as read on the same CPU, at the best setting (nan if missing)."""
    chosen = results.finished(fidelity_runs(runs))
    best = results.matching(chosen, dropout_rate=float(predictions.best_mlp_setting(runs).get("dropout_rate", np.nan)))
    return best.loc[best["level"] == level, metric].mean() - best.loc[best["kind"] == "as read", metric].mean()


def conclusion_facts(lost, variants, comparison: pd.DataFrame) -> dict:
    """What the chapter's conclusion says, from the judged predictions (lab2.report.predictions) and the
    comparison with the report: which settings the noise reproduced, what it cost, what each BatchNorm
    variant showed, and the CNN's test accuracy against the report's."""
    by_setting = lost.prediction.groupby("setting", sort=False)["outcome"] if len(lost.prediction) else None
    reproduced = [setting for setting, outcomes in by_setting if (outcomes == predictions.HELD).all()] if by_setting else []
    failed = {setting: [METRICS[metric].label for metric, outcome in
                        zip(lost.prediction.loc[outcomes.index, "metric"], outcomes) if outcome == predictions.FAILED]
              for setting, outcomes in by_setting} if by_setting else {}
    cost = lost.cost["verdict"].map(lambda verdict: verdict.difference) if len(lost.cost) else pd.Series(dtype=float)
    cnn = comparison[(comparison["model"] == "cnn") & (comparison["metric"] == "test_acc") & (comparison["seeds"] > 0)]
    return {
        "settings": lost.prediction["setting"].nunique() if len(lost.prediction) else 0,
        "reproduced": reproduced, "failed": {setting: metrics for setting, metrics in failed.items() if metrics},
        "waiting": lost.counts.get(predictions.NOT_JUDGED, 0),
        "cost_low": cost.min(), "cost_high": cost.max(),
        "variants": {variant: {**counts, "explains": [batch for batch, agrees in variants.explains[variant].items()
                                                      if agrees is True]}
                     for variant, counts in variants.counts.items()},
        "cnn_settings": len(cnn), "cnn_below": int((cnn["difference"] < 0).sum()),
        "cnn_low": cnn["difference"].min(), "cnn_high": cnn["difference"].max(),
        "cnn_seeds": int(cnn["seeds"].max()) if len(cnn) else 0,
    }
