"""The class gradebook: every student's final points in one nbgrader gradebook.

After grading, `record` writes the final points (grades.csv's: the re-check's, not the kernel's)
into ``OUT/course/gradebook.db`` and puts each notebook where formgrader looks. The instructor
grades the written answers there; `hand_scores` reads those marks back for ``gmm-grade
--update``. `record` updates an existing submission in place, so hand marks survive a re-run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from nbgrader.api import Grade, Gradebook, MissingEntry
from nbgrader.utils import parse_utc

from grading.course import ASSIGNMENTS, db_url
from grading.layout import Course
from grading.records import Status


def was_graded(result: dict) -> bool:
    """Whether a result has graded parts (not a missing notebook nor a grader failure)."""
    return bool(result.get("parts")) and result.get("status") not in (
        Status.MISSING,
        Status.GRADER_ERROR,
    )


def _place_notebooks(course: Path, work: Path, student: str, assignment: str) -> str | None:
    """Copy the submitted and the graded notebook into the class course folder (formgrader
    shows the latter); return the submission's timestamp."""
    mine, theirs = Course(work / student), Course(course)
    submitted = mine.folder("submitted", assignment, student)
    for kind in ("submitted", "autograded"):
        dest = theirs.folder(kind, assignment, student)
        if dest.exists():
            shutil.rmtree(dest)
    shutil.copytree(submitted, theirs.folder("submitted", assignment, student))
    theirs.folder("autograded", assignment, student).mkdir(parents=True)
    shutil.copyfile(
        mine.graded_notebook(student, assignment),
        theirs.notebook("autograded", assignment, student),
    )
    stamp = submitted / "timestamp.txt"
    return stamp.read_text().strip() if stamp.exists() else None


def _submission(gb, assignment: str, student: str, timestamp: str | None):
    """This student's submission in the gradebook, kept if it exists (with any hand marks)."""
    gb.update_or_create_student(student)
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        # nbgrader builds the rows before adding them: without this, SQLAlchemy warns.
        with gb.db.no_autoflush:
            return gb.add_submission(
                assignment, student, **({"timestamp": timestamp} if timestamp else {})
            )
    if timestamp:
        submission.timestamp = parse_utc(timestamp)
    return submission


def record(course: Path, work: Path, results: dict[str, list]) -> None:
    """Write every graded notebook's final points into the class gradebook (see the module)."""
    with Gradebook(db_url(course)) as gb:
        for student in sorted(results):
            for r in results[student]:
                if not was_graded(r):
                    continue
                assignment = r["assignment"]
                notebook = Path(ASSIGNMENTS[assignment]).stem
                timestamp = _place_notebooks(course, work, student, assignment)
                _submission(gb, assignment, student, timestamp)
                for p in r["parts"]:
                    grade = gb.find_grade(p["grade_id"], notebook, assignment, student)
                    grade.auto_score = p["points"]  # None: a written answer waiting for a human
                    # Flagged parts show up in formgrader's "needs manual grade" list too.
                    grade.needs_manual_grade = grade.manual_score is None and (
                        p["points"] is None or bool(p.get("flagged"))
                    )
                gb.db.commit()


def hand_scores(course: Path) -> dict[tuple[str, str, str], float]:
    """{(student, assignment, grade_id): score} for every part a human scored in the gradebook.

    The score is nbgrader's: the manual score plus any extra credit.
    """
    if not Course(course).gradebook.exists():
        return {}
    with Gradebook(db_url(course)) as gb:
        marked = gb.db.query(Grade).filter(Grade.manual_score.isnot(None))
        return {
            (g.student.id, g.assignment.name, g.name): g.manual_score + (g.extra_credit or 0)
            for g in marked
        }


def apply_hand_scores(results: dict[str, list], scores: dict) -> int:
    """Replace the points of every part a human scored; return how many parts changed."""
    changed = 0
    for student, rs in results.items():
        for r in rs:
            for p in r.get("parts", []):
                key = (student, r["assignment"], p["grade_id"])
                if key in scores:
                    before = p["points"]
                    p["points"] = scores[key]
                    p["message"] = (
                        "graded by hand"
                        if p["kind"] == "manual" or before is None
                        else f"set by hand (autograded {before:g})"
                    )
                    changed += 1
    return changed
