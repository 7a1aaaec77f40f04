"""What every chapter starts with: the selected profile's results, read once, and `glue`.

A chapter's first cell is `page = load()`; `page.runs` holds every planned run (status
`record.MISSING` until it finishes), so a chapter renders a partial profile: `page.section(model,
role)` says once per section what is missing (lab2.report.sections).
"""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lab2.report import results
from lab2.report.compare import NOT_MEASURED, measured
from lab2.report.sections import Costs, Section
from lab2.runs.manifest import load_manifest
from lab2.runs.snapshot import runs_in_flight


@dataclass
class Page:
    profile: str
    results_root: Path | None
    manifest: dict
    runs: pd.DataFrame  # one row per planned run (results.load_runs)
    epochs: pd.DataFrame  # one row per finished run and epoch (results.load_epochs)
    reference: pd.DataFrame  # every number the original report printed
    in_flight: dict  # {run id: holder} of the runs a sweep was executing when the book's snapshot was taken

    def section(self, model: str, roles) -> Section:
        """The runs of one model's experiment in a role (or of a few roles side by side), as a chapter shows them."""
        return Section(self.runs, self.reference, model, roles, Costs(self.runs, self.profile))


def load(profile: str | None = None) -> Page:
    """The profile and results the book was asked to show ($LAB2_PROFILE, $LAB2_RESULTS), or another
    profile from the default results root (a book of a smaller profile reads the committed full one too)."""
    pd.set_option("display.max_rows", None)  # tables whole, never a head and a tail
    pd.set_option("display.max_colwidth", None)  # settings and sentences whole
    profile, root = results.selected() if profile is None else (profile, None)
    return Page(profile, root, load_manifest(profile, root), results.load_runs(profile, root),
                results.load_epochs(profile, root), results.load_reference(), runs_in_flight(profile, root))


def glue(name: str, value, fmt: str = "") -> None:
    """Glue a value for the page's prose, formatted here with `fmt`; NOT_MEASURED when its runs are missing.

    Formatting here rather than in the Markdown keeps a missing number from breaking the build.
    """
    from myst_nb import glue as myst_glue

    value = value.item() if hasattr(value, "item") else value  # numpy's would print as np.float64(...)
    text = (format(value, fmt) if fmt else value) if measured(value) else NOT_MEASURED
    myst_glue(name, text, display=False)


def planned_experiments(runs: pd.DataFrame) -> list[str]:
    """Every experiment of the profile's plan, as 'model/name', in the order params/ defines them."""
    return list(dict.fromkeys(name for names in runs["experiments"] for name in names))


def uncovered_experiments(runs: pd.DataFrame) -> list[str]:
    """The planned experiments that play no role in a chapter (lab2/report/experiments.py), as 'model/name'."""
    members = results.by_experiment(runs)
    uncovered = set(members.loc[members["role"].isna(), "experiment_id"])
    return [experiment for experiment in planned_experiments(runs) if experiment in uncovered]


def without_index(table: pd.DataFrame):
    """A table as the pages show it when its first columns name its rows: no index column of row numbers."""
    return table.style.hide(axis="index")
