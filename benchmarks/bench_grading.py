"""Grading speed: N copies of the reference submission through the whole pipeline.

    python benchmarks/bench_grading.py [--students 100] [--jobs J] [--assignment em_by_hand]
                                       [--no-sandbox] [--compare] [--cluster WORKERS]

Writes the copies into a temporary folder (tests/fixtures/make_submissions.py --copies), runs
`grading.pipeline.grade_folder` on them and prints wall seconds in total and per submission
(one submission = one student's notebook for one assignment), checking every copy got full
marks. By default student code runs in the bubblewrap sandbox; ``--no-sandbox`` times the
pipeline without it, and ``--compare`` times both, one after the other, in the same run.
``--cluster WORKERS`` grades on a Dask `LocalCluster` of WORKERS processes with one thread each
(``gmm-grade --scheduler``'s path: tasks, the worker plugin, files travelling as bytes) and
reports the capacity of a cluster: core-seconds per notebook (wall seconds x the cores of this
machine / notebooks) and how many such cores grade 10,000 students x 2 assignments in 15
minutes. Results are appended to benchmarks/results/grading.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
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
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code without bubblewrap (limits only)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="time the sandboxed and the --no-sandbox pipeline in one run",
    )
    parser.add_argument(
        "--cluster",
        type=int,
        metavar="WORKERS",
        help="grade on a Dask LocalCluster of WORKERS single-thread worker processes",
    )
    args = parser.parse_args(argv)
    assignments = tuple(args.assignment or ASSIGNMENTS)
    modes = [True, False] if args.compare else [not args.no_sandbox]
    if args.cluster:
        from distributed import LocalCluster

        with LocalCluster(
            processes=True, n_workers=args.cluster, threads_per_worker=1, dashboard_address=None
        ) as cluster:
            address = cluster.scheduler_address
            results = [run(args.students, assignments, None, s, address) for s in modes]
        for result in results:
            result["cluster_workers"] = args.cluster
            result.update(capacity(result["wall_seconds"], result["submissions"]))
    else:
        results = [run(args.students, assignments, args.jobs, sandbox) for sandbox in modes]
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grading.json", "a") as f:
        for result in results:
            f.write(json.dumps(result) + "\n")
    print(json.dumps(results if args.compare else results[0], indent=1))
    return 0 if all(r["full_marks"] == r["submissions"] for r in results) else 1


#: The class of the capacity estimate: 10,000 students x 2 assignments in 15 minutes.
CLASS_NOTEBOOKS, CLASS_SECONDS = 10_000 * 2, 15 * 60


def capacity(wall_seconds: float, notebooks: int) -> dict:
    """Core-seconds per notebook on this machine (all its cores busy grading), and the worker
    cores of that speed that grade `CLASS_NOTEBOOKS` in `CLASS_SECONDS`."""
    cores = os.cpu_count() or 1
    per_core = wall_seconds * cores / notebooks
    return {
        "machine_cores": cores,
        "core_seconds_per_notebook": round(per_core, 2),
        "cores_for_10000x2_in_15_min": math.ceil(CLASS_NOTEBOOKS * per_core / CLASS_SECONDS),
    }


def run(students: int, assignments: tuple, jobs: int | None, sandbox: bool, scheduler=None) -> dict:
    """Grade ``students`` copies of the reference once; the timing and the check."""
    with tempfile.TemporaryDirectory(prefix="gmm-bench-") as tmp:
        subs = Path(tmp) / "submissions"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "tests/fixtures/make_submissions.py"),
                str(subs),
                "--copies",
                str(students),
            ],
            check=True,
            capture_output=True,
        )
        started = time.perf_counter()
        summary = grade_folder(
            subs,
            Path(tmp) / "out",
            jobs=jobs,
            assignments=assignments,
            progress=io.StringIO(),
            sandbox=sandbox,
            scheduler=scheduler,
        )
        seconds = time.perf_counter() - started
        with open(Path(tmp) / "out" / "grades.csv") as f:
            rows = list(csv.DictReader(f))
    full = sum(r["autograded"] == r["autograded_max"] and r["status"] == "ok" for r in rows)
    submissions = students * len(assignments)
    return {
        "students": students,
        "assignments": list(assignments),
        "sandbox": summary["sandbox"],
        "submissions": submissions,
        "jobs": jobs or (None if scheduler else default_jobs()),
        "wall_seconds": round(seconds, 1),
        "seconds_per_submission": round(seconds / submissions, 2),
        "full_marks": full,
        "needs_review": len(summary["needs_review"]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


if __name__ == "__main__":
    sys.exit(main())
