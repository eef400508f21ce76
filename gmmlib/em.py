"""The EM maths for a Gaussian mixture, as pure functions on arrays.

This is the code the book shows and the exercises are graded against. Notation (book = code):

    x_i, X      (N, D)   data points
    pi_k        weights       (K,)
    mu_k        means         (K, D)
    Sigma_k     covariances   (K, D, D) for "full"; see COVARIANCE_SHAPES for the others
    gamma_ik    resp          (N, K)   responsibilities
    N_k         nk            (K,)     soft counts, sum_i gamma_ik

Everything is computed from Cholesky factors (Sigma_k = L_k L_k^T): no matrix inverse or
determinant is ever formed, and responsibilities come from log-sum-exp, so a point a thousand
standard deviations from every mean still gets exact responsibilities instead of 0/0.

The functions trust their inputs (the estimator in `gmmlib.mixture` validates once, at its
boundary); call `gmmlib.validation.check_parameters` first if your arrays come from elsewhere.
Rows are processed in blocks that fit in cache, so memory stays O(block * K * D) besides the
(N, K) responsibilities, whatever N is.
"""

from __future__ import annotations

import numpy as np

from gmmlib._blocks import for_each_block, scratch, sum_over_blocks

__all__ = [
    "COVARIANCE_TYPES",
    "COVARIANCE_SHAPES",
    "e_step",
    "m_step",
    "log_likelihood",
    "responsibilities",
    "estimate_log_resp",
    "log_gaussian_density",
    "precision_cholesky",
    "logsumexp",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
#: Shape of ``covariances`` for each covariance type (K components, D dimensions).
COVARIANCE_SHAPES = {
    "full": "(K, D, D)",
    "tied": "(D, D)",
    "diag": "(K, D)",
    "spherical": "(K,)",
}

# ln gamma below which a responsibility is flushed to 0 (exp(-576) / K < 1e-250).
_LOG_FLUSH = -576.0
# Added to N_k so an empty component does not divide by zero (as scikit-learn does).
_NK_EPS = 10 * np.finfo(np.float64).eps


def _centre(X: np.ndarray) -> np.ndarray:
    """The data mean c, the origin every block is shifted to (see `_centred_rows`)."""
    return (np.ones(len(X)) @ X) / len(X)


def _centred_rows(X: np.ndarray, rows: slice, centre: np.ndarray) -> np.ndarray:
    """[1; (x_i - c)^T] for a block of rows: shape (D + 1, n), contiguous.

    The leading row of ones lets one matrix product apply a linear map and a shift together.
    """
    D = X.shape[1]
    out = scratch("centred rows", (D + 1, rows.stop - rows.start))
    out[0] = 1.0
    np.subtract(X[rows].T, centre[:, None], out=out[1:])
    return out


def _triangle_split(D: int) -> int:
    """h such that rows d < h of a triangular factor touch only the first h coordinates.

    Splitting a lower-triangular product there skips a quarter of the multiplications, which
    pays for the second matrix product from D = 8 on; smaller D use one product (h = 0).
    """
    return D // 2 if D >= 8 else 0


class SingularCovarianceError(np.linalg.LinAlgError):
    """A covariance matrix is not positive definite (its Cholesky factor does not exist).

    ``component`` is the index k of the first such covariance (None for a tied covariance).
    """

    def __init__(self, component: int | None, message: str):
        super().__init__(message)
        self.component = component


def logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """ln sum_j exp(a_j) along ``axis``, without overflow or underflow.

    Subtracting the maximum first makes the largest term exp(0) = 1, so the sum is at least 1
    and its logarithm is exact; rows that are all -inf give -inf (no NaN).
    """
    a_max = np.max(a, axis=axis, keepdims=True)
    a_max = np.where(np.isfinite(a_max), a_max, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - a_max), axis=axis, keepdims=True)) + a_max
    return np.squeeze(out, axis=axis)


# --------------------------------------------------------------------------------------------
# Cholesky factors of the precisions
# --------------------------------------------------------------------------------------------


def _cholesky_lower(matrix: np.ndarray, component: int | None) -> np.ndarray:
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        name = "tied covariance" if component is None else f"covariance of component {component}"
        raise SingularCovarianceError(
            component, f"the {name} is not positive definite (Cholesky failed)"
        ) from None


def _inverse_lower_triangular(L: np.ndarray) -> np.ndarray:
    """L^{-1} for lower-triangular L by forward substitution (never a general inverse)."""
    D = L.shape[0]
    inv = np.zeros_like(L)
    for i in range(D):
        # Row i of L^{-1}: (e_i - sum_{j<i} L_ij inv_j) / L_ii
        inv[i, i] = 1.0 / L[i, i]
        if i:
            inv[i, :i] = -(L[i, :i] @ inv[:i, :i]) / L[i, i]
    return inv


def precision_cholesky(covariances: np.ndarray, covariance_type: str = "full") -> np.ndarray:
    """Factors P with Sigma^{-1} = P P^T (upper triangular P = L^{-T}), the form EM works in.

    Returns shape (K, D, D) for "full", (D, D) for "tied", (K, D) for "diag" and (K,) for
    "spherical" (the last two hold 1/sigma). Raises SingularCovarianceError naming the first
    component whose covariance is not positive definite.
    """
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        out = np.empty_like(cov)
        for k, cov_k in enumerate(cov):
            out[k] = _inverse_lower_triangular(_cholesky_lower(cov_k, k)).T
        return out
    if covariance_type == "tied":
        return _inverse_lower_triangular(_cholesky_lower(cov, None)).T
    if covariance_type in ("diag", "spherical"):
        bad = np.flatnonzero(~(cov > 0).reshape(len(cov), -1).all(axis=1))
        if bad.size:
            raise SingularCovarianceError(
                int(bad[0]), f"the variance of component {int(bad[0])} is not positive"
            )
        return 1.0 / np.sqrt(cov)
    raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")


def _log_det_precision_cholesky(prec_chol: np.ndarray, covariance_type: str, D: int):
    """ln det P_k = -1/2 ln det Sigma_k, from the diagonal of the factor: shape (K,) or ()."""
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(prec_chol)))
    if covariance_type == "diag":
        return np.sum(np.log(prec_chol), axis=1)
    return D * np.log(prec_chol)


# --------------------------------------------------------------------------------------------
# E-step
# --------------------------------------------------------------------------------------------


def _log_density_kernel(X, means, prec_chol, covariance_type):
    """A function ``rows -> lnN`` with lnN[k, i] = ln N(x_i | mu_k, Sigma_k) for a block of rows.

    Component-major blocks (K, B): every later operation over k (max, exp, sum) then works on
    whole contiguous rows, which is what makes the E-step fast.
    ln N = -D/2 ln(2 pi) + ln det P_k - 1/2 ||P_k^T (x_i - mu_k)||^2, with P_k from
    `precision_cholesky`. Points and means are first shifted by the mean of X (the density only
    depends on x - mu), so data far from the origin lose no digits to cancellation.
    """
    D = X.shape[1]
    K = means.shape[0]
    centre = _centre(X)
    mu = means - centre
    log_norm = -0.5 * D * np.log(2 * np.pi) + _log_det_precision_cholesky(
        prec_chol, covariance_type, D
    )
    log_norm = np.broadcast_to(log_norm, (K,))[:, None]
    if covariance_type in ("full", "tied"):
        # All K projections in one product: y_ik = P_k^T (x_i - c) - P_k^T (mu_k - c), as
        # [-shift | P_1^T ... P_K^T] @ [1; x_i - c], then ||y_ik||^2 summed over d. P_k^T is
        # lower triangular, so rows d < h only need [1; x - c][:h + 1] (`_triangle_split`).
        P = prec_chol if covariance_type == "full" else np.broadcast_to(prec_chol, (K, D, D))
        A = np.empty((D, K, D + 1))  # row (d, k) = [-shift_kd, row d of P_k^T]
        A[:, :, 0] = -np.einsum("kde,kd->ek", P, mu)
        A[:, :, 1:] = P.transpose(2, 0, 1)
        h = _triangle_split(D)
        A_short = np.ascontiguousarray(A[:h, :, : h + 1]).reshape(h * K, h + 1)
        A_long = A[h:].reshape((D - h) * K, D + 1)

        def log_density(rows: slice) -> np.ndarray:
            n = rows.stop - rows.start
            xc = _centred_rows(X, rows, centre)
            Y = np.matmul(A_long, xc, out=scratch("Y", ((D - h) * K, n))).reshape(D - h, K, n)
            maha = np.einsum("dkn,dkn->kn", Y, Y)
            if h:
                Y = np.matmul(A_short, xc[: h + 1], out=scratch("Y short", (h * K, n)))
                Y = Y.reshape(h, K, n)
                maha += np.einsum("dkn,dkn->kn", Y, Y)
            maha *= -0.5
            maha += log_norm
            return maha

    else:
        # diag / spherical: sum_d (x_d - mu_d)^2 / sigma_d^2, expanded per component.
        inv_var = (prec_chol**2).reshape(K, -1) * np.ones((K, D))
        const = np.sum(mu * mu * inv_var, axis=1)[:, None]

        def log_density(rows: slice) -> np.ndarray:
            Xc = (X[rows] - centre).T
            maha = inv_var @ (Xc * Xc) - 2.0 * (mu * inv_var) @ Xc + const
            return log_norm - 0.5 * maha

    return log_density


def log_gaussian_density(
    X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray, covariance_type: str = "full"
) -> np.ndarray:
    """ln N(x_i | mu_k, Sigma_k) for every point and component: shape (N, K)."""
    out = np.empty((len(means), len(X)))
    log_density = _log_density_kernel(X, means, prec_chol, covariance_type)

    def work(rows):
        out[:, rows] = log_density(rows)

    for_each_block(work, len(X), len(means) * X.shape[1])
    return out.T


def responsibilities(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str = "full",
) -> tuple[np.ndarray, np.ndarray]:
    """gamma_ik and ln p(x_i) for every point: shapes (N, K) and (N,) (eq:e-step).

    Bayes' rule in log space, block by block: ln p(x_i) = logsumexp_k(ln pi_k + ln N(x_i | k)),
    gamma_ik = exp(ln pi_k + ln N(x_i | k) - ln p(x_i)). The largest term of each sum is
    exp(0) = 1, so nothing overflows or underflows to 0/0. Responsibilities below about
    1e-250 are set to exactly 0: no double-precision sum can see them, and the subnormal numbers
    (< 2.2e-308) they and their products would produce slow the processor's arithmetic down
    ~50x (measured: a whole M-step 1.5x slower). ``resp`` is a transposed view of a
    component-major (K, N) array; the M-step reads it in that layout.
    """
    K, N = len(means), len(X)
    resp_t = np.empty((K, N))
    log_px = np.empty(N)
    log_weights = np.log(weights)[:, None]
    log_density = _log_density_kernel(X, means, prec_chol, covariance_type)

    def work(rows):
        log_joint = log_density(rows)
        log_joint += log_weights
        top = log_joint.max(axis=0)
        top[~np.isfinite(top)] = 0.0
        log_joint -= top
        log_joint[log_joint < _LOG_FLUSH] = -np.inf
        np.exp(log_joint, out=log_joint)
        total = log_joint.sum(axis=0)
        np.divide(log_joint, total, out=resp_t[:, rows])
        log_px[rows] = np.log(total) + top

    for_each_block(work, N, K * X.shape[1])
    return resp_t.T, log_px


def estimate_log_resp(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str = "full",
) -> tuple[np.ndarray, np.ndarray]:
    """ln gamma_ik and ln p(x_i) for every point: shapes (N, K) and (N,).

    ln gamma_ik = ln pi_k + ln N(x_i | k) - ln p(x_i), kept in log space (for a point far from
    a component, gamma_ik underflows to 0 but its logarithm stays exact).
    """
    log_joint = log_gaussian_density(X, means, prec_chol, covariance_type)
    log_joint += np.log(weights)
    log_px = logsumexp(log_joint, axis=1)
    log_joint -= log_px[:, None]
    return log_joint, log_px


def e_step(X, weights, means, covariances, covariance_type: str = "full") -> np.ndarray:
    """E-step: responsibilities gamma_ik = pi_k N(x_i | k) / sum_j pi_j N(x_i | j).

    Returns ``resp`` of shape (N, K); every row is non-negative and sums to 1 (eq:e-step).
    """
    X = np.asarray(X, dtype=np.float64)
    prec_chol = precision_cholesky(covariances, covariance_type)
    resp, _ = responsibilities(
        X, np.asarray(weights, float), np.asarray(means, float), prec_chol, covariance_type
    )
    return resp


def log_likelihood(X, weights, means, covariances, covariance_type: str = "full") -> float:
    """Total log-likelihood ln p(X) = sum_i ln sum_k pi_k N(x_i | mu_k, Sigma_k).

    This is the *total* over the N points (scikit-learn's ``score`` is the mean: divide by N).
    """
    X = np.asarray(X, dtype=np.float64)
    prec_chol = precision_cholesky(covariances, covariance_type)
    _, log_px = responsibilities(
        X, np.asarray(weights, float), np.asarray(means, float), prec_chol, covariance_type
    )
    return float(np.sum(log_px))


# --------------------------------------------------------------------------------------------
# M-step
# --------------------------------------------------------------------------------------------


def _weighted_scatters(X: np.ndarray, resp_t: np.ndarray, means: np.ndarray) -> np.ndarray:
    """S_k = sum_i gamma_ik (x_i - mu_k)(x_i - mu_k)^T for every k: shape (K, D, D).

    Centred on the new means, as sum_i gamma_ik (x_i - mu_k)(x_i - c)^T - v_k (mu_k - c)^T with c
    the data mean and v_k = sum_i gamma_ik (x_i - mu_k) (zero up to rounding, kept so the
    identity is exact). This avoids the E[x x^T] - mu mu^T form, which loses digits when a
    component is narrow, and puts all K components in one matrix product per block of rows.
    """
    N, D = X.shape
    K = len(means)
    centre = _centre(X)
    mu = means - centre
    h = _triangle_split(D)

    def work(rows, acc):
        n = rows.stop - rows.start
        xc = _centred_rows(X, rows, centre)
        # L[d, k] = gamma_k * (x_d - mu_kd), (D, K, n); times [1; x - c] gives v_k and S_k at
        # once. S_k is symmetric: rows d < h need only its first h columns.
        L = np.subtract(xc[1:, None, :], mu.T[:, :, None], out=scratch("L", (D, K, n)))
        L *= resp_t[None, :, rows]
        long = L[h:].reshape((D - h) * K, n)
        product = np.matmul(long, xc.T, out=scratch("S long", ((D - h) * K, D + 1)))
        acc[h:] += product.reshape(D - h, K, D + 1)
        if h:
            short = L[:h].reshape(h * K, n)
            product = np.matmul(short, xc[: h + 1].T, out=scratch("S short", (h * K, h + 1)))
            acc[:h, :, : h + 1] += product.reshape(h, K, h + 1)

    # Blocks twice the E-step's: the product's inner dimension is the block length, and longer
    # products keep BLAS efficient (measured: 7-8% faster at D = 16 and 64).
    acc = sum_over_blocks(work, (D, K, D + 1), N, max(1, K * D // 2))
    acc = acc.transpose(1, 0, 2)  # (K, D, 1 + D): [v_k | S_k]
    S = acc[:, :, 1:].copy()
    S[:, :h, h:] = S[:, h:, :h].transpose(0, 2, 1)
    S -= acc[:, :, 0, None] * mu[:, None, :]
    return 0.5 * (S + S.transpose(0, 2, 1))  # symmetric to the last bit


def m_step(
    X: np.ndarray,
    resp: np.ndarray,
    covariance_type: str = "full",
    reg_covar: float = 0.0,
    prior=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M-step: the weights, means and covariances that maximise the expected log-likelihood.

        N_k = sum_i gamma_ik                                   (eq:m-step-nk)
        pi_k = N_k / N                                         (eq:m-step-weights)
        mu_k = (1 / N_k) sum_i gamma_ik x_i                     (eq:m-step-means)
        Sigma_k = (1 / N_k) sum_i gamma_ik (x_i - mu_k)(x_i - mu_k)^T  (+ reg_covar * I)
                                                               (eq:m-step-covariances)

    ``reg_covar`` (default 0 here: the plain maths) is added to the diagonal; a tiny 1e-15 relative
    amount is added to N_k, as scikit-learn does, so an empty component gives finite numbers.
    ``prior`` (an `gmmlib.prior.InverseWishartPrior`, "full" only) gives the MAP covariances
    (eq:map-covariances) instead of the maximum-likelihood ones.
    Returns ``(weights, means, covariances)`` with covariances shaped for ``covariance_type``.
    """
    X = np.asarray(X, dtype=np.float64)
    # Component-major (K, N); no copy when resp comes from `responsibilities`.
    resp_t = np.ascontiguousarray(np.asarray(resp, dtype=np.float64).T)
    N, D = X.shape
    nk = resp_t.sum(axis=1) + _NK_EPS
    weights = nk / N
    means = (resp_t @ X) / nk[:, None]
    if prior is not None and covariance_type != "full":
        raise ValueError("a covariance prior is implemented for covariance_type='full' only")
    if covariance_type in ("full", "tied"):
        scatter = _weighted_scatters(X, resp_t, means)
        if prior is not None:
            covariances = prior.map_covariances(scatter, nk)
        elif covariance_type == "full":
            covariances = scatter / nk[:, None, None]
        else:
            covariances = scatter.sum(axis=0) / N
        covariances += reg_covar * np.eye(D)
    elif covariance_type in ("diag", "spherical"):
        # E[x^2] - mu^2 per dimension, with x shifted by the data mean to avoid cancellation.
        centre = _centre(X)
        Xc = X - centre
        mu = means - centre
        avg_sq = (resp_t @ (Xc * Xc)) / nk[:, None]
        variances = np.maximum(avg_sq - mu * mu, 0.0)
        covariances = variances + reg_covar
        if covariance_type == "spherical":
            covariances = covariances.mean(axis=1)
    else:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}"
        )
    return weights, means, covariances
