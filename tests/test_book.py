"""The book, built strictly from a smoke sweep on tiny data: every chapter renders its figures,
tables and glued numbers, the run notebooks are linked, a rebuild is cached, and a real
browser loads the pages without an error."""

import functools
import http.server
import json
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from conftest import make_arrays, write_image_folder, write_tar_gz

from lab2.report.build import (CHAPTERS_FILE, DIGEST_FILE, LOG_FILE, RUNS_FOLDER, BookError, build_book,
                               inputs_digest)
from lab2.runs.sweep import sweep

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Every chapter and whether it draws figures; all of them show tables except the run notebook.
CHAPTERS = {
    "intro": False, "layers": False, "mlp": True, "cnn": True, "hyperparameters": True, "mlp_vs_cnn": True,
    "overfitting": True, "original": True, "appendix": False, "provenance": False,
}
# Experiments whose runs the book's results lack, as a partial profile (a sweep under way) does.
LEFT_OUT = ("cnn/narrow_dropout_rate", "mlp/no_batchnorm")
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
        code = build_book("smoke", results_root=root / "results", output_dir=root / "out")
    build_dir = root / "out" / "_build"
    assert code == 0, (build_dir / LOG_FILE).read_text()[-5000:]
    return {"results": root / "results", "swept": root / "swept", "archive": archive, "output": root / "out",
            "html": build_dir / "html", "left_out": left_out, "root": root,
            "chapters": json.loads((build_dir / CHAPTERS_FILE).read_text())}


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(BookError, match="unknown profile 'huge'"):
        build_book("huge", results_root=tmp_path, output_dir=tmp_path)


def test_missing_results_are_refused_naming_the_sweep_to_run(tmp_path):
    with pytest.raises(BookError, match=r"no results for profile 'smoke'.*python -m lab2 sweep --profile smoke"):
        build_book("smoke", results_root=tmp_path, output_dir=tmp_path)
    assert not (tmp_path / "_build").exists()


def test_digest_follows_the_results(tmp_path):
    run_dir = tmp_path / "smoke" / "mlp-1"
    run_dir.mkdir(parents=True)
    (tmp_path / "smoke" / "manifest.json").write_text(json.dumps({"experiments": {}, "runs": [{"run_id": "mlp-1"}]}))
    before = inputs_digest("smoke", tmp_path)
    assert inputs_digest("smoke", tmp_path) == before
    (run_dir / "summary.json").write_text(json.dumps({"status": "ok"}))
    assert inputs_digest("smoke", tmp_path) != before


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


def test_every_run_has_a_page_linked_from_the_provenance_table(built):
    assert (built["html"] / "run.html").is_file()
    manifest = json.loads((built["results"] / "smoke" / "manifest.json").read_text())
    finished = [run["run_id"] for run in manifest["runs"] if run["run_id"] not in built["left_out"]]
    for run_id in finished:
        page = (built["html"] / RUNS_FOLDER / f"{run_id}.html").read_text()
        assert "<img" in page and "Settings" in page and "Environment" in page, run_id  # curves, config, env
        assert f'href="{run_id}.ipynb"' in page  # the notebook stays downloadable
        notebook = built["html"] / RUNS_FOLDER / f"{run_id}.ipynb"
        assert json.loads(notebook.read_text())["cells"], notebook
    provenance = (built["html"] / "provenance.html").read_text()
    assert provenance.count(f'href="{RUNS_FOLDER}/') == len(finished)
    assert '.ipynb"' not in provenance  # runs link to their pages, not to raw notebooks


def test_a_partial_profile_shows_what_is_missing(built):
    assert built["left_out"]
    intro = (built["html"] / "intro.html").read_text()
    assert ">missing</th>" in intro  # the per-model progress table has a column of missing runs
    hyperparameters = (built["html"] / "hyperparameters.html").read_text()
    assert hyperparameters.count(">missing</td>") >= 7  # the narrow CNN's rows, each metric
    original = (built["html"] / "original.html").read_text()
    assert "not measured (runs missing)" in original  # the claims about the left-out runs
    mlp = (built["html"] / "mlp.html").read_text()
    assert "not measured" in mlp


def test_no_page_names_the_build_machine_folders(built):
    from lab2 import PROJECT_ROOT

    folders = (str(PROJECT_ROOT), str(built["root"]))
    hits = [f"{path.relative_to(built['html'])}: {folder}" for path in sorted(built["html"].rglob("*"))
            if path.is_file() and path.suffix in (".html", ".ipynb", ".js", ".txt", ".md", ".json")
            for folder in folders if folder in path.read_text(errors="replace")]
    assert hits == []


def test_every_chapter_executes_as_a_notebook_outside_the_book(built):
    """The build runs each chapter as JupyterLab would (jupytext reads it, nbclient runs it) before
    jupyter-book renders the cached result: a chapter that only works inside the book build fails."""
    assert built["chapters"] == {chapter: None for chapter in CHAPTERS}


def test_an_experiment_added_to_params_appears_in_the_appendix(built, tmp_path):
    from lab2.report.build import BOOK_DIR, execute_chapter
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


def test_rebuild_with_nothing_changed_is_cached(built):
    build_dir = built["output"] / "_build"
    marker = build_dir / "kept"  # gone if the build folder were wiped
    marker.touch()
    assert build_book("smoke", results_root=built["results"], output_dir=built["output"]) == 0
    assert json.loads((build_dir / CHAPTERS_FILE).read_text()) == {}  # no page was executed again
    assert marker.exists()
    assert (build_dir / DIGEST_FILE).read_text().strip() == inputs_digest("smoke", built["results"])


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
            page.click(f"a[href='{run_page}']")  # a run id in a table opens the run's page, with its curves
            page.wait_for_load_state("load")
            assert page.url.endswith(str(run_page)) and page.evaluate("document.images.length") > 0
        finally:
            browser.close()
    assert problems == []
