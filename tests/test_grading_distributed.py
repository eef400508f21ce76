"""Grading on a Dask cluster (`grading.distributed`, ``gmm-grade --scheduler``).

One module-scoped `LocalCluster` (two worker processes under nannies, one thread each) stands
in for a cluster of machines, and one cluster run grades a correct, a wrong and a hostile
student. During that run the first worker process seen running a student's code in a sandbox
is SIGKILLed (the test follows the tasks' "started" messages on a Dask queue and the worker's
processes in /proc; never a sleep). The run's output is compared with the local run of the same
students in this session's graded class (tests/graded_class.py), never with numbers written
here: the fixtures' scores belong to tests/test_grading_pipeline.py. The guards on every wait
only stop a hung run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import fixture_students
import pytest
from per_run import once_per_run

ROOT = Path(__file__).resolve().parents[1]
#: A correct, a wrong and a hostile (proven patching of numpy) student.
STUDENTS = ("reference", "bug_naive_exp", "hostile_patches_numpy")
HANG_GUARD = 1800.0  # seconds: only stops a hung run; no outcome depends on it


@pytest.fixture(scope="module", autouse=True)
def _release_once(release_once):
    """Each grading run here starts from the run's one nbgrader release (conftest.py
    `release_once`): the tests are about the cluster, not the release."""


@pytest.fixture(scope="module")
def security():
    """The cluster's certificates (self-signed; every role uses the same pair)."""
    from distributed.security import Security

    return Security.temporary()


@pytest.fixture(scope="module")
def tls_files(security, tmp_path_factory) -> list[str]:
    """``--tls-ca-file``, ``--tls-cert``, ``--tls-key`` options holding ``security``'s files."""
    folder = tmp_path_factory.mktemp("tls")
    options = []
    for option, name in [
        ("--tls-ca-file", "tls_ca_file"),
        ("--tls-cert", "tls_client_cert"),
        ("--tls-key", "tls_client_key"),
    ]:
        (folder / f"{name}.pem").write_text(getattr(security, name))
        options += [option, str(folder / f"{name}.pem")]
    return options


@pytest.fixture(scope="module")
def cluster(security):
    """Two single-thread workers behind a scheduler that speaks TLS only (the default)."""
    from distributed import LocalCluster

    with LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        dashboard_address=":0",
        security=security,
    ) as local:
        assert local.scheduler_address.startswith("tls://")
        yield local


@pytest.fixture(scope="module")
def client(cluster, security):
    from distributed import Client

    with Client(cluster, security=security) as c:
        yield c


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    """`STUDENTS`' notebooks, written once per run (tests/per_run.py); read only."""

    def write(folder):
        fixture_students.load().write_all(folder / "students", only=STUDENTS)
        (folder / "written").touch()

    return once_per_run(tmp_path_factory, "dask-submissions", write, "written") / "students"


def _only(submissions: Path, students, dest: Path) -> Path:
    for student in students:
        shutil.copytree(submissions / student, dest / student)
    return dest


@pytest.fixture(scope="module")
def local_run(graded_class, submissions):
    """The reference: the test run's graded class (tests/graded_class.py), every assignment
    graded by local processes (`grade_folder`'s default), `STUDENTS` among its students with
    the same notebooks as `submissions`; read only."""
    for student in STUDENTS:
        mine = _files(submissions / student)
        assert mine == _files(graded_class.submissions / student), student
    return graded_class.out


def _local_run(request) -> Path:
    """`local_run`, asked for once the test has graded: the graded class may still be in the
    making on another pytest-xdist worker, and the test's own grading need not wait for it."""
    return request.getfixturevalue("local_run")


def _files(folder: Path) -> dict:
    """{file under ``folder``: its bytes}."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


#: grades.csv columns that say where and how the run graded (a cluster's differ by design).
RUN_NOTES = ("limits", "transport")


def _table(out: Path, name: str, students) -> list[dict]:
    """The rows of ``out/name`` for ``students``, with the output folder's path as "OUT" and
    without the run's notes (`RUN_NOTES`). Copy detection's rows are left out: they compare a
    student with the class graded, and a cluster test grades a few of the local run's students
    (the coordinator runs the same `grading.copying` either way; tests/test_copying.py)."""
    with open(out / name) as f:
        text = f.read().replace(str(out), "OUT")
    rows = [
        r
        for r in csv.DictReader(io.StringIO(text))
        if r["student_id"] in students and r.get("status") != "copying"
    ]
    return [{k: v for k, v in r.items() if k not in RUN_NOTES} for r in rows]


def _same_as_local(out: Path, local: Path, students) -> None:
    for name in ("grades.csv", "parts.csv", "needs_review.csv"):
        got, want = _table(out, name, students), _table(local, name, students)
        assert got == want, f"{name} differs from the local run's"
    for student in students:
        for page in sorted((local / "feedback" / student).rglob("*.html")):
            mine = out / page.relative_to(local)
            got = mine.read_text().replace(str(out), "OUT")
            assert got == page.read_text().replace(str(local), "OUT"), f"{mine} differs"


def _once(out: Path, students) -> None:
    """grades.csv: each student once per assignment; the gradebook: one submission each."""
    from nbgrader.api import Gradebook

    with open(out / "grades.csv") as f:
        keys = [(r["student_id"], r["assignment"]) for r in csv.DictReader(f)]
    assert len(keys) == len(set(keys)), f"duplicate rows: {keys}"
    assert {s for s, _ in keys} == set(students)
    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}") as gb:
        seen = [(sub.student.id, a.name) for a in gb.assignments for sub in a.submissions]
    assert len(seen) == len(set(seen)), f"duplicate gradebook submissions: {seen}"
    assert {s for s, _ in seen} == set(students)


# ------------------------------------------------------------------------------------------
# A worker killed while grading
# ------------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19]), fields[0]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _descendants(pid: int) -> dict[int, int]:
    """{pid: start time} of every live descendant of ``pid``."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) and st[2] != "Z":
            parents[int(entry)] = (st[0], st[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, start) in parents.items():
            if ppid == parent and child not in found:
                found[child] = start
                frontier.append(child)
    return found


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] == start and st[2] != "Z"  # a zombie has ended


def _wait(condition, what: str):
    deadline = time.monotonic() + HANG_GUARD
    while not (value := condition()):
        assert time.monotonic() < deadline, f"hung waiting for {what}"
        time.sleep(0.05)  # polling interval, not a timing assumption
    return value


@pytest.fixture(scope="module")
def cluster_run(cluster, client, security, submissions, tmp_path_factory):
    """Grade every student on the cluster, SIGKILLing the first worker process seen running a
    student's code in a sandbox. Returns the output folder, the progress text and what was
    seen: the killed worker's pid, the processes its grading had started ({pid: start time}),
    the sandboxes among them, and every task's start ({"student", "worker", "pid"}, in order).
    """
    from distributed import Queue

    from grading.pipeline import grade_folder

    out = tmp_path_factory.mktemp("cluster") / "out"
    name = f"started-{uuid.uuid4().hex}"
    queue = Queue(name, client=client)
    progress, run, starts = io.StringIO(), {}, []

    def grade():
        try:
            run["summary"] = grade_folder(
                submissions,
                out,
                scheduler=cluster.scheduler_address,
                security=security,
                announce=name,
                progress=progress,
            )
        except BaseException as error:  # noqa: BLE001 - reported by the tests
            run["error"] = error

    def drain():
        while queue.qsize():
            starts.append(queue.get(timeout=60))

    def grading_processes():
        """(worker pid, the grading.worker process and all it started) of a worker whose
        task runs student code in a bubblewrap sandbox now; None while there is none."""
        assert not run, f"grading ended before a sandbox was seen: {run}"
        drain()
        for pid in {s["pid"] for s in starts}:
            tree = _descendants(pid)
            graders = [p for p in tree if "grading.worker" in _cmdline(p)]
            if graders and any(_cmdline(p).startswith("/usr/bin/bwrap") for p in tree):
                mine = {p: t for p, t in tree.items() if p in graders or _is_below(p, graders)}
                return pid, mine
        return None

    thread = threading.Thread(target=grade, daemon=True)
    thread.start()
    pid, started = _wait(grading_processes, "a student's code in a sandbox")
    sandboxes = [p for p in started if _cmdline(p).startswith("/usr/bin/bwrap")]
    os.kill(pid, signal.SIGKILL)
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), "grading hung after the worker was killed"
    assert "error" not in run, run.get("error")
    drain()
    seen = {"pid": pid, "started": started, "sandboxes": sandboxes, "starts": starts}
    return out, progress.getvalue(), seen


@pytest.mark.slow
def test_the_cluster_grades_exactly_like_a_local_run(cluster_run, request):
    """Same grades.csv, parts.csv, needs_review.csv and feedback pages as the local run, a
    worker lost on the way notwithstanding; progress and summary as a local run prints them."""
    out, progress, _ = cluster_run
    _same_as_local(out, _local_run(request), STUDENTS)
    n = len(STUDENTS)
    assert f"[{n}/{n}]" in progress and "on the cluster at tls://" in progress, progress
    assert "transport: tls://" in progress, progress
    with open(out / "grades.csv") as f:
        assert {r["transport"] for r in csv.DictReader(f)} == {"tls://"}
    assert f"graded {n} students" in progress and "failures per test" in progress, progress
    lines = [line for line in progress.splitlines() if re.match(r"\[\s*\d+/\d+\]", line)]
    assert len(lines) == n, f"one progress line per student: {lines}"


@pytest.mark.slow
def test_a_worker_killed_while_grading_leaves_nothing_and_no_duplicate(cluster_run):
    """Every process the killed worker's grading had started (the grading process, the kernel's
    bubblewrap and what runs in it) is gone; the student was graded again by another worker
    process; each student is in grades.csv, the gradebook and the journal exactly once."""
    out, _, seen = cluster_run
    assert seen["sandboxes"], "no sandbox was running when the worker was killed"
    survivors = {p: _cmdline(p) for p, start in seen["started"].items() if _alive(p, start)}
    assert not survivors, f"still running after their worker was killed: {survivors}"
    # The task that ran there when the worker died (its last start) started again elsewhere.
    theirs = [i for i, s in enumerate(seen["starts"]) if s["pid"] == seen["pid"]]
    killed = seen["starts"][theirs[-1]]["student"]
    later = seen["starts"][theirs[-1] + 1 :]
    assert any(s["student"] == killed and s["pid"] != seen["pid"] for s in later), seen["starts"]
    _once(out, STUDENTS)
    journal = (out / "journal.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["student"] for line in journal[1:]) == sorted(STUDENTS)


def _is_below(pid: int, ancestors) -> bool:
    while (st := _stat(pid)) and st[0] > 1:
        pid = st[0]
        if pid in ancestors:
            return True
    return False


#: A grading process that dies as its kernel starts: it starts the kernel's launcher as
#: jupyter_client does (its own session, ``$JPY_PARENT_PID``), prints its pid and exits. The
#: launcher is held (``WAIT``) until its grading process is gone, then becomes
#: ``python -m grading.kernel``: what a Dask worker killed at that moment leaves.
_DYING_GRADER = r"""
import os, subprocess, sys
WAIT = "import os, sys, time\nwhile os.getppid() == int(sys.argv[1]): time.sleep(0.01)\n" \
    "os.execv(sys.executable, [sys.executable, '-m', 'grading.kernel', sys.argv[2]])"
env = dict(os.environ, JPY_PARENT_PID=str(os.getpid()))
with open(sys.argv[2], "wb") as log:
    kernel = subprocess.Popen(
        [sys.executable, "-c", WAIT, str(os.getpid()), sys.argv[1]],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
    )
print(kernel.pid, flush=True)
"""


def test_a_kernel_whose_grader_died_as_it_started_does_not_run(tmp_path):
    """The grading process dies after starting a kernel's launcher and before the launcher asks
    to die with it (`grading.kernel.bind_to_grader`): the launcher stops instead of starting
    ipykernel (before the fix it ran on, a child of init, for good: the kernels found left in
    a Dask worker's folder)."""
    import subprocess
    import sys

    from grading.isolation import Isolation
    from grading.kernel import SETTINGS, settings

    scratch, log = tmp_path / "scratch", tmp_path / "kernel.log"
    env = dict(os.environ, **{SETTINGS: settings(Isolation(sandbox=False), scratch, [])})
    grader = subprocess.run(
        [sys.executable, "-c", _DYING_GRADER, str(tmp_path / "kernel.json"), str(log)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(grader.stdout)
    start = _stat(pid)[1]
    try:
        ran = _wait(
            lambda: "ran" if "ipykernel" in _cmdline(pid) else not _alive(pid, start),
            "the launcher to stop or start ipykernel",
        )
        assert ran is True, f"the kernel runs with no grader: {_cmdline(pid)}"
    finally:
        if _alive(pid, start):
            os.kill(pid, signal.SIGKILL)
    assert "grading.kernel: not starting" in log.read_text(), log.read_text()


@pytest.mark.skipif(
    __import__("grading.cgroups").cgroups.available() is None,
    reason="no control groups this process may create",
)
def test_the_sweep_kills_what_a_sandbox_whose_first_process_is_gone_left():
    """A sandbox's group whose first process (bwrap) has gone but still holds a process: the
    sweep kills that process (an orphan of a grader that died at the wrong moment), and a later
    sweep removes the group."""
    import subprocess

    from grading import cgroups

    host = cgroups.available()
    first = subprocess.Popen(["true"])
    first.wait()  # the sandbox's first process, gone
    left = subprocess.Popen(["sleep", "600"])
    folders = sorted({cgroups.group(host, c, first.pid) for c in host.parents})
    try:
        for folder in folders:
            folder.mkdir()
            (folder / "cgroup.procs").write_text(str(left.pid))
        cgroups.sweep(host)
        left.terminate()  # a SIGKILL sent by the sweep came first and decides the status
        assert left.wait() == -signal.SIGKILL, "the sweep left the process running"
        cgroups.sweep(host)
        assert not [f for f in folders if f.exists()], "the empty group was not removed"
    finally:
        left.kill()
        left.wait()
        for folder in folders:
            if folder.exists():
                _wait(lambda f=folder: not (f / "cgroup.procs").read_text().split(), "empty")
                folder.rmdir()


# ------------------------------------------------------------------------------------------
# --resume after an interrupted run
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_grades_only_the_missing_students(cluster_run, submissions, tmp_path, capsys):
    """The cluster run's output with only two students in its journal (as if the scheduler had
    been lost after them, one line torn): ``gmm-grade --resume`` (locally) grades the third
    only, keeps a mark given by hand to a journalled student, and the output has every student
    once, with the rows the uninterrupted run had."""
    from nbgrader.api import Gradebook

    from grading.cli import main

    done, out = cluster_run[0], tmp_path / "out"
    shutil.copytree(done, out, symlinks=True)
    kept = ("reference", "hostile_patches_numpy")
    lines = (out / "journal.jsonl").read_text().splitlines()
    header, entries = lines[0], [json.loads(line) for line in lines[1:]]
    (out / "journal.jsonl").write_text(
        "\n".join([header, *(json.dumps(e) for e in entries if e["student"] in kept)])
        + '\n{"student": "torn'  # a line the lost run did not finish
    )
    for name in ("results.json", "grades.csv", "parts.csv", "summary.json"):
        (out / name).unlink()
    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}") as gb:
        grade = gb.find_grade("em_by_hand_written", "em_by_hand", "em_by_hand", "reference")
        grade.manual_score = 1.5
        gb.db.commit()
    assert main([str(submissions), "--resume", "--out", str(out)]) == 0
    progress = capsys.readouterr().err
    graded = [line.split()[3].rstrip(":") for line in progress.splitlines() if "/1] " in line]
    assert sorted(graded) == sorted(set(STUDENTS) - set(kept)), progress
    assert "2 graded already" in progress and "grading 1 on" in progress, progress
    _once(out, STUDENTS)
    rows = {(r["student_id"], r["assignment"]): r for r in _table(out, "grades.csv", STUDENTS)}
    assert rows[("reference", "em_by_hand")]["manual"] == "1.5", "the hand-given mark was lost"
    for row in _table(done, "grades.csv", STUDENTS):
        if (row["student_id"], row["assignment"]) != ("reference", "em_by_hand"):
            assert rows[(row["student_id"], row["assignment"])] == row
    journal = (out / "journal.jsonl").read_text().splitlines()
    students = [json.loads(line)["student"] for line in journal[1:] if line.endswith("}")]
    assert sorted(students) == sorted(STUDENTS)


def test_resume_needs_a_journal_of_the_same_settings(tmp_path, capsys):
    from grading.cli import main
    from grading.journal import Journal

    subs = tmp_path / "submissions"
    subs.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([str(subs), "--resume", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "nothing to resume" in capsys.readouterr().err
    out = tmp_path / "other"
    out.mkdir()
    Journal(out, {"assignments": ["em_by_hand"], "sandbox": "bubblewrap"}).close()
    with pytest.raises(SystemExit) as exit_info:
        main([str(subs), "--resume", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "was graded with assignments = ['em_by_hand']" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Workers without a working sandbox
# ------------------------------------------------------------------------------------------


def _break_bwrap():
    import grading.isolation

    grading.isolation.BWRAP = "/nonexistent/bwrap"


def _mend_bwrap():
    import grading.isolation

    grading.isolation.BWRAP = "/usr/bin/bwrap"


@pytest.mark.slow
def test_a_worker_whose_sandbox_probe_fails_refuses_to_grade(
    cluster, client, tls_files, submissions, tmp_path, capsys
):
    """bubblewrap missing on every worker: the start-up probe fails there, each task is refused
    with the probe's reason naming the worker, and gmm-grade stops as a local run refuses."""
    from grading.cli import main

    subs = _only(submissions, ["reference"], tmp_path / "submissions")
    out = tmp_path / "out"
    client.run(_break_bwrap)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(
                [str(subs), "--out", str(out), "--scheduler", cluster.scheduler_address] + tls_files
            )
    finally:
        client.run(_mend_bwrap)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "gmm-grade: refusing to grade: no worker of the cluster" in err, err
    for worker in client.scheduler_info()["workers"]:
        assert f"worker {worker} cannot sandbox student code: /nonexistent/bwrap is missing" in err
    assert not (out / "grades.csv").exists()
    assert (out / "journal.jsonl").read_text().count("\n") == 1  # the header: nothing graded


@pytest.mark.slow
def test_a_refusing_worker_hands_its_students_to_the_others(
    cluster, client, security, submissions, request, tmp_path
):
    """bubblewrap missing on one worker of two: that worker refuses (said once, naming it), its
    students are graded by the other, and the results are the local run's.

    Both students are sent at once to two idle one-thread workers; Dask's scheduler queues
    such tasks and gives each to the idle worker with the fewest tasks, so the broken worker
    gets one (the test asserts it did: the refusal is printed).
    """
    from distributed import Queue

    from grading.pipeline import grade_folder

    students = ["reference", "bug_naive_exp"]
    subs = _only(submissions, students, tmp_path / "submissions")
    out, name, progress = tmp_path / "out", f"started-{uuid.uuid4().hex}", io.StringIO()
    broken, *others = sorted(client.scheduler_info()["workers"])
    client.run(_break_bwrap, workers=[broken])
    try:
        grade_folder(
            subs,
            out,
            scheduler=cluster.scheduler_address,
            security=security,
            announce=name,
            progress=progress,
        )
    finally:
        client.run(_mend_bwrap, workers=[broken])
    text, queue = progress.getvalue(), Queue(name, client=client)
    refusal = f"worker {broken} cannot sandbox student code: /nonexistent/bwrap is missing"
    assert text.count(refusal) == 1 and "its students go to the other workers" in text, text
    assert "cannot sandbox" not in text.replace(refusal, ""), text
    starts = [queue.get(timeout=60) for _ in range(queue.qsize())]
    assert sorted(s["student"] for s in starts) == sorted(students)
    assert {s["worker"] for s in starts} <= set(others), starts
    _same_as_local(out, _local_run(request), students)
    _once(out, students)


@pytest.mark.slow
def test_a_tls_cluster_grades_through_the_cli(submissions, request, tmp_path):
    """``gmm-grade --scheduler tls://... --tls-ca-file --tls-cert --tls-key`` against a cluster
    that speaks TLS only (a self-signed certificate, `distributed.Security.temporary`): the
    student is graded as in the local run."""
    from distributed import LocalCluster
    from distributed.security import Security

    from grading.cli import main

    security = Security.temporary()
    files = []
    for name in ("tls_ca_file", "tls_client_cert", "tls_client_key"):
        path = tmp_path / f"{name}.pem"
        path.write_text(getattr(security, name))
        files.append(str(path))
    subs = _only(submissions, ["reference"], tmp_path / "submissions")
    out = tmp_path / "out"
    with LocalCluster(
        processes=True,
        n_workers=1,
        threads_per_worker=1,
        dashboard_address=":0",
        security=security,
    ) as tls:
        assert tls.scheduler_address.startswith("tls://"), tls.scheduler_address
        options = ["--tls-ca-file", files[0], "--tls-cert", files[1], "--tls-key", files[2]]
        assert (
            main([str(subs), "--out", str(out), "--scheduler", tls.scheduler_address, *options])
            == 0
        )
    _same_as_local(out, _local_run(request), ["reference"])


# ------------------------------------------------------------------------------------------
# The scheduler lost
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_lost_scheduler_stops_the_run_and_keeps_what_was_graded(submissions, tmp_path):
    """A cluster of its own (one single-thread worker) is closed while a student is being
    graded and after at least one result arrived: SchedulerLostError says so, and the journal
    holds every result that had arrived, their files in OUT/work."""
    from distributed import Client, LocalCluster, Queue

    from grading import journal
    from grading.distributed import SchedulerLostError
    from grading.pipeline import grade_folder

    out, name, run = tmp_path / "out", f"started-{uuid.uuid4().hex}", {}
    with LocalCluster(
        processes=True, n_workers=1, threads_per_worker=1, dashboard_address=":0"
    ) as lost:

        def grade():
            try:
                grade_folder(
                    submissions,
                    out,
                    scheduler=lost.scheduler_address,
                    announce=name,
                    progress=io.StringIO(),
                    insecure=True,  # a tcp:// cluster of the test's own
                )
            except BaseException as error:  # noqa: BLE001 - checked below
                run["error"] = error
            run["ended"] = True

        with Client(lost) as client:
            queue, started = Queue(name, client=client), set()
            thread = threading.Thread(target=grade, daemon=True)
            thread.start()

            def one_graded_one_running():
                assert "ended" not in run, f"the run ended first: {run}"
                while queue.qsize():
                    started.add(queue.get(timeout=60)["student"])
                try:
                    graded = set(journal.read(out)[1])
                except (FileNotFoundError, ValueError):
                    return False
                return graded and started - graded

            _wait(one_graded_one_running, "a result and a student in flight")
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), "grading hung after the scheduler was lost"
    assert isinstance(run.get("error"), SchedulerLostError), run
    assert "lost the connection to the Dask scheduler" in str(run["error"])
    _, kept = journal.read(out)
    assert kept and set(kept) < set(STUDENTS), kept
    for student in kept:
        assert (out / "work" / student / "result.json").exists()
    assert not (out / "grades.csv").exists()


def test_the_cli_says_how_to_resume_after_a_lost_scheduler(tmp_path, capsys, monkeypatch):
    from grading import cli
    from grading.distributed import SchedulerLostError

    def lost(*args, **kwargs):
        raise SchedulerLostError("lost the connection to the Dask scheduler at tcp://x:8786")

    monkeypatch.setattr(cli, "grade_folder", lost)
    subs = tmp_path / "submissions"
    subs.mkdir()
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(subs), "--out", str(out), "--scheduler", "tcp://x:8786", "--insecure"])
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "lost the connection" in err and f"kept in {out / 'journal.jsonl'}" in err, err
    assert f"gmm-grade {subs} --resume --out {out}" in err, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tls-cert", "c.pem"], "go with --scheduler tls://HOST:PORT"),
        (
            ["--scheduler", "tls://h:8786", "--tls-cert", "c.pem"],
            "give all three of --tls-ca-file, --tls-cert and --tls-key",
        ),
        (["--scheduler", "tls://h:8786", "--jobs", "4"], "--jobs is for local grading"),
        (["--scheduler", "tcp://h:8786"], "refusing the scheduler tcp://h:8786: without tls://"),
        (["--scheduler", "h:8786"], "pass --insecure knowingly"),
        (["--insecure"], "--insecure goes with --scheduler tcp://HOST:PORT"),
    ],
)
def test_the_cli_checks_the_cluster_options(tmp_path, capsys, args, message):
    from grading.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_client_without_the_clusters_certificate_cannot_reach_it(tmp_path):
    """A scheduler that speaks TLS (mutual: it asks for the client's certificate too) is
    really connected to, four ways: plain TCP, TLS without a certificate, TLS with a stranger's
    certificate all fail; the CLI's `_security` from the cluster's files gets in."""
    import socket
    import ssl

    from distributed import Client, LocalCluster
    from distributed.security import Security

    from grading.cli import _security

    security = Security.temporary()
    files = []
    for name in ("tls_ca_file", "tls_client_cert", "tls_client_key"):
        (tmp_path / name).write_text(getattr(security, name))
        files.append(str(tmp_path / name))
    with LocalCluster(n_workers=0, dashboard_address=":0", security=security) as cluster:
        address = cluster.scheduler_address
        host, port = address.removeprefix("tls://").rsplit(":", 1)
        with pytest.raises((OSError, TimeoutError)):
            Client(address.replace("tls://", "tcp://"), timeout="10s")
        with pytest.raises((OSError, TimeoutError)):
            Client(address, security=Security.temporary(), timeout="10s")
        context = ssl.create_default_context(cadata=security.tls_ca_file)
        context.check_hostname = False
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            try:
                with context.wrap_socket(raw) as tls:
                    tls.sendall(b"\0" * 64)
                    answer = tls.recv(1024)
            except (ssl.SSLError, ConnectionError):
                answer = b""
        assert answer == b"", answer  # refused: no certificate, no conversation
        with Client(address, security=_security(*files), timeout="60s") as client:
            assert client.scheduler_info()["address"] == address


# ------------------------------------------------------------------------------------------
# A worker that shares no file system and no network namespace with the coordinator
# ------------------------------------------------------------------------------------------

_ISOLATED_WORKER = r"""
import asyncio, os
from distributed import Worker
from distributed.security import Security

async def main():
    env = os.environ
    security = Security(
        tls_ca_file=env["GMM_CA"], tls_worker_cert=env["GMM_CERT"],
        tls_worker_key=env["GMM_KEY"], require_encryption=True,
    )
    async with Worker(
        env["GMM_SCHEDULER"], security=security, nthreads=1, host=env["GMM_HOST"],
        name="isolated", local_directory="/tmp/worker",
    ) as worker:
        await worker.finished()

asyncio.run(main())
"""


def _ip(*args: str) -> None:
    import subprocess

    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def network_namespace(host_links):
    """A network namespace of its own joined to this one by a veth pair: (name, the address
    on this side, the address inside). Removed afterwards. The links of this namespace change
    while no browser test runs (conftest.py `host_links`: Chromium drops its requests then)."""
    tag = os.getpid() % 10_000
    name, here, there = f"gmm-w{tag}", f"10.{200 + tag % 50}.{tag % 250}.1", None
    there = here.rsplit(".", 1)[0] + ".2"
    outer, inner = f"gmmo{tag}", f"gmmi{tag}"
    try:
        with host_links(exclusive=True):
            _ip("netns", "add", name)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", name)
            _ip("addr", "add", f"{here}/24", "dev", outer)
            _ip("link", "set", outer, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{there}/24", "dev", inner)
        _ip("netns", "exec", name, "ip", "link", "set", inner, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name, here, there
    finally:
        subprocess_run = __import__("subprocess").run
        with host_links(exclusive=True):
            subprocess_run(["ip", "link", "del", outer], capture_output=True)
            subprocess_run(["ip", "netns", "del", name], capture_output=True)


def _namespaces() -> dict:
    return {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("net", "mnt")}


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace with a veth pair needs root")
def test_a_worker_with_no_shared_files_or_network_grades_a_class(
    network_namespace, submissions, request, tmp_path
):
    """The worker runs in a network namespace of its own (it reaches the scheduler over a veth
    pair, TLS) and a mount namespace whose /tmp is a fresh tmpfs: the submissions, the
    coordinator's output folder and its course do not exist there. It grades the class as the
    local run did: tasks carry their files, nothing is read from a shared disk."""
    import subprocess
    import sys

    from distributed import Client, LocalCluster
    from distributed.security import Security

    from grading.pipeline import grade_folder

    name, here, there = network_namespace
    security = Security.temporary()
    students = ["reference", "bug_naive_exp"]
    subs = _only(submissions, students, tmp_path / "submissions")
    out = tmp_path / "out"
    assert str(subs).startswith("/tmp/") and str(out).startswith("/tmp/")
    with LocalCluster(n_workers=0, host=here, dashboard_address=":0", security=security) as cluster:
        env = dict(
            os.environ,
            GMM_CA=security.tls_ca_file,
            GMM_CERT=security.tls_worker_cert,
            GMM_KEY=security.tls_worker_key,
            GMM_SCHEDULER=cluster.scheduler_address,
            GMM_HOST=there,
        )
        hide = f'mount -t tmpfs tmpfs /tmp && exec {sys.executable} -c "$0"'
        worker = subprocess.Popen(
            ["ip", "netns", "exec", name, "unshare", "--mount", "--propagation", "private"]
            + ["sh", "-c", hide, _ISOLATED_WORKER],
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            with Client(cluster.scheduler_address, security=security, timeout="60s") as client:
                client.wait_for_workers(1, timeout=HANG_GUARD)
                # What the worker sees, asked by a lambda (sent by value: the test module is
                # not importable there).
                seen = client.run(
                    lambda paths: {
                        "visible": [p for p in paths if os.path.exists(p)],
                        **{n: os.readlink(f"/proc/self/ns/{n}") for n in ("net", "mnt")},
                    },
                    [str(subs), str(out.parent), str(submissions)],
                )
                (inside,) = seen.values()
                assert inside["visible"] == [], inside
                assert inside["net"] != _namespaces()["net"], inside
                assert inside["mnt"] != _namespaces()["mnt"], inside
                grade_folder(
                    subs,
                    out,
                    scheduler=cluster.scheduler_address,
                    security=security,
                    progress=io.StringIO(),
                )
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    _same_as_local(out, _local_run(request), students)
    _once(out, students)


@pytest.mark.slow
def test_a_workers_results_name_paths_in_the_coordinators_run_folder(cluster_run, request):
    """A worker grades in a run folder of its own, laid out as the coordinator's: every path a
    result names is relative to the run folder and resolves to the same file on the
    coordinator (`RunFolder.resolve`), as in a local run; no worker folder is named anywhere."""
    from grading.layout import RunFolder

    out, _, _ = cluster_run
    for folder in (out, _local_run(request)):
        for student in STUDENTS:
            text = (folder / "work" / student / "result.json").read_text()
            assert "gmm-grading-" not in text and str(folder) not in text
            for result in json.loads(text):
                page = f"feedback/{student}/{result['assignment']}/{result['assignment']}.html"
                assert result["feedback"] == page
                assert RunFolder(folder).resolve(result["feedback"]).is_file()
    with pytest.raises(ValueError, match="not a path inside the run folder"):
        RunFolder(out).resolve("../course/gradebook.db")
