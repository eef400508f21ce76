"""An inverse-Wishart prior on each covariance, for MAP estimation (it prevents collapse).

With the prior IW(Sigma_k | Psi, nu), the M-step maximises the expected log-likelihood plus
ln IW(Sigma_k); the covariance update becomes (eq:map-covariances)

    Sigma_k = (Psi + S_k) / (N_k + nu + D + 1),   S_k = sum_i gamma_ik (x_i - mu_k)(x_i - mu_k)^T,

so Sigma_k >= Psi / (N_k + nu + D + 1) can never shrink to zero, and EM increases the
log-posterior ln p(X | theta) + sum_k ln IW(Sigma_k) at every iteration instead of the likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import multigammaln

from gmmlib.init import data_covariance

__all__ = ["InverseWishartPrior"]


@dataclass(frozen=True)
class InverseWishartPrior:
    """Inverse-Wishart prior with scale matrix ``scale`` (Psi, (D, D)) and ``dof`` (nu > D - 1)."""

    scale: np.ndarray
    dof: float

    @classmethod
    def from_data(cls, X: np.ndarray, n_components: int, scale=None, dof=None):
        """The prior the estimator builds for ``covariance_prior``.

        ``scale="auto"`` (or None) is Fraley & Raftery's (2007) default, Psi = cov(X) / K^(2/D)
        (each component expected to cover 1/K of the data's volume); a float c means c * I; an
        array is used as given. ``dof`` defaults to D + 2, the weakest prior with a finite mean.
        """
        X = np.asarray(X, dtype=np.float64)
        D = X.shape[1]
        dof = float(D + 2 if dof is None else dof)
        if not dof > D - 1:
            raise ValueError(f"degrees_of_freedom_prior must be > D - 1 = {D - 1}, got {dof}")
        if scale is None or (isinstance(scale, str) and scale == "auto"):
            psi = data_covariance(X) / n_components ** (2.0 / D)
        elif np.ndim(scale) == 0:
            if not float(scale) > 0:
                raise ValueError(f"covariance_prior must be positive, got {scale}")
            psi = float(scale) * np.eye(D)
        else:
            psi = np.array(scale, dtype=np.float64)
            if psi.shape != (D, D):
                raise ValueError(f"covariance_prior must have shape ({D}, {D}), got {psi.shape}")
            if not np.allclose(psi, psi.T) or np.linalg.eigvalsh(psi)[0] <= 0:
                raise ValueError("covariance_prior must be symmetric positive definite")
        return cls(scale=psi, dof=dof)

    def map_covariances(self, scatter: np.ndarray, nk: np.ndarray) -> np.ndarray:
        """Posterior-mode covariances (Psi + S_k) / (N_k + nu + D + 1): shape (K, D, D)."""
        D = self.scale.shape[0]
        return (self.scale + scatter) / (nk + self.dof + D + 1)[:, None, None]

    def log_pdf(self, covariances: np.ndarray, prec_chol: np.ndarray) -> float:
        """sum_k ln IW(Sigma_k | Psi, nu), using the precision Cholesky factors P_k."""
        D = self.scale.shape[0]
        nu = self.dof
        log_norm = (
            0.5 * nu * np.linalg.slogdet(self.scale)[1]
            - 0.5 * nu * D * np.log(2.0)
            - multigammaln(0.5 * nu, D)
        )
        # ln|Sigma_k| = -2 ln det P_k;  tr(Psi Sigma_k^{-1}) = tr(Psi P_k P_k^T)
        log_det_prec = np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
        trace = np.einsum("ij,kjl,kil->k", self.scale, prec_chol, prec_chol)
        per_component = log_norm + (nu + D + 1) * log_det_prec - 0.5 * trace
        return float(np.sum(per_component))
