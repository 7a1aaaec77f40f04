"""The device call's packing: archives per model that only grow, and an unpack that never overwrites."""

import json
import tarfile

import pytest

from lab2.gpu_check import Packer, sweep_lanes
from lab2.runs.archive import unpack_runs


def make_run(profile_dir, name, device_name):
    folder = profile_dir / name
    folder.mkdir(parents=True)
    (folder / "env.json").write_text(json.dumps({"device": "cuda", "device_name": device_name}))
    (folder / "summary.json").write_text(json.dumps({"status": "ok"}))
    return folder


def test_lanes_run_the_first_seed_of_the_cnn_first_and_the_mlp_beside_it():
    cnn, mlp = sweep_lanes([0, 1, 2])
    assert cnn.sweeps == [("cnn/*", [0]), ("cnn/*", [1, 2])]
    assert mlp.sweeps == [("mlp/*", None)]
    assert sweep_lanes([0])[0].sweeps == [("cnn/*", [0])]


def test_packer_packs_only_new_finished_runs_per_model(tmp_path):
    profile_dir, out = tmp_path / "results" / "full", tmp_path / "out"
    out.mkdir()
    make_run(profile_dir, "mlp-committed", "cpu")
    (profile_dir / "manifest.json").write_text("{}")
    packer = Packer(profile_dir, out)
    assert packer() == 0 and not list(out.iterdir())
    make_run(profile_dir, "cnn-aaa", "NVIDIA H200")
    (profile_dir / ".cnn-bbb.partial").mkdir()  # still running: not packed
    assert packer() == 1
    make_run(profile_dir, "mlp-new", "NVIDIA H200")
    assert packer() == 2
    with tarfile.open(out / "results-full-mlp.tgz") as tar:
        names = tar.getnames()
    assert "results/full/mlp-new/summary.json" in names and "results/full/manifest.json" in names
    assert not any("committed" in name for name in names)
    assert sorted(p.name for p in out.iterdir()) == ["results-full-cnn.tgz", "results-full-mlp.tgz"]


def test_packer_packs_a_committed_run_done_again(tmp_path):
    profile_dir, out = tmp_path / "results" / "full", tmp_path / "out"
    out.mkdir()
    committed = make_run(profile_dir, "mlp-committed", "cpu")
    packer = Packer(profile_dir, out)
    (committed / "summary.json").unlink()  # a sweep publishes a redone run as a new folder
    (committed / "summary.json").write_text(json.dumps({"status": "ok"}))
    assert packer() == 1
    with tarfile.open(out / "results-full-mlp.tgz") as tar:
        assert "results/full/mlp-committed/summary.json" in tar.getnames()


def test_unpack_adds_new_runs_and_keeps_those_on_disk(tmp_path):
    source = tmp_path / "device" / "results" / "full"
    make_run(source, "cnn-aaa", "NVIDIA H200")
    make_run(source, "cnn-bbb", "NVIDIA H200")
    archive = tmp_path / "results-full-cnn.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source.parent, arcname="results")
    results = tmp_path / "here" / "results"
    make_run(results / "full", "cnn-bbb", "cpu")
    outcome = unpack_runs(archive, results)
    assert outcome["added"] == ["full/cnn-aaa"]
    assert len(outcome["kept"]) == 1 and "cnn-bbb" in outcome["kept"][0] and "H200" in outcome["kept"][0]
    assert json.loads((results / "full" / "cnn-bbb" / "env.json").read_text())["device_name"] == "cpu"
    assert sorted(p.name for p in results.iterdir()) == ["full"]  # no temporary folder left


def test_a_truncated_archive_names_itself_and_changes_nothing(tmp_path):
    source = tmp_path / "device" / "results" / "full"
    make_run(source, "cnn-aaa", "NVIDIA H200")
    (source / "cnn-aaa" / "run.ipynb").write_bytes(bytes(range(256)) * 400)
    archive = tmp_path / "results-full-cnn.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source.parent, arcname="results")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    results = tmp_path / "here" / "results"
    with pytest.raises(ValueError, match="results-full-cnn.tgz: cannot unpack"):
        unpack_runs(archive, results)
    assert not (results / "full").exists() and not list(results.iterdir())
