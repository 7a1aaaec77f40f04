"""The tables the book's pages show: metrics per setting as 'mean ± std', the original
report beside the reproduction, turning points, and the provenance of every run."""

import html

import pandas as pd

from lab2.report import results
from lab2.report.compare import ABLATIONS, SPREAD_Z, grid_axes, plus_minus
from lab2.report.results import METRICS


def format_spread(spread: pd.DataFrame, by: list[str], metrics=METRICS, digits: int = 3) -> pd.DataFrame:
    """A seed_spread table as 'mean ± std' strings per setting, with the number of seeds."""
    table = spread[by].copy()
    for metric in metrics:
        table[metric] = [plus_minus(m, s, digits) for m, s in zip(spread[f"{metric}_mean"], spread[f"{metric}_std"])]
    table["seeds"] = spread[f"{metrics[0]}_count"].astype(int)
    return table.set_index(by)


def experiment_table(runs: pd.DataFrame, model: str, experiment: str, metrics=METRICS) -> pd.DataFrame:
    """The metrics of one experiment per grid value, mean ± std over seeds."""
    chosen = results.runs_of(runs, model, experiment)
    axes = grid_axes(chosen) or ["model"]
    return format_spread(results.seed_spread(chosen, axes, metrics), axes, metrics)


def ablation_table(runs: pd.DataFrame, model: str, experiments=ABLATIONS, metrics=METRICS) -> pd.DataFrame:
    """The metrics of one-setting experiments (best, no_dropout, no_batchnorm) side by side."""
    rows = []
    for experiment in experiments:
        chosen = results.runs_of(runs, model, experiment).assign(experiment=experiment)
        rows.append(results.seed_spread(chosen, ["experiment"], metrics))
    return format_spread(pd.concat(rows, ignore_index=True), ["experiment"], metrics)


def model_table(best: pd.DataFrame) -> pd.DataFrame:
    """The best MLP and CNN side by side: test accuracy and loss over seeds, size and speed."""
    summary = results.seed_spread(best, ["model"], ["test_acc", "test_loss", "num_parameters", "seconds_per_epoch"])
    table = format_spread(summary, ["model"], ["test_acc", "test_loss"])
    by_model = summary.set_index("model")
    table["parameters"] = by_model["num_parameters_mean"].astype(int)
    table["seconds per epoch"] = by_model["seconds_per_epoch_mean"].round(2)
    table["device"] = best.groupby("model")["device_name"].first()
    return table.reindex(["mlp", "cnn"])


def reference_table(comparison: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """compare_with_reference for reading: one row per number, setting in words, spread as 'yes/no'."""
    rows = comparison if metric is None else comparison[comparison["metric"] == metric]
    setting = rows.apply(setting_label, axis=1)
    within = rows["within_spread"].map(lambda v: "one seed" if v is None else "yes" if v else "no")
    table = pd.DataFrame({
        "model": rows["model"], "experiment": rows["experiment"], "setting": setting, "metric": rows["metric"],
        "original": rows["original"].round(4),
        "reproduced": [plus_minus(m, s, 4) for m, s in zip(rows["reproduced"], rows["std"])],
        "seeds": rows["seeds"], "difference": rows["difference"].round(4),
        f"within ±{SPREAD_Z:g} std": within.where(rows["seeds"] > 0, "not run"),
    })
    return table.drop(columns="metric") if metric is not None else table


def setting_label(row: pd.Series) -> str:
    """A run's (or a reference number's) setting in a few words: 'p=0.5, batch 500, lr 0.001, BN, hidden 1024'.

    Widths are named where the row has them (a reference row does not).
    """
    parts = [f"p={row['dropout_rate']:g}", f"batch {row['batch_size']}", f"lr {row['learning_rate']:g}",
             "BN" if row["batchnorm"] else "no BN"]
    if row["model"] == "cnn":
        parts.append(f"dropout {row['dropout_kind']}")
        parts += [f"{row['channels']} channels"] if "channels" in row else []
    else:
        parts += [f"hidden {row['hidden']}"] if "hidden" in row else []
    return ", ".join(parts)


def turning_table(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Every finished run's validation-loss turning point beside its last epoch, with its setting."""
    turning = results.turning_points(epochs)
    described = runs.assign(setting=runs.apply(setting_label, axis=1),
                            experiments=runs["experiments"].map(", ".join))
    columns = ["run_id", "model", "experiments", "setting", "seed", "best_val_acc", "best_epoch"]
    return described[columns].merge(turning, on="run_id")


def turning_summary(turning: pd.DataFrame) -> pd.DataFrame:
    """Per model: where validation loss turned, and validation accuracy there against the last epoch."""
    grouped = turning.assign(turned=turning["epochs_past_turn"] > 0).groupby("model")
    summary = pd.DataFrame({
        "runs": grouped.size(),
        "turned before the last epoch": grouped["turned"].sum(),
        "median turning epoch": grouped["turning_epoch"].median(),
        "mean epochs past the turn": grouped["epochs_past_turn"].mean().round(1),
        "val_acc at the turn": grouped["val_acc_turn"].mean(),
        "val_acc at the last epoch": grouped["val_acc_last"].mean(),
        "best val_acc": grouped["best_val_acc"].mean(),
        "median epoch of best val_acc": grouped["best_epoch"].median(),
    })
    return summary.reindex([m for m in ("mlp", "cnn") if m in summary.index]).round(3)


def stopping_early_table(runs: pd.DataFrame, epochs: pd.DataFrame, max_epoch: int) -> pd.DataFrame:
    """Per model: best validation accuracy by `max_epoch` and over all epochs (runs longer than max_epoch)."""
    long_runs = epochs[epochs["num_epochs"] > max_epoch]
    best = results.best_within(long_runs, max_epoch).merge(runs[["run_id", "model"]], on="run_id")
    best["lost by stopping early"] = best["best_val_acc_all"] - best["best_val_acc_early"]
    columns = ["best_val_acc_early", "best_val_acc_all", "lost by stopping early"]
    return best.groupby("model")[columns].agg(["mean", "max"]).round(4)


def runs_table(runs: pd.DataFrame, notebooks: str = "runs") -> pd.DataFrame:
    """Every planned run as HTML cells: id (a link to its executed notebook under `notebooks/`), setting, status."""
    link = [f'<a href="{notebooks}/{run_id}.ipynb">{run_id}</a>' if notebook else run_id
            for run_id, notebook in zip(runs["run_id"], runs["notebook"])]
    return pd.DataFrame({
        "run": link, "model": runs["model"], "experiments": runs["experiments"].map("<br>".join),
        "setting": runs.apply(setting_label, axis=1), "epochs": runs["num_epochs"], "seed": runs["seed"],
        "status": runs["status"], "seconds": runs["seconds"].round(1), "device": runs["device_name"].fillna(""),
        # An error message is text, not markup: escaped, since the table is rendered with escape=False.
        "error": runs["error"].fillna("").map(html.escape),
    })


ENVIRONMENT_FIELDS = ("python", "torch", "torchvision", "numpy", "device", "device_name", "precision", "tf32",
                      "cpu_threads", "git_commit", "data_fingerprint")


def environment_table(environments: pd.DataFrame) -> pd.DataFrame:
    """The distinct environments the runs ran in, with how many runs each."""
    fields = [f for f in ENVIRONMENT_FIELDS if f in environments.columns]
    if environments.empty:
        return pd.DataFrame(columns=[*fields, "runs"])
    counted = environments.astype({f: str for f in fields}).groupby(fields).size().rename("runs").reset_index()
    counted.index = [f"environment {number}" for number in range(1, len(counted) + 1)]
    return counted.T.rename_axis("field")
