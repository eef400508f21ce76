"""Input checks at the public boundary: each bad input gets a ValueError that names the problem.

The maths in `gmmlib.em` trusts its inputs; everything a user hands to the estimator (or to
`check_parameters`) is checked here once, so a mistake never surfaces as a NaN or a traceback
from deep inside numpy.
"""

from __future__ import annotations

import numpy as np

from gmmlib.em import COVARIANCE_SHAPES, COVARIANCE_TYPES

__all__ = ["check_X", "check_parameters", "check_choice", "check_positive"]


def _as_float_array(value, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}: {exc}") from None
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(arr[where]) else "infinite"
        raise ValueError(f"{name} contains {kind} values (first at index {where})")


def check_X(X, n_components: int | None = None, n_features: int | None = None) -> np.ndarray:
    """X as a float64 array of shape (N, D), finite, with at least one point per component."""
    X = _as_float_array(X, "X")
    if X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D array of shape (n_samples, n_features), got shape {X.shape}"
            + (" (use X.reshape(-1, 1) for one feature)" if X.ndim == 1 else "")
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must have at least one point and one feature, got shape {X.shape}")
    _check_finite(X, "X")
    if n_components is not None and X.shape[0] < n_components:
        raise ValueError(
            f"X has {X.shape[0]} points but n_components={n_components}: "
            "EM needs at least as many points as components"
        )
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features but the model was fitted with {n_features}"
        )
    return X


def check_choice(value, name: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_positive(value, name: str, *, allow_zero: bool = False, integer: bool = False) -> None:
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(
        value, (int, float, np.integer, np.floating)
    )
    if isinstance(value, bool) or not ok_type or not np.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def check_weights(weights, K: int) -> np.ndarray:
    w = _as_float_array(weights, "weights")
    if w.shape != (K,):
        raise ValueError(f"weights must have shape ({K},), got {w.shape}")
    _check_finite(w, "weights")
    if np.any(w <= 0):
        k = int(np.flatnonzero(w <= 0)[0])
        raise ValueError(f"weights must be positive, but weights[{k}] = {w[k]:g}")
    if not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
        raise ValueError(f"weights must sum to 1, they sum to {w.sum():.6g}")
    return w / w.sum()


def check_means(means, K: int, D: int) -> np.ndarray:
    mu = _as_float_array(means, "means")
    if mu.shape != (K, D):
        raise ValueError(f"means must have shape (K, D) = ({K}, {D}), got {mu.shape}")
    _check_finite(mu, "means")
    return mu


def check_covariances(covariances, covariance_type: str, K: int, D: int) -> np.ndarray:
    """Shape for the covariance type, finite, symmetric and positive definite."""
    cov = _as_float_array(covariances, "covariances")
    shapes = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}
    if cov.shape != shapes[covariance_type]:
        raise ValueError(
            f"covariances for covariance_type={covariance_type!r} must have shape "
            f"{COVARIANCE_SHAPES[covariance_type]} = {shapes[covariance_type]}, got {cov.shape}"
        )
    _check_finite(cov, "covariances")
    if covariance_type in ("full", "tied"):
        stack = cov if covariance_type == "full" else cov[None]
        for k, c in enumerate(stack):
            name = "covariances" if covariance_type == "tied" else f"covariances[{k}]"
            if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12 * np.abs(c).max()):
                raise ValueError(f"{name} must be symmetric")
            lam = np.linalg.eigvalsh(c)[0]
            if lam <= 0:
                raise ValueError(
                    f"{name} must be positive definite, but its smallest eigenvalue is {lam:.3g}"
                )
    elif np.any(cov <= 0):
        k = int(np.argwhere(cov <= 0)[0][0])
        raise ValueError(f"covariances of component {k} must be positive (variances > 0)")
    return cov


def check_parameters(X, weights, means, covariances, covariance_type: str = "full"):
    """Validate a full parameter set against data X; returns float64 arrays ``(X, w, mu, cov)``."""
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    mu = _as_float_array(means, "means")
    if mu.ndim != 2:
        raise ValueError(f"means must have shape (K, D), got {mu.shape}")
    K, D = mu.shape
    X = check_X(X, n_features=D)
    return (
        X,
        check_weights(weights, K),
        check_means(mu, K, D),
        check_covariances(covariances, covariance_type, K, D),
    )


def check_step_shapes(X, weights, means, covariances, covariance_type: str = "full"):
    """The inputs of one EM step as float64 arrays whose shapes fit together.

    For the pure functions of `gmmlib.em`: a ValueError naming the array, not an IndexError
    from inside numpy. Only shapes (and a finite X) are checked; a covariance that is not
    positive definite is reported by the maths itself (`SingularCovarianceError`).
    Returns ``(X, weights, means, covariances)``.
    """
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    mu = _as_float_array(means, "means")
    if mu.ndim != 2:
        raise ValueError(f"means must have shape (K, D), got shape {mu.shape}")
    K, D = mu.shape
    X = check_X(X)
    if X.shape[1] != D:
        raise ValueError(f"X has {X.shape[1]} features but means have {D} columns")
    w = _as_float_array(weights, "weights")
    if w.shape != (K,):
        raise ValueError(f"weights must have shape ({K},), one per mean, got shape {w.shape}")
    cov = _as_float_array(covariances, "covariances")
    shapes = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}
    if cov.shape != shapes[covariance_type]:
        raise ValueError(
            f"covariances for covariance_type={covariance_type!r} must have shape "
            f"{COVARIANCE_SHAPES[covariance_type]} = {shapes[covariance_type]}, "
            f"got shape {cov.shape}"
        )
    return X, w, mu, cov


def check_resp(X, resp):
    """X (N, D) and responsibilities ``resp`` (N, K), finite float64 arrays, for an M-step."""
    X = check_X(X)
    r = _as_float_array(resp, "resp")
    if r.ndim != 2 or r.shape[0] != X.shape[0]:
        raise ValueError(
            f"resp must have shape (N, K) with N = {X.shape[0]} rows (one per point of X), "
            f"got shape {r.shape}"
        )
    _check_finite(r, "resp")
    return X, r
