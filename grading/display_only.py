"""Statements that only draw: the book's explorer on the student's own steps, in a graded notebook.

Assignment 1 forbids gmmlib, yet the notebooks offer ``from gmmlib.explore import explore`` and
``explore(X, e_step=e_step, ...)`` on the student's functions. Such statements earn nothing and
need not run to grade, so the grader accepts exactly them: imports of `DISPLAY_ONLY` names under
their own names (``explore as assert_close`` would make the tests' calls "drawing" ones), and
explorer calls, as statements, whose arguments reach nothing of gmmlib but those data sets.
`misuses` reports every other use of the names (a proven violation where gmmlib is forbidden,
`grading.scan`); `neutralise` replaces the drawing statements by ``pass`` wherever the grader
runs the code, and `restore_notebook` puts the student's source back, with `NOTE`, for feedback.
"""

from __future__ import annotations

import ast
import re

import nbformat

from grading.cells import parse_cell

#: module -> the names that may be imported from it only to draw (the explorer, and the data
#: sets the notebooks draw).
DISPLAY_ONLY = {
    "gmmlib.explore": frozenset({"explore"}),
    "gmmlib.datasets": frozenset({"old_faithful", "tilted_blobs"}),
}
#: The one function a drawing statement calls.
DRAW = "gmmlib.explore.explore"
#: What a drawing statement's arguments may reach through those names.
ALLOWED = frozenset(f"{module}.{name}" for module, names in DISPLAY_ONLY.items() for name in names)
LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
PASS = "pass  # the explorer only draws: not run when graded"
NOTE = (
    "[The explorer only draws: the grader sets it aside without running it (in assignment 1 "
    "gmmlib is not even available there), and it earns no points. Run the notebook yourself "
    "to see it.]\n"
)


def _import_bindings(node) -> dict[str, str] | None:
    """{name: dotted path} a display-only import statement binds, else None."""
    if isinstance(node, ast.ImportFrom):
        allowed = DISPLAY_ONLY.get(node.module or "")
        if node.level or allowed is None or not all(a.name in allowed for a in node.names):
            return None
        if any(a.asname not in (None, a.name) for a in node.names):
            return None  # renamed, a course function's name would make its calls "drawing"
        return {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
    if isinstance(node, ast.Import):
        if not all(a.name in DISPLAY_ONLY for a in node.names):
            return None
        return {
            (a.asname or a.name.split(".")[0]): (a.name if a.asname else a.name.split(".")[0])
            for a in node.names
        }
    return None


def display_bindings(sources) -> dict[str, str]:
    """The names the notebook's cells (their sources, in order) bind by display-only imports at
    their top level: {"explore": "gmmlib.explore.explore", "gmmlib": "gmmlib", ...}."""
    bound = {}
    for source in sources:
        tree = parse_cell(source)
        for node in tree.body if tree is not None else []:
            bound.update(_import_bindings(node) or {})
    return bound


def _resolve(node, bound) -> str | None:
    """The dotted path a name or attribute chain rooted in a bound name stands for."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, bound)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _references(node, bound):
    """(node, dotted path) of every longest name or attribute chain rooted in a bound name."""
    dotted = _resolve(node, bound)
    if dotted is not None:
        yield node, dotted
        return
    for child in ast.iter_child_nodes(node):
        yield from _references(child, bound)


def _draws(node, bound) -> bool:
    """Whether a top-level statement is an explorer call reaching only `ALLOWED` names."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    call = node.value
    if _resolve(call.func, bound) != DRAW:
        return False
    arguments = [*call.args, *(k.value for k in call.keywords)]
    return all(path in ALLOWED for a in arguments for _, path in _references(a, bound))


def display_statements(tree, bound) -> list:
    """The top-level statements of a parsed cell that only draw (see the module's docstring)."""
    if not bound:
        return []
    return [n for n in tree.body if _import_bindings(n) is not None or _draws(n, bound)]


def misuses(tree, bound) -> list[str]:
    """Findings for the uses of the display-only names outside drawing statements."""
    if not bound:
        return []
    kept = {id(n) for n in display_statements(tree, bound)}
    found = []
    for statement in tree.body:
        if id(statement) in kept:
            continue
        for node, path in _references(statement, bound):
            found.append(
                f"line {node.lineno}: reaches {path} through an import meant only to draw: "
                "the answer must not use gmmlib"
            )
    return found


def neutralise(source: str, bound) -> str:
    """``source`` with each statement that only draws replaced by `PASS` (lines kept, so the
    student's line numbers still hold); unchanged if it has none or does not parse."""
    tree = parse_cell(source)
    if tree is None or not bound:
        return source
    statements = display_statements(tree, bound)
    if not statements:
        return source
    lines = LINES.findall(source)  # Python's line ends only (str.splitlines knows more)
    # Rewrite from the last statement up, so earlier positions stay valid. Positions are those
    # of the magic-stripped text, whose lines match the source's one for one.
    for node in reversed(statements):
        first, last = node.lineno - 1, node.end_lineno - 1
        head = lines[first][: _offset(lines[first], node.col_offset)]
        tail = lines[last][_offset(lines[last], node.end_col_offset) :]
        # "a = 1; explore(X)" keeps "a = 1; "; "explore(X); b = 2" keeps "; b = 2" after pass.
        word = "pass" if tail.strip() and not tail.lstrip().startswith("#") else PASS
        blank = "\n" * (last - first)
        lines[first : last + 1] = [head + blank + word + tail]
    return "".join(lines)


def _offset(line: str, utf8_offset: int) -> int:
    """The character index of a byte offset of ast (columns are UTF-8 byte offsets)."""
    return len(line.encode()[:utf8_offset].decode(errors="ignore"))


def neutralise_notebook(nb: nbformat.NotebookNode) -> dict[int, str]:
    """Neutralise ``nb``'s code cells in place; {cell index: original source} of those changed."""
    cells = [c for c in nb.cells if c.cell_type == "code"]
    bound = display_bindings(c.source for c in cells)
    changed = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            new = neutralise(cell.source, bound)
            if new != cell.source:
                changed[index] = cell.source
                cell.source = new
    return changed


def restore_notebook(nb: nbformat.NotebookNode, originals: dict[int, str]) -> None:
    """Put back the sources `neutralise_notebook` changed, each with `NOTE` as its last output."""
    for index, source in originals.items():
        cell = nb.cells[index]
        cell.source = source
        cell.setdefault("outputs", []).append(
            nbformat.v4.new_output("stream", name="stdout", text=NOTE)
        )
