"""Read a profile's sweep results into tidy DataFrames, the only way the book reads results
(`load_results`: the runs, their epochs and environments, each run folder read once; `load_reference`:
every number the original report printed), and the filters and per-run quantities the pages take of them."""

import os
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from lab2 import PROJECT_ROOT
from lab2.core.config import FIELD_NAMES, FIELD_TYPES, RunConfig
from lab2.core.data import VALIDATION_FRACTION
from lab2.core.summary import DIVERGED, FINISHED_STATUSES, OK
from lab2.core.summary import METRICS as METRIC_TABLE
from lab2.report.experiments import DEPARTURES, REPORTED, Role, shown_roles
from lab2.runs import record
from lab2.runs.fingerprint import project_path
from lab2.runs.manifest import load_manifest
from lab2.runs.record import profile_dir

REFERENCE_CSV = PROJECT_ROOT / "book" / "data" / "original_report_results.csv"
METRICS = tuple(METRIC_TABLE)  # the metric names, in the report's order
# The config fields that tell runs of one seed apart (seed excluded).
SETTING_FIELDS = tuple(name for name in FIELD_NAMES if name != "seed")
# The book's pages read these; `python -m lab2 book` sets them for the build.
PROFILE_ENV = "LAB2_PROFILE"
RESULTS_ENV = "LAB2_RESULTS"
DEFAULT_BOOK_PROFILE = "quick"
# CIFAR-10's training images less the validation split: what a run with train_size unset trains on.
TRAINING_IMAGES = round(50_000 * (1 - VALIDATION_FRACTION))
FULL_PROFILE = "full"  # the report's protocol; its results are committed, and every book reads them


def selected() -> tuple[str, Path | None]:
    """The profile ($LAB2_PROFILE, default quick) and results root ($LAB2_RESULTS) the book shows."""
    root = os.environ.get(RESULTS_ENV)
    return os.environ.get(PROFILE_ENV) or DEFAULT_BOOK_PROFILE, Path(root) if root else None


def _code_changed(run: record.RunRecord) -> str:
    """The fingerprinted files that differ from the checkout, comma-separated; 'unknown' if none were recorded."""
    changed = record.run_code_changes(run)
    return "unknown" if changed is None else ", ".join(changed)


class Results(NamedTuple):
    runs: pd.DataFrame  # one row per run of the profile's grid, finished or not
    epochs: pd.DataFrame  # one row per finished run and epoch, with the run's config columns
    environments: pd.DataFrame  # env.json of every finished run, one row each


def load_results(profile: str, results_root: Path | None = None) -> Results:
    """A profile's runs, epochs and environments, each run folder read once.

    status: ok, diverged, failed, missing, or corrupt (a file of its folder cannot be read or
    disagrees with the others, record.read_run; `corrupt_path` names the file, `damage` what is
    wrong, and nothing else of it is read). code_changed: the files of the code that produced
    the run that now differ from the checkout ("" none, "unknown" if the run recorded none).
    """
    manifest = load_manifest(profile, results_root)
    folder = profile_dir(profile, results_root)
    labels = shown_roles(manifest["experiments"], load_reference())
    rows, histories, environments = [], [], []
    for planned in manifest["runs"]:
        run = record.read_run(folder / planned["run_id"])
        if run.status in FINISHED_STATUSES:
            environments.append({"run_id": planned["run_id"], **run.environment})
            if run.epochs:
                histories.append(pd.DataFrame(run.epochs, columns=list(record.METRIC_COLUMNS))
                                 .assign(run_id=planned["run_id"]))
        status, summary, environment = run.status, run.summary if run.status != record.CORRUPT else {}, run.environment
        rows.append({
            "run_id": planned["run_id"],
            "experiments": planned["experiments"],
            # Aligned with experiments: the role each plays in a chapter, None for the appendix.
            "roles": [labels.get(experiment) for experiment in planned["experiments"]],
            # Fields added after a manifest was written read as their defaults.
            **RunConfig().to_dict(), **planned["config"],
            **{key: summary.get(key) for key in METRICS + ("best_epoch", "seconds", "num_parameters", "error",
                                                           "diverged_epoch")},
            "status": status,
            "corrupt_path": project_path(run.damaged_file) if status == record.CORRUPT else None,
            "damage": run.damage,
            "code_changed": _code_changed(run),
            "device": environment.get("device"),  # cpu, cuda or cuda:N: the kind of device it ran on
            "device_name": environment.get("device_name"),
            # What the device computed in (a CPU always fp32): the setting `precision` stays the
            # config's, so that runs of one setting from a GPU and a CPU stay one setting.
            "used_precision": environment.get("precision"),
            # RMS pixel difference of the training images from the data as read (lab2.core.fidelity): 0 as read.
            "pixel_rmse": environment.get("fidelity", {}).get("train_pixel_rmse", 0.0) if environment else None,
            "notebook": str(run.notebook) if run.notebook else None,
        })
    runs = pd.DataFrame(rows)
    for column in METRICS + ("seconds",):
        runs[column] = pd.to_numeric(runs[column], errors="coerce")
    config_columns = ["run_id", *FIELD_NAMES]
    if histories:
        epochs = pd.concat(histories, ignore_index=True).merge(runs[config_columns], on="run_id", how="left")
    else:  # nothing has finished: no rows, every column a page may ask for
        epochs = pd.DataFrame(columns=[*config_columns, *record.METRIC_COLUMNS])
    return Results(runs, epochs, pd.DataFrame(environments))


def run_config(run: pd.Series) -> RunConfig:
    """The RunConfig of one row of load_results' runs."""
    values = {}
    for name in FIELD_NAMES:
        value = run[name]
        # pandas holds a missing train_size as NaN and integers as numpy scalars.
        value = None if pd.isna(value) else value.item() if hasattr(value, "item") else value
        # A column with missing values (jpeg_quality) holds its integers as floats.
        if isinstance(value, float) and FIELD_TYPES[name] in (int, int | None):
            value = int(value)
        values[name] = value
    return RunConfig.from_dict(values)


def by_experiment(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, experiment): `experiment` its params/ name, `role` the label of its role (or None)."""
    exploded = runs.explode(["experiments", "roles"]).rename(columns={"experiments": "experiment_id", "roles": "role"})
    exploded["experiment"] = exploded["experiment_id"].str.split("/").str[1]
    # explode turns a None role (an appendix experiment) into NaN, which reads as a label; keep it None.
    exploded["role"] = exploded["role"].astype(object).where(exploded["role"].notna(), None)
    return exploded.reset_index(drop=True)


def runs_of(runs: pd.DataFrame, model: str, experiment: Role | str) -> pd.DataFrame:
    """The runs of one experiment of one model: a role in a chapter, e.g.
    runs_of(runs, 'mlp', BATCH_SIZE_GRID), or a params/ name (the appendix's experiments)."""
    if isinstance(experiment, Role):
        member = runs["roles"].apply(lambda labels: experiment.label in labels) & (runs["model"] == model)
    else:
        member = runs["experiments"].apply(lambda names: f"{model}/{experiment}" in names)
    return runs[member].reset_index(drop=True)


def matching(frame: pd.DataFrame, **values) -> pd.DataFrame:
    """The rows whose fields have these values, by the one rule for matching a setting: None matches an unset
    field, a float matches within 1e-9 (0.1 from params/ and 0.1 from a CSV are one setting), others exactly."""
    mask = pd.Series(True, index=frame.index)
    for field, value in values.items():
        column = frame[field]
        if value is None:
            mask &= column.isna()
        elif isinstance(value, float):
            mask &= column.astype(float).sub(value).abs().lt(1e-9)
        else:
            mask &= column == value
    return frame[mask]


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that trained to their last epoch (ok): every number the book computes is theirs."""
    return runs[runs["status"] == OK]


def protocol(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the report's protocol: those of some experiment other than the departures from it
    (experiments.DEPARTURES: other data, another BatchNorm, a second device)."""
    departures = {role.label for role in DEPARTURES}
    return runs[runs["roles"].apply(lambda labels: any(label not in departures for label in labels))]


def protocol_epochs(epochs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The epochs of the protocol's runs (protocol)."""
    return epochs[epochs["run_id"].isin(protocol(runs)["run_id"])]


def ended(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that ran, finished or diverged: what a section does not call missing."""
    return runs[runs["status"].isin(FINISHED_STATUSES)]


def on_cpu(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs made on a CPU (which computes in fp32 whatever the setting `precision` says)."""
    return runs[runs["device"].fillna("").str.startswith("cpu")]


def on_gpu(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs made on a CUDA GPU."""
    return runs[runs["device"].fillna("").str.startswith("cuda")]


def diverged(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose loss ran away; `diverged_epoch` says when."""
    return runs[runs["status"] == DIVERGED]


def overfitting_gap(runs: pd.DataFrame) -> pd.Series:
    """Training minus validation accuracy at the last epoch, per run: how much a model overfits."""
    return runs["train_acc"] - runs["val_acc"]


def varying_fields(runs: pd.DataFrame) -> list[str]:
    """The setting fields whose value differs between these runs: an experiment's grid axes."""
    return [name for name in SETTING_FIELDS if runs[name].nunique(dropna=False) > 1]


def experiment_epochs(epochs: pd.DataFrame, runs: pd.DataFrame, model: str, roles) -> pd.DataFrame:
    """The epochs of one model's experiments in these roles, labelled in an `experiment` column, in the order given.

    A run that several experiments share (the CNN's best is also its "without dropout") appears once per experiment.
    """
    order = [role.label for role in roles]
    members = by_experiment(runs)
    members = members[(members["model"] == model) & members["role"].isin(order)]
    labelled = epochs.merge(members[["run_id", "role"]].rename(columns={"role": "experiment"}), on="run_id")
    position = labelled["experiment"].map({label: i for i, label in enumerate(order)})
    return labelled.assign(position=position).sort_values(["position", "run_id", "epoch"]).drop(columns="position")


def turning_points(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per run: the epoch of lowest validation loss (the turning point) beside its last epoch.

    `val_acc_turn` is what early stopping at the turning point would have kept; the test
    set was only evaluated at new best validation accuracies, so there is no test number
    for the turning epoch itself.
    """
    columns = ["run_id", "epoch", "train_loss", "val_loss", "val_acc"]
    ordered = epochs.sort_values(["run_id", "epoch"])
    turn = ordered.loc[ordered.groupby("run_id")["val_loss"].idxmin(), columns]
    last = ordered.groupby("run_id").tail(1)[columns]
    points = turn.merge(last, on="run_id", suffixes=("_turn", "_last")).rename(
        columns={"epoch_turn": "turning_epoch", "epoch_last": "last_epoch"})
    points["epochs_past_turn"] = points["last_epoch"] - points["turning_epoch"]
    return points.reset_index(drop=True)


def best_within(epochs: pd.DataFrame, max_epoch: int) -> pd.DataFrame:
    """Per run: best validation accuracy up to `max_epoch` against the best over all epochs."""
    early = epochs[epochs["epoch"] <= max_epoch].groupby("run_id")["val_acc"].max()
    overall = epochs.groupby("run_id")["val_acc"].max()
    return pd.DataFrame({"best_val_acc_early": early, "best_val_acc_all": overall}).reset_index()


def history_difference(epochs: pd.DataFrame, run_a: str, run_b: str) -> float:
    """Largest absolute difference between two runs' per-epoch metrics (timings excluded)."""
    columns = ["train_loss", "train_acc", "val_loss", "val_acc"]
    a = epochs[epochs["run_id"] == run_a].sort_values("epoch")[columns].to_numpy()
    b = epochs[epochs["run_id"] == run_b].sort_values("epoch")[columns].to_numpy()
    if a.shape != b.shape:
        return float("inf")
    return float(abs(a - b).max()) if a.size else float("nan")


def load_reference() -> pd.DataFrame:
    """The original report's numbers: model, experiment (the report's), role, its setting, metric, value, note."""
    reference = pd.read_csv(REFERENCE_CSV).rename(columns={"bn": "batchnorm"})
    unknown = sorted(set(reference["experiment"]) - set(REPORTED))
    if unknown:
        raise ValueError(f"{REFERENCE_CSV.name}: experiments {unknown} have no role; "
                         f"lab2/report/experiments.py knows {', '.join(REPORTED)}")
    return reference.assign(role=reference["experiment"].map(lambda name: REPORTED[name].label))
