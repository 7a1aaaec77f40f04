"""The report's experiments as data: read params/*.yaml, apply a profile, expand the grid.

Every experiment file names a model, a baseline and experiments; a list value is a grid
axis. A profile (params/profiles.yaml) sets fields on every run and names the seeds.
A config that several experiments share is planned once and lists them all.
"""

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import yaml

from lab2.core.config import FIELD_NAMES, ConfigError, RunConfig, check_value

PARAMS_DIR = Path(__file__).resolve().parents[2] / "params"
PROFILES_FILE = "profiles.yaml"
EXPERIMENT_FILE_KEYS = ("model", "baseline", "experiments")
PROFILE_KEYS = ("description", "seeds", "set")
SETTABLE_FIELDS = [f for f in FIELD_NAMES if f not in ("model", "seed")]  # what params may set


class _Loader(yaml.SafeLoader):
    """YAML as its 1.2 spec reads it: 1e-3 is a float (YAML 1.1, PyYAML's default, needs 1.0e-3), and a
    key given twice in one mapping is an error (PyYAML keeps the last one, silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"found {key!r} a second time (first on line {seen[key] + 1}); each key may be given once",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class GridError(ValueError):
    """A params file that cannot be used; names the file, the key and what is allowed."""


@dataclass
class PlannedRun:
    """One resolved config and every experiment (as 'model/name') that needs it."""

    config: RunConfig
    experiments: list[str] = field(default_factory=list)


@dataclass
class Profile:
    name: str
    description: str
    seeds: list[int]
    overrides: dict
    source: Path  # the profiles file, for messages


def _read_yaml(path: Path) -> dict:
    try:
        content = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader
    except OSError as error:
        raise GridError(f"{path}: unreadable ({error.strerror})") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise GridError(f"{path}{where}: not valid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise GridError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(content, dict):
        raise GridError(f"{path}: expected a mapping at the top level")
    return content


def _check_keys(path: Path, where: str, mapping, allowed) -> None:
    if not isinstance(mapping, dict):
        raise GridError(f"{path}: {where} must be a mapping")
    for key in mapping:
        if key not in allowed:
            raise GridError(f"{path}: {where}{key}: unknown key; allowed keys are {', '.join(allowed)}")


def load_profiles(params_dir: Path = PARAMS_DIR) -> dict[str, Profile]:
    if not Path(params_dir).is_dir():
        what = "a file, not a folder" if Path(params_dir).exists() else "no such folder"
        raise GridError(f"{params_dir}: {what}; the params folder holds {PROFILES_FILE} and the experiment "
                        "files (*.yaml), as params/ does")
    path = Path(params_dir) / PROFILES_FILE
    profiles = {}
    for name, body in _read_yaml(path).items():
        _check_keys(path, f"{name}.", body, PROFILE_KEYS)
        seeds = body.get("seeds", [0])
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
            raise GridError(f"{path}: {name}.seeds: must be a non-empty list of integers >= 0, got {seeds!r}")
        overrides = body.get("set", {}) or {}
        _check_keys(path, f"{name}.set.", overrides, SETTABLE_FIELDS)
        for key, setting in overrides.items():  # checked here, so a bad value is blamed on this file
            targets = setting.items() if isinstance(setting, dict) else [(None, setting)]
            for source, value in targets:
                try:
                    check_value(key, value)
                except ConfigError as error:
                    where = f"{name}.set.{key}" + ("" if source is None else f".{source}")
                    raise GridError(f"{path}: {where}: {error.message}") from None
        profiles[name] = Profile(name, str(body.get("description", "")).strip(), seeds, overrides, path)
    return profiles


def get_profile(name: str, params_dir: Path = PARAMS_DIR) -> Profile:
    profiles = load_profiles(params_dir)
    if name not in profiles:
        raise GridError(f"unknown profile {name!r}; {params_dir / PROFILES_FILE} defines {', '.join(profiles)}")
    return profiles[name]


def _apply_profile(values: dict, profile: Profile, path: Path, where: str) -> dict:
    resolved = dict(values)
    for key, setting in profile.overrides.items():
        if isinstance(setting, dict):
            # A translation table: the protocol's value -> this profile's value.
            if resolved.get(key, getattr(RunConfig, key)) not in setting:
                raise GridError(
                    f"{profile.source}: {profile.name}.set.{key}: no entry for "
                    f"{resolved.get(key, getattr(RunConfig, key))!r}, needed by {path}: {where}; "
                    f"it maps {', '.join(map(repr, setting))}"
                )
            resolved[key] = setting[resolved.get(key, getattr(RunConfig, key))]
        else:
            resolved[key] = setting
    return resolved


def _check_grid_kept(values: dict, profile: Profile, path: Path, experiment: str) -> None:
    """Refuse a profile that would merge an experiment's grid values into fewer runs than it declares."""
    for key, setting in profile.overrides.items():
        declared = values.get(key)
        if not isinstance(declared, list) or len(set(declared)) < 2:
            continue
        resolved = [setting.get(value, value) if isinstance(setting, dict) else setting for value in declared]
        if len(set(resolved)) < len(set(declared)):
            raise GridError(
                f"{path}: experiments.{experiment}.{key}: the grid {declared} would become {resolved} under profile "
                f"{profile.name} ({profile.source}: {profile.name}.set.{key}: {setting!r}), fewer runs than declared; "
                f"map each value to its own (e.g. {key}: {{{', '.join(f'{v!r}: ...' for v in declared)}}}) "
                f"or leave {key} out of the experiment")


def _expand(path: Path, experiment: str, values: dict) -> list[dict]:
    """The product of every list-valued field."""
    axes = {key: value for key, value in values.items() if isinstance(value, list)}
    for key, value in axes.items():
        if not value:
            raise GridError(f"{path}: experiments.{experiment}.{key}: an empty list has nothing to run")
    combinations = itertools.product(*axes.values()) if axes else [()]
    return [{**values, **dict(zip(axes, combination))} for combination in combinations]


@dataclass(frozen=True)
class Experiment:
    """One experiment as params/ declares it: the fields it sets on its model's baseline.

    A list is a grid axis. Declared, not resolved: a profile's overrides are not applied, so
    the book can tell "no dropout" (dropout_rate: 0.0) from the baseline even where the
    baseline has no dropout either.
    """

    model: str
    name: str
    fields: dict
    source: Path  # the params file, for messages

    @property
    def id(self) -> str:
        return f"{self.model}/{self.name}"


def read_experiments(params_dir: Path = PARAMS_DIR) -> tuple[list[Experiment], dict[str, dict]]:
    """Every experiment of every params file, validated, and each model's baseline."""
    files = sorted(p for p in params_dir.glob("*.yaml") if p.name != PROFILES_FILE)
    if not files:
        raise GridError(f"{params_dir}: no experiment files (*.yaml besides {PROFILES_FILE})")
    experiments, baselines = [], {}
    for path in files:
        content = _read_yaml(path)
        _check_keys(path, "", content, EXPERIMENT_FILE_KEYS)
        model = content.get("model")
        baseline = content.get("baseline", {}) or {}
        declared = content.get("experiments") or {}
        _check_keys(path, "baseline.", baseline, SETTABLE_FIELDS)
        if not isinstance(declared, dict) or not declared:
            raise GridError(f"{path}: experiments: must be a non-empty mapping of name to fields")
        if model in baselines:
            raise GridError(f"{path}: model: {model!r} is already defined by another params file")
        baselines[model] = baseline
        for name, fields in declared.items():
            fields = fields or {}
            _check_keys(path, f"experiments.{name}.", fields, SETTABLE_FIELDS)
            experiments.append(Experiment(model, name, fields, path))
    return experiments, baselines


def baseline_config(model: str, profile: str | None = None, params_dir: Path = PARAMS_DIR) -> RunConfig:
    """A model's baseline as params/ declares it: the report's best setting of that model, under the
    report's protocol, or at the size of `profile` (its overrides applied), with seed 0."""
    experiments, baselines = read_experiments(params_dir)
    if model not in baselines:
        raise GridError(f"{params_dir}: no params file declares model {model!r}; they declare {', '.join(baselines)}")
    path = next(experiment.source for experiment in experiments if experiment.model == model)
    values = {"model": model, **baselines[model]}
    if profile is not None:
        values = _apply_profile(values, get_profile(profile, params_dir), path, "baseline")
    try:
        return RunConfig.from_dict(values)
    except ConfigError as error:
        raise GridError(f"{path}: baseline.{error.field}: {error.message}") from None


def _check_declared(path: Path, experiment: Experiment, values: dict) -> None:
    """Refuse a value params/ declares that its field does not allow, before a profile replaces it (a profile
    that sets hidden: 64 would hide an experiment's hidden: -3 until the full profile ran it)."""
    for key, value in values.items():
        try:
            check_value(key, value)
        except ConfigError as error:
            where = f"experiments.{experiment.name}" if key in experiment.fields else "baseline"
            raise GridError(f"{path}: {where}.{key}: {error.message}") from None


def _combination_problem(error: ConfigError, path: Path, experiment: str, profile: Profile) -> str:
    """A config refused as a whole, blamed on the file that set the field it names: the profile or the experiment."""
    if error.field == "model":
        return f"{path}: model: {error.message}"
    if error.field in profile.overrides:
        return f"{profile.source}: {profile.name}.set.{error.field}: {error.message} (for {path}: experiments.{experiment})"
    under = f" under profile {profile.name} ({profile.source})" if profile.overrides else ""
    return f"{path}: experiments.{experiment}.{error.field}: {error.message}{under}"


class Plan(NamedTuple):
    profile: Profile
    runs: list[PlannedRun]  # de-duplicated, seed-major
    experiments: list[Experiment]  # as params/ declares them


def plan(profile_name: str, params_dir: Path = PARAMS_DIR) -> Plan:
    """Validate every params file and return the profile, its de-duplicated runs (seed-major) and the experiments."""
    profile = get_profile(profile_name, params_dir)
    experiments, baselines = read_experiments(params_dir)
    runs: dict[RunConfig, PlannedRun] = {}
    for experiment in experiments:
        path, name, model = experiment.source, experiment.name, experiment.model
        declared = {**baselines[model], **experiment.fields}
        expanded = _expand(path, name, declared)
        for values in expanded:
            _check_declared(path, experiment, values)
        _check_grid_kept(declared, profile, path, name)
        for values in expanded:
            resolved = _apply_profile({"model": model, **values}, profile, path, f"experiments.{name}")
            for seed in profile.seeds:
                try:
                    config = RunConfig.from_dict({**resolved, "seed": seed})
                except ConfigError as error:  # the model, or two values that do not go together
                    raise GridError(_combination_problem(error, path, name, profile)) from None
                runs.setdefault(config, PlannedRun(config)).experiments.append(experiment.id)
    # Seed-major order: a sweep stopped part-way has one seed of everything before the next.
    ordered = sorted(runs.values(), key=lambda run: profile.seeds.index(run.config.seed))
    return Plan(profile, ordered, experiments)
