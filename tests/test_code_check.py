"""Whether a code change can move a committed number: small runs with a recorded commit's code and the checkout's."""

import pandas as pd
import pytest

from lab2.report import code_check


def test_the_checkouts_own_commit_gives_the_same_numbers(image_archive, monkeypatch, tmp_path):
    monkeypatch.setattr(code_check, "OLD_CODE_CACHE", tmp_path / "old-code-cache")
    compared = code_check.check_commit("HEAD", models=("mlp",), data=str(image_archive))
    assert set(compared["model"]) == {"mlp"} and len(compared) == 7
    # The committed core is the checkout's (CI clones it clean): training it again changes nothing.
    assert compared["difference"].abs().max() == 0.0
    assert compared["recorded commit"].between(0, 10).all()


def test_a_commit_not_in_git_is_not_checked_and_says_why(image_archive):
    runs = pd.DataFrame([{"run_id": "mlp-1", "model": "mlp", "code_changed": "lab2/core/train.py"}])
    environments = pd.DataFrame([{"run_id": "mlp-1", "git_commit": "0" * 40}])
    checked = code_check.check_changed_runs(runs, environments, str(image_archive))
    assert checked.loc[0, "outcome"].startswith("not checked: commit 000000000000 is not in this clone's git history")
    assert checked.loc[0, "runs"] == 1 and checked.loc[0, "files that differ"] == "lab2/core/train.py"


def test_runs_with_the_checkouts_code_need_no_check():
    runs = pd.DataFrame([{"run_id": "mlp-1", "model": "mlp", "code_changed": ""}])
    assert code_check.check_changed_runs(runs, pd.DataFrame([{"run_id": "mlp-1", "git_commit": "abc"}])).empty
