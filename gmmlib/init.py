"""Initial parameters for EM: k-means++, random responsibilities, data points, or stated means.

Every initialiser returns ``(weights, means, covariances)`` for full covariances; the estimator
converts them to the requested covariance type. All randomness comes from the ``rng`` passed in.
"""

from __future__ import annotations

import numpy as np

from gmmlib.em import m_step

__all__ = ["INIT_PARAMS", "data_covariance", "init_from_means", "initial_parameters"]

INIT_PARAMS = ("kmeans++", "random", "random_from_data")


def data_covariance(X: np.ndarray) -> np.ndarray:
    """The covariance of all the data, (1/N) sum_i (x_i - mean)(x_i - mean)^T: shape (D, D)."""
    diff = X - X.mean(axis=0)
    return diff.T @ diff / len(X)


def init_from_means(X: np.ndarray, means: np.ndarray):
    """Start from stated means: equal weights, and every covariance is the data covariance.

    This is the start the explorer uses when a mean is dragged and the collapse recipe uses.
    """
    X = np.asarray(X, dtype=np.float64)
    means = np.array(means, dtype=np.float64)
    K = len(means)
    weights = np.full(K, 1.0 / K)
    covariances = np.repeat(data_covariance(X)[None], K, axis=0)
    return weights, means, covariances


def _kmeans_plus_plus(X: np.ndarray, K: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre is drawn with
    probability proportional to its squared distance from the nearest centre so far."""
    N = len(X)
    centres = np.empty((K, X.shape[1]))
    centres[0] = X[rng.integers(N)]
    closest = np.sum((X - centres[0]) ** 2, axis=1)
    for k in range(1, K):
        total = closest.sum()
        idx = rng.choice(N, p=closest / total) if total > 0 else rng.integers(N)
        centres[k] = X[idx]
        np.minimum(closest, np.sum((X - centres[k]) ** 2, axis=1), out=closest)
    return centres


def _hard_responsibilities(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """One-hot responsibilities: each point belongs to its nearest centre."""
    sq_dist = (
        np.sum(X * X, axis=1)[:, None] - 2 * X @ centres.T + np.sum(centres * centres, axis=1)
    )
    resp = np.zeros((len(X), len(centres)))
    resp[np.arange(len(X)), np.argmin(sq_dist, axis=1)] = 1.0
    return resp


def initial_parameters(
    X: np.ndarray, K: int, method: str, rng: np.random.Generator, reg_covar: float
):
    """Initial ``(weights, means, covariances)`` (full) by ``method`` (one of INIT_PARAMS).

    - "kmeans++": k-means++ centres, then one M-step on the hard assignment to them.
    - "random": one M-step on random responsibilities (uniform, rows normalised).
    - "random_from_data": K distinct data points as means (`init_from_means`).
    A component whose starting covariance would be singular (too few points assigned to it)
    starts from the data covariance instead, so EM never starts on a collapse.
    """
    if method == "random_from_data":
        return init_from_means(X, X[rng.choice(len(X), size=K, replace=False)])
    if method == "kmeans++":
        resp = _hard_responsibilities(X, _kmeans_plus_plus(X, K, rng))
    elif method == "random":
        resp = rng.uniform(size=(len(X), K))
        resp /= resp.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"init_params must be one of {INIT_PARAMS}, got {method!r}")
    weights, means, covariances = m_step(X, resp, "full", reg_covar)
    fallback = data_covariance(X)
    for k in range(K):
        if np.linalg.eigvalsh(covariances[k])[0] <= reg_covar + 1e-12 * np.trace(fallback):
            covariances[k] = fallback
    return weights, means, covariances
