"""The statuses "blank" (the release handed back unchanged) and "broken" (nothing ran), on
notebooks built from the release notebooks (exercises/): first through the real re-check and
`grading.classify`, then through `gmm-grade`'s pipeline to grades.csv and needs_review.csv."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import nbformat
import pytest

from grading.classify import classify
from grading.course import ASSIGNMENTS, EXERCISES, SOLUTIONS
from grading.recheck import recheck_notebook
from grading.records import Status
from grading.worker import blank_answers, combine

ASSIGNMENT = "em_by_hand"
FUNCTIONS = ("e_step", "m_step", "log_likelihood", "fit_em")


def _release():
    return nbformat.read(EXERCISES / ASSIGNMENT / ASSIGNMENTS[ASSIGNMENT], as_version=4)


def _answers(nb):
    return [
        c
        for c in nb.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
    ]


def syntax_errors_everywhere():
    """Every answer cell with its ``def`` line missing the colon."""
    nb = _release()
    for cell in _answers(nb):
        cell.source = cell.source.replace("):\n", ")\n", 1).replace(
            "raise NotImplementedError()", "return 0"
        )
    return nb


def no_answer_function():
    """Code that runs, under names the tests do not call (``estep`` for ``e_step``)."""
    nb = _release()
    for cell in _answers(nb):
        for name in FUNCTIONS:
            cell.source = cell.source.replace(f"def {name}(", f"def {name.replace('_', '')}(")
    return nb


def one_answer_right():
    """The model's e_step, every other answer a syntax error: something ran."""
    nb = syntax_errors_everywhere()
    source = nbformat.read(SOLUTIONS / ASSIGNMENT / ASSIGNMENTS[ASSIGNMENT], as_version=4)
    model = next(c.source for c in _answers(source) if "def e_step(" in c.source)
    next(c for c in _answers(nb) if "def e_step(" in c.source).source = model
    return nb


def written_answer_only():
    """The release with its written answer filled in: not blank, and the stubs ran."""
    nb = _release()
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "Far from every mean every density underflows to 0."
    return nb


def _classified(tmp_path, nb):
    path = tmp_path / "submitted.ipynb"
    nbformat.write(nb, path)
    source_path = SOLUTIONS / ASSIGNMENT / ASSIGNMENTS[ASSIGNMENT]
    source = nbformat.read(source_path, as_version=4)
    recheck = recheck_notebook(path, source_path, ASSIGNMENT, tmp_path / "recheck")
    recheck["blank_answers"] = blank_answers(nb, source)
    parts = combine(source, recheck, {})
    return classify(Status.OK, nb, _release(), source, recheck, parts, ASSIGNMENT)


def test_the_release_unchanged_is_blank(tmp_path):
    status, why = _classified(tmp_path, _release())
    assert status == Status.BLANK
    assert why.startswith("blank: the answer cells are the release's, unchanged")


def test_syntax_errors_everywhere_is_broken(tmp_path):
    status, why = _classified(tmp_path, syntax_errors_everywhere())
    assert status == Status.BROKEN
    assert "nothing ran: none of the functions the tests call (e_step, m_step" in why
    assert "every answer cell failed in the re-check" in why and "SyntaxError" in why


def test_no_answer_function_defined_is_broken(tmp_path):
    status, why = _classified(tmp_path, no_answer_function())
    assert status == Status.BROKEN
    assert "the answer cells define none of them" in why


@pytest.mark.parametrize("build", [one_answer_right, written_answer_only])
def test_a_submission_where_something_ran_keeps_its_status(tmp_path, build):
    assert _classified(tmp_path, build()) == (Status.OK, None)


def test_a_flagged_submission_stays_flagged(tmp_path):
    path = tmp_path / "submitted.ipynb"
    nbformat.write(_release(), path)
    source = nbformat.read(SOLUTIONS / ASSIGNMENT / ASSIGNMENTS[ASSIGNMENT], as_version=4)
    assert classify(Status.FLAGGED, _release(), _release(), source, {}, [], ASSIGNMENT) == (
        Status.FLAGGED,
        None,
    )


@pytest.mark.slow
def test_grades_and_the_review_list_show_blank_and_broken(tmp_path):
    """A class of four through `gmm-grade`'s pipeline: the two new statuses in grades.csv, on
    needs_review.csv with their reason in words, and not counted as failures of the tests."""
    from grading.pipeline import grade_folder

    submissions = tmp_path / "submissions"
    model = nbformat.read(SOLUTIONS / ASSIGNMENT / ASSIGNMENTS[ASSIGNMENT], as_version=4)
    for student, nb in {
        "unchanged": _release(),
        "syntax": syntax_errors_everywhere(),
        "renamed": no_answer_function(),
        "model": model,
    }.items():
        (submissions / student).mkdir(parents=True)
        nbformat.write(nb, submissions / student / ASSIGNMENTS[ASSIGNMENT])
    out = tmp_path / "out"
    grade_folder(
        submissions, out, assignments=(ASSIGNMENT,), progress=io.StringIO(), copy_check=False
    )
    grades = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert {s: r["status"] for s, r in grades.items()} == {
        "unchanged": "blank",
        "syntax": "broken",
        "renamed": "broken",
        "model": "ok",
    }
    assert grades["unchanged"]["needs_review"] == "yes" and grades["model"]["needs_review"] == "no"
    review = {r["student_id"]: r for r in csv.DictReader(open(out / "needs_review.csv"))}
    assert set(review) == {"unchanged", "syntax", "renamed"}
    assert review["unchanged"]["status"] == "blank"
    assert "the answer cells are the release's, unchanged" in review["unchanged"]["reasons"]
    assert "SyntaxError" in review["syntax"]["reasons"]
    assert "none of the functions the tests call" in review["renamed"]["reasons"]
    assert Path(out / "failures.txt").read_text() == "", "blank and broken are no test's failure"
    # The run's feedback pages load the MathJax the export copied beside them (grading.mathjax).
    page = out / "feedback" / "model" / ASSIGNMENT / (Path(ASSIGNMENTS[ASSIGNMENT]).stem + ".html")
    (src,) = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.read_text())
    assert (page.parent / src).resolve() == (out / "feedback/_mathjax/tex-mml-chtml.js").resolve()
    assert (page.parent / src).is_file()
