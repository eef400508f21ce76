"""The one specification of every autograded part: its cases, data, tolerances and judges.

One `Check` per autograded test cell of the source notebooks (same ``grade_id``; the points stay
in the cell's nbgrader metadata), run twice by the same code. In the student's kernel it is the
cell's hidden tests: `grading.release` writes this module into the source notebooks'
hidden-test blocks and each block calls `run_in_kernel`. Outside the kernel it is the re-check
(`grading.recheck`): the sandbox only *calls* the student's functions (`grading.sandbox._call`,
the same call the kernel uses) and every comparison with gmmlib happens in the grader's process,
which the student's code never touches. The visible tests' cases are among the cases here, so
a part the re-check passes also passes its visible tests. Edit hidden tests here, then run
`make release`. This module runs in the kernel: it imports only numpy, gmmlib and the standard
library.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gmmlib import em as reference
from gmmlib.datasets import collapse_data, collapse_init, old_faithful, tilted_blobs
from gmmlib.diagnostics import COLLAPSE_TOL, collapsed_components
from gmmlib.init import data_covariance
from gmmlib.prior import InverseWishartPrior

Verdict = Callable[[object], "str | None"]  # decoded value -> failure message, or None if right


@dataclass
class Case:
    """Call ``name(*args, **kwargs)`` in the sandbox (or read variable ``name``), then judge."""

    name: str
    judge: Verdict
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    count: tuple = ()  # functions whose calls are counted during the call
    variable: bool = False
    judge_counts: Callable[[dict], str | None] | None = None


@dataclass
class Check:
    """The re-check of one autograded test cell."""

    grade_id: str
    depends: tuple  # answer cells (grade ids) whose code this test runs
    cases: list


@dataclass
class AssignmentSpec:
    checks: list
    blocked: tuple  # packages the student's code may not import


# ----------------------------------------------------------------------------------------------
# Decoding and comparing
# ----------------------------------------------------------------------------------------------


def decode(plain):
    """Plain JSON from the sandbox back to numpy arrays / lists / scalars."""
    if isinstance(plain, list):
        return [decode(v) for v in plain]
    if isinstance(plain, dict):
        if "__array__" in plain:
            if not plain["shape"]:  # a numpy scalar: back to the Python number
                return {"float": float, "int": int, "bool": bool}[plain["kind"]](plain["__array__"])
            arr = np.array(plain["__array__"], dtype=float if plain["kind"] == "float" else None)
            return arr.reshape(plain["shape"]) if arr.size else np.zeros(plain["shape"])
        if "__dict__" in plain:
            return {k: decode(v) for k, v in plain["__dict__"].items()}
        if "__repr__" in plain:
            return _Opaque(plain["__repr__"])
    return plain


class _Opaque:
    """A returned object that is not numbers (shown by its repr in messages)."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def as_array(value):
    """The value as a float array, or None if it is not numbers."""
    if isinstance(value, _Opaque):
        return None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr


def close(name, got, expected, where, rtol=1e-6, atol=1e-8):
    """None if ``got`` matches ``expected``; otherwise a message naming the first bad entry."""
    expected = np.asarray(expected, dtype=float)
    arr = as_array(got)
    if arr is None:
        return f"{where}: {name} is {got!r}, expected numbers of shape {expected.shape}"
    if arr.shape != expected.shape:
        return f"{where}: {name} has shape {arr.shape}, expected {expected.shape}"
    bad = ~np.isclose(arr, expected, rtol=rtol, atol=atol)
    if bad.any():
        if arr.ndim == 0:
            return f"{where}: {name} = {float(arr):.6g}, expected {float(expected):.6g}"
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        return (
            f"{where}: {name}{list(index)} = {arr[index]:.6g}, expected {expected[index]:.6g}"
            f" ({int(bad.sum())} of {bad.size} entries differ)"
        )
    return None


def first_failure(*messages):
    return next((m for m in messages if m), None)


def tuple_of(value, n, what, where):
    if not isinstance(value, list) or len(value) != n:
        return None, f"{where}: {what} should return {n} values, got {value!r:.120}"
    return value, None


# ----------------------------------------------------------------------------------------------
# Assignment 1: EM by hand
# ----------------------------------------------------------------------------------------------


def random_case(rng, N, K, D):
    X = rng.normal(scale=2.0, size=(N, D))
    weights = rng.dirichlet(np.full(K, 0.8))
    means = rng.normal(scale=2.0, size=(K, D))
    A = rng.normal(size=(K, D, D))
    covariances = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(D)
    return X, weights, means, covariances


def _resp_judge(X, weights, means, covariances, where):
    expected = reference.e_step(X, weights, means, covariances)

    def judge(value):
        arr = as_array(value)
        if arr is None or arr.shape != expected.shape:
            shape = None if arr is None else arr.shape
            return f"{where}: e_step returned shape {shape}, expected {expected.shape} = (N, K)"
        if not np.all(np.isfinite(arr)):
            return (
                f"{where}: e_step returned non-finite responsibilities (NaN or inf): "
                "normalise in log space (log-sum-exp)"
            )
        sums = arr.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1) > 1e-8)
        if bad.size:
            i = int(bad[0])
            return f"{where}: responsibilities of row {i} sum to {sums[i]:.6g}, expected 1"
        return close("resp", arr, expected, where)

    return judge


def _e_step_checks():
    hand_X = np.array([[0.0], [1.0], [2.0]])
    hand = (hand_X, np.array([0.5, 0.5]), np.array([[0.0], [2.0]]), np.array([[[1.0]], [[1.0]]]))
    cases = [Case("e_step", _resp_judge(*hand, "e_step on the hand case X (3, 1), K=2"), args=hand)]
    rng = np.random.default_rng(9101)
    for N, K, D in [(7, 2, 1), (60, 3, 2), (250, 4, 3), (40, 5, 5)]:
        params = random_case(rng, N, K, D)
        where = f"e_step on X {params[0].shape}, K={K}, unequal weights {np.round(params[1], 2)}"
        cases.append(Case("e_step", _resp_judge(*params, where), args=params))
    far = (
        np.array([[0.0, 0.0], [1000.0, 900.0], [-700.0, 40.0], [3.0, -2500.0], [80.0, 80.0]]),
        np.array([0.2, 0.3, 0.5]),
        np.array([[0.0, 0.0], [5.0, 1.0], [-4.0, 3.0]]),
        np.array([np.eye(2), [[2.0, 0.3], [0.3, 1.0]], [[1.0, -0.2], [-0.2, 0.5]]]),
    )
    near = (
        np.array([[40.0]]),
        np.array([0.5, 0.5]),
        np.array([[0.0], [1.0]]),
        np.array([[[1.0]], [[1.0]]]),
    )
    stability = [
        Case("e_step", _resp_judge(*near, "e_step on X (1, 1), x=40, K=2"), args=near),
        Case(
            "e_step",
            _resp_judge(*far, "e_step on X (5, 2) with points far from every mean"),
            args=far,
        ),
    ]
    return [
        Check("em_by_hand_e_step_tests", ("em_by_hand_e_step",), cases),
        Check("em_by_hand_e_step_stability", ("em_by_hand_e_step",), stability),
    ]


def _m_step_judge(part, X, resp, where):
    index = {"weights": 0, "means": 1, "covariances": 2}[part]
    expected = reference.m_step(X, resp)[index]

    def judge(value):
        value, problem = tuple_of(value, 3, "m_step", where)
        if problem:
            return problem
        got = as_array(value[index])
        if part == "weights" and got is not None and got.shape == expected.shape:
            if abs(got.sum() - 1) > 1e-8:
                return f"{where}: weights sum to {got.sum():.6g}, expected 1"
        return close(part, value[index], expected, where)

    return judge


def _m_step_checks():
    hand_X = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    hand_resp = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    checks = []
    for part, seed, loc in [
        ("weights", 9202, 0.0),
        ("means", 9303, 3.0),
        ("covariances", 9404, 3.0),
    ]:
        cases = [
            Case(
                "m_step",
                _m_step_judge(part, hand_X, hand_resp, "m_step on the hand case X (3, 2), K=2"),
                args=(hand_X, hand_resp),
            )
        ]
        rng = np.random.default_rng(seed)
        for N, K, D in [(9, 2, 1), (80, 3, 2), (300, 4, 3)]:
            X = rng.normal(loc=loc, scale=2.0, size=(N, D))
            resp = rng.dirichlet(np.full(K, 0.6), size=N)
            where = f"m_step on X {X.shape} with random resp (N={N}, K={K})"
            cases.append(Case("m_step", _m_step_judge(part, X, resp, where), args=(X, resp)))
        checks.append(Check(f"em_by_hand_m_step_{part}", ("em_by_hand_m_step",), cases))
    return checks


def _ll_judge(X, weights, means, covariances, where):
    expected = reference.log_likelihood(X, weights, means, covariances)

    def judge(value):
        arr = as_array(value)
        if arr is None or arr.ndim != 0:
            shape = None if arr is None else arr.shape
            return f"{where}: log_likelihood returned shape {shape}, expected one number (a float)"
        if not np.isfinite(arr):
            return (
                f"{where}: log_likelihood returned {float(arr)}: use log-sum-exp instead of "
                "the log of a sum of exp(...)"
            )
        return close("log_likelihood", arr, expected, where)

    return judge


def _log_likelihood_checks():
    one = (np.zeros((1, 1)), np.array([1.0]), np.zeros((1, 1)), np.ones((1, 1, 1)))
    two = (np.zeros((2, 1)),) + one[1:]
    cases = [
        Case("log_likelihood", _ll_judge(*one, "one point at the mean of N(0, 1)"), args=one),
        Case(
            "log_likelihood",
            _ll_judge(
                *two, "two points at the mean of N(0, 1): the total over points, not the mean"
            ),
            args=two,
        ),
    ]
    rng = np.random.default_rng(9505)
    for N, K, D in [(5, 1, 1), (70, 3, 2), (260, 4, 3)]:
        params = random_case(rng, N, K, D)
        where = (
            f"log_likelihood on X {params[0].shape}, K={K}, "
            f"unequal weights {np.round(params[1], 2)}"
        )
        cases.append(Case("log_likelihood", _ll_judge(*params, where), args=params))
    far = (
        np.array([[0.0, 0.0], [1000.0, 900.0], [-700.0, 40.0]]),
        np.array([0.4, 0.6]),
        np.array([[0.0, 0.0], [5.0, 1.0]]),
        np.array([np.eye(2), [[2.0, 0.3], [0.3, 1.0]]]),
    )
    near = (np.array([[40.0]]), np.array([1.0]), np.zeros((1, 1)), np.ones((1, 1, 1)))
    stability = [
        Case("log_likelihood", _ll_judge(*near, "one point at x=40, N(0, 1)"), args=near),
        Case(
            "log_likelihood",
            _ll_judge(*far, "log_likelihood on X (3, 2) with points far from every mean"),
            args=far,
        ),
    ]
    return [
        Check("em_by_hand_log_likelihood_tests", ("em_by_hand_log_likelihood",), cases),
        Check("em_by_hand_log_likelihood_stability", ("em_by_hand_log_likelihood",), stability),
    ]


def reference_fit(X, means_init, n_iter):
    """The loop `fit_em` must reproduce, with gmmlib's steps."""
    weights = np.full(len(means_init), 1.0 / len(means_init))
    means = np.array(means_init, dtype=float)
    covariances = np.repeat(data_covariance(X)[None], len(means), axis=0)
    lls = [reference.log_likelihood(X, weights, means, covariances)]
    for _ in range(n_iter):
        weights, means, covariances = reference.m_step(
            X, reference.e_step(X, weights, means, covariances)
        )
        lls.append(reference.log_likelihood(X, weights, means, covariances))
    return weights, means, covariances, lls


def _fit_judge(X, means_init, n_iter, where, compare=True):
    K, D = means_init.shape
    expected = reference_fit(X, means_init, n_iter)

    def judge(value):
        value, problem = tuple_of(value, 4, "fit_em", where)
        if problem:
            return problem
        weights, means, covariances, lls = value
        for name, got, shape in [
            ("weights", weights, (K,)),
            ("means", means, (K, D)),
            ("covariances", covariances, (K, D, D)),
        ]:
            arr = as_array(got)
            if arr is None or arr.shape != shape:
                got = None if arr is None else arr.shape
                return f"{where}: {name} shape {got}, expected {shape}"
        lls = as_array(lls)
        if lls is None or lls.shape != (n_iter + 1,):
            return (
                f"{where}: {0 if lls is None else lls.size} log-likelihoods, expected "
                f"{n_iter + 1} (the initial parameters, then one after each iteration)"
            )
        if not compare:
            return None
        return first_failure(
            close("log_likelihoods", lls, expected[3], where),
            close("weights", weights, expected[0], where, rtol=1e-5, atol=1e-7),
            close("means", means, expected[1], where, rtol=1e-5, atol=1e-7),
            close("covariances", covariances, expected[2], where, rtol=1e-5, atol=1e-7),
        )

    return judge


def _monotone_judge(X, n_iter, where):
    def judge(value):
        if not isinstance(value, list) or len(value) != 4:
            return f"{where}: fit_em should return 4 values"
        lls = as_array(value[3])
        if lls is None or lls.shape != (n_iter + 1,):
            count = 0 if lls is None else lls.size
            return f"{where}: {count} log-likelihoods, expected {n_iter + 1}"
        if not np.all(np.isfinite(lls)):
            return f"{where}: non-finite log-likelihood"
        steps = np.diff(lls)
        worst = int(np.argmin(steps))
        if steps[worst] < -1e-8 * abs(lls[worst]):
            return (
                f"{where}: the log-likelihood went down at iteration {worst + 1}, from "
                f"{lls[worst]:.6f} to {lls[worst + 1]:.6f}; EM never decreases it"
            )
        return None

    return judge


def _calls_judge(n_iter, where):
    def judge(counts):
        e, m = counts.get("e_step", 0), counts.get("m_step", 0)
        if e < n_iter or m < n_iter:
            return (
                f"{where}: your e_step ran {e} times and your m_step {m} times; fit_em "
                f"should call each of them once per iteration ({n_iter})"
            )
        return None

    return judge


def _fit_em_checks():
    rng = np.random.default_rng(0)
    small = np.concatenate([rng.normal(-2, 0.5, size=(15, 2)), rng.normal(2, 0.5, size=(15, 2))])
    faithful = old_faithful(standardize=True)
    where = "fit_em on Old Faithful (standardised, (272, 2)), K=2, n_iter=12"
    cases = [
        Case(
            "fit_em",
            _fit_judge(
                small, small[[0, 20]], 3, "fit_em on X (30, 2), K=2, n_iter=3", compare=False
            ),
            args=(small, small[[0, 20]], 3),
        ),
        Case(
            "fit_em",
            _fit_judge(faithful, faithful[[0, 1]], 12, where),
            args=(faithful, faithful[[0, 1]], 12),
            count=("e_step", "m_step"),
            judge_counts=_calls_judge(12, where),
        ),
    ]
    blobs, _ = tilted_blobs(n_samples=240, random_state=7)
    blobs_where = "fit_em on tilted blobs (240, 2), K=3, n_iter=25"
    rng = np.random.default_rng(1)
    two = np.concatenate([rng.normal(-1, 0.7, size=(20, 2)), rng.normal(1.5, 0.7, size=(20, 2))])
    monotone = [
        Case(
            "fit_em",
            _monotone_judge(two, 5, "fit_em on X (40, 2), K=2, n_iter=5"),
            args=(two, two[[0, 1]], 5),
        ),
        Case(
            "fit_em",
            _monotone_judge(blobs, 25, blobs_where),
            args=(blobs, blobs[[3, 100, 200]], 25),
        ),
    ]
    uses = (
        "em_by_hand_e_step",
        "em_by_hand_m_step",
        "em_by_hand_log_likelihood",
        "em_by_hand_fit_em",
    )
    return [
        Check("em_by_hand_fit_em_tests", uses, cases),
        Check("em_by_hand_fit_em_monotone", uses, monotone),
    ]


def em_by_hand() -> AssignmentSpec:
    checks = _e_step_checks() + _m_step_checks() + _log_likelihood_checks() + _fit_em_checks()
    return AssignmentSpec(checks=checks, blocked=("gmmlib", "sklearn"))


# ----------------------------------------------------------------------------------------------
# Assignment 2: break it
# ----------------------------------------------------------------------------------------------


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
    """The loop `run_em` must reproduce: stop before accepting a collapsed M-step."""
    s2 = np.trace(data_covariance(X)) / X.shape[1]
    lls = [reference.log_likelihood(X, weights, means, covariances)]
    for t in range(1, n_iter + 1):
        new = reference.m_step(
            X, reference.e_step(X, weights, means, covariances), reg_covar=reg_covar
        )
        flags = reference_collapsed(new[2], s2, reg_covar, collapse_tol)
        if flags.any():
            return weights, means, covariances, lls, (t, int(np.argmax(flags)))
        weights, means, covariances = new
        lls.append(reference.log_likelihood(X, weights, means, covariances))
    return weights, means, covariances, lls, None


def _flags_judge(expected, where):
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

    return judge


def _with_smallest(cov, value):
    """``cov`` shifted so that its smallest eigenvalue is ``value``."""
    return cov + (value - np.linalg.eigvalsh(cov).min()) * np.eye(len(cov))


def _collapsed_checks():
    visible = np.array([np.eye(2), [[1.0, 1.0], [1.0, 1.0]], [[np.nan, 0.0], [0.0, 1.0]]])
    flat_plus_reg = np.array([[[1.001, 0.0], [0.0, 0.001]], 0.002 * np.eye(2)])
    cases = [
        Case(
            "collapsed",
            _flags_judge(
                [False, True, True], "collapsed(identity, flat [[1,1],[1,1]], NaN) with s2=1"
            ),
            args=(visible, np.float64(1.0)),
        ),
        Case(
            "collapsed",
            _flags_judge(
                [True, False],
                "collapsed(flat + 0.001 I, 0.002 I, s2=1, reg_covar=0.001): reg_covar is "
                "subtracted before the smallest eigenvalue is compared",
            ),
            args=(flat_plus_reg, np.float64(1.0)),
            kwargs={"reg_covar": 1e-3},
        ),
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
        cases.append(
            Case(
                "collapsed",
                _flags_judge(expected, where),
                args=(cov, np.float64(scale)),
                kwargs={"reg_covar": reg},
            )
        )
    tight = "collapsed(identity, 1e-9 I, s2=1, collapse_tol=1e-10): 1e-9 is above 1e-10 * s2"
    cases.append(
        Case(
            "collapsed",
            _flags_judge([False, False], tight),
            args=(np.array([np.eye(2), 1e-9 * np.eye(2)]), np.float64(1.0)),
            kwargs={"collapse_tol": 1e-10},
        )
    )
    inf = np.array([np.eye(2), [[np.inf, 0.0], [0.0, 1.0]]])
    cases.append(
        Case(
            "collapsed",
            _flags_judge([False, True], "collapsed with an infinite covariance"),
            args=(inf, np.float64(1.0)),
        )
    )
    return Check("break_it_collapsed_tests", ("break_it_collapsed",), cases)


def _run_judge(X, start, n_iter, reg, where):
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

    return judge


def visible_collapse_start(X):
    """Component 0 on the point X[0] with a tiny covariance: iteration 2 collapses it."""
    s2 = np.trace(data_covariance(X)) / X.shape[1]
    return (
        np.array([0.5, 0.5]),
        np.array([X[0], X.mean(axis=0)]),
        np.array([0.003 * s2 * np.eye(2), data_covariance(X)]),
    )


def _run_em_checks():
    X = collapse_data()
    first = collapse_init(X, 2, 0)
    two = (first[0], X[[0, 10]], first[2])
    on_a_point = visible_collapse_start(X)
    cases = [
        Case(
            "run_em",
            _run_judge(
                X, two, 10, 0.0, "run_em on the collapse data, K=2 (one mean per group), n_iter=10"
            ),
            args=(X, *two, 10),
        ),
        Case(
            "run_em",
            _run_judge(X, on_a_point, 10, 0.0, "run_em from a component on X[0] (K=2), n_iter=10"),
            args=(X, *on_a_point, 10),
        ),
        Case(
            "run_em",
            _run_judge(
                X,
                on_a_point,
                10,
                1e-3,
                "run_em from a component on X[0] (K=2), n_iter=10, reg_covar=1e-3 (pass "
                "reg_covar to collapsed too: the rule subtracts it; your collapsed must "
                "subtract it, as task 1's test checks)",
            ),
            args=(X, *on_a_point, 10),
            kwargs={"reg_covar": 1e-3},
        ),
    ]
    recipe = [(2, 0.0), (8, 0.0), (5, 0.0), (6, 0.0), (10, 0.0)]
    recipe += [(2, 1e-3), (3, 1e-3), (8, 1e-3), (0, 1e-3)]  # reg_covar stops no collapse
    for seed, reg in recipe:
        start = collapse_init(X, 4, seed)
        where = (
            f"run_em on the collapse data (20, 2), K=4, seed {seed}, reg_covar={reg}, n_iter=100"
        )
        cases.append(
            Case(
                "run_em",
                _run_judge(X, start, 100, reg, where),
                args=(X, *start, 100),
                kwargs={"reg_covar": reg},
            )
        )
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
    for _ in range(n_iter):
        resp = reference.e_step(X, weights, means, covariances)
        weights, means, covariances = reference.m_step(X, resp, prior=prior)
    return weights, means, covariances


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
    for n_iter in (50, 100):
        for seed in range(10):
            start = collapse_init(X, 4, seed)
            where = (
                f"fit_without_collapse on the collapse data (20, 2), K=4, seed {seed}, "
                f"n_iter={n_iter}"
            )
            cases.append(
                Case(
                    "fit_without_collapse",
                    _fix_judge(X, start, n_iter, where),
                    args=(X, *start, n_iter),
                    count=("m_step",),
                    judge_counts=_no_reg_covar(where),
                )
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


SPECS = {"em_by_hand": em_by_hand, "break_it": break_it}


@functools.cache
def spec(assignment: str) -> AssignmentSpec:
    """The assignment's checks, built once per process (inputs and references are seeded)."""
    return SPECS[assignment]()


# ----------------------------------------------------------------------------------------------
# Running a check: in the re-check's sandbox (grading.recheck) or in the student's kernel
# ----------------------------------------------------------------------------------------------


def call_plan(check: Check) -> tuple[list, dict]:
    """The check's cases as one sandbox ``call`` step: (cases, {key: array}).

    The sandbox (`grading.sandbox._call`) calls ``case["name"]`` on the arrays named by the
    keys; literals travel as JSON.
    """
    arrays, cases = {}, []
    for i, case in enumerate(check.cases):
        args = []
        for j, arg in enumerate(case.args):
            if isinstance(arg, np.ndarray):
                key = f"{check.grade_id}__{i}__{j}"
                arrays[key] = arg.copy()
                args.append({"key": key})
            else:
                args.append({"literal": arg.item() if isinstance(arg, np.generic) else arg})
        cases.append(
            {
                "name": case.name,
                "args": args,
                "kwargs": case.kwargs,
                "count": list(case.count),
                "variable": case.variable,
            }
        )
    return cases, arrays


def _shape_text(args):
    shapes = [str(tuple(np.shape(a))) if isinstance(a, np.ndarray) else repr(a) for a in args]
    return ", ".join(shapes)


def judge(check: Check, result: dict) -> dict:
    """The verdict on one check from the sandbox's result: {"passed", "status", "message"}."""
    if result.get("status") != "ok":
        status = result.get("status", "error")
        return {
            "passed": False,
            "status": status,
            "message": f"{check.cases[0].name}: {result.get('error', status)}",
        }
    for case, output in zip(check.cases, result["outputs"], strict=True):
        if "error" in output:
            return {
                "passed": False,
                "status": "error",
                "message": f"{case.name}({_shape_text(case.args)}) raised {output['error']}",
            }
        message = case.judge(decode(output["value"]))
        if message is None and case.judge_counts is not None:
            message = case.judge_counts(output.get("counts", {}))
        if message:
            return {"passed": False, "status": "wrong", "message": message}
    return {"passed": True, "status": "ok", "message": None}


def run_in_kernel(grade_id: str, namespace: dict, call) -> None:
    """The hidden tests of one test cell, in the student's kernel: raise AssertionError if the
    check fails.

    The generated hidden-test blocks (`grading.release`) call this with the notebook's globals
    and the sandbox's own ``call`` (`grading.sandbox._call`), so the kernel and the re-check run
    the same cases through the same call and the same judges: one specification.
    """
    import json
    import warnings

    assignment = next(a for a in SPECS if grade_id.startswith(a + "_"))
    check = next(c for c in spec(assignment).checks if c.grade_id == grade_id)
    cases, arrays = call_plan(check)
    outputs = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for case in cases:
            outputs.append(json.loads(json.dumps(call(namespace, case, arrays, np))))
    verdict = judge(check, {"status": "ok", "outputs": outputs})
    if not verdict["passed"]:
        raise AssertionError(verdict["message"])
