"""Fast tests of the grading pieces: the scan, the sandboxed re-check, the feedback redaction."""

from __future__ import annotations

import html
from pathlib import Path

import fixture_students
import nbformat
import pytest

from grading.cells import BEGIN_HIDDEN, HIDDEN, grade_id, is_fixed, is_test
from grading.course import ASSIGNMENTS, EXERCISES, SOLUTIONS
from grading.feedback import hidden_lines, redact, render_html
from grading.recheck import recheck_notebook
from grading.records import Status
from grading.scan import proven, reads_hidden_tests, scan_cell
from grading.student_run import CELL_OUTPUT_BYTES, notebook_budget, run_notebook
from grading.visible import visible_notebook
from grading.worker import combine, submission_status

ROOT = Path(__file__).resolve().parents[1]
#: The spec of every hidden test (grading/checks/): no line of it may reach a student.
CHECKS_TEXT = "\n".join(p.read_text() for p in sorted((ROOT / "grading" / "checks").glob("*.py")))


FIX = fixture_students.load()


@pytest.mark.parametrize(
    "code, needle",
    [
        ("np.allclose = lambda *a, **k: True", "assigns to np.allclose"),
        ("import numpy.testing as nt\nnt.assert_allclose = print", "assigns to nt.assert_allclose"),
        ("import builtins\nbuiltins.abs = abs", "imports builtins"),
        ("get_ipython().input_transformers_post.append(lambda lines: [])", "get_ipython"),
        ("import sys\nsys.modules['numpy'] = None", "assigns to sys.modules"),
        ("import sys\nf = sys._getframe(1)", "_getframe"),
        ("setattr(np, 'isclose', None)", "rebinds an attribute of np"),
        ("setattr(model, 'fitted', True)", "calls setattr"),
        ("from gmmlib.em import e_step", "must not use gmmlib"),
        ("m = __import__('gmm' + 'lib')", "__import__"),
        ("import importlib\nimportlib.import_module('x')", "imports importlib"),
        ("import signal\nsignal.signal(2, signal.SIG_IGN)", "imports signal"),
        # The generated hidden tests live in the kernel: reading or disarming them
        ("_gmm_checks.run_in_kernel = lambda *a, **k: None", "reads the grader's hidden checks"),
        ("import gmm_checks\nprint(gmm_checks.spec)", "reads the grader's hidden checks"),
        ("m = sys.modules['gmm_checks']", "reads the grader's hidden checks"),
        ("print([s[::-1] for s in In])", "uses In (IPython's history"),
        ("print(_ih[4])", "uses _ih"),
        ("print(_ii)", "uses _ii"),
        ("print(_i4)", "uses _i4"),
        ("import __main__\nh = getattr(__main__, 'I' + 'n')", "imports __main__"),
        ("h = locals()['In']", "calls locals()"),
    ],
)
def test_scan_finds_patching(code, needle):
    findings = scan_cell(code, forbidden_packages=("gmmlib", "sklearn"))
    assert any(needle in f for f in findings), f"scan of {code!r} found {findings}"


@pytest.mark.parametrize(
    "code, is_proven",
    [
        ("np.allclose = lambda *a, **k: True", True),
        ("np.linalg.__dict__['inv'] = None", True),
        ("a, np.pi = 1, 3", True),
        ("import builtins\nbuiltins.AssertionError = Exception", True),
        ("setattr(np, 'isclose', None)", True),
        ("get_ipython().input_transformers_post.append(lambda lines: [])", True),
        ("from gmmlib.em import e_step", True),
        ("mvn = __import__('scipy.stats').stats.multivariate_normal", False),
        ("g = globals()", False),
        ("setattr(model, 'fitted', True)", False),
        ("import importlib", False),
        ("_gmm_checks.run_in_kernel = lambda *a, **k: None", True),
        ("print(In[3])", False),
    ],
)
def test_scan_tells_proven_from_suspicious(code, is_proven):
    """Only a stated violation costs points; the rest is a note for a human."""
    findings = scan_cell(code, forbidden_packages=("gmmlib",))
    assert findings, code
    assert any(proven(f) for f in findings) == is_proven, findings


def test_scan_accepts_every_honest_answer():
    """No false alarms on the reference or the valid and buggy-but-honest fixtures."""
    honest = [FIX.LOOPS, FIX.EINSUM, FIX.SCIPY] + [answers for _, answers in FIX.BUGS.values()]
    source = nbformat.read(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    honest.append(
        {
            c.metadata["nbgrader"]["grade_id"]: FIX.solution_text(c.source)
            for c in source.cells
            if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"
        }
    )
    for answers in honest:
        for gid, code in answers.items():
            assert scan_cell(code, ("gmmlib", "sklearn")) == [], f"false alarm in {gid}"


@pytest.mark.parametrize(
    "code",
    [
        "import numpy as np\nresp = np.ones(3)\nresp[np.isnan(resp)] = 0.0",
        "import numpy as np\nx = np.zeros((2, 2))\nx[np.diag_indices(2)], y = 1.0, 2",
        "import numpy as np\nd = {}\nd[np.pi] = 1",
    ],
)
def test_scan_does_not_read_an_index_as_an_assignment(code):
    """``resp[np.isnan(resp)] = 0`` writes to resp; the numpy call in its index only reads."""
    assert scan_cell(code) == []


def test_scan_history_names_bound_by_the_cell_are_not_history():
    """A loop variable called ``_i`` is the student's own, not IPython's input history."""
    code = "total = 0\nfor _i in range(3):\n    total += _i\n\ndef f(In):\n    return In\n"
    assert scan_cell(code) == []


def test_recheck_gives_the_reference_every_part(tmp_path):
    nb = FIX.build_notebook("em_by_hand", {})
    path = tmp_path / "em_by_hand.ipynb"
    nbformat.write(nb, path)
    result = recheck_notebook(
        path, SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", "em_by_hand", tmp_path / "work"
    )
    failed = {k: v["message"] for k, v in result["verdicts"].items() if not v["passed"]}
    assert failed == {}, failed
    assert result["findings"] == {}


def test_recheck_fails_every_stub_with_its_reason(tmp_path):
    path = EXERCISES / "break_it" / "break_it.ipynb"
    result = recheck_notebook(path, SOLUTIONS / "break_it" / "break_it.ipynb", "break_it", tmp_path)
    for gid, verdict in result["verdicts"].items():
        assert not verdict["passed"], f"{gid} passed on the release stub"
        assert "NotImplementedError" in verdict["message"] or "collapse_seed" in verdict["message"]


def test_sandbox_refuses_gmmlib_in_the_from_scratch_assignment(tmp_path):
    _, answers = FIX.HOSTILE["hostile_calls_gmmlib"]
    path = tmp_path / "em_by_hand.ipynb"
    nbformat.write(FIX.build_notebook("em_by_hand", answers), path)
    result = recheck_notebook(
        path, SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", "em_by_hand", tmp_path / "work"
    )
    assert "not available while your work is graded" in result["cell_problems"]["em_by_hand_e_step"]
    assert not result["verdicts"]["em_by_hand_e_step_tests"]["passed"]
    assert result["verdicts"]["em_by_hand_log_likelihood_tests"]["passed"]


def test_redacted_feedback_keeps_visible_tests_and_drops_hidden_ones():
    source = nbformat.read(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    result = {
        "student": "s",
        "assignment": "em_by_hand",
        "flags": [],
        "parts": [
            {
                "grade_id": "em_by_hand_e_step_tests",
                "kind": "auto",
                "points": 0.0,
                "max_points": 3.0,
                "message": "responsibilities of row 3 sum to 0.5, expected 1",
            }
        ],
    }
    page = render_html(redact(source, source, result), "t")
    assert "_gmm_checks" not in page and "def _resp_judge" not in page
    assert "hidden tests: the grader runs them outside your notebook" in page
    assert "x=1 is equally far from both means" in page  # a visible test stays
    assert "responsibilities of row 3 sum to 0.5" in page
    assert "<script" not in page


def test_release_notebook_names_match_the_course():
    for assignment, notebook in ASSIGNMENTS.items():
        assert (EXERCISES / assignment / notebook).exists()
        assert (SOLUTIONS / assignment / notebook).exists()


def test_collect_accepts_both_layouts_and_reports_problems(tmp_path):
    from grading.collect import collect

    subs = tmp_path / "subs"
    nb = FIX.build_notebook("em_by_hand", {})
    for path in [
        subs / "alice" / "em_by_hand" / "em_by_hand.ipynb",  # nbgrader's layout
        subs / "bob" / "em_by_hand.ipynb",  # notebooks directly
        subs / "carol" / "em_by_hand" / "my copy.ipynb",  # one renamed notebook
        subs / "dave" / "em_by_hand" / "a.ipynb",
        subs / "dave" / "em_by_hand" / "b.ipynb",
        subs / "bad name!" / "em_by_hand.ipynb",
    ]:
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
    students, problems = collect(subs, tmp_path / "work")
    assert sorted(students) == ["alice", "bob", "carol", "dave"]
    for student in ["alice", "bob", "carol"]:
        assert students[student]["em_by_hand"] is not None, student
        assert (
            tmp_path / "work" / student / "submitted" / student / "em_by_hand" / "em_by_hand.ipynb"
        ).exists()
        assert students[student]["break_it"] is None
    assert students["dave"]["em_by_hand"] is None
    reasons = {(p.student, p.assignment): p.reason for p in problems}
    assert "several notebooks" in reasons[("dave", "em_by_hand")]
    assert "not a usable student id" in reasons[("bad name!", "")]


def test_collect_takes_no_notebook_through_a_link(tmp_path):
    """A notebook (or folder) in an upload that is a link to the course's solutions or another
    student's work is not graded as the student's: it is reported, and nothing is copied."""
    from grading.collect import collect

    subs, elsewhere = tmp_path / "subs", tmp_path / "elsewhere"
    nb = FIX.build_notebook("em_by_hand", {})
    honest = subs / "honest" / "em_by_hand" / "em_by_hand.ipynb"
    for path in (honest, elsewhere / "solutions" / "em_by_hand.ipynb"):
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    (subs / "linker" / "em_by_hand").mkdir(parents=True)
    (subs / "linker" / "em_by_hand" / "em_by_hand.ipynb").symlink_to(
        elsewhere / "solutions" / "em_by_hand.ipynb"
    )
    (subs / "copycat").mkdir()
    (subs / "copycat" / "em_by_hand").symlink_to(honest.parent, target_is_directory=True)
    (subs / "folder_link").symlink_to(subs / "honest", target_is_directory=True)
    (subs / "rooted").mkdir()
    (subs / "rooted" / "everything").symlink_to("/", target_is_directory=True)
    students, problems = collect(subs, tmp_path / "work", ("em_by_hand",))
    assert sorted(students) == ["copycat", "honest", "linker", "rooted"]
    for student in ("copycat", "linker", "rooted"):
        assert students[student]["em_by_hand"] is None, student
        assert not (tmp_path / "work" / student / "submitted").exists(), student
    reasons = {(p.student, p.assignment): p.reason for p in problems}
    assert reasons[("linker", "em_by_hand")] == "em_by_hand/em_by_hand.ipynb is a link: not graded"
    assert reasons[("copycat", "em_by_hand")] == "em_by_hand is a link: not graded"
    assert reasons[("folder_link", "")] == "the student's folder is a link: skipped"
    assert reasons[("rooted", "")] == "the folder holds no notebook"


def test_the_review_list_has_one_row_per_student_and_assignment(tmp_path):
    """What collect found wrong in a folder is said on that student's "missing" row: never a
    second row for the same student (a folder holding only another assignment, or nothing)."""
    import csv

    from grading.collect import collect
    from grading.export import export

    subs = tmp_path / "subs"
    nb = FIX.build_notebook("break_it", {})
    for path in [
        subs / "only_b" / "break_it" / "break_it.ipynb",
        subs / "two" / "em_by_hand" / "a.ipynb",
        subs / "two" / "em_by_hand" / "b.ipynb",
        subs / "bad name!" / "em_by_hand.ipynb",
    ]:
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
    (subs / "empty").mkdir()
    students, problems = collect(subs, tmp_path / "work", ("em_by_hand",))
    source = {"em_by_hand": nbformat.read(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", 4)}
    export(tmp_path, students, {}, source, problems)
    with open(tmp_path / "needs_review.csv") as f:
        rows = sorted((r["student_id"], r["assignment"], r["reasons"]) for r in csv.DictReader(f))
    assert rows == [
        ("bad name!", "", "folder name is not a usable student id: skipped"),
        ("empty", "em_by_hand", "no notebook submitted (the folder holds no notebook)"),
        ("only_b", "em_by_hand", "no notebook submitted (found only break_it/break_it.ipynb)"),
        (
            "two",
            "em_by_hand",
            "no notebook submitted (several notebooks; none named em_by_hand.ipynb: not graded)",
        ),
    ]


def test_cli_rejects_a_missing_folder(tmp_path, capsys):
    from grading.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "is not a folder" in capsys.readouterr().err


def test_output_quoting_hidden_tests_is_withheld():
    """A cell that printed the gradebook (or the source) cannot carry hidden tests out."""
    source = nbformat.read(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    hidden = next(c.source for c in source.cells if "BEGIN HIDDEN TESTS" in c.source)
    nb = nbformat.read(EXERCISES / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    spy = nbformat.v4.new_code_cell("print(open('../../../gradebook.db').read())")
    spy.outputs = [nbformat.v4.new_output("stream", name="stdout", text=hidden)]
    nb.cells.insert(2, spy)
    result = {"student": "s", "assignment": "em_by_hand", "flags": [], "parts": []}
    withheld = []
    page = render_html(redact(nb, source, result, withheld), "t")
    assert withheld, "the leaking output was not noticed"
    assert "output withheld" in page
    assert "expected = reference.e_step(X, weights, means, covariances)" not in page


def _spy_page(outputs, withheld=None):
    """The feedback page of the em_by_hand exercise with one added cell holding ``outputs``."""
    source = nbformat.read(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    nb = nbformat.read(EXERCISES / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    cell = nbformat.v4.new_code_cell("print_in_pieces()")
    cell.outputs = [nbformat.v4.new_output("stream", name=n, text=t) for n, t in outputs]
    nb.cells.insert(2, cell)
    result = {"student": "s", "assignment": "em_by_hand", "flags": [], "parts": []}
    return render_html(redact(nb, source, result, withheld), "t")


def test_feedback_does_not_depend_on_how_the_kernel_split_the_printing():
    """ipykernel sends a cell's printing in as many messages as its clock and ``flush()`` made
    (under load, more): the page shows each stream once, whatever the split."""
    once = _spy_page([("stdout", "pass e_step\npass m_step\n"), ("stderr", "warning\n")])
    split = _spy_page(
        [("stdout", "pass e_"), ("stderr", "warn"), ("stdout", "step\npass m_step\n")]
        + [("stderr", "ing\n")]
    )
    assert split == once
    assert split.count("pass e_step") == 1


@pytest.mark.parametrize("second", ["stdout", "stderr"])
def test_a_hidden_line_printed_in_pieces_is_withheld(second):
    source = nbformat.read(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    line = max(hidden_lines(source), key=len)
    half = len(line) // 2
    withheld = []
    page = _spy_page([("stdout", line[:half]), (second, line[half:])], withheld)
    assert withheld == ["a cell"] * (1 if second == "stdout" else 2)
    assert html.escape(line[:half]) not in page and html.escape(line[half:]) not in page


XSS = "<script>alert(1)</script>"


def test_no_markup_of_the_students_reaches_a_feedback_page():
    """A class name in cell metadata, an "image/png" that is not base64 and HTML in a markdown
    cell or an output: gmm-grade's page escapes or drops them, and nbgrader's own feedback
    (HTMLExporter as `grading.course.configure` sets it) sanitises them."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    from grading.course import configure

    source = nbformat.read(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    nb = nbformat.read(EXERCISES / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    text = nbformat.v4.new_markdown_cell(f"my answer {XSS}")
    text.metadata["feedback_class"] = f'x">{XSS}<div class="'
    figure = nbformat.v4.new_code_cell("display(...)")
    figure.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"image/png": f'x" onerror="alert(2)">{XSS}', "text/html": XSS}
        )
    ]
    nb.cells[2:2] = [text, figure]
    result = {"student": "s", "assignment": "em_by_hand", "flags": [], "parts": []}
    page = render_html(redact(nb, source, result), "t")
    assert "<script" not in page and "onerror" not in page.replace("&quot;", "")
    assert "[figure not shown: its data is not a base64 PNG]" in page
    config = Config()
    configure(config)
    body, _ = HTMLExporter(config=config).from_notebook_node(nb)
    assert XSS not in body


def _release(assignment="em_by_hand"):
    return nbformat.read(EXERCISES / assignment / ASSIGNMENTS[assignment], as_version=4)


def secret_lines(*visible_nbs) -> set[str]:
    """Lines of grading/checks/ (30+ characters, whitespace-normalised) that none of
    ``visible_nbs`` holds: what only the hidden tests know."""
    seen = " ".join(" ".join(c.source.split()) for nb in visible_nbs for c in nb.cells)
    lines = {" ".join(line.split()) for line in CHECKS_TEXT.splitlines() if len(line.strip()) >= 30}
    secret = {line for line in lines if line not in seen}
    assert len(secret) > 100, len(secret)
    return secret


def test_the_students_run_has_the_releases_tests_and_no_hidden_ones():
    """`visible_notebook`: every test and locked cell is the release's (the student's edit to a
    test is undone, a deleted one comes back in place), answers and added cells are kept, and
    no hidden-test marker or line of grading/checks/ is anywhere in what the kernel runs."""
    nb = FIX.build_notebook("em_by_hand", {})
    tests = [c for c in nb.cells if is_test(c)]
    tests[0].source = "pass  # the student emptied this test"
    deleted = grade_id(tests[1])
    nb.cells = [c for c in nb.cells if grade_id(c) != deleted]
    nb.cells.insert(2, nbformat.v4.new_code_cell("x_added = 1"))
    release = _release()
    run = visible_notebook(nb, release)
    by_id = {grade_id(c): c for c in release.cells if grade_id(c)}
    ids = [grade_id(c) for c in run.cells if grade_id(c)]
    assert ids == [grade_id(c) for c in release.cells if grade_id(c)], "cells lost or moved"
    for cell in run.cells:
        gid = grade_id(cell)
        if gid in by_id and is_fixed(by_id[gid]):
            assert cell.source == by_id[gid].source, gid
    assert any(c.source == "x_added = 1" for c in run.cells)
    text = "\n".join(c.source for c in run.cells)
    assert BEGIN_HIDDEN not in text and "BEGIN HIDDEN" not in text
    checks_lines = secret_lines(release, nb)
    flat = " ".join(text.split())
    assert not [line for line in checks_lines if line in flat]


def test_no_source_notebook_holds_hidden_test_code():
    """The hidden-test blocks in solutions/ are notes naming a check: no code runs there."""
    for assignment, notebook in ASSIGNMENTS.items():
        source = nbformat.read(SOLUTIONS / assignment / notebook, as_version=4)
        blocks = [b for c in source.cells for b in HIDDEN.findall(c.source)]
        assert blocks, assignment
        for block in blocks:
            code = [
                ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
            ]
            assert code == [], f"{assignment}: a hidden block holds code: {code}"


def _kernel_run(sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def test_the_students_run_caps_output_and_time(tmp_path, monkeypatch):
    """A plain kernel (no sandbox): output past the per-cell byte cap is cut with a note, a
    cell that never ends is interrupted when the notebook's budget runs out, and the cells
    after it are not run; the kernel's own stderr goes to the student's log file."""
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "no-specs"))  # the default kernel
    nb = _kernel_run(
        [
            "print('x' * 300_000)",
            "import sys; print('to the log', file=sys.__stderr__)",
            "while True:\n    pass",
            "print('never')",
        ]
    )
    executed, report = run_notebook(nb, tmp_path / "kernel.log", None, notebook_budget(cpu=3.0))
    first, _, loop, last = executed.cells
    text = "".join(o.get("text", "") for o in first.outputs)
    assert text.count("x") == CELL_OUTPUT_BYTES and "output truncated" in text
    assert report.status == "timeout", report
    assert [o.get("ename") for o in loop.outputs] == ["KeyboardInterrupt"], loop.outputs
    assert "CPU time and was interrupted" in report.detail, report
    assert "never" not in str(last.outputs) and "not run" in str(last.outputs)
    assert "to the log" in (tmp_path / "kernel.log").read_text()
    assert any("truncated" in o for o in report.observed), report


# ------------------------------------------------------------------------------------------
# The sandbox (grading.isolation)
# ------------------------------------------------------------------------------------------


def _run_in(sandbox, code: str, *args: str) -> dict:
    """Run ``code`` (which prints a JSON line last) in ``sandbox`` under limits; its JSON."""
    import json
    import subprocess
    import sys

    from grading.isolation import Limits

    sandbox.prepare()
    proc = subprocess.run(
        sandbox.command([sys.executable, "-I", "-c", code, *args]),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=Limits(memory=4 * 1024**3, cpu=60).apply,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


_IN_SANDBOX = r"""
import json, os, sys, time
secret, outside = sys.argv[1], sys.argv[2]
seen = {"secret_visible": os.path.exists(secret)}
try:
    open(outside, "w").close()
    seen["wrote_outside"] = True
except OSError:
    seen["wrote_outside"] = False
children = 0
try:
    while children < 2000:  # bounded, should every limit fail
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError:
    pass
seen["children"] = children
print(json.dumps(seen), flush=True)
"""


def test_the_sandbox_hides_the_course_and_limits_processes(tmp_path):
    """Run as the pipeline does (root: a uid of its own): a file beside the scratch folder is
    invisible, nothing outside it can be written, and a fork loop stops at the process limit,
    whatever uid runs the grader."""
    from grading.isolation import NPROC, Sandbox, default_uid

    secret = tmp_path / "course" / "solutions.txt"
    secret.parent.mkdir()
    secret.write_text("hidden")
    sandbox = Sandbox(scratch=tmp_path / "scratch", uid=default_uid())
    seen = _run_in(sandbox, _IN_SANDBOX, str(secret), str(tmp_path / "outside.txt"))
    assert seen["secret_visible"] is False
    assert seen["wrote_outside"] is False and not (tmp_path / "outside.txt").exists()
    # Whoever runs it: the sandbox's own uid (root) or the user's (RLIMIT_NPROC binds both),
    # and the sandbox's control group where the host has them (pids.max).
    assert 0 < seen["children"] < NPROC, seen


_FILL_TMP = r"""
import errno, json, os
written, error = 0, None
block = b"x" * (16 * 1024**2)
try:
    for i in range(64):  # 2 GiB if nothing stopped it
        with open(f"/tmp/fill{i}", "wb") as f:
            for _ in range(2):
                written += f.write(block)
except OSError as exc:
    error = errno.errorcode.get(exc.errno)
print(json.dumps({"written": written, "error": error}))
"""


def test_the_sandbox_tmp_is_small(tmp_path):
    """The sandbox's /tmp is memory that no process limit counts: it has a size of its own,
    so a submission filling it stops with ENOSPC instead of taking the machine's memory. (Run
    as root, the pipeline's sandbox uid cannot write /tmp at all; an instructor who is not root
    gets a sandbox whose /tmp is writable, as here: no uid switch.)"""
    from grading.isolation import TMP_BYTES, Sandbox

    seen = _run_in(Sandbox(scratch=tmp_path / "scratch", uid=None), _FILL_TMP)
    assert seen["error"] == "ENOSPC" and seen["written"] <= TMP_BYTES, seen


_IMPORT_FRESH = r"""
import json, os, sys
tried = []
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT
def hook(event, args):
    if event == "open" and ".pyc" in str(args[0]):
        mode, flags = args[1], args[2] or 0
        if (mode and any(c in mode for c in "wax+")) or (not mode and flags & WRITE):
            tried.append(str(args[0]))
    elif event == "os.mkdir" and "__pycache__" in str(args[0]):
        tried.append(str(args[0]))
sys.addaudithook(hook)
sys.path.insert(0, sys.argv[1])
import fresh_module
print(json.dumps(tried), flush=True)
"""


@pytest.mark.parametrize("kind", ["recheck", "kernel"])
def test_sandboxed_python_never_writes_bytecode(tmp_path, kind):
    """A module with no cached bytecode (a stale or absent __pycache__ in the read-only course)
    is imported without any attempt to write a .pyc: such an attempt would be refused and
    reported as the student's write."""
    import json
    import subprocess
    import sys

    from grading.isolation import Limits, Sandbox, default_uid
    from grading.recheck import CHILD_FLAGS

    package = tmp_path / "package"
    package.mkdir()
    (package / "fresh_module.py").write_text("VALUE = 1\n")
    sandbox = Sandbox(scratch=tmp_path / "scratch", readable=[package], uid=default_uid())
    sandbox.prepare()
    flags = list(CHILD_FLAGS) if kind == "recheck" else []  # the kernel: env only
    proc = subprocess.run(
        sandbox.command([sys.executable, *flags, "-c", _IMPORT_FRESH, str(package)]),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=Limits(memory=4 * 1024**3, cpu=60).apply,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert not (package / "__pycache__").exists()


def test_probe_measures_the_baseline(tmp_path):
    from grading.isolation import default_uid
    from grading.probe import probe

    seen = probe(tmp_path / "scratch", default_uid())
    assert seen["interfaces"] == ["lo"] and not seen["network"]
    assert seen["uid"] != 0 or default_uid() is None
    assert 50 * 1024**2 < seen["vm_peak"] < 4 * 1024**3, seen["vm_peak"]


def test_gmm_grade_refuses_without_a_working_sandbox(tmp_path, monkeypatch, capsys):
    import grading.isolation
    from grading.cli import main

    (tmp_path / "subs" / "alice").mkdir(parents=True)
    monkeypatch.setattr(grading.isolation, "BWRAP", str(tmp_path / "no-bwrap"))
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "subs"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "refusing to grade" in err and "no-bwrap is missing" in err and "--no-sandbox" in err


def test_course_layout_is_nbgraders(tmp_path):
    """Every path comes from nbgrader's CourseDirectory with the course's folder names."""
    from grading.layout import Course

    course = Course(tmp_path)
    assert (
        course.notebook("source", "em_by_hand")
        == tmp_path / "solutions" / "em_by_hand" / "em_by_hand.ipynb"
    )
    assert (
        course.notebook("release", "break_it")
        == tmp_path / "exercises" / "break_it" / "break_it.ipynb"
    )
    assert (
        course.notebook("submitted", "em_by_hand", "alice")
        == tmp_path / "submitted" / "alice" / "em_by_hand" / "em_by_hand.ipynb"
    )
    assert (
        course.folder("autograded", "em_by_hand", "alice")
        == tmp_path / "autograded" / "alice" / "em_by_hand"
    )
    assert course.sources == tmp_path / "solutions"
    assert course.gradebook == tmp_path / "gradebook.db"


def test_a_students_own_line_is_never_withheld():
    """``lls = [log_likelihood(...)]`` is in a hidden test and in many students' fit_em: the
    student's cell and its output stay; a distinctive hidden line in an output is withheld."""
    source = nbformat.read(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    nb = FIX.build_notebook("em_by_hand", FIX.STYLE_HISTORY)
    cell = next(
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "em_by_hand_fit_em"
    )
    common = "lls = [log_likelihood(X, weights, means, covariances)]"
    assert common in cell.source
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=common)]
    result = {"student": "s", "assignment": "em_by_hand", "flags": [], "parts": []}
    withheld = []
    page = render_html(redact(nb, source, result, withheld), "t")
    assert withheld == [] and "output withheld" not in page
    assert html.escape(common) in page
    hidden = sorted(hidden_lines(source))  # the notes of the hidden blocks, now
    assert hidden
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=hidden[0])]
    redact(nb, source, result, withheld)
    assert withheld == ["em_by_hand_fit_em"]


_PARENT = r"""
import subprocess, sys
from grading.isolation import Limits
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(600)"],
    preexec_fn=Limits(memory=4 * 1024**3, cpu=60).apply,
)
print(child.pid, flush=True)
child.wait()
"""


def test_a_sandbox_restart_never_writes_through_a_students_link(tmp_path):
    """`Sandbox.prepare` runs as root each time a sandbox (re)starts, in a scratch folder the
    student's code has written to: a font cache turned into links (to a file, to a folder) is
    replaced, and nothing is written where the links point."""
    from grading.isolation import Sandbox

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "fontlist.json").write_text("fonts")
    victim, folder = tmp_path / "victim.ipynb", tmp_path / "victim-folder"
    victim.write_text("a student's notebook")
    folder.mkdir()
    for i, plant in enumerate(["file links", "folder link"]):
        scratch = tmp_path / f"scratch{i}"
        (scratch / ".matplotlib").mkdir(parents=True)
        if plant == "file links":
            (scratch / ".matplotlib" / "fontlist.json").symlink_to(victim)
        else:
            (scratch / ".matplotlib").rmdir()
            (scratch / ".matplotlib").symlink_to(folder, target_is_directory=True)
        Sandbox(scratch=scratch).prepare(cache)
        copy = scratch / ".matplotlib"
        assert not copy.is_symlink() and not (copy / "fontlist.json").is_symlink(), plant
        assert (copy / "fontlist.json").read_text() == "fonts", plant
    assert victim.read_text() == "a student's notebook"
    assert list(folder.iterdir()) == []


def test_a_limited_process_dies_with_its_parent():
    """What `Limits.apply` starts dies when the process that started it is killed (a grader
    lost with its Dask worker), also without the sandbox, whose bwrap has --die-with-parent."""
    import os
    import signal
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert Path(f"/proc/{child}").exists()
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def alive() -> bool:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"  # a zombie has died; only its exit status waits for a reaper

    deadline = time.monotonic() + 60  # a hang guard, not a timing claim: the kill is immediate
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(), f"the child {child} outlived its killed parent"


def test_output_of_a_cell_that_reads_the_hidden_tests_is_withheld():
    """Encoded, the hidden tests quote no line the feedback could recognise: the output of a
    cell the scan found reading them (`grading.scan.reads_hidden_tests`) is kept out whole,
    whether it is an answer cell or one the student added."""
    source = nbformat.read(SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    leak = "import base64, zlib\nprint(base64.b64encode(zlib.compress(_ih[4].encode())))"
    nb = FIX.build_notebook("em_by_hand", {"em_by_hand_m_step": "{reference}\n" + leak})
    added = nbformat.v4.new_code_cell("print(In[4][::-1])")
    nb.cells.insert(3, added)
    found = {
        name: scan_cell(code)
        for name, code in [("em_by_hand_m_step", leak), ("added cell 1", added.source)]
    }
    assert all(any(reads_hidden_tests(f) for f in fs) for fs in found.values()), found
    secret_text = "eJzNfWtz28aS6Hf+ign9wYACMSQlOQkTpjaJvbu5ucc5tfaechWLRUIkKCECAR4AtKzD5f3ttx"
    for cell in nb.cells:
        if cell is added or cell.metadata.get("nbgrader", {}).get("grade_id") in found:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=secret_text)]
    result = {
        "student": "s",
        "assignment": "em_by_hand",
        "flags": [],
        "parts": [],
        "withhold_outputs": sorted(found),
    }
    withheld = []
    page = render_html(redact(nb, source, result, withheld), "t")
    assert secret_text not in page
    assert sorted(withheld) == sorted(found)
    # The same cells without the scan's finding keep their output (it is the student's own).
    result["withhold_outputs"] = []
    assert secret_text in render_html(redact(nb, source, result, []), "t")


@pytest.mark.parametrize(
    "step, reg",
    [
        ('m_step(X, resp, "full", 0.05)', 0.05),  # reg_covar by position
        ("m_step(X, resp, reg_covar=0.05)", 0.05),
        ("m_step(X, resp)", None),
    ],
)
def test_the_reg_covar_watch_sees_positional_arguments(step, reg):
    """break_it task 4 rejects reg_covar: the watch (`grading.sandbox._call`, run by the kernel
    and the re-check alike) reads it whether it is passed by keyword or by position."""
    import numpy as np

    from gmmlib.datasets import collapse_data, collapse_init
    from gmmlib.em import e_step, m_step
    from grading.sandbox import _call

    X = collapse_data()
    weights, means, covariances = collapse_init(X, 4, 0)
    cases = {"X": X, "w": weights, "mu": means, "cov": covariances}
    namespace = {"m_step": m_step, "e_step": e_step}
    code = f"def fit(X, w, mu, cov):\n    resp = e_step(X, w, mu, cov)\n    return {step}\n"
    exec(code, namespace)
    case = {"name": "fit", "args": [{"key": k} for k in cases], "count": ["m_step"]}
    counts = _call(namespace, case, cases, np)["counts"]
    assert counts["m_step"] == 1
    assert counts.get("m_step(reg_covar)") == reg, counts
    assert namespace["m_step"] is m_step  # the watch is taken off after the call


def _one_part_notebook(grade_id: str, points: float):
    cell = nbformat.v4.new_code_cell("assert True")
    cell.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "grade_id": grade_id,
        "points": points,
    }
    return nbformat.v4.new_notebook(cells=[cell])


def test_points_come_from_the_recheck_alone():
    """The student's run passing a part's visible tests gives nothing: the re-check's verdict
    decides, and a visible pass with a hidden failure is an ordinary failure (no review)."""
    nb = _one_part_notebook("a_tests", 2.0)
    recheck = {"verdicts": {"a_tests": {"passed": False, "status": "wrong", "message": "off"}}}
    (part,) = combine(nb, recheck, {"a_tests": 2.0})
    assert (part.points, part.kernel_points, part.message, part.review) == (0.0, 2.0, "off", "")
    assert submission_status(recheck, [], Status.OK) == Status.OK
    recheck["verdicts"]["a_tests"] = {"passed": True, "status": "ok", "message": None}
    (part,) = combine(nb, recheck, {"a_tests": 0.0})
    assert part.points == 2.0
    assert submission_status(recheck, ["kernel: output truncated"], Status.OK) == Status.REVIEW


def test_a_feedback_page_has_a_size_cap():
    """A notebook of huge cells (sources and outputs) makes a page of at most PAGE_CHARS, that
    says it was cut, with the summary first."""
    from grading.feedback import PAGE_CHARS

    cells = [nbformat.v4.new_markdown_cell("# summary")]
    for _ in range(60):
        code = nbformat.v4.new_code_cell("x = 1  # " + "y" * 200_000)
        code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="z" * 19_000)]
        cells.append(code)
    page = render_html(nbformat.v4.new_notebook(cells=cells), "t")
    assert len(page) < PAGE_CHARS + 10_000 and "not shown: it is longer than" in page
    assert page.index("summary") < page.index("x = 1")


def test_the_sandbox_settings_cross_processes_as_one_typed_record():
    """`Isolation` is written by `to_dict` and read by `from_dict` only: the worker's job, the
    kernel's ``$GMM_SANDBOX`` and the re-check all hold the same record."""
    import json

    from grading.isolation import Isolation
    from grading.kernel import settings

    run = Isolation(sandbox=True, uid_base=3_000_064, vm_peak=5 << 28, font_cache="/f", limits="x")
    mine = run.for_slot(3)
    assert Isolation.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    assert (mine.uid, mine.code_uid, run.code_uid) == (3_000_067, 3_000_067, None)
    assert Isolation(sandbox=False, uid=7).code_uid is None
    assert Isolation.from_dict(None) == Isolation(sandbox=False)
    given = json.loads(settings(mine, Path("/s"), [Path("/h")]))
    assert Isolation.from_dict(given["isolation"]) == mine
    assert (given["scratch"], given["hidden"]) == ("/s", ["/h"])
    with pytest.raises(ValueError, match="unknown \\['vmpeak'\\]"):
        Isolation.from_dict({"sandbox": True, "vmpeak": 1})
