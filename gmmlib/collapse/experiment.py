"""One run of the collapse experiment: EM from the recipe's start, traced step by step.

`trace_em` steps gmmlib's estimator and records, per iteration, ln p(X), each n_k and each
smallest covariance eigenvalue, and the collapse report; `run_experiment` wraps the trace in a
record with every parameter needed to reproduce it (the `gmm-collapse run` JSON).
"""

from __future__ import annotations

import warnings
from importlib import metadata

import numpy as np

from gmmlib.datasets import collapse_data, collapse_init
from gmmlib.diagnostics import (
    COLLAPSE_TOL,
    CollapseError,
    CollapseRule,
    CollapseWarning,
)
from gmmlib.mixture import GaussianMixture
from gmmlib.prior import InverseWishartPrior

__all__ = [
    "REFERENCE",
    "RECORD_FORMAT",
    "trace_em",
    "run_experiment",
    "environment_record",
    "data_record",
    "prior_record",
    "command_line",
]

#: The reference case: K=4 on the recipe's 20 points, seed 22 (a collapse onto ONE data point).
REFERENCE = {
    "n_components": 4,
    "seed": 22,
    "reg_covar": 0.0,
    "prior": False,
    "max_iter": 100,
    "tol": 1e-3,
    "collapse_tol": COLLAPSE_TOL,
}
#: Version of the JSON record layout (bump when a field changes meaning).
RECORD_FORMAT = 1


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


def trace_em(
    X: np.ndarray,
    n_components: int,
    seed: int,
    *,
    reg_covar: float = 0.0,
    prior: bool = False,
    max_iter: int = 100,
    tol: float = 1e-3,
    collapse_tol: float = COLLAPSE_TOL,
    stop_at_collapse: bool = True,
    keep_parameters: bool = False,
) -> dict:
    """Run EM from ``collapse_init(X, n_components, seed)`` and tabulate every iteration.

    Row t (t = 1, 2, ...) of ``rows`` is EM iteration t: ``log_likelihood`` = ln p(X | theta_{t-1})
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
    rule = CollapseRule.for_data(X, collapse_tol)  # the estimator's rule, data subspace included
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
    last_kind = last_stop = None
    try:
        with warnings.catch_warnings():
            # "continue" warns when EM cannot go on; the record says so in words instead.
            warnings.simplefilter("ignore", CollapseWarning)
            with np.errstate(all="ignore"):
                for step in gm.steps(X):
                    last_kind, last_stop = step.kind, step.stop
                    if step.kind == "E":
                        lls.append(float(step.log_likelihood))
                        lps.append(float(step.log_posterior))
                        nk_pending = [float(v) for v in step.nk]
                        continue
                    bad = rule.collapsed(step.covariances, reg_covar)
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
                        first_report = _report_record(step, reg_covar, rule)
                    if first_report is not None and stop_at_collapse:
                        status = "collapsed"
                        break
    except CollapseError as exc:  # not reached: we stop at the collapsed M-step ourselves
        first_report = first_report or exc.report.as_dict()
        status = "collapsed"
    if status is None:
        if last_kind == "M":  # the generator ends on an M-step only when EM cannot go on
            status = "crashed"
        else:  # the estimator's own stop reason, on its last step
            status = last_stop
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


def _report_record(step, reg_covar: float, rule: CollapseRule) -> dict:
    """gmmlib's CollapseReport of this M-step as a dict, plus the collapsed directions and mean."""
    out = step.collapse.as_dict()
    k = int(out["component"])
    out["collapsed_directions"] = rule.collapsed_directions(step.covariances[k], reg_covar)
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


def environment_record() -> dict:
    """Versions of gmmlib, numpy and matplotlib, for a record's ``environment``."""
    return {
        "gmmlib": metadata.version("gmmlib"),
        "numpy": np.__version__,
        "matplotlib": metadata.version("matplotlib"),
    }


def data_record(X) -> dict:
    """The recipe's data and how it was made, for a record's ``data``."""
    return {
        "source": "gmmlib.datasets.collapse_data()",
        "recipe": "10 points around (-2, 0) and 10 around (2, 0.5), sigma 0.6, default_rng(0)",
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "X": np.asarray(X, float).tolist(),
    }


def prior_record(X, n_components, prior) -> dict | None:
    """The MAP prior's scale and degrees of freedom for a record (None without a prior)."""
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
        "command": command_line(
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
            "covariance_prior": prior_record(X, n_components, prior),
            "max_iter": max_iter,
            "tol": tol,
            "collapse_tol": collapse_tol,
            "collapse_threshold": CollapseRule.for_data(X, collapse_tol).threshold,
            "init": "gmmlib.datasets.collapse_init(X, n_components, seed)",
            "covariance_type": "full",
        },
        "data": data_record(X),
        "environment": environment_record(),
        "result": trace,
    }


def command_line(sub: str, **options) -> str:
    """The ``gmm-collapse`` command line that reproduces a record."""
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
