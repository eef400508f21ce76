"""The collapse sweeps: the same recipe over seeds, K, reg_covar and the fixes.

`sweep_k` (how often and how fast it collapses for K = 2..8), `sweep_reg` (the final ln p(X)
keeps rising as reg_covar falls: the likelihood is unbounded) and `sweep_fixes` (reg_covar
stops the crash, not the collapse; the MAP prior stops the collapse) return plain records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from gmmlib.collapse.experiment import (
    RECORD_FORMAT,
    REFERENCE,
    command_line,
    data_record,
    environment_record,
    prior_record,
    trace_em,
)
from gmmlib.collapse.report import format_value
from gmmlib.datasets import collapse_data
from gmmlib.diagnostics import CollapseRule, collapse_threshold, min_eigenvalues
from gmmlib.em import e_step

SWEEP_K_RANGE = (2, 8)
SWEEP_SEEDS = 100
SWEEP_REGS = tuple(10.0**-e for e in range(2, 13))  # 1e-2 ... 1e-12
FIX_REG = 1e-6
# Sweeps allow 300 iterations, enough for every collapse seen in the K = 2..8 sweep (the slowest
# takes 36). The reg_covar sweep converges tightly (tol 1e-10 per point) so its final ln p(X)
# is the value EM settles on, not a snapshot along the way.
SWEEP_MAX_ITER = 300
SWEEP_TOL = 1e-10


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
        "command": command_line(
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
        "data": data_record(X),
        "environment": environment_record(),
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
    rule = CollapseRule.for_data(X, collapse_tol)  # the estimator's rule
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
        for k in rule.collapsed(covs, reg):
            collapsed.append(
                {
                    "component": int(k),
                    "n_points": int(resp_points[k]),
                    "collapsed_directions": rule.collapsed_directions(covs[k], reg),
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
            f"reg_covar={reg:g} final ln p(X)={format_value(t['final_log_likelihood'])} "
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
        "command": command_line("sweep-reg", components=n_components, seed=seed, max_iter=max_iter)
        if regs == list(SWEEP_REGS)
        else None,
        "parameters": {
            "n_components": n_components,
            "seed": seed,
            "reg_covar_values": regs,
            "max_iter": max_iter,
            "tol": tol,
            "collapse_tol": collapse_tol,
            "collapse_threshold": rule.threshold,
            "on_collapse": "continue",
            "init": "gmmlib.datasets.collapse_init(X, n_components, seed)",
        },
        "data": data_record(X),
        "environment": environment_record(),
        "rows": rows,
    }


def _hard_counts(X, params) -> np.ndarray:
    """Points with responsibility > 0.5 for each component under ``params`` (gmmlib's E-step)."""
    weights, means, covariances = (
        np.asarray(params[name], dtype=float) for name in ("weights", "means", "covariances")
    )
    with np.errstate(all="ignore"):
        resp = e_step(X, weights, means, covariances)
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
    prior_info = prior_record(X, n_components, True)
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
        "command": command_line(
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
        "data": data_record(X),
        "environment": environment_record(),
        "fixes": fixes,
    }
