"""Where things are in a grading run: `Course` asks nbgrader's own ``CourseDirectory`` for every
path of an nbgrader course folder (the class one, ``OUT/course``, and each student's,
``OUT/work/<student>``), `RunFolder` names the run's own files; plus what a graded part is.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.coursedir import CourseDirectory
from nbgrader.utils import is_grade, is_solution
from traitlets.config import Config

from grading.cells import grade_id, summary_cell_id  # noqa: F401 - summary_cell_id imported from here too
from grading.course import ASSIGNMENTS, configure
from grading.feedback import hidden_lines
from grading.records import Part, Result, Status


@functools.cache
def _course_directory(root: str):
    config = Config()
    configure(config)
    config.CourseDirectory.root = root
    return CourseDirectory(config=config)


@dataclass(frozen=True)
class Course:
    """The paths of one nbgrader course folder."""

    root: Path

    def folder(self, step: str, assignment: str, student: str = ".") -> Path:
        """``step``: "source", "release", "submitted", "autograded" or "feedback"."""
        coursedir = _course_directory(str(self.root))
        name = getattr(coursedir, f"{step}_directory")
        return Path(coursedir.format_path(name, student, assignment)).resolve()

    def notebook(self, step: str, assignment: str, student: str = ".") -> Path:
        return self.folder(step, assignment, student) / ASSIGNMENTS[assignment]

    @property
    def sources(self) -> Path:
        """The folder of every assignment's source notebook (it holds the hidden tests)."""
        return self.root / _course_directory(str(self.root)).source_directory

    @property
    def gradebook(self) -> Path:
        return self.root / "gradebook.db"

    def source_notebook(self, assignment: str) -> nbformat.NotebookNode:
        return nbformat.read(self.notebook("source", assignment), as_version=4)

    def graded_notebook(self, student: str, assignment: str) -> Path:
        """The notebook feedback shows: nbgrader's autograded copy (with the kernel's outputs),
        or the submitted one when the kernel did not finish (nbgrader keeps no autograded
        copy then)."""
        autograded = self.notebook("autograded", assignment, student)
        return (
            autograded if autograded.exists() else self.notebook("submitted", assignment, student)
        )


@dataclass(frozen=True)
class RunFolder:
    """The folder of one grading run (``gmm-grade --out``): every path in it is built here.

    Records name paths `relative` to it (a Dask worker grades in a run folder of its own, laid
    out the same), and `resolve` finds them again in the coordinator's.
    """

    root: Path

    course = property(lambda self: self.root / "course")
    work = property(lambda self: self.root / "work")
    feedback = property(lambda self: self.root / "feedback")
    jupyter = property(lambda self: self.root / "jupyter")
    log = property(lambda self: self.root / "grading.log")
    results = property(lambda self: self.root / "results.json")
    summary = property(lambda self: self.root / "summary.json")

    def student(self, student: str) -> Path:
        return self.work / student

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))

    def resolve(self, relative: str) -> Path:
        """The path a record names (`relative`'s form) in this run folder."""
        path = self.root / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise ValueError(f"not a path inside the run folder: {relative!r}")
        return path


def feedback_page(feedback: Path, student: str, assignment: str) -> Path:
    """``<feedback>/<student>/<assignment>/<notebook>.html``: the page sent to the student."""
    return feedback / student / assignment / (Path(ASSIGNMENTS[assignment]).stem + ".html")


def graded_cells(source_nb):
    """[(grade_id, points, kind)] for every graded cell; kind "auto" (tests) or "manual"."""
    return [
        (
            grade_id(c),
            float(c.metadata["nbgrader"].get("points", 0)),
            "manual" if is_solution(c) else "auto",
        )
        for c in source_nb.cells
        if is_grade(c)
    ]


def unsubmitted(source_nb) -> list[Part]:
    """Every part of a notebook the student did not hand in: 0 points each."""
    return [
        Part(g, p, k, points=0.0, message="not submitted") for g, p, k in graded_cells(source_nb)
    ]


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with its control characters (terminal escapes, carriage returns) written as
    ``\\xNN``: a student's exception text reaches CSVs and a terminal through messages."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text or "")


def missing(
    student: str, assignment: str, source_nb, why: str = "", status: str = Status.MISSING
) -> dict:
    """The result of an assignment not handed in (status "missing"), or handed in but not
    readable (status "unreadable"); ``why`` is what the student's folder held instead, when the
    collection step knows."""
    first = "no notebook submitted" if status == Status.MISSING else "notebook not graded"
    flags = [first + (f" ({why})" if why else "")]
    result = Result(student, assignment, Status(status), unsubmitted(source_nb), flags)
    return result.to_dict()


@functools.cache
def course_secret(course: Path) -> set:
    """Hidden-test lines of every assignment in the course (kept out of all feedback)."""
    return hidden_lines(*(Course(course).source_notebook(a) for a in ASSIGNMENTS))
