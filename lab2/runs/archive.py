"""The archive of runs a device call brings back: results/<profile>/<run-id>/... in one .tgz.

Written by gpu-check as runs finish (beside, then renamed, so a call cut off leaves the last
complete archive), read by `lab2 unpack-results`, which adds new runs and never overwrites
one on disk.
"""

import shutil
import tarfile
import tempfile
from pathlib import Path

from lab2 import PROJECT_ROOT
from lab2.runs import record


def pack_runs(profile_dir: Path, run_names, archive: Path) -> None:
    """Pack run folders (and the profile's manifest) as results/<profile>/..., beside then renamed."""
    partial = archive.with_name(f".{archive.name}.partial")
    with tarfile.open(partial, "w:gz") as tar:
        prefix = Path("results") / profile_dir.name
        if (profile_dir / record.MANIFEST_FILE).is_file():
            tar.add(profile_dir / record.MANIFEST_FILE, arcname=str(prefix / record.MANIFEST_FILE))
        for name in sorted(run_names):
            tar.add(profile_dir / name, arcname=str(prefix / name))
    partial.replace(archive)


def _device_of(run_dir: Path) -> str:
    environment = record.read_json(run_dir / record.ENVIRONMENT_FILE)
    if not environment:
        return "an unknown device"
    return f"{environment.get('device_name', '?')} ({environment.get('device', '?')})"


def unpack_runs(archive: Path, results_root: Path = PROJECT_ROOT / "results") -> dict:
    """Unpack an archive of runs into results/<profile>/: new runs are added, runs on disk are kept.

    A run id names a config and data, not a device, so a run already on disk may come from
    another machine than the archive's one: it is never overwritten, and it is reported.
    Each run lands by one rename, so an interrupted unpack leaves no half-written run.
    """
    added, kept = [], []
    results_root.mkdir(parents=True, exist_ok=True)
    unpacked = Path(tempfile.mkdtemp(prefix=".unpack-", dir=results_root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(unpacked, filter="data")  # refuses absolute paths and links leaving the folder
        for profile_dir in sorted((unpacked / "results").glob("*")):
            target_profile = results_root / profile_dir.name
            target_profile.mkdir(exist_ok=True)
            manifest = profile_dir / record.MANIFEST_FILE
            if manifest.is_file() and not (target_profile / record.MANIFEST_FILE).exists():
                manifest.replace(target_profile / record.MANIFEST_FILE)
            for run in sorted(p for p in profile_dir.iterdir() if p.is_dir()):
                target = target_profile / run.name
                if target.exists():
                    kept.append(f"{profile_dir.name}/{run.name}: kept the one on disk ({_device_of(target)}), "
                                f"not the archive's ({_device_of(run)})")
                else:
                    run.replace(target)
                    added.append(f"{profile_dir.name}/{run.name}")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"{archive}: cannot unpack ({error})") from None
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    return {"added": added, "kept": kept}
