"""The feedback kernel watched from outside (`grading.kernel_watch`), as the re-check's child is.

Each notebook here runs in the graded kernel as `grading.worker` runs it: bubblewrap, the
sandbox's uid when root, Unix sockets in a runtime folder of its own, ``$GMM_SANDBOX`` set. What
the cells attempt must reach the run's report through the grader's seccomp observer (the
kernel's own words cannot), the reference student's run must report nothing, and the cells must
find no way to the socket the listener came over. Then, in the test run's graded class
(`gmm-grade`'s pipeline): the kernel's events on the attacker's review row, the reference
student not listed.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import tempfile
import threading
from pathlib import Path

import fixture_students
import nbformat
import numpy as np
import pytest
from graded_class import ATTEMPTS, KERNEL_STUDENT, RECORDED
from test_grading_attacks import OBSERVER_GAPS, gaps_record

from grading.checks import spec
from grading.course import EXERCISES
from grading.display_only import neutralise_notebook
from grading.isolation import Isolation, package_folders, sandbox_uid
from grading.kernel import SETTINGS, settings, write_kernelspec
from grading.kernel_watch import UNOBSERVED, KernelWatch
from grading.probe import build_font_cache
from grading.student_run import run_notebook
from grading.visible import visible_notebook

#: Every socket any process of the sandbox holds, as /proc names them.
SOCKETS = """\
import glob, os
found = set()
for link in glob.glob('/proc/*/fd/*'):
    try:
        target = os.readlink(link)
    except OSError:
        continue
    if target.startswith('socket:'):
        found.add(target)
print(sorted(found))
"""


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """Run a notebook (a list of cells, or a notebook) in the sandboxed kernel as the worker
    does; return (executed notebook, `RunReport`)."""
    jupyter = tmp_path / "jupyter"
    write_kernelspec(jupyter)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    uid = sandbox_uid(50) if os.geteuid() == 0 else None
    if uid is not None:
        os.chown(runtime, uid, uid)
    fonts = build_font_cache(tmp_path / "fonts")
    isolation = Isolation(sandbox=True, uid=uid, font_cache=str(fonts))
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    hidden = package_folders(spec("em_by_hand").blocked)  # as the worker: gmmlib not mounted
    monkeypatch.setenv(SETTINGS, settings(isolation, tmp_path / "scratch", hidden))
    monkeypatch.setattr(tempfile, "tempdir", str(runtime))

    def run(cells, budget=None):
        nb = cells
        if isinstance(cells, list):
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        return run_notebook(nb, tmp_path / "kernel.log", runtime, uid, budget=budget)

    return run


def _text(executed) -> str:
    return "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


def test_attempts_made_in_the_kernel_are_recorded_and_unshare_refused(kernel):
    """Without the observer the report is empty and unshare(CLONE_NEWUSER) succeeds."""
    executed, report = kernel(ATTEMPTS)
    assert report.status == "ok"
    assert report.observed == RECORDED
    assert "unshare -1 Operation not permitted" in _text(executed)


def test_the_kernel_is_held_to_the_re_checks_rules(kernel, tmp_path):
    """The re-check's third attack round (`OBSERVER_GAPS`: /proc links and links of its own,
    x86_64's int 0x80, a user namespace, creat/mkdir/unlink, UDP, made-up paths, one with a
    newline), run in the kernel: the same record, in the same words and caps; the same calls
    refused (the cell asserts that unshare failed)."""
    secret = tmp_path / "checks.py"  # on the grading machine, not in the sandbox
    secret.write_text("EXPECTED = 1\n")
    env = str(Path(np.__file__).resolve().parent)  # read-only in the sandbox
    cell = OBSERVER_GAPS.replace("SECRET", repr(str(secret))).replace("ENV", repr(env))
    executed, report = kernel([cell])
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert report.status == "ok" and not errors, errors
    assert report.observed == gaps_record(secret, env)


def test_the_reference_students_run_is_not_recorded(kernel):
    """The kernel's own start (ipykernel, debugpy, zmq's channels, name lookups) and the
    instructor's solution, with its figures, are nothing to report."""
    submitted = fixture_students.load().build_notebook("em_by_hand", {})
    release = nbformat.read(EXERCISES / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    visible = visible_notebook(submitted, release)
    neutralise_notebook(visible)  # as the worker: the explorer only draws, it is not run
    executed, report = kernel(visible)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert report.status == "ok" and not errors
    assert report.observed == []


def test_a_cells_error_is_not_recorded(kernel):
    """A traceback makes ipykernel look for the cell's code in its own file names (in the
    sandbox's /tmp, never written): not an attempt of the student's (the blank submission's
    cells all fail so)."""
    executed, report = kernel(["def f():\n    return g()", "f()", "1 / 0"])
    errors = [o.ename for c in executed.cells for o in c.get("outputs", []) if "ename" in o]
    assert errors == ["NameError", "ZeroDivisionError"]
    assert report.observed == []


def test_the_kernel_holds_no_end_of_the_hand_over_channel(kernel, monkeypatch):
    """No process the student's code can see holds either end of the socket the listener came
    over (the launcher closes its end before ipykernel starts)."""
    ends = []
    enter = KernelWatch.__enter__

    def spy(self):
        watch = enter(self)
        ends.append(os.fstat(self.pass_fds[0]).st_ino)
        ends.append(os.fstat(self._ours.fileno()).st_ino)
        return watch

    monkeypatch.setattr(KernelWatch, "__enter__", spy)
    executed, report = kernel(["x = 1", SOCKETS])
    held = json.loads(_text(executed).strip().replace("'", '"'))
    assert report.observed == [] and len(ends) == 2
    assert held  # the kernel's own sockets are seen: the listing works
    assert not {f"socket:[{inode}]" for inode in ends} & set(held)


def test_the_channel_reads_one_message_and_then_is_closed(tmp_path):
    """Whatever comes first on the channel is all that is read: a second listener (a student's
    own, had they found the socket) meets a closed end."""
    with KernelWatch(tmp_path) as watch:
        theirs = socket.socket(fileno=os.dup(watch.pass_fds[0]))
        fake = os.pipe()
        socket.send_fds(theirs, [b"-"], [])  # "no seccomp here", as the launcher says it
        assert watch.received.wait(60)
        with pytest.raises(OSError):
            for _ in range(64):  # the first sends may still fit in the closed end's buffer
                socket.send_fds(theirs, [b"L"], [fake[0]])
        theirs.close()
        for fd in fake:
            os.close(fd)
    assert watch.events == [UNOBSERVED]
    assert not [t for t in threading.enumerate() if t.name == "kernel-watch"]


def test_the_kernels_events_are_on_the_review_row_and_the_reference_is_not(graded_class):
    """Through `gmm-grade`'s pipeline (the test run's graded class, tests/graded_class.py):
    the kernel's events on the attacker's review row and in its result.json, the reference
    student not listed."""
    out = graded_class.out
    with open(out / "needs_review.csv") as f:  # both copy the model answer:
        rows = [r for r in csv.DictReader(f) if r["status"] != "copying"]  # not this test's
    review = {(row["student_id"], row["assignment"]): row["reasons"] for row in rows}
    with open(out / "grades.csv") as f:
        grades = {(row["student_id"], row["assignment"]): row for row in csv.DictReader(f)}
    reference, attacker = ("reference", "em_by_hand"), (KERNEL_STUDENT, "em_by_hand")
    assert reference not in review and grades[reference]["needs_review"] == "no"
    assert grades[reference]["status"] == "ok"
    assert [f"kernel: {e}" in review[attacker] for e in RECORDED] == [True] * 4
    result = json.loads((out / "work" / KERNEL_STUDENT / "result.json").read_text())
    kernel_events = [o for o in result[0]["observed"] if o.startswith("kernel: ")]
    assert kernel_events == [f"kernel: {e}" for e in RECORDED]
