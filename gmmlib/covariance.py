"""The four covariance types in one table: what each one stores and how to convert it.

scikit-learn's ``covariance_type`` names: "full" (one D x D matrix per component), "tied" (one
D x D matrix shared by all), "diag" (D variances per component) and "spherical" (one variance
per component). Every per-type fact gmmlib needs (the shape, the number of free parameters, the
way to and from full matrices, the M-step's reduction of the weighted scatter or variances)
lives in `COVARIANCE`, one `CovarianceType` per name; the rest of gmmlib looks the type up
there instead of testing the name, as scikit-learn's `_estimate_gaussian_parameters` looks up
its per-type estimator. This module imports nothing from gmmlib, so every module can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "COVARIANCE",
    "COVARIANCE_TYPES",
    "COVARIANCE_SHAPES",
    "CovarianceType",
    "covariance_type_of",
]


@dataclass(frozen=True)
class CovarianceType:
    """What one covariance type stores (``shape(K, D)``) and how to move it to and from a
    (K, D, D) stack of full matrices.

    ``matrices``: stored as D x D matrices (full, tied), otherwise as per-dimension variances
    (diag, spherical: their precision factors are per-dimension scales 1 / sigma).
    ``shared``: one covariance for all components (tied).
    """

    name: str
    shape_text: str
    shape: Callable[[int, int], tuple[int, ...]]
    n_parameters: Callable[[int, int], int]
    matrices: bool
    shared: bool
    to_full: Callable[[np.ndarray, int, int], np.ndarray]
    from_full: Callable[[np.ndarray, np.ndarray], np.ndarray]
    #: The M-step's reduction: weighted scatters S_k (K, D, D) and N_k for matrix types, the
    #: weighted per-dimension variances (K, D) for the others; N is the number of points.
    reduce: Callable[[np.ndarray, np.ndarray, int], np.ndarray]

    def stack(self, covariances: np.ndarray) -> np.ndarray:
        """The stored matrices as a stack (K, D, D) ((1, D, D) for tied); matrix types only."""
        return covariances[None] if self.shared else covariances

    def unstack(self, stack: np.ndarray) -> np.ndarray:
        """The inverse of `stack`."""
        return stack[0] if self.shared else stack

    def per_component(self, values: np.ndarray, K: int, D: int) -> np.ndarray:
        """Stored values (covariances or precision factors) one per component: (K, D, D)
        matrices (tied's one matrix repeated, as a view), or (K, D) per-dimension values."""
        if self.matrices:
            return np.broadcast_to(values, (K, D, D))
        return values.reshape(len(values), -1) * np.ones(D)

    def add_reg(self, covariances: np.ndarray, reg_covar: float) -> np.ndarray:
        """``reg_covar`` added to every variance (the diagonal of a matrix)."""
        if self.matrices:
            return covariances + reg_covar * np.eye(covariances.shape[-1])
        return covariances + reg_covar

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Covariances -> precisions (or back), in this type's shape."""
        return np.linalg.inv(values) if self.matrices else 1.0 / values

    def precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        """Sigma^{-1} = P P^T from the precision factors P, in this type's shape."""
        if self.matrices:
            stack = self.stack(prec_chol)
            return self.unstack(np.einsum("kij,klj->kil", stack, stack))
        return prec_chol**2

    def min_eigenvalues(self, covariances: np.ndarray) -> np.ndarray:
        """Smallest eigenvalue of each stored covariance: (K,), (1,) for tied; NaN if any
        matrix entry is not finite."""
        if not self.matrices:
            return covariances.reshape(len(covariances), -1).min(axis=1)
        stack = self.stack(covariances)
        if not np.all(np.isfinite(stack)):
            return np.full(len(stack), np.nan)
        return np.linalg.eigvalsh(stack)[:, 0]


def _diag_to_full(cov, K, D):
    return np.einsum("kd,de->kde", cov, np.eye(D))


COVARIANCE: dict[str, CovarianceType] = {
    spec.name: spec
    for spec in (
        CovarianceType(
            name="full",
            shape_text="(K, D, D)",
            shape=lambda K, D: (K, D, D),
            n_parameters=lambda K, D: K * D * (D + 1) // 2,
            matrices=True,
            shared=False,
            to_full=lambda cov, K, D: cov,
            from_full=lambda full, weights: full,
            reduce=lambda S, nk, N: S / nk[:, None, None],
        ),
        CovarianceType(
            name="tied",
            shape_text="(D, D)",
            shape=lambda K, D: (D, D),
            n_parameters=lambda K, D: D * (D + 1) // 2,
            matrices=True,
            shared=True,
            to_full=lambda cov, K, D: np.repeat(cov[None], K, axis=0),
            from_full=lambda full, weights: np.einsum("k,kde->de", weights, full),
            reduce=lambda S, nk, N: S.sum(axis=0) / N,
        ),
        CovarianceType(
            name="diag",
            shape_text="(K, D)",
            shape=lambda K, D: (K, D),
            n_parameters=lambda K, D: K * D,
            matrices=False,
            shared=False,
            to_full=_diag_to_full,
            from_full=lambda full, weights: np.diagonal(full, axis1=1, axis2=2).copy(),
            reduce=lambda variances, nk, N: variances,
        ),
        CovarianceType(
            name="spherical",
            shape_text="(K,)",
            shape=lambda K, D: (K,),
            n_parameters=lambda K, D: K,
            matrices=False,
            shared=False,
            to_full=lambda cov, K, D: _diag_to_full(cov[:, None] * np.ones(D), K, D),
            from_full=lambda full, weights: np.diagonal(full, axis1=1, axis2=2).mean(axis=1),
            reduce=lambda variances, nk, N: variances.mean(axis=1),
        ),
    )
}

COVARIANCE_TYPES = tuple(COVARIANCE)
#: Shape of ``covariances`` for each covariance type, as the messages and docs write it.
COVARIANCE_SHAPES = {name: spec.shape_text for name, spec in COVARIANCE.items()}


def covariance_type_of(name) -> CovarianceType:
    """The table's entry for ``name``, or a ValueError listing the types."""
    try:
        return COVARIANCE[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}, got {name!r}"
        ) from None
