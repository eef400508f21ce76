"""Strict intake (`grading.collect`) and the run's outputs (`grading.export`): a hostile class.

Every attack of tests/fixtures/hostile_uploads.py is one student; each gets exactly the outcome
`EXPECTED` names, the honest students are taken unchanged, and the class's CSVs are written.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path

import nbformat
import pytest

from grading import collect as intake
from grading.collect import collect, json_depth, shown
from grading.course import SOLUTIONS
from grading.export import export, write_atomic

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("hostile", HERE / "fixtures" / "hostile_uploads.py")
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)

SOURCE = SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb"


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory):
    """The hostile class collected and exported: (folder, students, problems, skipped)."""
    tmp = tmp_path_factory.mktemp("intake")
    notebook = SOURCE.read_bytes()
    skipped = hostile.write_uploads(tmp / "subs", notebook)
    students, problems = collect(tmp / "subs", tmp / "work", ("em_by_hand",))
    sources = {"em_by_hand": nbformat.read(SOURCE, as_version=4)}
    export(tmp, students, {}, sources, problems)
    return tmp, students, problems, skipped


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_every_attack_is_that_students_problem_and_only_theirs(hostile_class):
    tmp, students, problems, skipped = hostile_class
    expected = {s: v for s, v in hostile.EXPECTED.items() if s not in skipped}
    assert sorted(students) == sorted(expected)
    review = {(r["student_id"], r["assignment"]): r for r in _rows(tmp / "needs_review.csv")}
    for student, (status, reason) in expected.items():
        copy = tmp / "work" / student / "submitted" / student / "em_by_hand" / "em_by_hand.ipynb"
        if status == "ok":
            assert students[student]["em_by_hand"] is not None, student
            assert copy.read_bytes() == SOURCE.read_bytes(), student
            assert not [p for p in problems if p.student == student], student
            continue
        assert students[student]["em_by_hand"] is None, student
        assert not copy.exists(), student
        row = review[(student, "em_by_hand")]
        assert row["status"] == status, (student, row)
        first = "no notebook submitted" if status == "missing" else "notebook not graded"
        said = reason if reason.startswith("no notebook") else f"{first} ({reason}"
        assert row["reasons"].startswith(said), (student, row["reasons"])


def test_folders_that_are_no_student_get_rows_of_their_own(hostile_class):
    tmp, students, _, _ = hostile_class
    rows = [r for r in _rows(tmp / "needs_review.csv") if r["status"] == "collect"]
    assert {r["student_id"]: r["reasons"] for r in rows} == hostile.NOT_STUDENTS


def test_the_class_csvs_are_written_printably(hostile_class):
    """Every name and reason is printable: no escape reaches a terminal, no byte breaks UTF-8."""
    tmp, students, _, skipped = hostile_class
    grades = _rows(tmp / "grades.csv")
    assert sorted(r["student_id"] for r in grades) == sorted(students)
    for name in ("grades.csv", "needs_review.csv", "parts.csv", "failures.txt"):
        text = (tmp / name).read_text(encoding="utf-8")
        assert "\x1b" not in text and "\udce9" not in text, name
    assert not list(tmp.glob(".*.csv.*")), "a temporary file was left behind"


def test_nothing_is_followed_out_of_a_students_folder(hostile_class):
    """The honest student's notebook, linked to and hard-linked, was never copied to another."""
    tmp, *_ = hostile_class
    copies = list((tmp / "work").rglob("*.ipynb"))
    assert sorted(p.relative_to(tmp / "work").parts[0] for p in copies) == [
        "honest",
        "honest_flat",
    ]


def test_a_file_swapped_after_the_walk_is_checked_on_its_descriptor(tmp_path):
    """The walk saw a regular file; by the time it is opened it is a FIFO: refused, no hang."""
    path = tmp_path / "em_by_hand.ipynb"
    os.mkfifo(path)
    with pytest.raises(intake.UnfitError, match="is a FIFO"):
        intake.read_upload(path)
    path.unlink()
    path.symlink_to(SOURCE)
    with pytest.raises(intake.UnfitError, match="cannot be opened"):
        intake.read_upload(path)


def test_a_student_over_the_size_cap_is_listed(tmp_path, monkeypatch):
    notebook = SOURCE.read_bytes()
    for assignment in ("em_by_hand", "break_it"):
        path = tmp_path / "subs" / "big" / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_bytes(notebook if assignment == "em_by_hand" else b" " * len(notebook))
    monkeypatch.setattr(intake, "STUDENT_BYTES", len(notebook) + 10)
    students, problems = collect(tmp_path / "subs", tmp_path / "work", ("em_by_hand", "break_it"))
    assert students["big"] == {
        "em_by_hand": tmp_path / "subs" / "big" / "em_by_hand" / "em_by_hand.ipynb",
        "break_it": None,
    }
    assert [p.reason for p in problems] == [
        "break_it/break_it.ipynb makes the folder too large (> 0 MB): not graded"
    ]


def test_json_depth_is_measured_without_recursion():
    assert json_depth(b'{"a": [1, {"b": "[[[[["}]}') == 3
    assert json_depth(b'"\\"[[["') == 0
    assert json_depth(b"[" * 300_000) == 300_000


def test_names_of_any_bytes_are_shown_printably():
    assert shown(os.fsdecode(b"caf\xe9\x1b[31m\n")) == "caf\\xe9\\x1b[31m\\n"
    assert shown("ok_name.ipynb") == "ok_name.ipynb"


def test_outputs_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "grades.csv"
    target.write_text("old\n")

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]


def test_a_result_holding_any_text_is_exported(tmp_path):
    """A worker's result whose message holds lone surrogates and escapes (JSON can carry both)
    is written printably; the run still gets every file."""
    source = nbformat.read(SOURCE, as_version=4)
    results = {
        "alice": [
            {
                "student": "alice",
                "assignment": "em_by_hand",
                "status": "ok",
                "flags": ["odd \udcff\x1b[2J output"],
                "parts": [
                    {
                        "grade_id": "em_by_hand_e_step_tests",
                        "kind": "auto",
                        "points": 0.0,
                        "max_points": 2.0,
                        "message": "bad \udcff",
                    }
                ],
            }
        ]
    }
    export(tmp_path, {"alice": {}}, results, {"em_by_hand": source}, [])
    review = _rows(tmp_path / "needs_review.csv")
    assert review[0]["reasons"] == "odd \\xff\\x1b[2J output"
    assert "bad \\xff" in (tmp_path / "failures.txt").read_text(encoding="utf-8")


def test_flat_uploads_as_an_lms_exports_them(tmp_path):
    """nbgrader's zip_collect conventions: ``<student>_<notebook>`` and Canvas's
    ``<student>_<id>_<id>_<notebook>``; a resubmission ``-1``; the same checks as a folder."""
    subs = tmp_path / "subs"
    subs.mkdir()
    notebook = SOURCE.read_bytes()
    for name in [
        "alice_em_by_hand.ipynb",
        "bob_smith_12345_67890_em_by_hand.ipynb",
        "carol_LATE_1_2_em_by_hand-1.ipynb",
        "dave_em_by_hand.ipynb",
        "dave_3_4_em_by_hand.ipynb",
        "notes.ipynb",
    ]:
        (subs / name).write_bytes(notebook)
    (subs / "erin_em_by_hand.ipynb").symlink_to(SOURCE)
    os.mkfifo(subs / "frank_em_by_hand.ipynb")
    students, problems = collect(subs, tmp_path / "work", ("em_by_hand",))
    assert {s: f["em_by_hand"] is not None for s, f in students.items()} == {
        "alice": True,
        "bob_smith": True,
        "carol": True,
        "dave": False,
        "frank": False,
    }
    reasons = {(p.student, p.assignment): p.reason for p in problems}
    assert reasons == {
        ("dave", "em_by_hand"): "several notebooks (dave_3_4_em_by_hand.ipynb, "
        "dave_em_by_hand.ipynb): not graded",
        ("erin_em_by_hand.ipynb", ""): "a link, not a notebook: skipped",
        ("frank", "em_by_hand"): "frank_em_by_hand.ipynb is a FIFO: not graded",
        ("notes.ipynb", ""): "a notebook whose name gives no student and assignment: skipped",
    }
    for student in ("alice", "bob_smith", "carol"):
        copy = tmp_path / "work" / student / "submitted" / student / "em_by_hand"
        assert (copy / "em_by_hand.ipynb").read_bytes() == notebook


def test_no_student_found_prints_the_layouts_understood(tmp_path, capsys):
    from grading.cli import main

    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "readme.txt").write_text("nothing here")
    assert main([str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--no-sandbox"]) == 1
    err = capsys.readouterr().err
    assert "found no student in" in err and "<student>_<id>_<id>_<notebook>" in err, err
    assert (tmp_path / "out" / "grades.csv").read_text().startswith("student_id,")
