"""Which re-check steps are "not run": those calling a function that already ran out of time.

A step of the re-check (`grading.recheck.run_sandbox`) that loops or sleeps is killed at its
allowance of the submission's time budget (`grading.watch`). The steps after it that run the
same function would only loop or sleep again, each with a new slice of the budget and a restart
of the sandbox: they are marked "not run: <function> already ran out of time" instead. A step
that only imports or defines (a cell) is still run.
"""

from __future__ import annotations

import ast

from grading.cells import parse_cell


def defined(source: str) -> set[str]:
    """The functions a cell defines at its top level."""
    tree = parse_cell(source)
    body = tree.body if tree is not None else []
    return {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def functions_run(cases: list, depends, answers: dict) -> set[str]:
    """The functions a call step runs: those its ``cases`` call, and those defined in the
    answer cells it ``depends`` on (``answers``: {grade_id: source})."""
    names = {case["name"] for case in cases}
    return names.union(*(defined(answers[d]) for d in depends if d in answers))


def mark(steps: list, killed: int, results: dict, calls: dict) -> None:
    """The call step ``killed`` ran out of time: every later call step that runs a function
    it called (``calls``: {step index: `functions_run`}) gets a "not run" result and no cases
    (the child only passes it), never a slice of the budget of its own."""
    spent = {case["name"] for case in steps[killed]["cases"]}
    for index in range(killed + 1, len(steps)):
        hit = sorted(spent & set(calls.get(index, ())))
        if steps[index]["kind"] == "call" and hit and index not in results:
            steps[index]["cases"] = []
            why = f"not run: {', '.join(hit)} already ran out of time"
            results[index] = {"status": "not run", "error": why}
