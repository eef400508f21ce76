"""The code's shape: no import circles, no private module used across packages, and imports at
the top of gmmlib's modules (inside a function only for an optional dependency).

Imports are read from the source (ast), so an import inside a function counts as much as one
at the top: a circle hidden behind a function-level import is still a circle.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Imports allowed inside gmmlib's functions: packages gmmlib does not depend on (pyproject's
#: [project] dependencies), imported only where they are used, so gmmlib imports without them.
OPTIONAL = {"sklearn", "IPython", "anywidget", "traitlets"}  # optional dependencies (extras)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, known: set[str], root: Path = ROOT) -> list[tuple[str, bool, int]]:
    """(module, inside a function, line) for every import of a module in ``known``."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    in_function = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # the longest known module it names
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.append((target, id(node) in in_function, node.lineno))
    return found


def import_graph(packages) -> dict[str, set[str]]:
    files = [p for package in packages for p in (ROOT / package).rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): {t for t, _, _ in imports_of(p, known)} for p in files}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_circle_finder_finds_a_circle_through_a_function_level_import(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import f\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from pkg import a\n")
    files = list((tmp_path / "pkg").rglob("*.py"))
    known = {module_name(p, tmp_path) for p in files}
    graph = {
        module_name(p, tmp_path): {t for t, _, _ in imports_of(p, known, tmp_path)} for p in files
    }
    assert circles(graph) == [["pkg.a", "pkg.b"]]


def test_gmmlib_has_no_import_circle():
    assert circles(import_graph(["gmmlib"])) == []


def test_grading_has_no_import_circle():
    assert circles(import_graph(["gmmlib", "grading"])) == []


def test_no_private_module_is_imported_from_another_package():
    """A module whose name starts with "_" (gmmlib._engine) is used only inside its own
    package: the collapse experiment, the grader, the benchmarks go through public names."""
    packages = ["gmmlib", "grading"]
    files = [p for package in packages for p in (ROOT / package).rglob("*.py")]
    known = {module_name(p) for p in files}
    bad = []
    for path in files:
        importer = module_name(path)
        for target, _, line in imports_of(path, known):
            private = [i for i, part in enumerate(target.split(".")) if part.startswith("_")]
            if not private:
                continue
            owner = ".".join(target.split(".")[: private[0]])  # the package it belongs to
            home = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
            if home != owner:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert bad == []


def test_gmmlib_imports_inside_functions_only_optional_dependencies():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not OPTIONAL & {d.split(">")[0].split("=")[0].strip() for d in dependencies}
    bad = []
    for path in (ROOT / "gmmlib").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] not in OPTIONAL:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert bad == []
