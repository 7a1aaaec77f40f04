"""Why our numbers differ from the report's: the computations of the chapter "Why the numbers differ".

- `lr_rule_firings`: how often the course framework's learning-rate rule, which lab2 does not
  follow, would have fired in our runs.
- `fidelity_runs`: the runs of the data-fidelity experiment (lab2.core.fidelity), each with its level,
  beside the images as read on the same device (the CPU, in fp32).

The data copy itself is measured in lab2.core.data_check; the explanations tested by prediction are
judged in lab2.report.predictions.
"""

import pandas as pd

from lab2.report import predictions, results
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
