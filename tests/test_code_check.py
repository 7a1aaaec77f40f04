"""The code check: small runs with a recorded commit's code and the checkout's, its verdict stored with the results,
and the provenance page's reading of it (missing, current, stale, damaged), which trains nothing."""

import json
import subprocess

import pytest
from conftest import run_name, write_run, written_config

from lab2 import PROJECT_ROOT
from lab2.__main__ import main
from lab2.runs import code_verdict, record
from lab2.runs.fingerprint import checkout_run_code, code_fingerprint
from lab2.runs.manifest import load_manifest, write_manifest
from lab2.runs.snapshot import snapshot_profile
from lab2.tools.code_check import COMPARED

PROFILE = "tiny"
OTHER_CODE = {"lab2/core/train.py": "0" * 64}  # a fingerprint that differs from any checkout's


def head() -> str:
    return subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def write_profile(root, commits: dict, code: dict = OTHER_CODE):
    """Results of PROFILE under root: a finished MLP run per {seed: recorded commit}, each recorded with `code`."""
    folder = record.profile_dir(PROFILE, root)
    entries = []
    for seed, commit in commits.items():
        config = written_config("mlp", seed)
        write_run(folder / run_name("mlp", seed), config, {"git_commit": commit, "code_fingerprint": code})
        entries.append({"run_id": run_name("mlp", seed), "experiments": ["mlp/best"], "config": config.to_dict()})
    write_manifest(folder, {"profile": PROFILE, "data_source": "image-folder:/nowhere", "seeds": list(commits),
                            "experiments": {"mlp/best": {}}, "runs": entries})
    return folder


def stored(folder) -> code_verdict.StoredCheck:
    return code_verdict.stored_check(folder, load_manifest(PROFILE, folder.parent))


def code_check(root, data) -> int:
    return main(["code-check", "--profile", PROFILE, "--results", str(root), "--data-dir", str(data)])


def test_the_verdict_is_stored_with_the_results_and_read_as_current_then_stale(tmp_path, image_archive, capsys,
                                                                             monkeypatch):
    folder = write_profile(tmp_path, {0: head()})
    before = stored(folder)
    assert before.state == code_verdict.MISSING and before.rows == [
        {"commit": head(), "runs": 1, "files that differ": "lab2/core/train.py", "largest difference": None,
         "outcome": "not checked yet"}]

    # The recorded commit is this checkout's HEAD: its code trains the same numbers as the checkout's (CI clones clean).
    assert code_check(tmp_path, image_archive) == 0
    assert f"commit {head()[:12]} (runs: 1, mlp): the same numbers: the change does not move them" in capsys.readouterr().out
    verdict = json.loads((folder / code_verdict.CODE_CHECK_FILE).read_text())
    checked = verdict["commits"][head()]
    assert checked["largest_difference"] == 0.0 and {row["metric"] for row in checked["differences"]} == set(COMPARED)
    assert all(0 <= row["checkout"] <= 10 for row in checked["differences"])
    assert verdict[code_verdict.CHECKED_CODE] == code_fingerprint(checkout_run_code())
    now = stored(folder)
    assert now.state == code_verdict.CURRENT and now.rows[0]["largest difference"] == 0.0 and not now.reasons

    # The book's snapshot carries the verdict, so the page reads the one its build started with.
    snapshot_profile(PROFILE, tmp_path, tmp_path / "snapshot")
    assert (record.profile_dir(PROFILE, tmp_path / "snapshot") / code_verdict.CODE_CHECK_FILE).read_bytes() == (
        folder / code_verdict.CODE_CHECK_FILE).read_bytes()

    # The checkout's run code edited since: stale, naming the file.
    with monkeypatch.context() as edit:
        edit.setattr(code_verdict, "code_fingerprint", lambda files: {**code_fingerprint(files), "lab2/core/layers.py": "x"})
        edited = stored(folder)
    assert edited.state == code_verdict.STALE and edited.reasons == [
        "the checkout's run code has changed since in lab2/core/layers.py"]
    assert edited.rows[0]["largest difference"] == 0.0  # shown as it was stored

    # Runs of a commit the verdict did not check: stale, naming the commit.
    folder = write_profile(tmp_path / "more", {0: head(), 1: "1" * 40})
    (folder / code_verdict.CODE_CHECK_FILE).write_text(json.dumps(verdict))
    assert stored(folder).reasons == ["the runs of commit 111111111111 were not checked"]

    (folder / code_verdict.CODE_CHECK_FILE).write_text('{"commits": ')
    damaged = stored(folder)
    assert damaged.state == code_verdict.DAMAGED and "code-check.json: not a code check's verdict" in damaged.reasons[0]


def test_a_commit_not_in_git_is_stored_as_not_checked_and_says_why(tmp_path, image_archive, capsys):
    folder = write_profile(tmp_path, {0: "0" * 40})
    assert code_check(tmp_path, image_archive) == 1
    assert "not checked: commit 000000000000 is not in this clone's git history" in capsys.readouterr().out
    (row,) = stored(folder).rows
    assert row["outcome"] == "not checked: commit 000000000000 is not in this clone's git history"
    assert row["runs"] == 1 and row["files that differ"] == "lab2/core/train.py"


def test_runs_with_the_checkouts_code_need_no_check_and_nothing_is_trained(tmp_path, image_archive, capsys):
    folder = write_profile(tmp_path, {0: head()}, code=code_fingerprint(checkout_run_code()))
    assert stored(folder).state == code_verdict.NOT_NEEDED
    assert code_check(tmp_path, image_archive) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert json.loads((folder / code_verdict.CODE_CHECK_FILE).read_text())["commits"] == {}


def test_a_profile_without_results_is_refused_in_one_line(tmp_path, image_archive, capsys):
    with pytest.raises(SystemExit) as stopped:
        code_check(tmp_path, image_archive)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("python -m lab2 code-check: error: No results for profile 'tiny'"), error
    assert not (tmp_path / PROFILE).exists()
