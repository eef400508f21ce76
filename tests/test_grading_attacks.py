"""A hostile student against the re-laid grader (issue 21, a round after the redesign).

The cells of tests/fixtures/attacks.py run in the re-check's child exactly as a submission's
added cells do (`grading.recheck.run_sandbox`, without bubblewrap: the attacks aim at the
grader's side of the result pipe, which is the same either way). Each test asserts the safe
outcome of an attack that worked against the first version of the new design (finding ids
A1..A6: a trickle on the result pipe that stopped the clock, an endless result line, a line
nested 200,000 deep, short sleepers sharing out more than the budget, the audit hook silenced
through getattr with built names, forged results crashing the judge, the kernel's runtime folder
used as uncapped disk); each failed before its fix. The round after that (from
`OBSERVER_GAPS` on) attacks the outside observer (`grading.observer`), the explorer's
display-only cell and the quiet folders of the re-check; what broke failed before its fix,
what held is kept where it is cheap.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from grading import checks, observer, sandbox
from grading.recheck import run_sandbox
from grading.scan import scan_cell

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("attacks", HERE / "fixtures" / "attacks.py")
attacks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attacks)


def _run(tmp_path: Path, *cells: str):
    workdir = tmp_path / "recheck"
    workdir.mkdir(parents=True)
    np.savez(workdir / "cases.npz", unused=np.zeros(1))
    return run_sandbox(workdir, attacks.plan(*cells))


def test_a_trickle_on_the_result_pipe_is_still_timed(tmp_path):
    results, _ = _run(tmp_path, attacks.TRICKLE)
    assert results[0]["status"] == "timeout"


def test_a_result_line_past_any_size_is_refused_not_buffered(tmp_path):
    results, _ = _run(tmp_path, attacks.FLOOD)
    assert results[0] == {"status": "crashed", "error": "the step's result was unreadable"}


def test_a_result_line_nested_deep_is_the_steps_crash(tmp_path):
    results, _ = _run(tmp_path, attacks.DEEP_RESULT)
    assert results[0] == {"status": "crashed", "error": "the step's result was unreadable"}


def test_short_sleepers_share_the_notebooks_budget(tmp_path):
    results, _ = _run(tmp_path, *[attacks.SLEEPER] * attacks.SLEEPERS)
    assert "timeout" in {r["status"] for r in results.values()}


def test_a_connection_attempt_is_observed(tmp_path):
    _, observed = _run(tmp_path, attacks.CONNECT)
    assert any(e.startswith("network connection to ('127.0.0.1', 9)") for e in observed["events"])


def test_silencing_the_audit_hook_still_reaches_the_review_list(tmp_path):
    _, observed = _run(tmp_path, attacks.SILENCE_WATCH)
    found = scan_cell(attacks.SILENCE_WATCH, (), set())
    assert found or any(e.startswith("network connection") for e in observed["events"])


@pytest.mark.parametrize(
    "forged",
    [
        {"status": "ok"},
        {"status": "ok", "outputs": []},
        {"status": "ok", "outputs": [{"value": {"__array__": 1.0, "shape": [], "kind": "x"}}]},
        {"status": "ok", "outputs": [{"value": {"__array__": [1.0], "shape": [7]}}]},
    ],
)
def test_a_forged_result_is_a_failed_verdict_not_a_grader_error(forged):
    check = checks.spec("em_by_hand").checks[0]
    forged = dict(forged)
    if forged.get("outputs") and len(check.cases) > 1:
        forged["outputs"] = forged["outputs"] * len(check.cases)
    verdict = checks.judge(check, forged)
    assert verdict["passed"] is False


def test_the_kernels_runtime_folder_is_no_disk_for_the_student(tmp_path):
    from grading.pipeline import grade_folder  # imported here: collecting stays fast

    attacks.write_students(tmp_path / "submissions", only={"runtime_filler"})
    grade_folder(
        tmp_path / "submissions",
        tmp_path / "out",
        assignments=("em_by_hand",),
        progress=io.StringIO(),
    )
    page = (tmp_path / "out/feedback/runtime_filler/em_by_hand/em_by_hand.html").read_text()
    with open(tmp_path / "out/grades.csv") as f:
        row = next(csv.DictReader(f))
    # "filled 300" is only in the cell's output (its source spells 6 * 50).
    assert "filled 300 MiB" not in page or row["needs_review"] == "yes"


#: The audit hook silenced (as `attacks.SILENCE_WATCH`; the child had one, in the student's
#: reach, until the grader observed its calls itself), then a course file read and a
#: connection: what the grader's observer (a seccomp listener outside the child) records.
SILENCED_THEN_READS = """\
import socket
import sys

_frame = getattr(sys, "_get" + "frame")(0)
while _frame is not None:
    _watch = getattr(_frame, "f_lo" + "cals").get("wat" + "ch")
    if _watch is not None:
        _watch.note = len
        break
    _frame = getattr(_frame, "f_ba" + "ck")
try:
    open(COURSE_FILE).read()
except OSError:
    pass
try:
    socket.create_connection(("127.0.0.1", 9), timeout=1)
except OSError:
    pass
"""


def test_a_silenced_audit_hook_leaves_the_outside_observer_seeing(tmp_path):
    missing = tmp_path / "not-in-the-sandbox" / "checks.py"
    cell = SILENCED_THEN_READS.replace("COURSE_FILE", repr(str(missing)))
    results, observed = _run(tmp_path, cell)
    assert results[0]["status"] == "ok"
    assert observed["events"] == [
        f"read of {missing} (not visible in the sandbox)",
        "network connection to ('127.0.0.1', 9) (blocked: no network)",
    ]


def test_a_student_who_silences_the_audit_hook_is_still_on_review(tmp_path):
    """Graded for real (bubblewrap, one student): the hidden checks' file exists on the grading
    machine but not in the sandbox; the read and the connection, in the kernel and in the
    re-check, reach the review list."""
    import sys

    import nbformat

    from grading.course import REPO
    from grading.pipeline import grade_folder  # imported here: collecting stays fast

    sys.path.insert(0, str(HERE / "fixtures"))
    import make_submissions

    course_file = REPO / "grading" / "checks" / "em_by_hand.py"
    cell = SILENCED_THEN_READS.replace("COURSE_FILE", repr(str(course_file)))
    nb = make_submissions.build_notebook("em_by_hand", {"__added_first__": [cell]})
    path = tmp_path / "submissions" / "mallory" / "em_by_hand" / "em_by_hand.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    grade_folder(
        tmp_path / "submissions",
        tmp_path / "out",
        assignments=("em_by_hand",),
        progress=io.StringIO(),
        copy_check=False,
    )
    (result,) = json.loads((tmp_path / "out/work/mallory/result.json").read_text())
    unsure = scan_cell(cell, ("gmmlib",), set())
    assert result["status"] == "review"
    assert result["flags"] == [
        f"to review added cell 1 (points kept): {'; '.join(unsure)}",
        "the sandbox observed: "  # the kernel ran the cell too, and is watched the same way
        f"kernel: read of {course_file} (not visible in the sandbox); "
        "kernel: network connection to ('127.0.0.1', 9) (blocked: no network); "
        f"re-check: read of {course_file} (not visible in the sandbox); "
        "re-check: network connection to ('127.0.0.1', 9) (blocked: no network)",
    ]
    assert all(p["points"] == p["max_points"] for p in result["parts"] if p["kind"] == "auto")


def test_writes_the_sandbox_refuses_are_observed_as_its_uid_would_meet_them(tmp_path):
    """In bubblewrap: a write into the Python environment (read-only there) and, run as the
    sandbox's own uid (the grader is root), into the folders above the re-check's (owned by
    root) are listed, though the grader itself could write both; its own folder and /tmp not."""
    import sys

    from grading.isolation import Isolation, default_uid

    workdir = tmp_path / "recheck"
    workdir.mkdir()
    np.savez(workdir / "cases.npz", unused=np.zeros(1))
    targets = [Path(sys.prefix, "planted.txt"), tmp_path / "result.json", workdir / "mine.txt"]
    cell = f"for _p in {[str(t) for t in targets] + ['/tmp/mine.txt']!r}:\n"
    cell += "    try:\n        open(_p, 'w').write('x')\n    except OSError:\n        pass\n"
    uid = default_uid()
    _, observed = run_sandbox(workdir, attacks.plan(cell), isolation=Isolation(True, uid=uid))
    refused = targets[:2] if uid is not None else targets[:1]
    assert observed["events"] == [
        f"write to {t} (refused: read-only or not visible)" for t in refused
    ]
    assert not targets[0].exists() and not targets[1].exists()


def test_calls_made_without_end_are_timed_like_any_loop(tmp_path):
    """Every open stops until the grader has seen it: a loop of them (in two threads) keeps
    the observer busy, and the step is still stopped by its budget."""
    cell = (
        "import threading\n"
        "def _spin():\n"
        "    while True:\n"
        "        try:\n"
        "            open('/nowhere/x')\n"
        "        except OSError:\n"
        "            pass\n"
        "threading.Thread(target=_spin, daemon=True).start()\n"
        "_spin()\n"
    )
    results, observed = _run(tmp_path, cell)
    assert results[0]["status"] == "timeout"
    assert observed["events"] == ["read of /nowhere/x (not visible in the sandbox)"]


#: Round 3 (the outside observer). Each line met a gap in `grading.observer.Observer`: a path
#: through /proc's links or through a link of the student's own (in /tmp, in its folder) was
#: checked as written, not where it leads; x86_64's ``int 0x80`` (i386 calls) passed the
#: filter unseen; creat/mkdir/unlink/rename and UDP's sendto were not watched; eight reads of
#: made-up paths filled the review row's eight places ahead of the real attempts; a path with
#: a newline wrote a line of its own into the record. All of them the sandbox refused, but for
#: a user namespace of the code's own, where it could mount a tmpfs of no size cap (now refused).
OBSERVER_GAPS = """\
import ctypes, os, socket
def _try(f, *a):
    try:
        f(*a)
    except OSError:
        pass
for _i in range(8):
    _try(open, "/nowhere/" + str(_i) + ("\\nre-check: forged" if _i == 0 else ""))
_try(open, "/proc/self/root" + SECRET)
_try(os.symlink, SECRET, "/tmp/link"); _try(open, "/tmp/link")
_try(os.symlink, SECRET, "link"); _try(open, "link")
_libc = ctypes.CDLL(None)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 + [ctypes.c_long]
_page = _libc.mmap(None, 4096, 7, 0x62, -1, 0)  # read/write/run, private, below 4 GiB
ctypes.memmove(_page + 256, SECRET.encode() + b"\\0", len(SECRET) + 1)
_code = b"\\x53\\xb8\\x05\\0\\0\\0\\xbb" + (_page + 256).to_bytes(4, "little")
_code += b"\\x31\\xc9\\x31\\xd2\\xcd\\x80\\x5b\\xc3"  # open(SECRET, 0) through int 0x80
ctypes.memmove(_page, _code, len(_code))
ctypes.CFUNCTYPE(ctypes.c_int)(_page)()
assert _libc.unshare(0x10020000) == -1  # a user and a mount namespace: could mount a tmpfs
import threading
_t = threading.Thread(target=len, args=("threads still start",))
_t.start()
_t.join()
_libc.creat((ENV + "/planted-creat").encode(), 0o644)
_try(os.mkdir, ENV + "/planted-dir")
_try(os.unlink, ENV + "/planted-unlink")
_try(socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto, b"x", ("10.1.2.3", 53))
_try(socket.create_connection, ("127.0.0.1", 9), 1)
"""


def gaps_record(secret, env: str) -> list[str]:
    """What the observer records of `OBSERVER_GAPS` (``secret``: a file the sandbox hides;
    ``env``: a read-only folder of the Python environment), in the re-check or the kernel."""
    made_up = [
        f"read of /nowhere/{i} (not visible in the sandbox)" for i in range(observer.PER_KIND)
    ]
    made_up[0] = made_up[0].replace("/0", "/0\\x0are-check: forged")
    return made_up + [
        f"opened /proc/self/root{secret} through a link of /proc (not followed)",
        f"read of {secret} (not visible in the sandbox)",
        "made a call of another architecture (0x40000003, call 5): refused",
        "made or entered namespaces of its own (unshare): refused",
        f"write to {env}/planted-creat (refused: read-only or not visible)",
        f"write to {env}/planted-dir (refused: read-only or not visible)",
        f"write to {env}/planted-unlink (refused: read-only or not visible)",
        "network connection to ('10.1.2.3', 53) (blocked: no network)",
        "network connection to ('127.0.0.1', 9) (blocked: no network)",
    ]


def test_the_observer_follows_links_and_sees_every_kind_of_attempt(tmp_path):
    """In bubblewrap, one run: every attempt of `OBSERVER_GAPS` is on the record, each kind at
    most `PER_KIND` times, and what the review row shows is the whole record."""
    from grading.isolation import Isolation, default_uid
    from grading.worker import sandbox_observations

    secret = tmp_path / "checks.py"  # on the grading machine, not in the sandbox
    secret.write_text("EXPECTED = 1\n")
    env = str(Path(np.__file__).resolve().parent)  # read-only in the sandbox
    workdir = tmp_path / "recheck"
    workdir.mkdir()
    np.savez(workdir / "cases.npz", unused=np.zeros(1))
    cell = OBSERVER_GAPS.replace("SECRET", repr(str(secret))).replace("ENV", repr(env))
    iso = Isolation(True, uid=default_uid())
    results, observed = run_sandbox(workdir, attacks.plan(cell), isolation=iso)
    assert results[0]["status"] == "ok"
    assert observed["events"] == gaps_record(secret, env)
    assert sandbox_observations(observed) == observed["events"]


def test_a_path_built_to_be_slow_to_follow_costs_the_observer_a_bounded_walk(tmp_path, monkeypatch):
    """A link whose target is 800 ``a/..`` pairs, named 2,000 times in one path: followed as
    the kernel would (40 links), that was 32,000 look-ups of the root grader per call the
    student's code makes; now at most `_MAX_STEPS`, and the path is noted as written."""
    import os

    from grading import observer

    (tmp_path / "a").mkdir()
    (tmp_path / "L").symlink_to("/".join(["a/.."] * 800))
    path = str(tmp_path) + "/L" * 2000
    calls = []
    real = os.readlink
    monkeypatch.setattr(observer.os, "readlink", lambda p: calls.append(p) or real(p))
    assert observer._inside(os.getpid(), path) == os.path.normpath(path)
    assert len(calls) <= observer._MAX_STEPS


#: The explorer's display-only cell as a hiding place (round 3): work put in the drawing call's
#: arguments, and code after it on the same line or after a bare carriage return.
DRAWING_CELL = """\
from gmmlib.explore import explore
explore(X, e_step=e_step, k=open(MARK + "1", "w").write("ran at grading time"))
explore(X, k=2); open(MARK + "2", "w").close()
explore(X, k=2)\ropen(MARK + "3", "w").close()
"""


def test_a_drawing_call_does_no_work_when_graded_and_hides_nothing(tmp_path):
    """The re-check (as graded, without bubblewrap) accepts the cell, runs nothing of the
    calls, and runs every other statement of it, which the scan saw."""
    import fixture_students

    from grading.course import SOLUTIONS
    from grading.recheck import recheck_notebook

    mark = str(tmp_path / "mark")
    cell = DRAWING_CELL.replace("MARK", repr(mark))
    submitted = fixture_students.load().build_notebook("em_by_hand", {"__added_first__": [cell]})
    nbformat.write(submitted, tmp_path / "submitted.ipynb")
    source = SOLUTIONS / "em_by_hand" / "em_by_hand.ipynb"
    result = recheck_notebook(tmp_path / "submitted.ipynb", source, "em_by_hand", tmp_path / "w")
    assert result["findings"] == {} and result["cell_problems"] == {}
    assert all(v["passed"] for v in result["verdicts"].values())
    assert [Path(mark + n).exists() for n in "123"] == [False, True, True]


def test_each_restart_of_the_recheck_does_not_bring_a_new_allowance_of_events(tmp_path):
    """Cells that each read made-up paths, then end the process: the re-check restarts after
    each, with an observer of its own; the record still holds `PER_KIND` reads in all, not
    that many per restart (ten restarts made a review row of 330 events, 66 kB). A cell run
    again after a restart does not use the allowance up twice."""
    from grading.observer import PER_KIND

    def reads(*names, end=""):
        loop = f"for _p in {list(names)!r}:\n    try:\n        open('/nowhere/' + _p)\n"
        return loop + "    except OSError:\n        pass\n" + end

    crash = "import os\nos._exit(1)\n"
    cells = [reads(*(f"{n}-{i}" for i in range(5)), end=crash) for n in range(3)]
    results, observed = _run(tmp_path / "1", *cells)
    assert [r["status"] for r in results.values()] == ["crashed"] * 3
    assert observed["events"] == [
        f"read of /nowhere/0-{i} (not visible in the sandbox)" for i in range(PER_KIND)
    ]
    cells = [reads("a"), reads("b", end=crash), reads("c", end=crash)]
    _, observed = _run(tmp_path / "2", *cells)
    assert observed["events"] == [
        f"read of /nowhere/{n} (not visible in the sandbox)" for n in "abc"
    ]


def test_the_course_beside_gmmlib_is_not_quiet_where_gmmlib_is_allowed(tmp_path):
    """In break_it gmmlib may be imported, so the repository's folder (gmmlib's parent) is on
    the re-check's path, and it was among the paths whose reads are not noted: reads of the
    hidden checks and of the reference solutions beside it went unrecorded. Listing the
    folder itself (Python's import system does, for every folder on its path) is not noted.
    In bubblewrap."""
    import fixture_students

    from grading.course import REPO, SOLUTIONS
    from grading.isolation import Isolation, default_uid
    from grading.recheck import recheck_notebook

    course = [REPO / "grading" / "checks" / "break_it.py", SOLUTIONS / "break_it" / "x.ipynb"]
    cell = f"for _p in {[str(p) for p in course]!r}:\n    try:\n        open(_p).read()\n"
    cell += "    except OSError:\n        pass\n"
    cell += f"import os\nos.listdir({str(REPO)!r})\n"  # a folder above gmmlib/: the imports list it
    submitted = fixture_students.load().build_notebook("break_it", {"__added_first__": [cell]})
    nbformat.write(submitted, tmp_path / "submitted.ipynb")
    result = recheck_notebook(
        tmp_path / "submitted.ipynb",
        SOLUTIONS / "break_it" / "break_it.ipynb",
        "break_it",
        tmp_path / "w",
        isolation=Isolation(True, uid=default_uid()),
    )
    assert result["observed"]["events"] == [
        f"read of {p} (not visible in the sandbox)" for p in course
    ]


def test_the_explorer_renamed_after_a_course_function_is_no_drawing(tmp_path):
    """``from gmmlib.explore import explore as assert_close`` made every visible test's
    ``assert_close(...)`` statement a drawing call, set aside unrun in the feedback kernel: the
    student's page showed the visible tests passed. The explorer keeps its own name to be
    accepted; renamed, it is an import of gmmlib like any other (assignment 1: proven)."""
    import fixture_students

    from grading.cells import grade_id
    from grading.display_only import neutralise_notebook
    from grading.scan import proven

    cell = "from gmmlib.explore import explore as assert_close\n"
    nb = fixture_students.load().build_notebook("em_by_hand", {"__added_first__": [cell]})
    changed = neutralise_notebook(nb)  # the course's own explorer cell only
    assert [grade_id(nb.cells[i]) for i in changed] == ["em_by_hand_explore"]
    found = scan_cell(cell, ("gmmlib", "sklearn"), set())
    assert found and all(proven(f) for f in found)


def test_the_child_stops_exactly_the_calls_the_observer_names():
    """The re-check's child (grading/sandbox.py, which imports nothing of the repository) lists
    the calls its filter stops by number; the grader's Observer names them. A call stopped but
    not named would be recorded by its bare number, one named but not stopped never seen."""
    for machine, (arch, _seccomp, _sendmsg, calls) in sandbox._WATCHED.items():
        assert sorted(set(calls)) == sorted(calls), machine  # each once
        assert set(calls) == set(observer.CALLS[arch]), machine
