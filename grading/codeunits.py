"""Answer cells cut into comparable units, one per function, normalised so renaming hides nothing:
library calls, operators, constants and the code's shape stay (independent answers differ
there); docstrings, comments, strings, layout and every name the code binds go (a copier
changes those for free). `grading.copying` compares the units.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from IPython.core.inputtransformer2 import TransformerManager
from nbgrader.utils import is_solution

from grading.cells import grade_id

PLACEHOLDER = "v"
FUNCTION = "f"
STRING = "s"


@dataclass(frozen=True)
class Unit:
    """One function (or a cell's other statements) and its normalised text."""

    owner: str  # a student id, or a visible source ("gmmlib/em.py")
    cell: str  # the answer cell's grade_id, or the source's file
    name: str  # the function's name ("<cell>" for the other statements)
    source: str  # the text as written (shown in the report)
    normalised: str


class _Normaliser(ast.NodeTransformer):
    """Drop docstrings and bare strings, blank string contents, rename local names."""

    def __init__(self, local: set[str], functions: set[str]):
        self.local, self.functions = local, functions

    def _body(self, body):
        body = [
            s
            for s in body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant | ast.JoinedStr))
        ]
        return body or [ast.Pass()]

    def generic_visit(self, node):
        node = super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):  # a Module has a body only
            if isinstance(getattr(node, field, None), list):
                setattr(node, field, self._body(getattr(node, field)))
        return node

    def visit_FunctionDef(self, node):
        node = self.generic_visit(node)
        node.name = FUNCTION
        node.returns = None
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815 (ast's method name)

    def visit_arg(self, node):
        node.arg, node.annotation = PLACEHOLDER, None
        return node

    def visit_Name(self, node):
        if node.id in self.functions:
            node.id = FUNCTION
        elif node.id in self.local:
            node.id = PLACEHOLDER
        return node

    def visit_Constant(self, node):
        return ast.Constant(STRING) if isinstance(node.value, str) else node

    def visit_JoinedStr(self, node):
        return ast.Constant(STRING)


def _local_names(tree: ast.AST) -> set[str]:
    """Names the code binds itself: arguments and assigned, loop and comprehension variables."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
    return names


def normalise(code: str | ast.AST, functions: frozenset = frozenset()) -> str:
    """The code with docstrings, comments, layout, string contents and local names gone.

    ``functions``: names of the functions the surrounding cell or file defines (they become one
    placeholder too, so a renamed helper still matches).
    """
    tree = ast.parse(code) if isinstance(code, str) else code
    tree = ast.parse(ast.unparse(tree))  # a private copy: the transformer edits in place
    normaliser = _Normaliser(_local_names(tree), set(functions))
    return ast.unparse(ast.fix_missing_locations(normaliser.visit(tree)))


def code_units(code: str, owner: str, cell: str) -> list[Unit]:
    """One unit per top-level function of ``code``, and one for its other statements (imports
    left out). Code that does not parse is one unit, normalised as far as text allows."""
    try:
        text = TransformerManager().transform_cell(code)  # magics (%timeit, !ls) become calls
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        squeezed = re.sub(r"\s+", " ", re.sub(r"#.*", "", code)).strip()
        return [Unit(owner, cell, "<cell>", code, squeezed)] if squeezed else []
    functions = frozenset(
        n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    )
    units, rest = [], []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            source = ast.get_source_segment(text, node) or ast.unparse(node)
            units.append(Unit(owner, cell, node.name, source, normalise(node, functions)))
        elif not isinstance(node, ast.Import | ast.ImportFrom):
            rest.append(node)
    if rest:
        module = ast.Module(body=rest, type_ignores=[])
        normalised = normalise(module, functions)
        if normalised.strip() != "pass":
            units.append(Unit(owner, cell, "<cell>", ast.unparse(module), normalised))
    return units


def _answer_cells(nb) -> list:
    """The notebook's answer cells (nbgrader "solution" code cells); every code cell if the
    student's copy lost its metadata."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    answers = [c for c in code if is_solution(c)]
    return answers if answers else code


def cell_id(cell, index: int) -> str:
    """The cell's nbgrader grade_id, or its place among the cells compared."""
    return grade_id(cell) or f"cell {index}"


def notebook_units(path: Path, owner: str) -> list[Unit]:
    """The units of a submitted notebook's answer cells ([] if it is not a notebook)."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # noqa: BLE001 - grading reports an unreadable notebook; nothing to compare
        return []
    return [
        unit
        for i, cell in enumerate(_answer_cells(nb))
        for unit in code_units(cell.source, owner, cell_id(cell, i))
    ]
