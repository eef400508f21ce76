"""The notebook a submission's feedback run executes: the student's, with the release's cells.

`visible_notebook` puts back every cell a student may not change (nbgrader's locked and grade
cells, matched by grade_id) as the *release* has it, so its test cells hold the visible tests
and nothing else, and restores the ones the student deleted. The course's source notebook
(hidden tests) is never read here. `grading.student_run` runs the result.
"""

from __future__ import annotations

import copy

import nbformat

from grading.cells import (
    grade_id,
    is_fixed,
    module_loader_cell,
    release_modules,
    summary_cell_id,
)
from grading.course import ASSIGNMENTS, EXERCISES


def _assignment_of(release: nbformat.NotebookNode) -> str | None:
    """The assignment a release notebook belongs to: its summary cell's grade_id says."""
    ids = {grade_id(c) for c in release.cells}
    return next((a for a in ASSIGNMENTS if summary_cell_id(a) in ids), None)


def visible_notebook(
    submitted: nbformat.NotebookNode,
    release: nbformat.NotebookNode,
    modules: dict[str, str] | None = None,
):
    """The notebook to run: ``submitted`` with every fixed cell as in ``release`` (restored
    after the cell that precedes it in the release if the student deleted it), and first a
    cell that makes the release's helper modules importable from memory (``modules``: {name:
    source}; by default the committed release's, `grading.course.EXERCISES`), so the test
    cells use the course's helpers, never a file the student changed. `run_notebook` takes
    that cell out of the executed notebook."""
    fixed = {grade_id(c): c for c in release.cells if grade_id(c) and is_fixed(c)}
    cells, seen = [], set()
    for cell in submitted.cells:
        gid = grade_id(cell)
        if gid not in fixed:
            cells.append(cell)  # an answer, or a cell the student added
        elif gid not in seen:  # a duplicated course cell runs once
            seen.add(gid)
            cells.append(copy.deepcopy(fixed[gid]))
    previous = None
    for cell in release.cells:
        gid = grade_id(cell)
        if gid in fixed and gid not in seen:
            at = next(
                (i + 1 for i, c in enumerate(cells) if previous and grade_id(c) == previous), 0
            )
            cells.insert(at, copy.deepcopy(cell))
            seen.add(gid)
        previous = gid or previous
    if modules is None:
        assignment = _assignment_of(release)
        modules = release_modules(EXERCISES / assignment) if assignment else {}
    nb = copy.deepcopy(submitted)
    nb.cells = ([module_loader_cell(modules)] if modules else []) + cells
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb
