"""SQUAREM: EM for a Gaussian mixture, accelerated by squared extrapolation.

EM is a fixed-point map theta -> M(theta) that converges linearly: near a maximum the
error shrinks by a constant factor per step, the largest eigenvalue of M's Jacobian (the
largest fraction of missing information). SQUAREM (Varadhan & Roland 2008, scheme S3) takes
two EM steps, r = M(theta) - theta and v = M(M(theta)) - 2 M(theta) + theta, and jumps to
theta - 2 alpha r + alpha^2 v with alpha = -||r|| / ||v||, then takes one EM step from there.
alpha = -1 is exactly two EM steps; a jump that leaves the parameter space (a weight <= 0, a
covariance not positive definite) or lowers ln p is pulled back towards alpha = -1 by halving
(alpha <- (alpha - 1) / 2), so ln p never decreases.

- `squarem(em_map, theta0)`: the method on any fixed-point map of a flat vector whose map
  also returns the objective at its input (EM's E-step computes ln p on the way).
- `to_vector` / `from_vector`: a Gaussian mixture's parameters as a free vector (K - 1
  weights, the means, the lower triangle of each covariance), the coordinates that both the
  extrapolation and a Jacobian of the EM map use.
- `gmm_em_map(X)`: one EM step of `gmmlib.em` in those coordinates; `squarem_gmm` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gmmlib.em import e_step, log_likelihood, m_step

__all__ = [
    "SquaremResult",
    "squarem",
    "to_vector",
    "from_vector",
    "gmm_em_map",
    "squarem_gmm",
]


@dataclass
class SquaremResult:
    """What `squarem` returns.

    ``theta``: the last parameters (flat vector). ``objective[j]`` is the objective (ln p) at
    the start of cycle j and, last, at ``theta``; ``em_steps[j]`` how many calls of the map
    had been made when ``objective[j]`` was reached (the cost axis for comparing with plain
    EM, which makes one call per iteration). ``alphas``: the step length each cycle used
    (-1 means the jump fell back to two plain EM steps). ``converged``: the last cycle gained
    less than ``tol``.
    """

    theta: np.ndarray
    objective: list[float] = field(default_factory=list)
    em_steps: list[int] = field(default_factory=list)
    alphas: list[float] = field(default_factory=list)
    converged: bool = False


def squarem(em_map, theta0, *, tol=1e-8, max_em_steps=1000):
    """Maximise an objective by SQUAREM on the fixed-point map ``em_map``.

    ``em_map(theta)`` returns ``(M(theta), objective(theta))`` and raises ``ValueError`` or
    ``numpy.linalg.LinAlgError`` when ``theta`` is outside the parameter space. The map must
    not decrease the objective (EM's property), which makes the fallback alpha = -1 safe.
    Stops when a cycle gains less than ``tol`` in the objective, or after about
    ``max_em_steps`` calls of the map.
    """
    theta = np.asarray(theta0, dtype=np.float64)
    if theta.ndim != 1 or theta.size == 0:
        raise ValueError(f"theta0 must be a non-empty 1-D vector, got shape {theta.shape}")
    if not np.all(np.isfinite(theta)):
        raise ValueError("theta0 must be finite (it contains NaN or inf)")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if int(max_em_steps) < 3:
        raise ValueError(f"max_em_steps must be >= 3 (one cycle), got {max_em_steps!r}")
    result = SquaremResult(theta=theta)
    calls = 0
    while True:
        theta1, value = em_map(theta)
        theta2, _ = em_map(theta1)
        calls += 2
        result.objective.append(value)
        result.em_steps.append(calls - 2)
        r = theta1 - theta
        v = theta2 - 2.0 * theta1 + theta
        norm_v = np.linalg.norm(v)
        alpha = -np.linalg.norm(r) / norm_v if norm_v > 0 else -1.0
        alpha = min(alpha, -1.0)
        while True:  # alpha moves to -1 in a few halvings, where the jump is two EM steps
            jump = theta - 2.0 * alpha * r + alpha**2 * v
            try:
                new_theta, new_value = em_map(jump)  # the stabilising EM step
                calls += 1
            except (ValueError, np.linalg.LinAlgError):
                calls += 1
                new_value = -np.inf
            if np.isfinite(new_value) and new_value >= value:
                break
            if alpha == -1.0:  # two plain EM steps never lower the objective
                raise RuntimeError("the map decreased the objective: it is not an EM map")
            alpha = max((alpha - 1.0) / 2.0, -1.0) if alpha < -1.5 else -1.0
        result.alphas.append(float(alpha))
        gain = new_value - value
        theta = new_theta
        if gain < tol or calls + 3 > max_em_steps:
            result.converged = gain < tol
            break
    _, last = em_map(theta)
    result.objective.append(last)
    result.em_steps.append(calls)
    result.theta = theta
    return result


def to_vector(weights, means, covariances):
    """Free parameters of a full-covariance mixture as one vector.

    The first K - 1 weights (the last is 1 minus their sum), the K x D means, and the
    D (D + 1) / 2 lower-triangle entries of each covariance: K - 1 + K D + K D (D + 1) / 2
    numbers, the count of the book's eq:n-parameters.
    """
    weights = np.asarray(weights, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    covariances = np.asarray(covariances, dtype=np.float64)
    K, D = means.shape
    if weights.shape != (K,) or covariances.shape != (K, D, D):
        raise ValueError(
            f"weights (K,) and covariances (K, D, D) must match means (K, D) = {means.shape}; "
            f"got {weights.shape} and {covariances.shape}"
        )
    rows, cols = np.tril_indices(D)
    return np.concatenate([weights[:-1], means.ravel(), covariances[:, rows, cols].ravel()])


def from_vector(theta, K, D):
    """Inverse of `to_vector`: ``(weights, means, covariances)`` with symmetric covariances."""
    theta = np.asarray(theta, dtype=np.float64)
    n_tri = D * (D + 1) // 2
    expected = K - 1 + K * D + K * n_tri
    if theta.shape != (expected,):
        raise ValueError(
            f"theta must have {expected} entries for K = {K}, D = {D}, got shape {theta.shape}"
        )
    weights = np.append(theta[: K - 1], 1.0 - theta[: K - 1].sum())
    means = theta[K - 1 : K - 1 + K * D].reshape(K, D)
    rows, cols = np.tril_indices(D)
    covariances = np.zeros((K, D, D))
    covariances[:, rows, cols] = theta[K - 1 + K * D :].reshape(K, n_tri)
    covariances[:, cols, rows] = covariances[:, rows, cols]
    return weights, means, covariances


def gmm_em_map(X, K, reg_covar=0.0):
    """One EM step of `gmmlib.em` in the coordinates of `to_vector`.

    Returns ``em_map(theta) -> (theta_next, ln p(X | theta))``, total over points. A weight
    <= 0 raises ``ValueError``; a covariance that is not positive definite raises the
    ``LinAlgError`` of the Cholesky factorisation.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (N, D), got {X.shape}")
    D = X.shape[1]

    def em_map(theta):
        weights, means, covariances = from_vector(theta, K, D)
        if np.any(weights <= 0):
            k = int(np.argmin(weights))
            raise ValueError(f"weights must be positive, but weights[{k}] = {weights[k]:g}")
        value = log_likelihood(X, weights, means, covariances)
        resp = e_step(X, weights, means, covariances)
        return to_vector(*m_step(X, resp, reg_covar=reg_covar)), value

    return em_map


def squarem_gmm(X, weights, means, covariances, *, tol=1e-8, max_em_steps=1000, reg_covar=0.0):
    """SQUAREM from a stated start; ``tol`` is on the total ln p per cycle.

    Returns ``((weights, means, covariances), result)`` with the `SquaremResult` for traces.
    """
    K, D = np.shape(means)
    em_map = gmm_em_map(X, K, reg_covar)
    result = squarem(
        em_map, to_vector(weights, means, covariances), tol=tol, max_em_steps=max_em_steps
    )
    return from_vector(result.theta, K, D), result
