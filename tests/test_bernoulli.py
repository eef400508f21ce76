"""Mixture of Bernoullis (gmmlib.bernoulli): each step against a direct computation, EM's
monotone log-likelihood, recovery of planted parameters, and clear errors."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from gmmlib.bernoulli import (
    check_binary,
    e_step,
    fit_bernoulli_mixture,
    log_likelihood,
    m_step,
)


def planted(N=400, D=12, seed=0):
    """Binary data from 3 components with well-separated probabilities, and the truth."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.5, 0.3, 0.2])
    probs = rng.choice([0.1, 0.9], size=(3, D))
    z = rng.choice(3, size=N, p=weights)
    X = (rng.random((N, D)) < probs[z]).astype(float)
    return X, weights, probs


def direct_densities(X, weights, probs):
    """pi_k prod_d mu^x (1 - mu)^(1 - x), straight from the definition: (N, K)."""
    return np.array(
        [
            [w * np.prod(p**x * (1 - p) ** (1 - x)) for w, p in zip(weights, probs, strict=True)]
            for x in X
        ]
    )


def test_log_likelihood_and_e_step_match_the_definition():
    X, weights, probs = planted(N=50, D=6)
    probs = np.clip(probs + 0.05, 0, 1)
    joint = direct_densities(X, weights, probs)
    assert log_likelihood(X, weights, probs) == pytest.approx(
        np.sum(np.log(joint.sum(1))), rel=1e-12
    )
    np.testing.assert_allclose(
        e_step(X, weights, probs), joint / joint.sum(1, keepdims=True), rtol=1e-12, atol=1e-15
    )


def test_brute_force_marginal_sums_to_one():
    """Summed over all 2^D binary vectors, the mixture's probabilities add up to 1."""
    D = 8
    grid = np.array([[(i >> d) & 1 for d in range(D)] for i in range(2**D)], dtype=float)
    rng = np.random.default_rng(3)
    probs = rng.uniform(0.05, 0.95, size=(4, D))
    weights = rng.dirichlet(np.ones(4))
    log_p = [log_likelihood(x[None], weights, probs) for x in grid]
    assert np.sum(np.exp(log_p)) == pytest.approx(1.0, abs=1e-12)


def test_m_step_is_the_weighted_average():
    X, _, _ = planted(N=60)
    resp = np.random.default_rng(1).dirichlet(np.ones(3), size=len(X))
    weights, probs = m_step(X, resp)
    nk = resp.sum(0)
    np.testing.assert_allclose(weights, nk / len(X))
    for k in range(3):
        np.testing.assert_allclose(probs[k], np.sum(resp[:, k, None] * X, 0) / nk[k])
    _, smoothed = m_step(X, resp, pseudo_count=1.0)
    np.testing.assert_allclose(smoothed[0], (resp[:, 0] @ X + 1) / (nk[0] + 2))


def test_m_step_maximises_the_expected_complete_log_likelihood():
    """Q at the M-step's answer beats Q at nearby parameters."""
    X, _, _ = planted(N=80)
    resp = e_step(
        X,
        np.array([0.4, 0.3, 0.3]),
        np.full((3, X.shape[1]), 0.5)
        + np.random.default_rng(2).uniform(-0.2, 0.2, (3, X.shape[1])),
    )
    weights, probs = m_step(X, resp)

    def Q(w, p):
        logs = np.log(w) + X @ np.log(p).T + (1 - X) @ np.log(1 - p).T
        return np.sum(resp * logs)

    best = Q(weights, probs)
    rng = np.random.default_rng(4)
    for _ in range(20):
        p = np.clip(probs + rng.normal(scale=0.01, size=probs.shape), 1e-6, 1 - 1e-6)
        w = weights * np.exp(rng.normal(scale=0.01, size=3))
        assert Q(w / w.sum(), p) <= best + 1e-9


def test_em_never_decreases_the_log_likelihood():
    X, _, _ = planted()
    fit = fit_bernoulli_mixture(X, 3, max_iter=50, tol=0, random_state=0)
    assert len(fit.log_likelihood) == 51
    assert np.all(np.diff(fit.log_likelihood) >= -1e-9 * abs(fit.log_likelihood[-1]))


def test_em_recovers_planted_parameters_up_to_order():
    X, weights, probs = planted(N=2000, seed=5)
    fit = fit_bernoulli_mixture(X, 3, max_iter=200, tol=1e-8, random_state=0)
    assert fit.converged
    best = min(np.abs(fit.probs[list(order)] - probs).max() for order in permutations(range(3)))
    assert best < 0.06  # 400+ points per component: standard error of mu_kd about 0.015
    assert np.sort(fit.weights) == pytest.approx(np.sort(weights), abs=0.04)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.array([0.0, 1.0]), "2-D"),
        (np.array([[0.0, 0.5]]), r"only 0 and 1.*X\[0, 1\] = 0.5"),
        (np.array([[0.0, np.nan]]), "only 0 and 1"),
    ],
)
def test_non_binary_data_are_named(X, message):
    with pytest.raises(ValueError, match=message):
        check_binary(X)


def test_bad_parameters_are_named():
    X = np.array([[0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="probs must have shape"):
        e_step(X, np.array([1.0]), np.ones((1, 3)) * 0.5)
    with pytest.raises(ValueError, match="weights must sum to 1"):
        e_step(X, np.array([0.5, 0.6]), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        e_step(X, np.array([1.0]), np.array([[0.5, 1.5]]))
    with pytest.raises(ValueError, match="probability 0 under every component"):
        e_step(X, np.array([1.0]), np.array([[0.0, 0.5]]))
    with pytest.raises(ValueError, match="n_components"):
        fit_bernoulli_mixture(X, 3)
    with pytest.raises(ValueError, match="no responsibility"):
        m_step(X, np.array([[1.0, 0.0], [1.0, 0.0]]))
