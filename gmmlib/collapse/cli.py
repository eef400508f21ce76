"""The ``gmm-collapse`` command line (also ``python -m gmmlib.collapse``).

Checks the options (K between 1 and N, reg_covar >= 0, a writable --out) before any work,
runs the requested experiment(s), prints their tables and writes their files.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gmmlib.collapse.experiment import REFERENCE, run_experiment
from gmmlib.collapse.figures import plot_run, plot_sweep_fixes, plot_sweep_k, plot_sweep_reg
from gmmlib.collapse.report import (
    format_sweep_fixes,
    format_sweep_k,
    format_sweep_reg,
    format_table,
    write_outputs,
)
from gmmlib.collapse.sweeps import (
    SWEEP_K_RANGE,
    SWEEP_MAX_ITER,
    SWEEP_REGS,
    SWEEP_SEEDS,
    Progress,
    sweep_fixes,
    sweep_k,
    sweep_reg,
)
from gmmlib.datasets import collapse_data

DEFAULT_OUT = "results/collapse"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

SUBCOMMANDS = ("run", "sweep-k", "sweep-reg", "sweep-fixes", "all")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _seed(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed must be >= 0 (numpy's generator), got {value}")
    return value


_VALUE_OPTIONS = (
    "--components",
    "-k",
    "--seed",
    "--reg-covar",
    "--max-iter",
    "--k-min",
    "--k-max",
    "--seeds",
)


def _glue_negative_numbers(argv: list[str]) -> list[str]:
    """``--reg-covar -1e-3`` -> ``--reg-covar=-1e-3``, so argparse reports the bad *value*
    ("must be >= 0") instead of mistaking it for an option ("expected one argument")."""
    out: list[str] = []
    for token in argv:
        if out and out[-1] in _VALUE_OPTIONS and token.startswith("-"):
            try:
                float(token)
            except ValueError:
                pass
            else:
                out[-1] = f"{out[-1]}={token}"
                continue
        out.append(token)
    return out


def _reg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"reg_covar must be a finite number >= 0 (it is added to every variance), got {text}"
        )
    return value


def _positive_reg(text: str) -> float:
    value = _reg(text)
    if value == 0:
        raise argparse.ArgumentTypeError("the reg_covar sweep needs values > 0 (0 crashes EM)")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmm-collapse",
        description=(
            "The collapse experiment: EM for a Gaussian mixture drives a component onto a single "
            "data point (variance -> 0, likelihood -> infinity). With no subcommand, runs the "
            f"reference case (K={REFERENCE['n_components']}, seed={REFERENCE['seed']}, "
            "reg_covar=0, no prior)."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")

    defaults = {
        "components": REFERENCE["n_components"],
        "seed": REFERENCE["seed"],
        "reg_covar": REFERENCE["reg_covar"],
        "prior": REFERENCE["prior"],
        "max_iter": REFERENCE["max_iter"],
        "k_min": SWEEP_K_RANGE[0],
        "k_max": SWEEP_K_RANGE[1],
        "seeds": SWEEP_SEEDS,
        "reg_values": list(SWEEP_REGS),
        "sweep_max_iter": SWEEP_MAX_ITER,
    }

    def common(p, max_iter_dest=None):
        p.set_defaults(**defaults)
        p.add_argument(
            "--out",
            type=Path,
            default=Path(DEFAULT_OUT),
            help=f"output folder (created if missing; default {DEFAULT_OUT})",
        )
        if max_iter_dest:
            p.add_argument(
                "--max-iter",
                dest=max_iter_dest,
                type=_positive_int,
                default=defaults[max_iter_dest],
                help=f"maximum EM iterations per run (default {defaults[max_iter_dest]})",
            )
        p.add_argument("--quiet", action="store_true", help="print no table or progress")

    def components(p):
        p.add_argument(
            "--components",
            "-k",
            type=_int,
            default=REFERENCE["n_components"],
            help=f"number of components K (default {REFERENCE['n_components']})",
        )

    def seeds(p):
        p.add_argument(
            "--seeds",
            type=_positive_int,
            default=SWEEP_SEEDS,
            help=f"use seeds 0..S-1 (default {SWEEP_SEEDS})",
        )

    run = sub.add_parser("run", help="one run, its per-iteration table, figure and record")
    common(run, "max_iter")
    components(run)
    run.add_argument(
        "--seed",
        type=_seed,
        default=REFERENCE["seed"],
        help=f"seed choosing the initial means (default {REFERENCE['seed']})",
    )
    run.add_argument(
        "--reg-covar",
        type=_reg,
        default=REFERENCE["reg_covar"],
        help="added to every variance (default 0: the plain maths)",
    )
    run.add_argument(
        "--prior",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="MAP inverse-Wishart prior on each covariance (default: off)",
    )

    sk = sub.add_parser("sweep-k", help="collapse rate and speed over seeds for K = 2..8")
    common(sk, "sweep_max_iter")
    sk.add_argument("--k-min", type=_int, default=SWEEP_K_RANGE[0], help="smallest K (2)")
    sk.add_argument("--k-max", type=_int, default=SWEEP_K_RANGE[1], help="largest K (8)")
    seeds(sk)

    sr = sub.add_parser("sweep-reg", help="final ln p(X) for reg_covar = 1e-2 ... 1e-12")
    common(sr, "sweep_max_iter")
    components(sr)
    sr.add_argument("--seed", type=_seed, default=REFERENCE["seed"], help="seed of the run")
    sr.add_argument(
        "--reg-covar",
        dest="reg_values",
        type=_positive_reg,
        nargs="+",
        default=list(SWEEP_REGS),
        help="reg_covar values (default 1e-2 ... 1e-12, one per decade)",
    )

    sf = sub.add_parser("sweep-fixes", help="reg_covar=0 vs reg_covar=1e-6 vs the MAP prior")
    common(sf, "sweep_max_iter")
    components(sf)
    seeds(sf)
    sf.add_argument(
        "--seed",
        type=_seed,
        default=REFERENCE["seed"],
        help="seed whose smallest-eigenvalue traces are drawn",
    )

    every = sub.add_parser("all", help="the reference run and the three sweeps, with defaults")
    common(every)
    seeds(every)
    return parser, {"run": run, "sweep-k": sk, "sweep-reg": sr, "sweep-fixes": sf, "all": every}


def _check_components(sub_parser, K: int, N: int, what: str = "--components") -> None:
    if K < 1:
        sub_parser.error(f"{what} must be at least 1, got {K}")
    if K > N:
        sub_parser.error(
            f"{what} must be at most the number of data points (N={N}): each component starts "
            f"on a distinct data point; got {K}"
        )


def _prepare_out(sub_parser, out: Path) -> bool:
    """Create ``out`` if needed and check we can write in it; returns whether we created it."""
    existed = out.is_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=".probe-", dir=out))
        probe.rmdir()
    except OSError as exc:
        sub_parser.error(f"cannot write to output folder {str(out)!r}: {exc.strerror or exc}")
    return not existed


def _progress(quiet: bool) -> Progress:
    if quiet:
        return None

    def tell(i: int, total: int, text: str) -> None:
        print(f"[{i}/{total}] {text}", file=sys.stderr, flush=True)

    return tell


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gmm-collapse`` (and ``python -m gmmlib.collapse``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    parser, subs = _build_parser()
    args = parser.parse_args(_glue_negative_numbers(argv))
    sp = subs[args.command]
    N = len(collapse_data())
    _check_components(sp, args.components, N)
    _check_components(sp, args.k_min, N, "--k-min")
    _check_components(sp, args.k_max, N, "--k-max")
    if args.k_min > args.k_max:
        sp.error(f"--k-min ({args.k_min}) must not exceed --k-max ({args.k_max})")
    created = _prepare_out(sp, args.out)
    progress = _progress(args.quiet)
    try:
        outputs = []
        if args.command in ("run", "all"):
            record = run_experiment(
                n_components=args.components,
                seed=args.seed,
                reg_covar=args.reg_covar,
                prior=args.prior,
                max_iter=args.max_iter,
            )
            outputs.append(("run", record, plot_run, format_table(record["result"])))
        if args.command in ("sweep-k", "all"):
            record = sweep_k(
                range(args.k_min, args.k_max + 1),
                range(args.seeds),
                max_iter=args.sweep_max_iter,
                progress=progress,
            )
            outputs.append(("sweep-k", record, plot_sweep_k, format_sweep_k(record)))
        if args.command in ("sweep-reg", "all"):
            record = sweep_reg(
                args.reg_values,
                n_components=args.components,
                seed=args.seed,
                max_iter=args.sweep_max_iter,
                progress=progress,
            )
            outputs.append(("sweep-reg", record, plot_sweep_reg, format_sweep_reg(record)))
        if args.command in ("sweep-fixes", "all"):
            record = sweep_fixes(
                range(args.seeds),
                n_components=args.components,
                reference_seed=args.seed,
                max_iter=args.sweep_max_iter,
                progress=progress,
            )
            outputs.append(("sweep-fixes", record, plot_sweep_fixes, format_sweep_fixes(record)))
        paths = write_outputs(args.out, [(name, rec, plot) for name, rec, plot, _ in outputs])
    except BaseException:
        if created and args.out.is_dir() and not any(args.out.iterdir()):
            args.out.rmdir()
        raise
    if not args.quiet:
        for name, _, _, text in outputs:
            if len(outputs) > 1:
                print(f"== {name} ==")
            print(text)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0
