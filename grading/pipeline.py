"""The instructor's pipeline: a folder of submissions in, grades, feedback and a review list out.

`grade_folder` prepares the course (`grading.release.generate` into ``OUT/course``), collects
the uploads (`grading.collect`), grades each student in a worker process (`grading.runner`) or
on a Dask cluster (`grading.distributed`), journals each result as it arrives
(`grading.journal`, for ``--resume``), runs copy detection beside the grading
(`grading.copying`), then `finish` writes the class gradebook and the CSVs (`grading.export`).
`update` folds the marks given by hand in formgrader into an earlier run's CSVs and feedback.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from grading import copying, journal, probe
from grading.cgroups import sweep
from grading.collect import LAYOUTS, collect
from grading.course import ASSIGNMENTS
from grading.export import export, print_summary, score, write_json
from grading.feedback import write_feedback
from grading.gradebook import apply_hand_scores, hand_scores, record, was_graded
from grading.layout import Course, RunFolder, course_secret, feedback_page
from grading.records import grader_error
from grading.release import generate
from grading.runner import default_jobs, run_workers, worker_env

NO_SANDBOX = "none (--no-sandbox)"
INSECURE = "tcp:// without TLS (--insecure)"


def _fmt_elapsed(seconds):
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


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
    insecure: bool = False,
    copy_check: bool = True,
) -> dict:
    """Run the whole pipeline; return a summary dict (also written as ``OUT/summary.json``).

    The options are ``gmm-grade``'s (`grading.cli`): ``sandbox=False`` is ``--no-sandbox``,
    ``scheduler``/``security`` a Dask cluster (``announce``: see
    `grading.distributed.grade_on_cluster`), ``insecure`` allows ``tcp://``, ``resume`` keeps
    the students of ``OUT/journal.jsonl``; ``copy_check=False`` skips copy detection.
    """
    t0 = time.monotonic()
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    transport = check_transport(scheduler, insecure)
    run = RunFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    sandbox_name = "bubblewrap" if sandbox else NO_SANDBOX
    header = {"assignments": list(assignments), "sandbox": sandbox_name}
    kept = _resumed(out, header) if resume else {}
    # A cluster's workers probe their own sandbox (`grading.distributed.GradingPlugin`).
    isolation = probe.prepare(out, sandbox) if scheduler is None else None
    notes = {
        "sandbox": sandbox_name,
        "limits": isolation.limits if isolation else "probed on each worker",
        "transport": transport,
    }
    print(f"preparing the course in {run.course} (nbgrader generate_assignment) ...", file=progress)
    generate(run.course, assignments)
    sources = {a: Course(run.course).source_notebook(a) for a in assignments}
    students, problems = collect(submissions, run.work, assignments, keep=frozenset(kept))
    kept = {s: rs for s, rs in kept.items() if s in students}
    if not students:
        print(
            f"found no student in {submissions}; the layouts understood:\n{LAYOUTS}", file=progress
        )
    where = f"the cluster at {scheduler}" if scheduler else f"{jobs or default_jobs()} processes"
    print(
        f"collected {len(students)} students from {submissions}; "
        + (f"{len(kept)} graded already ({journal.JOURNAL}); " if resume else "")
        + f"grading {len(students) - len(kept)} on {where}",
        file=progress,
    )
    if run.feedback.exists() and not resume:
        shutil.rmtree(run.feedback)
    run.work.mkdir(parents=True, exist_ok=True)
    job_list = [
        {
            "student": s,
            "run": str(run.root),
            "course": str(run.course),
            "step_timeout": step_timeout,
            "isolation": isolation.to_dict() if isolation else None,
            "assignments": [a for a, p in found.items() if p is not None] or [],
        }
        for s, found in students.items()
        if s not in kept
    ]
    results: dict[str, list] = dict(kept)
    # Copy detection reads only the collected notebooks: it runs beside the grading, on the
    # CPU time the workers leave while they wait on their kernels and sandboxes.
    (run.root / copying.CSV_NAME).unlink(missing_ok=True)
    copies = ThreadPoolExecutor(max_workers=1) if copy_check else None
    t_grade = time.monotonic()
    phases = {"prepare_and_collect": t_grade - t0}
    report = copies.submit(_copy_report, run, students, assignments, phases) if copies else None
    done = [0]
    log = journal.Journal(out, header, resume=resume)

    def on_done(job, ok, note):
        done[0] += 1
        student = job["student"]
        results[student] = _result(job, ok, note)
        log.add(student, results[student])
        text = ", ".join(f"{r['assignment']} {score(r)}" for r in results[student])
        print(
            f"[{done[0]:>{len(str(len(job_list)))}}/{len(job_list)}] "
            f"{_fmt_elapsed(time.monotonic() - t0)} elapsed  {student}: {text}",
            file=progress,
            flush=True,
        )

    try:
        if scheduler is not None:
            from grading.distributed import grade_on_cluster  # dask: an optional dependency

            grade_on_cluster(
                job_list,
                scheduler,
                run.course,
                sandbox,
                on_done,
                progress,
                security=security,
                announce=announce,
            )
        elif job_list:
            with open(run.log, "wb") as worker_log:
                env = worker_env(run.jupyter)
                run_workers(job_list, jobs or default_jobs(), env, worker_log, on_done)
    finally:
        log.close()
        sweep()
        phases["grade"] = time.monotonic() - t_grade
        if copies is not None:
            copies.shutdown(wait=True)
        phases["copy_detection_after_grading"] = time.monotonic() - t_grade - phases["grade"]
    if report is not None:  # OUT/copying.csv and .html; export puts the matches on the review list
        try:
            report.result()
        except Exception as error:  # noqa: BLE001 - a report must not cost the class its grades
            (run.root / copying.CSV_NAME).unlink(missing_ok=True)
            notes["copying"] = f"copy detection failed: {type(error).__name__}: {error}"[:300]
    notes["phases"] = phases  # seconds of each step; finish adds "export"; summary.json shows them
    return finish(run, students, results, sources, problems, notes, t0, progress)


def _copy_report(run: RunFolder, students: dict, assignments, phases: dict) -> None:
    """`copying.copy_report` for the run, its seconds in ``phases["copy_detection"]``."""
    started = time.monotonic()
    copying.copy_report(run.root, students, assignments)
    phases["copy_detection"] = time.monotonic() - started


def check_transport(scheduler: str | None, insecure: bool) -> str:
    """The grades.csv "transport" note of a run; refuses a cluster reached without TLS unless
    ``insecure`` (``--insecure``) says so knowingly."""
    if scheduler is None:
        return "local"
    if scheduler.startswith("tls://"):
        return "tls://"
    if not insecure:
        raise ValueError(
            f"refusing the scheduler {scheduler}: without tls:// any client that reaches it "
            "runs code on the workers, which hold the hidden tests. Use tls:// (--tls-ca-file, "
            "--tls-cert, --tls-key), or pass --insecure knowingly"
        )
    return INSECURE


def _result(job: dict, ok: bool, note: str) -> list:
    """A student's results from their folder, or grader errors saying why there are none."""
    root = RunFolder(Path(job["run"])).student(job["student"])
    if ok:
        try:
            results = json.loads((root / "result.json").read_text())
            if isinstance(results, list) and all(isinstance(r, dict) for r in results):
                return results
            note = "result.json is not a list of results"
        except (OSError, ValueError) as error:
            note = f"no readable result.json ({error})"
    error = root / "worker-error.txt"
    reason = note or (error.read_text(errors="replace")[-300:] if error.exists() else "no result")
    return [grader_error(job["student"], a, reason) for a in job["assignments"]]


def finish(run, students, results, sources, problems, notes, t0, progress) -> dict:
    """Write the run's record, the class gradebook, the CSVs and the summary."""
    t_finish = time.monotonic()
    write_json(
        run.results,
        {
            "assignments": list(sources),
            "students": sorted(students),
            "problems": [list(p) for p in problems],
            "results": results,
            "sandbox": notes["sandbox"],
            "notes": notes,
        },
    )
    try:
        record(run.course, run.work, results)
        apply_hand_scores(results, hand_scores(run.course))  # marks kept from an earlier run
        failed = None
    except Exception as error:  # noqa: BLE001 - the CSVs are written first, then it is raised
        failed = error
    rows = export(run.root, students, results, sources, problems, notes)
    if "phases" in notes:
        notes["phases"]["export"] = time.monotonic() - t_finish
        notes["phases"] = {k: round(v, 1) for k, v in notes["phases"].items()}
    summary = {
        "students": len(students),
        "seconds": round(time.monotonic() - t0, 1),
        **notes,
        "needs_review": rows["review"],
        "failures": rows["failures"],
    }
    write_json(run.summary, summary)
    print_summary(summary, run.root, progress)
    if failed is not None:
        raise RuntimeError(
            f"the class gradebook {Course(run.course).gradebook} was not updated (the CSVs "
            f"were written): {failed!r}"
        ) from failed
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
    folder = RunFolder(out)
    if not folder.results.is_file():
        raise FileNotFoundError(
            f"{out} holds no graded run ({folder.results.name} is missing): run "
            f"gmm-grade SUBMISSIONS --out {out} first"
        )
    run = json.loads(folder.results.read_text())
    sources = {a: Course(folder.course).source_notebook(a) for a in run["assignments"]}
    results = run["results"]
    changed = apply_hand_scores(results, hand_scores(folder.course))
    notes = run.get("notes") or run.get("sandbox", "bubblewrap")
    rows = export(out, run["students"], results, sources, run["problems"], notes)
    secret = course_secret(folder.course)
    for student, rs in results.items():
        for r in rs:
            if was_graded(r):
                a = r["assignment"]
                write_feedback(
                    Course(folder.student(student)).graded_notebook(student, a),
                    sources[a],
                    r,
                    feedback_page(folder.feedback, student, a),
                    secret,
                )
    print(
        f"{changed} part(s) scored by hand in {Course(folder.course).gradebook}; rewrote "
        "grades.csv, parts.csv, needs_review.csv, failures.txt and the feedback pages",
        file=progress,
    )
    return {"hand_scored": changed, "needs_review": rows["review"]}
