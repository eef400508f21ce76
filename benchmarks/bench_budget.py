"""What a submission spends of its time budget: the honest ones, an endless loop, sleepers.

    python benchmarks/bench_budget.py [--students reference hostile_infinite_loop ...]
                                      [--no-model] [--no-sandbox] [--jobs J] [--keep DIR]

Grades the named fixture students (tests/fixtures/make_submissions.py; by default the
reference, hostile_infinite_loop and hostile_sleepers) and ``model``, who hands in the course's
model solutions (solutions/), through `grading.pipeline.grade_folder`, and prints for each
submission (one student's notebook of one assignment) what its feedback run and its re-check
spent of the submission's budget (`grading.watch.SubmissionBudget`: CPU seconds and seconds
asleep, read from /proc, so the machine's load does not change them), the total against the
limit, the wall seconds of each side and the points. Fails if a total is over the limit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import fixture_students  # noqa: E402

from grading.course import ASSIGNMENTS, SOLUTIONS  # noqa: E402
from grading.pipeline import grade_folder  # noqa: E402

DEFAULT = ("reference", "hostile_infinite_loop", "hostile_sleepers")


def write(submissions: Path, students, model: bool) -> None:
    """The fixture ``students`` and, with ``model``, the model solutions as student "model"."""
    fixture_students.load().write_all(submissions, only=set(students))
    for assignment, notebook in ASSIGNMENTS.items() if model else ():
        path = submissions / "model" / assignment / notebook
        path.parent.mkdir(parents=True)
        shutil.copy(SOLUTIONS / assignment / notebook, path)


def rows(out: Path) -> list[dict]:
    """Every graded submission's result, by student and assignment."""
    results = [r for path in out.rglob("result.json") for r in json.loads(path.read_text())]
    return sorted(results, key=lambda r: (r["student"], r["assignment"]))


def describe(r: dict) -> str:
    b = r.get("budget") or {}
    kernel, recheck = b.get("kernel", {}), b.get("recheck", {})
    points = sum(p["points"] or 0 for p in r["parts"] if p["kind"] == "auto")
    top = sum(p["max_points"] for p in r["parts"] if p["kind"] == "auto")
    return (
        f"{r['student']:24} {r['assignment']:16} {r['status']:15} {points:4g}/{top:<3g}"
        f" kernel {kernel.get('cpu', 0):5.2f} cpu {kernel.get('asleep', 0):5.2f} asleep"
        f" | re-check {recheck.get('cpu', 0):5.2f} cpu {recheck.get('asleep', 0):5.2f} asleep"
        f" | total {b.get('total', 0):5.2f} / {b.get('limit', 0):g}"
        f" | wall {r['seconds'].get('kernel', 0):6.1f} + {r['seconds'].get('recheck', 0):5.1f} s"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", nargs="*", default=list(DEFAULT))
    parser.add_argument("--no-model", action="store_true", help="leave the model solutions out")
    parser.add_argument("--no-sandbox", action="store_true")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--keep", type=Path, help="grade into this folder and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        folder = args.keep or Path(tmp)
        submissions, out = folder / "submissions", folder / "out"
        write(submissions, args.students, not args.no_model)
        grade_folder(
            submissions,
            out,
            jobs=args.jobs,
            sandbox=not args.no_sandbox,
            copy_check=False,
            progress=sys.stderr,
        )
        results = [r for r in rows(out) if r.get("budget")]
    over = []
    for r in results:
        print(describe(r))
        if r["budget"]["total"] > r["budget"]["limit"]:
            over.append(f"{r['student']}/{r['assignment']}")
    if over:
        print("over the budget: " + ", ".join(over))
    return 1 if over or not results else 0


if __name__ == "__main__":
    sys.exit(main())
