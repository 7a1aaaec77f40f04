"""Code fingerprints: which lab2 source files a piece of work depends on, and their digests.

Which code matters is said once, in module names: `code_files` turns the lab2 modules a
process has imported into their source files, and the three kinds of work differ only in
the names they count:

- a run: the lab2 core it imported (RUN_CODE), read from its own sys.modules after the run
  (`run_code_files`); the run machinery (lab2.runs), the tools and the book's analysis
  (lab2.report) schedule, measure, store and show runs but compute none of their numbers,
  so editing them leaves runs cached;
- the book: every lab2 module its pages import, directly or not (`imported_by`, given the
  pages' import statements), found by importing them in a fresh interpreter;
- a sweep and its Dask workers: the checkout's code they must share, lab2 but the book's
  analysis (NOT_SHARED) and the run notebook (`checkout_code_files`).

A fingerprint is {project-relative path: sha256}; env.json keeps a run's.
"""

import ast
import hashlib
import json
import os
import subprocess
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
NOT_SHARED = ("lab2.report",)  # the book's analysis: a sweep's workers never run it


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


def checkout_code_files() -> list[Path]:
    """The code a sweep and its workers must share: lab2 (the book's analysis aside) and the run notebook."""
    def module_name(path: Path) -> str:
        return ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__")

    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if not within(module_name(p), NOT_SHARED)) + [RUN_NOTEBOOK]


# Run by `imported_by` in a fresh interpreter: executes the import statements (argv[1]), then, until
# nothing new loads, every lab2 import statement in the source of each lab2 module loaded, those in
# function bodies too (a module imported when a page calls a function is code the page runs); prints
# {module name: file} of what is loaded. Only the standard library is imported before the statements.
_IMPORT_SCRIPT = r"""
import ast, json, sys

def ours(name):
    return name == "lab2" or name.startswith("lab2.")

for statement in json.loads(sys.argv[1]):
    exec(statement, {})
followed = set()
while True:
    new = [(name, module) for name, module in list(sys.modules.items()) if ours(name) and name not in followed]
    if not new:
        break
    for name, module in new:
        followed.add(name)
        path = getattr(module, "__file__", None)
        if not path:
            continue
        with open(path) as source:
            tree = ast.parse(source.read())
        for node in ast.walk(tree):
            if (isinstance(node, ast.ImportFrom) and node.level == 0 and ours(node.module)
                    or isinstance(node, ast.Import) and any(ours(alias.name) for alias in node.names)):
                try:
                    exec(ast.unparse(node), {})
                except Exception:
                    pass  # an import that fails where it is written fails there too: no code of ours runs
print(json.dumps({name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}))
"""
_imported_by_cache: dict[str, list[Path]] = {}


def imported_by(statements, packages=(PACKAGE,)) -> list[Path]:
    """The source files of the modules within packages that these import statements load, directly or not.

    Found by importing, in a fresh interpreter with this checkout's lab2 first on its path, so
    nothing is listed by hand: lazily resolved names (`from lab2 import RunConfig`) and imports
    inside functions are followed. Remembered until a lab2 source file changes.
    Raises ImportError when a statement fails.
    """
    statements, packages = list(statements), tuple(packages)
    key = hashlib.sha256(json.dumps([statements, packages]).encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        key.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    key = key.hexdigest()
    if key not in _imported_by_cache:
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                                 os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([sys.executable, "-c", _IMPORT_SCRIPT, json.dumps(statements)], cwd=PROJECT_ROOT,
                              env=environment, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ImportError(f"importing {'; '.join(statements)}: {last}")
        _imported_by_cache[key] = code_files(packages, json.loads(done.stdout.strip().splitlines()[-1]))
    return list(_imported_by_cache[key])


def lab2_imports(code: str) -> list[str]:
    """The statements of Python code that import lab2 modules, anywhere in it (functions too), as source."""
    return [ast.unparse(node) for node in ast.walk(ast.parse(code))
            if isinstance(node, ast.ImportFrom) and node.level == 0 and within(node.module, (PACKAGE,))
            or isinstance(node, ast.Import) and any(within(alias.name, (PACKAGE,)) for alias in node.names)]


def project_path(path: Path) -> str:
    """A path relative to the project root when it lies inside it, else absolute: how fingerprints name files."""
    path = Path(path).resolve()
    try:
        return path.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


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
