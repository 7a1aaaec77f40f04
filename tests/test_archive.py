"""Archives of runs from a device call: unpacked without overwriting, and refused whole when they hold anything else."""

import json
import os
import subprocess
import sys
import tarfile

import pytest
from conftest import make_run, run_name

from lab2 import PROJECT_ROOT
from lab2.runs.archive import unpack_runs

CNN_A, CNN_B = run_name("cnn", seed=0), run_name("cnn", seed=1)


def pack(tmp_path, build) -> "Path":
    """An archive of device/results/ as gpu-check writes one, after build(device/results/full) made its runs."""
    source = tmp_path / "device" / "results" / "full"
    source.mkdir(parents=True)
    build(source)
    archive = tmp_path / "results-full-cnn.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source.parent.parent, arcname=".")
    return archive


def test_unpack_adds_new_runs_and_keeps_those_on_disk(tmp_path):
    archive = pack(tmp_path, lambda full: (make_run(full, CNN_A, "NVIDIA H200"),
                                           make_run(full, CNN_B, "NVIDIA H200", seed=1)))
    results = tmp_path / "here" / "results"
    make_run(results / "full", CNN_B, "cpu", seed=1)
    outcome = unpack_runs(archive, results)
    assert outcome["added"] == [f"full/{CNN_A}"]
    assert len(outcome["kept"]) == 1 and CNN_B in outcome["kept"][0] and "H200" in outcome["kept"][0]
    assert json.loads((results / "full" / CNN_B / "env.json").read_text())["device_name"] == "cpu"
    assert sorted(p.name for p in results.iterdir()) == ["full"]  # no temporary folder left


def test_a_truncated_archive_names_itself_and_changes_nothing(tmp_path):
    def build(full):
        make_run(full, CNN_A, "NVIDIA H200")
        (full / CNN_A / "run.ipynb").write_bytes(bytes(range(256)) * 400)

    archive = pack(tmp_path, build)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    results = tmp_path / "here" / "results"
    with pytest.raises(ValueError, match="results-full-cnn.tgz: cannot unpack"):
        unpack_runs(archive, results)
    assert not (tmp_path / "here").exists()  # no folder left behind


def _link_run(full):
    make_run(full.parent, "elsewhere", "NVIDIA H200")
    os.symlink("../elsewhere", full / CNN_B)


def _link_profile(full):
    make_run(full, CNN_A, "NVIDIA H200")
    os.symlink("full", full.parent / "quick")


def _foreign_manifest(full):
    make_run(full, CNN_A, "NVIDIA H200")
    entry = {"run_id": "../../../elsewhere/mlp-0123456789ab", "experiments": [], "config": {}}
    (full / "manifest.json").write_text(json.dumps({"experiments": {}, "runs": [entry]}))


@pytest.mark.parametrize("build, message", [
    (lambda full: None, "holds no runs"),
    (lambda full: (make_run(full, CNN_A, "x"), (full / CNN_A / "summary.json").unlink()), "has no summary.json"),
    (lambda full: make_run(full, "not-a-run", "x"), "not-a-run is not a run folder"),
    (lambda full: (make_run(full, CNN_A, "x"), (full / CNN_A / "summary.json").write_text("{")), "not valid JSON"),
    (_link_run, f"{CNN_B} is a link"),
    (_link_profile, "results/quick is a link, not a profile folder"),
    (_foreign_manifest, "is not a run id"),
], ids=["empty", "unfinished", "not-a-run", "damaged-summary", "linked-run", "linked-profile", "foreign-manifest"])
def test_an_archive_with_anything_but_runs_is_refused_whole(tmp_path, build, message):
    archive = pack(tmp_path, build)
    results = tmp_path / "here" / "results"
    with pytest.raises(ValueError, match=message):
        unpack_runs(archive, results)
    assert not (tmp_path / "here").exists(), "nothing is added, not even a folder"


def test_an_archive_without_results_is_refused_through_the_cli(tmp_path):
    archive = tmp_path / "other.tgz"
    (tmp_path / "notes.txt").write_text("not runs")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "notes.txt", arcname="notes.txt")
    done = subprocess.run([sys.executable, "-m", "lab2", "unpack-results", str(archive), "--results",
                           str(tmp_path / "results")], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert done.returncode == 2
    assert "holds no results/ folder" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "results").exists()  # a refused archive leaves no empty --results folder
