"""The fast engine: the EM steps of `gmmlib.em`, computed in cache-sized blocks on all cores.

`gmmlib.em` is the reference: the maths as the book writes it. This module does the same
arithmetic for `GaussianMixture` (fit, score_samples, predict_proba), the collapse experiment and
the benchmark, and tests/test_engine.py holds the two equal after every E- and M-step. It may use
the reference's small helpers (Cholesky factors of the precisions, their log-determinants); the
reference never imports it. Its techniques, each measured with benchmarks/bench_em.py (the book's
appendix "How gmmlib is fast" explains them):

- rows in blocks of about `BLOCK_VALUES` values (one core's L2 cache), so every temporary stays
  small and hot and memory is O(block * K * D) besides the (N, K) responsibilities;
- component-major blocks (K, n): the max, exp and sums over k run over whole contiguous rows;
- one matrix product (GEMM) for all K components per block, in the E-step and the M-step;
- a fused E-step: log-densities, log-sum-exp and responsibilities in one pass over a block;
- blocks shared by worker threads (numpy releases the GIL inside its loops and BLAS calls), with
  BLAS limited to one thread meanwhile, so the cores are not oversubscribed; data that fits in one
  block runs in the calling thread, so small problems take the same arithmetic path every time;
- per-thread scratch buffers for block temporaries (fresh pages cost as much as the arithmetic);
- responsibilities below ~1e-250 flushed to exactly 0 (subnormal numbers slow arithmetic ~50x).

The blocks, worker threads and scratch buffers are `gmmlib._blocks`'s (re-exported here:
`block_values`, `blocks`, `parallel_section`); this module holds the maths. The functions trust
their inputs: the estimator validates once, at its boundary.
"""

from __future__ import annotations

import numpy as np

from gmmlib._blocks import (
    block_values,
    blocks,
    for_each_block,
    parallel_section,
    scratch,
    sum_over_blocks,
)
from gmmlib.covariance import covariance_type_of
from gmmlib.em import NK_EPS, log_det_precision_cholesky

__all__ = [
    "block_values",
    "blocks",
    "parallel_section",
    "responsibilities",
    "m_step",
]


# --------------------------------------------------------------------------------------------
# The fused E-step
# --------------------------------------------------------------------------------------------

# ln gamma below which a responsibility is flushed to 0 (exp(-576) / K < 1e-250).
_LOG_FLUSH = -576.0


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
    log_norm = -0.5 * D * np.log(2 * np.pi) + log_det_precision_cholesky(
        prec_chol, covariance_type, D
    )
    log_norm = np.broadcast_to(log_norm, (K,))[:, None]
    spec = covariance_type_of(covariance_type)
    if spec.matrices:
        # All K projections in one product: y_ik = P_k^T (x_i - c) - P_k^T (mu_k - c), as
        # [-shift | P_1^T ... P_K^T] @ [1; x_i - c], then ||y_ik||^2 summed over d. P_k^T is
        # lower triangular, so rows d < h only need [1; x - c][:h + 1] (`_triangle_split`).
        P = spec.per_component(prec_chol, K, D)
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
        # diag / spherical: y_kd = p_kd (x_d - c_d) - p_kd (mu_kd - c_d), p_kd = 1 / sigma_kd,
        # one dimension at a time over the whole (K, n) block. (Expanding sum_d y_kd^2 into
        # x^2, x mu and mu^2 terms would be two matrix products, but loses digits when a
        # narrow component lies far from c.)
        p = spec.per_component(prec_chol, K, D)
        shift = p * mu

        def log_density(rows: slice) -> np.ndarray:
            n = rows.stop - rows.start
            xc = _centred_rows(X, rows, centre)[1:]
            maha = np.zeros((K, n))
            y = scratch("y diag", (K, n))
            for d in range(D):
                np.multiply(p[:, d, None], xc[d], out=y)
                y -= shift[:, d, None]
                y *= y
                maha += y
            maha *= -0.5
            maha += log_norm
            return maha

    return log_density


def responsibilities(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str = "full",
) -> tuple[np.ndarray, np.ndarray]:
    """gamma_ik and ln p(x_i) for every point: shapes (N, K) and (N,), as `gmmlib.em`.

    The fused E-step, block by block: log-densities (`_log_density_kernel`), then in place
    ln pi_k + ln N, minus each column's maximum, exp, the column sum and the division.
    Responsibilities below about 1e-250 are set to exactly 0: no double-precision sum can see
    them, and the subnormal numbers (< 2.2e-308) they and their products would produce slow the
    processor's arithmetic down ~50x (measured: a whole M-step 1.5x slower). ``resp`` is a
    transposed view of a component-major (K, N) array; `m_step` reads it in that layout.
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


# --------------------------------------------------------------------------------------------
# The M-step
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
    """`gmmlib.em.m_step`, fast: the same arguments, the same results up to rounding.

    ``resp`` may be the transposed view `responsibilities` returns (no copy then). Full and tied
    scatters come from `_weighted_scatters`; diagonal variances from E[(x - c)^2] - (mu - c)^2
    with c the data mean (one matrix product for all K).
    """
    X = np.asarray(X, dtype=np.float64)
    # Component-major (K, N); no copy when resp comes from `responsibilities`.
    resp_t = np.ascontiguousarray(np.asarray(resp, dtype=np.float64).T)
    N, D = X.shape
    nk = resp_t.sum(axis=1) + NK_EPS
    weights = nk / N
    means = (resp_t @ X) / nk[:, None]
    spec = covariance_type_of(covariance_type)
    if prior is not None and covariance_type != "full":
        raise ValueError("a covariance prior is implemented for covariance_type='full' only")
    if spec.matrices:
        scatter = _weighted_scatters(X, resp_t, means)
        if prior is not None:
            covariances = prior.map_covariances(scatter, nk)
        else:
            covariances = spec.reduce(scatter, nk, N)
    else:
        # E[(x - c)^2] - (mu - c)^2 per dimension, c the data mean: one product for all K.
        # mu - c is averaged from the same centred x (not means - c: the rounding of means
        # far from 0 would enter the variance to first order; this way only to second).
        centre = _centre(X)
        Xc = X - centre
        mu = (resp_t @ Xc) / nk[:, None]
        avg_sq = (resp_t @ (Xc * Xc)) / nk[:, None]
        covariances = spec.reduce(np.maximum(avg_sq - mu * mu, 0.0), nk, N)
    covariances = spec.add_reg(covariances, reg_covar)
    return weights, means, covariances
