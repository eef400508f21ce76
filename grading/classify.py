"""Two submissions that a 0 alone would hide: the release handed back unchanged, and code where
nothing ran.

- **blank**: every answer cell is the release's and no code was added (a wrong file uploaded);
- **broken**: no autograded part scored and no function the checks call was defined by a cell
  that ran in the re-check (syntax errors everywhere, renamed functions): a student who believes
  they submitted working code learns it here, not from a 0.

Both go on the review list with the reason in words; the points stay the re-check's.
"""

from __future__ import annotations

import ast

from nbgrader.utils import is_solution

from grading.cells import grade_id, parse_cell
from grading.checks import spec
from grading.recheck import notebook_steps
from grading.records import Status


def _answer_sources(nb) -> dict[str, str]:
    """{grade_id: source} of the answer cells (nbgrader's solution cells) of a notebook."""
    return {grade_id(c): c.source for c in nb.cells if is_solution(c) and grade_id(c)}


def is_blank(submitted, release, source) -> bool:
    """The answer cells are the release's (whitespace aside) and no code cell was added."""
    given, handed = _answer_sources(release), _answer_sources(submitted)
    if not given or set(handed) != set(given):
        return False
    if any(" ".join(handed[g].split()) != " ".join(given[g].split()) for g in given):
        return False
    added = [s for s in notebook_steps(submitted, source) if s["answer"] is None]
    return not any(s["source"].strip() for s in added)


def _bound_names(code: str) -> set[str]:
    """Top-level names a cell binds (functions, classes, assignments, imports); none if it does
    not parse."""
    tree = parse_cell(code)
    names = set()
    for node in tree.body if tree is not None else ():
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        else:
            for target in ast.walk(node):
                if isinstance(target, ast.Name) and isinstance(target.ctx, ast.Store):
                    names.add(target.id)
    return names


def called_names(assignment: str) -> list[str]:
    """The functions (and variables) the assignment's checks call or read, in spec order."""
    names = [case.name for check in spec(assignment).checks for case in check.cases]
    return list(dict.fromkeys(names))


def broken_reason(submitted, source, recheck, parts, assignment) -> str | None:
    """Why nothing ran, in words, or None when something did (see the module docstring)."""
    if any(p.kind == "auto" and p.points for p in parts):
        return None
    problems = recheck.get("cell_problems", {})
    steps = [s for s in notebook_steps(submitted, source) if s["answer"] != "<course>"]
    ran = set()
    for step in steps:
        if step["name"] not in problems:
            ran |= _bound_names(step["source"])
    wanted = called_names(assignment)
    if any(name in ran for name in wanted):
        return None
    failed = [s["name"] for s in steps if s["name"] in problems]
    detail = "; ".join(f"{n}: {problems[n]}" for n in failed[:3])
    if failed and len(failed) == len(steps):
        cause = "every answer cell failed in the re-check"
    elif failed:
        cause = "the cells that ran define none of them"
    else:
        cause = "the answer cells define none of them"
    return (
        f"broken: nothing ran: none of the functions the tests call ({', '.join(wanted)}) is "
        f"defined; {cause}" + (f" ({detail})" if detail else "")
    )[:600]


def classify(status: Status, submitted, release, source, recheck, parts, assignment):
    """(status, reason): `Status.BLANK` or `Status.BROKEN` with the reason in words when the
    submission is one of them and its status was otherwise ``ok``; else ``status`` unchanged
    and no reason."""
    if status != Status.OK or submitted is None or not recheck.get("readable", True):
        return status, None
    if is_blank(submitted, release, source):
        return Status.BLANK, (
            "blank: the answer cells are the release's, unchanged (nothing was answered; "
            "was the right file submitted?)"
        )
    reason = broken_reason(submitted, source, recheck, parts, assignment)
    if reason:
        return Status.BROKEN, reason
    return status, None
