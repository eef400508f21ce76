"""The checks of poisson_mixture: EM for a mixture of Poissons, derived by the student.

The same structure as `grading.checks` (one `Check` per autograded test cell, its `Case`s calling
the student's functions, judges comparing the returned numbers with a reference), but the
reference is `grading.references.poisson`, which lives with the course and not in the student
wheel: these checks run in the grader's process only, never in the student's kernel. Where a
wrong answer is a classic one (the log-likelihood as a sum over k of logs, rates divided by N
instead of N_k, no normalisation), the message says which.
"""

from __future__ import annotations

import numpy as np

from grading.checks.base import (
    AssignmentSpec,
    Check,
    as_array,
    case,
    close,
    ll_judge,
    resp_judge,
    tuple_of,
)
from grading.references import poisson as reference

ASSIGNMENT = "poisson_mixture"


def random_case(rng, N, K):
    """Counts from K Poissons with distinct rates, unequal weights and the rates to test at."""
    true_rates = np.sort(rng.uniform(0.5, 30.0, size=K))
    X = rng.poisson(true_rates[rng.integers(K, size=N)]).astype(float)
    weights = rng.dirichlet(np.full(K, 0.8))
    rates = true_rates * rng.uniform(0.7, 1.3, size=K)
    return X, weights, rates


def _describe(X, weights, rates) -> str:
    return f"X of {len(X)} counts, K={len(weights)}, rates {np.round(rates, 3).tolist()}"


def _resp_judge(X, weights, rates, where):
    unnormalised = np.exp(reference.log_joint(X, weights, rates))
    advice = (
        "NaN or inf: pi_k Pois(x | lambda_k) underflows to 0 for large counts, so normalise "
        "in log space (log-sum-exp)"
    )

    def hint(arr):
        given_unnormalised = np.allclose(arr, unnormalised)
        return " (not normalised: divide by the sum over k)" if given_unnormalised else ""

    expected = reference.e_step(X, weights, rates)
    return resp_judge(expected, where, advice, rtol=1e-7, sum_digits=12, hint=hint)


def _e_step_check():
    hand = (np.array([0.0, 2.0, 10.0]), np.array([0.5, 0.5]), np.array([1.0, 8.0]))
    cases = [case("e_step", _resp_judge, hand, "e_step, hand case " + _describe(*hand))]
    rng = np.random.default_rng(7301)
    for N, K in [(6, 1), (40, 2), (150, 3), (300, 5)]:
        params = random_case(rng, N, K)
        cases.append(case("e_step", _resp_judge, params, f"e_step, {_describe(*params)}"))
    far = (np.array([1000.0, 0.0, 2500.0]), np.array([0.3, 0.7]), np.array([1.0, 2.0]))
    cases.append(case("e_step", _resp_judge, far, "e_step, counts far above every rate"))
    return Check(f"{ASSIGNMENT}_e_step_tests", (f"{ASSIGNMENT}_e_step",), cases)


def _m_step_judge(X, resp, where):
    weights, rates = reference.m_step(X, resp)
    over_n = resp.T @ X / len(X)

    def judge(value):
        value, problem = tuple_of(value, 2, "m_step", where)
        if problem:
            return problem
        got_weights, got_rates = as_array(value[0]), as_array(value[1])
        if got_weights is not None and got_weights.shape == weights.shape:
            if abs(got_weights.sum() - 1) > 1e-8:
                return (
                    f"{where}: weights sum to {got_weights.sum():.12g}, expected 1 (pi_k = N_k / N)"
                )
        if got_rates is not None and got_rates.shape == rates.shape and len(rates) > 1:
            if np.allclose(got_rates, over_n) and not np.allclose(got_rates, rates):
                return (
                    f"{where}: rates = {np.round(got_rates, 6).tolist()} are "
                    "sum_i gamma_ik x_i / N; each rate is a weighted mean, divided by N_k: "
                    "expected "
                    f"{np.round(rates, 6).tolist()}"
                )
        return close("weights", value[0], weights, where) or close("rates", value[1], rates, where)

    return judge


def _m_step_check():
    hand_X = np.array([1.0, 3.0, 20.0])
    hand_resp = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    where = "m_step, hand case: counts 1 and 3 in component 0, 20 in component 1"
    cases = [case("m_step", _m_step_judge, (hand_X, hand_resp), where)]
    rng = np.random.default_rng(7402)
    for N, K in [(8, 2), (90, 3), (400, 4)]:
        X = random_case(rng, N, K)[0]
        resp = rng.dirichlet(np.full(K, 0.6), size=N)
        where = f"m_step on {N} counts with random resp (K={K})"
        cases.append(case("m_step", _m_step_judge, (X, resp), where))
    return Check(f"{ASSIGNMENT}_m_step_tests", (f"{ASSIGNMENT}_m_step",), cases)


def _ll_judge(X, weights, rates, where):
    return ll_judge(
        reference.log_likelihood(X, weights, rates),
        float(np.sum(reference.log_joint(X, weights, rates))),
        len(X),
        len(weights),
        where,
        density="Pois(x_i | lambda_k)",
        underflow="the densities underflow for large counts; use log-sum-exp over k instead of "
        "the log of a sum of exp(...)",
        items="counts",
        rtol=1e-9,
        atol=1e-9,
    )


def _log_likelihood_check():
    one = (np.array([2.0]), np.array([1.0]), np.array([2.0]))
    cases = [case("log_likelihood", _ll_judge, one, "one count x=2, one Poisson of rate 2")]
    rng = np.random.default_rng(7503)
    for N, K in [(5, 2), (60, 3), (250, 4)]:
        params = random_case(rng, N, K)
        where = f"log_likelihood, {_describe(*params)}"
        cases.append(case("log_likelihood", _ll_judge, params, where))
    far = (np.array([1000.0, 3.0, 2500.0]), np.array([0.3, 0.7]), np.array([1.0, 2.0]))
    where = "log_likelihood, counts far above every rate"
    cases.append(case("log_likelihood", _ll_judge, far, where))
    return Check(f"{ASSIGNMENT}_log_likelihood_tests", (f"{ASSIGNMENT}_log_likelihood",), cases)


def poisson_mixture() -> AssignmentSpec:
    """Every autograded part of poisson_mixture (the derivation is graded by hand)."""
    checks = [_e_step_check(), _m_step_check(), _log_likelihood_check()]
    return AssignmentSpec(checks=checks, blocked=("gmmlib", "sklearn"))
