"""The run record and damaged inputs: code-aware cache, corrupt summaries, claims, truncated archives and caches."""

import json
import shutil

import numpy as np
import pytest
import yaml

from lab2 import PROJECT_ROOT
from lab2.__main__ import main
from lab2.core.config import run_id
from lab2.core.data import load_cifar10
from lab2.core.summary import FAILED, OK
from lab2.report import results
from lab2.runs import record
from lab2.runs.fingerprint import RUN_NOTEBOOK, code_fingerprint
from lab2.runs.grid import plan
from lab2.runs.locks import claim_holder, claim_path, claimed_runs, try_claim
from lab2.runs.manifest import MANIFEST_FILE, write_manifest
from lab2.runs.snapshot import IN_FLIGHT_FILE, runs_in_flight, snapshot_profile
from lab2.runs.staging import publish, stage
from lab2.runs.sweep import sweep
from conftest import DAMAGES, RUN_FILES, damage, write_run
from test_sweep import TINY_EXPERIMENTS, write_params


def fake_finished_runs(params, data, root) -> list:
    """Publish the tiny profile's runs as if a sweep had made them, with today's code fingerprint."""
    profile, runs, experiments = plan("tiny", params)
    fingerprint = load_cifar10(data).fingerprint
    folders = []
    for run in runs:
        folder = record.profile_dir(profile.name, root) / run_id(run.config, fingerprint)
        code = code_fingerprint([PROJECT_ROOT / "lab2" / "core" / "layers.py", RUN_NOTEBOOK])
        folders.append(write_run(folder, run.config, {"code_fingerprint": code}, data_fingerprint=fingerprint))
    write_manifest(record.profile_dir(profile.name, root), {
        "profile": "tiny", "experiments": {experiment.id: experiment.fields for experiment in experiments},
        "runs": [{"run_id": f.name, "experiments": r.experiments, "config": r.config.to_dict()}
                 for f, r in zip(folders, runs)]})
    return folders


def test_changed_code_reruns_and_says_why_unknown_code_stays_cached(tmp_path, image_archive, capsys):
    params = write_params(tmp_path / "params")
    root = tmp_path / "results"
    changed, unknown = fake_finished_runs(params, image_archive, root)
    environment = json.loads((changed / record.ENVIRONMENT_FILE).read_text())
    environment["code_fingerprint"]["lab2/core/layers.py"] = "0" * 64  # as if layers.py was edited since
    (changed / record.ENVIRONMENT_FILE).write_text(json.dumps(environment))
    environment = json.loads((unknown / record.ENVIRONMENT_FILE).read_text())
    del environment["code_fingerprint"]  # a run made before runs recorded their code
    (unknown / record.ENVIRONMENT_FILE).write_text(json.dumps(environment))

    assert sweep("tiny", dry_run=True, data_dir=image_archive, results_root=root, params_dir=params) == 0
    out = capsys.readouterr().out
    assert f"{changed.name}   would run" in out and "[code changed: lab2/core/layers.py]" in out
    assert f"{unknown.name}   cached" in out and "1 cached, 1 to run" in out
    runs = results.load_results("tiny", root).runs.set_index("run_id")
    assert runs.loc[changed.name, "code_changed"] == "lab2/core/layers.py"
    assert runs.loc[unknown.name, "code_changed"] == "unknown"

    # --keep-finished: the changed run stays (the book still names what changed).
    assert sweep("tiny", dry_run=True, data_dir=image_archive, results_root=root, params_dir=params,
                 keep_finished=True) == 0
    assert "2 cached, 0 to run" in capsys.readouterr().out


def test_a_garbled_summary_is_listed_as_corrupt_and_rerun(tmp_path, image_archive, capsys):
    params = write_params(tmp_path / "params")
    root = tmp_path / "results"
    garbled, fine = fake_finished_runs(params, image_archive, root)
    (garbled / record.SUMMARY_FILE).write_text(json.dumps({"status": OK, "test_acc": 0.4})[:-1])  # cut short

    assert sweep("tiny", dry_run=True, data_dir=image_archive, results_root=root, params_dir=params) == 0
    out = capsys.readouterr().out
    assert f"corrupt: {garbled / record.SUMMARY_FILE}: not valid JSON, cut off or garbled" in out
    assert f"{garbled.name}   would run" in out and "[corrupt]" in out and "Traceback" not in out
    runs = results.load_results("tiny", root).runs.set_index("run_id")
    assert runs.loc[garbled.name, "status"] == record.CORRUPT
    assert runs.loc[garbled.name, "corrupt_path"].endswith(f"{garbled.name}/{record.SUMMARY_FILE}")
    assert runs.loc[fine.name, "status"] == OK and runs.loc[fine.name, "code_changed"] == ""
    assert pd_isnull(runs.loc[fine.name, "corrupt_path"])


def pd_isnull(value) -> bool:
    return value is None or value != value


@pytest.fixture(scope="module")
def swept_tiny(tmp_path_factory, image_archive):
    """The tiny profile swept for real (two runs, one epoch each): run folders as a sweep writes them."""
    root = tmp_path_factory.mktemp("swept")
    params = write_params(root / "params")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB2_CACHE", str(root / "cache"))  # module scope: conftest's per-test cache does not apply
        assert sweep("tiny", jobs=2, data_dir=image_archive, results_root=root / "results", params_dir=params) == 0
    return {"params": params, "results": root / "results"}


def sweep_cli(swept, results, data, *extra) -> int:
    return main(["sweep", "--profile", "tiny", "--params", str(swept["params"]), "--results", str(results),
                 "--data-dir", str(data), *extra])


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", RUN_FILES)
def test_a_damaged_run_file_makes_the_run_corrupt_for_the_sweep_and_the_book(swept_tiny, image_archive, tmp_path,
                                                                            capsys, name, how):
    root = shutil.copytree(swept_tiny["results"], tmp_path / "results")
    damaged, kept = sorted(p.name for p in (root / "tiny").iterdir() if record.is_run_id(p.name))
    path = damage(root / "tiny" / damaged, name, how)

    assert sweep_cli(swept_tiny, root, image_archive, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"  corrupt: {path}: " in out and "; the run is executed again" in out and "Traceback" not in out
    assert f"{damaged}   would run" in out and "1 cached, 1 to run" in out
    loaded = results.load_results("tiny", root)  # the book's reader
    runs = loaded.runs.set_index("run_id")
    assert runs.loc[damaged, "status"] == record.CORRUPT
    assert runs.loc[damaged, "corrupt_path"].endswith(f"{damaged}/{name}") and runs.loc[damaged, "damage"]
    assert pd_isnull(runs.loc[damaged, "test_acc"]) and pd_isnull(runs.loc[damaged, "notebook"])
    assert runs.loc[kept, "status"] == OK
    assert set(loaded.epochs["run_id"]) == {kept}
    assert list(loaded.environments["run_id"]) == [kept]


@pytest.mark.parametrize("name", [record.METRICS_FILE, record.CONFIG_FILE])
def test_a_file_from_another_run_disagrees_and_is_named(swept_tiny, image_archive, tmp_path, capsys, name):
    root = shutil.copytree(swept_tiny["results"], tmp_path / "results")
    damaged, other = sorted(p for p in (root / "tiny").iterdir() if record.is_run_id(p.name))
    shutil.copyfile(other / name, damaged / name)
    run = record.read_run(damaged)
    assert run.status == record.CORRUPT and run.damaged_file == damaged / name
    assert "another run" in run.damage or other.name in run.damage
    assert sweep_cli(swept_tiny, root, image_archive, "--dry-run") == 0
    assert f"corrupt: {damaged / name}: " in capsys.readouterr().out


@pytest.mark.parametrize("cut", [1, 3])
def test_a_metrics_file_cut_inside_its_last_number_is_still_cut_off(swept_tiny, tmp_path, cut):
    """A cut that leaves the last row whole in shape ('0.2255' of '0.22550273'): its missing end of line tells."""
    run_dir = shutil.copytree(sorted(p for p in (swept_tiny["results"] / "tiny").iterdir()
                                     if record.is_run_id(p.name))[0], tmp_path / "run")
    metrics = run_dir / record.METRICS_FILE
    metrics.write_text(metrics.read_text()[:-cut])
    run = record.read_run(run_dir, run_dir.name)
    assert run.status == record.CORRUPT and run.damage == "line 2 has no end of line (cut off)"


def test_a_sweep_reruns_a_damaged_run_and_keeps_the_finished_one(swept_tiny, image_archive, tmp_path, capsys):
    root = shutil.copytree(swept_tiny["results"], tmp_path / "results")
    damaged, kept = sorted(p for p in (root / "tiny").iterdir() if record.is_run_id(p.name))
    metrics = damaged / record.METRICS_FILE
    metrics.write_text(metrics.read_text()[:-20])  # a copy cut short mid-row, as the issue found it
    kept_files = {path.name: path.read_bytes() for path in kept.iterdir()}

    assert sweep_cli(swept_tiny, root, image_archive) == 0
    out = capsys.readouterr().out
    assert f"corrupt: {metrics}: line 2 " in out and "1 ran, 1 cached, 0 failed" in out
    assert record.read_run(damaged).status == OK  # repaired
    assert {path.name: path.read_bytes() for path in kept.iterdir()} == kept_files  # untouched


def test_a_claim_is_exclusive_and_released_when_its_holder_ends(tmp_path):
    run_dir = tmp_path / "tiny" / "mlp-0"
    first = try_claim(run_dir)
    assert first is not None and try_claim(run_dir) is None
    assert "pid" in claim_holder(run_dir)
    first.release()
    second = try_claim(run_dir)
    assert second is not None
    second.release()
    assert not claim_path(run_dir).exists()


def test_publish_records_a_run_that_wrote_no_summary_as_failed(tmp_path):
    run_dir = tmp_path / "tiny" / "mlp-1"
    staging = stage(run_dir)
    (staging / record.KERNEL_LOG).write_text("killed\n")
    assert publish(run_dir, 1.0) == FAILED
    assert not staging.exists() and "ended without a summary" in record.read_summary(run_dir)["error"]


def test_a_truncated_archive_is_named_as_incomplete(tmp_path, image_archive, capsys):
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(image_archive.read_bytes()[: image_archive.stat().st_size // 2])
    for command in (["train", "--out", str(tmp_path / "run")], ["sweep", "--profile", "smoke",
                                                                 "--results", str(tmp_path / "results")]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--data-dir", str(truncated)])
        error = capsys.readouterr().err
        assert exit_.value.code == 2 and f"{truncated} is incomplete or damaged" in error and "Traceback" not in error
    assert not (tmp_path / "run").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_decode_cache_is_rebuilt_with_a_warning(pickle_dir, tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("LAB2_CACHE", str(tmp_path / "cache"))
    first = load_cifar10(pickle_dir)
    cache = next((tmp_path / "cache").glob("*.npz"))
    content = bytearray(cache.read_bytes())
    if damage == "truncate":
        content = content[: len(content) // 2]
    else:
        content[len(content) // 2] ^= 0xFF  # one flipped byte inside the image data: its CRC no longer matches
    cache.write_bytes(bytes(content))
    capsys.readouterr()
    again = load_cifar10(pickle_dir)
    assert f"the decode cache {cache} is damaged" in capsys.readouterr().err
    assert again.fingerprint == first.fingerprint and np.array_equal(again.train_images, first.train_images)
    assert cache.is_file() and load_cifar10(pickle_dir).fingerprint == first.fingerprint  # rebuilt


def test_params_read_exponent_floats_as_numbers(tmp_path):
    experiments = json.loads(json.dumps(TINY_EXPERIMENTS))
    params = write_params(tmp_path / "params", experiments)
    text = (params / "mlp.yaml").read_text().replace("batch_size: 50", "batch_size: 50\n  learning_rate: 1e-3")
    (params / "mlp.yaml").write_text(text)
    assert yaml.safe_load(text)["baseline"]["learning_rate"] == "1e-3"  # what YAML 1.1 would give
    runs = plan("tiny", params).runs
    assert {run.config.learning_rate for run in runs} == {0.001}


def test_train_out_must_be_writable_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", str(blocker / "run")])
    assert exit_.value.code == 2 and f"--out: {blocker} is a file" in capsys.readouterr().err


def test_a_snapshot_holds_the_runs_that_ended_and_names_those_in_flight(tmp_path, image_archive):
    root = tmp_path / "results"
    ended, running = fake_finished_runs(write_params(tmp_path / "params"), image_archive, root)
    (running / record.SUMMARY_FILE).unlink()  # being executed: no summary yet
    claim = try_claim(running)
    try:
        in_flight = snapshot_profile("tiny", root, tmp_path / "shown")
    finally:
        claim.release()
    assert list(in_flight) == [running.name] and "pid" in in_flight[running.name]
    shown = record.profile_dir("tiny", tmp_path / "shown")
    assert sorted(p.name for p in shown.iterdir()) == sorted([ended.name, MANIFEST_FILE, IN_FLIGHT_FILE])
    assert runs_in_flight("tiny", tmp_path / "shown") == in_flight
    # The snapshot stays as it was when the run ended and is replaced (a new summary) in the results.
    before = (shown / ended.name / record.SUMMARY_FILE).read_text()
    (ended / record.SUMMARY_FILE).unlink()
    (ended / record.SUMMARY_FILE).write_text(json.dumps({"status": FAILED}))
    assert (shown / ended.name / record.SUMMARY_FILE).read_text() == before
    assert claimed_runs(root / "tiny", [running.name]) == {}  # released: no longer in flight
