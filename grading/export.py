"""What a grading run leaves for the instructor: grades.csv, parts.csv, needs_review.csv,
failures.txt and summary.json (and the feedback pages' MathJax, once per run). Each file is
written whole or not at all (`write_atomic`), and every text cell goes through `cell`: a
student's name or message, whatever bytes it holds, is written printably.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

from grading import copying, mathjax
from grading.collect import Problem, shown
from grading.feedback_text import fmt_points
from grading.layout import graded_cells, missing
from grading.records import Status

GRADES_HEADER = (
    "student_id assignment status autograded autograded_max manual manual_max needs_review "
    "flagged review sandbox limits transport"
).split()
PARTS_HEADER = (
    "student_id assignment grade_id kind points max_points kernel_points recheck flagged review "
    "message"
).split()
REVIEW_HEADER = ["student_id", "assignment", "status", "reasons"]


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one step: a reader sees the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=1, default=str))


def cell(value) -> str:
    """A CSV cell: text of any origin made printable (control characters, lone surrogates)."""
    return shown(value) if isinstance(value, str) else "" if value is None else str(value)


def write_csv(path: Path, header: list, rows: list) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([cell(v) for v in row] for row in rows)
    write_atomic(path, buffer.getvalue())


def score(result) -> str:
    """``got/max`` of a result's autograded parts (" (review)" when it needs a look)."""
    auto = [p for p in result.get("parts", []) if p["kind"] == "auto"]
    if not auto:
        return result.get("status", "?")
    got = sum(p["points"] or 0 for p in auto)
    flag = "" if result.get("status") == "ok" and not result.get("flags") else " (review)"
    return f"{got:g}/{sum(p['max_points'] for p in auto):g}{flag}"


def _grade_row(student, assignment, r, cells, notes) -> list:
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
        "yes" if needs_review(r) else "no",
        "; ".join(p["grade_id"] for p in r["parts"] if p.get("flagged")),
        "; ".join(p["grade_id"] for p in r["parts"] if p.get("review") and not p.get("flagged")),
        notes["sandbox"],
        notes.get("limits", ""),
        notes.get("transport", "local"),
    ]


def _part_row(student, assignment, p) -> list:
    kernel = "" if p.get("kernel_points") is None else f"{p['kernel_points']:g}"
    return [
        student,
        assignment,
        p["grade_id"],
        p["kind"],
        fmt_points(p["points"]),
        f"{p['max_points']:g}",
        kernel,
        p.get("recheck") or "",
        p.get("flagged", ""),
        p.get("review", ""),
        p.get("message", ""),
    ]


def needs_review(r) -> bool:
    return bool(r.get("flags")) or r["status"] != Status.OK


#: Statuses of notebooks with no answer to judge: their parts are not counted in failures.txt.
NOT_ANSWERED = (Status.MISSING, Status.UNREADABLE, Status.BLANK, Status.BROKEN)


def _lost_points(r, p) -> bool:
    return (
        p["kind"] == "auto"
        and p["points"] is not None
        and p["points"] < p["max_points"]
        and r["status"] not in NOT_ANSWERED
    )


def export(out, students, results, sources, problems, notes=None) -> dict:
    """Write grades.csv, parts.csv, needs_review.csv and failures.txt; return the review list
    and the failure counts. ``notes``: the run's "sandbox", "limits" and "transport" columns
    (a plain string: the sandbox alone, as earlier runs' results.json hold it)."""
    out = Path(out)
    notes = {"sandbox": notes or "bubblewrap"} if not isinstance(notes, dict) else notes
    problems = [Problem(*p) for p in problems]
    cells = {a: graded_cells(nb) for a, nb in sources.items()}
    all_parts = [g for a in sources for g, _, _ in cells[a]]
    by_key = {(student, r["assignment"]): r for student, rs in results.items() for r in rs}
    # What collect found wrong in a student's folder is said on the student's "missing" rows
    # (one row per student and assignment); only folders it could not take get rows of their own.
    why = {(p.student, p.assignment): p for p in problems if p.student in students}
    grade_rows, part_rows, review = [], [], []
    failures, examples = Counter(), {}
    for student in sorted(students):
        for assignment in sources:
            r = by_key.get((student, assignment))
            if r is None or r["status"] in (Status.MISSING, Status.UNREADABLE):
                problem = why.get((student, assignment)) or why.get((student, ""))
                r = missing(
                    student,
                    assignment,
                    sources[assignment],
                    problem.reason if problem else "",
                    problem.status if problem else Status.MISSING,
                )
            parts = {p["grade_id"]: p for p in r["parts"]}
            grade_rows.append(
                _grade_row(student, assignment, r, cells[assignment], notes)
                + ["" if g not in parts else fmt_points(parts[g]["points"]) for g in all_parts]
            )
            part_rows += [_part_row(student, assignment, p) for p in r["parts"]]
            for p in r["parts"]:
                if _lost_points(r, p):
                    failures[p["grade_id"]] += 1
                    examples.setdefault(p["grade_id"], f"{student}: {p.get('message')}")
            if needs_review(r):
                review.append(
                    {
                        "student_id": student,
                        "assignment": assignment,
                        "status": r["status"],
                        "reasons": cell("; ".join(r.get("flags", [])))[:1000],
                    }
                )
    review += [
        dict(zip(REVIEW_HEADER, [p.student, p.assignment, "collect", p.reason], strict=True))
        for p in problems
        if p.student not in students
    ]
    review += copying.review_rows(out)  # status "copying": matches in OUT/copying.csv
    mathjax.install(out / "feedback")  # what every feedback page loads, by a relative path
    write_csv(out / "grades.csv", GRADES_HEADER + all_parts, grade_rows)
    write_csv(out / "parts.csv", PARTS_HEADER, part_rows)
    write_csv(out / "needs_review.csv", REVIEW_HEADER, [list(r.values()) for r in review])
    lines = [
        cell(f"{gid}: {n} submission(s) lost points, e.g. {examples[gid]}")
        for gid, n in failures.most_common()
    ]
    write_atomic(out / "failures.txt", "\n".join(lines) + ("\n" if lines else ""))
    return {"review": review, "failures": dict(failures)}


def print_summary(summary, out, stream) -> None:
    notes = "".join(
        f"; {key}: {summary[key]}" for key in ("limits", "transport") if summary.get(key)
    )
    print(
        f"\ngraded {summary['students']} students in {summary['seconds']:.1f} s "
        f"(student code sandboxed: {summary['sandbox']}{notes})",
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
