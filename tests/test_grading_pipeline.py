"""The instructor's pipeline end to end on the fixture submissions (tests/fixtures/).

The test run's graded class (tests/graded_class.py, conftest.py's `graded_class`) grades every
fixture student (reference, valid variants, bugs, hostile submissions) with
`grading.pipeline.grade_folder`, in parallel, exactly as `gmm-grade` does, beside the students
of tests/test_statuses.py and tests/test_explore_in_notebooks.py; the tests read what an
instructor reads (grades.csv, parts.csv, needs_review.csv, failures.txt and the feedback HTML)
for the students and assignments named here. Copy detection is on for the class (the
poisson_mixture section below tests it); its review rows, status "copying", are the subject of
tests/test_copying.py and that section, and the other tests here leave them out.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import fixture_students
import nbformat
import pytest
from graded_class import EXPLORER_CLASS, hashes

from grading.course import ASSIGNMENTS, SOLUTIONS, tool_env

ROOT = Path(__file__).resolve().parents[1]
#: The spec of every hidden test (grading/checks/): no line of it may reach a student.
CHECKS_TEXT = "\n".join(p.read_text() for p in sorted((ROOT / "grading" / "checks").glob("*.py")))

#: The assignments 1 and 2, whose parts EXPECTED lists (poisson_mixture: POISSON_EXPECTED below).
CORE = fixture_students.load().CORE
#: {student: the assignments they hand in}.
HANDED_IN = {s: h for s, (_, _, h) in fixture_students.load().students().items()}
EM_PARTS = {  # grade_id suffix -> points
    "e_step_tests": 3,
    "e_step_stability": 1,
    "m_step_weights": 1,
    "m_step_means": 1,
    "m_step_covariances": 2,
    "log_likelihood_tests": 2,
    "log_likelihood_stability": 1,
    "fit_em_tests": 2,
    "fit_em_monotone": 1,
}
BREAK_PARTS = {"collapsed_tests": 2, "run_em_tests": 3, "collapse_seed_tests": 1, "fix_tests": 2}
E_STEP = {"e_step_tests", "e_step_stability", "fit_em_tests", "fit_em_monotone"}
FIT = {"fit_em_tests", "fit_em_monotone"}

# student -> (em_by_hand parts that must score 0, break_it parts that must score 0,
#             em_by_hand total, break_it total). Every other part must get full points. None:
# the student does not hand that notebook in (their answers are not about it: the fixture's
# `about`), so its row is "missing", on the review list, with no points.
EXPECTED = {
    "reference": (set(), set(), 14, 8),
    "valid_loops": (set(), set(), 14, 8),
    "valid_einsum": (set(), None, 14, None),
    "valid_scipy": (set(), None, 14, None),
    "valid_with_warnings": (set(), None, 14, None),
    "valid_style_history": (set(), set(), 14, 8),
    "valid_style_while": (set(), set(), 14, 8),
    # Suspicious (__import__) but correct: the re-check passed, so the points stay.
    "review_dunder_import": (set(), None, 14, None),
    "bug_no_normalise": (E_STEP, None, 7, None),
    "bug_ignores_weights": (E_STEP, None, 7, None),
    "bug_transposed_resp": (E_STEP, None, 7, None),
    "bug_missing_logdet": (E_STEP, None, 7, None),
    "bug_naive_exp": ({"e_step_stability"}, None, 13, None),
    # fit_em_monotone compares with EM's history from the same start (issue 21 item 5): a wrong
    # step makes the history another one, and that part is lost too.
    "bug_means_divide_by_n": ({"m_step_means", "m_step_covariances"} | FIT, None, 8, None),
    "bug_not_centred": ({"m_step_covariances"} | FIT, None, 9, None),
    "bug_cov_divide_by_n": ({"m_step_covariances"} | FIT, None, 9, None),
    "bug_weights_unnormalised": ({"m_step_weights"} | FIT, None, 10, None),
    "bug_mean_loglik": ({"log_likelihood_tests", "log_likelihood_stability"} | FIT, None, 8, None),
    "bug_naive_loglik": ({"log_likelihood_stability"}, None, 13, None),
    "bug_history_without_start": (FIT, None, 11, None),
    "bug_collapse_largest_eigenvalue": (None, {"collapsed_tests", "run_em_tests"}, None, 3),
    "bug_keeps_collapsed_params": (None, {"run_em_tests"}, None, 5),
    # New with the library's collapse rule (issue 12 item 5): reg_covar only hides a collapse.
    "bug_fix_reg_covar": (None, {"fix_tests"}, None, 6),
    # A floor added by hand escapes any watch of m_step's arguments; the parameters are not EM's
    # with the task's prior, and that is what the check compares.
    "bug_fix_by_hand": (None, {"fix_tests"}, None, 6),
    "hostile_calls_gmmlib": (
        set(EM_PARTS) - {"log_likelihood_tests", "log_likelihood_stability"},
        None,
        3,
        None,
    ),
    # Neither the kernel nor the re-check's sandbox mounts gmmlib in assignment 1: no points.
    "hostile_loads_gmmlib_files": (set(EM_PARTS), None, 0, None),
    "hostile_patches_numpy": (E_STEP, None, 7, None),
    "hostile_patches_builtins": (set(EM_PARTS), set(BREAK_PARTS), 0, 0),
    "hostile_reads_gradebook": (set(), set(), 14, 8),
    "hostile_infinite_loop": (E_STEP, None, 7, None),
    "hostile_os_exit": (
        {"m_step_weights", "m_step_means", "m_step_covariances"} | FIT,
        None,
        7,
        None,
    ),
    "hostile_huge_allocation": (
        {"log_likelihood_tests", "log_likelihood_stability"} | FIT,
        None,
        8,
        None,
    ),
    "hostile_syntax_error": (E_STEP, None, 7, None),
    "hostile_escapes_in_messages": (E_STEP, None, 7, None),
    # Attacks on the grader, the course and other students: the sandbox makes them fail.
    "hostile_rewrites_files": (set(), None, 14, None),
    "hostile_reads_solutions": (set(), set(), 14, 8),
    "hostile_network": (set(), None, 14, None),
    "hostile_daemon": (set(), None, 14, None),
    "hostile_links_font_cache": (set(), set(), 14, 8),
    "hostile_fork_bomb": (
        {"m_step_weights", "m_step_means", "m_step_covariances"} | FIT,
        None,
        7,
        None,
    ),
    # Issue 21: hidden tests never run where student code runs; stubs earn nothing.
    "hostile_history_exfiltration": (set(), None, 14, None),
    "stub_constant_history": (FIT, None, 11, None),
    "stub_uniform_resp": (E_STEP, None, 7, None),
    "hostile_inherited_fd": (set(), set(), 14, 8),
    "hostile_sleepers": (set(), set(), 14, 8),
    "only_first_assignment": (set(), None, 14, None),
    "blank": (set(EM_PARTS), set(BREAK_PARTS), 0, 0),
}
# (student, assignment) -> status; every other submission must be "ok" with no review needed.
STATUS = {
    ("hostile_calls_gmmlib", "em_by_hand"): "flagged",
    ("hostile_patches_numpy", "em_by_hand"): "flagged",
    ("hostile_patches_builtins", "em_by_hand"): "flagged",
    ("hostile_patches_builtins", "break_it"): "flagged",
    # Proven violations are "flagged"; suspicious code and what the sandbox saw are "review".
    ("review_dunder_import", "em_by_hand"): "review",
    ("hostile_reads_gradebook", "em_by_hand"): "review",  # it found no gradebook to print
    ("hostile_reads_gradebook", "break_it"): "review",
    ("hostile_infinite_loop", "em_by_hand"): "kernel-timeout",
    ("hostile_os_exit", "em_by_hand"): "kernel-died",
    ("hostile_huge_allocation", "em_by_hand"): "ok",  # scored, but on the review list
    ("hostile_rewrites_files", "em_by_hand"): "review",
    ("hostile_reads_solutions", "em_by_hand"): "review",
    ("hostile_reads_solutions", "break_it"): "review",
    ("hostile_network", "em_by_hand"): "review",
    ("hostile_daemon", "em_by_hand"): "review",
    ("hostile_fork_bomb", "em_by_hand"): "review",
    # hostile_loads_gmmlib_files: no sandbox mounts gmmlib in assignment 1, so its search finds
    # nothing and its answer cell fails (0 points); its getattr(sys, "meta_path") to remove the
    # import blocker is found by the scan (attack round, A4), so it is reviewed.
    ("hostile_loads_gmmlib_files", "em_by_hand"): "review",
    # Its added cell ends the re-check's process on purpose: the exit status is observed.
    ("hostile_links_font_cache", "em_by_hand"): "review",
    ("hostile_links_font_cache", "break_it"): "review",
    ("hostile_history_exfiltration", "em_by_hand"): "review",  # e_step.__globals__
    # The feedback run was stopped (its budget); the re-check skipped the sleeping cells.
    ("hostile_sleepers", "em_by_hand"): "kernel-timeout",
    ("hostile_sleepers", "break_it"): "kernel-timeout",
    # The release handed back unchanged (grading.classify, issue 22): a status of its own.
    ("blank", "em_by_hand"): "blank",
    ("blank", "break_it"): "blank",
}
# What the sandbox must have reported for each attack (a word of the review reason).
OBSERVED = {
    ("hostile_rewrites_files", "em_by_hand"): "write to ",
    ("hostile_reads_solutions", "em_by_hand"): "not visible in the sandbox",
    ("hostile_reads_solutions", "break_it"): "not visible in the sandbox",
    ("hostile_network", "em_by_hand"): "network connection to ('127.0.0.1'",
    ("hostile_daemon", "em_by_hand"): "still running when the re-check ended",
    ("hostile_fork_bomb", "em_by_hand"): "process limit",
}
ATTACKERS = {student for student, _ in OBSERVED}
#: Students graded a second time, without any attacker beside them (see
#: test_attackers_change_nobody_else).
BYSTANDERS = ("reference", "bug_naive_exp")


@pytest.fixture(scope="session")
def graded(graded_class):
    """The graded class: (output folder, progress text, wall seconds, submissions before
    grading: {path: sha256})."""
    core = {s for s, handed_in in HANDED_IN.items() if set(handed_in) & set(CORE)}
    assert core == set(EXPECTED), "fixture students and EXPECTED disagree"
    for student, (lost_em, lost_break, *_) in EXPECTED.items():
        lost = dict(zip(CORE, (lost_em, lost_break), strict=True))
        handed_in = {a for a in CORE if lost[a] is not None}
        assert handed_in == set(CORE) & set(HANDED_IN[student]), f"{student}: EXPECTED's None"
    return graded_class.out, graded_class.progress, graded_class.seconds, graded_class.before


def _review_reasons(out: Path) -> dict:
    """{(student, assignment): reasons} of needs_review.csv, copy detection's rows left out."""
    with open(out / "needs_review.csv") as f:
        return {
            (r["student_id"], r["assignment"]): r["reasons"]
            for r in csv.DictReader(f)
            if r["status"] != "copying"
        }


@pytest.fixture(scope="session")
def grades(graded):
    with open(graded[0] / "grades.csv") as f:
        return {(r["student_id"], r["assignment"]): r for r in csv.DictReader(f)}


@pytest.fixture(scope="session")
def parts(graded):
    with open(graded[0] / "parts.csv") as f:
        return {(r["student_id"], r["assignment"], r["grade_id"]): r for r in csv.DictReader(f)}


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_scores_are_exactly_the_expected_ones(grades, student):
    lost_em, lost_break, total_em, total_break = EXPECTED[student]
    for assignment, table, lost, total in [
        ("em_by_hand", EM_PARTS, lost_em, total_em),
        ("break_it", BREAK_PARTS, lost_break, total_break),
    ]:
        row = grades[(student, assignment)]
        if total is None:  # not handed in: every part 0
            lost, total = set(table), 0
            assert row["status"] == "missing", f"{student}/{assignment}: {row['status']}"
        for part, points in table.items():
            want = 0 if part in lost else points
            got = row[f"{assignment}_{part}"]
            assert got == f"{want:g}", (
                f"{student}, {assignment}_{part}: scored {got}, expected {want} "
                f"({'a part this submission must lose' if part in lost else 'full points'})"
            )
        assert row["autograded"] == f"{total:g}", (
            f"{student}, {assignment}: autograded total {row['autograded']}, expected {total}"
        )
        assert row["autograded_max"] == f"{sum(table.values()):g}"


@pytest.mark.slow
def test_status_and_review_list(graded, grades):
    reasons = _review_reasons(graded[0])
    review = set(reasons)
    ours = {(s, a): r for (s, a), r in grades.items() if s in EXPECTED and a in CORE}
    assert len(ours) == len(EXPECTED) * len(CORE)
    for (student, assignment), row in ours.items():
        handed_in = assignment in HANDED_IN[student]
        want = STATUS.get((student, assignment), "ok" if handed_in else "missing")
        assert row["status"] == want, (
            f"{student}/{assignment}: status {row['status']}, expected {want}; "
            f"reasons: {reasons.get((student, assignment), '(none)')}"
        )
        needs = (student, assignment) in STATUS or not handed_in
        assert (row["needs_review"] == "yes") == needs, (
            f"{student}/{assignment}: needs_review={row['needs_review']}, expected "
            f"{'yes' if needs else 'no'}"
        )
        assert ((student, assignment) in review) == needs, (
            f"{student}/{assignment} {'missing from' if needs else 'wrongly on'} needs_review.csv"
        )


@pytest.mark.slow
def test_the_sandbox_reports_what_it_stopped(graded):
    """Each attack is on the review list with what the sandbox saw (writes refused, paths not
    visible, connections blocked, processes left running, the process limit)."""
    reasons = _review_reasons(graded[0])
    for key, needle in OBSERVED.items():
        assert needle in reasons.get(key, ""), f"{key}: {needle!r} not in {reasons.get(key)!r}"
    with open(graded[0] / "grades.csv") as f:
        assert {r["sandbox"] for r in csv.DictReader(f)} == {"bubblewrap"}


@pytest.mark.slow
def test_attacks_change_no_file_outside_the_attackers_folder(graded):
    """The submissions folder, every other student's copy and the course are byte-identical."""
    out, _, _, before = graded
    submissions = out.parent / "submissions"
    assert hashes(submissions) == before, "the submissions folder changed"
    for name, digest in before.items():
        student = name.split("/")[0]
        copy = out / "work" / student / "submitted" / student / Path(name).relative_to(student)
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest, f"{copy} changed"
    for assignment, notebook in ASSIGNMENTS.items():
        course_copy = out / "course" / "solutions" / assignment / notebook
        assert course_copy.read_bytes() == (SOLUTIONS / assignment / notebook).read_bytes()
    assert json.loads((out / "work" / "reference" / "result.json").read_text())


@pytest.mark.slow
def test_no_connection_reaches_the_grading_machine(graded_class):
    """The loopback listener hostile_network tries had no connection queued once grading
    ended (the class's builder accepted what was queued, without blocking)."""
    assert graded_class.accepted == [], graded_class.accepted


@pytest.mark.slow
def test_nothing_the_students_started_outlives_grading(graded_class):
    """No process of this run's sandbox uids is left. The run's block of 64 uids follows from
    the grading process's pid (`sandbox_uid`; recorded by the class's builder, which may be
    another pytest-xdist worker), so other grading runs on the machine do not count."""
    ours = range(graded_class.first_uid, graded_class.first_uid + 64)
    alive = []
    for entry in Path("/proc").iterdir():
        try:
            uid = int(
                next(
                    ln
                    for ln in (entry / "status").read_text().splitlines()
                    if ln.startswith("Uid:")
                ).split()[1]
            )
        except (OSError, StopIteration, ValueError):
            continue
        if uid in ours:
            alive.append((entry.name, uid))
    assert not alive, f"sandboxed processes still running after grading: {alive}"


@pytest.mark.slow
def test_attackers_change_nobody_else(request, tmp_path):
    """Students graded beside the attackers get exactly the rows they get alone (the class is
    asked for once they are graded: under pytest-xdist it may still be in the making on another
    worker, and this grading need not wait for it)."""
    from grading.pipeline import grade_folder

    fixture_students.load().write_all(tmp_path / "submissions", only=BYSTANDERS, assignments=CORE)
    grade_folder(
        tmp_path / "submissions", tmp_path / "out", assignments=CORE, progress=io.StringIO()
    )

    def rows(out):
        with open(out / "parts.csv") as f:
            return [
                r
                for r in csv.DictReader(f)
                if r["student_id"] in BYSTANDERS and r["assignment"] in CORE
            ]

    assert rows(tmp_path / "out") == rows(request.getfixturevalue("graded")[0])


@pytest.mark.slow
def test_manual_parts_wait_for_a_human(grades):
    assert grades[("reference", "em_by_hand")]["manual"] == "pending"
    assert grades[("reference", "break_it")]["manual"] == "pending"
    assert grades[("blank", "em_by_hand")]["manual"] == "0", "an unchanged written answer scores 0"
    assert grades[("reference", "em_by_hand")]["manual_max"] == "2"


@pytest.mark.slow
@pytest.mark.parametrize(
    "student", ["hostile_patches_numpy", "hostile_patches_builtins", "hostile_calls_gmmlib"]
)
def test_fooling_the_kernel_earns_nothing(parts, student):
    """Whatever the student's own run showed (a patched numpy passes its visible tests), the
    points are the re-check's."""
    row = parts[(student, "em_by_hand", "em_by_hand_e_step_tests")]
    if student == "hostile_patches_numpy":
        assert row["kernel_points"] == "3", f"the visible tests were expected to pass: {row}"
    assert row["points"] == "0", f"{student}: e_step_tests kept {row['points']} points"
    assert row["flagged"], f"{student}: the patching was not reported"


@pytest.mark.slow
def test_failures_teach(parts):
    cases = {
        ("bug_no_normalise", "em_by_hand_e_step_tests"): "responsibilities of row 0 sum to",
        ("bug_transposed_resp", "em_by_hand_e_step_tests"): "expected (3, 2) = (N, K)",
        ("bug_naive_exp", "em_by_hand_e_step_stability"): "log-sum-exp",
        ("bug_weights_unnormalised", "em_by_hand_m_step_weights"): "weights sum to 3, expected 1",
        ("bug_mean_loglik", "em_by_hand_log_likelihood_tests"): "the total over points",
        ("bug_history_without_start", "em_by_hand_fit_em_tests"): "expected 4",
        ("hostile_infinite_loop", "em_by_hand_e_step_tests"): "of CPU time (killed)",
        ("hostile_os_exit", "em_by_hand_m_step_weights"): "exit code 3",
        ("hostile_huge_allocation", "em_by_hand_log_likelihood_tests"): "MemoryError",
        ("hostile_syntax_error", "em_by_hand_e_step_tests"): "e_step is not defined",
        ("bug_keeps_collapsed_params", "break_it_run_em_tests"): "last accepted parameters",
    }
    for (student, gid), needle in cases.items():
        assignment = "em_by_hand" if gid.startswith("em_by_hand") else "break_it"
        message = parts[(student, assignment, gid)]["message"]
        assert needle in message, f"{student} {gid}: message {message!r} lacks {needle!r}"


def _hidden_lines():
    """Lines of grading/checks/ (30+ characters) that no release notebook holds: what only
    the hidden tests know (their code, inputs and expected values)."""
    visible = " ".join(
        " ".join(c.source.split())
        for a, name in ASSIGNMENTS.items()
        for c in nbformat.read(ROOT / "exercises" / a / name, as_version=4).cells
    )
    lines = {" ".join(line.split()) for line in CHECKS_TEXT.splitlines() if len(line.strip()) >= 30}
    lines = {line for line in lines if line not in visible}
    assert len(lines) > 100, "expected many hidden-test lines"
    return lines


def _text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.mark.slow
def test_a_students_exception_text_stays_text(graded):
    """The grader quotes a student's exception message: in the CSVs and failures.txt its
    terminal escapes are written out (no ESC byte), and in the feedback page its markdown is
    text (no remote image, no link, the summary table whole)."""
    out = graded[0]
    for name in ("parts.csv", "grades.csv", "needs_review.csv", "failures.txt"):
        text = (out / name).read_text()
        assert "\x1b" not in text and "\x07" not in text, name
    with open(out / "parts.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["student_id"] == "hostile_escapes_in_messages"]
    assert any("\\x1b]52" in r["message"] for r in rows), rows
    page = (out / "feedback/hostile_escapes_in_messages/em_by_hand/em_by_hand.html").read_text()
    assert "attacker.example/pixel.png" in page  # shown as text ...
    assert "<img" not in page and 'href="https://attacker' not in page  # ... never as markup
    assert "Content-Security-Policy" in page
    honest = (out / "feedback/reference/em_by_hand/em_by_hand.html").read_text()
    assert page.count("<table") == honest.count("<table"), "the summary table was broken"


@pytest.mark.slow
def test_feedback_never_shows_hidden_tests(graded, grades):
    hidden = _hidden_lines()  # every assignment's, on every page: a gradebook holds them all
    feedback = graded[0] / "feedback"
    pages = sorted(feedback.rglob("*.html"))
    submitted = {k for k, r in grades.items() if r["status"] != "missing"}
    assert len(pages) == len(submitted), (
        f"{len(pages)} feedback pages for {len(submitted)} submissions"
    )
    submissions = graded[0].parent / "submissions"
    for page in pages:
        raw = page.read_text()
        text = _text(raw)
        flat = " ".join(raw.split())
        student, assignment = page.relative_to(feedback).parts[:2]
        own = " ".join(
            " ".join(c.source.split())
            for c in nbformat.read(
                submissions / student / assignment / ASSIGNMENTS[assignment], as_version=4
            ).cells
        )  # a line the student wrote themselves is theirs to see
        leaked = [line for line in hidden if (line in text or line in flat) and line not in own]
        assert not leaked, f"{page.relative_to(feedback)} shows hidden-test code: {leaked[:3]}"
        assert "BEGIN HIDDEN TESTS" not in raw
        assert (
            "Autograded:" in text
            and "hidden tests: the grader runs them outside your notebook" in text
        )


@pytest.mark.slow
def test_suspicious_but_correct_code_keeps_its_points(grades, parts):
    """__import__ is suspicious, not a proof: the re-check passed outside the kernel, so the
    points stay, and grades.csv and parts.csv say what a human should look at."""
    row = grades[("review_dunder_import", "em_by_hand")]
    assert row["autograded"] == "14" and row["flagged"] == "", row
    assert set(row["review"].split("; ")) == {f"em_by_hand_{p}" for p in E_STEP}, row
    part = parts[("review_dunder_import", "em_by_hand", "em_by_hand_e_step_tests")]
    assert part["points"] == "3" and part["flagged"] == "", part
    assert "__import__" in part["review"] and "points kept" in part["message"], part
    proven = grades[("hostile_patches_numpy", "em_by_hand")]
    assert "em_by_hand_e_step_tests" in proven["flagged"] and proven["review"] == "", proven


@pytest.mark.slow
@pytest.mark.parametrize("student", fixture_students.load().STYLES)
def test_correct_styles_are_never_flagged_or_withheld(graded, grades, student):
    """Correct solutions written in styles of their own (some share ordinary lines such as
    ``lls = [log_likelihood(X, weights, means, covariances)]`` with a hidden test): full
    points, nothing flagged, and the feedback shows every line of every answer cell."""
    out = graded[0]
    for assignment in set(CORE) & set(HANDED_IN[student]):
        notebook = ASSIGNMENTS[assignment]
        row = grades[(student, assignment)]
        assert (row["status"], row["flagged"], row["review"]) == ("ok", "", ""), row
        page = _text(
            (out / "feedback" / student / assignment / (notebook[:-6] + ".html")).read_text()
        )
        assert "output withheld" not in page, f"{student}/{assignment}: something was withheld"
        submitted = nbformat.read(out.parent / "submissions" / student / assignment / notebook, 4)
        for cell in submitted.cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
                for line in cell.source.splitlines():
                    line = " ".join(line.split())
                    assert line in page, f"{student}/{assignment}: {line!r} is not shown"


@pytest.mark.slow
def test_the_gradebook_is_out_of_reach(graded):
    """The cell that looks for gradebooks finds none (the sandbox shows no course) and prints
    nothing of them; the search itself is on the review list."""
    page = _text(
        (graded[0] / "feedback/hostile_reads_gradebook/em_by_hand/em_by_hand.html").read_text()
    )
    assert "BEGIN HIDDEN" not in page and "output withheld" not in page
    reason = _review_reasons(graded[0])[("hostile_reads_gradebook", "em_by_hand")]
    assert "the sandbox observed: kernel: listed " in reason and "re-check: listed " in reason


@pytest.mark.slow
def test_feedback_reports_the_final_points(graded):
    page = _text(
        (graded[0] / "feedback/hostile_patches_numpy/em_by_hand/em_by_hand.html").read_text()
    )
    assert "Autograded: 7 / 14" in page
    assert "em_by_hand_e_step_tests: 0 / 3" in page
    timeout = _text(
        (graded[0] / "feedback/hostile_infinite_loop/em_by_hand/em_by_hand.html").read_text()
    )
    assert "Autograded: 7 / 14" in timeout and "instructor will look" in timeout


@pytest.mark.slow
def test_summary_progress_and_secrecy(graded):
    out, progress, *_ = graded
    n = len(list((out.parent / "submissions").iterdir()))  # the whole class
    assert n > len(EXPECTED)
    assert re.search(rf"\[\s*{n}/{n}\] \d+:\d\d elapsed", progress), progress[-2000:]
    assert "needs a human look" in progress
    failures = (out / "failures.txt").read_text()
    # blank and broken submissions are on the review list with their reason, not in failures.txt
    # (the statuses' students of the class are blank or broken, or lose nothing; the explorer's
    # lose what graded_class.EXPLORER_CLASS says)
    losers = sum(
        "e_step_tests" in lost_em
        for student, (lost_em, *_) in EXPECTED.items()
        if lost_em is not None and STATUS.get((student, "em_by_hand")) not in ("blank", "broken")
    ) + sum("e_step_tests" in lost for _, _, lost, _ in EXPLORER_CLASS.values())
    assert f"em_by_hand_e_step_tests: {losers} submission(s) lost points" in failures, failures
    # The gradebook (it holds the hidden tests) lives in the output folder, never in the release.
    assert (out / "course" / "gradebook.db").exists()
    assert not list((ROOT / "exercises").rglob("*.db"))


# ------------------------------------------------------------------------------------------
# The class gradebook: formgrader, nbgrader export, hand-given marks
# ------------------------------------------------------------------------------------------


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run an nbgrader command in the class course folder, as an instructor would."""
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
    return proc


@pytest.mark.slow
def test_the_class_gradebook_holds_the_final_points(graded, grades, parts):
    """Every part's final points (not the kernel's) are in OUT/course/gradebook.db, written
    answers wait for a human there, and `nbgrader export` agrees with grades.csv."""
    from nbgrader.api import Gradebook

    course = graded[0] / "course"
    submitted = {k for k, r in grades.items() if r["status"] != "missing"}
    checked = 0
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for (student, assignment, gid), row in parts.items():
            if (student, assignment) not in submitted:
                continue
            notebook = ASSIGNMENTS[assignment]
            assert (course / "autograded" / student / assignment / notebook).exists()
            grade = gb.find_grade(gid, Path(notebook).stem, assignment, student)
            if row["points"] == "pending":
                assert grade.auto_score is None and grade.needs_manual_grade, (student, gid)
            else:
                assert grade.auto_score == float(row["points"]), (student, gid)
                assert grade.needs_manual_grade == bool(row["flagged"]), (student, gid)
            checked += 1
    assert checked > 400, checked
    export = course / "export.csv"
    _nbgrader(course, "export", "--to", str(export))
    with open(export) as f:
        exported = {
            (r["student_id"], r["assignment"]): float(r["raw_score"]) for r in csv.DictReader(f)
        }
    with open(graded[0] / "grades.csv") as f:
        for r in csv.DictReader(f):
            if r["status"] != "missing":
                manual = 0.0 if r["manual"] == "pending" else float(r["manual"])
                assert (
                    exported[(r["student_id"], r["assignment"])] == float(r["autograded"]) + manual
                ), r


@pytest.mark.slow
def test_nbgraders_own_feedback_hides_the_hidden_tests(graded):
    """formgrader's "generate feedback" (= nbgrader generate_feedback) uses the same redaction."""
    course = graded[0] / "course"
    _nbgrader(course, "generate_feedback", "em_by_hand", "--student", "bug_naive_exp")
    page = (course / "feedback/bug_naive_exp/em_by_hand/em_by_hand.html").read_text()
    text = _text(page)
    leaked = [line for line in _hidden_lines() if line in text]
    assert not leaked, f"nbgrader's feedback shows hidden-test code: {leaked[:3]}"
    assert "Score: 13.0 / 16.0" in text, text[:400]


class Formgrader:
    """nbgrader's formgrader (a Jupyter server with nbgrader's extension) on a course folder,
    driven through the HTTP API its pages use."""

    def __init__(self, course: Path, log: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token = "formgrader-test"
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--no-browser",
                "--allow-root",
                f"--port={self.port}",
                "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={course}",
            ],
            cwd=course,
            env=tool_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                self.get("/api/status")
                return
            except OSError as error:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"formgrader did not start; see {log}") from error
                time.sleep(0.5)

    def request(self, path, method="GET", body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.read().decode()

    def get(self, path):
        return self.request(path)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.mark.slow
def test_marks_given_in_formgrader_reach_the_csv_and_the_feedback(graded, grades, tmp_path):
    """The instructor opens formgrader on OUT/course, grades a written answer and overrides one
    autograded part, then runs ``gmm-grade --update``: the CSVs and feedback pages follow."""
    from grading.cli import main
    from grading.release import write_course_config

    out = tmp_path / "graded"
    shutil.copytree(graded[0], out, symlinks=True)
    write_course_config(out / "course")  # the copy's own gradebook, not the original's
    server = Formgrader(out / "course", tmp_path / "formgrader.log")
    try:
        notebooks = {
            nb["student"]: nb
            for nb in json.loads(
                server.get("/formgrader/api/submitted_notebooks/em_by_hand/em_by_hand")
            )
        }
        handed_in = {
            s for (s, a), r in grades.items() if a == "em_by_hand" and r["status"] != "missing"
        }
        assert set(notebooks) == handed_in, sorted(notebooks)
        assert notebooks["reference"]["score"] == 14 and notebooks["reference"]["max_score"] == 16
        assert notebooks["reference"]["needs_manual_grade"], "the written answer awaits a human"
        for student, part, score in [
            ("reference", "em_by_hand_written", 1.5),
            ("bug_naive_exp", "em_by_hand_e_step_stability", 0.5),
        ]:
            sid = notebooks[student]["id"]
            page = server.get(f"/formgrader/submissions/{sid}/")  # the grading view
            assert "em_by_hand_written" in page and "Far from every mean" in page
            grades = json.loads(server.get(f"/formgrader/api/grades?submission_id={sid}"))
            grade = next(g for g in grades if g["name"] == part)
            server.request(f"/formgrader/api/grade/{grade['id']}", "PUT", {"manual_score": score})
    finally:
        server.close()
    assert main(["--update", "--out", str(out)]) == 0
    with open(out / "grades.csv") as f:
        rows = {(r["student_id"], r["assignment"]): r for r in csv.DictReader(f)}
    assert rows[("reference", "em_by_hand")]["manual"] == "1.5"
    assert rows[("reference", "break_it")]["manual"] == "pending"
    assert rows[("bug_naive_exp", "em_by_hand")]["autograded"] == "13.5"
    assert rows[("bug_naive_exp", "em_by_hand")]["em_by_hand_e_step_stability"] == "0.5"
    with open(out / "parts.csv") as f:
        message = next(
            r["message"]
            for r in csv.DictReader(f)
            if (r["student_id"], r["grade_id"]) == ("bug_naive_exp", "em_by_hand_e_step_stability")
        )
    assert message == "set by hand (autograded 0)"
    page = _text((out / "feedback/reference/em_by_hand/em_by_hand.html").read_text())
    assert "em_by_hand_written: 1.5 / 2 — graded by hand" in page
    # The original run is untouched: the server wrote to the copy's gradebook.
    with open(graded[0] / "grades.csv") as f:
        original = {(r["student_id"], r["assignment"]): r for r in csv.DictReader(f)}
    assert original[("reference", "em_by_hand")]["manual"] == "pending"


def test_update_needs_an_earlier_run(tmp_path, capsys):
    from grading.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--update", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "holds no graded run" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Issue 21: the trust boundary
# ------------------------------------------------------------------------------------------


def _result(out: Path, student: str, assignment: str) -> dict:
    results = json.loads((out / "work" / student / "result.json").read_text())
    return next(r for r in results if r["assignment"] == assignment)


@pytest.mark.slow
def test_the_input_history_holds_no_hidden_test(graded):
    """hostile_history_exfiltration printed its kernel's longest history entry, compressed and
    base64-encoded (in the old design: 39,503 characters of hidden tests). Decoded, it holds
    no line of grading/checks/ that the release does not show, nor does any output of its
    run or its page; and the page shows that the attack ran."""
    import base64
    import zlib

    out = graded[0]
    page = (out / "feedback/hostile_history_exfiltration/em_by_hand/em_by_hand.html").read_text()
    mark = fixture_students.load().EXFILTRATION_MARK
    encoded = re.findall(re.escape(mark) + r"([A-Za-z0-9+/=]+)", html.unescape(page))
    assert encoded, "the exfiltration did not print (the test proves nothing)"
    hidden = _hidden_lines()
    for blob in encoded:
        text = " ".join(zlib.decompress(base64.b64decode(blob)).decode().split())
        assert len(text) > 100
        assert not [line for line in hidden if line in text], "hidden-test code in the history"
    executed = nbformat.read(
        out / "work/hostile_history_exfiltration/autograded/hostile_history_exfiltration"
        "/em_by_hand/em_by_hand.ipynb",
        as_version=4,
    )
    outputs = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert not [line for line in hidden if line in outputs]


@pytest.mark.slow
def test_student_code_holds_no_descriptor_of_the_grader(graded):
    """hostile_inherited_fd truncated and wrote into every regular file it had open: only its
    own kernel log got the forged line; the run's log is whole and other students untouched."""
    out = graded[0]
    assert "FORGED-LINE" not in (out / "grading.log").read_text()
    own = (out / "work/hostile_inherited_fd/kernel-em_by_hand.log").read_text()
    assert "FORGED-LINE" in own
    for student in ("reference", "bug_naive_exp"):
        for log in (out / "work" / student).glob("kernel-*.log"):
            assert "FORGED-LINE" not in log.read_text()


@pytest.mark.slow
def test_sleepers_cost_a_slot_seconds_not_minutes(graded):
    """Six cells of sleep(19) (114 s in a row): the feedback run interrupts the first once its
    share of the submission's time asleep is spent and runs no more, the re-check kills each
    sleeping cell (then skips it), and the answers keep their points. Either side took 114 s
    before issue 21."""
    out = graded[0]
    for assignment in CORE:
        r = _result(out, "hostile_sleepers", assignment)
        asleep = [f for f in r["flags"] if "asleep (killed)" in f]
        assert len(asleep) == 6, r["flags"]
        assert any("time asleep" in f for f in r["flags"]), r["flags"]
        assert r["seconds"]["kernel"] < 6 * 19 and r["seconds"]["recheck"] < 6 * 19, r["seconds"]
        (page,) = (out / "feedback/hostile_sleepers" / assignment).glob("*.html")
        assert "not run: the notebook's cells slept" in _text(page.read_text())


#: The parts of a submission the re-check did not run, by (student, assignment): {grade_id:
#: message}. A step calling a function that already ran out of time is not given another slice.
NOT_RUN = {
    ("hostile_infinite_loop", "em_by_hand"): {
        f"em_by_hand_{part}": f"{function}: not run: e_step already ran out of time"
        for part, function in (
            ("e_step_stability", "e_step"),
            ("fit_em_tests", "fit_em"),
            ("fit_em_monotone", "fit_em"),
        )
    },
    ("reference", "break_it"): {},  # the costliest honest notebook
    ("hostile_sleepers", "em_by_hand"): {},
    ("hostile_sleepers", "break_it"): {},
}


@pytest.mark.slow
@pytest.mark.parametrize(("student", "assignment"), sorted(NOT_RUN))
def test_a_loop_or_sleepers_spend_at_most_the_submissions_budget(graded, student, assignment):
    """One budget per submission (grading.watch.SubmissionBudget), for the feedback run and the
    re-check together: what both spent (CPU seconds and seconds asleep, from /proc, so the load
    does not change them) stays within the 15 s; the side that met the loop or the sleepers
    spent what it was given, the parts that call the looping function are "not run", listed
    for review, and the points are EXPECTED's."""
    from grading.watch import KERNEL_SHARE

    r = _result(graded[0], student, assignment)
    budget = r["budget"]
    sides = budget["kernel"]["cpu"] + budget["kernel"]["asleep"]
    sides += budget["recheck"]["cpu"] + budget["recheck"]["asleep"]
    assert budget["limit"] == 15.0 and abs(budget["total"] - sides) < 0.02, budget
    assert budget["total"] <= budget["limit"], budget
    if (student, assignment) == ("hostile_infinite_loop", "em_by_hand"):
        assert budget["kernel"]["cpu"] >= KERNEL_SHARE[0], budget  # the visible tests' loop
    if student == "hostile_sleepers":
        assert budget["kernel"]["asleep"] >= KERNEL_SHARE[1], budget
    not_run = {p["grade_id"]: p["message"] for p in r["parts"] if p["recheck"] == "not run"}
    assert not_run == NOT_RUN[student, assignment]
    for gid in not_run:
        assert any(f.startswith(f"re-check of {gid} not run: ") for f in r["flags"]), r["flags"]
    *_, em_total, break_total = EXPECTED[student]
    total = sum(p["points"] or 0 for p in r["parts"] if p["kind"] == "auto")
    assert total == (em_total if assignment == "em_by_hand" else break_total), r["parts"]


@pytest.mark.slow
def test_stubs_fail_with_the_specs_message(parts):
    """A constant history is monotone, and uniform responsibilities give one: neither is EM's."""
    for student in ("stub_constant_history", "stub_uniform_resp"):
        row = parts[(student, "em_by_hand", "em_by_hand_fit_em_monotone")]
        assert row["points"] == "0", row
        if student == "stub_constant_history":
            assert "not EM's from this start" in row["message"], row


# ------------------------------------------------------------------------------------------
# Assignment 3, poisson_mixture: the students who hand it in, copy detection on
# ------------------------------------------------------------------------------------------

POISSON_PARTS = {"e_step_tests": 3, "m_step_tests": 3, "log_likelihood_tests": 2}
# student -> (poisson_mixture parts that must score 0, autograded total, status). The copier
# and the student it copied lose the same part, and copy detection pairs them.
POISSON_EXPECTED = {
    "reference": (set(), 8, "ok"),
    "poisson_rates_by_n": ({"m_step_tests"}, 5, "ok"),
    "poisson_copier": ({"m_step_tests"}, 5, "ok"),
    "only_first_assignment": (set(POISSON_PARTS), 0, "missing"),
}


@pytest.fixture(scope="session")
def graded_poisson(graded_class):
    """The poisson_mixture rows of the graded class (copy detection on):
    (output folder, {student: grades.csv row}, {student: needs_review.csv rows})."""
    out = graded_class.out
    with open(out / "grades.csv") as f:
        grades = {
            r["student_id"]: r for r in csv.DictReader(f) if r["assignment"] == "poisson_mixture"
        }
    assert {s for s, r in grades.items() if r["status"] != "missing"} == {
        s for s, (*_, status) in POISSON_EXPECTED.items() if status != "missing"
    }, "the class's poisson_mixture submissions are not POISSON_EXPECTED's"
    review = {}
    with open(out / "needs_review.csv") as f:
        for r in csv.DictReader(f):
            if r["assignment"] == "poisson_mixture":
                review.setdefault(r["student_id"], []).append(r)
    return out, grades, review


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(POISSON_EXPECTED))
def test_poisson_mixture_is_graded_as_deserved(graded_poisson, student):
    _, grades, _ = graded_poisson
    lost, total, status = POISSON_EXPECTED[student]
    row = grades[student]
    assert row["assignment"] == "poisson_mixture" and row["status"] == status, row
    for part, points in POISSON_PARTS.items():
        want = 0 if part in lost else points
        assert row[f"poisson_mixture_{part}"] == f"{want:g}", (student, part, row)
    assert row["autograded"] == f"{total:g}" and row["autograded_max"] == "8", row
    if status == "ok":
        assert row["manual"] == "pending" and row["manual_max"] == "4", row  # the derivation


@pytest.mark.slow
def test_poisson_copying_pairs_the_copier_with_its_source(graded_poisson):
    out, _, review = graded_poisson

    def copying(student):
        return " ".join(r["reasons"] for r in review.get(student, []) if r["status"] == "copying")

    assert "poisson_rates_by_n" in copying("poisson_copier"), review
    assert "poisson_copier" in copying("poisson_rates_by_n"), review
    # independently written: the reference is not paired with either of them
    assert "poisson_copier" not in copying("reference")
    assert "poisson_rates_by_n" not in copying("reference")
    report = (out / "copying.html").read_text()
    assert "lambdas" in report and "totals" in report  # both snippets, for the instructor
    pair = {"poisson_copier": "poisson_rates_by_n", "poisson_rates_by_n": "poisson_copier"}
    for student, other in pair.items():
        page = (out / f"feedback/{student}/poisson_mixture/poisson_mixture.html").read_text()
        assert other not in page and "copying" not in page, f"{student}: copying in feedback"


@pytest.mark.slow
def test_poisson_feedback_and_gradebook(graded_poisson):
    """Feedback pages say why points were lost and show no hidden test; the class gradebook
    (formgrader's) holds the re-check's points and waits for the derivation's marks."""
    from nbgrader.api import Gradebook

    out, grades, _ = graded_poisson
    hidden = _hidden_lines()
    for student in ("reference", "poisson_rates_by_n"):
        page = (out / f"feedback/{student}/poisson_mixture/poisson_mixture.html").read_text()
        text = _text(page)
        assert f"Autograded: {grades[student]['autograded']} / 8" in text, text[:300]
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{student}'s feedback shows hidden-test code: {leaked[:3]}"
    wrong = _text(
        (out / "feedback/poisson_rates_by_n/poisson_mixture/poisson_mixture.html").read_text()
    )
    assert "poisson_mixture_m_step_tests: 0 / 3" in wrong and "N_k" in wrong, wrong[-1500:]
    course = out / "course"
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grade = gb.find_grade(
            "poisson_mixture_m_step_tests", "poisson_mixture", "poisson_mixture", "poisson_copier"
        )
        assert grade.auto_score == 0
        derivation = gb.find_grade(
            "poisson_mixture_derivation", "poisson_mixture", "poisson_mixture", "reference"
        )
        assert derivation.auto_score is None and derivation.needs_manual_grade
    export = course / "export.csv"
    _nbgrader(course, "export", "--to", str(export))
    with open(export) as f:
        scores = {
            r["student_id"]: float(r["raw_score"])
            for r in csv.DictReader(f)
            if r["assignment"] == "poisson_mixture"
        }
    assert scores["reference"] == 8 and scores["poisson_rates_by_n"] == 5, scores
