"""Every module conformance/ imports is declared in pyproject.toml (and tests/ imports only declared or test
extras); every declared dependency is used. Read from the source with ast, mapped to distributions by the
installed metadata, so a new `import foo` without a dependency line fails here, not on a user's machine."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# declared but never imported: the reason each is needed
LOADED_BY_NAME = {"pytest-xdist": "pytest -p xdist (parallel workers)"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return {normalize(re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0]) for s in specs}


def imports_of(folder: Path) -> dict[str, set[str]]:
    """Top-level module name -> files importing it (absolute imports, anywhere in the file)."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                found.setdefault(n.split(".")[0], set()).add(path.name)
    return found


def third_party(found: dict[str, set[str]], own: set[str]) -> dict[str, set[str]]:
    return {m: files for m, files in found.items() if m not in sys.stdlib_module_names and m not in own}


def distributions_of(module: str) -> set[str]:
    return {normalize(d) for d in packages_distributions().get(module, [])}


def test_every_import_of_the_package_is_a_declared_dependency():
    deps = declared()
    used = third_party(imports_of(ROOT / "conformance"), {"conformance"})
    assert used, "the scan found no third-party import at all: the scanner is broken"
    undeclared = {m: sorted(files)[:3] for m, files in used.items() if not distributions_of(m) & deps}
    assert not undeclared, f"imported by conformance/ but not in pyproject.toml dependencies: {undeclared}"


def test_every_declared_dependency_is_imported_or_loaded_by_name():
    used = third_party(imports_of(ROOT / "conformance"), {"conformance"})
    provided = set().union(*(distributions_of(m) for m in used))
    unused = declared() - provided - set(LOADED_BY_NAME)
    assert not unused, f"declared in pyproject.toml but conformance/ never imports them: {sorted(unused)}"
    for name in LOADED_BY_NAME:
        assert name in declared(), f"{name} is listed as loaded by name but not declared"


def test_tests_and_benchmarks_import_only_declared_or_test_dependencies():
    deps = declared() | declared("test")
    for folder in ("tests", "bench"):
        # lemonade_adapter: the client adapters' own helper (clients/_lib/), imported by the fake clients
        used = third_party(imports_of(ROOT / folder), {"conformance", "tests", "lemonade_adapter"})
        undeclared = {m: sorted(files)[:3] for m, files in used.items() if not distributions_of(m) & deps}
        assert not undeclared, f"imported by {folder}/ but declared nowhere: {undeclared}"


def test_the_scanner_sees_imports_inside_functions_and_flags_an_undeclared_one(tmp_path):
    (tmp_path / "x.py").write_text("def f():\n    import numpy.linalg\n    from yaml import safe_load\n"
                                   "from . import sibling\nimport os\n")
    used = third_party(imports_of(tmp_path), {"conformance"})
    assert set(used) == {"numpy", "yaml"}
    assert not distributions_of("numpy") & declared() and distributions_of("yaml") & declared()
