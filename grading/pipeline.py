"""The instructor's pipeline: a folder of submissions in, grades, feedback and a review list out.

    gmm-grade SUBMISSIONS [--out graded] [--jobs N | --scheduler tcp://HOST:PORT] [--resume]
    gmm-grade --update [--out graded]

SUBMISSIONS holds one folder per student, with either nbgrader's layout
(``<student>/<assignment>/<notebook>.ipynb``) or the notebooks directly
(``<student>/em_by_hand.ipynb``). Steps:

1. prepare: copy solutions/ into ``OUT/course`` and run ``nbgrader generate_assignment`` there
   (the gradebook with the hidden tests stays in OUT, never in the release);
2. collect: copy each student's notebooks into their own nbgrader course folder;
3. grade, one student per core at a time (`grading.worker`): autograde, out-of-kernel re-check,
   redacted feedback; a student whose grading exceeds `STUDENT_TIMEOUT` is stopped and listed;
   each result goes into ``OUT/journal.jsonl`` as it arrives (`grading.journal`: ``--resume``
   grades only the students missing from it). With ``--scheduler`` the students are graded on
   a Dask cluster instead (`grading.distributed`); everything else is the same;
4. export: ``grades.csv`` (one row per student and assignment, one column per part),
   ``parts.csv`` (every part with the kernel's and the re-check's verdicts and the reason),
   ``needs_review.csv``, ``failures.txt``; feedback in ``OUT/feedback/<student>/<assignment>/``;
   the same final points in the class gradebook ``OUT/course/gradebook.db`` (`grading.gradebook`)
   for formgrader, where the written answers are graded; ``gmm-grade --update`` (`update`) then
   folds those hand-given marks into the CSVs and the feedback.
"""

from __future__ import annotations

import csv
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from grading import copying, journal
from grading.course import ASSIGNMENTS, REPO, tool_env
from grading.feedback import write_feedback
from grading.gradebook import apply_hand_scores, empty_copy, hand_scores, record, was_graded
from grading.kernel import write_kernelspec
from grading.layout import Course, course_secret, feedback_page, graded_cells, missing
from grading.release import generate

STUDENT_TIMEOUT = 600.0  # seconds for all of one student's notebooks (a backstop)
RESULTS = "results.json"  # every student's result, as graded (before any hand marks)
NO_SANDBOX = "none (--no-sandbox)"
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


def _through_link(path: Path, folder: Path) -> bool:
    """Whether ``path`` (inside a student's ``folder``) is reached through a symbolic link.

    An unpacked upload keeps its links, and the grader reads as root: a notebook that is a link
    to the course's solutions or to another student's notebook would be graded as theirs.
    """
    here = folder
    for part in path.relative_to(folder).parts:
        here = here / part
        if here.is_symlink():
            return True
    return False


def collect(
    submissions: Path, work: Path, assignments=tuple(ASSIGNMENTS), keep=frozenset()
) -> tuple[dict, list]:
    """{student: {assignment: path or None}} copied into ``work``; and problems found.

    The folders of the students in ``keep`` (graded already: ``--resume``) are left as they are.
    """
    students, problems = {}, []
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir()):
        student = folder.name
        if not STUDENT_ID.match(student):
            problems.append((student, "", "folder name is not a usable student id: skipped"))
            continue
        if folder.is_symlink():
            problems.append((student, "", "the student's folder is a link: skipped"))
            continue
        found = {}
        for assignment in assignments:
            notebook = ASSIGNMENTS[assignment]
            candidates = [folder / assignment / notebook, folder / notebook]
            links = [c for c in candidates if _through_link(c, folder)]
            for link in links:
                rel = link.relative_to(folder)
                problems.append((student, assignment, f"{rel} is a link: not graded"))
            candidates = [c for c in candidates if c not in links]
            sub = folder / assignment
            nested = sorted(sub.glob("*.ipynb")) if sub.is_dir() else []
            nested = [n for n in nested if not _through_link(n, folder)]
            path = next((c for c in candidates if c.is_file()), None)
            if path is None and len(nested) == 1:
                path = nested[0]
            elif path is None and len(nested) > 1:
                problems.append(
                    (student, assignment, f"several notebooks; none named {notebook}: not graded")
                )
            found[assignment] = path
        if not any(found.values()):  # export names it on the student's "missing" rows
            there = sorted(  # os.walk: a link to a folder is not followed
                os.path.relpath(os.path.join(top, name), folder)
                for top, _, names in os.walk(folder)
                for name in names
                if name.endswith(".ipynb")
            )
            why = f"found only {', '.join(there[:5])}" if there else "the folder holds no notebook"
            problems.append((student, "", why))
        students[student] = found
        root = work / student
        if student in keep:
            continue
        if root.exists():
            shutil.rmtree(root)
        for assignment, path in found.items():
            if path is not None:
                dest = Course(root).notebook("submitted", assignment, student)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                (dest.parent / "timestamp.txt").write_text(
                    time.strftime("%Y-%m-%d %H:%M:%S.000000 UTC", time.gmtime(path.stat().st_mtime))
                )
        root.mkdir(parents=True, exist_ok=True)
    return students, problems


DIED = "grader process died"


def took_too_long(student_timeout: float) -> str:
    return f"grading took longer than {student_timeout:g} s: stopped"


class Worker:
    """One ``python -m grading.worker`` process; grades one student at a time.

    ``die_with_parent``: the process gets SIGKILL when the thread that started it ends (util-linux
    ``setpriv --pdeathsig``), and with it every sandbox it started (bubblewrap's
    ``--die-with-parent``): what a Dask worker starts does not outlive it.
    """

    def __init__(self, env, log, slot=0, die_with_parent=False):
        self.env, self.log = {**env, "GMM_WORKER_SLOT": str(slot)}, log
        self.prefix = ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"] if die_with_parent else []
        self.proc = None
        self.job = None
        self.started = 0.0
        self.buffer = b""
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "grading.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=self.env,
            cwd=REPO,
            start_new_session=True,
        )

    def submit(self, job):
        self.job, self.started, self.buffer = job, time.monotonic(), b""
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.flush()

    def grade(self, job, student_timeout=STUDENT_TIMEOUT) -> tuple[bool, str]:
        """Grade one job and wait for it: (True, "") or (False, why it failed); a worker that
        died or ran out of time is restarted for the next job."""
        if self.proc.poll() is not None:
            self.kill()
            self.start()
        self.submit(job)
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = self.started + student_timeout - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                note = took_too_long(student_timeout)
            elif chunk := os.read(fd, 4096):
                self.buffer += chunk
                continue
            else:
                note = DIED
            self.restart()
            return False, note
        self.job = None
        return True, ""

    def restart(self):
        """Kill the process (a dead or overdue one) and start a fresh one for the next job;
        return the job it held."""
        job, self.job = self.job, None
        self.kill()
        self.start()
        return job

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._close_pipes()

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.kill()
        self._close_pipes()

    def _close_pipes(self):
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:  # stdin of a dead worker: nothing left to flush to
                pass


def run_workers(jobs, n_workers, env, log, on_done, student_timeout=STUDENT_TIMEOUT):
    """Grade ``jobs`` on ``n_workers`` processes; call ``on_done(job, ok, note)`` for each."""
    pending = list(jobs)
    workers = [Worker(env, log, slot) for slot in range(min(n_workers, len(pending)) or 1)]
    for w in workers:
        if pending:
            w.submit(pending.pop(0))
    while any(w.job for w in workers):
        busy = [w for w in workers if w.job]
        fds = {w.proc.stdout.fileno(): w for w in busy}
        ready = select.select(list(fds), [], [], 1.0)[0]
        for fd in ready:
            w = fds[fd]
            chunk = os.read(fd, 4096)
            if not chunk:  # the worker died: restart it
                on_done(w.restart(), False, DIED)
            else:
                w.buffer += chunk
                if b"\n" in w.buffer:
                    job = w.job
                    w.job = None
                    on_done(job, True, "")
            if w.job is None and pending:
                w.submit(pending.pop(0))
        for w in busy:
            if w.job and time.monotonic() - w.started > student_timeout:
                on_done(w.restart(), False, took_too_long(student_timeout))
                if pending:
                    w.submit(pending.pop(0))
    for w in workers:
        w.close()


def default_jobs() -> int:
    """Students graded at once: two per core (a worker waits on its kernel about half the time;
    measured on 2 cores: 4 at once graded 40 notebooks ~1.4x faster than 2)."""
    return 2 * (os.cpu_count() or 1)


def _fmt_elapsed(seconds):
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def prepare_isolation(out: Path, sandbox: bool = True) -> dict:
    """The sandbox settings every worker gets: the probe's measurements, the uid block, the
    font cache. Raises `grading.isolation.SandboxUnavailableError` when bubblewrap cannot isolate
    (``gmm-grade`` then refuses unless given ``--no-sandbox``)."""
    from grading.isolation import build_font_cache, default_uid, probe

    if not sandbox:
        return {"sandbox": False}
    uid = default_uid()
    probe_dir = Path(tempfile.mkdtemp(prefix="gmm-probe-"))
    try:
        seen = probe(probe_dir / "scratch", uid)
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    return {
        "sandbox": True,
        "uid_base": uid,
        "vm_peak": seen["vm_peak"],
        "font_cache": str(build_font_cache(out / "jupyter" / "matplotlib")),
    }


def worker_env(jupyter: Path) -> dict:
    """The environment of a ``grading.worker`` process: the course's tools first on PATH, and
    the graded kernel spec (`grading.kernel`) first on JUPYTER_PATH (``jupyter``)."""
    write_kernelspec(jupyter)
    env = tool_env()
    env["JUPYTER_PATH"] = str(jupyter)
    env["JUPYTER_RUNTIME_DIR"] = str(jupyter / "runtime")
    env["MALLOC_ARENA_MAX"] = "2"
    return env


def grade_folder(
    submissions: Path,
    out: Path,
    jobs: int | None = None,
    step_timeout: float = 8.0,
    assignments=tuple(ASSIGNMENTS),
    progress=sys.stderr,
    sandbox: bool = True,
    scheduler: str | None = None,
    security=None,
    resume: bool = False,
    announce: str | None = None,
    copy_check: bool = True,
) -> dict:
    """Run the whole pipeline; return a summary dict (also written as ``OUT/summary.json``).

    ``sandbox=False`` (``gmm-grade --no-sandbox``) runs student code without bubblewrap, under
    the limits only; the summary and grades.csv say so. ``scheduler`` (a Dask scheduler's
    address; ``security``: a `distributed.Security` for ``tls://``) grades on that cluster
    (`grading.distributed`; ``announce``: see `grading.distributed.grade_on_cluster`) instead of
    local processes. ``resume=True`` keeps the students of ``OUT/journal.jsonl`` (an earlier run
    of the same assignments and sandbox setting that stopped) and grades only the others.
    ``copy_check=False`` skips copy detection (`grading.copying`; on by default).
    """
    t0 = time.monotonic()
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sandbox_name = "bubblewrap" if sandbox else NO_SANDBOX
    header = {"assignments": list(assignments), "sandbox": sandbox_name}
    kept = _resumed(out, header) if resume else {}
    # A cluster's workers probe their own sandbox (`grading.distributed.GradingPlugin`).
    isolation = prepare_isolation(out, sandbox) if scheduler is None else None
    course = out / "course"
    print(f"preparing the course in {course} (nbgrader generate_assignment) ...", file=progress)
    generate(course, assignments)
    sources = {a: Course(course).source_notebook(a) for a in assignments}
    work = out / "work"
    students, problems = collect(submissions, work, assignments, keep=frozenset(kept))
    kept = {s: rs for s, rs in kept.items() if s in students}
    where = f"the cluster at {scheduler}" if scheduler else f"{jobs or default_jobs()} processes"
    print(
        f"collected {len(students)} students from {submissions}; "
        + (f"{len(kept)} graded already ({journal.JOURNAL}); " if resume else "")
        + f"grading {len(students) - len(kept)} on {where}",
        file=progress,
    )
    feedback = out / "feedback"
    if feedback.exists() and not resume:
        shutil.rmtree(feedback)
    template = empty_copy(course, work / ".gradebook-template.db")
    job_list = [
        {
            "student": s,
            "root": str(work / s),
            "course": str(course),
            "gradebook": str(template),
            "feedback": str(feedback),
            "step_timeout": step_timeout,
            "isolation": isolation,
            "assignments": [a for a, p in found.items() if p is not None] or [],
        }
        for s, found in students.items()
        if s not in kept
    ]
    results: dict[str, list] = dict(kept)
    done = [0]
    log = journal.Journal(out, header, resume=resume)

    def on_done(job, ok, note):
        done[0] += 1
        path = Path(job["root"]) / "result.json"
        student = job["student"]
        if ok and path.exists():
            results[student] = json.loads(path.read_text())
        else:
            error = Path(job["root"], "worker-error.txt")
            reason = note or (error.read_text()[-300:] if error.exists() else "no result")
            results[student] = [
                {
                    "student": student,
                    "assignment": a,
                    "status": "grader-error",
                    "parts": [],
                    "flags": [reason],
                }
                for a in job["assignments"]
            ]
        log.add(student, results[student])
        text = ", ".join(f"{r['assignment']} {_score(r)}" for r in results[student])
        print(
            f"[{done[0]:>{len(str(len(job_list)))}}/{len(job_list)}] "
            f"{_fmt_elapsed(time.monotonic() - t0)} elapsed  {student}: {text}",
            file=progress,
            flush=True,
        )

    try:
        if scheduler is not None:
            from grading.distributed import grade_on_cluster

            grade_on_cluster(
                job_list,
                scheduler,
                course,
                template,
                sandbox,
                on_done,
                progress,
                security=security,
                announce=announce,
            )
        elif job_list:
            with open(out / "grading.log", "wb") as worker_log:
                env = worker_env(out / "jupyter")
                run_workers(job_list, jobs or default_jobs(), env, worker_log, on_done)
    finally:
        log.close()
    (out / RESULTS).write_text(
        json.dumps(
            {
                "assignments": list(assignments),
                "students": sorted(students),
                "problems": problems,
                "results": results,
                "sandbox": sandbox_name,
            },
            indent=1,
        )
    )
    record(course, work, results)
    apply_hand_scores(results, hand_scores(course))  # marks kept from an earlier run
    if copy_check:  # OUT/copying.csv and .html; export puts the matches on the review list
        copying.copy_report(out, students, assignments)
    else:
        (out / copying.CSV_NAME).unlink(missing_ok=True)
    rows = export(out, students, results, sources, problems, sandbox_name)
    summary = {
        "students": len(students),
        "seconds": round(time.monotonic() - t0, 1),
        "sandbox": sandbox_name,
        "needs_review": rows["review"],
        "failures": rows["failures"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print_summary(summary, out, progress)
    return summary


def _resumed(out: Path, header: dict) -> dict[str, list]:
    """The results an earlier, interrupted run of the same settings left in its journal."""
    try:
        earlier, results = journal.read(out)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"nothing to resume in {out}: {journal.JOURNAL} is missing (grade without --resume)"
        ) from None
    for key, value in header.items():
        if earlier.get(key) != value:
            raise ValueError(
                f"{journal.path(out)} was graded with {key} = {earlier.get(key)}, not {value}: "
                "resume with the same settings, or grade again without --resume"
            )
    return results


def update(out: Path, progress=sys.stderr) -> dict:
    """Fold the marks given by hand (formgrader, ``OUT/course/gradebook.db``) into the CSVs and
    the feedback pages of an earlier run in ``out``; nothing is regraded."""
    out = Path(out).resolve()
    saved = out / RESULTS
    if not saved.is_file():
        raise FileNotFoundError(
            f"{out} holds no graded run ({RESULTS} is missing): run "
            f"gmm-grade SUBMISSIONS --out {out} first"
        )
    run = json.loads(saved.read_text())
    course, work = out / "course", out / "work"
    sources = {a: Course(course).source_notebook(a) for a in run["assignments"]}
    results = run["results"]
    changed = apply_hand_scores(results, hand_scores(course))
    rows = export(
        out,
        run["students"],
        results,
        sources,
        [tuple(p) for p in run["problems"]],
        run.get("sandbox", "bubblewrap"),
    )
    secret = course_secret(course)
    for student, rs in results.items():
        for r in rs:
            if was_graded(r):
                a = r["assignment"]
                write_feedback(
                    Course(work / student).graded_notebook(student, a),
                    sources[a],
                    r,
                    feedback_page(out / "feedback", student, a),
                    secret,
                )
    print(
        f"{changed} part(s) scored by hand in {Course(course).gradebook}; rewrote grades.csv, "
        "parts.csv, needs_review.csv, failures.txt and the feedback pages",
        file=progress,
    )
    return {"hand_scored": changed, "needs_review": rows["review"]}


def _score(result):
    auto = [p for p in result.get("parts", []) if p["kind"] == "auto"]
    if not auto:
        return result.get("status", "?")
    got = sum(p["points"] or 0 for p in auto)
    flag = "" if result.get("status") == "ok" and not result.get("flags") else " (review)"
    return f"{got:g}/{sum(p['max_points'] for p in auto):g}{flag}"


GRADES_HEADER = [
    "student_id",
    "assignment",
    "status",
    "autograded",
    "autograded_max",
    "manual",
    "manual_max",
    "needs_review",
    "flagged",
    "review",
    "sandbox",
]
PARTS_HEADER = [
    "student_id",
    "assignment",
    "grade_id",
    "kind",
    "points",
    "max_points",
    "kernel_points",
    "recheck",
    "flagged",
    "review",
    "message",
]


def _fmt(points) -> str:
    return "pending" if points is None else f"{points:g}"


def _grade_row(student, assignment, r, cells, sandbox) -> list:
    """One grades.csv row (before the per-part columns)."""
    auto = [p for p in r["parts"] if p["kind"] == "auto"]
    manual = [p for p in r["parts"] if p["kind"] == "manual"]
    manual_pts = (
        "pending"
        if any(p["points"] is None for p in manual)
        else f"{sum(p['points'] for p in manual):g}"
    )
    auto_max = sum(points for _, points, kind in cells if kind == "auto")
    manual_max = sum(points for _, points, kind in cells if kind == "manual")
    # a submission the grader could not grade has no score, not a 0
    got = f"{sum(p['points'] or 0 for p in auto):g}" if auto else ""
    return [
        student,
        assignment,
        r["status"],
        got,
        f"{auto_max:g}",
        manual_pts,
        f"{manual_max:g}",
        "yes" if _needs_review(r) else "no",
        "; ".join(p["grade_id"] for p in r["parts"] if p.get("flagged")),
        "; ".join(p["grade_id"] for p in r["parts"] if p.get("review") and not p.get("flagged")),
        sandbox,
    ]


def _part_row(student, assignment, p) -> list:
    kernel = "" if p.get("kernel_points") is None else f"{p['kernel_points']:g}"
    return [
        student,
        assignment,
        p["grade_id"],
        p["kind"],
        _fmt(p["points"]),
        f"{p['max_points']:g}",
        kernel,
        p.get("recheck") or "",
        p.get("flagged", ""),
        p.get("review", ""),
        p.get("message", ""),
    ]


def _needs_review(r) -> bool:
    return bool(r.get("flags")) or r["status"] != "ok"


def _lost_points(r, p) -> bool:
    return (
        p["kind"] == "auto"
        and p["points"] is not None
        and p["points"] < p["max_points"]
        and r["status"] != "missing"
    )


def export(out, students, results, sources, problems, sandbox="bubblewrap"):
    """Write grades.csv, parts.csv, needs_review.csv and failures.txt; return the review list
    and the failure counts."""
    cells = {a: graded_cells(nb) for a, nb in sources.items()}
    all_parts = [g for a in sources for g, _, _ in cells[a]]
    by_key = {(student, r["assignment"]): r for student, rs in results.items() for r in rs}
    # What collect found wrong in a student's folder is said on the student's "missing" rows
    # (one row per student and assignment); only folders it could not take get rows of their own.
    why = {(s, a): reason for s, a, reason in problems if s in students}
    grade_rows, part_rows, review = [], [], []
    failures, examples = Counter(), {}
    for student in sorted(students):
        for assignment in sources:
            r = by_key.get((student, assignment))
            if r is None or r["status"] == "missing":
                reason = why.get((student, assignment)) or why.get((student, ""), "")
                r = missing(student, assignment, sources[assignment], reason)
            parts = {p["grade_id"]: p for p in r["parts"]}
            grade_rows.append(
                _grade_row(student, assignment, r, cells[assignment], sandbox)
                + ["" if g not in parts else _fmt(parts[g]["points"]) for g in all_parts]
            )
            part_rows += [_part_row(student, assignment, p) for p in r["parts"]]
            for p in r["parts"]:
                if _lost_points(r, p):
                    failures[p["grade_id"]] += 1
                    examples.setdefault(p["grade_id"], f"{student}: {p.get('message')}")
            if _needs_review(r):
                review.append(
                    {
                        "student_id": student,
                        "assignment": assignment,
                        "status": r["status"],
                        "reasons": "; ".join(r.get("flags", []))[:1000],
                    }
                )
    review += [
        {"student_id": student, "assignment": assignment, "status": "collect", "reasons": reason}
        for student, assignment, reason in problems
        if student not in students
    ]
    review += copying.review_rows(out)  # status "copying": matches in OUT/copying.csv
    _write_csv(out / "grades.csv", GRADES_HEADER + all_parts, grade_rows)
    _write_csv(out / "parts.csv", PARTS_HEADER, part_rows)
    _write_csv(
        out / "needs_review.csv",
        ["student_id", "assignment", "status", "reasons"],
        [list(r.values()) for r in review],
    )
    lines = [
        f"{gid}: {n} submission(s) lost points, e.g. {examples[gid]}"
        for gid, n in failures.most_common()
    ]
    (out / "failures.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    return {"review": review, "failures": dict(failures)}


def _write_csv(path: Path, header: list, rows: list) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def print_summary(summary, out, stream):
    print(
        f"\ngraded {summary['students']} students in {summary['seconds']:.1f} s "
        f"(student code sandboxed: {summary['sandbox']})",
        file=stream,
    )
    print("failures per test (submissions that lost points):", file=stream)
    for gid, n in sorted(summary["failures"].items(), key=lambda kv: -kv[1]):
        print(f"  {n:>4}  {gid}", file=stream)
    if summary["needs_review"]:
        print(f"needs a human look ({len(summary['needs_review'])}):", file=stream)
        for r in summary["needs_review"]:
            print(
                f"  {r['student_id']} {r['assignment']} [{r['status']}] {r['reasons'][:160]}",
                file=stream,
            )
    print(
        f"grades: {out / 'grades.csv'}  parts: {out / 'parts.csv'}  review: "
        f"{out / 'needs_review.csv'}  feedback: {out / 'feedback'}",
        file=stream,
    )
