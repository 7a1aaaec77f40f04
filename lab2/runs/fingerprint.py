"""Code fingerprints: which lab2 source files a piece of work depends on, and their digests.

Which code matters is said once, in module names: `code_files` turns the lab2 modules a
process has imported into their source files, and the three kinds of work differ only in
the names they count:

- a run: the lab2 core it imported (RUN_CODE), read from its own sys.modules after the run
  (`run_code_files`); the run machinery (lab2.runs), the tools, the book's analysis
  (lab2.report) and its build (lab2.book) schedule, measure, store and show runs but compute
  none of their numbers, so editing them leaves runs cached;
- the book: every lab2 module its pages import, directly or not (`imported_by`, given the
  pages' code), found by following the import statements of lab2's sources;
- a sweep and its Dask workers: the checkout's code they must share, lab2 but the book's
  analysis and build (NOT_SHARED) and the run notebook (`checkout_code_files`).

A fingerprint is {project-relative path: sha256}; env.json keeps a run's.
"""

import ast
import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from lab2 import PROJECT_ROOT

PACKAGE = "lab2"
PACKAGE_DIR = PROJECT_ROOT / PACKAGE
RUN_NOTEBOOK = PROJECT_ROOT / "book" / "run.ipynb"  # the notebook a sweep executes per run
# The code a run's numbers depend on: the lab2 core (and lab2/__init__.py, the package that holds
# it, which resolves lab2's public names).
RUN_CODE = ("lab2.core",)
SHORT_HASH = 12  # hex digits a page shows of a commit or a sha256
NOT_SHARED = ("lab2.report", "lab2.book")  # the book's analysis and its build: a sweep's workers never run them


def within(name: str, packages) -> bool:
    """Whether a module name is one of packages or inside one of them."""
    return any(name == package or name.startswith(package + ".") for package in packages)


def loaded_modules() -> dict[str, str | None]:
    """{module name: its source file or None} of every module this process has imported."""
    return {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}


def code_files(packages, modules: Mapping[str, str | None]) -> list[Path]:
    """The source files of the modules within packages, and of the packages holding them.

    modules: {module name: file} of what a process imported (loaded_modules). Importing a
    module runs the __init__.py of each package above it, so those count too.
    """
    names = set()
    for name in modules:
        if within(name, packages):
            parts = name.split(".")
            names.update(".".join(parts[:length]) for length in range(1, len(parts) + 1))
    return sorted({Path(modules[name]) for name in names if modules.get(name)})


def run_code_files() -> list[Path]:
    """The code a run's numbers depend on, as this process imported it (RUN_CODE).

    Read from sys.modules after the run rather than from a list or an import walk: lab2
    resolves its public names lazily (lab2/__init__.py), so only what was loaded is
    exactly the code that ran.
    """
    return code_files(RUN_CODE, loaded_modules())


def module_name(path: Path) -> str:
    """The module name of a source file of the checkout: lab2/core/layers.py -> lab2.core.layers."""
    return ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__")


def checkout_code_files() -> list[Path]:
    """The code a sweep and its workers must share: lab2 (the book's analysis and build aside) and the run notebook."""
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if not within(module_name(p), NOT_SHARED)) + [RUN_NOTEBOOK]


def checkout_run_code() -> list[Path]:
    """Every file of the run code (RUN_CODE) in the checkout, whether a run imports it or not: the code a run
    trained here now would depend on, which the code check compares older commits' code with."""
    return code_files(RUN_CODE, {module_name(path): str(path) for path in PACKAGE_DIR.rglob("*.py")})


def module_file(name: str) -> Path | None:
    """The source file of a lab2 module or package by its name; None if there is none."""
    path = PROJECT_ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(code: str) -> list[str]:
    """The lab2 modules that the import statements anywhere in `code` load (in functions too).

    `from M import N` loads M and, when N is a module of M, N; a name lab2 resolves lazily on
    first use (`from lab2 import RunConfig`, lab2/__init__.py) loads the module that defines it.
    """
    from lab2 import _EXPORTS

    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names if within(alias.name, (PACKAGE,))]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and within(node.module, (PACKAGE,)):
            names.append(node.module)
            for alias in node.names:
                if module_file(f"{node.module}.{alias.name}"):
                    names.append(f"{node.module}.{alias.name}")
                elif node.module == PACKAGE and alias.name in _EXPORTS:
                    names.append(f"{PACKAGE}.{_EXPORTS[alias.name]}")
    return names


def imported_by(code, packages=(PACKAGE,)) -> list[Path]:
    """The source files of the modules within packages that the import statements in these pieces of
    code load, directly or not.

    Read from the sources, so nothing is listed by hand: each loaded module's own lab2 imports
    are followed, those inside its functions too (a module imported when a page calls a
    function is code the page runs), and so are the names lab2 resolves lazily.
    Raises ImportError for a lab2 module that does not exist.
    """
    pending = [name for piece in code for name in _imported_modules(piece)]
    files = {}
    while pending:
        name = pending.pop()
        if name in files:
            continue
        files[name] = module_file(name)
        if files[name] is None:
            raise ImportError(f"no module named {name!r}")
        parts = name.split(".")
        pending += [".".join(parts[:length]) for length in range(1, len(parts))]  # importing runs each package
        pending += _imported_modules(files[name].read_text())
    return code_files(packages, {name: str(path) for name, path in files.items()})


def project_path(path: Path) -> str:
    """A path relative to the project root when it lies inside it, else absolute: how fingerprints name files."""
    path = Path(path).resolve()
    try:
        return path.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def short_hash(value, digits: int = SHORT_HASH) -> str:
    """A commit or fingerprint cut to `digits` hex digits, keeping a '-dirty' mark: enough to find it."""
    text = str(value)
    if len(text) <= digits + len("-dirty"):
        return text
    return text[:digits] + ("-dirty" if text.endswith("-dirty") else "…")


def file_sha256(path: Path) -> str | None:
    """sha256 of a source file; of a notebook, of its code cells only. None if it is gone."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError:
        return None
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(content)["cells"]
        except (ValueError, KeyError, TypeError):
            return hashlib.sha256(content).hexdigest()
        code = ["".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                for cell in cells if cell.get("cell_type") == "code"]
        content = json.dumps(code).encode()
    return hashlib.sha256(content).hexdigest()


def code_fingerprint(files) -> dict[str, str]:
    """{project-relative path: sha256} of each file."""
    return {project_path(path): file_sha256(path) for path in files}


def changed_code(recorded: dict | None) -> list[str] | None:
    """The fingerprinted files whose content now differs from what was recorded; None if nothing was."""
    if not recorded:
        return None
    return sorted(name for name, digest in recorded.items() if file_sha256(PROJECT_ROOT / name) != digest)
