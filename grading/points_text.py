"""The points a notebook's text shows, written from its cells' nbgrader metadata.

The points of a graded cell live in one place, its metadata (``nbgrader.points``); the task
tables and instructions repeat them for the student. `with_points` rewrites every such number
from the metadata when the release is made (`grading.release`), so changing a cell's points
changes the text too, and ``make release --check`` finds text that disagrees. What is read as a
mention of points, in markdown cells:

- `` `e_step_tests` (3) ``: a graded cell named by its grade_id (with or without the
  assignment's prefix) and its points;
- a table row ending in a total, ``| `m_step_weights` (1), `m_step_covariances` (2) | 3 |``;
- a parenthesis holding "N point(s)": the sum of the cells it names (``(4 points:
  `e_step_tests` 3, `e_step_stability` 1.)``, each name's own number rewritten too); naming
  none, the next graded cell below the text (the next written answer when it says "graded by
  hand");
- "graded by hand (N)": the next written answer below the text.

A mention that resolves to no graded cell is an error naming the text: a number the metadata
cannot vouch for is not released.
"""

from __future__ import annotations

import re

NUMBER = r"\d+(?:\.\d+)?"
NAMED = re.compile(rf"`(?P<name>\w+)`(?P<gap>\s*\(\s*)(?P<n>{NUMBER})(?=\s*\))")
NAMED_IN_PARENS = re.compile(rf"`(?P<name>\w+)`(?P<gap>\s+)(?P<n>{NUMBER})\b")
POINTS = re.compile(
    rf"\((?P<before>(?:graded by hand,\s*)?)(?P<n>{NUMBER})(?P<gap>\s+)(?P<word>points?)\b"
)
BY_HAND = re.compile(rf"graded by hand(?P<gap>\s*\(\s*)(?P<n>{NUMBER})(?=\s*\))")
TOTAL_ROW = re.compile(rf"^(?P<row>\|.*\|)(?P<gap>\s*)(?P<n>{NUMBER})(?P<end>\s*\|\s*)$", re.M)


def nbgrader_meta(cell) -> dict:
    """A cell's nbgrader metadata ({} for a cell without)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def _closing(text: str, start: int) -> int:
    """The index just past the parenthesis that closes the one opened at ``start``."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    return len(text)


class _Cells:
    """The graded cells of one notebook: points by name, and which comes after a cell."""

    def __init__(self, nb, assignment: str):
        self.assignment = assignment
        metas = [(i, nbgrader_meta(c)) for i, c in enumerate(nb.cells)]
        self.graded = [
            (i, m["grade_id"], float(m.get("points", 0)), bool(m["solution"]))
            for i, m in metas
            if m.get("grade") and m.get("grade_id")
        ]
        self.points = {gid: points for _, gid, points, _ in self.graded}

    def named(self, name: str) -> float | None:
        for gid in (name, f"{self.assignment}_{name}"):
            if gid in self.points:
                return self.points[gid]
        return None

    def next_after(self, index: int, manual: bool, text: str) -> float:
        for i, _, points, is_answer in self.graded:
            # a written answer is a graded solution cell; an autograded part, a test cell
            if i > index and is_answer == manual:
                return points
        kind = "written answer" if manual else "autograded cell"
        raise ValueError(
            f"{self.assignment}: the text {text!r} gives points but no {kind} follows it: "
            "name the cell (`grade_id`), or take the number out"
        )


def _rewrite_named(text: str, pattern, cells: _Cells) -> str:
    def sub(m):
        points = cells.named(m["name"])
        if points is None:
            return m[0]
        return m[0][: m.start("n") - m.start()] + f"{points:g}"

    return pattern.sub(sub, text)


def _rewrite_parentheses(text: str, cells: _Cells, index: int) -> str:
    out, pos = [], 0
    for m in POINTS.finditer(text):
        if m.start() < pos:
            continue
        end = _closing(text, m.start())
        span = text[m.start() : end]
        names = [n[1] for n in re.finditer(r"`(\w+)`", span) if cells.named(n[1]) is not None]
        if names:
            total = sum(cells.named(n) for n in dict.fromkeys(names))
        else:
            total = cells.next_after(index, "graded by hand" in span, span)
        word = "point" if total == 1 else "points"
        head = f"({m['before']}{total:g}{m['gap']}{word}"
        rest = _rewrite_named(span[m.end() - m.start() :], NAMED_IN_PARENS, cells)
        out += [text[pos : m.start()], head, rest]
        pos = end
    return "".join(out) + text[pos:]


def _rewrite_totals(text: str, cells: _Cells) -> str:
    def sub(m):
        named = [cells.named(n["name"]) for n in NAMED.finditer(m["row"].rsplit("|", 2)[-2])]
        named = [p for p in named if p is not None]
        if not named:
            return m[0]
        return f"{m['row']}{m['gap']}{sum(named):g}{m['end']}"

    return TOTAL_ROW.sub(sub, text)


def text_with_points(text: str, cells: _Cells, index: int) -> str:
    """One markdown cell's text with every mention of points written from the metadata."""
    text = _rewrite_totals(text, cells)
    text = _rewrite_named(text, NAMED, cells)
    text = BY_HAND.sub(
        lambda m: f"graded by hand{m['gap']}{cells.next_after(index, True, m[0]):g}", text
    )
    return _rewrite_parentheses(text, cells, index)


def with_points(nb, assignment: str):
    """``nb`` with the points in its markdown cells written from its graded cells' metadata
    (in place; returned). Raises ValueError for a mention that names no graded cell."""
    cells = _Cells(nb, assignment)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and not nbgrader_meta(cell).get("solution"):
            cell.source = text_with_points(cell.source, cells, index)
    return nb
