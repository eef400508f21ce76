"""Grading speed: N copies of the reference submission through the whole pipeline.

    python benchmarks/bench_grading.py [--students 100] [--jobs J] [--assignment em_by_hand]
                                       [--no-sandbox] [--compare] [--cluster WORKERS]

Writes the copies into a temporary folder (tests/fixtures/make_submissions.py --copies), runs
`grading.pipeline.grade_folder` on them and prints wall seconds in total and per submission
(one submission = one student's notebook for one assignment), checking every copy got full
marks. Every copy is the course's model answer, so copy detection rightly lists each one for
review (status "copying": the answer found in solutions/ and in every classmate's); the bench
reports the review list's statuses and fails if any copy is missing from it or listed for
another reason. By default student code runs in the bubblewrap sandbox; ``--no-sandbox`` times the
pipeline without it, and ``--compare`` times both, one after the other, in the same run.
``--cluster WORKERS`` grades on a Dask `LocalCluster` of WORKERS processes with one thread each
(``gmm-grade --scheduler``'s path: tasks, the worker plugin, files travelling as bytes) and
reports the capacity of a cluster: core-seconds per notebook, both as wall seconds x the cores
of this machine / notebooks (what this machine achieved, at its load) and as the CPU seconds
the workers and every process they started used per notebook (what a notebook costs whatever
else runs), and how many cores of either kind grade 10,000 students x 2 assignments in 15
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
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grading.course import ASSIGNMENTS  # noqa: E402
from grading.pipeline import grade_folder  # noqa: E402
from grading.runner import default_jobs  # noqa: E402


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
        from distributed import Client, LocalCluster
        from distributed.security import Security

        results = []
        for sandbox in modes:
            security = Security.temporary()  # TLS, as gmm-grade expects a cluster to speak
            with (
                LocalCluster(
                    processes=True,
                    n_workers=args.cluster,
                    threads_per_worker=1,
                    dashboard_address=":0",
                    security=security,
                ) as cluster,
                Client(cluster, security=security) as client,
            ):
                workers = list(client.run(os.getpid).values())
                before = tree_cpu_seconds(workers)
                address = cluster.scheduler_address
                result = run(args.students, assignments, None, sandbox, address, security)
                cpu = tree_cpu_seconds(workers) - before
            result["cluster_workers"] = args.cluster
            result.update(capacity(result["wall_seconds"], cpu, result["submissions"]))
            results.append(result)
    else:
        results = [run(args.students, assignments, args.jobs, sandbox) for sandbox in modes]
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grading.json", "a") as f:
        for result in results:
            f.write(json.dumps(result) + "\n")
    print(json.dumps(results if args.compare else results[0], indent=1))
    return 0 if all(as_expected(r) for r in results) else 1


def as_expected(result: dict) -> bool:
    """Every copy got full marks, and is on the review list for copying only (it is the model
    answer, and the same as every classmate's)."""
    copies = result["submissions"]
    return result["full_marks"] == copies and result["review_statuses"] == {"copying": copies}


#: The class of the capacity estimate: 10,000 students x 2 assignments in 15 minutes.
CLASS_NOTEBOOKS, CLASS_SECONDS = 10_000 * 2, 15 * 60


def capacity(wall_seconds: float, cpu_seconds: float, notebooks: int) -> dict:
    """Core-seconds per notebook, from the wall clock (this machine's cores, at its load) and
    from the CPU time the workers used; the cores of each speed that grade `CLASS_NOTEBOOKS`
    in `CLASS_SECONDS`."""
    cores = os.cpu_count() or 1
    wall = wall_seconds * cores / notebooks
    cpu = cpu_seconds / notebooks
    return {
        "machine_cores": cores,
        "worker_cpu_seconds": round(cpu_seconds, 1),
        "wall_core_seconds_per_notebook": round(wall, 2),
        "cpu_seconds_per_notebook": round(cpu, 2),
        "cores_for_10000x2_in_15_min_by_wall": math.ceil(CLASS_NOTEBOOKS * wall / CLASS_SECONDS),
        "cores_for_10000x2_in_15_min_by_cpu": math.ceil(CLASS_NOTEBOOKS * cpu / CLASS_SECONDS),
    }


def tree_cpu_seconds(roots) -> float:
    """CPU seconds (user + system) of the processes ``roots`` and all their live descendants,
    each with the children it has reaped (/proc/<pid>/stat utime, stime, cutime, cstime)."""
    stats = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        stats[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    inside, frontier = set(), [r for r in roots if r in stats]
    while frontier:
        pid = frontier.pop()
        inside.add(pid)
        frontier += [p for p, (ppid, _) in stats.items() if ppid == pid and p not in inside]
    return sum(stats[p][1] for p in inside) / os.sysconf("SC_CLK_TCK")


def mean_seconds(graded: dict) -> dict:
    """{assignment: {"kernel": s, "recheck": s}}: the mean wall seconds one submission spent in
    the kernel's run (start included) and in the re-check, inside its worker."""
    spent = {}
    for results in graded.values():
        for r in results:
            for step, seconds in (r.get("seconds") or {}).items():
                spent.setdefault(r["assignment"], {}).setdefault(step, []).append(seconds)
    return {
        a: {step: round(sum(v) / len(v), 2) for step, v in steps.items()}
        for a, steps in spent.items()
    }


def run(
    students: int,
    assignments: tuple,
    jobs: int | None,
    sandbox: bool,
    scheduler=None,
    security=None,
) -> dict:
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
        load = os.getloadavg()[0]  # other work on the machine (1-minute average) at the start
        started = time.perf_counter()
        summary = grade_folder(
            subs,
            Path(tmp) / "out",
            jobs=jobs,
            assignments=assignments,
            progress=io.StringIO(),
            sandbox=sandbox,
            scheduler=scheduler,
            security=security,
        )
        seconds = time.perf_counter() - started
        with open(Path(tmp) / "out" / "grades.csv") as f:
            rows = list(csv.DictReader(f))
        graded = json.loads((Path(tmp) / "out" / "results.json").read_text())["results"]
    full = sum(r["autograded"] == r["autograded_max"] and r["status"] == "ok" for r in rows)
    statuses = Counter(r["status"] for r in summary["needs_review"])
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
        "review_statuses": dict(sorted(statuses.items())),
        "phases": summary.get("phases"),
        "mean_seconds_in_a_worker": mean_seconds(graded),
        "load_average_1min": [round(load, 1), round(os.getloadavg()[0], 1)],  # start, end
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


if __name__ == "__main__":
    sys.exit(main())
