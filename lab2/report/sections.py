"""A section of a chapter: the runs of one experiment (or a few, side by side), what ran and
what did not, and how the page shows it.

Missing runs are said once per section: a section with no finished run shows one notice
(which settings, how many runs, why they are missing, what a run costs and the command that
makes them); a section with some shows what ran and one line naming what did not. Its table
puts the original report's number beside ours for every setting and metric the report
printed, with the difference judged by the noise rule (lab2.report.compare). Sentences that
interpret a section's numbers are shown only when every setting of the section has run:
`Section.says` takes them from the page, so the sentences stay in the Markdown.
"""

import math
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
from IPython.display import Markdown

from lab2.core.config import MODELS
from lab2.core.models import multiply_adds
from lab2.core.summary import DIVERGED
from lab2.report import results
from lab2.report.compare import (SETTING_KEYS, Estimate, _comparable_keys, judge_against_original, plus_minus,
                                  printed_numbers)
from lab2.report.experiments import REPORTED, Role
from lab2.report.results import METRICS

NOT_IN_REPORT = "–"  # a setting or metric the report did not print
DIVERGED_CELL = DIVERGED  # a setting every seed of which diverged (the seeds row says when)
CPU_PATIENCE_MINUTES = 60  # a run longer than this on a CPU is sent to a GPU machine
MODEL_NAMES = {model: model.upper() for model in MODELS}  # how the pages name each model
FIELD_WORDS = {"dropout_rate": "dropout rate", "batch_size": "batch size", "learning_rate": "learning rate",
               "dropout_kind": "dropout kind", "jpeg_quality": "JPEG quality", "pixel_noise": "pixel noise",
               "channels": "channels", "hidden": "hidden units", "batchnorm": "BatchNorm"}


def value_words(field: str, value) -> str:
    """A setting's value as a reader says it: 'batch size 50', 'JPEG quality as read'."""
    if field == "jpeg_quality" and (value is None or (isinstance(value, float) and math.isnan(value))):
        return "JPEG quality as read"
    if isinstance(value, float):
        value = f"{value:g}"
    return f"{FIELD_WORDS.get(field, field)} {value}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass
class Column:
    """One setting of a section: how its column is headed and the runs planned for it."""

    label: str
    planned: pd.DataFrame  # runs planned for this setting (every seed), finished or not
    reported: bool  # whether the report ran this experiment, so may have printed its numbers

    @property
    def finished(self) -> pd.DataFrame:
        return results.finished(self.planned)

    @property
    def diverged(self) -> pd.DataFrame:
        return results.diverged(self.planned)

    @property
    def ran(self) -> bool:
        """Some run of this setting ended: trained to the end, or diverged."""
        return not results.ended(self.planned).empty


class Section:
    """The runs of one model's experiment in a role (a grid: a column per value), or of a few
    one-setting roles side by side (a column per role)."""

    def __init__(self, runs: pd.DataFrame, reference: pd.DataFrame, model: str, roles, costs: "Costs"):
        self.runs, self.reference, self.model, self.costs = runs, reference, model, costs
        self.roles = (roles,) if isinstance(roles, Role) else tuple(roles)
        self.shown_once = False

    @cached_property
    def columns(self) -> list[Column]:
        reported = {role.label for role in REPORTED.values()}
        if len(self.roles) > 1:
            return [Column(role.label, results.runs_of(self.runs, self.model, role), role.label in reported)
                    for role in self.roles]
        role = self.roles[0]
        planned = results.runs_of(self.runs, self.model, role)
        axes = results.varying_fields(planned)
        if not axes:
            return [Column(role.label, planned, role.label in reported)]
        columns = []
        for values, group in planned.groupby(axes, sort=True, dropna=False):
            values = values if isinstance(values, tuple) else (values,)
            label = ", ".join(value_words(axis, value) for axis, value in zip(axes, values))
            columns.append(Column(label, group, role.label in reported))
        return columns

    @property
    def planned(self) -> pd.DataFrame:
        return pd.concat([column.planned for column in self.columns]).drop_duplicates("run_id")

    @property
    def finished(self) -> pd.DataFrame:
        return results.finished(self.planned)

    @property
    def missing_columns(self) -> list[Column]:
        """The settings no run of which has ended (diverged ones are not missing: they are said as diverged)."""
        return [column for column in self.columns if not column.ran]

    @property
    def complete(self) -> bool:
        """Every setting has at least one run trained to the end: its sentences can be said."""
        return all(not column.finished.empty for column in self.columns)

    @property
    def comparable(self) -> bool:
        """At least two settings have finished runs: a figure comparing them has something to compare."""
        return sum(not column.finished.empty for column in self.columns) >= 2

    @property
    def empty(self) -> bool:
        """No run has ended: the section is one notice."""
        return results.ended(self.planned).empty

    @property
    def name(self) -> str:
        return f"the {MODEL_NAMES.get(self.model, self.model)}'s " + " / ".join(role.label for role in self.roles)

    # ------------------------------------------------------------ what did not run

    def missing_runs(self) -> int:
        return len(self.planned) - len(results.ended(self.planned))

    def notice(self) -> Markdown:
        """The one notice of a section without a finished run."""
        labels = "; ".join(column.label for column in self.columns)
        runs = self.missing_runs()
        return Markdown(
            f"**Not run yet.** No run of {self.name} has finished ({plural(runs, 'run')} planned over "
            f"{plural(len(self.columns), 'setting')}: {labels}). {self.costs.why(self.model)}"
        )

    def missing_line(self) -> Markdown | None:
        """One line naming the settings of a partly run section that have no finished run."""
        missing = self.missing_columns
        if not missing:
            return None
        runs = sum(len(column.planned) for column in missing)
        return Markdown(
            f"Not run yet: {'; '.join(column.label for column in missing)} "
            f"({plural(runs, 'run')}). {self.costs.why(self.model)}"
        )

    # ------------------------------------------------------------ what the page shows

    def table(self, metrics=METRICS):
        """Ours beside the original's number, per metric and setting; or the notice when nothing ran."""
        if self.empty:
            return self.notice()
        return Shown(self.against_original(metrics), self.missing_line())

    def says(self, template: str, when: bool | None = None, **facts) -> Markdown | None:
        """The page's sentences about this section, once every setting has run (or `when` the page
        knows better what they need); otherwise nothing: the section's table or notice has said
        what is missing."""
        ready = self.complete if when is None else when
        return Markdown(template.format(**facts)) if ready else None

    def original_numbers(self) -> dict[str, float] | None:
        """The report's numbers of a one-setting section ({metric: mean of its values}); None if it printed none."""
        column = self.columns[0]
        if len(self.columns) != 1 or not column.reported:
            return None
        setting = _setting_key(column.planned.iloc[0])
        printed = _printed_numbers(self.reference)
        numbers = {metric: sum(values) / len(values) for metric in METRICS
                   if (values := printed.get((*setting, metric)))}
        return numbers or None

    def against_original(self, metrics=METRICS) -> pd.DataFrame:
        """Rows (metric, ours | original | difference), a column per finished setting."""
        ran = [column for column in self.columns if column.ran]
        printed = _printed_numbers(self.reference)
        data, index = {}, []
        index.append(("", "seeds"))
        for metric in metrics:
            index += [(metric, "ours"), (metric, "original"), (metric, "difference")]
        for column in ran:
            cells = [_seeds_cell(column.finished, column.diverged)]
            if column.finished.empty:  # every seed diverged: no number of ours to show or judge
                data[column.label] = cells + [DIVERGED_CELL] * (3 * len(metrics))
                continue
            setting = _setting_key(column.finished.iloc[0])
            for metric in metrics:
                ours = Estimate.of(column.finished[metric])
                original = printed.get((*setting, metric)) if column.reported else None
                cells.append(plus_minus(ours.mean, ours.std))
                if original is None:
                    cells += [NOT_IN_REPORT, NOT_IN_REPORT]
                    continue
                values = original
                verdict = judge_against_original(ours, sum(values) / len(values), metric, len(values))
                cells.append(" / ".join(f"{value:.3f}" for value in values))
                cells.append(f"{verdict.difference:+.3f} ({verdict.text})")
            data[column.label] = cells
        return pd.DataFrame(data, index=pd.MultiIndex.from_tuples(index, names=["metric", ""]))


def side_by_side(shown: dict[str, Section], metrics=METRICS):
    """One-setting sections (each model's best, say) as one table, a column per label; a section
    without a finished run is left out and said once under the table."""
    present = {label: section for label, section in shown.items() if not section.empty}
    if not present:
        return next(iter(shown.values())).notice()
    table = pd.concat([section.against_original(metrics).set_axis([label], axis=1)
                       for label, section in present.items()], axis=1)
    missing = [section for section in shown.values() if section.empty]
    line = missing[0].missing_line() if missing else None
    return Shown(table, line)


class Shown:
    """A table and the line under it, displayed together by one cell."""

    def __init__(self, table: pd.DataFrame, line: Markdown | None):
        self.table, self.line = table, line

    def _ipython_display_(self):
        from IPython.display import display

        display(self.table)
        if self.line is not None:
            display(self.line)


def _setting_key(run: pd.Series) -> tuple:
    key = _comparable_keys(pd.DataFrame([run]))[SETTING_KEYS].iloc[0]
    return tuple(key)


def _printed_numbers(reference: pd.DataFrame) -> dict[tuple, list[float]]:
    """(model, setting..., metric) -> the report's distinct numbers for it (compare.printed_numbers)."""
    keyed = _comparable_keys(reference)
    numbers = {}
    for key, values in keyed.groupby([*SETTING_KEYS, "metric"], sort=False)["value"]:
        numbers[key] = printed_numbers(values)
    return numbers


def _seeds_cell(finished: pd.DataFrame, diverged: pd.DataFrame) -> str:
    """How many seeds, on which devices and precisions when they differ, and which diverged when."""
    count = str(len(finished))
    kinds = (finished["device_name"].fillna("unknown device") + " " + finished["used_precision"].fillna("")).str.strip()
    if kinds.nunique() > 1:
        mix = ", ".join(f"{n} on {kind}" for kind, n in kinds.value_counts().items())
        count = f"{count} ({mix}: mixed)"
    if not diverged.empty:
        count += f"; {diverged_words(diverged)}, not counted"
    return count


def diverged_words(diverged: pd.DataFrame) -> str:
    """'seed 0 diverged at epoch 2': the diverged runs of one setting, with when."""
    parts = [f"seed {run.seed} diverged at epoch {_epoch(run.diverged_epoch)}" for run in diverged.itertuples()]
    return ", ".join(parts)


def _epoch(value) -> str:
    return "?" if pd.isna(value) else str(int(value))


class Costs:
    """What a run of each model costs, read from the finished runs: why runs are missing and how to make them."""

    def __init__(self, runs: pd.DataFrame, profile: str):
        self.runs, self.profile = runs, profile

    def per_device(self, model: str) -> pd.Series:
        """Median minutes of one finished run of `model`, per device."""
        finished = results.finished(self.runs[self.runs["model"] == model])
        return (finished.groupby("device_name")["seconds"].median() / 60).sort_values()

    def cpu_estimate(self, model: str) -> float | None:
        """Minutes a run of `model` would take on the CPU that made another model's runs, scaled
        by the two models' multiply-adds per image and images per run; None without such runs."""
        finished = results.finished(self.runs)
        on_cpu = finished[finished["used_precision"].eq("fp32") & finished["device_name"].eq("cpu")
                          & finished["model"].ne(model)]
        planned = self.runs[self.runs["model"] == model]
        if on_cpu.empty or planned.empty:
            return None
        work = on_cpu.apply(_work, axis=1)
        seconds_per_work = (on_cpu["seconds"] / work).median()
        return seconds_per_work * _work(planned.iloc[0]) / 60

    def why(self, model: str) -> str:
        """What a run of `model` costs on each device that made one (or, estimated, on this CPU), and the command."""
        minutes = self.per_device(model)
        parts = [f"about {_duration(value)} on {'a CPU' if device == 'cpu' else device}"
                 for device, value in minutes.items()]
        cpu_minutes = minutes.get("cpu")
        if cpu_minutes is None and (cpu_minutes := self.cpu_estimate(model)) is not None:
            parts.append(f"about {_duration(cpu_minutes)} on this project's CPU (estimated from its "
                         f"{'CNN' if model == 'mlp' else 'MLP'} runs there and the two models' multiply-adds)")
        name = MODEL_NAMES.get(model, model)
        cost = f"{'An' if model == 'mlp' else 'A'} {name} run of this profile takes {'; '.join(parts)}. " if parts else ""
        command = f"make sweep PROFILE={self.profile} ARGS=\"--only '{model}/*'\""
        # Runs of an hour or more on a CPU are for a GPU machine; shorter ones a CPU sweeps in the background.
        needs_gpu = cpu_minutes is None or cpu_minutes >= CPU_PATIENCE_MINUTES
        gpu = " on a GPU machine (`make gpu-check` there packs them as they finish)" if needs_gpu else ""
        return f"{cost}`{command}` makes them{gpu}."


def _work(run: pd.Series) -> float:
    """Multiply-adds of one run's training: per image, times images, times epochs."""
    from lab2.core.data import VALIDATION_FRACTION

    all_training = round(50_000 * (1 - VALIDATION_FRACTION))  # CIFAR-10's training set less validation
    images = run["train_size"] if pd.notna(run["train_size"]) else all_training
    return multiply_adds(results.run_config(run)) * images * run["num_epochs"]


def _duration(minutes: float) -> str:
    if minutes >= 90:
        return f"{minutes / 60:.1f} hours"
    if minutes >= 1:
        return f"{minutes:.0f} min"
    return f"{minutes * 60:.0f} s"
