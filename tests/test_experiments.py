"""The book finds experiments by the role params/ says they play (what they change), never by their names."""

import json

import pytest

from lab2.report import experiments as roles
from lab2.report import results
from lab2.report.experiments import (BASELINE, BATCH_SIZE_GRID, DROPOUT_KIND_GRID, DROPOUT_RATE_GRID, NARROW_DROPOUT_RATE_GRID,
                                     NO_DROPOUT, REPORTED, Role, shown_roles)
from lab2.runs.grid import read_experiments
from lab2.runs.manifest import MANIFEST_FILE


def test_the_report_experiments_in_params_each_have_their_role():
    experiments, _ = read_experiments()
    labels = shown_roles({experiment.id: experiment.fields for experiment in experiments})
    # The CNN's baseline has no dropout, yet "no dropout" (which says dropout_rate: 0.0) is its own role.
    assert labels["cnn/best"] == BASELINE.label and labels["cnn/no_dropout"] == NO_DROPOUT.label
    assert labels["cnn/dropout_kind"] == DROPOUT_KIND_GRID.label
    assert labels["cnn/narrow_dropout_rate"] == NARROW_DROPOUT_RATE_GRID.label
    assert len(labels) == len(experiments)  # every experiment of params/ has a chapter


def test_each_role_has_a_name_and_a_label_of_its_own():
    """The name is the identifier (the CSV's experiment, the facts' keys), the label the reader's words."""
    defined = [value for value in vars(roles).values() if isinstance(value, Role)]
    assert len({role.name for role in defined}) == len({role.label for role in defined}) == len(defined)
    assert set(results.load_reference()["experiment"]) == set(REPORTED)
    assert all(REPORTED[name].name == name for name in REPORTED)


def test_roles_follow_the_declared_fields_not_the_names():
    labels = shown_roles({
        "mlp/p_sweep": {"dropout_rate": [0.0, 0.5]},  # renamed: still the dropout grid
        "mlp/p_sweep_again": {"dropout_rate": [0.1, 0.2]},  # a second in one role: the appendix's
        "mlp/hidden_grid": {"hidden": [256, 512]},  # no chapter shows it: the appendix's
        "mlp/no_dropout": {"dropout_rate": 0.3},  # a name that says one thing, fields another
        "cnn/wide_dropout": {"channels": 512, "dropout_rate": [0.0, 0.5]},
    })
    assert labels == {"mlp/p_sweep": DROPOUT_RATE_GRID.label, "cnn/wide_dropout": NARROW_DROPOUT_RATE_GRID.label}


def test_the_report_s_grid_keeps_its_chapter_and_a_user_s_extra_grid_goes_to_the_appendix():
    """A chapter's role belongs to the experiment that holds the report's values, wherever params/ declares it."""
    experiments, _ = read_experiments()
    definitions = {"mlp/grid_batch_extra": {"batch_size": [64, 128]},
                   **{experiment.id: experiment.fields for experiment in experiments}}
    labels = shown_roles(definitions, results.load_reference())
    assert labels["mlp/grid_batch_size"] == BATCH_SIZE_GRID.label
    assert "mlp/grid_batch_extra" not in labels  # no role: the appendix shows it, with all its settings
    # Without the report's numbers to tell them apart, the first declared keeps the role.
    assert shown_roles(definitions)["mlp/grid_batch_extra"] == BATCH_SIZE_GRID.label


def write_profile(folder, experiments: dict, runs: list) -> None:
    folder.mkdir(parents=True)
    (folder / MANIFEST_FILE).write_text(json.dumps({"profile": "tiny", "experiments": experiments, "runs": runs}))


def test_runs_are_found_by_role_and_the_rest_go_to_the_appendix(tmp_path):
    from lab2.core.config import RunConfig
    from lab2.report.page import uncovered_experiments

    from lab2.core.config import run_id

    configs = {rate: RunConfig(model="mlp", dropout_rate=rate) for rate in (0.0, 0.5)}
    ids = {rate: run_id(config, "test data") for rate, config in configs.items()}
    planned = [{"run_id": ids[rate], "experiments": ["mlp/rates", "mlp/odd"] if rate else ["mlp/rates"],
                "config": config.to_dict()} for rate, config in configs.items()]
    write_profile(tmp_path / "tiny", {"mlp/rates": {"dropout_rate": [0.0, 0.5]}, "mlp/odd": {"hidden": 1024}}, planned)
    runs = results.load_results("tiny", tmp_path).runs
    assert list(results.runs_of(runs, "mlp", DROPOUT_RATE_GRID)["run_id"]) == [ids[0.0], ids[0.5]]
    assert results.runs_of(runs, "cnn", DROPOUT_RATE_GRID).empty
    assert list(results.runs_of(runs, "mlp", "odd")["run_id"]) == [ids[0.5]]
    assert uncovered_experiments(runs) == ["mlp/odd"]


def test_a_manifest_from_an_older_sweep_says_how_to_renew_it(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / MANIFEST_FILE).write_text(json.dumps({"profile": "tiny", "runs": []}))
    with pytest.raises(ValueError, match="older sweep.*--keep-finished"):
        results.load_results("tiny", tmp_path)


def test_every_role_a_chapter_shows_names_a_page_of_the_book():
    from lab2 import PROJECT_ROOT
    from lab2.report.experiments import APPENDIX, CHAPTERS, SHOWN, chapter_of

    for model, roles in SHOWN.items():
        for role in roles:
            assert role in CHAPTERS, role.label  # else its runs' pages would send readers to the appendix
            assert (PROJECT_ROOT / "book" / f"{chapter_of(model, role.label)}.md").is_file(), (model, role.label)
    assert chapter_of("cnn", DROPOUT_RATE_GRID.label) == "hyperparameters" and chapter_of("mlp", BASELINE.label) == "mlp"
    assert chapter_of("mlp", None) == APPENDIX
