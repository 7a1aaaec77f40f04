"""The manifest: a profile's planned runs, `results/<profile>/manifest.json`, as its last sweep wrote it.

For each planned run: its run id, its config and the experiments it belongs to; beside them the
profile, its seeds, the data and the profile's experiments as params/ declares them. The sweep
makes it (`make_manifest`), the book reads which runs there should be from it, so it is checked
before any of its ids is used as a path; this module is the only one that builds or reads it.
"""

import json
from pathlib import Path

from lab2.core.atomic import write_json
from lab2.core.config import RUN_ID_HASH_LENGTH
from lab2.runs.fingerprint import project_path
from lab2.runs.record import RecordError, is_run_id, profile_dir, read_json

MANIFEST_FILE = "manifest.json"


def make_manifest(profile, experiments, runs, run_ids, data_source: str, data_fingerprint: str) -> dict:
    """The manifest of a sweep's plan: its profile (lab2.runs.grid.Profile), experiments and planned runs, each
    run with its id, and the data they read."""
    return {
        "profile": profile.name,
        "description": profile.description,
        "seeds": profile.seeds,
        "data_source": data_source,
        "data_fingerprint": data_fingerprint,
        # As params/ declares them, so the book finds an experiment by what it changes.
        "experiments": {experiment.id: experiment.fields for experiment in experiments},
        "runs": [{"run_id": rid, "experiments": run.experiments, "config": run.config.to_dict()}
                 for run, rid in zip(runs, run_ids, strict=True)],
    }


def manifest_changed(folder: Path, manifest: dict) -> bool:
    """Whether `folder` holds another manifest than `manifest` (or none): whether a sweep has one to write."""
    return read_json(Path(folder) / MANIFEST_FILE) != json.loads(json.dumps(manifest))


def write_manifest(folder: Path, manifest: dict) -> None:
    write_json(Path(folder) / MANIFEST_FILE, manifest)


def read_manifest(path: Path) -> dict:
    """A manifest file, checked: it parses, and every entry has a well-formed run id, experiments and a config.

    Raises RecordError naming the file and the entry, so a damaged or foreign manifest stops
    the book or the sweep before any of its ids is used as a path.
    """
    path = Path(path)
    where = project_path(path)
    try:
        manifest = json.loads(path.read_text())
    except OSError as error:
        raise RecordError(f"{where}: unreadable ({error.strerror})") from None
    except ValueError as error:
        raise RecordError(f"{where}: not valid JSON ({error}); remove it and sweep again to rewrite it") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), list):
        raise RecordError(f"{where}: not a sweep manifest (no list of runs); remove it and sweep again to rewrite it")
    for index, entry in enumerate(manifest["runs"]):
        if not isinstance(entry, dict):
            raise RecordError(f"{where}: runs[{index}] is not a mapping")
        if not is_run_id(entry.get("run_id")):
            raise RecordError(f"{where}: runs[{index}].run_id {entry.get('run_id')!r} is not a run id "
                              f"(a model and {RUN_ID_HASH_LENGTH} hex digits, e.g. mlp-0123456789ab)")
        for key, kind in (("config", dict), ("experiments", list)):
            if not isinstance(entry.get(key), kind):
                raise RecordError(f"{where}: runs[{index}] ({entry['run_id']}) has no {key} "
                                  f"({'a mapping of settings' if kind is dict else 'a list of experiment names'})")
    return manifest


def load_manifest(profile: str, results_root: Path | None = None) -> dict:
    """The profile's planned runs as its last sweep wrote them (checked by read_manifest)."""
    path = profile_dir(profile, results_root) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No results for profile {profile!r}: {path} is missing; "
                                f"run `python -m lab2 sweep --profile {profile}` first")
    manifest = read_manifest(path)
    if "experiments" not in manifest:
        raise RecordError(f"{project_path(path)} was written by an older sweep, without the experiments as params/ "
                          f"declares them; sweep again (`python -m lab2 sweep --profile {profile} --keep-finished` "
                          "executes only the runs that have not finished)")
    return manifest
