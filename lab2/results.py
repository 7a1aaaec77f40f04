"""Read a profile's sweep results into tidy DataFrames: the only way the book reads results.

- `load_runs(profile)`: one row per planned run: its config, summary, environment, and
  the experiments it belongs to (status 'missing' if it has not finished).
- `load_epochs(profile)`: one row per run and epoch, with the run's config.
- `by_experiment(runs)`: one row per (run, experiment), for the report's tables.
- `seed_spread(...)`: mean, spread and count over seeds.
- `load_reference()`: every number the original report printed.
"""

import json
from pathlib import Path

import pandas as pd

from lab2.config import FIELD_NAMES
from lab2.data import PROJECT_ROOT

RESULTS_ROOT = PROJECT_ROOT / "results"
REFERENCE_CSV = PROJECT_ROOT / "book" / "data" / "original_report_results.csv"
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "test_loss", "test_acc")
# The config fields that tell runs of one seed apart (seed excluded).
SETTING_FIELDS = tuple(name for name in FIELD_NAMES if name != "seed")


def profile_dir(profile: str, results_root: Path | None = None) -> Path:
    return Path(results_root or RESULTS_ROOT) / profile


def load_manifest(profile: str, results_root: Path | None = None) -> dict:
    path = profile_dir(profile, results_root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"No results for profile {profile!r}: {path} is missing; "
                                f"run `python -m lab2 sweep --profile {profile}` first")
    return json.loads(path.read_text())


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def load_runs(profile: str, results_root: Path | None = None) -> pd.DataFrame:
    """One row per run of the profile's grid, finished or not."""
    manifest = load_manifest(profile, results_root)
    folder = profile_dir(profile, results_root)
    rows = []
    for planned in manifest["runs"]:
        run_dir = folder / planned["run_id"]
        summary = _read_json(run_dir / "summary.json")
        environment = _read_json(run_dir / "env.json")
        rows.append({
            "run_id": planned["run_id"],
            "experiments": planned["experiments"],
            **planned["config"],
            **{key: summary.get(key) for key in METRICS + ("best_epoch", "seconds", "num_parameters", "error")},
            "status": summary.get("status", "missing"),
            "device_name": environment.get("device_name"),
            "precision": environment.get("precision", planned["config"].get("precision")),
            "notebook": str(run_dir / "run.ipynb") if (run_dir / "run.ipynb").is_file() else None,
        })
    runs = pd.DataFrame(rows)
    for column in METRICS + ("seconds",):
        runs[column] = pd.to_numeric(runs[column], errors="coerce")
    return runs


def load_environments(profile: str, results_root: Path | None = None) -> pd.DataFrame:
    """env.json of every finished run, one row each."""
    folder = profile_dir(profile, results_root)
    rows = [{"run_id": p.parent.name, **json.loads(p.read_text())} for p in sorted(folder.glob("*/env.json"))]
    return pd.DataFrame(rows)


def load_epochs(profile: str, results_root: Path | None = None) -> pd.DataFrame:
    """One row per run and epoch (finished runs only), with the run's config columns."""
    runs = load_runs(profile, results_root)
    folder = profile_dir(profile, results_root)
    frames = []
    for run in runs.itertuples():
        metrics = folder / run.run_id / "metrics.csv"
        if run.status in ("ok", "diverged") and metrics.is_file():
            frames.append(pd.read_csv(metrics).assign(run_id=run.run_id))
    if not frames:
        return pd.DataFrame(columns=["run_id", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"])
    epochs = pd.concat(frames, ignore_index=True)
    config_columns = ["run_id", *FIELD_NAMES]
    return epochs.merge(runs[config_columns], on="run_id", how="left")


def by_experiment(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, experiment), with `experiment` without its model prefix."""
    exploded = runs.explode("experiments").rename(columns={"experiments": "experiment_id"})
    exploded["experiment"] = exploded["experiment_id"].str.split("/").str[1]
    return exploded.reset_index(drop=True)


def runs_of(runs: pd.DataFrame, model: str, experiment: str) -> pd.DataFrame:
    """The runs one experiment of one model needs, e.g. runs_of(runs, 'mlp', 'grid_batch_size')."""
    wanted = f"{model}/{experiment}"
    return runs[runs["experiments"].apply(lambda names: wanted in names)].reset_index(drop=True)


def seed_spread(runs: pd.DataFrame, by: list[str], metrics=METRICS) -> pd.DataFrame:
    """Mean, sample standard deviation and number of finished seeds per setting."""
    finished = runs[runs["status"].isin(["ok", "diverged"])]
    grouped = finished.groupby(by, dropna=False)[list(metrics)]
    spread = grouped.agg(["mean", "std", "count"])
    spread.columns = [f"{metric}_{statistic}" for metric, statistic in spread.columns]
    return spread.reset_index()


def load_reference() -> pd.DataFrame:
    """The original report's numbers: model, experiment, its setting, metric, value, note."""
    reference = pd.read_csv(REFERENCE_CSV)
    return reference.rename(columns={"bn": "batchnorm"})
