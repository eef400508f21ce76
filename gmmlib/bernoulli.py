"""EM for a mixture of Bernoulli distributions: the same two steps, for binary data.

Each point x_i in {0, 1}^D is drawn from component k with probability pi_k, and then every
coordinate independently: p(x | k) = prod_d mu_kd^x_d (1 - mu_kd)^(1 - x_d) (Bishop 2006,
section 9.3.3). Notation as in `gmmlib.em`, with ``probs`` (K, D) = mu_kd in place of the
Gaussian means and covariances:

    x_i, X      X        (N, D)   binary data (0/1)
    pi_k        weights  (K,)
    mu_kd       probs    (K, D)   probability that coordinate d is 1 in component k
    gamma_ik    resp     (N, K)   responsibilities
    N_k         nk       (K,)     soft counts

E-step: gamma_ik = pi_k p(x_i | k) / sum_j pi_j p(x_i | j), in logarithms with log-sum-exp
(a product of 64 probabilities underflows easily). M-step: pi_k = N_k / N and
mu_k = (sum_i gamma_ik x_i + a) / (N_k + 2 a), where a >= 0 is an optional pseudo-count
(a Beta(a + 1, a + 1) prior on each mu_kd; a = 0 is maximum likelihood).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

__all__ = [
    "check_binary",
    "log_component_probs",
    "e_step",
    "m_step",
    "log_likelihood",
    "BernoulliFit",
    "fit_bernoulli_mixture",
]


def check_binary(X) -> np.ndarray:
    """X as a float (N, D) array of zeros and ones, or a ValueError naming what is wrong."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty 2-D array (N, D), got shape {X.shape}")
    bad = ~((X == 0) | (X == 1))
    if bad.any():
        i, d = np.argwhere(bad)[0]
        raise ValueError(
            f"X must contain only 0 and 1 (binary data), but X[{i}, {d}] = {X[i, d]:g}; "
            "binarise it first, e.g. (X > threshold)"
        )
    return X


def _check_parameters(X, weights, probs):
    weights = np.asarray(weights, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != X.shape[1]:
        raise ValueError(
            f"probs must have shape (K, D) with D = {X.shape[1]} (one per column of X), "
            f"got {probs.shape}"
        )
    K = probs.shape[0]
    if weights.shape != (K,):
        raise ValueError(
            f"weights must have shape ({K},), one per row of probs, got {weights.shape}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ValueError(f"weights must be positive and finite, got {weights}")
    if not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
        raise ValueError(f"weights must sum to 1, they sum to {weights.sum():.6g}")
    if not np.all((probs >= 0) & (probs <= 1)):
        k, d = np.argwhere(~((probs >= 0) & (probs <= 1)))[0]
        raise ValueError(f"probs must lie in [0, 1], but probs[{k}, {d}] = {probs[k, d]:g}")
    return weights, probs


def log_component_probs(X, probs):
    """ln p(x_i | k) = sum_d x_id ln mu_kd + (1 - x_id) ln(1 - mu_kd): shape (N, K).

    Two matrix products. A coordinate with mu_kd = 0 (or 1) costs nothing where x_id = 0
    (or 1), as 0 ln 0 = 0, and makes the component impossible (-inf) where x_id = 1 (or 0).
    """
    with np.errstate(divide="ignore"):
        log_mu, log_1m = np.log(probs), np.log1p(-probs)
    out = X @ np.where(probs > 0, log_mu, 0.0).T + (1.0 - X) @ np.where(probs < 1, log_1m, 0.0).T
    impossible = (X @ (probs == 0).T + (1.0 - X) @ (probs == 1).T) > 0
    out[impossible] = -np.inf
    return out


def _log_joint(X, weights, probs):
    X = check_binary(X)
    weights, probs = _check_parameters(X, weights, probs)
    return np.log(weights) + log_component_probs(X, probs)  # ln pi_k + ln p(x_i | k)


def e_step(X, weights, probs):
    """Responsibilities gamma_ik (N, K), each row summing to 1, by log-sum-exp."""
    log_joint = _log_joint(X, weights, probs)
    log_px = logsumexp(log_joint, axis=1, keepdims=True)
    if not np.all(np.isfinite(log_px)):
        i = int(np.flatnonzero(~np.isfinite(log_px))[0])
        raise ValueError(
            f"point {i} has probability 0 under every component (some mu_kd is 0 or 1)"
        )
    return np.exp(log_joint - log_px)


def m_step(X, resp, pseudo_count=0.0):
    """``(weights, probs)`` maximising the expected complete-data log-likelihood (plus the
    Beta prior's log density when ``pseudo_count`` > 0)."""
    X = check_binary(X)
    resp = np.asarray(resp, dtype=np.float64)
    if resp.ndim != 2 or resp.shape[0] != X.shape[0]:
        raise ValueError(f"resp must have shape (N, K) with N = {X.shape[0]}, got {resp.shape}")
    if not pseudo_count >= 0:
        raise ValueError(f"pseudo_count must be >= 0, got {pseudo_count!r}")
    nk = resp.sum(axis=0)
    if np.any(nk <= 0):
        raise ValueError(f"component {int(np.argmin(nk))} has no responsibility (N_k = 0)")
    weights = nk / X.shape[0]
    probs = (resp.T @ X + pseudo_count) / (nk[:, None] + 2.0 * pseudo_count)
    # A weighted average of zeros and ones lies in [0, 1]; rounding can put it 1 ulp outside.
    return weights, np.clip(probs, 0.0, 1.0)


def log_likelihood(X, weights, probs):
    """ln p(X) = sum_i ln sum_k pi_k p(x_i | k), the total over points."""
    return float(np.sum(logsumexp(_log_joint(X, weights, probs), axis=1)))


@dataclass
class BernoulliFit:
    """A fitted mixture: ``weights`` (K,), ``probs`` (K, D); ``log_likelihood[t]`` is ln p(X)
    at iteration t (t = 0 is the start), total over points; ``converged`` as for GaussianMixture
    (the gain per point fell below ``tol``)."""

    weights: np.ndarray
    probs: np.ndarray
    log_likelihood: list[float] = field(default_factory=list)
    converged: bool = False


def fit_bernoulli_mixture(
    X, n_components, *, max_iter=100, tol=1e-4, pseudo_count=0.0, random_state=None
):
    """EM from a random start: equal weights, each mu_kd uniform in [0.25, 0.75].

    Stops when the log-likelihood per point gains less than ``tol`` (with ``pseudo_count`` > 0
    it is the MAP objective that never decreases; ``log_likelihood`` still records ln p(X)).
    """
    X = check_binary(X)
    N, D = X.shape
    K = int(n_components)
    if K != n_components or not 1 <= K <= N:
        raise ValueError(f"n_components must be an integer in [1, N = {N}], got {n_components!r}")
    if int(max_iter) != max_iter or max_iter < 0:
        raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")
    rng = np.random.default_rng(random_state)
    fit = BernoulliFit(weights=np.full(K, 1.0 / K), probs=rng.uniform(0.25, 0.75, size=(K, D)))
    fit.log_likelihood.append(log_likelihood(X, fit.weights, fit.probs))
    for _ in range(int(max_iter)):
        resp = e_step(X, fit.weights, fit.probs)
        fit.weights, fit.probs = m_step(X, resp, pseudo_count)
        fit.log_likelihood.append(log_likelihood(X, fit.weights, fit.probs))
        if abs(fit.log_likelihood[-1] - fit.log_likelihood[-2]) / N < tol:
            fit.converged = True
            break
    return fit
