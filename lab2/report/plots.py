"""The figures the book and the run notebook draw, so that chapters stay short.

Curves over several seeds show the mean and a band of ± 1 standard deviation; with one
seed there is no band. Accuracy is a fraction of images classified correctly; loss is the
mean cross-entropy in nats.
"""

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lab2.core.config import FIELD_LABELS, FIELD_UNITS, MODEL_LABELS, MODELS
from lab2.core.summary import METRICS
from lab2.report import results
from lab2.report.experiments import ABLATIONS, GRIDS, NARROW_DROPOUT_RATE_GRID, Role

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


def _labelled(values: pd.Series, field: str | None) -> pd.Series:
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
        frame["setting"] = pd.Categorical(_labelled(frame[hue], hue), _labelled(pd.Series(order), hue).tolist())
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
        _integer_epochs(axis)
        _mark_original(axis, metric, original or {}, epochs["epoch"].max())
    title = hue_label or axis_label(hue)
    _legend_below(figure, axes, {"setting": f"{title}:" if title else "", "split": "split:"})
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


def plot_experiment_curves(runs: pd.DataFrame, epochs: pd.DataFrame, axes: list[str], title: str = ""):
    """Curves of every setting of any experiment: coloured by its one axis, or by all its axes in words."""
    chosen = epochs[epochs["run_id"].isin(runs["run_id"])]
    if len(axes) <= 1:
        return plot_curves_by(chosen, hue=axes[0] if axes else None, title=title)
    labels = runs.set_index("run_id")[axes].apply(lambda row: ", ".join(f"{a} {row[a]}" for a in axes), axis=1)
    return plot_curves_by(chosen.assign(setting_label=chosen["run_id"].map(labels)), hue="setting_label", title=title,
                          hue_label="setting")


def _integer_epochs(axis) -> None:
    axis.xaxis.get_major_locator().set_params(integer=True)


def _legend_below(figure, axes, names: dict[str, str], columns: int | None = None) -> None:
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


def _grid_axis(axis, field: str, values) -> None:
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


def plot_metric_vs(runs: pd.DataFrame, x: str, hue: str, metric: str = "test_acc", ax=None, title: str = ""):
    """A metric against a grid value, one line per `hue` value, ± 1 std over seeds as bars."""
    data = results.finished(runs).copy()
    if data.empty:
        return nothing_to_draw(title or axis_label(metric))
    data[hue] = _labelled(data[hue], hue)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8), constrained_layout=True)
    sns.lineplot(data=data, x=x, y=metric, hue=hue, style=hue, errorbar="sd", err_style="bars", markers=True,
                 dashes=False, ax=ax)
    _grid_axis(ax, x, data[x])
    ax.set(xlabel=axis_label(x), ylabel=axis_label(metric), title=title)
    ax.legend(title=axis_label(hue))
    return ax.figure


def grid_runs(runs: pd.DataFrame, field: str) -> pd.DataFrame:
    """Both models' one-factor grid over `field` (and the half-width CNN's dropout grid), labelled."""
    parts = [results.runs_of(runs, model, GRIDS[field]).assign(label=name) for model, name in MODEL_LABELS.items()]
    if field == "dropout_rate":
        parts.append(results.runs_of(runs, "cnn", NARROW_DROPOUT_RATE_GRID).assign(label="CNN, half channels"))
    return pd.concat(parts, ignore_index=True)


def plot_hyperparameter_summary(runs: pd.DataFrame, reference: pd.DataFrame | None = None,
                                metric: str = "test_acc") -> plt.Figure:
    """The metric against each grid (dropout rate, batch size, learning rate), one line per model;
    the report's numbers of the same grids as crosses."""
    if results.finished(pd.concat([grid_runs(runs, field) for field in GRIDS])).empty:
        return nothing_to_draw("hyper-parameter grids", THREE_WIDE)
    figure, axes = plt.subplots(1, len(GRIDS), figsize=(THREE_WIDE[0], 4.0), sharey=True, constrained_layout=True)
    for axis, field in zip(axes, GRIDS):
        data = results.finished(grid_runs(runs, field))
        sns.lineplot(data=data, x=field, y=metric, hue="label", style="label", errorbar="sd", err_style="bars",
                     markers=True, dashes=False, palette=MODEL_COLOURS, ax=axis)
        if reference is not None:
            printed = reference[(reference["role"] == GRIDS[field].label) & (reference["metric"] == metric)]
            for model, group in printed.groupby("model"):
                axis.plot(group[field], group["value"], "x", color=MODEL_COLOURS[MODEL_LABELS[model]], markersize=9,
                          markeredgewidth=2, label=f"{MODEL_LABELS[model]}, original report")
        _grid_axis(axis, field, data[field])
        axis.set(xlabel=axis_label(field), ylabel=axis_label(metric))
    _legend_below(figure, axes, {})
    return figure


def ablation_labels(runs: pd.DataFrame, seed: int | None = None) -> dict[str, str]:
    """run id -> 'MLP, without dropout' for both models' one-setting experiments (ABLATIONS), of one seed."""
    finished = results.finished(runs)
    seed = finished["seed"].min() if seed is None else seed
    labels = {}
    for model in MODELS:
        for role in ABLATIONS:
            chosen = results.runs_of(finished[finished["seed"] == seed], model, role)
            if len(chosen):
                run_id = chosen["run_id"].iloc[0]
                # The CNN's best has no dropout: one run, two names.
                labels[run_id] = (f"{labels[run_id]} = {role.label}" if run_id in labels
                                  else f"{MODEL_LABELS[model]}, {role.label}")
    return labels


def plot_turning_points(epochs: pd.DataFrame, turning: pd.DataFrame, labels: dict[str, str], columns: int = 3):
    """Training and validation loss of each run in `labels`, the validation minimum marked."""
    if not labels:
        return nothing_to_draw("turning points", THREE_WIDE)
    rows = -(-len(labels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(THREE_WIDE[0], 3.2 * rows), squeeze=False, constrained_layout=True)
    for axis, (run_id, label) in zip(axes.flat, labels.items()):
        history = epochs[epochs["run_id"] == run_id].sort_values("epoch")
        point = turning[turning["run_id"] == run_id].iloc[0]
        axis.plot(history["epoch"], history["train_loss"], color=SPLIT_COLOURS["train"], label="train")
        axis.plot(history["epoch"], history["val_loss"], color=SPLIT_COLOURS["validation"], label="validation")
        axis.axvline(point["turning_epoch"], color="grey", linestyle=":", label="lowest validation loss")
        axis.plot(point["turning_epoch"], point["val_loss_turn"], "o", color=SPLIT_COLOURS["validation"])
        axis.set(title=label, xlabel="epoch", ylabel=LOSS_LABEL)
        _integer_epochs(axis)
    for axis in list(axes.flat)[len(labels):]:
        axis.set_visible(False)
    axes.flat[0].legend(loc="best", fontsize="small")
    return figure


def plot_model_comparison(runs: pd.DataFrame) -> plt.Figure:
    """Test accuracy, parameter count and seconds per epoch of each model's best setting."""
    if runs.empty:
        return nothing_to_draw("best settings", THREE_WIDE)
    data = runs.assign(model=_labelled(runs["model"], "model"))
    panels = (("test_acc", axis_label("test_acc")), ("num_parameters", "trainable parameters (count)"),
              ("seconds_per_epoch", "seconds per epoch (s)"))
    figure, axes = plt.subplots(1, len(panels), figsize=THREE_WIDE, constrained_layout=True)
    for axis, (column, label) in zip(axes, panels):
        sns.barplot(data=data, x="model", y=column, hue="model", errorbar="sd", palette=MODEL_COLOURS, ax=axis,
                    legend=False)
        axis.set(xlabel=None, ylabel=label)
    return figure


def plot_against_reference(comparison: pd.DataFrame, metric: str = "test_acc") -> plt.Figure:
    """Each reproduced number against the original's (the diagonal is perfect agreement)."""
    data = comparison[(comparison["metric"] == metric) & comparison["reproduced"].notna()]
    if data.empty:
        return nothing_to_draw("the report's numbers", (5.5, 5))
    data = data.assign(model=_labelled(data["model"], "model"))
    figure, axis = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    for model, group in data.groupby("model"):
        axis.errorbar(group["original"], group["reproduced"], yerr=group["std"].fillna(0.0), fmt="o",
                      color=MODEL_COLOURS[model], label=model, capsize=3)
    low = min(data["original"].min(), data["reproduced"].min())
    high = max(data["original"].max(), data["reproduced"].max())
    margin = 0.05 * (high - low or 1.0)
    axis.plot([low - margin, high + margin], [low - margin, high + margin], color="grey", linestyle=":",
              label="reproduced = original")
    name = axis_label(metric)
    axis.set(xlabel=f"original report: {name}", ylabel=f"reproduced: {name}")
    axis.legend(loc="best")
    return figure


def plot_turning_epochs(turning: pd.DataFrame) -> plt.Figure:
    """How many runs reached their lowest validation loss at each epoch, per model."""
    if turning.empty:
        return nothing_to_draw("turning points", (7, 3.4))
    data = turning.assign(model=_labelled(turning["model"], "model"))
    last = int(data["last_epoch"].max())
    figure, axis = plt.subplots(figsize=(7, 3.4), constrained_layout=True)
    sns.histplot(data=data, x="turning_epoch", hue="model", multiple="dodge", shrink=0.8, palette=MODEL_COLOURS,
                 hue_order=[name for name in MODEL_COLOURS if name in set(data["model"])],
                 bins=[edge + 0.5 for edge in range(0, last + 1)], ax=axis)
    axis.set(xlabel="epoch of lowest validation loss", ylabel="runs (count)", xlim=(0.5, last + 0.5))
    _integer_epochs(axis)
    return figure


FIDELITY_PANELS = (("train_loss", "training loss (nats)"), ("val_loss", "validation loss (nats)"),
                   ("test_acc", axis_label("test_acc")))


def plot_fidelity(chosen: pd.DataFrame, original: dict[tuple[float, str], float]) -> plt.Figure:
    """Metrics against the pixel error of each fidelity level: colour = dropout rate, marker = JPEG
    or noise (both start at the images as read, error 0); dashed lines: the report's numbers.

    chosen: why.fidelity_runs (finished); original: {(dropout_rate, metric): the report's value}.
    """
    if chosen.empty:
        return nothing_to_draw("fidelity experiment", THREE_WIDE)
    # The images as read belong to both lines: the JPEG line and the noise line start there.
    as_read = chosen[chosen["kind"] == "as read"]
    lines = pd.concat([chosen[chosen["kind"] != "as read"], as_read.assign(kind="JPEG"), as_read.assign(kind="noise")])
    lines = lines.assign(dropout=lines["dropout_rate"].map(lambda rate: f"p = {rate:g}"))
    rates = sorted(lines["dropout_rate"].unique(), reverse=True)
    palette = dict(zip([f"p = {rate:g}" for rate in rates], sns.color_palette("tab10", len(rates))))
    figure, axes = plt.subplots(1, len(FIDELITY_PANELS), figsize=(THREE_WIDE[0], 4.0), constrained_layout=True)
    for axis, (metric, label) in zip(axes, FIDELITY_PANELS):
        sns.lineplot(data=lines, x="pixel_rmse", y=metric, hue="dropout", style="kind", markers=True, dashes=False,
                     errorbar="sd", err_style="bars", palette=palette, ax=axis)
        for rate in rates:
            value = original.get((rate, metric))
            if value is not None:
                axis.axhline(value, color=palette[f"p = {rate:g}"], linestyle="--", linewidth=1,
                             label=f"original report, p = {rate:g}")
        axis.set(xlabel="pixel error (RMS grey levels)", ylabel=label)
    _legend_below(figure, axes, {"dropout": "dropout:", "kind": "degradation:"}, columns=5)
    return figure
