"""The collapse experiment: EM driving one component onto a single point, reproducibly.

A Gaussian mixture's likelihood is unbounded: a component whose mean sits on a data point and
whose covariance shrinks to zero makes ln p(X) -> +inf. With too many components or a bad start,
EM walks straight into this. This module turns the recipe of DESIGN.md into a citable experiment:

- data: ``gmmlib.datasets.collapse_data()`` (20 points in 2-D, generator seed 0);
- start: ``gmmlib.datasets.collapse_init(X, K, seed)`` (K distinct data points as means, every
  covariance the data covariance, equal weights);
- EM: ``gmmlib.GaussianMixture(...).steps(X)`` from that start; the collapse rule, the report and
  the MAP prior are gmmlib's (`gmmlib.diagnostics`, `gmmlib.prior`), never re-implemented here.

Command line (console script ``gmm-collapse``, or ``python -m gmmlib.collapse``)::

    gmm-collapse                       # = gmm-collapse run with the reference case
    gmm-collapse run --components 4 --seed 22 --reg-covar 0 --no-prior --max-iter 100 --out DIR
    gmm-collapse sweep-k               # collapse rate and speed over seeds, K = 2..8
    gmm-collapse sweep-reg             # final ln p(X) as reg_covar goes 1e-2 -> 1e-12
    gmm-collapse sweep-fixes           # reg_covar=0 vs reg_covar=1e-6 vs the MAP prior
    gmm-collapse all --out DIR         # the reference run and the three sweeps, defaults

Each command prints its table (sweeps report progress on stderr) and writes, into ``--out``,
``<name>.json`` (every parameter, the per-iteration / per-run table, library versions) and a
figure ``<name>.png`` + ``<name>.svg``. Files are written to a temporary folder inside ``--out``
and renamed into place at the end, so a failure leaves no half-written output. The same inputs
give byte-identical JSON (and, with the same matplotlib and fonts, identical PNG/SVG).

The same functions are importable for the book: `run_experiment`, `sweep_k`, `sweep_reg`,
`sweep_fixes` return plain records (dicts); `plot_run`, `plot_sweep_k`, `plot_sweep_reg`,
`plot_sweep_fixes` (from `gmmlib.collapse_figures`) draw them on a new matplotlib Figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from gmmlib.collapse_figures import RC as _RC
from gmmlib.collapse_figures import plot_run, plot_sweep_fixes, plot_sweep_k, plot_sweep_reg
from gmmlib.datasets import collapse_data, collapse_init
from gmmlib.diagnostics import (
    CollapseError,
    CollapseWarning,
    collapse_threshold,
    collapsed_components,
    min_eigenvalues,
)
from gmmlib.em import e_step
from gmmlib.mixture import GaussianMixture
from gmmlib.prior import InverseWishartPrior

__all__ = [
    "REFERENCE",
    "RECORD_FORMAT",
    "run_experiment",
    "sweep_k",
    "sweep_reg",
    "sweep_fixes",
    "plot_run",
    "plot_sweep_k",
    "plot_sweep_reg",
    "plot_sweep_fixes",
    "format_table",
    "main",
]

#: The reference case: K=4 on the recipe's 20 points, seed 22 (a collapse onto ONE data point).
REFERENCE = {
    "n_components": 4,
    "seed": 22,
    "reg_covar": 0.0,
    "prior": False,
    "max_iter": 100,
    "tol": 1e-3,
    "collapse_tol": 1e-8,
}
#: Version of the JSON record layout (bump when a field changes meaning).
RECORD_FORMAT = 1
DEFAULT_OUT = "results/collapse"
SWEEP_K_RANGE = (2, 8)
SWEEP_SEEDS = 100
SWEEP_REGS = tuple(10.0**-e for e in range(2, 13))  # 1e-2 ... 1e-12
FIX_REG = 1e-6
# Sweeps allow 300 rounds, enough for every collapse seen in the K = 2..8 sweep (the slowest
# takes 36). The reg_covar sweep converges tightly (tol 1e-10 per point) so its final ln p(X)
# is the value EM settles on, not a snapshot along the way.
SWEEP_MAX_ITER = 300
SWEEP_TOL = 1e-10


# --------------------------------------------------------------------------------------------
# Running EM from the recipe's start, one step at a time
# --------------------------------------------------------------------------------------------


def _estimator(K, reg_covar, prior, max_iter, tol, collapse_tol, on_collapse, start):
    weights, means, covariances = start
    return GaussianMixture(
        n_components=K,
        covariance_type="full",
        reg_covar=reg_covar,
        tol=tol,
        max_iter=max_iter,
        weights_init=weights,
        means_init=means,
        covariances_init=covariances,
        on_collapse=on_collapse,
        collapse_tol=collapse_tol,
        covariance_prior="auto" if prior else None,
    )


def _n_collapsed_directions(covariance, reg_covar, threshold) -> int:
    """How many eigenvalues of Sigma_k - reg_covar * I are at or below the collapse threshold."""
    lam = np.linalg.eigvalsh(np.asarray(covariance, float)) - reg_covar
    return int(np.sum(~(lam > threshold)))


def trace_em(
    X: np.ndarray,
    n_components: int,
    seed: int,
    *,
    reg_covar: float = 0.0,
    prior: bool = False,
    max_iter: int = 100,
    tol: float = 1e-3,
    collapse_tol: float = 1e-8,
    stop_at_collapse: bool = True,
    keep_parameters: bool = False,
) -> dict:
    """Run EM from ``collapse_init(X, n_components, seed)`` and tabulate every round.

    Row t (t = 1, 2, ...) of ``rows`` is EM round t: ``log_likelihood`` = ln p(X | theta_{t-1})
    (the E-step's value), ``nk`` = the soft counts that E-step gave (the M-step built theta_t
    from them), ``min_eigenvalues`` = the smallest eigenvalue of each Sigma_k in theta_t (as
    fitted, reg_covar included) and ``collapsed`` = the components of theta_t that satisfy
    gmmlib's collapse rule. ``status``:

    - "collapsed": stopped at the first collapse (``stop_at_collapse=True``);
    - "crashed": EM went on after the collapse (``stop_at_collapse=False``) until a covariance
      had no Cholesky factor, so it could not take another step;
    - "converged" or "max_iter".

    ``collapse`` is gmmlib's `CollapseReport` of the first collapse (as a dict, plus the number
    of collapsed directions and the component's mean); ``final_log_likelihood`` is
    ln p(X | theta_T) when EM ended normally. With ``keep_parameters`` the record also holds
    theta_0 ... theta_T.
    """
    X = np.asarray(X, dtype=np.float64)
    start = collapse_init(X, n_components, seed)
    threshold = collapse_threshold(X, collapse_tol)
    gm = _estimator(
        n_components,
        reg_covar,
        prior,
        max_iter,
        tol,
        collapse_tol,
        "continue" if not stop_at_collapse else "raise",
        start,
    )
    rows: list[dict] = []
    params = [_params_dict(*start)] if keep_parameters else None
    lls: list[float] = []  # lls[t] = ln p(X | theta_t)
    lps: list[float] = []  # the same plus the prior's log density (what EM's tol watches)
    nk_pending: list[float] = []
    first_report = None
    status = None
    last_kind = None
    try:
        with warnings.catch_warnings():
            # "continue" warns when EM cannot go on; the record says so in words instead.
            warnings.simplefilter("ignore", CollapseWarning)
            with np.errstate(all="ignore"):
                for step in gm.steps(X):
                    last_kind = step.kind
                    if step.kind == "E":
                        lls.append(float(step.log_likelihood))
                        lps.append(float(step.log_posterior))
                        nk_pending = [float(v) for v in step.nk]
                        continue
                    bad = collapsed_components(step.covariances, reg_covar, threshold)
                    rows.append(
                        {
                            "iteration": int(step.iteration),
                            "log_likelihood": lls[-1],
                            "nk": nk_pending,
                            "min_eigenvalues": [float(v) for v in step.min_eigenvalues],
                            "collapsed": [int(k) for k in bad],
                        }
                    )
                    if keep_parameters:
                        params.append(_params_dict(step.weights, step.means, step.covariances))
                    if step.collapse is not None and first_report is None:
                        first_report = _report_record(step, reg_covar, threshold)
                    if first_report is not None and stop_at_collapse:
                        status = "collapsed"
                        break
    except CollapseError as exc:  # not reached: we stop at the collapsed M-step ourselves
        first_report = first_report or exc.report.as_dict()
        status = "collapsed"
    if status is None:
        if last_kind == "M":  # the generator ends on an M-step only when EM cannot go on
            status = "crashed"
        else:  # the estimator's stopping rule, read back from the last two E-steps
            done = len(lps) >= 2 and abs(lps[-1] - lps[-2]) / len(X) < tol
            status = "converged" if done else "max_iter"
    final_ll = lls[-1] if last_kind == "E" and status != "collapsed" else None
    record = {
        "n_components": n_components,
        "seed": seed,
        "status": status,
        "n_iter": len(rows),
        "collapse": first_report,
        "final_log_likelihood": final_ll,
        "rows": rows,
    }
    if keep_parameters:
        record["parameters"] = params
    return record


def _report_record(step, reg_covar: float, threshold: float) -> dict:
    """gmmlib's CollapseReport of this M-step as a dict, plus the collapsed directions and mean."""
    out = step.collapse.as_dict()
    k = int(out["component"])
    out["collapsed_directions"] = _n_collapsed_directions(step.covariances[k], reg_covar, threshold)
    out["mean"] = np.asarray(step.means[k], float).tolist()
    return out


def _params_dict(weights, means, covariances) -> dict:
    return {
        "weights": np.asarray(weights, float).tolist(),
        "means": np.asarray(means, float).tolist(),
        "covariances": np.asarray(covariances, float).tolist(),
    }


# --------------------------------------------------------------------------------------------
# The experiments (plain records, JSON-ready)
# --------------------------------------------------------------------------------------------


def _environment() -> dict:
    return {
        "gmmlib": metadata.version("gmmlib"),
        "numpy": np.__version__,
        "matplotlib": metadata.version("matplotlib"),
    }


def _data_record(X) -> dict:
    return {
        "source": "gmmlib.datasets.collapse_data()",
        "recipe": "10 points around (-2, 0) and 10 around (2, 0.5), sigma 0.6, default_rng(0)",
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "X": np.asarray(X, float).tolist(),
    }


def _prior_record(X, n_components, prior) -> dict | None:
    if not prior:
        return None
    p = InverseWishartPrior.from_data(X, n_components, "auto")
    D = X.shape[1]
    return {
        "covariance_prior": "auto",
        "scale": p.scale.tolist(),
        "degrees_of_freedom": p.dof,
        # Sigma_k = (Psi + S_k) / (N_k + nu + D + 1) >= Psi / (N + nu + D + 1) since N_k <= N.
        "eigenvalue_floor": _prior_floor(p, len(X), D),
    }


def _prior_floor(p: InverseWishartPrior, N: int, D: int) -> float:
    """Lower bound on every smallest eigenvalue under the MAP prior: lambda_min(Psi)/(N+nu+D+1)."""
    return float(np.linalg.eigvalsh(p.scale)[0] / (N + p.dof + D + 1))


def run_experiment(
    n_components: int = REFERENCE["n_components"],
    seed: int = REFERENCE["seed"],
    reg_covar: float = REFERENCE["reg_covar"],
    prior: bool = REFERENCE["prior"],
    max_iter: int = REFERENCE["max_iter"],
    tol: float = REFERENCE["tol"],
    collapse_tol: float = REFERENCE["collapse_tol"],
) -> dict:
    """One run of the recipe, stopped at the first collapse: the full record (see module doc)."""
    X = collapse_data()
    trace = trace_em(
        X,
        n_components,
        seed,
        reg_covar=reg_covar,
        prior=prior,
        max_iter=max_iter,
        tol=tol,
        collapse_tol=collapse_tol,
        stop_at_collapse=True,
        keep_parameters=True,
    )
    return {
        "experiment": "run",
        "format": RECORD_FORMAT,
        "command": _command(
            "run",
            components=n_components,
            seed=seed,
            reg_covar=reg_covar,
            prior=prior,
            max_iter=max_iter,
        ),
        "parameters": {
            "n_components": n_components,
            "seed": seed,
            "reg_covar": reg_covar,
            "prior": bool(prior),
            "covariance_prior": _prior_record(X, n_components, prior),
            "max_iter": max_iter,
            "tol": tol,
            "collapse_tol": collapse_tol,
            "collapse_threshold": collapse_threshold(X, collapse_tol),
            "init": "gmmlib.datasets.collapse_init(X, n_components, seed)",
            "covariance_type": "full",
        },
        "data": _data_record(X),
        "environment": _environment(),
        "result": trace,
    }


def _command(sub: str, **options) -> str:
    parts = ["gmm-collapse", sub]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list | tuple):
            parts.append(flag)
            parts.extend(_fmt_number(v) for v in value)
        else:
            parts.extend([flag, _fmt_number(value)])
    return " ".join(parts)


def _fmt_number(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


Progress = Callable[[int, int, str], None] | None


def _tell(progress: Progress, i: int, total: int, text: str) -> None:
    if progress is not None:
        progress(i, total, text)


def _summary_line(trace: dict) -> str:
    c = trace["collapse"]
    if c is not None:
        return (
            f"collapse at iteration {c['iteration']}: component {c['component']} on "
            f"{c['n_points']} point(s)"
        )
    return trace["status"]


def sweep_k(
    k_values: Sequence[int] = tuple(range(SWEEP_K_RANGE[0], SWEEP_K_RANGE[1] + 1)),
    seeds: Sequence[int] = tuple(range(SWEEP_SEEDS)),
    *,
    reg_covar: float = 0.0,
    max_iter: int = SWEEP_MAX_ITER,
    tol: float = REFERENCE["tol"],
    collapse_tol: float = REFERENCE["collapse_tol"],
    progress: Progress = None,
) -> dict:
    """How often and how fast EM collapses, over seeds, for each K (reg_covar = 0)."""
    X = collapse_data()
    k_values = [int(k) for k in k_values]
    seeds = [int(s) for s in seeds]
    total = len(k_values) * len(seeds)
    runs, summary, i = [], [], 0
    for K in k_values:
        iterations, single = [], 0
        for seed in seeds:
            i += 1
            t = trace_em(
                X,
                K,
                seed,
                reg_covar=reg_covar,
                max_iter=max_iter,
                tol=tol,
                collapse_tol=collapse_tol,
            )
            c = t["collapse"]
            runs.append(
                {
                    "n_components": K,
                    "seed": seed,
                    "status": t["status"],
                    "n_iter": t["n_iter"],
                    "collapse_iteration": c["iteration"] if c else None,
                    "component": c["component"] if c else None,
                    "n_points": c["n_points"] if c else None,
                    "nk": c["nk"] if c else None,
                    "min_eigenvalue": c["min_eigenvalue"] if c else None,
                }
            )
            if c:
                iterations.append(c["iteration"])
                single += c["n_points"] == 1
            _tell(progress, i, total, f"K={K} seed={seed} {_summary_line(t)}")
        n = len(seeds)
        its = np.asarray(iterations, float)
        summary.append(
            {
                "n_components": K,
                "n_runs": n,
                "n_collapsed": len(iterations),
                "collapse_rate": len(iterations) / n if n else 0.0,
                "n_single_point": int(single),
                "median_iteration": float(np.median(its)) if its.size else None,
                "quartile_iterations": (
                    [float(np.percentile(its, 25)), float(np.percentile(its, 75))]
                    if its.size
                    else None
                ),
                "min_iteration": int(its.min()) if its.size else None,
                "max_iteration": int(its.max()) if its.size else None,
            }
        )
    return {
        "experiment": "sweep-k",
        "format": RECORD_FORMAT,
        "command": _command(
            "sweep-k",
            k_min=min(k_values),
            k_max=max(k_values),
            seeds=len(seeds),
            max_iter=max_iter,
        )
        if k_values == list(range(min(k_values), max(k_values) + 1))
        and seeds == list(range(len(seeds)))
        else None,
        "parameters": {
            "k_values": k_values,
            "seeds": seeds,
            "reg_covar": reg_covar,
            "max_iter": max_iter,
            "tol": tol,
            "collapse_tol": collapse_tol,
            "collapse_threshold": collapse_threshold(X, collapse_tol),
            "init": "gmmlib.datasets.collapse_init(X, n_components, seed)",
        },
        "data": _data_record(X),
        "environment": _environment(),
        "summary": summary,
        "runs": runs,
    }


def sweep_reg(
    regs: Sequence[float] = SWEEP_REGS,
    *,
    n_components: int = REFERENCE["n_components"],
    seed: int = REFERENCE["seed"],
    max_iter: int = SWEEP_MAX_ITER,
    tol: float = SWEEP_TOL,
    collapse_tol: float = REFERENCE["collapse_tol"],
    progress: Progress = None,
) -> dict:
    """Final ln p(X) as reg_covar falls: EM goes on after the collapse (on_collapse="continue").

    Each collapsed direction of a component sitting on n points contributes about
    (n / 2) * ln(1 / reg_covar) to ln p(X) (n points each gain -1/2 ln reg_covar per direction),
    so the expected slope of ln p(X) against -ln(reg_covar) is sum_k n_k * d_k / 2. The record
    holds the measured slope between consecutive values and that prediction.
    """
    X = collapse_data()
    threshold = collapse_threshold(X, collapse_tol)
    regs = [float(r) for r in regs]
    rows = []
    for i, reg in enumerate(regs, 1):
        t = trace_em(
            X,
            n_components,
            seed,
            reg_covar=reg,
            max_iter=max_iter,
            tol=tol,
            collapse_tol=collapse_tol,
            stop_at_collapse=False,
            keep_parameters=True,
        )
        final = t["parameters"][-1]
        covs = np.asarray(final["covariances"])
        resp_points = _hard_counts(X, final)
        collapsed = []
        for k in collapsed_components(covs, reg, threshold):
            collapsed.append(
                {
                    "component": int(k),
                    "n_points": int(resp_points[k]),
                    "collapsed_directions": _n_collapsed_directions(covs[k], reg, threshold),
                }
            )
        predicted = 0.5 * sum(c["n_points"] * c["collapsed_directions"] for c in collapsed)
        rows.append(
            {
                "reg_covar": reg,
                "status": t["status"],
                "n_iter": t["n_iter"],
                "final_log_likelihood": t["final_log_likelihood"],
                "first_collapse": (
                    {key: t["collapse"][key] for key in ("iteration", "component", "n_points")}
                    if t["collapse"]
                    else None
                ),
                "collapsed_at_end": collapsed,
                "predicted_slope": predicted,
                "final_min_eigenvalues": min_eigenvalues(covs).tolist(),
            }
        )
        _tell(
            progress,
            i,
            len(regs),
            f"reg_covar={reg:g} final ln p(X)={_fmt(t['final_log_likelihood'])} "
            f"collapsed={[c['component'] for c in collapsed]}",
        )
    for prev, row in zip(rows, rows[1:], strict=False):
        a, b = prev["final_log_likelihood"], row["final_log_likelihood"]
        if a is None or b is None:
            row["measured_slope"] = None
        else:
            drop = math.log(prev["reg_covar"]) - math.log(row["reg_covar"])
            row["measured_slope"] = (b - a) / drop
    if rows:
        rows[0]["measured_slope"] = None
    return {
        "experiment": "sweep-reg",
        "format": RECORD_FORMAT,
        "command": _command("sweep-reg", components=n_components, seed=seed, max_iter=max_iter)
        if regs == list(SWEEP_REGS)
        else None,
        "parameters": {
            "n_components": n_components,
            "seed": seed,
            "reg_covar_values": regs,
            "max_iter": max_iter,
            "tol": tol,
            "collapse_tol": collapse_tol,
            "collapse_threshold": threshold,
            "on_collapse": "continue",
            "init": "gmmlib.datasets.collapse_init(X, n_components, seed)",
        },
        "data": _data_record(X),
        "environment": _environment(),
        "rows": rows,
    }


def _hard_counts(X, params) -> np.ndarray:
    """Points with responsibility > 0.5 for each component under ``params`` (gmmlib's E-step)."""
    with np.errstate(all="ignore"):
        resp = e_step(X, params["weights"], params["means"], params["covariances"])
    return np.sum(resp > 0.5, axis=0)


FIXES = (
    ("reg_covar=0", 0.0, False),
    (f"reg_covar={FIX_REG:g}", FIX_REG, False),
    ("MAP prior", 0.0, True),
)


def sweep_fixes(
    seeds: Sequence[int] = tuple(range(SWEEP_SEEDS)),
    *,
    n_components: int = REFERENCE["n_components"],
    reference_seed: int = REFERENCE["seed"],
    max_iter: int = SWEEP_MAX_ITER,
    tol: float = REFERENCE["tol"],
    collapse_tol: float = REFERENCE["collapse_tol"],
    progress: Progress = None,
) -> dict:
    """reg_covar=0 (crash), reg_covar=1e-6 (no crash, still collapses), MAP prior (no collapse).

    Every run goes on after a collapse (on_collapse="continue") until EM cannot (a covariance
    with no Cholesky factor: "crashed"), converges, or reaches max_iter. Per run the record keeps
    whether it crashed, the first collapse, and the smallest eigenvalue of any covariance over
    all iterations; the reference seed's smallest-eigenvalue trace is kept for the figure.
    """
    X = collapse_data()
    seeds = [int(s) for s in seeds]
    total = len(FIXES) * len(seeds)
    prior_info = _prior_record(X, n_components, True)
    fixes, i = [], 0
    for name, reg, prior in FIXES:

        def trace(seed, reg=reg, prior=prior):
            return trace_em(
                X,
                n_components,
                seed,
                reg_covar=reg,
                prior=prior,
                max_iter=max_iter,
                tol=tol,
                collapse_tol=collapse_tol,
                stop_at_collapse=False,
            )

        runs, ref = [], None
        for seed in seeds:
            i += 1
            t = trace(seed)
            if seed == reference_seed:
                ref = t
            lam = [min(r["min_eigenvalues"]) for r in t["rows"]]
            finite = [v for v in lam if math.isfinite(v)]
            runs.append(
                {
                    "seed": seed,
                    "status": t["status"],
                    "n_iter": t["n_iter"],
                    "crashed": t["status"] == "crashed",
                    "collapsed": t["collapse"] is not None,
                    "collapse_iteration": t["collapse"]["iteration"] if t["collapse"] else None,
                    "smallest_eigenvalue": min(finite) if finite else None,
                    "final_log_likelihood": t["final_log_likelihood"],
                }
            )
            _tell(
                progress,
                i,
                total,
                f"{name} seed={seed} {t['status']}"
                + (
                    f" (collapse at iteration {t['collapse']['iteration']})"
                    if t["collapse"]
                    else ""
                ),
            )
        if ref is None:  # the reference seed is outside the sweep's seeds
            ref = trace(reference_seed)
        smallest = [r["smallest_eigenvalue"] for r in runs if r["smallest_eigenvalue"] is not None]
        fixes.append(
            {
                "name": name,
                "reg_covar": reg,
                "prior": prior,
                "n_runs": len(runs),
                "n_crashed": sum(r["crashed"] for r in runs),
                "n_collapsed": sum(r["collapsed"] for r in runs),
                "smallest_eigenvalue": min(smallest) if smallest else None,
                "reference_trace": {
                    "seed": reference_seed,
                    "status": ref["status"],
                    "min_eigenvalues": [r["min_eigenvalues"] for r in ref["rows"]],
                    "log_likelihood": [r.get("log_likelihood") for r in ref["rows"]],
                },
                "runs": runs,
            }
        )
    return {
        "experiment": "sweep-fixes",
        "format": RECORD_FORMAT,
        "command": _command(
            "sweep-fixes",
            components=n_components,
            seeds=len(seeds),
            seed=reference_seed,
            max_iter=max_iter,
        )
        if seeds == list(range(len(seeds)))
        else None,
        "parameters": {
            "n_components": n_components,
            "seeds": seeds,
            "reference_seed": reference_seed,
            "fixes": [{"name": n, "reg_covar": r, "prior": p} for n, r, p in FIXES],
            "covariance_prior": prior_info,
            "max_iter": max_iter,
            "tol": tol,
            "collapse_tol": collapse_tol,
            "collapse_threshold": collapse_threshold(X, collapse_tol),
            "on_collapse": "continue",
            "init": "gmmlib.datasets.collapse_init(X, n_components, seed)",
        },
        "data": _data_record(X),
        "environment": _environment(),
        "fixes": fixes,
    }


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _fmt(value, spec: str = ".6g") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def format_table(trace: dict) -> str:
    """The per-iteration table of a run: ln p(X), each n_k and lambda_min, the collapse marked."""
    rows = trace["rows"]
    K = trace["n_components"]
    head = f"{'iter':>4}  {'ln p(X|θ_t-1)':>14}  "
    head += "  ".join(f"{'n_' + str(k):>7}" for k in range(K))
    head += "  " + "  ".join(f"{'λmin_' + str(k):>10}" for k in range(K))
    lines = [head]
    for r in rows:
        line = f"{r['iteration']:>4}  {_fmt(r.get('log_likelihood'), '14.6f'):>14}  "
        line += "  ".join(f"{v:7.3f}" for v in r.get("nk", [math.nan] * K))
        line += "  " + "  ".join(f"{v:10.3e}" for v in r["min_eigenvalues"])
        if r["collapsed"]:
            line += "  <- collapse: component " + ", ".join(str(k) for k in r["collapsed"])
        lines.append(line)
    c = trace["collapse"]
    if c is not None:
        bound = (
            f"threshold {c['threshold']:.3e}"
            if not c["reg_covar"]
            else f"reg_covar + threshold = {c['reg_covar'] + c['threshold']:.6e}"
        )
        lines.append(
            f"COLLAPSE at iteration {c['iteration']}: component {c['component']} sits on "
            f"{c['n_points']} data point(s) (n_k = {c['nk']:.8g}), smallest eigenvalue "
            f"{c['min_eigenvalue']:.3e} <= {bound}"
        )
    if trace["final_log_likelihood"] is not None:
        lines.append(f"final ln p(X | θ_{trace['n_iter']}) = {trace['final_log_likelihood']:.6f}")
    if trace["status"] != "collapsed":
        words = {
            "converged": "converged",
            "max_iter": "stopped at max_iter",
            "crashed": "crashed: a covariance has no Cholesky factor",
        }[trace["status"]]
        lines.append(
            f"{'no collapse' if c is None else 'EM went on'}: {words} after "
            f"{trace['n_iter']} iterations"
        )
    return "\n".join(lines)


def _format_sweep_k(record) -> str:
    lines = [
        f"{'K':>3}  {'collapsed':>10}  {'rate':>5}  {'single point':>12}  "
        f"{'median iter':>11}  {'iter range':>10}"
    ]
    for s in record["summary"]:
        rng = "-" if s["min_iteration"] is None else f"{s['min_iteration']}-{s['max_iteration']}"
        lines.append(
            f"{s['n_components']:>3}  {s['n_collapsed']:>4}/{s['n_runs']:<5}  "
            f"{s['collapse_rate']:5.2f}  {s['n_single_point']:>12}  "
            f"{_fmt(s['median_iteration'], 'g'):>11}  {rng:>10}"
        )
    return "\n".join(lines)


def _format_sweep_reg(record) -> str:
    lines = [f"{'reg_covar':>9}  {'final ln p(X)':>14}  {'slope':>7}  {'predicted':>9}  collapsed"]
    for r in record["rows"]:
        col = (
            ", ".join(
                f"k={c['component']} on {c['n_points']} pt, {c['collapsed_directions']} dir"
                for c in r["collapsed_at_end"]
            )
            or "none"
        )
        lines.append(
            f"{r['reg_covar']:9.0e}  {_fmt(r['final_log_likelihood'], '14.4f'):>14}  "
            f"{_fmt(r.get('measured_slope'), '7.3f'):>7}  {r['predicted_slope']:9.2f}  {col}"
        )
    return "\n".join(lines)


def _format_sweep_fixes(record) -> str:
    floor = record["parameters"]["covariance_prior"]["eigenvalue_floor"]
    lines = [f"{'fix':<16}  {'crashed':>8}  {'collapsed':>9}  {'smallest eigenvalue':>19}"]
    for f in record["fixes"]:
        lines.append(
            f"{f['name']:<16}  {f['n_crashed']:>3}/{f['n_runs']:<4}  "
            f"{f['n_collapsed']:>4}/{f['n_runs']:<4}  {_fmt(f['smallest_eigenvalue'], '19.3e')}"
        )
    lines.append(f"MAP prior eigenvalue floor lambda_min(Psi)/(N+nu+D+1) = {floor:.3e}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Writing outputs: JSON + PNG + SVG, all or nothing
# --------------------------------------------------------------------------------------------


def _jsonable(value):
    """Plain JSON types; non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isfinite(v):
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return value


def record_json(record: dict) -> str:
    """The record as JSON text (stable key order, shortest round-trip floats)."""
    return json.dumps(_jsonable(record), indent=1, allow_nan=False, ensure_ascii=False) + "\n"


def _save_figure(fig, png: Path, svg: Path) -> None:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig.savefig(png, dpi=110, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None, "Creator": None})


def write_outputs(out: Path, outputs: Sequence[tuple[str, dict, Callable]]) -> list[Path]:
    """Write ``name``.json/.png/.svg into ``out`` for each ``(name, record, plot)``.

    Everything is built in a temporary folder inside ``out`` and renamed into place only once
    every file exists, so an error (or Ctrl-C) leaves ``out`` as it was.
    """
    import matplotlib

    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=".gmm-collapse-partial-", dir=out))
    try:
        names = []
        for name, record, plot in outputs:
            (tmp / f"{name}.json").write_text(record_json(record), encoding="utf-8")
            with matplotlib.rc_context(_RC):
                fig = plot(record)
            _save_figure(fig, tmp / f"{name}.png", tmp / f"{name}.svg")
            names += [f"{name}{suffix}" for suffix in (".json", ".png", ".svg")]
        targets = []
        for file_name in names:
            os.replace(tmp / file_name, out / file_name)
            targets.append(out / file_name)
        return targets
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
            outputs.append(("sweep-k", record, plot_sweep_k, _format_sweep_k(record)))
        if args.command in ("sweep-reg", "all"):
            record = sweep_reg(
                args.reg_values,
                n_components=args.components,
                seed=args.seed,
                max_iter=args.sweep_max_iter,
                progress=progress,
            )
            outputs.append(("sweep-reg", record, plot_sweep_reg, _format_sweep_reg(record)))
        if args.command in ("sweep-fixes", "all"):
            record = sweep_fixes(
                range(args.seeds),
                n_components=args.components,
                reference_seed=args.seed,
                max_iter=args.sweep_max_iter,
                progress=progress,
            )
            outputs.append(("sweep-fixes", record, plot_sweep_fixes, _format_sweep_fixes(record)))
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


if __name__ == "__main__":
    raise SystemExit(main())
