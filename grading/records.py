"""The typed records of one graded notebook: its `Status`, each graded `Part`, the `Result`.

A worker builds a `Result` and writes it as JSON (``result.json``, `Result.to_dict`); the
pipeline, the feedback page and the class gradebook read those dicts. Serialisation happens
here only, so a field has one name and one meaning everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Status(StrEnum):
    """A graded notebook's status in grades.csv (its value is what the CSV shows)."""

    OK = "ok"
    FLAGGED = "flagged"  # a proven violation: the parts that depend on it get 0
    REVIEW = "review"  # suspicious code or what the sandbox saw: points kept, a human looks
    KERNEL_TIMEOUT = "kernel-timeout"  # the feedback run was stopped (no effect on points)
    KERNEL_DIED = "kernel-died"  # the feedback run's kernel died (no effect on points)
    KERNEL_ERROR = "kernel-error"  # the kernel did not start: the grading machine's problem
    MISSING = "missing"
    UNREADABLE = "unreadable"  # handed in, not a notebook the grader reads (grading.collect)
    BROKEN = "broken"  # nothing ran: no function the tests call was defined (grading.classify)
    BLANK = "blank"  # the release handed back unchanged: nothing answered (grading.classify)
    GRADER_ERROR = "grader-error"


#: The statuses of a feedback run that did not finish, by `grading.student_run.RunReport.status`.
RUN_STATUS = {
    "ok": Status.OK,
    "timeout": Status.KERNEL_TIMEOUT,
    "died": Status.KERNEL_DIED,
    "error": Status.KERNEL_ERROR,
}


@dataclass
class Part:
    """The outcome of one graded part (a test cell, or a written answer)."""

    grade_id: str
    max_points: float
    kind: str  # "auto" (tests) or "manual" (a written answer)
    points: float | None = None  # the final points (the re-check's); None: waiting for a human
    #: The cell's visible tests in the student's own run: max_points if they passed, 0 if they
    #: failed, None if the cell did not run. Shown to instructors, never graded.
    kernel_points: float | None = None
    recheck: str | None = None  # the re-check's verdict ("ok", "wrong", "timeout", ...)
    flagged: str = ""  # a proven violation in the code the part depends on (0 points)
    review: str = ""  # suspicious, unproven code the part depends on (points kept)
    message: str = ""  # why points were lost, in words (the spec's verdict message)


@dataclass
class Result:
    """One student's graded notebook."""

    student: str
    assignment: str
    status: Status = Status.OK
    parts: list[Part] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # reasons for a human look, in words
    withhold_outputs: list[str] = field(default_factory=list)  # cells the feedback hides
    observed: list[str] = field(default_factory=list)  # what the supervisors saw, outside
    seconds: dict = field(default_factory=dict)  # {"kernel": ..., "recheck": ...}
    #: The submission's time budget spent (`grading.watch.SubmissionBudget.used`): CPU seconds
    #: and seconds asleep of the feedback run and the re-check, their total and the limit.
    budget: dict = field(default_factory=dict)
    feedback: str = ""  # the feedback page's path

    def to_dict(self) -> dict:
        data = asdict(self)
        data["status"] = Status(self.status).value
        return data


def grader_error(student: str, assignment: str, why: str) -> dict:
    """The result of a notebook the grader failed on (``why``: what went wrong)."""
    return Result(student, assignment, Status.GRADER_ERROR, flags=[why]).to_dict()
