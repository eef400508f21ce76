"""Initial parameters for EM: k-means, k-means++ seeds, random responsibilities, data points, or
stated means.

The names are scikit-learn's ``init_params`` ("kmeans", its default, "k-means++", "random",
"random_from_data"). gmmlib cannot import scikit-learn, so "kmeans" is a small k-means of its own
(Lloyd's iterations from a k-means++ seeding). Every initialiser returns ``(weights, means,
covariances)`` for full covariances, ``reg_covar`` already added to every covariance as
scikit-learn does; the estimator converts them to the requested covariance type. All randomness
comes from the ``rng`` passed in, and every distance is taken on data centred on their mean, so
the start does not move when the data are translated (|x - c|^2 = |x|^2 - 2 x.c + |c|^2 cancels
catastrophically far from the origin).
"""

from __future__ import annotations

import numpy as np

from gmmlib.diagnostics import COLLAPSE_TOL, CollapseRule
from gmmlib.em import m_step

__all__ = [
    "INIT_PARAMS",
    "data_covariance",
    "init_from_means",
    "initial_parameters",
    "kmeans",
]

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
#: Older gmmlib spellings still accepted, so code written for earlier versions runs.
INIT_ALIASES = {"kmeans++": "k-means++"}
#: Lloyd's iterations stop when no point changes cluster, or after this many.
KMEANS_MAX_ITER = 300


def data_covariance(X: np.ndarray) -> np.ndarray:
    """The covariance of all the data, (1/N) sum_i (x_i - mean)(x_i - mean)^T: shape (D, D)."""
    diff = X - X.mean(axis=0)
    return diff.T @ diff / len(X)


def init_from_means(X: np.ndarray, means: np.ndarray, reg_covar: float = 0.0):
    """Start from stated means: equal weights, and every covariance is the data covariance
    (plus ``reg_covar`` on its diagonal, so rank-deficient data still give a usable start).

    This is the start the explorer uses when a mean is dragged and the collapse recipe uses.
    """
    X = np.asarray(X, dtype=np.float64)
    means = np.array(means, dtype=np.float64)
    K = len(means)
    weights = np.full(K, 1.0 / K)
    cov = data_covariance(X) + reg_covar * np.eye(X.shape[1])
    return weights, means, np.repeat(cov[None], K, axis=0)


def _squared_distances(Xc: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """|x_i - c_k|^2 for centred data: shape (N, K), clipped at 0 against rounding."""
    sq = np.sum(Xc * Xc, axis=1)[:, None] - 2 * Xc @ centres.T + np.sum(centres**2, axis=1)
    return np.maximum(sq, 0.0)


def _kmeans_plus_plus(Xc: np.ndarray, K: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of k-means++ seeds (Arthur & Vassilvitskii 2007): each new seed is drawn with
    probability proportional to its squared distance from the nearest seed so far."""
    N = len(Xc)
    chosen = [int(rng.integers(N))]
    closest = np.sum((Xc - Xc[chosen[0]]) ** 2, axis=1)
    for _ in range(1, K):
        total = closest.sum()
        idx = int(rng.choice(N, p=closest / total)) if total > 0 else int(rng.integers(N))
        chosen.append(idx)
        np.minimum(closest, np.sum((Xc - Xc[idx]) ** 2, axis=1), out=closest)
    return np.array(chosen)


def kmeans(X: np.ndarray, K: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster labels (N,) by k-means: k-means++ seeds, then Lloyd's iterations (assign each
    point to its nearest centre, move each centre to the mean of its points) until no label
    changes. A cluster that empties keeps its centre."""
    Xc = X - X.mean(axis=0)
    centres = Xc[_kmeans_plus_plus(Xc, K, rng)]
    labels = np.argmin(_squared_distances(Xc, centres), axis=1)
    for _ in range(KMEANS_MAX_ITER):
        counts = np.bincount(labels, minlength=K)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, Xc)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        new = np.argmin(_squared_distances(Xc, centres), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def _one_hot(labels: np.ndarray, K: int) -> np.ndarray:
    resp = np.zeros((len(labels), K))
    resp[np.arange(len(labels)), labels] = 1.0
    return resp


def initial_parameters(
    X: np.ndarray,
    K: int,
    method: str,
    rng: np.random.Generator,
    reg_covar: float,
    collapse_tol: float = COLLAPSE_TOL,
):
    """Initial ``(weights, means, covariances)`` (full) by ``method`` (one of INIT_PARAMS).

    - "kmeans": one M-step on the hard assignment of a k-means clustering (`kmeans`).
    - "k-means++": one M-step on the hard assignment to k-means++ seeds (scikit-learn gives
      each seed only itself; here every point joins its nearest seed, a start EM can use).
    - "random": one M-step on random responsibilities (uniform, rows normalised).
    - "random_from_data": K distinct data points as means (`init_from_means`).
    A component whose starting covariance is already collapsed by gmmlib's rule (too few points
    assigned to it) starts from the data covariance instead, so EM never starts on a collapse.
    """
    method = INIT_ALIASES.get(method, method)
    if method == "random_from_data":
        return init_from_means(X, X[rng.choice(len(X), size=K, replace=False)], reg_covar)
    if method == "kmeans":
        resp = _one_hot(kmeans(X, K, rng), K)
    elif method == "k-means++":
        Xc = X - X.mean(axis=0)
        resp = _one_hot(
            np.argmin(_squared_distances(Xc, Xc[_kmeans_plus_plus(Xc, K, rng)]), axis=1), K
        )
    elif method == "random":
        resp = rng.uniform(size=(len(X), K))
        resp /= resp.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"init_params must be one of {INIT_PARAMS}, got {method!r}")
    weights, means, covariances = m_step(X, resp, "full", reg_covar)
    fallback = data_covariance(X) + reg_covar * np.eye(X.shape[1])
    for k in CollapseRule.for_data(X, collapse_tol).collapsed(covariances, reg_covar):
        covariances[k] = fallback
    return weights, means, covariances
