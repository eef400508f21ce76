"""EM for a mixture of K Poisson distributions: the poisson_mixture assignment's reference.

Counts x_i (N,), weights pi_k (K,), rates lambda_k (K,):

    p(x_i) = sum_k pi_k Pois(x_i | lambda_k),
    ln Pois(x | lambda) = x ln lambda - lambda - ln x!.

E-step: gamma_ik = pi_k Pois(x_i | lambda_k) / sum_j pi_j Pois(x_i | lambda_j), in logarithms.
M-step: N_k = sum_i gamma_ik, pi_k = N_k / N, lambda_k = sum_i gamma_ik x_i / N_k.
Graded by `grading.checks.poisson_mixture`; not shipped to students (the wheel holds gmmlib only).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, logsumexp


def log_poisson(X, rates):
    """ln Pois(x_i | lambda_k) for every count and component: (N, K)."""
    X = np.asarray(X, dtype=float)[:, None]
    rates = np.asarray(rates, dtype=float)[None, :]
    return X * np.log(rates) - rates - gammaln(X + 1)


def log_joint(X, weights, rates):
    """ln pi_k + ln Pois(x_i | lambda_k): (N, K)."""
    return np.log(np.asarray(weights, dtype=float)) + log_poisson(X, rates)


def e_step(X, weights, rates):
    """Responsibilities gamma_ik: (N, K), rows sum to 1 (normalised by log-sum-exp)."""
    joint = log_joint(X, weights, rates)
    return np.exp(joint - logsumexp(joint, axis=1, keepdims=True))


def m_step(X, resp):
    """(weights (K,), rates (K,)) maximising the expected complete-data log-likelihood."""
    X = np.asarray(X, dtype=float)
    resp = np.asarray(resp, dtype=float)
    nk = resp.sum(axis=0)
    return nk / len(X), resp.T @ X / nk


def log_likelihood(X, weights, rates):
    """ln p(X) = sum_i ln sum_k pi_k Pois(x_i | lambda_k): the total over the N counts."""
    return float(np.sum(logsumexp(log_joint(X, weights, rates), axis=1)))


def fit(X, rates_init, n_iter):
    """n_iter EM iterations from equal weights and ``rates_init``: (weights, rates, lls)."""
    rates = np.asarray(rates_init, dtype=float)
    weights = np.full(len(rates), 1.0 / len(rates))
    lls = [log_likelihood(X, weights, rates)]
    for _ in range(n_iter):
        weights, rates = m_step(X, e_step(X, weights, rates))
        lls.append(log_likelihood(X, weights, rates))
    return weights, rates, lls
