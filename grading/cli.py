"""``gmm-grade``: grade a folder of submissions end to end (`grading.pipeline`), locally or on a
Dask cluster (`grading.distributed`, ``tls://`` unless ``--insecure``), resume an interrupted
run, or fold in the marks given by hand (``--update``); the options are ``gmm-grade --help``'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grading.course import ASSIGNMENTS
from grading.isolation import SandboxUnavailableError
from grading.journal import JOURNAL, InterruptedRunError
from grading.pipeline import check_transport, grade_folder, update


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="gmm-grade",
        description="Grade a folder of student submissions: collect, nbgrader autograde, "
        "out-of-kernel re-check, redacted feedback HTML, grades CSV.",
    )
    parser.add_argument(
        "submissions",
        type=Path,
        nargs="?",
        help="folder with one sub-folder per student (<student>/<assignment>/"
        "<notebook>.ipynb or <student>/<notebook>.ipynb)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("graded"),
        help="output folder (default: ./graded); holds the secret gradebook",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="students graded at once (default: 2 per core)"
    )
    parser.add_argument(
        "--assignment",
        action="append",
        choices=sorted(ASSIGNMENTS),
        help="grade only this assignment (repeat for several; default: all)",
    )
    parser.add_argument(
        "--step-timeout",
        type=float,
        default=8.0,
        help="seconds one re-check step may run (default 8)",
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code WITHOUT the bubblewrap sandbox (limits only): "
        "a submission can then read the hidden tests and change other "
        "students' files; the summary and grades.csv say so",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on the Dask cluster whose scheduler is at ADDRESS (tls://HOST:PORT with "
        "--tls-* or dask's distributed.comm.tls config; tcp://HOST:PORT only with --insecure); "
        "default: local processes",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a tcp:// scheduler: any client that reaches it can run code on the "
        "workers, which hold the hidden tests; the summary and grades.csv say so",
    )
    parser.add_argument("--tls-ca-file", help="CA certificate the cluster's certificates use")
    parser.add_argument("--tls-cert", help="this client's TLS certificate (PEM)")
    parser.add_argument("--tls-key", help="this client's TLS private key (PEM)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the students OUT/journal.jsonl holds (an interrupted run with the same "
        "assignments and sandbox setting) and grade only the others",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="regrade nothing: read the marks given by hand in OUT/course/"
        "gradebook.db (formgrader) and rewrite OUT's CSVs and feedback",
    )
    args = parser.parse_args(argv)
    if args.update:
        if args.submissions is not None:
            parser.error("--update rewrites an earlier run's output: give --out, not SUBMISSIONS")
        try:
            update(args.out)
        except FileNotFoundError as e:
            parser.error(str(e))
        return 0
    if args.submissions is None:
        parser.error("give the folder of submissions (or --update to fold in hand-given marks)")
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")
    tls = [args.tls_ca_file, args.tls_cert, args.tls_key]
    if any(tls) and not (args.scheduler or "").startswith("tls://"):
        parser.error("--tls-ca-file/--tls-cert/--tls-key go with --scheduler tls://HOST:PORT")
    if any(tls) and not all(tls):
        parser.error("give all three of --tls-ca-file, --tls-cert and --tls-key")
    if args.insecure and not args.scheduler:
        parser.error("--insecure goes with --scheduler tcp://HOST:PORT")
    try:
        check_transport(args.scheduler, args.insecure)
    except ValueError as e:
        parser.error(str(e))
    if args.scheduler and args.jobs:
        parser.error("--jobs is for local grading; a cluster grades on its workers' threads")
    try:
        summary = grade_folder(
            args.submissions,
            args.out,
            jobs=args.jobs,
            step_timeout=args.step_timeout,
            assignments=tuple(args.assignment or ASSIGNMENTS),
            sandbox=not args.no_sandbox,
            scheduler=args.scheduler,
            security=_security(*tls) if any(tls) else None,
            resume=args.resume,
            progress=sys.stderr,
            insecure=args.insecure,
        )
    except (FileNotFoundError, ValueError) as e:  # --resume without a matching journal
        parser.error(str(e))
    except InterruptedRunError as e:
        parser.exit(
            3,
            f"gmm-grade: {e}\nThe results graded so far are kept in {args.out / JOURNAL}; "
            f"once the cluster is back, go on with: gmm-grade {args.submissions} --resume "
            f"--out {args.out} [--scheduler ...]\n",
        )
    except SandboxUnavailableError as e:
        parser.exit(
            2,
            f"gmm-grade: refusing to grade: {e}\nStudent code would run with the "
            "grader's rights. Fix the sandbox (make setup installs bubblewrap; user "
            "namespaces must be enabled), or pass --no-sandbox knowingly.\n",
        )
    return 0 if summary["students"] else 1


def _security(ca_file: str, cert: str, key: str):
    """A `distributed.Security` for a tls:// scheduler from the three files (without them,
    dask's own configuration, ``distributed.comm.tls.*``, applies)."""
    from distributed import Security

    return Security(
        tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True
    )


if __name__ == "__main__":
    sys.exit(main())
