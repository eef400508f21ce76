"""The one specification of every autograded part: its cases, data, tolerances and judges.

One `Check` per autograded test cell (same ``grade_id``; the points stay in the cell's
metadata). Only the re-check runs it: the sandbox calls the student's functions on the cases'
inputs and returns plain numbers, and every comparison happens in the grader's process. Nothing
here reaches a process that runs student code, nor the release (which gets a note naming each
check). The visible tests' cases are among these, so a part that passes here passes its visible
tests too. Edit hidden tests here, then run `make release`.
"""

from __future__ import annotations

import functools

from grading.checks.base import AssignmentSpec, Case, Check, call_plan, decode, judge
from grading.checks.break_it import break_it, prior_run, reference_run
from grading.checks.em_by_hand import em_by_hand, reference_fit
from grading.checks.poisson_mixture import poisson_mixture

__all__ = [
    "SPECS",
    "AssignmentSpec",
    "Case",
    "Check",
    "call_plan",
    "decode",
    "judge",
    "prior_run",
    "reference_fit",
    "reference_run",
    "spec",
]

SPECS = {"em_by_hand": em_by_hand, "break_it": break_it, "poisson_mixture": poisson_mixture}


@functools.cache
def spec(assignment: str) -> AssignmentSpec:
    """The assignment's checks, built once per process (inputs and references are seeded)."""
    return SPECS[assignment]()
