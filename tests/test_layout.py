"""The package's shape: one owner per module name, and imports that run one way between its rooms."""

import ast
from collections import Counter

from lab2 import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "lab2"
# What each room may import of lab2 ("lab2": the package itself, e.g. PROJECT_ROOT): the build reads the report,
# the report the run engine, the engine the core; the tools drive the core and the engine from outside.
MAY_IMPORT = {
    "core": {"lab2", "core"},
    "runs": {"lab2", "core", "runs"},
    "report": {"lab2", "core", "runs", "report"},
    "tools": {"lab2", "core", "runs", "tools"},
    "book": {"lab2", "core", "runs", "report", "book"},
}


def modules() -> list:
    return sorted(path for path in PACKAGE.rglob("*.py") if path.name != "__init__.py")


def imported_rooms(path) -> set[str]:
    """The rooms of lab2 a source file imports from ("__main__" for the command line), in functions too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name.split(".")[1] if "." in name else "lab2" for name in names if name.split(".")[0] == "lab2"}


def test_no_module_name_repeats_in_the_package():
    counts = Counter(path.name for path in modules())
    assert not {name: count for name, count in counts.items() if count > 1}


def test_nothing_in_the_package_imports_the_command_line():
    assert not [path.relative_to(PROJECT_ROOT).as_posix() for path in PACKAGE.rglob("*.py")
                if "__main__" in imported_rooms(path)]


def test_imports_run_one_way_between_the_rooms():
    wrong = {}
    for path in modules():
        room = path.relative_to(PACKAGE).parts[0]
        if room in MAY_IMPORT and imported_rooms(path) - MAY_IMPORT[room]:
            wrong[path.relative_to(PROJECT_ROOT).as_posix()] = sorted(imported_rooms(path) - MAY_IMPORT[room])
    assert not wrong
