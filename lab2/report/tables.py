"""The report's numbers beside ours (their order and counts), the table of every run that the PDF links to, and
the cells several pages share: a setting, a run, a path or a data source in words."""

import html
from pathlib import Path

import pandas as pd

from lab2.core.config import MODEL_LABELS
from lab2.core.data import split_source
from lab2.core.summary import METRICS
from lab2.report import evidence, results
from lab2.report.evidence import SETTING_KEYS
from lab2.report.noise import CLEAR, LARGE, NO_DIFFERENCE, NOT_MEASURED, SIZE_STEPS, SMALL, number

RUN_ANCHOR = "run-"  # + run id: the id of a run's cell in the table of runs (runs_table), which the PDF links to


def reference_table(comparison: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """evidence.against_report for reading: one row per number the report printed, largest disagreements first.

    `printed in` names the report's sections that printed the number (a setting printed in several counts once);
    `original` is the report's number, or the mean of its different values and those values.
    """
    rows = disagreement_order(comparison if metric is None else comparison[comparison["metric"] == metric])
    measured = rows["seeds"] > 0
    table = pd.DataFrame({
        "model": rows["model"].map(MODEL_LABELS), "setting": rows.apply(setting_label, axis=1),
        "metric": rows["metric"].map(lambda name: METRICS[name].label), "printed in": rows["printed_in"],
        "original": [original_text(value, values) for value, values in zip(rows["original"], rows["original_values"])],
        "reproduced": [estimate.format(4) for estimate in rows["estimate"]], "seeds": rows["seeds"],
        "difference": [number(d, 4, sign=True) if has else "" for d, has in zip(rows["difference"], measured)],
        "verdict": [verdict.text if has else "" for verdict, has in zip(rows["verdict"], measured)],
    }).reset_index(drop=True)
    return table.drop(columns="metric") if metric is not None else table


def agreement_by_metric(comparison: pd.DataFrame) -> pd.DataFrame:
    """evidence.by_metric for reading: per model and metric, each number of the report once."""
    found = evidence.by_metric(comparison)
    measured = found["with_runs"] > 0
    signed = lambda value: number(value, 4, sign=True)  # noqa: E731
    return pd.DataFrame({
        "model": found["model"].map(MODEL_LABELS), "metric": found["metric"].map(lambda name: METRICS[name].label),
        "numbers": found["numbers"], "with runs": found["with_runs"], "beyond noise": found["beyond"],
        "within noise": found["within"], "one seed": found["one_seed"],
        "median difference": found["median"].map(signed).where(measured, NOT_MEASURED),
        "range": (found["smallest"].map(signed) + " to " + found["largest"].map(signed)).where(measured, NOT_MEASURED),
        "direction": found["sign"],
    })


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
    if pd.notna(row.get("jpeg_quality")):
        parts.append(f"JPEG {int(row['jpeg_quality'])}")
    if row.get("pixel_noise", 0) and pd.notna(row.get("pixel_noise")):
        parts.append(f"noise {row['pixel_noise']:g}")
    return ", ".join(parts)


def run_link(run_id: str, has_page, pages: str = "runs") -> str:
    """A run id as a link to its page under `pages/` (HTML), or plain when it has none."""
    return f'<a href="{pages}/{run_id}.html">{run_id}</a>' if has_page else run_id


def runs_table(runs: pd.DataFrame, pages: str = "runs") -> pd.DataFrame:
    """Every planned run as HTML cells: id (a link to its page under `pages/`, and a target other pages link to:
    provenance.html#run-<id>; the PDF's run ids link there), setting, status."""
    table = pd.DataFrame({
        "run": [f'<span id="{RUN_ANCHOR}{run_id}">{run_link(run_id, pd.notna(notebook), pages)}</span>'
                for run_id, notebook in zip(runs["run_id"], runs["notebook"])],
        "experiments": runs["experiments"].map("<br>".join),
        "setting": runs.apply(setting_label, axis=1), "epochs": runs["num_epochs"], "seed": runs["seed"],
        "status": runs["status"], "seconds": runs["seconds"].round(1).astype(object).where(runs["seconds"].notna(), ""),
        "device": runs["device_name"].fillna(""),
        # An error message is text, not markup: escaped, since the table is rendered with escape=False.
        "error": runs["error"].fillna("").map(html.escape),
    })
    return table if table["error"].ne("").any() else table.drop(columns="error")


def shown_path(path) -> str:
    """A path as a page may show it: relative to the project, else its last two parts (never the builder's folders)."""
    from lab2 import PROJECT_ROOT

    path = Path(path).resolve()
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(Path(*path.parts[-2:]))


def data_name(source: str) -> str:
    """A data source without the build machine's folders: 'image-folder:/x/cifar10.tar.gz' -> 'image-folder: cifar10.tar.gz'."""
    kind, path = split_source(source)
    return f"{kind}: {Path(path).name}" if kind else Path(path).name


def code_changes(runs: pd.DataFrame) -> dict:
    """Finished runs made by code that differs from the checkout: how many, which files, how many unknown."""
    changed = results.finished(runs)["code_changed"].fillna("unknown")
    unknown = changed == "unknown"
    differing = changed[(changed != "") & ~unknown]
    files = sorted({name for value in differing for name in value.split(",") if name})
    return {"runs": len(differing), "files": ", ".join(files) if files else "no file differs",
            "unknown": int(unknown.sum())}


SIZE_ORDER = (LARGE, CLEAR, SMALL, NO_DIFFERENCE)  # largest disagreements first


def original_text(value: float, values: tuple) -> str:
    """The report's number, or the mean of the different numbers it printed for one setting, with those numbers."""
    if len(values) > 1:
        return f"{value:.4g} (mean of {', '.join(f'{v:.4g}' for v in values)})"
    return f"{value:.4g}"


def disagreement_order(comparison: pd.DataFrame) -> pd.DataFrame:
    """evidence.against_report's rows, largest disagreements first: by size, then beyond noise before noise
    unknown before within, then by the difference in units of its size steps; numbers without runs last."""
    magnitude = [abs(d) / (abs(o) if METRICS[m].kind == "loss" and o else 1) / SIZE_STEPS[METRICS[m].kind][1]
                 for d, o, m in zip(comparison["difference"], comparison["original"], comparison["metric"])]
    beyond = comparison["beyond_noise"].map(lambda value: 1 if value is None or pd.isna(value) else 0 if value else 2)
    keys = pd.DataFrame({
        "unmeasured": comparison["seeds"].eq(0).astype(int),
        "size": comparison["size"].map({size: rank for rank, size in enumerate(SIZE_ORDER)}).fillna(len(SIZE_ORDER)),
        "beyond": beyond, "magnitude": [-m if m == m else 0.0 for m in magnitude],
    }, index=comparison.index)
    order = keys.sort_values(["unmeasured", "size", "beyond", "magnitude"], kind="stable").index
    return comparison.loc[order]


def reference_counts(comparison: pd.DataFrame) -> dict:
    """The 'Against the original' summary, counted from evidence.against_report's rows (each number once).

    numbers = without_runs + beyond + within + one_seed; beyond = large + clear + small (+ none).
    """
    measured = comparison[comparison["seeds"] > 0]
    # astype(bool): with no run measured the mask is empty and untyped, and pandas would take it for column names.
    beyond = measured[measured["beyond_noise"].map(lambda value: value is True).astype(bool)]
    printed_again = comparison["printed_in"].str.contains(",")  # printed in several of the report's sections
    counts = {
        "numbers": len(comparison), "settings": len(comparison.drop_duplicates(SETTING_KEYS)),
        "settings_printed_again": len(comparison[printed_again].drop_duplicates(SETTING_KEYS)),
        "numbers_printed_again": int(printed_again.sum()),
        "with_runs": len(measured), "without_runs": len(comparison) - len(measured),
        "beyond": len(beyond), "within": int(measured["beyond_noise"].map(lambda value: value is False).sum()),
        "one_seed": int(measured["beyond_noise"].isna().sum()),
        "different_values": int((comparison["original_runs"] > 1).sum()),
    }
    counts.update({f"beyond_{size}": int((beyond["size"] == size).sum()) for size in (LARGE, CLEAR, SMALL)})
    return counts
