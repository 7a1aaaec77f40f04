"""The book of the committed full profile read as a reproduction report: the original's number
beside ours on the chapter pages, missing runs said once, claims judged only on their data.

The numbers are recomputed here from the run folders (config.json, summary.json) and the
original report's CSV, without lab2.report, and looked for on the rendered pages.
"""

import csv
import json
import re
import statistics
from pathlib import Path

import pytest

from lab2 import PROJECT_ROOT
from lab2.book.build import LOG_FILE, build_book
from lab2.core.config import MODELS
from lab2.core.summary import OK
from lab2.report.noise import NOT_MEASURED
from lab2.runs.code_verdict import CODE_CHECK_FILE

FULL = PROJECT_ROOT / "results" / "full"
REFERENCE_CSV = PROJECT_ROOT / "book" / "data" / "original_report_results.csv"
# Each model has a chapter of its own name (lab2.report.experiments.CHAPTERS: "{model}").
CHAPTERS = ("intro", *MODELS, "hyperparameters", "mlp_vs_cnn", "overfitting", "why", "original", "appendix",
            "provenance")
# What a reader must never meet in a chapter's prose: glued placeholders of missing runs. NOT_MEASURED
# too, outside tables (a table's cell of a number without runs says it on purpose).
GLUED_MISSING = ("0 seed(s)", "0 of the 0", "seed(s)")


def files_under(folder: Path) -> dict:
    """{path: (size, modification time)} of everything under folder."""
    return {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*")} if folder.is_dir() else {}


@pytest.fixture(scope="module")
def full_build(tmp_path_factory):
    """The full profile's book, built from the committed results into a folder of its own as on a fresh clone: with an
    empty decode cache and no data (training would need both), and what it wrote under the project's data/."""
    output = tmp_path_factory.mktemp("full-book")
    cache, before = output / "decode-cache", files_under(PROJECT_ROOT / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB2_CACHE", str(cache))
        patch.setenv("LAB2_DATA", str(output / "no-data"))
        code = build_book("full", output_dir=output)
    assert code == 0, (output / "_build" / LOG_FILE).read_text()[-5000:]
    return {"html": output / "_build" / "html", "cache": cache, "data before": before,
            "data after": files_under(PROJECT_ROOT / "data")}


@pytest.fixture(scope="module")
def full_book(full_build):
    return full_build["html"]


def test_the_full_book_trains_nothing_and_writes_nothing_under_data(full_build):
    """`make book PROFILE=full` reads the committed runs: no page trains (a run would decode data into the cache),
    nothing under data/ is written, and provenance shows the code check stored with the results."""
    assert not full_build["cache"].exists()
    assert full_build["data after"] == full_build["data before"]
    text = page_text(full_build["html"], "provenance")
    assert (FULL / CODE_CHECK_FILE).is_file()
    assert re.search(r"The verdict below was stored on|The stored verdict is stale", text), "the stored code check"
    assert "python -m lab2 code-check" in text


def finished_runs() -> list[dict]:
    """Every finished run of the committed full profile: its config and summary, read from its folder."""
    runs = []
    for summary in sorted(FULL.glob("*/summary.json")):
        values = json.loads(summary.read_text())
        if values.get("status") == OK:
            runs.append({**json.loads((summary.parent / "config.json").read_text()), **values})
    return runs


def in_protocol(run: dict) -> bool:
    """A run of the report's protocol: the images as read, standard BatchNorm, the protocol's precision
    (the runs of "Why the numbers differ" that ran on the CPU say fp32)."""
    return (run.get("jpeg_quality") is None and not run.get("pixel_noise") and run.get("precision") == "tf32"
            and run.get("batchnorm_variant", "standard") == "standard")


def ours(model: str, metric: str, **setting) -> tuple[str, int]:
    """Our number for one setting of the report's protocol, as a page prints it: 'mean ± std' (3 digits)."""
    values = [run[metric] for run in finished_runs() if run["model"] == model and in_protocol(run)
              and run["channels"] == 256 and all(run[key] == value for key, value in setting.items())]
    assert values, (model, setting)
    mean = statistics.mean(values)
    text = f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"
    return text, mean


def original(model: str, metric: str, **setting) -> list[float]:
    """The report's distinct values for one setting and metric, from its CSV."""
    keys = {"dropout_rate": float, "batch_size": int, "learning_rate": float, "batchnorm": lambda v: v == "True",
            "dropout_kind": str}
    with REFERENCE_CSV.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["model"] == model and row["metric"] == metric
                and all(keys[key](row["bn" if key == "batchnorm" else key]) == value for key, value in setting.items())]
    values = sorted({float(row["value"]) for row in rows}, key=lambda v: -len(repr(v)))
    # The report printed some runs twice, once rounded: a value that is another one rounded is that one.
    distinct = []
    for value in values:
        decimals = len(repr(value).partition(".")[2])
        if not any(abs(round(kept, decimals) - value) < 1e-12 for kept in distinct):
            distinct.append(value)
    return distinct


def page_text(full_book: Path, chapter: str, tables: bool = True) -> str:
    """A page's visible text, tags removed and whitespace collapsed; its sentences only without `tables`."""
    html = (full_book / f"{chapter}.html").read_text()
    # Scripts, styles and code (the cells' source a reader may unfold) are not the page's prose.
    html = re.sub(rf"<(script|style|pre{'' if tables else '|table'})\b.*?</\1>", " ", html, flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    return text.replace("&#177;", "±").replace("&amp;", "&").replace("\u2019", "'").replace("&#8217;", "'")


BEST_MLP = {"dropout_rate": 0.5, "batch_size": 500, "learning_rate": 0.001, "batchnorm": True}
BEST_CNN = {"dropout_rate": 0.0, "batch_size": 100, "learning_rate": 0.001, "batchnorm": True, "dropout_kind": "2d"}


@pytest.mark.parametrize("chapter, model, metric, setting", [
    ("mlp", "mlp", "train_loss", BEST_MLP),
    ("mlp", "mlp", "test_acc", {**BEST_MLP, "dropout_rate": 0.0}),
    ("cnn", "cnn", "test_acc", BEST_CNN),
    ("hyperparameters", "mlp", "test_acc", {**BEST_MLP, "batch_size": 50}),
    ("hyperparameters", "mlp", "val_loss", {**BEST_MLP, "learning_rate": 0.01}),
    ("mlp_vs_cnn", "cnn", "test_acc", BEST_CNN),
])
def test_a_chapter_shows_the_original_beside_ours_and_the_difference(full_book, chapter, model, metric, setting):
    text = page_text(full_book, chapter)
    shown, mean = ours(model, metric, **setting)
    printed = original(model, metric, **setting)
    assert printed
    report = " / ".join(f"{value:.3f}" for value in printed)
    difference = f"{mean - statistics.mean(printed):+.3f}"
    # In the chapter's table the three stand in one column, in this order, row by row.
    pattern = re.escape(shown) + r".*?" + re.escape(report) + r".*?" + re.escape(difference) + r" \((small|clear|large)"
    assert re.search(pattern, text), f"{chapter}: {shown} / {report} / {difference}"


def test_the_intro_opens_with_the_findings(full_book):
    text = page_text(full_book, "intro")
    shown, _ = ours("mlp", "test_acc", **BEST_MLP)
    findings = text.index("What this reproduction found")
    assert findings < text.index("How to read the numbers") < text.index("Which results these pages show")
    first_screen = text[findings:findings + 2500]
    mean = statistics.mean(run["test_acc"] for run in finished_runs() if run["model"] == "mlp"
                           and all(run[k] == v for k, v in BEST_MLP.items()) and in_protocol(run))
    assert f"{mean:.4f}" in first_screen and f"{statistics.mean(original('mlp', 'test_acc', **BEST_MLP)):.4f}" in first_screen
    assert "training loss higher in" in first_screen
    cnn_finished = sum(run["model"] == "cnn" for run in finished_runs())
    assert f"{cnn_finished} of its 63 runs have finished" in first_screen


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_page_glues_missing_numbers_or_shows_nan_or_empty_tables(full_book, chapter):
    html = (full_book / f"{chapter}.html").read_text()
    text = page_text(full_book, chapter)
    for phrase in GLUED_MISSING:
        assert phrase not in text, f"{chapter}: {phrase!r}"
    assert NOT_MEASURED not in page_text(full_book, chapter, tables=False), chapter
    assert not re.search(r"\bNaN\b|\bnan\b|\bNone\b", text), chapter
    for body in re.findall(r"<tbody>(.*?)</tbody>", html, flags=re.S):
        assert "<tr" in body, f"{chapter}: a table without rows"


def test_what_has_not_run_is_said_per_section_and_what_it_takes_once_in_the_book(full_book):
    """Each section names its missing settings and seeds and links to the introduction's status, the one
    place that gives the CNN's cost and the command that makes its runs."""
    text = page_text(full_book, "hyperparameters")
    assert text.count("Not run yet") >= 3
    assert text.count("what making them takes") == text.count("Not run yet")
    assert "No run of the CNN's dropout rate grid at another width has finished (15 runs planned" in text
    pages = {chapter: page_text(full_book, chapter, tables=False) for chapter in CHAPTERS}
    assert [chapter for chapter, said in pages.items() if "A run of this profile takes" in said] == ["intro"]
    assert [chapter for chapter, said in pages.items() if "make sweep PROFILE=full" in said] == ["intro"]


def test_every_show_code_toggle_has_an_output_under_it(full_book):
    """A cell whose source a reader may unfold shows something: one that only glues is removed whole."""
    for chapter in CHAPTERS:
        html = (full_book / f"{chapter}.html").read_text()
        for cell in re.split(r'(?=<div class="cell tag_)', html)[1:]:
            if cell.startswith('<div class="cell tag_hide-input'):
                assert '<div class="cell_output' in cell.split('<div class="cell tag_', 2)[1], chapter


def test_numbers_are_never_printed_as_a_signed_zero_or_a_zero_spread(full_book):
    for chapter in CHAPTERS:
        text = page_text(full_book, chapter)
        assert not re.search(r"-0\.0+\b(?!\d)|± 0\.0+\b(?!\d)", text), chapter


def test_claims_are_judged_only_on_their_data(full_book):
    text = page_text(full_book, "original")
    claim = re.search(r"The CNN's best batch size is 100(.{0,400})", text)
    assert claim and "not judged" in claim.group(1)


# The lost-detail prediction (book/data/predictions.yaml): the settings it names, as changes of the best MLP.
PREDICTED_SETTINGS = [{"dropout_rate": 0.1}, {"dropout_rate": 0.3}, {"batch_size": 50}, {"batch_size": 100},
                      {"batch_size": 200}, {"learning_rate": 0.01}, {"learning_rate": 0.0005},
                      {"learning_rate": 0.0001}, {"batchnorm": False}]
PREDICTED_METRICS = ("train_loss", "train_acc", "val_loss")


def with_noise(level: float, metric: str, **setting) -> list[float]:
    """The metric of the finished runs with fixed pixel noise at `level` at one MLP setting, from their folders."""
    return [run[metric] for run in finished_runs() if run["model"] == "mlp" and run.get("pixel_noise") == level
            and run.get("jpeg_quality") is None and run.get("batchnorm_variant", "standard") == "standard"
            and all(run[key] == value for key, value in setting.items())]


def agrees(values: list[float], metric: str, **setting) -> bool | None:
    """The book's rule, written out again: a difference from the report is small, or within two standard
    errors (the report's runs as noisy as one seed); None when fewer than two seeds cannot tell."""
    printed = original("mlp", metric, **setting)
    report = statistics.mean(printed)
    if not values:
        return None
    difference = statistics.mean(values) - report
    size = abs(difference) / report if "loss" in metric else abs(difference)
    if size < (0.05 if "loss" in metric else 0.01):
        return True
    if len(values) < 2:
        return None
    return abs(difference) <= 2 * statistics.stdev(values) * (1 / len(values) + 1 / len(printed)) ** 0.5


def test_the_why_page_states_its_predictions_before_their_outcomes_recomputed_from_the_run_folders(full_book):
    text = page_text(full_book, "why")
    stated = text.index("Calibration rule, on the best setting alone")
    assert stated < text.index("The rule chooses") < text.index("predictions held")
    assert "share" not in page_text(full_book, "why", tables=False)  # no straight-line JPEG share
    # The calibration: the lowest noise level at which the best setting's three numbers agree with the report's.
    levels = sorted({run["pixel_noise"] for run in finished_runs() if run.get("pixel_noise")})
    level = next(level for level in levels
                 if all(agrees(with_noise(level, metric, **BEST_MLP), metric, **BEST_MLP) for metric in PREDICTED_METRICS))
    assert f"The rule chooses {level:g} grey levels" in text
    held = 0
    for changes in PREDICTED_SETTINGS:
        setting = {**BEST_MLP, **changes}
        for metric in PREDICTED_METRICS:
            values = with_noise(level, metric, **setting)
            held += agrees(values, metric, **setting) is True
            if len(values) > 1:  # a sample of the table: every number with its seeds, as the page prints it
                assert f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" in text, (changes, metric)
    assert f"{held} of 27 predictions held" in text


def test_the_why_page_shows_each_batchnorm_variant_beside_standard_batchnorm_on_the_same_cpu(full_book):
    text = page_text(full_book, "why")
    def same_device_standard(run: dict, batch_size: int) -> bool:
        """A run of standard BatchNorm on the images as read, in fp32 (the CPU's), at the best setting but its batch."""
        return (run["model"] == "mlp" and run.get("batchnorm_variant", "standard") == "standard"
                and run.get("precision") == "fp32" and run.get("jpeg_quality") is None and not run.get("pixel_noise")
                and run["batch_size"] == batch_size and run["dropout_rate"] == 0.5 and run["batchnorm"])

    for variant in ("momentum_swapped", "running_in_training"):
        for batch_size in (50, 500):
            # The seeds both sides have finished: the page pairs them (same weights, batches and dropout masks).
            paired = {run["seed"] for run in finished_runs() if same_device_standard(run, batch_size)}
            values = [run["train_loss"] for run in finished_runs() if run.get("batchnorm_variant") == variant
                      and run["batch_size"] == batch_size and run["seed"] in paired]
            if len(values) > 1:
                assert f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" in text, (variant, batch_size)
    assert len(re.findall(r"\d+ of 16 predicted changes held", text)) == 2


def test_protocol_statistics_count_the_protocol_runs_only(full_book):
    protocol = [run for run in finished_runs() if in_protocol(run)]
    assert len(protocol) < len(finished_runs())  # the departures exist, and are left out below
    overfitting = page_text(full_book, "overfitting")
    assert re.search(rf"\(\s*{len(protocol)} runs of up to 50 epochs\)", overfitting)
    assert f"minus over all epochs, over {len(protocol)} runs" in page_text(full_book, "original")
