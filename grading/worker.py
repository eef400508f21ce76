"""Grade one student: run their notebook for feedback, score every part by the re-check.

`grade_student(job)` does the work; ``python -m grading.worker`` is the long-lived process the
pipeline starts once per core: it reads one JSON job per line on stdin and answers
``done <student>`` on stdout. Each student gets fresh processes for everything that runs their
code (a sandboxed kernel per notebook, sandboxes for the re-check).

No hidden-test material ever reaches a process that runs student code:
1. `grading.student_run` executes the submitted notebook with the *release's* test cells
   (visible tests only) in the sandboxed kernel, the explorer's statements set aside
   (`grading.display_only`: they only draw, and gmmlib is not mounted in assignment 1); its
   outputs make the feedback page, and its visible-test outcome is shown to instructors
   (``kernel_points``), never graded.
2. `grading.recheck` runs the student's answer cells in another sandbox, calls their functions
   on the spec's inputs (`grading.checks`) and judges the returned numbers here, outside it.
3. `combine` gives each test cell its points from the re-check alone:
   - the answer cell it depends on (or any cell the student added) holds a *proven* violation
     (`grading.scan.proven`: patching numpy, builtins or IPython, or gmmlib in assignment 1)
     -> 0 and the submission is ``flagged``;
   - the re-check fails -> 0, with the spec's message;
   - otherwise full points.
   Suspicious but unproven code (``__import__``, ``globals()``) and what the supervisors saw
   keep the points earned: the part's ``review`` note and the submission's ``review`` status
   ask for a human look.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import nbformat

from grading.cells import grade_id
from grading.checks import spec
from grading.classify import classify
from grading.course import CODE_STUB, use_tool_env
from grading.display_only import neutralise_notebook, restore_notebook
from grading.feedback import write_feedback
from grading.isolation import Isolation, package_folders
from grading.kernel import SETTINGS, settings
from grading.layout import (
    Course,
    RunFolder,
    course_secret,
    feedback_page,
    graded_cells,
    missing,
    printable,
)
from grading.recheck import recheck_notebook
from grading.records import RUN_STATUS, Part, Result, Status, grader_error
from grading.scan import proven, reads_hidden_tests
from grading.student_run import WALL_BACKSTOP, run_notebook
from grading.visible import visible_notebook
from grading.watch import RECHECK_WALL_FLOOR, SubmissionBudget


def blank_answers(submitted: nbformat.NotebookNode | None, source_nb) -> list[str]:
    """grade_ids of manually graded answers the student left as the release's stub (or deleted)."""
    manual = {gid for gid, _, kind in graded_cells(source_nb) if kind == "manual"}
    if submitted is None:  # unreadable: every answer counts as missing
        return sorted(manual)
    answered = set()
    for cell in submitted.cells:
        gid = grade_id(cell)
        text = cell.source.strip()
        if gid in manual and text and text not in ("YOUR ANSWER HERE", CODE_STUB):
            answered.add(gid)
    return sorted(manual - answered)


def visible_outcomes(executed: nbformat.NotebookNode | None, source_nb) -> dict:
    """{grade_id: points} of each test cell's *visible* tests in the student's run (0 if the
    cell raised or wrote to stderr; absent if it did not run). Information, never a grade."""
    points = {gid: p for gid, p, kind in graded_cells(source_nb) if kind == "auto"}
    out = {}
    for cell in executed.cells if executed is not None else []:
        gid = grade_id(cell)
        if gid not in points or cell.cell_type != "code" or not cell.get("outputs"):
            if gid in points and cell.get("execution_count"):
                out[gid] = points[gid]
            continue
        failed = any(
            o.get("output_type") == "error"
            or (o.get("output_type") == "stream" and o.get("name") == "stderr")
            for o in cell.outputs
        )
        out[gid] = 0.0 if failed else points[gid]
    return out


def submission_status(recheck, observed, run_status: Status) -> Status:
    """`Status.FLAGGED` (a proven violation), `Status.REVIEW` (suspicious code, or what a
    supervisor saw), else the feedback run's status."""
    findings = recheck.get("findings", {})
    if any(proven(f) for found in findings.values() for f in found):
        return Status.FLAGGED
    if findings or observed:
        return Status.REVIEW
    return run_status


def combine(source_nb, recheck, visible: dict) -> list[Part]:
    """Final points per graded cell (the module docstring's rules)."""
    findings = recheck.get("findings", {})
    spec_depends = recheck.get("depends", {})
    tainted_all = [name for name in findings if name.startswith("added cell")]
    parts = []
    for gid, points, kind in graded_cells(source_nb):
        part = Part(gid, points, kind, kernel_points=visible.get(gid))
        if kind == "manual":
            # An answer left as the release's stub gets 0; anything else waits for a human.
            blank = gid in recheck.get("blank_answers", ())
            part.points = 0.0 if blank else None
            part.message = "no answer" if blank else "to be graded by hand"
            parts.append(part)
            continue
        verdict = recheck["verdicts"].get(
            gid, {"passed": False, "status": "missing", "message": "not re-checked"}
        )
        part.recheck = verdict["status"]
        names = [n for n in list(spec_depends.get(gid, ())) + tainted_all if n in findings]
        bad = [
            f"{n}: {'; '.join(f for f in findings[n] if proven(f))}"
            for n in names
            if any(proven(f) for f in findings[n])
        ]
        doubtful = [
            f"{n}: {'; '.join(f for f in findings[n] if not proven(f))}"
            for n in names
            if not all(proven(f) for f in findings[n])
        ]
        part.review = " | ".join(doubtful)[:500]
        if bad:
            part.points, part.flagged = 0.0, " | ".join(bad)[:500]
            part.message = "no points: the code changes the tests' tools or uses the reference"
        elif not verdict["passed"]:
            part.points, part.message = 0.0, verdict["message"] or verdict["status"]
        else:
            part.points = points
        if part.review and not bad:
            note = f"points kept; to be looked at by a human: {part.review}"
            part.message = f"{part.message}; {note}" if part.message else note
        parts.append(part)
    return parts


def _read(path: Path) -> nbformat.NotebookNode | None:
    try:
        return nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable notebook is the re-check's to report
        return None


def _recheck_flags(recheck) -> list[str]:
    """The re-check's reasons for a human look, in words."""
    flags = []
    if not recheck.get("readable", True):
        flags.append(recheck["error"])
    for name, found in recheck.get("findings", {}).items():
        sure = [f for f in found if proven(f)]
        unsure = [f for f in found if not proven(f)]
        if sure:
            flags.append(f"flagged {name}: {'; '.join(sure)}"[:400])
        if unsure:
            flags.append(f"to review {name} (points kept): {'; '.join(unsure)}"[:400])
    for gid, verdict in recheck["verdicts"].items():
        message = verdict.get("message") or ""
        if verdict["status"] in ("timeout", "crashed"):
            flags.append(f"re-check {verdict['status']} in {gid}")
        elif verdict["status"] == "not run":
            flags.append(f"re-check of {gid} {message.partition(': ')[2] or 'not run'}")
        elif "MemoryError" in message:
            flags.append(f"re-check hit the memory limit in {gid}")
        elif "BlockingIOError" in message or "Resource temporarily unavailable" in message:
            flags.append(f"re-check hit the process limit in {gid}")
    for name, problem in recheck.get("cell_problems", {}).items():
        if problem.startswith(("timeout", "crashed")):
            flags.append(f"cell {name} {problem}"[:300])
    return flags


def grade_notebook(job, assignment, runtime: Path | None, isolation: Isolation) -> dict:
    """Grade one (student, assignment); return its result dict (`Result.to_dict`)."""
    student, folder = job["student"], RunFolder(Path(job["run"]))
    root = folder.student(student)
    course = Path(job["course"])
    source_nb = Course(course).source_notebook(assignment)  # points and ids: grader side only
    submitted_path = Course(root).notebook("submitted", assignment, student)
    if not submitted_path.exists():
        return missing(student, assignment, source_nb)
    result = Result(student, assignment)
    uid = isolation.code_uid
    submitted = _read(submitted_path)
    release = nbformat.read(Course(course).notebook("release", assignment), as_version=4)
    # One time budget for the feedback run and the re-check together (`SubmissionBudget`).
    budget = SubmissionBudget()
    budget.kernel.wall = min(WALL_BACKSTOP, budget.wall_left())
    # 1. The student's run, for feedback: the release's visible tests only.
    hidden = package_folders(spec(assignment).blocked)  # not even mounted for the kernel
    os.environ[SETTINGS] = settings(isolation, root / "scratch" / assignment / "kernel", hidden)
    executed, run = None, None
    if submitted is not None:
        visible = visible_notebook(submitted, release)
        drawn = neutralise_notebook(visible)  # the explorer only draws: not run here
        log = root / f"kernel-{assignment}.log"
        executed, run = run_notebook(visible, log, runtime, uid, budget.kernel)
        restore_notebook(executed, drawn)
        if run.status != "ok":
            result.flags.append(f"{RUN_STATUS[run.status].value}: {run.detail or run.status}")
        result.observed += [f"kernel: {o}" for o in run.observed]
    graded = Course(root).notebook("autograded", assignment, student)
    graded.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(executed if executed is not None else release, graded)
    # 2. The re-check: every graded part's verdict, judged outside the student's processes.
    started = time.perf_counter()
    recheck = recheck_notebook(
        submitted_path,
        Course(course).notebook("source", assignment),
        assignment,
        root / "recheck" / assignment,
        job.get("step_timeout", 8.0),
        isolation=isolation,
        budget=budget.for_recheck(),
        wall=budget.wall_left(RECHECK_WALL_FLOOR),
    )
    recheck["depends"] = {c.grade_id: c.depends for c in spec(assignment).checks}
    recheck["blank_answers"] = blank_answers(submitted, source_nb)
    result.flags += _recheck_flags(recheck)
    result.observed += [f"re-check: {o}" for o in sandbox_observations(recheck["observed"])]
    # A cell that ended the re-check's process (seen from outside: its exit status).
    result.observed += [
        f"re-check: cell {name} {problem}"[:300]
        for name, problem in recheck.get("cell_problems", {}).items()
        if problem.startswith("crashed")
    ]
    if result.observed:
        result.flags.append("the sandbox observed: " + "; ".join(result.observed))
    # A cell that reaches for the (former) hidden-test names never shows its output.
    result.withhold_outputs = sorted(
        name
        for name, found in recheck.get("findings", {}).items()
        if any(reads_hidden_tests(f) for f in found)
    )
    # 3. Points from the re-check alone.
    result.parts = combine(source_nb, recheck, visible_outcomes(executed, source_nb))
    run_status = RUN_STATUS[run.status] if run is not None else Status.OK
    result.status = submission_status(recheck, result.observed, run_status)
    # Blank (the release unchanged) or broken (nothing ran): a status and a reason of their own.
    result.status, why = classify(
        result.status, submitted, release, source_nb, recheck, result.parts, assignment
    )
    result.flags += [why] if why else []
    # Messages quote the student's own exception texts: no terminal escapes into the CSVs,
    # failures.txt or a terminal that prints them.
    result.flags = [printable(f) for f in result.flags]
    for part in result.parts:
        part.message, part.review = printable(part.message), printable(part.review)
    result.seconds = {
        "kernel": run.seconds if run is not None else 0.0,
        "recheck": round(time.perf_counter() - started, 2),
    }
    result.budget = budget.used()
    out = feedback_page(folder.feedback, student, assignment)
    data = result.to_dict()
    withheld = write_feedback(graded, source_nb, data, out, course_secret(course))
    if withheld:
        data["status"] = Status.FLAGGED.value
        data["flags"].append(
            "output quoting the hidden tests was withheld from the feedback "
            f"(cells: {', '.join(sorted(set(withheld)))})"
        )
    data["feedback"] = folder.relative(out)  # the coordinator's RunFolder resolves it
    return data


def sandbox_observations(observed: dict) -> list[str]:
    """What the re-check's sandbox saw, in words for the review list (empty: nothing)."""
    notes = list(observed.get("events", []))  # bounded by kind (grading.observer.PER_KIND)
    if observed.get("survivors"):
        notes.append(
            f"{observed['survivors']} process(es) still running when the re-check "
            "ended (killed with the sandbox)"
        )
    return notes


def slot() -> int:
    """This worker's slot among the run's (its sandboxes' uid: `Isolation.for_slot`)."""
    return int(os.environ.get("GMM_WORKER_SLOT", "0"))


def grade_student(job) -> dict:
    """Grade every assignment of one student; write and return ``result.json``'s content."""
    root = RunFolder(Path(job["run"])).student(job["student"])
    isolation = Isolation.from_dict(job["isolation"]).for_slot(slot())
    # No gradebook and no source notebook in the student's folder: nothing of the hidden
    # tests sits next to their code (the re-check reads the sources from the course folder).
    results = []
    # The kernel's connection file and IPC sockets: a folder of this student's own (other
    # kernels' keys stay invisible), short enough for a Unix socket path (<= 107 bytes).
    runtime = Path(tempfile.mkdtemp(prefix="gmm-", dir="/tmp"))
    uid = isolation.code_uid
    if uid is not None:
        os.chown(runtime, uid, uid)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)
    tempfile.tempdir = str(runtime)  # jupyter_client puts nbclient's connection files there
    try:
        for assignment in job["assignments"]:
            try:
                ipc = runtime if isolation.sandbox else None
                results.append(grade_notebook(job, assignment, ipc, isolation))
            except Exception:  # noqa: BLE001 - one broken notebook must not stop the others
                why = "grader error: " + traceback.format_exc(limit=3)[-600:]
                results.append(grader_error(job["student"], assignment, why))
    finally:
        tempfile.tempdir = None
        shutil.rmtree(runtime, ignore_errors=True)
    (root / "result.json").write_text(json.dumps(results, indent=1))
    return {"student": job["student"], "results": results}


def main():
    use_tool_env()

    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            grade_student(job)
        except Exception:  # noqa: BLE001
            where = RunFolder(Path(job["run"])).student(job["student"])
            (where / "worker-error.txt").write_text(traceback.format_exc())
        print(f"done {job['student']}", flush=True)


if __name__ == "__main__":
    main()
