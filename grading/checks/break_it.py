"""Assignment 2, break it: the checks of collapsed, run_em, collapse_seed and the prior fix."""

from __future__ import annotations

import functools
import itertools

import numpy as np

from gmmlib import em as reference
from gmmlib.datasets import collapse_data, collapse_init
from gmmlib.diagnostics import COLLAPSE_TOL, collapsed_components
from gmmlib.init import data_covariance
from gmmlib.prior import InverseWishartPrior
from grading.checks.base import (
    AssignmentSpec,
    Case,
    Check,
    as_array,
    close,
    first_failure,
    tuple_of,
)


def reference_collapsed(covariances, s2, reg_covar=0.0, collapse_tol=COLLAPSE_TOL):
    """Boolean (K,): gmmlib's collapse rule (`gmmlib.diagnostics`), component by component.

    lambda_min(Sigma_k - reg_covar * I) <= collapse_tol * s2, or Sigma_k not finite. The
    assignment's data vary in every direction, so gmmlib's restriction to the data's subspace
    changes nothing here.
    """
    covariances = np.asarray(covariances, dtype=float)
    threshold = collapse_tol * s2
    return np.array(
        [collapsed_components(cov[None], reg_covar, threshold).size > 0 for cov in covariances],
        dtype=bool,
    )


def reference_run(X, weights, means, covariances, n_iter, reg_covar=0.0, collapse_tol=COLLAPSE_TOL):
    """The loop `run_em` must reproduce: stop before accepting a collapsed M-step (gmmlib's
    reference loop, `gmmlib.em.em_loop`, with gmmlib's collapse rule)."""
    run = reference.em_loop(
        X, weights, means, covariances, n_iter, reg_covar=reg_covar, collapse_tol=collapse_tol
    )
    return tuple(run)


def _flags_case(expected, where, covariances, s2, **kwargs):
    """A case of ``collapsed(covariances, s2, **kwargs)`` whose flags must be ``expected``."""

    def judge(value):
        arr = as_array(value)
        if arr is None or arr.shape != (len(expected),):
            return (
                f"{where}: collapsed returned shape {None if arr is None else arr.shape}, "
                f"expected ({len(expected)},)"
            )
        got = [bool(v) for v in arr]
        if got != list(expected):
            return f"{where}: got {got}, expected {list(expected)}"
        return None

    return Case("collapsed", judge, args=(covariances, np.float64(s2)), kwargs=kwargs)


def _with_smallest(cov, value):
    """``cov`` shifted so that its smallest eigenvalue is ``value``."""
    return cov + (value - np.linalg.eigvalsh(cov).min()) * np.eye(len(cov))


def _collapsed_checks():
    visible = np.array([np.eye(2), [[1.0, 1.0], [1.0, 1.0]], [[np.nan, 0.0], [0.0, 1.0]]])
    flat_plus_reg = np.array([[[1.001, 0.0], [0.0, 0.001]], 0.002 * np.eye(2)])
    reg = (
        "collapsed(flat + 0.001 I, 0.002 I, s2=1, reg_covar=0.001): reg_covar is subtracted "
        "before the smallest eigenvalue is compared"
    )
    where = "collapsed(identity, flat [[1,1],[1,1]], NaN) with s2=1"
    cases = [
        _flags_case([False, True, True], where, visible, 1.0),
        _flags_case([True, False], reg, flat_plus_reg, 1.0, reg_covar=1e-3),
    ]
    rng = np.random.default_rng(9011)
    for D, scale, reg in [(2, 1.0, 0.0), (3, 1e-4, 1e-7), (4, 1e4, 30.0), (2, 2.5, 1e-3)]:
        A = rng.normal(size=(6, D, D))
        cov = (A @ A.transpose(0, 2, 1) + 0.1 * np.eye(D)) * scale
        v = rng.normal(size=D)
        cov[1] = np.outer(v, v) * scale + reg * np.eye(D)  # rank one, plus reg_covar
        cov[3] = _with_smallest(cov[3], reg + 0.5e-8 * scale)
        cov[4] = _with_smallest(cov[4], reg + 2e-8 * scale)
        cov[5] = _with_smallest(cov[5], 0.5 * reg) if reg else cov[5]  # below reg_covar
        expected = [False, True, False, True, False, bool(reg)]
        where = (
            f"collapsed on covariances (6, {D}, {D}) with s2={scale:g}, reg_covar={reg:g} "
            "(after subtracting reg_covar, components 3 and 4 have smallest eigenvalues "
            "0.5e-8 and 2e-8 times s2)"
        )
        cases.append(_flags_case(expected, where, cov, scale, reg_covar=reg))
    tight = "collapsed(identity, 1e-9 I, s2=1, collapse_tol=1e-10): 1e-9 is above 1e-10 * s2"
    small = np.array([np.eye(2), 1e-9 * np.eye(2)])
    cases.append(_flags_case([False, False], tight, small, 1.0, collapse_tol=1e-10))
    inf = np.array([np.eye(2), [[np.inf, 0.0], [0.0, 1.0]]])
    cases.append(_flags_case([False, True], "collapsed with an infinite covariance", inf, 1.0))
    return Check("break_it_collapsed_tests", ("break_it_collapsed",), cases)


def _run_case(X, start, n_iter, reg, where, **kwargs):
    """A case of ``run_em(X, *start, n_iter, **kwargs)``, which must be `reference_run`'s."""
    expected = reference_run(X, *start, n_iter, reg_covar=reg)

    def judge(value):
        value, problem = tuple_of(value, 5, "run_em", where)
        if problem:
            return problem
        collapse = value[4]
        if collapse is not None:
            try:
                collapse = tuple(int(v) for v in collapse)
            except (TypeError, ValueError):
                return f"{where}: collapse = {collapse!r}, expected {expected[4]}"
        if collapse != expected[4]:
            return (
                f"{where}: collapse = {collapse}, expected {expected[4]} (iteration, component); "
                "run_em uses your collapsed: if its test fails, fix collapsed first"
            )
        lls = as_array(value[3])
        if lls is None or lls.shape != (len(expected[3]),):
            return (
                f"{where}: {0 if lls is None else lls.size} log-likelihoods, expected "
                f"{len(expected[3])}"
            )
        return first_failure(
            close("log_likelihoods", lls, expected[3], where, rtol=1e-9, atol=1e-12),
            *(
                close(
                    name, got, exp, where + " (the last accepted parameters)", rtol=1e-9, atol=1e-12
                )
                for name, got, exp in zip(
                    ("weights", "means", "covariances"), value[:3], expected[:3], strict=True
                )
            ),
        )

    args = (X, *start, n_iter)
    return Case("run_em", judge, args=args, kwargs=kwargs, explain_error=_collapse_crash)


def visible_collapse_start(X):
    """Component 0 on the point X[0] with a tiny covariance: iteration 2 collapses it."""
    s2 = np.trace(data_covariance(X)) / X.shape[1]
    return (
        np.array([0.5, 0.5]),
        np.array([X[0], X.mean(axis=0)]),
        np.array([0.003 * s2 * np.eye(2), data_covariance(X)]),
    )


def _collapse_crash(error: str) -> str | None:
    """Why run_em crashed, when a collapsed covariance reached gmmlib's Cholesky factorisation."""
    if "Cholesky" in error or "LinAlgError" in error or "SingularCovariance" in error:
        return (
            "a collapsed covariance reached the next E-step; check the new covariances with "
            "collapsed(...) after every M-step and stop before using them"
        )
    return None


def _run_em_checks():
    X = collapse_data()
    first = collapse_init(X, 2, 0)
    two = (first[0], X[[0, 10]], first[2])
    on_a_point = visible_collapse_start(X)
    reg_where = (
        "run_em from a component on X[0] (K=2), n_iter=10, reg_covar=1e-3 (pass reg_covar to "
        "collapsed too: the rule subtracts it; your collapsed must subtract it, as task 1's test "
        "checks)"
    )
    cases = [
        _run_case(
            X, two, 10, 0.0, "run_em on the collapse data, K=2 (one mean per group), n_iter=10"
        ),
        _run_case(X, on_a_point, 10, 0.0, "run_em from a component on X[0] (K=2), n_iter=10"),
        _run_case(X, on_a_point, 10, 1e-3, reg_where, reg_covar=1e-3),
    ]
    recipe = [(2, 0.0), (8, 0.0), (5, 0.0), (6, 0.0), (10, 0.0)]
    recipe += [(2, 1e-3), (3, 1e-3), (8, 1e-3), (0, 1e-3)]  # reg_covar stops no collapse
    for seed, reg in recipe:
        where = (
            f"run_em on the collapse data (20, 2), K=4, seed {seed}, reg_covar={reg}, n_iter=100"
        )
        cases.append(_run_case(X, collapse_init(X, 4, seed), 100, reg, where, reg_covar=reg))
    return Check("break_it_run_em_tests", ("break_it_collapsed", "break_it_run_em"), cases)


def _seed_judge(value):
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return f"collapse_seed should be an int, got {value!r}"
    X = collapse_data()
    result = reference_run(X, *collapse_init(X, 4, int(value)), 50)
    if result[4] is None:
        return (
            f"with collapse_seed={int(value)} plain EM (K=4, reg_covar=0) does not "
            "collapse within 50 iterations by the rule of task 1"
        )
    return None


#: How far task 4's parameters may be from gmmlib's EM with the task's prior, relative to the
#: data's variance s2 (weights: absolute). Two correct loops differ by rounding only (~1e-13
#: after 100 iterations: EM with this prior contracts); a covariance floor the task forbids
#: (reg_covar, or r * I added by hand) moves them by about r, so any r above 1e-6 * s2 fails.
FIX_RTOL = 1e-6


def prior_run(X, weights, means, covariances, n_iter):
    """Task 4's reference: n_iter EM iterations with the task's prior and reg_covar=0."""
    prior = InverseWishartPrior.from_data(X, len(weights))
    run = reference.em_loop(X, weights, means, covariances, n_iter, prior=prior)
    return run.weights, run.means, run.covariances


def _fix_judge(X, start, n_iter, where):
    s2 = np.trace(data_covariance(X)) / X.shape[1]
    expected = functools.cache(lambda: prior_run(X, *start, n_iter))

    def judge(value):
        value, problem = tuple_of(value, 4, "fit_without_collapse", where)
        if problem:
            return problem
        arrays = [as_array(v) for v in value[:3]]
        shapes = [(4,), (4, 2), (4, 2, 2)]
        if any(a is None or a.shape != s for a, s in zip(arrays, shapes, strict=True)):
            return f"{where}: parameters should have shapes (4,), (4, 2), (4, 2, 2)"
        weights, means, covariances = arrays
        lls = as_array(value[3])
        if lls is None or lls.shape != (n_iter + 1,):
            count = 0 if lls is None else lls.size
            return (
                f"{where}: {count} log-likelihoods, expected {n_iter + 1} (the start, then one "
                "per iteration)"
            )
        if not all(np.all(np.isfinite(a)) for a in (weights, means, covariances, lls)):
            return f"{where}: non-finite parameters or log-likelihoods: the fit collapsed"
        flags = reference_collapsed(covariances, s2)
        if flags.any():
            k = int(np.argmax(flags))
            smallest = np.linalg.eigvalsh(covariances[k]).min()
            return (
                f"{where}: component {k} has collapsed by the rule of task 1: its smallest "
                f"covariance eigenvalue {smallest:.3g} <= collapse_tol * s2 = "
                f"{COLLAPSE_TOL * s2:.3g}"
            )
        if abs(weights.sum() - 1) > 1e-8:
            return f"{where}: weights sum to {weights.sum():.6g}, expected 1"
        if np.any(means < X.min(axis=0) - 1e-9) or np.any(means > X.max(axis=0) + 1e-9):
            return f"{where}: a mean left the data's range"
        if np.any(weights <= 0):
            return f"{where}: a weight is not positive"
        final = reference.log_likelihood(X, weights, means, covariances)
        initial = reference.log_likelihood(X, *start)
        if not final > initial:
            return (
                f"{where}: the final log-likelihood {final:.4g} is not above the initial one "
                f"{initial:.4g}: the prior is so strong that nothing is fitted"
            )
        w_ref, mu_ref, cov_ref = expected()
        gaps = (
            np.abs(weights - w_ref).max(),
            np.abs(means - mu_ref).max() / np.sqrt(s2),
            np.abs(covariances - cov_ref).max() / s2,
        )
        if max(gaps) > FIX_RTOL:
            return (
                f"{where}: the parameters are not those of EM with the task's prior "
                "(InverseWishartPrior.from_data(X, 4), reg_covar=0) from this start: largest "
                f"difference {max(gaps):.2g} (weights, means / s, covariances / s2). Use "
                "exactly that prior and add nothing to the covariances (no reg_covar, no r * I)"
            )
        return None

    return judge


def _no_reg_covar(where):
    def judge(counts):
        reg = counts.get("m_step(reg_covar)", 0.0)
        if reg:
            return (
                f"{where}: your m_step calls use reg_covar={reg:g}. reg_covar cannot prevent a "
                "collapse: the rule of task 1 subtracts it, and the component still shrinks "
                "onto its points. Use a prior (m_step(X, resp, prior=prior)) with reg_covar=0"
            )
        return None

    return judge


def _fix_checks():
    X = collapse_data()
    cases = []
    for n_iter, seed in itertools.product((50, 100), range(10)):
        start = collapse_init(X, 4, seed)
        where = (
            f"fit_without_collapse on the collapse data (20, 2), K=4, seed {seed}, n_iter={n_iter}"
        )
        judge, counts = _fix_judge(X, start, n_iter, where), _no_reg_covar(where)
        args = (X, *start, n_iter)
        cases.append(
            Case("fit_without_collapse", judge, args, count=("m_step",), judge_counts=counts)
        )
    return Check("break_it_fix_tests", ("break_it_fix",), cases)


def break_it() -> AssignmentSpec:
    checks = [
        _collapsed_checks(),
        _run_em_checks(),
        Check(
            "break_it_collapse_seed_tests",
            ("break_it_collapse_seed",),
            [Case("collapse_seed", _seed_judge, variable=True)],
        ),
        _fix_checks(),
    ]
    return AssignmentSpec(checks=checks, blocked=())
