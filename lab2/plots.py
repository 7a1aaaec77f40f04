"""The figures the book and the run notebook draw, so that chapters stay short."""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

sns.set_theme(context="notebook", style="whitegrid")

SPLIT_COLOURS = {"train": "tab:blue", "validation": "tab:orange"}


def curves_long(history: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch metrics in long form: epoch, split (train/validation), metric (loss/accuracy), value."""
    parts = []
    for split, prefix in (("train", "train"), ("validation", "val")):
        for metric, suffix in (("loss", "loss"), ("accuracy", "acc")):
            part = history[["epoch", f"{prefix}_{suffix}"]].rename(columns={f"{prefix}_{suffix}": "value"})
            parts.append(part.assign(split=split, metric=metric))
    return pd.concat(parts, ignore_index=True)


def plot_curves(history: pd.DataFrame, title: str = "") -> plt.Figure:
    """Loss and accuracy per epoch, training against validation, side by side."""
    long = curves_long(history)
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for axis, metric, label in ((axes[0], "loss", "cross-entropy loss"), (axes[1], "accuracy", "accuracy")):
        sns.lineplot(data=long[long.metric == metric], x="epoch", y="value", hue="split",
                     palette=SPLIT_COLOURS, marker="o", ax=axis)
        axis.set(xlabel="epoch", ylabel=label)
        axis.legend(title=None)
    if title:
        figure.suptitle(title)
    return figure
