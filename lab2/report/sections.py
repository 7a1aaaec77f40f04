"""A section of a chapter: the evidence rows of one experiment (or a few, side by side), what ran
and what did not, and how the page shows it.

Its table is a pivot of the evidence (lab2.report.evidence): a column per setting that ran, our
numbers beside the report's. What has not run is said once per section, in one line (or, when
nothing ran, one notice) that names the settings and seeds and links to the one place that says
what making them costs (`status`, on the introduction). Sentences that interpret a section's
numbers are shown only when every setting has run: `Section.says` takes them from the page.
"""

import math
from functools import cached_property

import pandas as pd
from IPython.display import Markdown

from lab2.core.config import MODEL_LABELS
from lab2.core.models import multiply_adds
from lab2.report import evidence, results
from lab2.report.experiments import ABLATIONS, BASELINE, DEPARTURES, NO_BATCHNORM, NO_DROPOUT, Role
from lab2.report.noise import NOT_MEASURED, Estimate, difference_phrase, noise_phrase
from lab2.report.results import METRICS

CPU_PATIENCE_MINUTES = 60  # a run longer than this on a CPU is sent to a GPU machine
STATUS_LINK = "{ref}`what making them takes <status>`"  # the introduction's one statement of it


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def listed(items) -> str:
    """Items as a sentence lists them: 'a', 'a and b', 'a, b and c'; 'none' when there are none."""
    items = [str(item) for item in items]
    return "none" if not items else items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def seeds_words(seeds) -> str:
    """'seed 1', 'seeds 1 and 2', 'seeds 0, 1 and 2'."""
    seeds = list(seeds)
    return f"seed{'s' if len(seeds) > 1 else ''} {listed(seeds)}"


class Section:
    """One model's experiment in a role (a column per grid value), or a few one-setting roles side by side."""

    def __init__(self, evidence_table: pd.DataFrame, runs: pd.DataFrame, model: str, roles):
        self.model, self.runs = model, runs
        self.roles = (roles,) if isinstance(roles, Role) else tuple(roles)
        self.rows = pd.concat([evidence.rows(evidence_table, model, role) for role in self.roles], ignore_index=True)
        self.settings = self.rows.drop_duplicates("label")  # one row per setting (its first metric)

    @property
    def name(self) -> str:
        return f"the {MODEL_LABELS[self.model]}'s " + " / ".join(role.label for role in self.roles)

    @cached_property
    def planned(self) -> pd.DataFrame:
        """The runs of this section, finished or not."""
        ids = {run_id for run_ids in self.settings["run_ids"] for run_id in run_ids}
        return self.runs[self.runs["run_id"].isin(ids)]

    @property
    def empty(self) -> bool:
        """No run has ended: the section is one notice."""
        return not (self.settings["finished"] + self.settings["diverged"]).any()

    @property
    def complete(self) -> bool:
        """Every setting has at least one run trained to the end: its sentences can be said."""
        return bool(len(self.settings)) and bool((self.settings["finished"] > 0).all())

    @property
    def comparable(self) -> bool:
        """At least two settings have finished runs: a figure comparing them has something to compare."""
        return int((self.settings["finished"] > 0).sum()) >= 2

    def _missing(self) -> tuple[list[str], int]:
        """What has not run, in words (settings without a run, then seeds missing from the others), and how many runs."""
        unrun = self.settings[self.settings["finished"] + self.settings["diverged"] == 0]
        parts = ["; ".join(unrun["label"])] if len(unrun) else []
        count = int(unrun["planned"].sum())
        partial = evidence.missing_seeds(self.settings[self.settings["finished"] + self.settings["diverged"] > 0])
        for row in partial.itertuples():
            # A grid's setting by its value ("of batch size 100"); a one-setting role by its label.
            where = f"of {row.label}" if row.axes else "of the best setting" if row.label == BASELINE.label else row.label
            parts.append(f"{seeds_words(row.lacking)} {where}")
            count += len(row.lacking)
        return parts, count

    def notice(self) -> Markdown:
        """The one notice of a section without a finished run."""
        return Markdown(f"**Not run yet.** No run of {self.name} has finished ({plural(int(self.settings['planned'].sum()), 'run')} "
                        f"planned over {plural(len(self.settings), 'setting')}: {'; '.join(self.settings['label'])}): "
                        f"{STATUS_LINK}.")

    def missing_line(self) -> Markdown | None:
        """One line naming what of a partly run section has not run: settings, then seeds."""
        parts, count = self._missing()
        if not parts:
            return None
        return Markdown(f"Not run yet: {'; '.join(parts)} ({plural(count, 'run')}); {STATUS_LINK}.")

    def table(self, metrics=METRICS):
        """Ours beside the report's number, per metric and setting; or the notice when nothing ran."""
        if self.empty:
            return self.notice()
        return Shown(evidence.pivot(self.rows, metrics), self.missing_line())

    def says(self, template: str, when: bool | None = None, **facts) -> Markdown | None:
        """The page's sentences about this section, once every setting has run (or `when` the page
        knows better what they need); otherwise nothing: the table or notice has said what is missing."""
        ready = self.complete if when is None else when
        return Markdown(template.format(**facts)) if ready else None

    def original_numbers(self) -> dict[str, float] | None:
        """The report's numbers of a one-setting section ({metric: mean of its values}); None if it printed none."""
        if len(self.settings) != 1:
            return None
        printed = self.rows[self.rows["original_values"].map(bool)]
        return dict(zip(printed["metric"], printed["original"])) or None


def side_by_side(shown: dict[str, Section], metrics=METRICS):
    """One-setting sections (each model's best, say) as one table, a column per label; a section
    without a finished run is left out and said once under the table."""
    present = {label: section for label, section in shown.items() if not section.empty}
    if not present:
        return next(iter(shown.values())).notice()
    table = pd.concat([evidence.pivot(section.rows, metrics).set_axis([label], axis=1)
                       for label, section in present.items()], axis=1)
    missing = [section for section in shown.values() if section.empty]
    return Shown(table, missing[0].missing_line() if missing else None)


class Shown:
    """A table and the line under it, displayed together by one cell."""

    def __init__(self, table: pd.DataFrame, line: Markdown | None):
        self.table, self.line = table, line

    def _ipython_display_(self):
        from IPython.display import display

        display(self.table)
        if self.line is not None:
            display(self.line)


def _minutes(runs: pd.DataFrame, model: str) -> pd.Series:
    """Median minutes of one finished run of `model`, per device."""
    finished = results.finished(runs[runs["model"] == model])
    return (finished.groupby("device_name")["seconds"].median() / 60).sort_values()


def _work(run: pd.Series) -> float:
    """Multiply-adds of one run's training: per image, times images, times epochs."""
    images = run["train_size"] if pd.notna(run["train_size"]) else results.TRAINING_IMAGES
    return multiply_adds(results.run_config(run)) * images * run["num_epochs"]


def _cpu_estimate(runs: pd.DataFrame, model: str) -> float | None:
    """Minutes a run of `model` would take on the CPU that made another model's runs, scaled by the two
    models' multiply-adds per image and images per run; None without such runs."""
    finished = results.finished(runs)
    on_cpu = results.on_cpu(finished[finished["model"] != model])
    planned = runs[runs["model"] == model]
    if on_cpu.empty or planned.empty:
        return None
    return (on_cpu["seconds"] / on_cpu.apply(_work, axis=1)).median() * _work(planned.iloc[0]) / 60


def _duration(minutes: float) -> str:
    return f"{minutes / 60:.1f} hours" if minutes >= 90 else f"{minutes:.0f} min" if minutes >= 1 else f"{minutes * 60:.0f} s"


def status(runs: pd.DataFrame, model: str, profile: str) -> str | None:
    """What of `model`'s plan has not run, what a run costs on each device that made one (or, estimated,
    on this CPU) and the command that makes them: said once in the book (the introduction). None when
    every run has ended."""
    planned = runs[runs["model"] == model]
    missing = planned[~planned["run_id"].isin(results.ended(planned)["run_id"])]
    if missing.empty:
        return None
    minutes = _minutes(runs, model)
    costs = [f"about {_duration(value)} on {'a CPU' if device == 'cpu' else device}" for device, value in minutes.items()]
    cpu_minutes = minutes.get("cpu")
    if cpu_minutes is None and (cpu_minutes := _cpu_estimate(runs, model)) is not None:
        other = "CNN" if model == "mlp" else "MLP"
        costs.append(f"about {_duration(cpu_minutes)} on this project's CPU (estimated from its {other} runs there "
                     "and the two models' multiply-adds)")
    name = MODEL_LABELS[model]
    settings = missing.groupby(list(results.SETTING_FIELDS), dropna=False).ngroups
    text = (f"**The {name}**: {plural(len(missing), 'run')} of {len(planned)} have not run "
            f"({plural(settings, 'setting')}; {seeds_words(sorted(missing['seed'].unique()))}). ")
    text += f"A run of this profile takes {'; '.join(costs)}. " if costs else ""
    command = f"make sweep PROFILE={profile} ARGS=\"--only '{model}/*'\""
    # Runs of an hour or more on a CPU are for a GPU machine; shorter ones a CPU sweeps in the background. With no
    # run of either model finished there is nothing to tell them by, and no device is advised.
    needs_gpu = cpu_minutes is not None and cpu_minutes >= CPU_PATIENCE_MINUTES
    return text + f"`{command}` makes them" + (" on a GPU machine (`make gpu-check` there packs them as they finish)."
                                                 if needs_gpu else ".")


def grid_facts(section: Section) -> dict:
    """The numbers a chapter quotes about one grid section: the best value and its runner-up (and the worst),
    and training accuracy and the train - validation gap at the grid's two ends. Settings that have not
    finished give nan, which the page's phrases say."""
    test = section.rows[section.rows["metric"] == "test_acc"]
    axis = test["axes"].iloc[0][0]
    ranked = evidence.ranked(test)
    nothing = pd.Series({axis: math.nan, "estimate": Estimate(math.nan, math.nan, 0)})
    best = ranked.iloc[0] if len(ranked) else nothing
    runner_up, worst = (ranked.iloc[1], ranked.iloc[-1]) if len(ranked) > 1 else (nothing, nothing)
    low, high = test[axis].min(), test[axis].max()
    facts = {"best": best[axis], "best_text": best["estimate"].format(),
             "runner_up": runner_up[axis], "runner_up_text": runner_up["estimate"].format(),
             "noise": noise_phrase(best["estimate"], runner_up["estimate"]),
             "worst": worst[axis], "worst_text": worst["estimate"].format(), "low": low, "high": high}
    for end, value in (("low", low), ("high", high)):
        at_end = section.planned[section.planned[axis] == value]
        facts[f"train_acc_{end}"] = results.finished(at_end)["train_acc"].mean()
        facts[f"gap_{end}"] = results.overfitting_gap(results.finished(at_end)).mean()
    return facts


def ablation_facts(evidence_table: pd.DataFrame, runs: pd.DataFrame, epochs: pd.DataFrame, model: str) -> dict:
    """The numbers a model's chapter quotes about its best setting, without Dropout and without BatchNorm,
    named by each role's name (test_best, gap_no_dropout, against_no_batchnorm, ...)."""
    protocol = evidence_table[(evidence_table["model"] == model)
                              & ~evidence_table["role"].isin({role.label for role in DEPARTURES})]
    facts, estimates = {"spread_note": evidence.spread_note(protocol)}, {}
    for role in ABLATIONS:
        estimates[role] = evidence.estimate(evidence_table, model, role)
        chosen = results.runs_of(runs, model, role)
        first_epoch = epochs[epochs["run_id"].isin(results.finished(chosen)["run_id"]) & (epochs["epoch"] == 1)]
        facts.update({f"test_{role.name}": estimates[role].mean, f"test_{role.name}_text": estimates[role].format(),
                      f"gap_{role.name}": results.overfitting_gap(results.finished(chosen)).mean(),
                      f"first_train_loss_{role.name}": first_epoch["train_loss"].mean()})
    for role in (NO_DROPOUT, NO_BATCHNORM):
        facts[f"against_{role.name}"] = difference_phrase(estimates[BASELINE], estimates[role])
        facts[f"noise_{role.name}"] = noise_phrase(estimates[BASELINE], estimates[role])
    gap_change = facts[f"gap_{BASELINE.name}"] - facts[f"gap_{NO_DROPOUT.name}"]
    facts["gap_change"] = ("narrows" if gap_change < 0 else "widens" if gap_change > 0 else
                           "leaves unchanged" if gap_change == 0 else "cannot yet be said to change")
    loss_change = facts[f"first_train_loss_{BASELINE.name}"] - facts[f"first_train_loss_{NO_BATCHNORM.name}"]
    facts["first_loss_change"] = ("lower" if loss_change < 0 else "higher" if loss_change > 0 else
                                  "the same" if loss_change == 0 else NOT_MEASURED)
    return facts
