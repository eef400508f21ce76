"""Collapse detection: the rule, the report, and the error/warning that carry it.

A Gaussian mixture's likelihood is unbounded: put one mean on a data point and shrink that
component's covariance, and ln N(x | mu, Sigma) -> +inf. EM walks into this "collapse" when
there are too many components or a bad start. The rule (shared with the explorer's JavaScript):

    component k has collapsed when  lambda_min(Sigma_k - reg_covar * I) <= collapse_tol * s2,

with s2 = trace(cov(X)) / D the mean per-dimension variance of the data (so the rule does not
depend on units), or when Sigma_k has no Cholesky factor, or a parameter is not finite.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from gmmlib.covariance import covariance_type_of

__all__ = [
    "COLLAPSE_TOL",
    "CollapseReport",
    "CollapseError",
    "CollapseWarning",
    "min_eigenvalues",
    "collapse_threshold",
    "collapsed_components",
    "data_subspace",
    "CollapseRule",
]

#: The rule's default collapse_tol; the estimator, the collapse experiment and the explorer
#: (through its data.json) take their default from here.
COLLAPSE_TOL = 1e-8


def min_eigenvalues(
    covariances: np.ndarray, covariance_type: str = "full", subspace: np.ndarray | None = None
) -> np.ndarray:
    """Smallest eigenvalue of each component's covariance: shape (K,) ((1,) for "tied").

    With ``subspace`` (an orthonormal basis Q, (D, r), from `data_subspace`), the smallest
    eigenvalue of Q^T Sigma_k Q: the covariance measured only in the directions in which the
    data vary (+inf when r = 0: there is no such direction to shrink in).
    """
    spec = covariance_type_of(covariance_type)
    cov = np.asarray(covariances, dtype=np.float64)
    if subspace is None:
        return spec.min_eigenvalues(cov)
    K = 1 if spec.shared else len(cov)
    if subspace.shape[1] == 0:
        return np.full(K, np.inf)
    full = spec.stack(cov) if spec.matrices else spec.to_full(cov, K, subspace.shape[0])
    stack = np.einsum("dr,kde,es->krs", subspace, full, subspace)
    if not np.all(np.isfinite(stack)):
        return np.full(K, np.nan)
    return np.linalg.eigvalsh(stack)[:, 0]


def data_subspace(X: np.ndarray, threshold: float) -> np.ndarray | None:
    """The directions in which the data X vary by more than ``threshold``: an orthonormal basis
    (D, r), or None when X varies in all D directions (the usual case).

    Rank-deficient data (a constant column, collinear features, fewer points than features,
    identical points) have directions of (almost) zero variance. Every component fitted to them
    is flat in those directions too, so the collapse rule measures Sigma_k only within this
    subspace: a component is collapsed when it shrinks where the data do not.
    """
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    mean = X.mean(axis=0)
    scatter = np.zeros((D, D))
    rows = max(1, (1 << 18) // D)  # centred rows a chunk at a time: no copy of all of X
    for start in range(0, N, rows):
        diff = X[start : start + rows] - mean
        scatter += diff.T @ diff
    lam, vectors = np.linalg.eigh(scatter / N)
    keep = lam > threshold
    return None if keep.all() else vectors[:, keep]


def collapse_threshold(X: np.ndarray, collapse_tol: float = COLLAPSE_TOL) -> float:
    """collapse_tol * s2, where s2 is the mean per-dimension variance of the data X."""
    X = np.asarray(X, dtype=np.float64)
    return float(collapse_tol * np.mean(X.var(axis=0)))


def collapsed_components(
    covariances: np.ndarray,
    reg_covar: float,
    threshold: float,
    covariance_type: str = "full",
    eigenvalues: np.ndarray | None = None,
) -> np.ndarray:
    """Indices k (ascending) of the components that satisfy the collapse rule.

    ``eigenvalues``: `min_eigenvalues(covariances)` if the caller has them already.
    """
    if eigenvalues is None:
        eigenvalues = min_eigenvalues(covariances, covariance_type)
    return np.flatnonzero(~(eigenvalues - reg_covar > threshold))  # NaN counts as collapsed


@dataclass(frozen=True)
class CollapseRule:
    """The collapse rule for one data set X, as the estimator applies it: the threshold
    collapse_tol * s2 and the directions in which X varies (`data_subspace`; None when X
    varies in all of them). The estimator, the collapse experiment and the initialisation all
    judge through this, so they agree on rank-deficient data too.
    """

    threshold: float
    subspace: np.ndarray | None = None

    @classmethod
    def for_data(cls, X: np.ndarray, collapse_tol: float = COLLAPSE_TOL) -> CollapseRule:
        threshold = collapse_threshold(X, collapse_tol)
        return cls(threshold, data_subspace(X, threshold))

    def min_eigenvalues(self, covariances, covariance_type: str = "full") -> np.ndarray:
        """Smallest eigenvalue of each Sigma_k within the data's subspace: shape (K,)."""
        return min_eigenvalues(covariances, covariance_type, self.subspace)

    def collapsed(
        self, covariances, reg_covar: float, covariance_type: str = "full", eigenvalues=None
    ) -> np.ndarray:
        """Indices k (ascending) of the collapsed components (``eigenvalues``: this rule's
        `min_eigenvalues`, if the caller has them already)."""
        if eigenvalues is None:
            eigenvalues = self.min_eigenvalues(covariances, covariance_type)
        return collapsed_components(covariances, reg_covar, self.threshold, eigenvalues=eigenvalues)

    def collapsed_directions(self, covariance, reg_covar: float) -> int:
        """How many eigenvalues of one full Sigma_k - reg_covar * I, within the data's subspace,
        are at or below the threshold."""
        cov = np.asarray(covariance, dtype=np.float64)
        if self.subspace is not None:
            cov = self.subspace.T @ cov @ self.subspace
        lam = np.linalg.eigvalsh(cov) - reg_covar
        return int(np.sum(~(lam > self.threshold)))


@dataclass(frozen=True)
class CollapseReport:
    """What collapsed, when, and onto what."""

    component: int  # k, 0-based
    iteration: int  # the EM iteration whose M-step produced the collapsed covariance
    nk: float  # soft count N_k of the component
    n_points: int  # points with responsibility > 0.5 for it
    min_eigenvalue: float  # smallest eigenvalue of Sigma_k as fitted (reg_covar included)
    threshold: float  # the rule's threshold, collapse_tol * s2
    reg_covar: float
    n_components: int

    @property
    def message(self) -> str:
        points = "one data point" if self.n_points == 1 else f"{self.n_points} data points"
        fixes = [
            f"use fewer components (n_components={max(1, self.n_components - 1)})"
            if self.n_components > 1
            else None,
            "raise reg_covar (e.g. 1e-3) so no variance can fall below it",
            "add a covariance prior (covariance_prior='auto'), which keeps variances away from 0",
            "or start from other initial means (another random_state)",
        ]
        return (
            f"Component {self.component} collapsed at iteration {self.iteration}: it sits on "
            f"{points} (N_k = {self.nk:.3g}) and the smallest eigenvalue of its covariance is "
            f"{self.min_eigenvalue:.3g} (collapse threshold {self.threshold:.3g} above "
            f"reg_covar={self.reg_covar:g}). Its density at that point grows without bound, so "
            "the log-likelihood diverges; this is a flaw of maximum likelihood, not a bug. To fix: "
            + "; ".join(f for f in fixes if f)
            + "."
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "message": self.message}


class CollapseError(RuntimeError):
    """EM stopped because a component collapsed; ``.report`` says which, when and onto what."""

    def __init__(self, report: CollapseReport):
        super().__init__(report.message)
        self.report = report


class CollapseWarning(RuntimeWarning):
    """EM stopped early because a component collapsed (``on_collapse="warn"``)."""
