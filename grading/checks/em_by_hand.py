"""Assignment 1, EM by hand: the checks of e_step, m_step, log_likelihood and fit_em."""

from __future__ import annotations

import functools

import numpy as np

from gmmlib import em as reference
from gmmlib.datasets import old_faithful, tilted_blobs
from gmmlib.init import data_covariance
from grading.checks.base import (
    AssignmentSpec,
    Check,
    as_array,
    case,
    close,
    first_failure,
    ll_judge,
    resp_judge,
    tuple_of,
)


def random_case(rng, N, K, D):
    X = rng.normal(scale=2.0, size=(N, D))
    weights = rng.dirichlet(np.full(K, 0.8))
    means = rng.normal(scale=2.0, size=(K, D))
    A = rng.normal(size=(K, D, D))
    covariances = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(D)
    return X, weights, means, covariances


def _resp_judge(X, weights, means, covariances, where):
    expected = reference.e_step(X, weights, means, covariances)
    advice = "non-finite responsibilities (NaN or inf): normalise in log space (log-sum-exp)"
    return resp_judge(expected, where, advice)


def _e_step_checks():
    hand_X = np.array([[0.0], [1.0], [2.0]])
    hand = (hand_X, np.array([0.5, 0.5]), np.array([[0.0], [2.0]]), np.array([[[1.0]], [[1.0]]]))
    # the visible case with unequal weights: x=1 midway between the means, so resp = weights
    midway = (np.array([[1.0]]), np.array([0.25, 0.75])) + hand[2:]
    where = "e_step on x=1 midway between the means, weights [0.25, 0.75]"
    cases = [
        case("e_step", _resp_judge, hand, "e_step on the hand case X (3, 1), K=2"),
        case("e_step", _resp_judge, midway, where),
    ]
    rng = np.random.default_rng(9101)
    for N, K, D in [(7, 2, 1), (60, 3, 2), (250, 4, 3), (40, 5, 5)]:
        params = random_case(rng, N, K, D)
        where = f"e_step on X {params[0].shape}, K={K}, unequal weights {np.round(params[1], 2)}"
        cases.append(case("e_step", _resp_judge, params, where))
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
        case("e_step", _resp_judge, near, "e_step on X (1, 1), x=40, K=2"),
        case("e_step", _resp_judge, far, "e_step on X (5, 2) with points far from every mean"),
    ]
    return [
        Check("em_by_hand_e_step_tests", ("em_by_hand_e_step",), cases),
        Check("em_by_hand_e_step_stability", ("em_by_hand_e_step",), stability),
    ]


def _m_step_judge(X, resp, where, part):
    index = {"weights": 0, "means": 1, "covariances": 2}[part]
    expected = reference.m_step(X, resp)[index]

    def judge(value):
        value, problem = tuple_of(value, 3, "m_step", where)
        if problem:
            return problem
        got = as_array(value[index])
        if part == "weights" and got is not None and got.shape == expected.shape:
            if abs(got.sum() - 1) > 1e-8:
                return f"{where}: weights sum to {got.sum():.12g}, expected 1"
        hint = _m_step_hint(part, X, resp, value[index])
        return close(part, value[index], expected, where, **hint)

    return judge


def _m_step_variants(part, X, resp):
    """{why: what a classic wrong M-step gives for ``part``} on this case."""
    nk = resp.sum(axis=0)
    N = len(X)
    if part == "weights":
        return {"weights = N_k: divide by N": nk, "divided by K instead of N": nk / len(nk)}
    if part == "means":
        return {
            "means not divided by N_k": resp.T @ X,
            "means divided by N instead of N_k": resp.T @ X / N,
        }
    means = resp.T @ X / nk[:, None]

    def scatter(weights, centre):  # sum_i w_i (x_i - c)(x_i - c)^T
        return (weights[:, None] * (X - centre)).T @ (X - centre)

    K = len(nk)
    return {
        "divided by N instead of N_k": np.array(
            [scatter(resp[:, k], means[k]) / N for k in range(K)]
        ),
        "divided by N_k - 1 (unbiased) instead of N_k": np.array(
            [scatter(resp[:, k], means[k]) / (nk[k] - 1) for k in range(K)]
        ),
        "every point counted fully: weight each outer product by resp[i, k]": np.array(
            [scatter(np.ones(N), means[k]) / nk[k] for k in range(K)]
        ),
        "centred on the data's mean instead of means[k]": np.array(
            [scatter(resp[:, k], X.mean(axis=0)) / nk[k] for k in range(K)]
        ),
    }


def _m_step_hint(part, X, resp, got):
    """``close``'s keyword for naming a classic M-step mistake when ``got`` is one."""
    arr = as_array(got)
    with np.errstate(all="ignore"):  # N_k - 1 = 0 for a component that owns one point
        variants = _m_step_variants(part, X, resp)
    for why, wrong in variants.items():
        if arr is not None and arr.shape == wrong.shape and np.allclose(arr, wrong):
            return {"why": why}
    return {}


def _m_step_checks():
    hand_X = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    hand_resp = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    checks = []
    for part, seed, loc in [
        ("weights", 9202, 0.0),
        ("means", 9303, 3.0),
        ("covariances", 9404, 3.0),
    ]:
        judge = functools.partial(_m_step_judge, part=part)
        cases = [
            case("m_step", judge, (hand_X, hand_resp), "m_step on the hand case X (3, 2), K=2")
        ]
        rng = np.random.default_rng(seed)
        for N, K, D in [(9, 2, 1), (80, 3, 2), (300, 4, 3)]:
            X = rng.normal(loc=loc, scale=2.0, size=(N, D))
            resp = rng.dirichlet(np.full(K, 0.6), size=N)
            where = f"m_step on X {X.shape} with random resp (N={N}, K={K})"
            cases.append(case("m_step", judge, (X, resp), where))
        checks.append(Check(f"em_by_hand_m_step_{part}", ("em_by_hand_m_step",), cases))
    return checks


def _ll_judge(X, weights, means, covariances, where):
    log_density = reference.log_gaussian_density(
        X, means, reference.precision_cholesky(covariances)
    )
    return ll_judge(
        reference.log_likelihood(X, weights, means, covariances),
        float(np.sum(np.log(weights) + log_density)),
        len(X),
        len(weights),
        where,
        density="N(x_i | mu_k, Sigma_k)",
        underflow="use log-sum-exp instead of the log of a sum of exp(...)",
        items="points",
    )


def _log_likelihood_checks():
    one = (np.zeros((1, 1)), np.array([1.0]), np.zeros((1, 1)), np.ones((1, 1, 1)))
    two = (np.zeros((2, 1)),) + one[1:]
    # the visible K=2 case: ln p(x) is the log of a sum over k, not a sum over k of logs
    mix = (np.zeros((1, 1)), np.array([0.5, 0.5]), np.array([[0.0], [2.0]]), np.ones((2, 1, 1)))
    total = "two points at the mean of N(0, 1): the total over points, not the mean"
    cases = [
        case("log_likelihood", _ll_judge, one, "one point at the mean of N(0, 1)"),
        case("log_likelihood", _ll_judge, two, total),
        case("log_likelihood", _ll_judge, mix, "x=0, K=2, weights [0.5, 0.5]"),
    ]
    rng = np.random.default_rng(9505)
    for N, K, D in [(5, 1, 1), (70, 3, 2), (260, 4, 3)]:
        params = random_case(rng, N, K, D)
        where = (
            f"log_likelihood on X {params[0].shape}, K={K}, "
            f"unequal weights {np.round(params[1], 2)}"
        )
        cases.append(case("log_likelihood", _ll_judge, params, where))
    far = (
        np.array([[0.0, 0.0], [1000.0, 900.0], [-700.0, 40.0]]),
        np.array([0.4, 0.6]),
        np.array([[0.0, 0.0], [5.0, 1.0]]),
        np.array([np.eye(2), [[2.0, 0.3], [0.3, 1.0]]]),
    )
    near = (np.array([[40.0]]), np.array([1.0]), np.zeros((1, 1)), np.ones((1, 1, 1)))
    where = "log_likelihood on X (3, 2) with points far from every mean"
    stability = [
        case("log_likelihood", _ll_judge, near, "one point at x=40, N(0, 1)"),
        case("log_likelihood", _ll_judge, far, where),
    ]
    return [
        Check("em_by_hand_log_likelihood_tests", ("em_by_hand_log_likelihood",), cases),
        Check("em_by_hand_log_likelihood_stability", ("em_by_hand_log_likelihood",), stability),
    ]


def reference_fit(X, means_init, n_iter):
    """The loop `fit_em` must reproduce: gmmlib's reference loop (`gmmlib.em.em_loop`) from equal
    weights, the given means and every covariance the data's."""
    weights = np.full(len(means_init), 1.0 / len(means_init))
    means = np.array(means_init, dtype=float)
    covariances = np.repeat(data_covariance(X)[None], len(means), axis=0)
    run = reference.em_loop(X, weights, means, covariances, n_iter)
    return run.weights, run.means, run.covariances, run.log_likelihoods


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


def _monotone_judge(X, means_init, n_iter, where):
    """The history must be EM's from this start (gmmlib's steps), not just never decreasing:
    a constant or a stub's history is monotone too, and earns nothing here."""
    expected = np.asarray(reference_fit(X, means_init, n_iter)[3])

    def judge(value):
        value, problem = tuple_of(value, 4, "fit_em", where)
        if problem:
            return problem
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
        bad = np.flatnonzero(~np.isclose(lls, expected, rtol=1e-6, atol=1e-8))
        if bad.size:
            return (
                f"{where}: the log-likelihood history is not EM's from this start (first "
                f"differs at entry {int(bad[0])}): each entry must come from your own e_step, "
                "m_step and log_likelihood, one iteration at a time"
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
    shapes_only = functools.partial(_fit_judge, compare=False)
    small_where = "fit_em on X (30, 2), K=2, n_iter="
    cases = [
        case("fit_em", shapes_only, (small, small[[0, 20]], 3), small_where + "3"),
        # the visible early-stop case: EM stops changing here long before 30 iterations
        case("fit_em", _fit_judge, (small, small[[0, 20]], 30), small_where + "30"),
        case(
            "fit_em",
            _fit_judge,
            (faithful, faithful[[0, 1]], 12),
            where,
            count=("e_step", "m_step"),
            judge_counts=_calls_judge(12, where),
        ),
    ]
    blobs, _ = tilted_blobs(n_samples=240, random_state=7)
    blobs_where = "fit_em on tilted blobs (240, 2), K=3, n_iter=25"
    rng = np.random.default_rng(1)
    two = np.concatenate([rng.normal(-1, 0.7, size=(20, 2)), rng.normal(1.5, 0.7, size=(20, 2))])
    two_where = "fit_em on X (40, 2), K=2, n_iter=5"
    monotone = [
        case("fit_em", _monotone_judge, (two, two[[0, 1]], 5), two_where),
        case("fit_em", _monotone_judge, (blobs, blobs[[3, 100, 200]], 25), blobs_where),
    ]
    uses = tuple(f"em_by_hand_{part}" for part in ("e_step", "m_step", "log_likelihood", "fit_em"))
    return [
        Check("em_by_hand_fit_em_tests", uses, cases),
        Check("em_by_hand_fit_em_monotone", uses, monotone),
    ]


def em_by_hand() -> AssignmentSpec:
    checks = _e_step_checks() + _m_step_checks() + _log_likelihood_checks() + _fit_em_checks()
    return AssignmentSpec(checks=checks, blocked=("gmmlib", "sklearn"))
