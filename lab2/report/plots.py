"""What the book's figures share: the curves several chapters draw, one colour per model and split, axis labels
with their units, grid axes and the legend under the panels. A figure that one chapter draws is drawn there.

Curves over several seeds show the mean and a band of ± 1 standard deviation; with one
seed there is no band. Accuracy is a fraction of images classified correctly; loss is the
mean cross-entropy in nats.
"""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lab2.core.config import FIELD_LABELS, FIELD_UNITS, MODEL_LABELS
from lab2.core.summary import METRICS
from lab2.report import results
from lab2.report.experiments import Role

sns.set_theme(context="notebook", style="whitegrid", font_scale=1.1)

SPLIT_COLOURS = {"train": "tab:blue", "validation": "tab:orange"}
SPLIT_DASHES = {"train": "", "validation": (4, 2)}
UNITS = {"loss": "nats", "accuracy": "fraction correct"}  # of a metric, by its kind
LOSS_LABEL = f"cross-entropy loss ({UNITS['loss']})"
ACCURACY_LABEL = f"accuracy ({UNITS['accuracy']})"
LOG_AXES = {"batch_size": 2, "learning_rate": 10}  # grids spaced by factors, drawn on log axes
# One colour per model on every figure.
MODEL_COLOURS = {"MLP": "tab:blue", "CNN": "tab:orange", "CNN, half channels": "tab:green"}
MARKERS_UP_TO = 15  # epochs; beyond this, markers hide the lines
WIDE = (8.5, 3.6)  # inches: two panels across the page
THREE_WIDE = (10.5, 3.6)  # inches: three panels across the page


def axis_label(name: str | None) -> str | None:
    """How an axis or legend names a metric or a setting, with its unit: 'test accuracy (fraction correct)'."""
    if name is None:
        return None
    if name in METRICS:
        return f"{METRICS[name].label} ({UNITS[METRICS[name].kind]})"
    unit = FIELD_UNITS.get(name)
    return FIELD_LABELS.get(name, name) + (f" ({unit})" if unit else "")


def nothing_to_draw(what: str, size=WIDE) -> plt.Figure:
    """A figure whose runs have not finished: says so where the figure would be."""
    figure, axis = plt.subplots(figsize=(size[0], 1.2))
    axis.text(0.5, 0.5, f"{what}: no finished runs yet", ha="center", va="center", color="grey")
    axis.set_axis_off()
    return figure


def curves_long(history: pd.DataFrame, keep=()) -> pd.DataFrame:
    """Per-epoch metrics in long form: epoch, split (train/validation), metric (loss/accuracy), value.

    `keep` names further columns (a setting, the seed) carried along for grouping.
    """
    parts = []
    for split, prefix in (("train", "train"), ("validation", "val")):
        for metric, suffix in (("loss", "loss"), ("accuracy", "acc")):
            column = f"{prefix}_{suffix}"
            part = history[["epoch", *keep, column]].rename(columns={column: "value"})
            parts.append(part.assign(split=split, metric=metric))
    return pd.concat(parts, ignore_index=True)


def labelled(values: pd.Series, field: str | None) -> pd.Series:
    """Values as legend labels: '0.5', '0.0005', 'MLP'."""
    if field == "learning_rate":
        return values.map(lambda v: f"{v:g}")
    if field == "model":
        return values.map(lambda v: MODEL_LABELS.get(v, v))
    return values.astype(str)


def _palette(values: pd.Series, numeric: bool, field: str | None = None):
    """The models' own colours; for a grid an ordered palette (never its near-white end)."""
    if field == "model":
        return MODEL_COLOURS
    count = values.nunique()
    return sns.color_palette("viridis", count + 1)[:count] if numeric else sns.color_palette("tab10", count)


def plot_curves_by(epochs: pd.DataFrame, hue: str | None, title: str = "", hue_label: str | None = None,
                   original: dict[str, float] | None = None) -> plt.Figure:
    """Loss and accuracy per epoch: colour = value of `hue`, solid = train, dashed = validation.

    With hue=None the colour is the split (one setting, possibly several seeds). `original`:
    the report's final numbers of this setting ({'train_loss': ..., 'val_acc': ...}), marked at
    the last epoch.
    """
    if epochs.empty:
        return nothing_to_draw(title or "curves")
    frame = epochs.copy()
    if hue is not None:
        numeric = pd.api.types.is_numeric_dtype(frame[hue]) and frame[hue].dtype != bool
        if hue == "model":
            order = [model for model in MODEL_LABELS if model in set(frame[hue])]
        else:  # grid values in increasing order; anything else (experiments) as given
            order = sorted(frame[hue].unique()) if numeric else list(dict.fromkeys(frame[hue]))
        frame["setting"] = pd.Categorical(labelled(frame[hue], hue), labelled(pd.Series(order), hue).tolist())
        palette = _palette(frame[hue], numeric, hue)
    long = curves_long(frame, keep=["setting"] if hue is not None else [])
    markers = bool(epochs["epoch"].max() <= MARKERS_UP_TO)
    figure, axes = plt.subplots(1, 2, figsize=WIDE, constrained_layout=True)
    for axis, metric, label in ((axes[0], "loss", LOSS_LABEL), (axes[1], "accuracy", ACCURACY_LABEL)):
        data = long[long["metric"] == metric]
        if hue is None:
            sns.lineplot(data=data, x="epoch", y="value", hue="split", palette=SPLIT_COLOURS, errorbar="sd",
                         marker="o" if markers else None, ax=axis)
        else:
            sns.lineplot(data=data, x="epoch", y="value", hue="setting", palette=palette, style="split",
                         dashes=SPLIT_DASHES, errorbar="sd", markers=markers, ax=axis)
        axis.set(xlabel="epoch", ylabel=label)
        integer_epochs(axis)
        _mark_original(axis, metric, original or {}, epochs["epoch"].max())
    title = hue_label or axis_label(hue)
    legend_below(figure, axes, {"setting": f"{title}:" if title else "", "split": "split:"})
    if title:
        figure.suptitle(title)
    return figure


ORIGINAL_STYLE = {"marker": "*", "markersize": 13, "markeredgecolor": "black", "linestyle": "none"}


def _mark_original(axis, metric: str, original: dict[str, float], last_epoch: int) -> None:
    """The report's final training and validation numbers as stars at the last epoch."""
    suffix = "loss" if metric == "loss" else "acc"
    for split, prefix in (("train", "train"), ("validation", "val")):
        value = original.get(f"{prefix}_{suffix}")
        if value is not None:
            axis.plot([last_epoch], [value], color=SPLIT_COLOURS[split], label=f"original report, {split}",
                      **ORIGINAL_STYLE)


def plot_grid_curves(runs: pd.DataFrame, epochs: pd.DataFrame, model: str, experiment: Role | str, title: str = ""):
    """Curves of every setting of one grid experiment, coloured by the grid's value."""
    chosen = results.runs_of(runs, model, experiment)
    field = results.varying_fields(chosen)[0]
    return plot_curves_by(epochs[epochs["run_id"].isin(chosen["run_id"])], hue=field, title=title)


def integer_epochs(axis) -> None:
    axis.xaxis.get_major_locator().set_params(integer=True)


def legend_below(figure, axes, names: dict[str, str], columns: int | None = None) -> None:
    """One legend for all panels, in a row under them, so it neither hides a curve nor narrows a panel: the
    entries of the panel with the most (dropout's has the half-width CNN too), seaborn's group titles (column
    names) renamed by `names`, in at most `columns` columns."""
    handles, labels = max((axis.get_legend_handles_labels() for axis in axes), key=lambda pair: len(pair[1]))
    for axis in axes:
        if axis.get_legend() is not None:
            axis.get_legend().remove()
    labels = [names.get(label, label) for label in labels]
    figure.legend(handles, labels, loc="outside lower center", ncol=max(1, min(len(labels), columns or len(labels))),
                  frameon=False, handlelength=1.8, columnspacing=1.0, fontsize="small")


def grid_axis(axis, field: str, values) -> None:
    """Log scale for grids spaced by factors, with a tick at every value that was run."""
    values = sorted(set(values))
    if field in LOG_AXES:
        axis.set_xscale("log", base=LOG_AXES[field])
    axis.set_xticks(values)
    axis.set_xticklabels([_tick_label(v, field) for v in values], fontsize="small")
    axis.minorticks_off()


def _tick_label(value: float, field: str) -> str:
    """A grid value as a short tick label: learning rates as 1e-4, others as 0.5 or 500."""
    if field == "learning_rate":
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:g}"
