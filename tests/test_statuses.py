"""The statuses "blank" (the release handed back unchanged) and "broken" (nothing ran), on
notebooks built from the release notebooks (exercises/): first through the real re-check and
`grading.classify`, then through `gmm-grade`'s pipeline to grades.csv and needs_review.csv."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import nbformat
import pytest
from graded_class import (
    ASSIGNMENT,
    STATUSES,
    no_answer_function,
    one_answer_right,
    release,
    syntax_errors_everywhere,
    written_answer_only,
)

from grading.classify import classify
from grading.course import ASSIGNMENTS, SOLUTIONS
from grading.recheck import recheck_notebook
from grading.records import Status
from grading.worker import blank_answers, combine

_release = release


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
def test_grades_and_the_review_list_show_blank_and_broken(graded_class):
    """Four notebooks (`graded_class.STATUSES`) in the test run's graded class, through
    `gmm-grade`'s pipeline: the two new statuses in grades.csv, on needs_review.csv with their
    reason in words, and not counted as failures of the tests."""
    out = graded_class.out
    ours = set(STATUSES)
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    grades = {r["student_id"]: r for r in rows if r["assignment"] == ASSIGNMENT}
    assert {s: grades[s]["status"] for s in ours} == {
        "unchanged": "blank",
        "syntax": "broken",
        "renamed": "broken",
        "model": "ok",
    }
    assert grades["unchanged"]["needs_review"] == "yes" and grades["model"]["needs_review"] == "no"
    with open(out / "needs_review.csv") as f:
        review = {
            r["student_id"]: r
            for r in csv.DictReader(f)
            if r["student_id"] in ours
            and r["assignment"] == ASSIGNMENT
            and r["status"] != "copying"  # copy detection's rows: tests/test_copying.py
        }
    assert set(review) == {"unchanged", "syntax", "renamed"}
    assert review["unchanged"]["status"] == "blank"
    assert "the answer cells are the release's, unchanged" in review["unchanged"]["reasons"]
    assert "SyntaxError" in review["syntax"]["reasons"]
    assert "none of the functions the tests call" in review["renamed"]["reasons"]
    # blank and broken are no test's failure: failures.txt counts, for each part, the
    # submissions that lost points on it, those of blank and broken submissions left out
    status = {(r["student_id"], r["assignment"]): r["status"] for r in rows}
    lost = {}
    with open(out / "parts.csv") as f:
        for p in csv.DictReader(f):
            if p["kind"] == "auto" and p["points"] not in ("", "pending"):
                if float(p["points"]) < float(p["max_points"]):
                    lost.setdefault(p["grade_id"], set()).add((p["student_id"], p["assignment"]))
    blank_or_broken = {("unchanged", ASSIGNMENT), ("syntax", ASSIGNMENT), ("renamed", ASSIGNMENT)}
    assert all(any(k in keys for keys in lost.values()) for k in blank_or_broken), (
        "the blank and broken notebooks lose points (else the count below proves nothing)"
    )
    counted = {
        gid: sum(status[k] not in ("missing", "unreadable", "blank", "broken") for k in keys)
        for gid, keys in lost.items()
    }
    failures = (out / "failures.txt").read_text()
    written = {
        line.split(": ", 1)[0]: int(line.split(": ", 1)[1].split(" ", 1)[0])
        for line in failures.splitlines()
    }
    assert written == {gid: n for gid, n in counted.items() if n}, failures
    # The run's feedback pages load the MathJax the export copied beside them (grading.mathjax).
    page = out / "feedback" / "model" / ASSIGNMENT / (Path(ASSIGNMENTS[ASSIGNMENT]).stem + ".html")
    (src,) = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.read_text())
    assert (page.parent / src).resolve() == (out / "feedback/_mathjax/tex-mml-chtml.js").resolve()
    assert (page.parent / src).is_file()
