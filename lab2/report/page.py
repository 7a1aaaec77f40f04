"""What every chapter starts with: the selected profile's results, read once, and `glue`.

A chapter's first cell is `page = load()`; `page.runs` holds every planned run (status
`record.MISSING` until it finishes), so a chapter renders a partial profile: `page.section(model,
role)` says once per section what is missing (lab2.report.sections).

Figures and tables are glued (`glue_figure`, `glue_table`) and placed by the page with a numbered,
captioned `{glue:figure}`; `page.runs_note(runs)` says in the caption which runs they show.
"""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from lab2.report import evidence, results
from lab2.report.noise import NOT_MEASURED, measured
from lab2.report.sections import Section, Shown, plural, seeds_words
from lab2.runs.manifest import load_manifest
from lab2.runs.snapshot import runs_in_flight


@dataclass
class Page:
    profile: str
    results_root: Path | None
    manifest: dict
    runs: pd.DataFrame  # one row per planned run (results.load_results)
    epochs: pd.DataFrame  # one row per finished run and epoch
    environments: pd.DataFrame  # env.json of every finished run
    reference: pd.DataFrame  # every number the original report printed
    in_flight: dict  # {run id: holder} of the runs a sweep was executing when the book's snapshot was taken

    @cached_property
    def evidence(self) -> pd.DataFrame:
        """The profile's evidence table (lab2.report.evidence), built once per page."""
        return evidence.build(self.runs, self.reference)

    def section(self, model: str, roles) -> Section:
        """The runs of one model's experiment in a role (or of a few roles side by side), as a chapter shows them."""
        return Section(self.evidence, self.runs, model, roles)

    def runs_note(self, runs: pd.DataFrame) -> str:
        """Which runs a figure or table shows, for its caption: '9 runs of the full profile, seeds 0, 1 and 2'."""
        shown = results.finished(runs)
        if shown.empty:
            return f"no finished run of the {self.profile} profile yet"
        seeds = sorted(int(seed) for seed in shown["seed"].unique())
        return f"{plural(len(shown), 'run')} of the {self.profile} profile, {seeds_words(seeds)}"


def load(profile: str | None = None) -> Page:
    """The profile and results the book was asked to show ($LAB2_PROFILE, $LAB2_RESULTS), or another
    profile from the default results root (a book of a smaller profile reads the committed full one too)."""
    pd.set_option("display.max_rows", None)  # tables whole, never a head and a tail
    pd.set_option("display.max_colwidth", None)  # settings and sentences whole
    _figure_formats()
    profile, root = results.selected() if profile is None else (profile, None)
    return Page(profile, root, load_manifest(profile, root), *results.load_results(profile, root),
                results.load_reference(), runs_in_flight(profile, root))


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


def _figure_formats() -> None:
    """Figures as PNG and SVG: the HTML shows the PNG, the PDF prints the SVG (book/_config.yml chooses).

    SVG is vector, so the printed figures are sharp at any resolution; outside a kernel there is
    nothing to set.
    """
    from IPython import get_ipython

    if get_ipython() is not None:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png", "svg")


def glue_figure(name: str, figure) -> None:
    """Glue a figure for a `{glue:figure}` of the page, which numbers and captions it; the cell shows nothing."""
    import matplotlib.pyplot as plt
    from myst_nb import glue as myst_glue

    myst_glue(name, figure, display=False)
    plt.close(figure)  # else the inline backend shows it under the cell too


def glue_table(name: str, table) -> None:
    """Glue a table (a DataFrame, HTML, a notice) for a `{glue:figure}` of class `table` (numbered as a table).

    A section's table (Shown) is glued without the line under it, which the cell displays: what
    has not run is said in the page, not in the numbered table.
    """
    from IPython.display import display
    from myst_nb import glue as myst_glue

    if isinstance(table, Shown):
        myst_glue(name, without_index(table.table), display=False)
        if table.line is not None:
            display(table.line)
    else:
        myst_glue(name, without_index(table), display=False)


def without_index(table):
    """A DataFrame as HTML with no row of index names under its headers: a plain row number index is
    dropped, a named index becomes the first column (its name a header), a multi-level one loses its names."""
    from IPython.display import HTML

    if not isinstance(table, pd.DataFrame):
        return table
    if isinstance(table.index, pd.RangeIndex):
        return HTML(table.to_html(index=False))
    if table.index.nlevels == 1 and table.index.name:
        return HTML(table.reset_index().to_html(index=False))
    return HTML(table.rename_axis(index=[None] * table.index.nlevels).to_html())
