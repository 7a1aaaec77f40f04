"""A page per run inside the book: its settings, summary and environment, then its executed notebook.

`write_run_pages` writes each run's page as MyST Markdown, `<run_id>.md` with its figures as
PNG files, into the book's staged source (build.py), where jupyter-book renders it as
`runs/<run_id>.html` with the chapters' theme, sidebar and search. A page links back to the
chapters that show its run, lists only the settings its model uses, shortens hashes (the
whole value shows on hover), shows the summary once, and puts the run's own settings before
the notebook's body, whose papermill parameter cells are left out. The executed notebook is
offered for download beside the page. Paths of the machine that made or built the run are
replaced by project-relative ones, in the page and the download alike, and progress-bar
output is left out. Pages are cached by what they are made of, so a rebuild renders only new
or changed runs.
"""

import base64
import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path

from lab2 import PROJECT_ROOT
from lab2.core.config import FIELD_NAMES, HASHED_ONLY_WHEN_SET, RunConfig
from lab2.core.data import split_source
from lab2.report import results
from lab2.report.experiments import chapter_of, shown_roles
from lab2.report.tables import data_name
from lab2.runs import record
from lab2.runs.fingerprint import SHORT_HASH
from lab2.runs.manifest import load_manifest

PAGE_CODE = Path(__file__).read_bytes()  # part of every page's cache key: this module makes the pages
FILES = (record.NOTEBOOK_FILE, record.CONFIG_FILE, record.SUMMARY_FILE, record.ENVIRONMENT_FILE)
NOTEBOOK_SUFFIX = ".ipynb"  # a cached page's download, beside its Markdown and figures
ALL_EVALUATION_IMAGES = 10_000  # CIFAR-10's test images
MODEL_ONLY = {"hidden": "mlp", "channels": "cnn", "dropout_kind": "cnn"}  # settings only one model uses
HASH = re.compile(r"([0-9a-f]{40,64})(-dirty)?")  # a git commit or a sha256
PAPERMILL_TAGS = {"parameters", "injected-parameters"}  # the template's defaults, and the run's values
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def replacements(results_root: Path, data_source: str = "") -> dict[str, str]:
    """Absolute paths a run's files may name -> what a page shows instead (longest first when applied)."""
    pairs = {str(Path(results_root).resolve()): "results", str(PROJECT_ROOT): "."}
    data_path = split_source(data_source)[1]
    if data_path.startswith("/"):
        pairs[data_path] = Path(data_path).name
        pairs[str(Path(data_path).parent)] = "data"
    return pairs


def sanitize(text: str, pairs: dict[str, str]) -> str:
    """Text with the absolute paths of `pairs` replaced, and those of a run's own folder and data
    (wherever the run was made) named by their place in the project or their file name."""
    for old in sorted(pairs, key=len, reverse=True):
        text = text.replace(old, pairs[old])
    # A run made elsewhere names its folder there: /anywhere/<profile>/.<run-id>.partial -> results/<profile>/<run-id>
    text = re.sub(r'[^"\'\s]*/([\w.-]+)/\.?((?:mlp|cnn)-[0-9a-f]+)(?:\.partial)?', r"results/\1/\2", text)
    # ... and its data by the archive's or folder's name: data_dir = "/anywhere/cifar10.tar.gz"
    return re.sub(r'(data_dir = \\?["\'])/[^"\'\\]*/([^/"\'\\]+)', r"\1\2", text)


def _is_noise(output: dict) -> bool:
    """Progress bars and warnings printed while training: not part of what a run shows."""
    if output.get("output_type") != "stream":
        return output.get("output_type") == "display_data" and "application/vnd.jupyter.widget-view+json" in output.get(
            "data", {})
    text = "".join(output.get("text", ""))
    return output.get("name") == "stderr" or "\r" in text or "it/s]" in text


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def clean_notebook(notebook: dict, pairs: dict[str, str], run_id: str, profile: str) -> dict:
    """The notebook without progress-bar and warning output, its text sanitized (images are left alone)."""
    papermill = notebook.get("metadata", {}).get("papermill", {})
    # Where papermill read and wrote it, wherever that was: the template and the run's folder.
    run_folder = f"results/{profile}/{run_id}"
    for key, value in (("input_path", "book/run.ipynb"), ("output_path", f"{run_folder}/{record.NOTEBOOK_FILE}")):
        if key in papermill:
            papermill[key] = value
    parameters = papermill.get("parameters", {})
    if parameters.get("out_dir"):
        parameters["out_dir"] = run_folder
    if isinstance(parameters.get("data_dir"), str):
        parameters["data_dir"] = Path(parameters["data_dir"]).name
    notebook["metadata"] = json.loads(sanitize(json.dumps(notebook.get("metadata", {})), pairs))
    for cell in notebook.get("cells", []):
        cell["source"] = sanitize(_text(cell.get("source", "")), pairs)
        if "outputs" not in cell:
            continue
        cell["outputs"] = [output for output in cell["outputs"] if not _is_noise(output)]
        for output in cell["outputs"]:
            if "text" in output:
                output["text"] = sanitize(_text(output["text"]), pairs)
            if "traceback" in output:
                output["traceback"] = [sanitize(line, pairs) for line in output["traceback"]]
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/"):
                    output["data"][mime] = sanitize(_text(value), pairs)
    return notebook


def _cell(value: str) -> str:
    """Text for a Markdown table cell: its Markdown and table syntax taken literally."""
    return re.sub(r"([\\`*_\[\]<>|])", r"\\\1", str(value)).replace("\n", " ")


def _code(value: str) -> str:
    """A name as inline code (in a table cell, a bar still needs its backslash)."""
    return "`" + str(value).replace("|", "\\|") + "`"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table of cells already written as Markdown."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _fenced(text: str, language: str = "text") -> str:
    """A code block of `text` whose fence no backtick run inside it can close."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}{language}\n{text.rstrip()}\n{fence}\n"


def hash_abbreviation(value: str) -> str:
    """A git commit or sha256 as its first digits, the whole of it on hover."""
    return f"{{abbr}}`{value[:SHORT_HASH]} ({value})`"


def _value(value) -> str:
    """A setting, metric or environment value as a page shows it (Markdown)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, dict):  # e.g. env.json's fidelity: its fields that are set
        return ", ".join(f"{_code(key)}: {_value(item)}" for key, item in value.items() if item is not None)
    if isinstance(value, list):
        return ", ".join(_value(item) for item in value)
    hashed = HASH.fullmatch(value) if isinstance(value, str) else None
    if hashed:  # a commit may end in -dirty
        return hash_abbreviation(hashed[1]) + (hashed[2] or "")
    return _cell(value)


def settings_rows(config: dict) -> list[tuple[str, str, str]]:
    """(setting, value, meaning) of the settings the run's model uses; sizes left unset say what they mean."""
    helps = {field.name: field.metadata.get("help", "") for field in dataclasses.fields(RunConfig)}
    unset_sizes = {"train_size": f"all {results.TRAINING_IMAGES:,}", "eval_size": f"all {ALL_EVALUATION_IMAGES:,}"}
    rows = []
    for name in FIELD_NAMES:
        value = config.get(name, HASHED_ONLY_WHEN_SET.get(name))
        if MODEL_ONLY.get(name, config.get("model")) != config.get("model"):
            continue
        if name in HASHED_ONLY_WHEN_SET and value == HASHED_ONLY_WHEN_SET[name]:
            continue  # the images as read: one row for both, below
        if value is None:
            shown = unset_sizes.get(name, "unset")
        else:
            shown = f"{value:g}" if isinstance(value, float) else _value(value)
        rows.append((_code(name), shown, _cell(helps[name])))
    if all(config.get(name, default) == default for name, default in HASHED_ONLY_WHEN_SET.items()):
        rows.append(("images", "as read", "no JPEG re-encoding (`jpeg_quality`), no added noise (`pixel_noise`)"))
    return rows


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    """(metric, value) of summary.json, metrics in the book's order; the page's first lines give status and error."""
    order = {key: i for i, key in enumerate((*results.METRICS, "best_epoch", "num_parameters", "seconds"))}
    keys = sorted((key for key, value in summary.items() if key not in ("status", "error") and value is not None),
                  key=lambda key: (order.get(key, len(order)), key))
    return [(_code(key), f"{summary[key]:,.1f}" if key == "seconds" else _value(summary[key])) for key in keys]


def environment_rows(environment: dict, pairs: dict[str, str]) -> list[tuple[str, str]]:
    """(field, value) of env.json, without the code fingerprint (a table of its own) or unset fields."""
    rows = []
    for key, value in environment.items():
        if key == "code_fingerprint" or value is None:
            continue
        if isinstance(value, str):
            value = data_name(value) if key == "data_source" else sanitize(value, pairs)
        rows.append((_code(key), _value(value)))
    return rows


def code_rows(environment: dict) -> list[tuple[str, str]]:
    """(file, sha256) of the code that computed the run, as env.json recorded it."""
    return [(_code(path), hash_abbreviation(digest)) for path, digest in environment.get("code_fingerprint", {}).items()]


def _is_summary(cell: dict) -> bool:
    """Whether a cell shows the run's summary, which the page shows above the notebook instead."""
    return any(output.get("output_type") == "execute_result"
               and all(metric in _text(output.get("data", {}).get("text/plain", "")) for metric in results.METRICS)
               for output in cell.get("outputs", []))


def _is_heading(cell: dict) -> bool:
    return cell.get("cell_type") == "markdown" and re.fullmatch(r"#+ [^\n]*\n?", _text(cell["source"])) is not None


def notebook_body(notebook: dict, run_id: str) -> tuple[str, dict[str, bytes]]:
    """The notebook's cells as Markdown (headings two levels down, under the page's own), and its figures as PNGs."""
    cells = [cell for cell in notebook.get("cells", [])
             if not PAPERMILL_TAGS & set(cell.get("metadata", {}).get("tags", []))]
    summaries = [i for i, cell in enumerate(cells) if _is_summary(cell)]
    dropped = set(summaries) | {i - 1 for i in summaries if i > 0 and _is_heading(cells[i - 1])}
    parts, figures = [], {}
    for cell in (cell for i, cell in enumerate(cells) if i not in dropped):
        source = _text(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            parts.append(re.sub(r"^(#{1,4}) ", r"\1## ", source, flags=re.MULTILINE) + "\n")
            continue
        if cell.get("cell_type") != "code":
            continue
        parts.append(_fenced(source, "python"))
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(_fenced(_text(output["text"])))
            elif output.get("output_type") == "error":
                traceback = ANSI.sub("", "\n".join(output.get("traceback", [])))
                parts.append(_fenced(traceback or f"{output.get('ename')}: {output.get('evalue')}"))
            elif "image/png" in output.get("data", {}):
                name = f"{run_id}-{len(figures) + 1}.png"
                figures[name] = base64.b64decode(_text(output["data"]["image/png"]))
                parts.append(f"![Figure {len(figures)} of run {run_id}]({name})\n")
            elif "text/plain" in output.get("data", {}):
                parts.append(_fenced(_text(output["data"]["text/plain"])))
    return "\n".join(parts), figures


def _shown_in(model: str, experiments: list[str], labels: dict[str, str]) -> list[tuple[str, str, str]]:
    """(experiment, role, chapter link) of each experiment the run belongs to."""
    return [(_code(experiment), _cell(labels.get(experiment) or "none: shown in the appendix"),
             f"[](../{chapter_of(model, labels.get(experiment))}.md)") for experiment in experiments]


def render(run: record.RunRecord, run_id: str, pairs: dict[str, str], profile: str,
           shown_in: list[tuple[str, str, str]]) -> tuple[str, dict[str, bytes], str]:
    """(the page's MyST Markdown, its figures by file name, the sanitized notebook JSON) of one run read by read_run."""
    notebook = clean_notebook(json.loads(run.notebook.read_text()), pairs, run_id, profile)
    config, summary, environment = run.config, run.summary, run.environment
    body, figures = notebook_body(notebook, run_id)
    status = summary.get("status", record.MISSING)
    error = _fenced(sanitize(str(summary["error"]), pairs)) if summary.get("error") else ""
    code = (_table(("file", "sha256"), code_rows(environment)) if environment.get("code_fingerprint")
            else "Not recorded: the run was made before runs recorded their code.\n")
    page = f"""# Run {run_id}

The {config.get("model", "").upper()} with the settings below, seed {config.get("seed")}: **{_cell(status)}**.
<a href="{run_id}{NOTEBOOK_SUFFIX}" download>Download its executed notebook (.ipynb)</a>.
Every run is listed in [](../provenance.md).

{error}
The experiments of `params/` it belongs to, and the chapter that shows each:

{_table(("experiment", "role", "shown in"), shown_in)}
## Settings

The settings its model uses (`config.json`):

{_table(("setting", "value", "meaning"), settings_rows(config))}
## Summary

{_table(("metric", "value"), summary_rows(summary))}
## Environment

Where it ran (`env.json`; hashes shortened, the whole value on hover):

{_table(("field", "value"), environment_rows(environment, pairs))}
The code that computed it, by the sha256 of each file:

{code}
## The executed notebook

As papermill executed it with the settings above, without progress bars.

{body}"""
    return page, figures, json.dumps(notebook, indent=1)


def _cache_key(run_dir: Path, pairs: dict[str, str], profile: str, shown_in) -> str:
    digest = hashlib.sha256(PAGE_CODE + json.dumps([pairs, profile, shown_in], sort_keys=True).encode())
    for name in FILES:
        path = run_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()[:24]


def write_if_changed(path: Path, content: bytes | str) -> None:
    """Leave a file that already holds `content` untouched, so that Sphinx sees it unchanged."""
    content = content.encode() if isinstance(content, str) else content
    if not (path.is_file() and path.read_bytes() == content):
        path.write_bytes(content)


def write_run_pages(profile: str, results_root: Path, destination: Path, cache_dir: Path) -> dict[str, Path]:
    """Write destination/<run_id>.md and its figures for every run with a notebook (and not corrupt: provenance lists
    those), and remove any other file there.

    Returns {run_id: its sanitized notebook} for the downloads, in run-id order. Pages no run
    of this build uses leave the cache.
    """
    manifest = load_manifest(profile, results_root)
    pairs = replacements(results_root, manifest.get("data_source", ""))
    labels = shown_roles(manifest.get("experiments", {}), results.load_reference())
    folder = record.profile_dir(profile, results_root)
    destination.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    notebooks, kept = {}, set()
    for run in sorted(manifest["runs"], key=lambda run: run["run_id"]):
        run_id, run_dir = run["run_id"], folder / run["run_id"]
        read = record.read_run(run_dir)
        if read.notebook is None:
            continue
        shown_in = _shown_in(run["config"]["model"], run["experiments"], labels)
        cached = cache_dir / _cache_key(run_dir, pairs, profile, shown_in)
        if not (cached / f"{run_id}{NOTEBOOK_SUFFIX}").is_file():
            page, figures, notebook = render(read, run_id, pairs, profile, shown_in)
            shutil.rmtree(cached, ignore_errors=True)
            staging = cached.with_name(cached.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            (staging / f"{run_id}.md").write_text(page)
            for name, content in figures.items():
                (staging / name).write_bytes(content)
            (staging / f"{run_id}{NOTEBOOK_SUFFIX}").write_text(notebook)
            staging.rename(cached)  # whole or not at all
        for file in cached.iterdir():
            if file.suffix != NOTEBOOK_SUFFIX:
                write_if_changed(destination / file.name, file.read_bytes())
                kept.add(file.name)
        notebooks[run_id] = cached / f"{run_id}{NOTEBOOK_SUFFIX}"
    for stale in destination.iterdir():
        if stale.name not in kept:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    used = {path.parent.name for path in notebooks.values()}
    for entry in cache_dir.iterdir():
        if entry.name not in used:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return notebooks
