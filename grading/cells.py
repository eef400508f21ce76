"""nbgrader's cell rules as the grader uses them, the one definition of the hidden-test
marker (nbgrader's own `ClearHiddenTests` delimiters), and how IPython magic lines are
set aside before a cell is parsed as Python."""

from __future__ import annotations

import re

from nbgrader.preprocessors import ClearHiddenTests
from nbgrader.utils import is_grade, is_locked, is_solution

BEGIN_HIDDEN = "### " + ClearHiddenTests.begin_test_delimeter.default_value
END_HIDDEN = "### " + ClearHiddenTests.end_test_delimeter.default_value
MAGIC_LINE = re.compile(r"^\s*[%!]")
#: A whole hidden-test block, with its line ending.
HIDDEN = re.compile(rf"^[ \t]*{BEGIN_HIDDEN}.*?^[ \t]*{END_HIDDEN}[ \t]*\n?", re.S | re.M)


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_fixed(cell) -> bool:
    """A cell the student may not change: nbgrader's locked and grade cells, not answers."""
    return bool(is_locked(cell) or (is_grade(cell) and not is_solution(cell)))


def is_test(cell) -> bool:
    """An autograded test cell (graded, not an answer)."""
    return bool(cell.cell_type == "code" and is_grade(cell) and not is_solution(cell))


def strip_magics(source: str) -> tuple[str, list[str]]:
    """Replace IPython magic / shell lines (``%...``, ``!...``) by ``pass``; return them too.
    Lines are cut at ``\n`` only: str.splitlines would also cut at characters Python allows
    inside a string literal (``\u2028``, form feeds), and break the student's code."""
    kept, magics = [], []
    for line in source.split("\n"):
        if MAGIC_LINE.match(line):
            magics.append(line.strip())
            kept.append(line[: len(line) - len(line.lstrip())] + "pass  # magic removed")
        else:
            kept.append(line)
    return "\n".join(kept), magics
