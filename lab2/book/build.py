"""Build the book: execute its chapters against one profile's results and write HTML.

`build_book(profile)` runs `jupyter-book build book --builder html -W -n --keep-going` with
$LAB2_PROFILE and $LAB2_RESULTS set for the pages, so any warning (a broken reference, a
page that raises) fails the build. Executed pages are cached by jupyter-cache, keyed on
each page's code only; the cache cannot see the results the pages read, so the build folder
is wiped whenever a digest of those inputs differs from the one stored by the last
successful build. Before jupyter-book runs, the pages missing from the cache are executed
into it in parallel (jupyter-book executes one page at a time).

Every run has a page of its own in the book, `runs/<run_id>.html` (run_pages.py), which
every table naming the run links to, with its executed notebook beside it as
`runs/<run_id>.ipynb`. jupyter-book reads a staged copy of book/ in the build folder: the
book's files linked one by one, the run pages written beside them, and a table of contents
that lists the run pages under the provenance chapter; beside it the rest of the project is
linked, for the pages that include its files (`../lab2/core/layers.py`). So book/ holds no
generated file.

One build at a time writes a build folder: a build holds BUILD_LOCK (lab2.runs.locks) from
its snapshot to its last file, and a second build into the same folder says who holds it and
waits. A lock rather than a work folder per build published by one rename: the folder's
caches (the executed pages, the rendered run pages, Sphinx's environment) are what makes a
rebuild take seconds, and two builds of one book would do the same work twice, cold, only for
one to replace the other; a folder that is not empty cannot be renamed over another in one
step either. Builds into different --output folders run side by side.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml

from lab2 import PROJECT_ROOT
from lab2.core.summary import OK
from lab2.runs import record
from lab2.runs.code_verdict import CODE_CHECK_FILE
from lab2.runs.fingerprint import checkout_run_code, imported_by, project_path
from lab2.runs.grid import PARAMS_DIR, GridError, get_profile
from lab2.runs.locks import lock_holder, try_lock
from lab2.runs.manifest import MANIFEST_FILE, load_manifest
from lab2.runs.record import RESULTS_ROOT, RecordError, profile_dir
from lab2.runs.snapshot import IN_FLIGHT_FILE, snapshot_profile
from lab2.book.run_pages import write_if_changed, write_run_pages
from lab2.report.results import PROFILE_ENV, REFERENCE_CSV, RESULTS_ENV

BOOK_DIR = PROJECT_ROOT / "book"
DIGEST_FILE = ".results-digest"  # in the build folder, written after a successful build
LOG_FILE = "build.log"  # jupyter-book's output, kept in the build folder for when a build fails
RUNS_FOLDER = "runs"  # the run pages and their notebooks, in the staged source and in the HTML
PRINT_FOLDER = "print"  # in the build folder: the book as one HTML page (singlehtml), which is printed
PDF_FOLDER = "pdf"  # in the build folder: the book as one PDF
SOURCE_FOLDER = "source"  # in the build folder: the project's files linked, with the staged book/ jupyter-book reads
TOC_FILE = "_toc.yml"
CONFIG_FILE = "_config.yml"
RUNS_PARENT = "provenance"  # the chapter the run pages are sections of, in the table of contents
CACHE_FOLDER = ".jupyter_cache"  # jupyter-book's default place for it, inside the build folder
CHAPTERS_FILE = "chapters.json"  # in the build folder: the pages last pre-executed outside jupyter-book, and errors
SNAPSHOT_FOLDER = "results"  # in the build folder: the results the pages read, copied at the build's start
RUN_PAGES_CACHE = ".run-pages"  # rendered run pages by content, in the build folder; kept when it is wiped
PAGE_JOBS = 2  # pages executed at once; each is one mostly single-threaded kernel
BUILD_LOCK = ".build.claim"  # in the build folder: held by the build writing it
CRASH_STARTS = ("Traceback (most recent call last):", "Exception occurred:")  # how Python's and Sphinx's reports begin
EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt|Exit)(:|$)")  # 'OSError: [Errno 28] ...'
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FULL_DISK_BYTES = 2**20  # a failed build with less room than this left ran out of it
LOCK_RETRY_S = 2.0  # how often a build waiting for another into the same folder tries again


class BookError(ValueError):
    """A book that cannot be built (unknown profile, no results); the message says what to do."""


class BookFault(BookError):
    """A build that failed on the way (its folder could not be written); the message says what to do."""


def inputs_digest(profile: str, results_root: Path, origin: Path | None = None) -> str:
    """A digest of what the pages read besides their own code: the results, and the code and data they import.

    origin: where the results were snapshotted from, when results_root is a snapshot.
    """
    folder = profile_dir(profile, results_root)
    manifest = load_manifest(profile, results_root)
    digest = hashlib.sha256()

    def add(label: str, content: bytes) -> None:
        digest.update(label.encode() + b"\0" + content + b"\0")

    add("profile", profile.encode())
    add("results", str(profile_dir(profile, origin or results_root).resolve()).encode())
    add("manifest", (folder / MANIFEST_FILE).read_bytes())
    in_flight = folder / IN_FLIGHT_FILE
    add("in flight", in_flight.read_bytes() if in_flight.is_file() else b"")
    for run in manifest["runs"]:
        # The summary and the run's state as read_run finds it, so that a file damaged since the last build counts.
        checked = record.read_run(folder / run["run_id"])
        summary = record.summary_path(folder / run["run_id"])
        add(run["run_id"], (summary.read_bytes() if summary.is_file() else b"") + f"{checked.status}: {checked.damage}".encode())
    verdict = folder / CODE_CHECK_FILE
    add("code check", verdict.read_bytes() if verdict.is_file() else b"")
    # A change to the code the pages import (a figure, a table) or to the reference changes pages whose
    # code did not; so does one to the run code, which provenance compares the runs' and the code check's with;
    # the rest of lab2 (sweeps, benchmarks, this build) does not.
    code = sorted(set(page_code_files() + checkout_run_code()))
    for source in code + sorted(PARAMS_DIR.glob("*.yaml")) + [REFERENCE_CSV]:
        add(project_path(source), source.read_bytes())
    return digest.hexdigest()


def page_code() -> list[str]:
    """The code cells of the executed pages, as the kernel reads them (magics as plain Python)."""
    import jupytext
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager()
    return [python.transform_cell(cell.source) for page in executed_pages()
            for cell in jupytext.read(page).cells if cell.cell_type == "code"]


def page_code_files() -> list[Path]:
    """The lab2 source files the executed pages import, directly or not: computed, so it cannot go stale."""
    try:
        return imported_by(page_code())
    except ImportError as error:
        raise BookError(f"a page's import fails: {error}") from None


def _check_inputs(profile: str, results_root: Path) -> None:
    try:
        get_profile(profile)
    except GridError as error:
        raise BookError(f"--profile: {error}") from None
    manifest = profile_dir(profile, results_root) / MANIFEST_FILE
    if not manifest.is_file():
        raise BookError(f"no results for profile {profile!r}: {manifest} is missing; "
                        f"run `python -m lab2 sweep --profile {profile}` first")
    try:  # a damaged manifest is refused before anything is written (the snapshot reads it again)
        load_manifest(profile, results_root)
    except RecordError as error:
        raise BookError(str(error)) from None


def _book_config() -> dict:
    return yaml.safe_load((BOOK_DIR / CONFIG_FILE).read_text())


def executed_pages() -> list[Path]:
    """The MyST notebooks of the table of contents, which the build executes (not plain pages: references.md)."""
    from myst_nb.core.read import is_myst_markdown_notebook

    toc = yaml.safe_load((BOOK_DIR / "_toc.yml").read_text())
    names = [toc["root"]] + [chapter["file"] for chapter in toc.get("chapters", [])]
    pages = [BOOK_DIR / f"{name}.md" for name in names if (BOOK_DIR / f"{name}.md").is_file()]
    return [page for page in pages if is_myst_markdown_notebook(page.read_text())]


def _read_page(path: Path):
    """A page as the notebook myst-nb reads from it (so that its cache key is the same).

    Should the keys ever differ, nothing breaks: jupyter-book misses the cache and executes
    the page itself, only more slowly.
    """
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    return read_myst_markdown_notebook(path.read_text(), MdParserConfig(), path=path)


def execute_chapter(path: Path, env: dict):
    """Execute one chapter as a notebook outside jupyter-book (jupytext + nbclient), as JupyterLab would.

    Returns (the error or None, the executed notebook, seconds); the kernel sees `env` too.
    """
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    started = time.perf_counter()
    notebook = jupytext.read(path)
    # An immediate kernel shutdown saves seconds per page; the notebook is complete by then.
    # No timings in the cells' metadata: jupyter-cache's key covers it, and must match jupyter-book's.
    client = NotebookClient(notebook, timeout=_book_config().get("execute", {}).get("timeout", 600),
                            shutdown_kernel="immediate", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(env={**os.environ, **env})
    except CellExecutionError as error:
        return str(error), notebook, time.perf_counter() - started
    return None, notebook, time.perf_counter() - started


def prewarm_cache(build_dir: Path, env: dict, jobs: int = PAGE_JOBS) -> dict[str, str | None]:
    """Execute the pages jupyter-cache does not hold yet as notebooks (execute_chapter), `jobs` at a time.

    Jupytext reads a page into the same code cells, so the same cache key, as jupyter-book
    does: each page that runs is cached, and jupyter-book renders it without executing it.
    A page that fails is left out: jupyter-book then executes it itself and reports the error.
    Returns {page name: its error or None} for the pages executed, also kept in CHAPTERS_FILE.
    """
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(build_dir / CACHE_FOLDER))
    pending = []
    for page in executed_pages():
        try:
            cache.match_cache_notebook(_read_page(page))
        except KeyError:
            pending.append(page)
    outcomes = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        for page, (error, notebook, seconds) in zip(pending, pool.map(execute_chapter, pending, [env] * len(pending))):
            if error is None:
                cache.cache_notebook_bundle(CacheBundleIn(notebook, str(page), data={"execution_seconds": seconds}),
                                            check_validity=False, overwrite=True)
            outcomes[page.stem] = error
            print(f"pre-executed {page.name} in {seconds:.1f} s" + ("" if error is None else " (failed)"))
    (build_dir / CHAPTERS_FILE).write_text(json.dumps(outcomes, indent=1) + "\n")
    return outcomes


def _link_all(folder: Path, targets: dict[str, Path]) -> None:
    """Make folder/<name> a link to each target, and remove any other link there."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_symlink() and (entry.name not in targets or entry.readlink() != targets[entry.name]):
            entry.unlink()
    for name, target in targets.items():
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(target)


def stage_source(source: Path, run_ids: list[str], config: dict | None = None) -> None:
    """Stage book/ in `source` (its folder RUNS_FOLDER kept): its files linked, a table of contents listing the
    run pages, its configuration with `config`'s values set (nested keys merged); and the project's other files
    linked beside it.

    Links and an unchanged table of contents or configuration keep their files' times, so Sphinx rereads only
    what changed.
    """
    _link_all(source.parent, {path.name: path for path in PROJECT_ROOT.iterdir()
                              if path.name != BOOK_DIR.name and not path.name.startswith(".")})
    _link_all(source, {path.name: path for path in BOOK_DIR.iterdir()
                       if path.name not in ("_build", TOC_FILE, CONFIG_FILE, RUNS_FOLDER)})
    toc = yaml.safe_load((BOOK_DIR / TOC_FILE).read_text())
    parent = next((chapter for chapter in toc["chapters"] if chapter["file"] == RUNS_PARENT), None)
    if parent is None:
        raise BookError(f"book/{TOC_FILE} has no chapter {RUNS_PARENT!r} to list the run pages under")
    if run_ids:
        parent["sections"] = [{"file": f"{RUNS_FOLDER}/{run_id}"} for run_id in run_ids]
    write_if_changed(source / TOC_FILE, "# Written by lab2/book/build.py from book/_toc.yml, with a section "
                     "per run page.\n" + yaml.safe_dump(toc, sort_keys=False))
    write_if_changed(source / CONFIG_FILE, "# Written by lab2/book/build.py from book/_config.yml.\n"
                     + yaml.safe_dump(_merged(_book_config(), config or {}), sort_keys=False))


def _merged(base: dict, changes: dict) -> dict:
    """base with changes' values set, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = _merged(base.get(key) or {}, value) if isinstance(value, dict) else value
    return merged


def _run_logged(command: list[str], env: dict, log_path: Path) -> tuple[int, str | None]:
    """Run command, echoing its output and keeping all of it in log_path; (its exit code, how it crashed or None).

    A crash report (a traceback) is kept in the log but not echoed: build_book says in one line what it was.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    report, unlogged = None, None  # the crash report's lines, once one has begun
    with open(log_path, "w") as log, subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                                      stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            plain = ANSI.sub("", line).strip()  # Sphinx colours its report
            if report is None and plain.startswith(CRASH_STARTS):
                report = []
            if report is None:
                sys.stdout.write(line)
            elif plain:
                report.append(plain)
            if unlogged is None:
                try:
                    log.write(line)
                except OSError as error:  # a full disk: the output is still read to the end, so the build ends
                    unlogged = error
    if unlogged is not None:
        raise unlogged
    if report is None:
        return process.returncode, None
    # The first exception the report names (Sphinx's own; jupyter-book then raises one of its own about it).
    exceptions = [line for line in report if EXCEPTION_LINE.match(line)]
    return process.returncode, (exceptions or report or ["a crash with no message"])[0]


def _out_of_space(folder: Path, message: str) -> bool:
    """Whether a failure was the disk filling up: said so (errno 28, sqlite's "disk is full"), or nearly no room left."""
    said = any(sign in message for sign in ("No space left on device", "[Errno 28]", "disk is full"))
    return said or shutil.disk_usage(folder).free < FULL_DISK_BYTES


def build_book(profile: str, results_root: Path | None = None, output_dir: Path | None = None,
               pdf: bool = False) -> int:
    """Build the HTML book of one profile's results, and with `pdf` the book as one PDF too; 0 when
    every build succeeded without a warning, else the failing one's exit code.

    results_root: the folder holding <profile>/manifest.json (default: results/).
    output_dir: where `_build/` goes (jupyter-book's --path-output; default: book/).
    pdf: also print the book (build_pdf) to `_build/pdf/`, linked from the HTML's header.
    Raises BookError for an unknown profile or missing results, BookFault when the build
    folder cannot be written (a full disk).
    """
    results_root = Path(results_root or RESULTS_ROOT).resolve()
    _check_inputs(profile, results_root)
    build_dir = Path(output_dir or BOOK_DIR).resolve() / "_build"
    try:
        lock = _hold_build_folder(build_dir)
        try:
            return _build(profile, results_root, build_dir, pdf)
        finally:
            lock.release()
    except BookError:
        raise
    except OSError as error:
        where = f": {project_path(Path(error.filename))}" if error.filename else ""
        raise BookFault(f"cannot write the book into {build_dir} ({error.strerror or error}{where}); "
                        "make room there (or give --output another folder) and build again; the results "
                        "are untouched") from None
    except Exception as error:  # noqa: BLE001 - jupyter-cache's sqlite says "database or disk is full", not OSError
        if not _out_of_space(build_dir, str(error)):
            raise
        raise BookFault(f"cannot write the book into {build_dir} (no space left: {str(error).splitlines()[0]}); "
                        "make room there (or give --output another folder) and build again; the results "
                        "are untouched") from None


def _hold_build_folder(build_dir: Path):
    """The build folder's lock for this build; waits, saying so once, while another build holds it."""
    lock = try_lock(build_dir / BUILD_LOCK)
    if lock is None:
        print(f"another build is writing {build_dir} ({lock_holder(build_dir / BUILD_LOCK, 'another build')}); "
              "waiting for it to end", flush=True)
    while lock is None:
        time.sleep(LOCK_RETRY_S)
        lock = try_lock(build_dir / BUILD_LOCK)
    return lock


def shown_runs_line(profile: str, shown_root: Path) -> str:
    """What the book will show, in one line on the terminal: how many runs have finished and, by id, those that
    could not be read (the provenance page names the file at fault), so a damaged run is not found only there."""
    folder = profile_dir(profile, shown_root)
    statuses = {entry["run_id"]: record.read_run(folder / entry["run_id"]).status
                for entry in load_manifest(profile, shown_root)["runs"]}
    finished = sum(status == OK for status in statuses.values())
    damaged = [run_id for run_id, status in statuses.items() if status == record.CORRUPT]
    line = f"book of the {profile} profile: {finished} of {len(statuses)} runs finished"
    if damaged:
        named = ", ".join(damaged[:5]) + (f" and {len(damaged) - 5} more" if len(damaged) > 5 else "")
        line += (f"; {len(damaged)} could not be read ({named}): the provenance page names the file at fault, and "
                 f"the next sweep runs {'it' if len(damaged) == 1 else 'them'} again")
    elif not finished:
        line += ": the pages say so and what to run"
    return line


def _build(profile: str, results_root: Path, build_dir: Path, pdf: bool) -> int:
    """build_book's work, while it holds the build folder."""
    # A sweep may publish runs while the pages execute, one after the other: every page reads
    # one snapshot taken now, and the intro names the runs that were in flight.
    shown_root = build_dir / SNAPSHOT_FOLDER
    try:
        snapshot_profile(profile, results_root, shown_root)
    except RecordError as error:
        raise BookError(str(error)) from None
    print(shown_runs_line(profile, shown_root), flush=True)
    digest = inputs_digest(profile, shown_root, results_root)
    results_root = shown_root
    stored = build_dir / DIGEST_FILE
    if not (stored.is_file() and stored.read_text().strip() == digest):
        # Cached pages were executed against other results (or a build that did not finish).
        # Run pages are cached by their own content, so they stay.
        for child in build_dir.iterdir():
            if child.name not in (RUN_PAGES_CACHE, SNAPSHOT_FOLDER, BUILD_LOCK):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    env = {
        **os.environ, PROFILE_ENV: profile, RESULTS_ENV: str(results_root),
        # The pages' kernels import lab2 from this checkout, installed or not.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }
    prewarm_cache(build_dir, env)
    source = build_dir / SOURCE_FOLDER / BOOK_DIR.name
    notebooks = write_run_pages(profile, results_root, source / RUNS_FOLDER, build_dir / RUN_PAGES_CACHE)
    # The header links the PDF only in a book built with it (book/_templates/pdf-download.html).
    stage_source(source, list(notebooks), {"sphinx": {"config": {"html_context": {
        "pdf_download": pdf_name(profile) if pdf else ""}}}})
    code = _jupyter_book(source, "html", build_dir, env)
    html = build_dir / "html"
    if html.is_dir():
        downloads = html / RUNS_FOLDER
        downloads.mkdir(exist_ok=True)
        for stale in set(downloads.glob("*.ipynb")) - {downloads / notebook.name for notebook in notebooks.values()}:
            stale.unlink()
        for notebook in notebooks.values():
            shutil.copyfile(notebook, downloads / notebook.name)
    if code == 0:
        stored.write_text(digest + "\n")
    if pdf and code == 0:
        code = build_pdf(profile, build_dir, env)
    return code


def _jupyter_book(source: Path, builder: str, build_dir: Path, env: dict) -> int:
    """`jupyter-book build` of the staged `source`, strictly (-W -n), into build_dir (its log beside the output).

    Its crash report stays in the log, named here in one line; a full disk is raised as OSError (build_book).
    """
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(source), "--builder", builder, "-W", "-n", "--keep-going",
               "--path-output", str(build_dir.parent)]
    code, crashed = _run_logged(command, env, build_dir / LOG_FILE)
    if code != 0 and _out_of_space(build_dir, crashed or ""):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if crashed is not None:
        print(f"jupyter-book stopped: {crashed}; its whole output is in {build_dir / LOG_FILE}", flush=True)
    return code


def pdf_name(profile: str) -> str:
    """The PDF's file name, in `_build/pdf/` and beside the HTML pages."""
    return f"lab2-book-{profile}.pdf"


def build_pdf(profile: str, build_dir: Path, env: dict) -> int:
    """Print the book, whose pages the HTML build has executed, to `_build/pdf/`; 0 on success.

    jupyter-book builds it once more as one HTML page (singlehtml), strictly, in PRINT_FOLDER, from a
    staged copy of book/ whose table of contents leaves the run pages out and which reads the HTML
    build's executed pages (its jupyter-cache); Chromium prints that page (lab2/book/pdf.py). The
    PDF is copied beside the HTML pages, where the header's link finds it.
    """
    from lab2.book.pdf import print_pdf

    print_dir = build_dir / PRINT_FOLDER / "_build"
    source = print_dir.parent / SOURCE_FOLDER / BOOK_DIR.name
    # No index.html beside the page: the HTML's (book/_extra) would send the browser to the first chapter.
    stage_source(source, [], {"execute": {"cache": str(build_dir / CACHE_FOLDER)},
                              "sphinx": {"config": {"html_extra_path": []}}})
    started = time.perf_counter()
    code = _jupyter_book(source, "singlehtml", print_dir, env)
    if code != 0:
        return code
    built = time.perf_counter()
    pdf = build_dir / PDF_FOLDER / pdf_name(profile)
    root = yaml.safe_load((BOOK_DIR / TOC_FILE).read_text())["root"]  # singlehtml writes the book as its root page
    printed = print_pdf(print_dir / "singlehtml" / f"{root}.html", pdf)
    zoomed = f", {len(printed.zooms)} scaled to {min(printed.zooms):.0%} or more" if printed.zooms else ""
    print(f"book as one page in {built - started:.1f} s, printed to {pdf.name} in {time.perf_counter() - built:.1f} s "
          f"({printed.links['runs']} run ids linked to the table of runs, {printed.links['unlinked']} links to files "
          f"of the HTML book unlinked; wide tables: {printed.turned} turned to landscape{zoomed})")
    if (build_dir / "html").is_dir():
        shutil.copyfile(pdf, build_dir / "html" / pdf.name)
    return 0
