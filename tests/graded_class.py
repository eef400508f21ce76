"""The test run's graded class: every student a grading test reads, through the pipeline once.

A run of `grading.pipeline.grade_folder` costs a fixed part (nbgrader generate_assignment for
each assignment, the sandbox probe, the class gradebook, the export) besides its students, so
the tests share one run of every assignment, copy detection on, over

- the fixture students of tests/fixtures/make_submissions.py, each with every notebook they
  hand in (tests/test_grading_pipeline.py, its poisson_mixture section, and the local run that
  tests/test_grading_distributed.py compares its cluster runs with);
- the release-built notebooks of tests/test_statuses.py (`STATUSES`: blank and broken);
- the explorer's class of tests/test_explore_in_notebooks.py (`EXPLORER_CLASS`);
- the student of tests/test_kernel_watch.py whose added cells try what the feedback kernel's
  observer must record (`KERNEL_STUDENT`, `ATTEMPTS`).

conftest.py's `graded_class` fixture builds it once per test run (under pytest-xdist the first
worker that needs it grades under a file lock and the others read its folder). Each test reads
the rows of its own students and assignments; a student's rows do not depend on who else is in
the class (tests/test_grading_pipeline.py::test_attackers_change_nobody_else).
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import fixture_students
import nbformat

from grading.cells import grade_id
from grading.course import ASSIGNMENTS, EXERCISES, REPO, SOLUTIONS

# ------------------------------------------------------------------------------------------
# tests/test_statuses.py: notebooks built from the release notebook of assignment 1
# ------------------------------------------------------------------------------------------

ASSIGNMENT = "em_by_hand"
FUNCTIONS = ("e_step", "m_step", "log_likelihood", "fit_em")


def release():
    return nbformat.read(EXERCISES / ASSIGNMENT / ASSIGNMENTS[ASSIGNMENT], as_version=4)


def model():
    return nbformat.read(SOLUTIONS / ASSIGNMENT / ASSIGNMENTS[ASSIGNMENT], as_version=4)


def _answers(nb):
    return [
        c
        for c in nb.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
    ]


def syntax_errors_everywhere():
    """Every answer cell with its ``def`` line missing the colon."""
    nb = release()
    for cell in _answers(nb):
        cell.source = cell.source.replace("):\n", ")\n", 1).replace(
            "raise NotImplementedError()", "return 0"
        )
    return nb


def no_answer_function():
    """Code that runs, under names the tests do not call (``estep`` for ``e_step``)."""
    nb = release()
    for cell in _answers(nb):
        for name in FUNCTIONS:
            cell.source = cell.source.replace(f"def {name}(", f"def {name.replace('_', '')}(")
    return nb


def one_answer_right():
    """The model's e_step, every other answer a syntax error: something ran."""
    nb = syntax_errors_everywhere()
    answer = next(c.source for c in _answers(model()) if "def e_step(" in c.source)
    next(c for c in _answers(nb) if "def e_step(" in c.source).source = answer
    return nb


def written_answer_only():
    """The release with its written answer filled in: not blank, and the stubs ran."""
    nb = release()
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "Far from every mean every density underflows to 0."
    return nb


#: student -> (their em_by_hand notebook, the status grades.csv must show)
STATUSES = {
    "unchanged": (release, "blank"),
    "syntax": (syntax_errors_everywhere, "broken"),
    "renamed": (no_answer_function, "broken"),
    "model": (model, "ok"),
}

# ------------------------------------------------------------------------------------------
# tests/test_explore_in_notebooks.py: the explorer's cell in an assignment-1 notebook
# ------------------------------------------------------------------------------------------

EXPLORER_CELL = """\
from gmmlib.datasets import old_faithful
from gmmlib.explore import explore

explore(old_faithful(standardize=True), e_step=e_step, m_step=m_step, k=2)"""


def explorer_notebook(answers: dict | None = None, cell: str = EXPLORER_CELL):
    """The release notebook with the model answer (or ``answers``) and the explorer's cell
    added, as a student would, after the M-step's tests."""
    nb = fixture_students.load().build_notebook(ASSIGNMENT, answers or {})
    at = next(i for i, c in enumerate(nb.cells) if grade_id(c) == "em_by_hand_m_step_covariances")
    added = nbformat.v4.new_code_cell(cell)
    added.id = "student-explorer"
    nb.cells.insert(at + 1, added)
    return nb


E_STEP = {"e_step_tests", "e_step_stability", "fit_em_tests", "fit_em_monotone"}
#: student -> (answers, the explorer's cell or None, em_by_hand parts that must score 0, status)
EXPLORER_CLASS = {
    "explorer_model_answer": ({}, EXPLORER_CELL, set(), "ok"),
    "explorer_through_globals": (
        {
            "em_by_hand_e_step": (
                "from gmmlib.explore import explore\n\n\n"
                "def e_step(X, weights, means, covariances):\n"
                "    return explore.__globals__['em'].e_step(X, weights, means, covariances)"
            )
        },
        EXPLORER_CELL,
        E_STEP,
        "flagged",
    ),
    "explorer_then_sys_modules": (
        {
            "em_by_hand_e_step": (
                "import sys\n\nimport gmmlib.explore\n\n\n"
                "def e_step(X, weights, means, covariances):\n"
                "    return sys.modules['gmmlib.em'].e_step(X, weights, means, covariances)"
            )
        },
        None,
        E_STEP,
        "flagged",
    ),
}

# ------------------------------------------------------------------------------------------
# tests/test_kernel_watch.py: what a student's added cells attempt in the feedback kernel
# ------------------------------------------------------------------------------------------

KERNEL_STUDENT = "kernel_attempts"
#: A course file the grading machine has and the sandbox hides.
COURSE_FILE = REPO / "solutions" / "em_by_hand" / "em_by_hand.ipynb"
ATTEMPTS = [
    f"try:\n    open({str(COURSE_FILE)!r}).read()\nexcept OSError as e:\n    print('read', e)",
    "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
    "except OSError as e:\n    print('connect', e)",
    "try:\n    open('/usr/lib/kernel-watch-x', 'w')\nexcept OSError as e:\n    print('write', e)",
    "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "print('unshare', libc.unshare(0x10000000), os.strerror(ctypes.get_errno()))",
]
#: What the observer records of `ATTEMPTS`, in its words.
RECORDED = [
    f"read of {COURSE_FILE} (not visible in the sandbox)",
    "network connection to ('127.0.0.1', 9) (blocked: no network)",
    "write to /usr/lib/kernel-watch-x (refused: read-only or not visible)",
    "made or entered namespaces of its own (unshare): refused",
]

# ------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------

RUN_JSON = "run.json"


@dataclass(frozen=True)
class Run:
    """The graded class: ``out`` (gmm-grade's output folder), ``submissions`` (its input),
    ``progress`` (what it printed), ``seconds`` (wall), ``before`` ({submission file: sha256}
    before grading), ``accepted`` (connections the loopback listener that hostile_network
    tries had queued once grading ended) and ``first_uid`` (the grading process's first
    sandbox uid, `grading.isolation.sandbox_uid`)."""

    out: Path
    submissions: Path
    progress: str
    seconds: float
    before: dict
    accepted: list
    first_uid: int


def hashes(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def write(submissions: Path, port: int) -> list[str]:
    """Write every student of the class under ``submissions`` (student/assignment/notebook);
    ``port``: the loopback port hostile_network tries. Returns the students."""
    students = fixture_students.load().write_all(submissions, port=port)
    notebooks = {s: build() for s, (build, _) in STATUSES.items()}
    for s, (answers, cell, _, _) in EXPLORER_CLASS.items():
        notebooks[s] = (
            explorer_notebook(answers, cell)
            if cell
            else fixture_students.load().build_notebook(ASSIGNMENT, answers)
        )
    notebooks[KERNEL_STUDENT] = fixture_students.load().build_notebook(
        ASSIGNMENT, {"__added_first__": ATTEMPTS}
    )
    assert not set(notebooks) & set(students), "a student name is used twice"
    for student, nb in notebooks.items():
        path = submissions / student / ASSIGNMENT / ASSIGNMENTS[ASSIGNMENT]
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    return students + list(notebooks)


def grade(folder: Path) -> None:
    """Write the class under ``folder``/submissions, grade it into ``folder``/out as
    ``gmm-grade`` does (every assignment, copy detection on), and record the rest of `Run`
    in ``folder``/run.json (written last: its presence says the run is complete)."""
    from grading.isolation import sandbox_uid
    from grading.pipeline import grade_folder

    submissions, out = folder / "submissions", folder / "out"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        write(submissions, listener.getsockname()[1])
        before = hashes(submissions)
        progress = io.StringIO()
        started = time.perf_counter()
        grade_folder(submissions, out, progress=progress)
        seconds = time.perf_counter() - started
        accepted = []
        while True:
            try:
                connection, peer = listener.accept()
            except BlockingIOError:
                break
            connection.close()
            accepted.append(list(peer))
    record = {
        "progress": progress.getvalue(),
        "seconds": seconds,
        "before": before,
        "accepted": accepted,
        "first_uid": sandbox_uid(0),
    }
    (folder / RUN_JSON).write_text(json.dumps(record))


def load(folder: Path) -> Run:
    record = json.loads((folder / RUN_JSON).read_text())
    return Run(out=folder / "out", submissions=folder / "submissions", **record)
