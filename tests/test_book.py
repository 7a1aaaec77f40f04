"""The book, built strictly from a smoke sweep on tiny data: every chapter renders its figures,
tables and glued numbers, the run notebooks are linked, a rebuild is cached, a real browser
loads the pages without an error, and the book printed as one PDF reads as the HTML does."""

import functools
import html.parser
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import make_arrays, write_image_folder, write_tar_gz
from test_faults import mount  # noqa: F401 - the fixture: a small tmpfs that fills up

from lab2 import PROJECT_ROOT
from lab2.book.build import (CHAPTERS_FILE, DIGEST_FILE, LOCK_RETRY_S, LOG_FILE, PDF_FOLDER, PRINT_FOLDER,
                             RUNS_FOLDER, BookError, build_book, inputs_digest, page_code_files, pdf_name)
from lab2.book.pdf import CHROMIUM, CHROMIUM_ARGS, MARGINS_MM
from lab2.core.summary import METRICS, OK
from lab2.report import results
from lab2.report.noise import NOT_MEASURED
from lab2.runs.fingerprint import imported_by, project_path
from lab2.runs.locks import try_claim
from lab2.runs.sweep import sweep

POPPLER = shutil.which("pdftotext") and shutil.which("pdftoppm")  # `make poppler` installs Debian's poppler-utils
# Every chapter and whether it draws figures; all of them show tables except the run notebook.
CHAPTERS = {
    "intro": False, "layers": False, "mlp": True, "cnn": True, "hyperparameters": True, "mlp_vs_cnn": True,
    "overfitting": True, "why": True, "original": True, "appendix": False, "provenance": False,
}
# Experiments whose runs the book's results lack, as a partial profile (a sweep under way) does.
LEFT_OUT = ("cnn/narrow_dropout_rate", "mlp/no_batchnorm")
DAMAGED_EXPERIMENT = "mlp/grid_learning_rate"  # the experiment of the run whose metrics.csv the book's results cut off
WIDTHS = (1280, 1920)  # px: the browser windows no table or figure may overflow
# Elements of the main column wider than the column, or clipped by a scrolling box.
OVERFLOWING = """() => {
  const column = document.querySelector("article.bd-article") || document.body;
  const box = column.getBoundingClientRect();
  const right = box.right - parseFloat(getComputedStyle(column).paddingRight) + 1;
  return [...column.querySelectorAll("table, img, figure, svg, div.cell_output, div.output")]
    .filter(element => element.getBoundingClientRect().width > 0)
    .filter(element => element.getBoundingClientRect().right > right ||
                       (element.scrollWidth > element.clientWidth + 1 && getComputedStyle(element).overflowX !== "visible"))
    .map(element => `${element.tagName.toLowerCase()}.${[...element.classList].join(".")}: ` +
                    `${Math.round(element.getBoundingClientRect().width)} px in a ${Math.round(right - box.left)} px column`);
}"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A smoke sweep on a tiny image-folder archive, and the book built from a partial copy of it.

    The copy lacks the runs of LEFT_OUT, as a profile does while its sweep is under way: the
    strict build must render them as missing, not fail.
    """
    root = tmp_path_factory.mktemp("book")
    archive = write_tar_gz(write_image_folder(make_arrays(), root / "images"), root / "cifar10.tar.gz", top="cifar10")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB2_CACHE", str(root / "cache"))  # module scope: conftest's per-test cache does not apply
        assert sweep(profile="smoke", data_dir=archive, results_root=root / "swept", jobs=2) == 0
        shutil.copytree(root / "swept", root / "results")
        manifest = json.loads((root / "results" / "smoke" / "manifest.json").read_text())
        left_out = [run["run_id"] for run in manifest["runs"] if set(run["experiments"]) <= set(LEFT_OUT)]
        for run_id in left_out:
            shutil.rmtree(root / "results" / "smoke" / run_id)
        # One run's metrics.csv cut off mid-row (a copy cut short, a disk that filled): a corrupt run, never a crash.
        damaged = next(run["run_id"] for run in manifest["runs"] if run["experiments"] == [DAMAGED_EXPERIMENT])
        metrics = root / "results" / "smoke" / damaged / "metrics.csv"
        metrics.write_text(metrics.read_text()[:-20])
        # One of them is being executed by a sweep (this test holds its claim) for as long as the book is tested.
        in_flight = try_claim(root / "results" / "smoke" / left_out[0])
        code = build_book("smoke", results_root=root / "results", output_dir=root / "out")
    build_dir = root / "out" / "_build"
    assert code == 0, (build_dir / LOG_FILE).read_text()[-5000:]
    yield {"results": root / "results", "swept": root / "swept", "archive": archive, "output": root / "out",
           "html": build_dir / "html", "left_out": left_out, "damaged": damaged, "root": root,
           "chapters": json.loads((build_dir / CHAPTERS_FILE).read_text())}
    in_flight.release()


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(BookError, match="unknown profile 'huge'"):
        build_book("huge", results_root=tmp_path, output_dir=tmp_path)


def test_missing_results_are_refused_naming_the_sweep_to_run(tmp_path):
    with pytest.raises(BookError, match=r"no results for profile 'smoke'.*python -m lab2 sweep --profile smoke"):
        build_book("smoke", results_root=tmp_path, output_dir=tmp_path)
    assert not (tmp_path / "_build").exists()


def test_digest_follows_the_results(tmp_path):
    run_dir = tmp_path / "smoke" / "mlp-0123456789ab"
    run_dir.mkdir(parents=True)
    (tmp_path / "smoke" / "manifest.json").write_text(json.dumps(
        {"experiments": {}, "runs": [{"run_id": run_dir.name, "experiments": [], "config": {}}]}))
    before = inputs_digest("smoke", tmp_path)
    assert inputs_digest("smoke", tmp_path) == before
    (run_dir / "summary.json").write_text(json.dumps({"status": OK}))
    assert inputs_digest("smoke", tmp_path) != before


def test_the_digest_covers_every_lab2_module_the_pages_import(tmp_path, monkeypatch):
    """The code the pages import is found, not listed: a module they import, however, is in the digest."""
    sources = {project_path(path) for path in page_code_files()}
    # Named by a page (intro.md: lab2.core.train), through lab2's lazy names (mlp.md: build_model), by a
    # module a page imports (lab2.core.layer_check: lab2.core.layers; lab2.core.data_check: lab2.core.fidelity).
    assert {"lab2/__init__.py", "lab2/core/train.py", "lab2/core/models.py", "lab2/core/layers.py",
            "lab2/core/config.py", "lab2/core/data.py", "lab2/core/fidelity.py", "lab2/core/summary.py",
            "lab2/runs/grid.py", "lab2/runs/record.py", "lab2/report/page.py", "lab2/report/tables.py"} <= sources
    # No page imports the build, the sweep or the tools (the code check that trains among them): editing them keeps
    # the executed pages, and building the book trains nothing.
    assert not {source for source in sources if source.startswith(("lab2/book/", "lab2/tools/"))}
    assert not sources & {"lab2/runs/sweep.py", "lab2/runs/executors.py"}

    run_dir = tmp_path / "smoke" / "mlp-0123456789ab"
    run_dir.mkdir(parents=True)
    (tmp_path / "smoke" / "manifest.json").write_text(json.dumps(
        {"experiments": {}, "runs": [{"run_id": run_dir.name, "experiments": [], "config": {}}]}))
    before = inputs_digest("smoke", tmp_path)
    models, read_bytes = PROJECT_ROOT / "lab2" / "core" / "models.py", Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda path: read_bytes(path) + (b"# edited\n" if path == models else b""))
    assert inputs_digest("smoke", tmp_path) != before  # as if models.py was edited


def test_imported_by_follows_lazy_names_and_imports_inside_functions():
    files = {project_path(path) for path in imported_by(["from lab2 import RunConfig", "from lab2.report import findings"])}
    assert "lab2/core/config.py" in files  # resolved on first use by lab2/__init__.py
    assert "lab2/report/predictions.py" in files  # imported inside a function of lab2/report/findings.py
    assert "lab2/core/train.py" not in files and "lab2/runs/fingerprint.py" in files  # only what is imported


@pytest.mark.parametrize("chapter, has_figures", CHAPTERS.items())
def test_every_chapter_renders_its_figures_tables_and_numbers(built, chapter, has_figures):
    html = (built["html"] / f"{chapter}.html").read_text()
    if has_figures:
        assert html.count("<img") > 0
    if chapter != "appendix":  # the appendix has no table when every experiment has its chapter
        assert "<table" in html
    # A cell that raised would show its traceback or error output.
    for sign in ("Traceback", "output traceback", "output error", "ansi-red-fg"):
        assert sign not in html, f"{chapter}: {sign}"
    assert "output stderr" not in html  # no warnings printed by a page
    assert "pasted-text" in html  # glued numbers, rendered into the prose
    assert "{glue:" not in html


class VisibleText(html.parser.HTMLParser):
    """The text a reader sees of a page's article: `text` all of it, `prose` without code blocks."""

    def __init__(self):
        super().__init__()
        self.text, self.prose, self.inside, self.code = [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        self.inside += tag == "article"
        self.code += tag == "pre"

    def handle_endtag(self, tag):
        self.inside -= tag == "article"
        self.code -= tag == "pre"

    def handle_data(self, data):
        if self.inside:
            self.text.append(data)
            if not self.code:
                self.prose.append(data)


def without_tables(page: str) -> str:
    return re.sub(r"<table\b.*?</table>", " ", page, flags=re.S)


def visible(page: str) -> tuple[str, str]:
    """A page's text and prose, with the typographic apostrophes Sphinx sets turned back into plain ones."""
    parser = VisibleText()
    parser.feed(page)
    return tuple(" ".join(parts).replace("\u2019", "'") for parts in (parser.text, parser.prose))


def test_every_run_has_a_page_linked_from_the_provenance_table(built):
    assert (built["html"] / "run.html").is_file()
    manifest = json.loads((built["results"] / "smoke" / "manifest.json").read_text())
    finished = [run["run_id"] for run in manifest["runs"]
                if run["run_id"] not in built["left_out"] and run["run_id"] != built["damaged"]]
    for run_id in finished:
        page = (built["html"] / RUNS_FOLDER / f"{run_id}.html").read_text()
        assert "<img" in page and "Settings" in page and "Environment" in page, run_id  # curves, config, env
        assert f'href="{run_id}.ipynb"' in page  # the notebook stays downloadable
        notebook = built["html"] / RUNS_FOLDER / f"{run_id}.ipynb"
        assert json.loads(notebook.read_text())["cells"], notebook
    for run_id in [*built["left_out"], built["damaged"]]:  # a run that has not finished, or is corrupt, has no page
        assert not (built["html"] / RUNS_FOLDER / f"{run_id}.html").exists()
    provenance = (built["html"] / "provenance.html").read_text()
    table = provenance[provenance.index("<article"):provenance.index("</article>")]  # not the sidebar's links
    assert table.count(f'href="{RUNS_FOLDER}/') == len(finished)
    assert '.ipynb"' not in provenance  # runs link to their pages, not to raw notebooks


def test_a_run_page_is_a_page_of_the_book_showing_what_its_run_used(built):
    """Each run page has the chapters' sidebar and search, links back to the chapters showing its run,
    and shows only the settings its model uses, never None, nor a whole hash, nor the template's defaults."""
    from lab2.report.experiments import chapter_of, shown_roles

    manifest = json.loads((built["results"] / "smoke" / "manifest.json").read_text())
    labels = shown_roles(manifest["experiments"], results.load_reference())
    search_index = (built["html"] / "searchindex.js").read_text()
    pages = 0
    for run in manifest["runs"]:
        run_id, model = run["run_id"], run["config"]["model"]
        if run_id in built["left_out"] or run_id == built["damaged"]:
            continue
        page = (built["html"] / RUNS_FOLDER / f"{run_id}.html").read_text()
        assert "bd-sidebar" in page and 'href="../intro.html"' in page, run_id  # the book's theme and its toc
        assert f'"{RUNS_FOLDER}/{run_id}"' in search_index, run_id
        article = page[page.index("<article"):page.index("</article>")]
        for experiment in run["experiments"]:  # the way back: the chapter showing each of its experiments
            assert f'href="../{chapter_of(model, labels.get(experiment))}.html' in article, (run_id, experiment)
        assert 'href="../provenance.html' in article
        text, prose = visible(page)
        assert "None" not in prose, run_id
        assert re.search(r"[0-9a-f]{40}", text) is None, run_id  # hashes shortened; whole on hover only
        assert "<abbr" in article
        assert text.count("best_val_acc") == 1, run_id  # the summary, once
        assert "papermill replaces this cell" not in text and "# Parameters" not in text  # no parameters cells
        assert text.index("Settings") < text.index("The executed notebook")
        unused = ("channels", "dropout_kind") if model == "mlp" else ("hidden",)
        for field in unused:
            assert f'<span class="pre">{field}</span>' not in article, (run_id, field)
        pages += 1
    assert pages == len(list((built["html"] / RUNS_FOLDER).glob("*.html"))) > 0


def test_a_partial_profile_shows_what_is_missing(built):
    assert built["left_out"]
    intro = (built["html"] / "intro.html").read_text()
    assert ">missing</th>" in intro  # the per-model progress table has a column of missing runs
    # A section without a finished run: one notice, with what is missing and a link to the one place,
    # the introduction's status, that gives the command that makes it.
    _, hyperparameters = visible((built["html"] / "hyperparameters.html").read_text())
    notice = "No run of the CNN's dropout rate grid at another width has finished"
    assert hyperparameters.count(notice) == 1
    assert 'href="intro.html#status"' in (built["html"] / "hyperparameters.html").read_text()
    _, intro_text = visible(intro)
    assert "make sweep PROFILE=smoke ARGS=\"--only 'cnn/*'\"" in re.sub(r"\s+", " ", intro_text)
    original = (built["html"] / "original.html").read_text()
    assert "not judged: the MLP without BatchNorm has no finished run" in original  # claims on the left-out runs
    # A section with some runs: what ran, and one line naming what did not; its sentences wait.
    _, mlp = visible((built["html"] / "mlp.html").read_text())
    assert mlp.count("Not run yet: without BatchNorm") == 1
    assert "With Dropout the test accuracy is" not in mlp
    # No sentence quotes a number whose runs are missing (a table's cell may: it says NOT_MEASURED on purpose).
    for chapter in CHAPTERS:
        _, prose = visible(without_tables((built["html"] / f"{chapter}.html").read_text()))
        for glued in (NOT_MEASURED, "seed(s)", "0 of the 0", "NaN"):
            assert glued not in prose, (chapter, glued)


def test_a_damaged_run_is_shown_once_as_unreadable_naming_its_file(built):
    """The run whose metrics.csv was cut off: every chapter rendered (no traceback, see above), and provenance
    names the run, the file and what is wrong with it, once."""
    _, provenance = visible((built["html"] / "provenance.html").read_text())
    assert "Runs whose folder could not be read (1), with the file at fault" in provenance
    page = (built["html"] / "provenance.html").read_text()
    parser = TableRows()
    parser.feed(page)
    named = [row for row in parser.rows if f"{built['damaged']}/metrics.csv" in row]
    assert len(named) == 1 and "line 3" in named[0][-1], named
    rows = [row for row in parser.rows if built["damaged"] in " ".join(row)]
    assert any("corrupt" in row for row in rows)  # and in the table of every run, its status


def test_the_build_names_a_damaged_run_on_the_terminal(built):
    """What the build prints before the pages run (build.shown_runs_line): the damaged run by its id."""
    from lab2.book.build import shown_runs_line

    line = shown_runs_line("smoke", built["results"])
    assert line.startswith("book of the smoke profile: ") and line.endswith(
        f"; 1 could not be read ({built['damaged']}): the provenance page names the file at fault, "
        "and the next sweep runs it again"), line


def test_a_profile_with_nothing_finished_renders_and_says_what_to_run(built, tmp_path):
    """Every run gone or damaged (each file of a run cut off or garbled, one way per run): the book builds
    through the CLI, its introduction says nothing has finished and what to run, provenance names each file."""
    import itertools
    import sys

    from conftest import DAMAGES, RUN_FILES, damage

    results = shutil.copytree(built["swept"], tmp_path / "results")
    runs = sorted(path for path in (results / "smoke").iterdir() if path.is_dir())
    ways = list(itertools.product(RUN_FILES, DAMAGES))
    damaged = {}
    for run, way in itertools.zip_longest(runs, ways):
        if way is None:
            shutil.rmtree(run)
        else:
            damaged[run.name] = damage(run, *way).name
    done = subprocess.run([sys.executable, "-m", "lab2", "book", "--profile", "smoke", "--results", str(results),
                           "--output", str(tmp_path / "out")], cwd=PROJECT_ROOT, capture_output=True, text=True)
    html_dir = tmp_path / "out" / "_build" / "html"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    # The terminal says it too, naming damaged runs by id: a user who reads only the terminal is told.
    line = next(line for line in done.stdout.splitlines() if line.startswith("book of the smoke profile: "))
    assert re.match(rf"book of the smoke profile: 0 of \d+ runs finished; {len(damaged)} could not be read \(", line), line
    assert "the provenance page names the file at fault, and the next sweep runs them again" in line
    _, intro = visible((html_dir / "intro.html").read_text())
    intro = " ".join(intro.split())
    assert "No run of the smoke profile has finished yet , so no page of this book has a number of it" in intro
    assert "make sweep PROFILE=smoke runs them; then make book PROFILE=smoke builds these pages again" in intro
    parser = TableRows()
    parser.feed((html_dir / "provenance.html").read_text())
    for run_id, name in damaged.items():
        assert any(f"{run_id}/{name}" in row for row in parser.rows), (run_id, name)


class TableRows(html.parser.HTMLParser):
    """The text of every table row of a page, one list of cell texts per row."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def size_of(difference: float, original: float, metric: str) -> str:
    """The size steps the page states: accuracy 0.01 / 0.03 absolute, loss 5 % / 20 % of the original."""
    if "loss" in metric:
        magnitude, steps = abs(difference) / original, (0.05, 0.20)
    else:
        magnitude, steps = abs(difference), (0.01, 0.03)
    return "small" if magnitude < steps[0] else "clear" if magnitude < steps[1] else "large"


def test_the_original_page_shows_the_numbers_recomputed_from_the_run_folders_and_the_csv(built):
    """A sample of "Against the original", recomputed without lab2.report: ours from the runs' summary.json,
    the report's from its CSV, the difference and the verdict, found together in one row of the page."""
    import csv

    from lab2.report.results import REFERENCE_CSV

    folder = built["results"] / "smoke"
    manifest = json.loads((folder / "manifest.json").read_text())
    with open(REFERENCE_CSV, newline="") as handle:
        reference = list(csv.DictReader(handle))
    page = (built["html"] / "original.html").read_text()
    parser = TableRows()
    parser.feed(page)
    rows = [set(row) for row in parser.rows]
    sample = [("mlp", "best", "test_acc"), ("mlp", "best", "train_loss"), ("mlp", "no_dropout", "val_acc"),
              ("cnn", "best", "test_acc"), ("cnn", "no_batchnorm", "test_loss")]
    for model, experiment, metric in sample:
        printed = [row for row in reference
                   if (row["model"], row["experiment"], row["metric"]) == (model, experiment, metric)]
        original = float(printed[0]["value"])
        summaries = [folder / run["run_id"] / "summary.json" for run in manifest["runs"]
                     if f"{model}/{experiment}" in run["experiments"]]
        values = [json.loads(summary.read_text())[metric] for summary in summaries if summary.is_file()]
        assert len(values) == 1, (model, experiment)  # the smoke profile: one seed
        ours = values[0]
        difference = ours - original
        verdict = f"{size_of(difference, original, metric)}; one seed, noise unknown"
        expected = {model.upper(), METRICS[metric].label, f"{original:.4g}", f"{ours:.4f}", f"{difference:+.4f}", verdict}
        assert any(expected <= row for row in rows), (expected, [row for row in rows if f"{ours:.4f}" in row])
    # A number whose runs were left out shows as such, without a difference or verdict.
    assert any({"MLP", METRICS["test_acc"].label, "no_batchnorm", NOT_MEASURED} <= row for row in rows)
    # Each distinct model, setting and metric of the CSV once, and the claims' counts add up.
    distinct = {(row["model"], float(row["dropout_rate"]), int(row["batch_size"]), float(row["learning_rate"]),
                 row["bn"], row["dropout_kind"] if row["model"] == "cnn" else "", row["metric"]) for row in reference}
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert f"{len(distinct)} distinct numbers" in text
    counts = re.search(r"Of (\d+) claims, (\d+) hold, (\d+) do not hold, (\d+) are within seed noise, (\d+) rest on "
                       r"one seed .* and (\d+) are not judged yet", text)
    assert counts, "the claims' counts"
    total, *parts = map(int, counts.groups())
    assert sum(parts) == total
    assert "NaN" not in text and "nan" not in text.split()


def test_no_file_of_the_book_names_the_build_machine_folders(built):
    """Pages, sources, search index and the runs' downloadable notebooks alike."""
    from lab2 import PROJECT_ROOT

    folders = (str(PROJECT_ROOT), str(built["root"]), "/root/", "/work/", "/tmp/", "/home/")
    hits = [f"{path.relative_to(built['html'])}: {folder}" for path in sorted(built["html"].rglob("*"))
            if path.is_file() for folder in folders if folder in path.read_bytes().decode(errors="replace")]
    assert hits == []
    assert list((built["html"] / RUNS_FOLDER).glob("*.ipynb"))


def test_every_chapter_executes_as_a_notebook_outside_the_book(built):
    """The build runs each chapter as JupyterLab would (jupytext reads it, nbclient runs it) before
    jupyter-book renders the cached result: a chapter that only works inside the book build fails."""
    assert built["chapters"] == {chapter: None for chapter in CHAPTERS}


def test_an_experiment_added_to_params_appears_in_the_appendix(built, tmp_path):
    from lab2.book.build import BOOK_DIR, execute_chapter
    from lab2.runs.grid import PARAMS_DIR

    params = shutil.copytree(PARAMS_DIR, tmp_path / "params")
    with open(params / "mlp.yaml", "a") as experiments:
        experiments.write("  big_batch_learning_rate:\n    batch_size: 1000\n    learning_rate: 0.003\n")
    results = shutil.copytree(built["swept"], tmp_path / "results")
    assert sweep(profile="smoke", data_dir=built["archive"], results_root=results, params_dir=params,
                 only="mlp/big_batch_learning_rate", jobs=1) == 0
    env = {"LAB2_PROFILE": "smoke", "LAB2_RESULTS": str(results)}
    error, executed, _ = execute_chapter(BOOK_DIR / "appendix.md", env)
    assert error is None
    shown = json.dumps([cell.get("outputs", []) for cell in executed.cells])
    assert "mlp/big_batch_learning_rate" in shown and "dataframe" in shown and "image/png" in shown  # table, curves
    assert "mlp/big_batch_learning_rate (" in shown  # its one setting, named by the experiment (it once read 'nan')


def test_rebuild_with_nothing_changed_is_cached(built):
    build_dir = built["output"] / "_build"
    marker = build_dir / "kept"  # gone if the build folder were wiped
    marker.touch()
    assert build_book("smoke", results_root=built["results"], output_dir=built["output"]) == 0
    assert json.loads((build_dir / CHAPTERS_FILE).read_text()) == {}  # no page was executed again
    assert marker.exists()
    assert (build_dir / DIGEST_FILE).read_text().strip() == inputs_digest("smoke", build_dir / "results",
                                                                          built["results"])


def test_a_second_build_into_the_same_folder_waits_for_the_first(built):
    """Two builds of one book: the second says once who holds the build folder, waits, then builds (cached here)."""
    import sys

    from lab2.book.build import BUILD_LOCK
    from lab2.runs.locks import try_lock

    build_dir = built["output"] / "_build"
    first = try_lock(build_dir / BUILD_LOCK)  # as a build writing the folder holds it
    assert first is not None
    log_written = (build_dir / LOG_FILE).stat().st_mtime_ns
    try:
        second = subprocess.Popen([sys.executable, "-m", "lab2", "book", "--profile", "smoke", "--results",
                                   str(built["results"]), "--output", str(built["output"])],
                                  cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = second.stdout.readline()
        assert line.startswith(f"another build is writing {build_dir} (") and "pid" in line, line
        assert line.rstrip().endswith("; waiting for it to end"), line
        time.sleep(2 * LOCK_RETRY_S)
        assert second.poll() is None and (build_dir / LOG_FILE).stat().st_mtime_ns == log_written  # it waits
    finally:
        first.release()
    rest = second.communicate(timeout=900)[0]
    assert second.returncode == 0, rest[-3000:]
    assert "waiting for it to end" not in rest and "Traceback" not in rest
    assert (build_dir / LOG_FILE).stat().st_mtime_ns != log_written  # then it built


def test_a_full_disk_while_building_is_one_line_and_the_results_are_untouched(built, tmp_path, mount):
    import sys

    results = shutil.copytree(built["swept"], tmp_path / "results")
    before = {path: path.read_bytes() for path in results.rglob("*") if path.is_file()}
    output = mount(256 * 1024)  # room for less than the snapshot of the results
    done = subprocess.run([sys.executable, "-m", "lab2", "book", "--profile", "smoke", "--results", str(results),
                           "--output", str(output)], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"python -m lab2 book: error: cannot write the book into {output / '_build'} (No space left on device"
        + done.stderr.split("(No space left on device", 1)[1].strip()]
    assert "make room there (or give --output another folder) and build again; the results are untouched" in done.stderr
    assert {path: path.read_bytes() for path in results.rglob("*") if path.is_file()} == before


def test_a_disk_that_fills_while_jupyter_book_writes_the_html_is_one_line(built, tmp_path, mount):
    """The book's caches fit, its HTML does not: jupyter-book's own crash stays in build.log, one line says why."""
    import sys

    room = mount(64 * 2**20)
    shutil.copytree(built["output"] / "_build", room / "_build", symlinks=True,
                    ignore=shutil.ignore_patterns("html", RUNS_FOLDER))
    used = shutil.disk_usage(room).used
    subprocess.run(["mount", "-o", f"remount,size={used + 3 * 2**20}", str(room)], check=True)  # 3 MiB more
    done = subprocess.run([sys.executable, "-m", "lab2", "book", "--profile", "smoke", "--results",
                           str(built["results"]), "--output", str(room)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output and "Exception occurred" not in output, output[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"python -m lab2 book: error: cannot write the book into {room / '_build'} (No space left on device); "
        "make room there (or give --output another folder) and build again; the results are untouched"]


def test_the_intro_names_the_runs_a_sweep_was_executing_while_the_book_was_built(built):
    intro = (built["html"] / "intro.html").read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", intro).split())
    assert f"a sweep was executing 1 run of this profile ({built['left_out'][0]})" in text


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def served(built):
    """The built HTML over http://127.0.0.1 on a free port."""
    handler = functools.partial(QuietHandler, directory=str(built["html"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: `make browser` installs Debian's Chromium")
def test_a_browser_loads_every_page_whole_at_1280_and_1920_px_with_no_error(built, served):
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)  # headless: --headless
        page = browser.new_page()
        page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
                if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        # A request cut short by the page navigating away (index.html redirects at once) is
        # aborted, not broken; a missing file shows up as an HTTP error response instead.
        page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url} ({request.failure})")
                if request.failure != "net::ERR_ABORTED" else None)
        page.on("response", lambda response: problems.append(f"HTTP {response.status}: {response.url}")
                if response.status >= 400 else None)
        try:
            page.goto(f"{served}/index.html")
            page.wait_for_url("**/intro.html")  # index.html redirects to the first chapter
            page.wait_for_load_state("load")
            run_page = sorted((built["html"] / RUNS_FOLDER).glob("*.html"))[0].relative_to(built["html"])
            pages = [f"{chapter}.html" for chapter in CHAPTERS] + ["run.html", str(run_page)]
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                for name in pages:
                    page.goto(f"{served}/{name}", wait_until="load")
                    widths = page.evaluate("Array.from(document.images).map(image => image.naturalWidth)")
                    assert all(width > 0 for width in widths), f"{name}: an image did not load: {widths}"
                    assert len(widths) > 0 or not CHAPTERS.get(name.removesuffix(".html"), False)
                    problems += [f"{name} at {width} px: {element}" for element in page.evaluate(OVERFLOWING)]
            page.goto(f"{served}/provenance.html", wait_until="load")
            page.click(f"article a[href='{run_page}']")  # a run id in a table opens the run's page, with its curves
            page.wait_for_load_state("load")
            assert page.url.endswith(str(run_page)) and page.evaluate("document.images.length") > 0
        finally:
            browser.close()
    assert problems == []


@pytest.mark.parametrize("manifest, message", [
    ("{", "manifest.json: not valid JSON"),
    (json.dumps({"experiments": {}, "runs": [{"run_id": "mlp-0123456789ab", "experiments": []}]}),
     "manifest.json: runs[0] (mlp-0123456789ab) has no config"),
    (json.dumps({"experiments": {}, "runs": [{"run_id": "../../elsewhere/mlp-0123456789ab", "experiments": [],
                                              "config": {}}]}),
     "runs[0].run_id '../../elsewhere/mlp-0123456789ab' is not a run id"),
], ids=["damaged", "no-config", "path-escape"])
def test_a_bad_manifest_is_refused_naming_it_and_nothing_is_written(tmp_path, capsys, manifest, message):
    from lab2.__main__ import main

    results_root = tmp_path / "project" / "results"
    (results_root / "smoke").mkdir(parents=True)
    (results_root / "smoke" / "manifest.json").write_text(manifest)
    elsewhere = tmp_path / "project" / "elsewhere" / "mlp-0123456789ab"
    elsewhere.mkdir(parents=True)
    (elsewhere / "summary.json").write_text(json.dumps({"status": OK}))
    with pytest.raises(SystemExit) as exit_:
        main(["book", "--profile", "smoke", "--results", str(results_root), "--output", str(tmp_path / "out")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["summary.json"]


@pytest.fixture(scope="module")
def printed(built):
    """The same book with its PDF: `build_book(pdf=True)` on the same results and build folder, so the pages
    come from the cache; the HTML is written again with the header's link, and the book printed."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: `make browser` installs Debian's Chromium")
    if not POPPLER:
        pytest.skip("pdftotext or pdftoppm is absent: `make poppler` installs Debian's poppler-utils")
    build_dir = built["output"] / "_build"
    started = time.perf_counter()
    code = build_book("smoke", results_root=built["results"], output_dir=built["output"], pdf=True)
    seconds = time.perf_counter() - started
    logs = [build_dir / LOG_FILE, build_dir / PRINT_FOLDER / "_build" / LOG_FILE]
    assert code == 0, "\n".join(log.read_text()[-3000:] for log in logs if log.is_file())
    pdf = build_dir / PDF_FOLDER / pdf_name("smoke")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = [page.replace("\u2019", "'") for page in text.split("\f")[:-1]]  # pdftotext ends every page with \f
    print(f"book with its PDF built again in {seconds:.0f} s: {len(pages)} pages")
    return {"pdf": pdf, "pages": pages, "text": " ".join(" ".join(pages).split()), "html": build_dir / "html",
            "single": build_dir / PRINT_FOLDER / "_build" / "singlehtml" / "intro.html"}  # the page that was printed


def mlp_best_test_accuracy(results_root: Path) -> str:
    """The smoke profile's MLP best-setting test accuracy, read from its run folder, as the book prints it."""
    folder = results_root / "smoke"
    manifest = json.loads((folder / "manifest.json").read_text())
    (run,) = [run for run in manifest["runs"] if "mlp/best" in run["experiments"]]  # smoke: one seed
    return f"{json.loads((folder / run['run_id'] / 'summary.json').read_text())['test_acc']:.4f}"


def test_the_pdf_opens_with_the_findings_showing_the_mlps_best_test_accuracy_as_the_html_does(built, printed):
    accuracy = mlp_best_test_accuracy(built["results"])
    text, _ = visible((printed["html"] / "intro.html").read_text())
    assert accuracy in text
    opening = " ".join(" ".join(printed["pages"][:2]).split())
    assert accuracy in opening
    assert len(printed["pages"]) >= 20
    # Every chapter on pages of its own, in the book's order; the run pages are left out (their runs are rows
    # of the table of runs).
    first_lines = [next((line.strip() for line in page.splitlines() if line.strip()), "") for page in printed["pages"]]
    starts = [first_lines.index(title) for title in
              ("The layers", "The MLP", "The CNN", "Hyper-parameters", "MLP vs CNN", "Overfitting and early stopping",
               "Against the original report", "Provenance", "References")]
    assert starts == sorted(starts)
    assert "The executed notebook" not in printed["text"]


def test_the_pdfs_figures_and_tables_are_numbered_captioned_and_referred_to(printed):
    for kind in ("Figure", "Table"):
        numbers = [int(number) for number in re.findall(rf"\b{kind} (\d+)\b", printed["text"])]
        assert numbers and sorted(set(numbers)) == list(range(1, max(numbers) + 1)), (kind, sorted(set(numbers)))
        for number in set(numbers):  # each in its caption and in the prose, not only in its caption
            assert numbers.count(number) >= 2, f"{kind} {number} is never referred to"
    assert "Figure 1 The MLP's best setting" in printed["text"]  # a caption says what it shows ...
    assert "runs of the smoke profile, seed 0" in printed["text"]  # ... and from which runs


def test_the_pdfs_references_cite_the_report_cifar10_batchnorm_and_dropout(printed):
    references = printed["text"][printed["text"].rindex("References"):]
    for author in ("Krizhevsky", "Ioffe", "Srivastava", "ANN Lab2 Report"):
        assert author in references, author
    chapters = printed["text"][:printed["text"].rindex("References")]
    for citation in ("(Krizhevsky, 2009)", "(Ioffe and Szegedy, 2015)", "(Srivastava et al., 2014)"):
        assert citation in chapters, citation


class TableHeads(html.parser.HTMLParser):
    """The cells of each table's first row, one list per table."""

    def __init__(self):
        super().__init__()
        self.heads, self.cell, self.rows = [], None, 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.heads.append([])
            self.rows = 0
        elif tag == "tr":
            self.rows += 1
        elif tag in ("td", "th") and self.rows == 1:
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.heads[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def test_no_table_of_the_pdf_runs_off_its_page(printed, tmp_path):
    """A table too wide for the page is cut off at the text column's edge (Chromium clips it there, and what
    it clips is not in the PDF's text), or shrinks the whole page to fit (Chromium's other way out)."""
    from PIL import Image

    # Not cut off: the last column of every table of the page that was printed is in the PDF's text.
    heads = TableHeads()
    heads.feed(printed["single"].read_text())
    raw = subprocess.run(["pdftotext", "-raw", str(printed["pdf"]), "-"], capture_output=True, text=True, check=True)
    text = " ".join(raw.stdout.replace("\u2019", "'").split())
    last_columns = [next(cell for cell in reversed(head) if cell) for head in heads.heads if any(head)]
    assert len(last_columns) > 20 and [column for column in last_columns if column not in text] == []
    # Not shrunk, nothing in the margin: the page that ends the widest table (every number of the report beside
    # ours), rendered as a reader sees it, has its table's box reaching the text column's right edge, and no ink
    # beyond it.
    page = next(number for number, text in enumerate(printed["pages"], 1) if "Every number the report printed" in text)
    dpi = 72
    subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-singlefile", "-f", str(page), "-l", str(page),
                    str(printed["pdf"]), str(tmp_path / "page")], check=True)
    image = Image.open(tmp_path / "page.pgm")
    column_edge = image.width - round(MARGINS_MM["right"] / 25.4 * dpi)
    millimetres = dpi / 25.4
    margin = image.crop((column_edge + round(2 * millimetres), 0, image.width, image.height))
    assert margin.getextrema()[0] > 240, f"page {page}: something is drawn in the right margin"
    edge = image.crop((column_edge - round(6 * millimetres), 0, column_edge, image.height))
    assert edge.getextrema()[0] < 200, f"page {page}: nothing reaches the text column's edge: the page was shrunk"


def test_the_pdf_names_no_machine_folder_and_the_html_header_links_it(built, printed):
    from lab2 import PROJECT_ROOT

    content = printed["pdf"].read_bytes()
    for folder in (str(PROJECT_ROOT), str(built["root"]), "/root/", "/work/", "/tmp/", "/home/", "file://"):
        assert folder not in printed["text"] and folder.encode() not in content, folder
    assert (printed["html"] / printed["pdf"].name).read_bytes() == content
    run_page = sorted((printed["html"] / RUNS_FOLDER).glob("*.html"))[0].relative_to(printed["html"])
    for page, target in (("intro.html", printed["pdf"].name), ("mlp.html", printed["pdf"].name),
                         (str(run_page), f"../{printed['pdf'].name}")):
        html = (printed["html"] / page).read_text()
        header = html[html.index('class="bd-header-article'):html.index("<article")]
        assert f'href="{target}"' in header, page
