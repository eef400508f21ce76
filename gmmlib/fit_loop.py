"""The estimator's EM loop: E, M, E, M, ... with scikit-learn's convergence test and the
collapse rule after every M-step, yielded one `Step` at a time.

`GaussianMixture.steps` hands the steps to a learner; `GaussianMixture.fit` records them in
``history_`` and keeps the best of ``n_init`` runs. The steps are computed by the fast engine
(`gmmlib._engine`), which tests hold equal to the reference maths (`gmmlib.em`, whose
`em_loop` is the reference's own loop, without the estimator's options).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator

import numpy as np

from gmmlib import _engine
from gmmlib.covariance import COVARIANCE
from gmmlib.diagnostics import CollapseError, CollapseReport, CollapseWarning, min_eigenvalues
from gmmlib.em import SingularCovarianceError, precision_cholesky
from gmmlib.history import Step

__all__ = ["fit_loop"]


def fit_loop(
    gm,
    X,
    weights,
    means,
    covariances,
    *,
    prior,
    rule,
    outcome,
    lower_bound=-np.inf,
) -> Iterator[Step]:
    """EM from (weights, means, covariances) with the options of the `GaussianMixture` ``gm``
    (covariance_type, reg_covar, tol, max_iter, on_collapse, verbose). ``outcome`` receives:
    stop reason, n_iter, collapse, lower bounds, and the returned parameters with their
    log-likelihood and responsibilities."""
    ct, reg = gm.covariance_type, gm.reg_covar
    N = len(X)
    prec_chol = precision_cholesky(covariances, ct)
    lam = min_eigenvalues(covariances, ct)  # of the current parameters
    outcome.update(
        stop=None,
        n_iter=0,
        collapse=None,
        lower_bound=lower_bound,
        lower_bounds=[],
        clock=time.time(),
    )
    converged = False
    for t in range(1, gm.max_iter + 2):
        # E-step on theta_{t-1}: responsibilities and ln p(X | theta_{t-1}).
        resp, log_px = _engine.responsibilities(X, weights, means, prec_chol, ct)
        ll = float(log_px.sum())
        lp = ll + (prior.log_pdf(covariances, prec_chol) if prior is not None else 0.0)
        outcome.update(params=(weights, means, covariances, prec_chol), ll=ll, lp=lp, resp=resp)
        final = converged or t > gm.max_iter  # theta_{t-1} is the result: measure only
        if final:
            outcome["stop"] = "converged" if converged else "max_iter"
        else:  # the convergence test (scikit-learn's): then one more M-step
            previous, outcome["lower_bound"] = outcome["lower_bound"], lp / N
            outcome["lower_bounds"].append(lp / N)
            converged = abs(lp / N - previous) < gm.tol
            _print_round(gm, t, lp / N - previous, outcome)
        yield Step(
            "E",
            t,
            weights,
            means,
            covariances,
            resp,
            resp.sum(axis=0),
            lam,
            ll,
            lp,
            stop=outcome["stop"],
        )
        if final:
            return

        # M-step: theta_t, then the collapse rule.
        weights, means, covariances = _engine.m_step(X, resp, ct, reg, prior)
        lam = min_eigenvalues(covariances, ct)
        new_prec = _usable_precision_cholesky(weights, means, covariances, lam, ct)
        rule_lam = lam if rule.subspace is None else rule.min_eigenvalues(covariances, ct)
        collapsed = rule.collapsed(covariances, reg, ct, eigenvalues=rule_lam)
        if new_prec is None and collapsed.size == 0:  # not positive definite, yet above
            collapsed = np.array([int(np.argmin(np.nan_to_num(lam, nan=-np.inf)))])
        report = None
        if collapsed.size and outcome["collapse"] is None:
            report = outcome["collapse"] = _collapse_report(
                gm, int(collapsed[0]), t, resp, rule_lam, rule.threshold
            )
        halt = bool(collapsed.size) and (gm.on_collapse != "continue" or new_prec is None)
        if halt:
            outcome["stop"] = "collapse"
        yield Step(
            "M",
            t,
            weights,
            means,
            covariances,
            resp,
            resp.sum(axis=0),
            lam,
            collapse=report,
            stop=outcome["stop"],
        )
        if halt:
            if gm.on_collapse == "raise":
                raise CollapseError(outcome["collapse"])
            warnings.warn(outcome["collapse"].message, CollapseWarning, stacklevel=3)
            return
        prec_chol = new_prec
        outcome["n_iter"] = t


def _print_round(gm, t: int, change: float, outcome: dict) -> None:
    if gm.verbose >= 2 and t % gm.verbose_interval == 0:
        now = time.time()
        print(
            f"  Iteration {t}\t time lapse {now - outcome['clock']:.5f}s\t ll change {change:.5f}"
        )
        outcome["clock"] = now


def _collapse_report(gm, k, iteration, resp, lam, threshold) -> CollapseReport:
    tied = COVARIANCE[gm.covariance_type].shared
    return CollapseReport(
        component=0 if tied else k,
        iteration=iteration,
        nk=float(len(resp)) if tied else float(resp[:, k].sum()),
        n_points=len(resp) if tied else int(np.sum(resp[:, k] > 0.5)),
        min_eigenvalue=float(lam[0 if tied else k]),
        threshold=threshold,
        reg_covar=gm.reg_covar,
        n_components=gm.n_components,
    )


def _usable_precision_cholesky(weights, means, covariances, lam, covariance_type):
    """The precision factors of theta_t, or None when EM cannot go on from it: a non-finite
    parameter, or a covariance that is not positive definite (lambda_min <= 0 or no Cholesky)."""
    if not all(np.all(np.isfinite(a)) for a in (weights, means, covariances, lam)):
        return None
    if np.min(lam) <= 0:
        return None
    try:
        return precision_cholesky(covariances, covariance_type)
    except SingularCovarianceError:
        return None
