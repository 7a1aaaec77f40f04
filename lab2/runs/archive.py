"""The archive of runs a device call brings back: results/<profile>/<run-id>/... in one .tgz.

Written by gpu-check as runs finish (beside, then renamed, so a call cut off leaves the last
complete archive), read by `lab2 unpack-results`, which adds new runs and never overwrites
one on disk.
"""

import shutil
import tarfile
import tempfile
from pathlib import Path

from lab2.runs import record
from lab2.runs.manifest import MANIFEST_FILE, read_manifest


def pack_runs(profile_dir: Path, run_names, archive: Path) -> None:
    """Pack run folders (and the profile's manifest) as results/<profile>/..., beside then renamed."""
    partial = archive.with_name(f".{archive.name}.partial")
    with tarfile.open(partial, "w:gz") as tar:
        prefix = Path("results") / profile_dir.name
        if (profile_dir / MANIFEST_FILE).is_file():
            tar.add(profile_dir / MANIFEST_FILE, arcname=str(prefix / MANIFEST_FILE))
        for name in sorted(run_names):
            tar.add(profile_dir / name, arcname=str(prefix / name))
    partial.replace(archive)


def _device_of(run_dir: Path) -> str:
    environment = record.read_run(run_dir).environment
    if not environment:
        return "an unknown device"
    return f"{environment.get('device_name', '?')} ({environment.get('device', '?')})"


def unpack_runs(archive: Path, results_root: Path = record.RESULTS_ROOT) -> dict:
    """Unpack an archive of runs into results/<profile>/: new runs are added, runs on disk are kept.

    A run id names a config and data, not a device, so a run already on disk may come from
    another machine than the archive's one: it is never overwritten, and it is reported.
    Each run lands by one rename, so an interrupted unpack leaves no half-written run.
    """
    added, kept = [], []
    # The folders this call makes (the results root, a profile), removed again when it adds nothing.
    created = [folder for folder in (results_root, *results_root.parents) if not folder.exists()]
    results_root.mkdir(parents=True, exist_ok=True)
    unpacked = Path(tempfile.mkdtemp(prefix=".unpack-", dir=results_root))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(unpacked, filter="data")  # refuses absolute paths and links leaving the folder
        except (tarfile.TarError, EOFError, OSError) as error:
            raise ValueError(f"{archive}: cannot unpack ({error})") from None
        profiles = _checked_contents(archive, unpacked)
        for profile_dir, runs in profiles.items():
            target_profile = results_root / profile_dir.name
            if target_profile.is_symlink() or (target_profile.exists() and not target_profile.is_dir()):
                raise ValueError(f"{target_profile} is not a folder of its own (a link or a file); "
                                 "unpack into a results folder whose profiles are real folders")
            if not target_profile.exists():
                created.insert(0, target_profile)
            target_profile.mkdir(exist_ok=True)
            manifest = profile_dir / MANIFEST_FILE
            if manifest.is_file() and not (target_profile / MANIFEST_FILE).exists():
                manifest.replace(target_profile / MANIFEST_FILE)
            for run in runs:
                target = target_profile / run.name
                if target.exists() or target.is_symlink():
                    kept.append(f"{profile_dir.name}/{run.name}: kept the one on disk ({_device_of(target)}), "
                                f"not the archive's ({_device_of(run)})")
                else:
                    run.replace(target)
                    added.append(f"{profile_dir.name}/{run.name}")
    except OSError as error:
        raise ValueError(f"{archive}: cannot unpack into {results_root} ({error})") from None
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
        if not added:
            _remove_if_empty(created)
    return {"added": added, "kept": kept}


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove folders, deepest first, that hold nothing: a refused archive leaves no trace."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (a manifest was added), or not ours to remove
            return


def _checked_contents(archive: Path, unpacked: Path) -> dict[Path, list[Path]]:
    """{profile folder: its run folders} of an unpacked archive, every entry checked before anything is added.

    An archive is refused whole, with every problem named, when it holds anything but
    results/<profile>/ folders of run folders (a run id, real files, a readable summary.json)
    and a manifest that read_manifest accepts: links, stray files, half-written runs.
    """
    root = unpacked / "results"
    if root.is_symlink() or not root.is_dir():
        raise ValueError(f"{archive}: holds no results/ folder; give the results-<profile>-<model>.tgz files a "
                         "gpu-check call wrote")
    problems, profiles = [], {}
    for profile_dir in sorted(root.iterdir()):
        where = f"results/{profile_dir.name}"
        if profile_dir.is_symlink() or not profile_dir.is_dir():
            problems.append(f"{where} is {'a link' if profile_dir.is_symlink() else 'a file'}, not a profile folder")
            continue
        runs = []
        for entry in sorted(profile_dir.iterdir()):
            name = f"{where}/{entry.name}"
            if entry.name == MANIFEST_FILE and entry.is_file() and not entry.is_symlink():
                try:
                    read_manifest(entry)
                except record.RecordError as error:
                    problems.append(f"{name}: {str(error).partition(': ')[2]}")
            elif not record.is_run_id(entry.name):
                problems.append(f"{name} is not a run folder (names look like mlp-0123456789ab)")
            elif entry.is_symlink() or not entry.is_dir():
                problems.append(f"{name} is {'a link' if entry.is_symlink() else 'a file'}, not a run folder")
            elif any(path.is_symlink() or not path.is_file() for path in entry.iterdir()):
                problems.append(f"{name} holds links or folders; a run folder holds only its files")
            else:
                run = record.read_run(entry)
                if run.status == record.MISSING:
                    problems.append(f"{name} has no {record.SUMMARY_FILE}: the run never ended")
                elif run.status == record.CORRUPT:
                    problems.append(f"{name}/{run.damaged_file.name}: {run.damage}")
                else:
                    runs.append(entry)
        profiles[profile_dir] = runs
    if problems:
        raise ValueError(f"{archive}: refused, nothing added:\n  " + "\n  ".join(problems))
    if not any(profiles.values()):
        raise ValueError(f"{archive}: holds no runs under results/<profile>/; nothing added")
    return profiles
