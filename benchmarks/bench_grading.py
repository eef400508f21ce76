"""Grading speed: N copies of the reference submission through the whole pipeline.

    python benchmarks/bench_grading.py [--students 100] [--jobs J] [--assignment em_by_hand]

Writes the copies into a temporary folder (tests/fixtures/make_submissions.py --copies), runs
`grading.pipeline.grade_folder` on them and prints wall seconds in total and per submission
(one submission = one student's notebook for one assignment), checking every copy got full
marks. Results are appended to benchmarks/results/grading.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grading.course import ASSIGNMENTS  # noqa: E402
from grading.pipeline import default_jobs, grade_folder  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--assignment", action="append", choices=sorted(ASSIGNMENTS))
    args = parser.parse_args(argv)
    assignments = tuple(args.assignment or ASSIGNMENTS)
    with tempfile.TemporaryDirectory(prefix="gmm-bench-") as tmp:
        subs = Path(tmp) / "submissions"
        subprocess.run([sys.executable, str(ROOT / "tests/fixtures/make_submissions.py"),
                        str(subs), "--copies", str(args.students)], check=True,
                       capture_output=True)
        started = time.perf_counter()
        summary = grade_folder(subs, Path(tmp) / "out", jobs=args.jobs, assignments=assignments,
                               progress=io.StringIO())
        seconds = time.perf_counter() - started
        with open(Path(tmp) / "out" / "grades.csv") as f:
            rows = list(csv.DictReader(f))
    full = sum(r["autograded"] == r["autograded_max"] and r["status"] == "ok" for r in rows)
    submissions = args.students * len(assignments)
    result = {
        "students": args.students, "assignments": list(assignments),
        "submissions": submissions, "jobs": args.jobs or default_jobs(),
        "wall_seconds": round(seconds, 1),
        "seconds_per_submission": round(seconds / submissions, 2),
        "full_marks": full, "needs_review": len(summary["needs_review"]),
    }
    print(json.dumps(result, indent=1))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grading.json", "a") as f:
        f.write(json.dumps(result) + "\n")
    return 0 if full == submissions else 1


if __name__ == "__main__":
    sys.exit(main())
