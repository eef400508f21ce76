"""Grade one student: autograde in their kernel, re-check outside it, combine, write feedback.

`grade_student(job)` does the work; ``python -m grading.worker`` is the long-lived process the
pipeline starts once per core: it reads one JSON job per line on stdin and answers
``done <student>`` on stdout, so nbgrader is imported once per core, not once per student. Each
student still gets fresh processes for everything that runs their code (an nbgrader kernel per
notebook, sandboxes for the re-check), and a private copy of the gradebook (no SQLite locks).

How a test cell's points are decided (the grade follows the re-check):
- the answer cell it depends on (or any cell the student added) holds a *proven* violation
  (`grading.scan.proven`: patching of numpy, builtins or IPython, or gmmlib in assignment 1)
  -> 0 and the submission is ``flagged``;
- the re-check outside the kernel fails -> 0 (with its message);
- otherwise the kernel's score (nbgrader's), or, if the kernel never finished the notebook
  (timeout, dead kernel), the re-check's points, and the submission goes on the review list.
Suspicious but unproven code (``__import__``, ``globals()``, ``setattr`` on an object) and what
the sandbox observed keep the points earned: the part's ``review`` note and the submission's
``review`` status give the reason for a human look.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import nbformat

from grading.course import ASSIGNMENTS, configure, db_url, use_tool_env
from grading.kernel import SETTINGS
from grading.layout import (
    Course,
    Part,
    course_secret,
    feedback_page,
    graded_cells,
    missing,
    printable,
)
from grading.recheck import recheck_notebook
from grading.scan import proven, reads_hidden_tests


def _nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def blank_answers(submitted_path, source_nb):
    """grade_ids of manually graded answers the student left as the release's stub (or deleted)."""
    from grading.course import CODE_STUB

    manual = {gid for gid, _, kind in graded_cells(source_nb) if kind == "manual"}
    try:
        cells = nbformat.read(submitted_path, as_version=4).cells
    except Exception:  # noqa: BLE001 - unreadable: every answer counts as missing
        return sorted(manual)
    answered = set()
    for cell in cells:
        gid = _nbgrader(cell).get("grade_id")
        text = cell.source.strip()
        if gid in manual and text and text not in ("YOUR ANSWER HERE", CODE_STUB):
            answered.add(gid)
    return sorted(manual - answered)


#: A traceback's last line, e.g. "RuntimeError: Kernel didn't respond in 60 seconds".
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Exit)\b.*$", re.M)


def _classify(result):
    """(status, detail) of one nbgrader autograde result: "ok" or a failure kind."""
    if result.get("success"):
        return "ok", ""
    text = (result.get("log") or "") + (result.get("error") or "")
    if "CellTimeoutError" in text or "timed out" in text.lower():
        return "kernel-timeout", "a cell ran past the time limit and ignored the interrupt"
    if "DeadKernelError" in text or "Kernel died" in text or "kernel died" in text:
        return "kernel-died", "the kernel died while running the notebook"
    # nbgrader ends its log with "see the error log"; the cause is the traceback's last line.
    causes = _EXCEPTION_LINE.findall(text)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    detail = causes[-1] if causes else (lines[-1] if lines else "unknown autograde error")
    return "autograde-error", detail.strip()[:300]


def _autograde(api, assignment, student, log_dir: Path, attempts: int = 2):
    """Run nbgrader autograde; return (status, detail, notes).

    A timeout or a dead kernel is the student's code and is reported at once. Any other
    failure (the kernel did not start, a port was taken: the grading machine, not the student)
    is retried once; every failed attempt's full log is kept as
    ``<log_dir>/autograde-<assignment>-<attempt>.log`` and named in ``notes``.
    """
    notes = []
    for attempt in range(1, attempts + 1):
        result = api.autograde(assignment, student, force=True, create=True)
        status, detail = _classify(result)
        if status == "ok":
            return status, detail, notes
        log = log_dir / f"autograde-{assignment}-{attempt}.log"
        log.write_text((result.get("log") or "") + "\n" + (result.get("error") or ""))
        notes.append(f"autograde attempt {attempt}: {status}: {detail} (log: {log})")
        if status != "autograde-error":
            break
    return status, detail, notes


def _kernel_scores(root, assignment, student):
    """{grade_id: score} from this student's gradebook, and {grade_id: one-line error}."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(db_url(root)) as gb:
        nb = gb.find_submission_notebook(Path(ASSIGNMENTS[assignment]).stem, assignment, student)
        for grade in nb.grades:
            scores[grade.name] = grade.auto_score  # the kernel's, never a hand mark
    errors = {}
    autograded = Course(root).notebook("autograded", assignment, student)
    if autograded.exists():
        for cell in nbformat.read(autograded, as_version=4).cells:
            gid = _nbgrader(cell).get("grade_id")
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error" and gid:
                    errors[gid] = f"{output.get('ename')}: {str(output.get('evalue'))[:300]}"
                elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                    errors.setdefault(gid, "wrote to stderr: " + output.get("text", "")[:200])
    return scores, errors


#: A part's review note when the notebook passed it in the kernel and the re-check failed it.
KERNEL_CHANGED = "passed in the notebook but failed the re-check"


def kernel_changed(parts) -> list[str]:
    """The parts the notebook passed in the kernel and the re-check failed (`combine`'s note)."""
    return [p["grade_id"] for p in parts if KERNEL_CHANGED in (p.get("review") or "")]


def submission_status(recheck, changed, observed, kernel_status) -> str:
    """ "flagged" (a proven violation), "review" (for a human: suspicious code, what the sandbox
    saw, ``changed`` parts only the re-check failed — whatever their points), else the kernel's
    status."""
    findings = recheck.get("findings", {})
    if any(proven(f) for found in findings.values() for f in found):
        return "flagged"
    if findings or observed or changed:
        return "review"
    return kernel_status


def combine(source_nb, recheck, kernel_status, kernel_scores, kernel_errors):
    """Final points per graded cell: a list of `Part` dicts (the module docstring's rules)."""
    findings = recheck.get("findings", {})
    spec_depends = recheck.get("depends", {})
    tainted_all = [name for name in findings if name.startswith("added cell")]
    parts = []
    for gid, points, kind in graded_cells(source_nb):
        part = Part(gid, points, kind, kernel_points=kernel_scores.get(gid))
        if kind == "manual":
            # An answer left as the release's stub gets 0; anything else waits for a human.
            blank = gid in recheck.get("blank_answers", ())
            part.points = 0.0 if blank else None
            part.message = "no answer" if blank else "to be graded by hand"
            parts.append(part.to_dict())
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
        if (
            not bad
            and not verdict["passed"]
            and kernel_status == "ok"
            and kernel_scores.get(gid) is not None
            and float(kernel_scores[gid]) >= points
        ):
            # The kernel and the re-check run the same checks (grading.checks): a part the
            # notebook passed and the re-check failed means the kernel's state was changed.
            doubtful.append(
                f"{gid}: {KERNEL_CHANGED} (the kernel's tools or tests may have been changed)"
            )
        part.review = " | ".join(doubtful)[:500]
        if bad:
            part.points, part.flagged = 0.0, " | ".join(bad)[:500]
            part.message = "no points: the code changes the tests' tools or uses the reference"
        elif not verdict["passed"]:
            part.points, part.message = 0.0, verdict["message"] or verdict["status"]
        elif kernel_status != "ok" or kernel_scores.get(gid) is None:
            part.points = points
            part.message = "scored by the re-check (the notebook did not finish in the kernel)"
        else:
            part.points = min(float(kernel_scores[gid]), points)
            if part.points < points:
                part.message = "failed in the notebook: " + kernel_errors.get(gid, "(no output)")
        if part.review and not bad:
            note = f"points kept; to be looked at by a human: {part.review}"
            part.message = f"{part.message}; {note}" if part.message else note
        parts.append(part.to_dict())
    return parts


def grade_notebook(api, job, assignment):
    """Grade one (student, assignment); return its result dict."""
    student, root = job["student"], Path(job["root"])
    course = Path(job["course"])
    source_path = Course(course).notebook("source", assignment)
    source_nb = nbformat.read(source_path, as_version=4)
    submitted = Course(root).notebook("submitted", assignment, student)
    if not submitted.exists():
        return missing(student, assignment, source_nb)
    result = {"student": student, "assignment": assignment, "flags": [], "parts": []}
    started = time.perf_counter()
    isolation = job.get("isolation") or {"sandbox": False}
    os.environ[SETTINGS] = json.dumps(kernel_settings(isolation, root, course, student, assignment))
    kernel_status, detail, attempts = _autograde(api, assignment, student, root)
    kernel_seconds = time.perf_counter() - started
    if attempts:
        result["autograde_attempts"] = attempts
        print(f"{student}/{assignment}: " + "; ".join(attempts), file=sys.stderr, flush=True)
    scores, errors = {}, {}
    if kernel_status == "ok":
        scores, errors = _kernel_scores(root, assignment, student)
    else:
        where = f" (full log: {root}/autograde-{assignment}-*.log)"
        result["flags"].append(f"{kernel_status}: {detail}" + where)
    started = time.perf_counter()
    recheck = recheck_notebook(
        submitted,
        source_path,
        assignment,
        root / "recheck" / assignment,
        job.get("step_timeout", 8.0),
        isolation=isolation,
    )
    recheck_seconds = time.perf_counter() - started
    from grading.checks import spec

    recheck["depends"] = {c.grade_id: c.depends for c in spec(assignment).checks}
    recheck["blank_answers"] = blank_answers(submitted, source_nb)
    if not recheck.get("readable", True):
        result["flags"].append(recheck["error"])
    # A cell that can print the hidden tests never shows its output in the feedback page.
    result["withhold_outputs"] = sorted(
        name
        for name, found in recheck.get("findings", {}).items()
        if any(reads_hidden_tests(f) for f in found)
    )
    for name, found in recheck.get("findings", {}).items():
        sure = [f for f in found if proven(f)]
        unsure = [f for f in found if not proven(f)]
        if sure:
            result["flags"].append(f"flagged {name}: {'; '.join(sure)}"[:400])
        if unsure:
            result["flags"].append(f"to review {name} (points kept): {'; '.join(unsure)}"[:400])
    for gid, verdict in recheck["verdicts"].items():
        message = verdict.get("message") or ""
        if verdict["status"] in ("timeout", "crashed"):
            result["flags"].append(f"re-check {verdict['status']} in {gid}")
        elif "MemoryError" in message:
            result["flags"].append(f"re-check hit the memory limit in {gid}")
        elif "BlockingIOError" in message or "Resource temporarily unavailable" in message:
            result["flags"].append(f"re-check hit the process limit in {gid}")
    for name, problem in recheck.get("cell_problems", {}).items():
        if problem.startswith(("timeout", "crashed")):
            result["flags"].append(f"cell {name} {problem}"[:300])
    observed = sandbox_observations(recheck.get("observed", {}))
    if observed:
        result["flags"].append("the sandbox observed: " + "; ".join(observed))
    result["parts"] = combine(source_nb, recheck, kernel_status, scores, errors)
    changed = kernel_changed(result["parts"])
    if changed:
        result["flags"].append(f"{KERNEL_CHANGED}: {', '.join(changed)}"[:400])
    result["status"] = submission_status(recheck, changed, observed, kernel_status)
    # Messages quote the student's own exception texts: no terminal escapes into the CSVs,
    # failures.txt or a terminal that prints them.
    result["flags"] = [printable(f) for f in result["flags"]]
    for part in result["parts"]:
        part["message"], part["review"] = printable(part["message"]), printable(part["review"])
    result["seconds"] = {"kernel": round(kernel_seconds, 2), "recheck": round(recheck_seconds, 2)}
    from grading.feedback import write_feedback

    out = feedback_page(Path(job["feedback"]), student, assignment)
    withheld = write_feedback(
        Course(root).graded_notebook(student, assignment),
        source_nb,
        result,
        out,
        course_secret(course),
    )
    if withheld:
        result["status"] = "flagged"
        result["flags"].append(
            "output quoting the hidden tests was withheld from the feedback "
            f"(cells: {', '.join(sorted(set(withheld)))})"
        )
    result["feedback"] = str(out)
    return result


def sandbox_observations(observed: dict) -> list[str]:
    """What the re-check's sandbox saw, in words for the review list (empty: nothing)."""
    notes = list(observed.get("events", []))[:8]
    if observed.get("survivors"):
        notes.append(
            f"{observed['survivors']} process(es) still running when the re-check "
            "ended (killed with the sandbox)"
        )
    return notes


def kernel_settings(
    isolation: dict, root: Path, course: Path, student: str, assignment: str
) -> dict:
    """What `grading.kernel` needs to start this notebook's kernel: its scratch folder, what
    it may read (the release notebook, the student's own submission), uid and limits."""
    from grading.isolation import KERNEL_CPU, code_limits

    return {
        "sandbox": bool(isolation.get("sandbox")),
        "uid": isolation.get("uid"),
        "scratch": str(root / "scratch" / assignment / "kernel"),
        "readable": [
            str(Course(course).notebook("release", assignment)),
            str(Course(root).notebook("submitted", assignment, student)),
        ],
        "font_cache": isolation.get("font_cache"),
        "limits": code_limits(isolation.get("vm_peak"), KERNEL_CPU).to_json(),
    }


def make_api(root: Path, runtime: Path | None = None):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    config = Config()
    configure(config)
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url(root)
    config.Autograde.create_student = True
    if runtime is not None:
        # Unix sockets in the student's runtime folder: the sandboxed kernel has no network.
        # An absolute prefix: the default ("kernel-ipc") is relative to each side's cwd.
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(runtime / "kernel")
    return NbGraderAPI(config=config)


def grade_student(job) -> dict:
    """Grade every assignment of one student; write and return ``result.json``'s content."""
    root = Path(job["root"])
    course = Path(job["course"])
    isolation = dict(job.get("isolation") or {"sandbox": False})
    if isolation.get("uid_base") is not None:  # one uid per worker: see isolation.sandbox_uid
        isolation["uid"] = isolation["uid_base"] + int(os.environ.get("GMM_WORKER_SLOT", "0"))
    job = {**job, "isolation": isolation}
    # The assignments only, no other student's submission (see gradebook.empty_copy).
    shutil.copyfile(job.get("gradebook") or Course(course).gradebook, Course(root).gradebook)
    if not Course(root).sources.exists():
        os.symlink(Course(course).sources, Course(root).sources)
    results = []
    # The kernel's connection file and IPC sockets: a folder of this student's own (other
    # kernels' keys stay invisible), short enough for a Unix socket path (<= 107 bytes).
    runtime = Path(tempfile.mkdtemp(prefix="gmm-", dir="/tmp"))
    uid = isolation.get("uid") if isolation.get("sandbox") else None
    if uid is not None:
        os.chown(runtime, uid, uid)
    api = make_api(root, runtime if isolation.get("sandbox") else None)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)
    tempfile.tempdir = str(runtime)  # jupyter_client puts nbclient's connection files there
    try:
        for assignment in job["assignments"]:
            try:
                results.append(grade_notebook(api, job, assignment))
            except Exception:  # noqa: BLE001 - one broken notebook must not stop the others
                results.append(
                    {
                        "student": job["student"],
                        "assignment": assignment,
                        "status": "grader-error",
                        "parts": [],
                        "flags": ["grader error: " + traceback.format_exc(limit=3)[-600:]],
                    }
                )
    finally:
        tempfile.tempdir = None
        shutil.rmtree(runtime, ignore_errors=True)
    (root / "result.json").write_text(json.dumps(results, indent=1))
    return {"student": job["student"], "results": results}


def main():
    use_tool_env()
    import nbgrader.apps  # noqa: F401 - import once, before the first job

    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            grade_student(job)
        except Exception:  # noqa: BLE001
            Path(job["root"], "worker-error.txt").write_text(traceback.format_exc())
        print(f"done {job['student']}", flush=True)


if __name__ == "__main__":
    main()
