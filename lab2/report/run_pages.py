"""A page per run: each run's executed notebook as an HTML page beside the book.

The page shows the run's settings (config.json), summary (summary.json) and environment
(env.json), then its notebook as papermill executed it (the model, the curves), and links
the notebook itself for download. Paths of the machine that made or built the run are
replaced by project-relative ones, and progress-bar output is left out. Pages are cached by
the content they are made of, so a rebuild renders only new or changed runs.
"""

import functools
import hashlib
import html
import json
import re
from pathlib import Path

import pandas as pd

from lab2 import PROJECT_ROOT
from lab2.report import results
from lab2.report.tables import data_name
from lab2.runs import record

PAGE_VERSION = "3"  # part of every page's cache key: change it when the page's layout changes
FILES = (record.NOTEBOOK_FILE, record.CONFIG_FILE, record.SUMMARY_FILE, record.ENVIRONMENT_FILE)
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.15rem 0.6rem; text-align: left; vertical-align: top; }
td { overflow-wrap: anywhere; }
pre { background: #f6f6f6; padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; }
img { max-width: 100%; height: auto; }
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
nav a { margin-right: 1rem; }
"""


def replacements(results_root: Path, data_source: str = "") -> dict[str, str]:
    """Absolute paths a run's files may name -> what a page shows instead (longest first when applied)."""
    pairs = {str(Path(results_root).resolve()): "results", str(PROJECT_ROOT): "."}
    data_path = data_source.rpartition(":")[2]
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


def clean_notebook(notebook: dict, pairs: dict[str, str]) -> dict:
    """The notebook without progress-bar and warning output, its text sanitized (images are left alone)."""
    notebook["metadata"] = json.loads(sanitize(json.dumps(notebook.get("metadata", {})), pairs))  # papermill's paths
    for cell in notebook.get("cells", []):
        cell["source"] = sanitize(_text(cell.get("source", "")), pairs)
        if "outputs" not in cell:
            continue
        cell["outputs"] = [output for output in cell["outputs"] if not _is_noise(output)]
        for output in cell["outputs"]:
            if "text" in output:
                output["text"] = sanitize(_text(output["text"]), pairs)
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/"):
                    output["data"][mime] = sanitize(_text(value), pairs)
    return notebook


def _key_value_table(values: dict, caption: str) -> str:
    frame = pd.DataFrame({"value": [json.dumps(v) if isinstance(v, (dict, list)) else v for v in values.values()]},
                         index=pd.Index(list(values), name=caption))
    return frame.to_html()


def render(run_dir: Path, run_id: str, pairs: dict[str, str]) -> tuple[str, str]:
    """(HTML page, sanitized notebook JSON) of one run folder."""
    import nbformat

    notebook_text = json.dumps(clean_notebook(json.loads((run_dir / record.NOTEBOOK_FILE).read_text()), pairs), indent=1)
    body, _ = _exporter().from_notebook_node(nbformat.reads(notebook_text, as_version=4))
    config = record.read_json(run_dir / record.CONFIG_FILE)
    summary = record.read_json(run_dir / record.SUMMARY_FILE)
    environment = record.read_json(run_dir / record.ENVIRONMENT_FILE)
    if "data_source" in environment:
        environment["data_source"] = data_name(str(environment["data_source"]))
    status = summary.get("status", "missing")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Run {html.escape(run_id)}</title><link rel="icon" href="../_static/favicon.svg"><style>{STYLE}</style></head>
<body>
<nav><a href="../provenance.html">&larr; Provenance: every run</a><a href="../intro.html">The book</a>
<a href="{html.escape(run_id)}.ipynb" download>Download the executed notebook (.ipynb)</a></nav>
<h1>Run {html.escape(run_id)}</h1>
<p>Status: <strong>{html.escape(str(status))}</strong>. The run's settings, its summary and where it ran, then its
notebook as it was executed.</p>
<h2>Settings</h2>{_key_value_table(config, "setting")}
<h2>Summary</h2>{_key_value_table(summary, "metric")}
<h2>Environment</h2>{sanitize(_key_value_table(environment, "field"), pairs)}
<h2>The executed notebook</h2>
{body}
</body></html>
"""
    return page, notebook_text


@functools.cache
def _exporter():
    """One HTML exporter for all pages: making one loads its templates, which takes seconds."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="basic", exclude_input_prompt=True, exclude_output_prompt=True)


def _cache_key(run_dir: Path, pairs: dict[str, str]) -> str:
    digest = hashlib.sha256(PAGE_VERSION.encode() + json.dumps(pairs, sort_keys=True).encode())
    for name in FILES:
        path = run_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()[:24]


def write_run_pages(profile: str, results_root: Path, destination: Path, cache_dir: Path) -> int:
    """Write destination/<run_id>.html and .ipynb for every run with a notebook; how many were written."""
    manifest = results.load_manifest(profile, results_root)
    pairs = replacements(results_root, manifest.get("data_source", ""))
    folder = results.profile_dir(profile, results_root)
    destination.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for run in manifest["runs"]:
        run_dir = folder / run["run_id"]
        if not (run_dir / record.NOTEBOOK_FILE).is_file():
            continue
        key = _cache_key(run_dir, pairs)
        cached_page, cached_notebook = cache_dir / f"{key}.html", cache_dir / f"{key}.ipynb"
        if not (cached_page.is_file() and cached_notebook.is_file()):
            page, notebook = render(run_dir, run["run_id"], pairs)
            cached_notebook.write_text(notebook)
            cached_page.write_text(page)
        (destination / f"{run['run_id']}.html").write_bytes(cached_page.read_bytes())
        (destination / f"{run['run_id']}.ipynb").write_bytes(cached_notebook.read_bytes())
        written += 1
    return written
