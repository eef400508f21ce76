"""The fast engine (`gmmlib._engine`) against the reference maths (`gmmlib.em`), step by step.

`GaussianMixture` runs the engine; the book, the hidden tests and the re-check run the
reference. They must compute the same EM: on generated problems, after every E-step and every
M-step, from the same inputs, the engine's responsibilities, log-likelihood and parameters must
be the reference's up to the rounding the error analysis below allows.

Error analysis (u = 2^-53 = 1.1e-16, the unit roundoff)
---------------------------------------------------------
Both sides use the same precision factors P_k (`gmmlib.em.precision_cholesky`), so the
Cholesky factorisation's own sensitivity to the conditioning cancels out. What differs is how
y_ik = P_k^T (x_i - mu_k) is formed. The reference subtracts first, then multiplies: each
coordinate of y is off by at most ~D u (|P_k^T| |x_i - mu_k|)_d. The engine forms
P_k^T (x_i - c) - P_k^T (mu_k - c) with c the data mean (one matrix product for all K; for
diagonal P_k one dimension at a time), so its error is ~(D + 2) u (|P_k^T| (|x_i - c| +
|mu_k - c|))_d. With

    a_ik = ||P_k||_F (||x_i - c|| + ||mu_k - c|| + ||x_i - mu_k||)

both errors are below (D + 2) u a_ik in norm, ||y||^2 moves by at most twice ||y|| times that
plus its square, and the two log-densities l_ik = ln pi_k + ln N(x_i | k) differ by at most

    b_ik = (2 D + 4) u (a_ik ||y_ik|| + |l_ik|) + ((2 D + 4) u a_ik)^2,

the |l_ik| term for adding the constants to a number of that size. ||P_k|| ~ 1 / sqrt(lambda_min)
while ||x - c|| ~ sqrt(lambda_max), so a_ik grows like sqrt(kappa) in the condition number kappa
(and the last term like kappa): this is where the conditioning enters. Softmax then moves
gamma_ik by at most gamma_ik (b_ik + sum_j gamma_ij b_ij) and ln p(x_i) by at most
sum_j gamma_ij b_ij (first order). The M-step has no such factor: given the same
responsibilities both sides form the same sums in a different order (the engine's scatter as
sum_i gamma_ik (x_i - mu_k)(x_i - c)^T - v_k (mu_k - c)^T), an error of a few u times the size
of the summands (the data's magnitude for the means, its variance for the covariances), far
below 1e-10 of it for N <= 1e5.

Hence the tolerances:
- well-conditioned problems (condition numbers <= 10, every point within a few standard
  deviations of the data): responsibilities to 1e-12 absolute (the gaps there are ~1e-14);
- points 1e3 sd away (|l| ~ 5e5 D, so u |l| ~ 1e-10 in both implementations, whatever they do)
  and condition numbers up to 1e10: responsibilities to 1e-12 + the bound above;
- parameters to 1e-10 relative to the data's scale (weights: 1; means: max |x|, the size X is
  stored at; covariances: the largest variance of X), on every problem;
- the total log-likelihood to 1e-10 of sum_i |ln p(x_i)| (the size of the terms summed), plus
  sum_i sum_j gamma_ij b_ij on the far and ill-conditioned problems.
The engine sets responsibilities below ~1e-250 to exactly 0 (by design); that is inside 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest

from gmmlib import _engine, em
from gmmlib.diagnostics import min_eigenvalues
from gmmlib.prior import InverseWishartPrior

U = np.finfo(np.float64).eps / 2
KINDS = ("plain", "far", "shifted", "ill")
ROUNDS = 3
#: Compared while lambda_max(cov X) / lambda_min(Sigma_k) stays below this: data with condition
#: numbers up to 1e10, components down to 1/100 of the data's spread in its flattest direction.
#: Beyond it a component has collapsed (as EM with reg_covar=0 and N = K + 1 points does), b_ik
#: grows past 1 and neither implementation has a correct digit in the collapsed log-density.
MAX_CONDITION = 1e12


def _to_type(full: np.ndarray, covariance_type: str) -> np.ndarray:
    """A (D, D) covariance as the starting covariances of every component, in the type's shape."""
    return em.from_full_covariances(full[None], covariance_type, np.ones(1))


def make_problem(seed: int, covariance_type: str, N: int | None = None):
    """Data and a start (weights, means, covariances) of one kind: see KINDS and the docstring.

    K blobs in D dimensions, N between K + 1 and 3000 (log-uniform) unless given. "ill" data
    have variances spread over 4 to 10 decades (rotated for full/tied, along the axes for diag and
    spherical); "far" data have 1-3 points 1e3 standard deviations away; "shifted" data sit at
    1e8. The start: K distinct data points as means, the data covariance, unequal weights.
    """
    rng = np.random.default_rng([seed, em.COVARIANCE_TYPES.index(covariance_type)])
    kind = KINDS[seed % len(KINDS)]
    K = int(rng.integers(1, 6))
    D = int(rng.integers(2 if kind == "ill" else 1, 7))
    if N is None:
        N = int(np.exp(rng.uniform(np.log(K + 1), np.log(3000))))
    kappa = 10 ** rng.uniform(4, 10) if kind == "ill" else rng.uniform(1, 10)
    sd = np.sqrt(np.logspace(0, -np.log10(kappa), D)) if D > 1 else np.ones(1)
    Q = np.linalg.qr(rng.normal(size=(D, D)))[0]
    if covariance_type in ("diag", "spherical"):
        Q = np.eye(D)
    labels = rng.integers(K, size=N)
    centres = 3.0 * rng.normal(size=(K, D)) * sd
    X = centres[labels] + rng.normal(size=(N, D)) * sd * rng.uniform(0.5, 1.5, (K, 1))[labels]
    X = X @ Q.T
    if kind == "far":
        far = rng.choice(N, size=min(N - 1, int(rng.integers(1, 4))), replace=False)
        v = rng.normal(size=(len(far), D))
        X[far] = X.mean(axis=0) + 1e3 * (v / np.linalg.norm(v, axis=1, keepdims=True) * sd) @ Q.T
    if kind == "shifted":
        X += 1e8 * rng.choice([-1.0, 1.0], size=D)
    means = X[rng.choice(N, size=K, replace=False)]
    diff = X - X.mean(axis=0)
    full = diff.T @ diff / N + (1e-3 if N <= D else 0.0) * np.diag(sd**2)
    cov = _to_type(full, covariance_type)
    if covariance_type != "tied":
        cov = np.repeat(cov, K, axis=0)
    weights = rng.dirichlet(np.ones(K))
    reg_covar = 0.0 if kind == "ill" else float(rng.choice([0.0, 1e-6])) * sd[0] ** 2
    prior = None
    if covariance_type == "full" and seed % 5 == 0:
        prior = InverseWishartPrior.from_data(X, K, "auto")
    return kind, X, weights, means, cov, reg_covar, prior


def _factor_norms(prec_chol, covariance_type, K, D):
    """||P_k||_F for every k: shape (K,)."""
    if covariance_type == "full":
        return np.sqrt(np.sum(prec_chol**2, axis=(1, 2)))
    if covariance_type == "tied":
        return np.full(K, np.sqrt(np.sum(prec_chol**2)))
    if covariance_type == "diag":
        return np.sqrt(np.sum(prec_chol**2, axis=1))
    return np.sqrt(D) * prec_chol


def log_density_bound(X, means, prec_chol, covariance_type, log_joint):
    """b_ik of the module docstring: how far the two ln pi_k + ln N(x_i | k) may differ."""
    N, D = X.shape
    K = len(means)
    c = X.mean(axis=0)
    x_c = np.linalg.norm(X - c, axis=1)[:, None]
    mu_c = np.linalg.norm(means - c, axis=1)[None, :]
    x_mu = np.linalg.norm(X[:, None, :] - means[None], axis=2)
    a = _factor_norms(prec_chol, covariance_type, K, D)[None, :] * (x_c + mu_c + x_mu)
    log_det = em.log_det_precision_cholesky(prec_chol, covariance_type, D)
    y = np.sqrt(np.maximum(0.0, -2 * (log_joint - log_det) - D * np.log(2 * np.pi)))
    return (2 * D + 4) * U * (a * y + np.abs(log_joint)) + ((2 * D + 4) * U * a) ** 2


def compare_run(X, weights, means, cov, covariance_type, reg_covar, prior, loose: bool):
    """EM along the reference's path; at every step the engine redoes it from the same inputs.

    Returns the number of steps compared. ``loose``: add the derived bound to the E-step's
    tolerances (far and ill-conditioned problems).
    """
    N, D = X.shape
    K = len(means)
    x_scale = np.max(np.abs(X))
    var_scale = np.max(np.linalg.eigvalsh(np.atleast_2d(np.cov(X.T, bias=True))))
    compared = 0
    for _ in range(ROUNDS):
        if not np.min(min_eigenvalues(cov, covariance_type)) * MAX_CONDITION > var_scale:
            break  # the reference's path collapsed, beyond the range compared
        P = em.precision_cholesky(cov, covariance_type)
        # E-step
        with np.errstate(divide="ignore"):
            log_resp, log_px = em.estimate_log_resp(X, weights, means, P, covariance_type)
        resp = np.exp(log_resp)
        np.testing.assert_array_equal(resp, em.e_step(X, weights, means, cov, covariance_type))
        fast_resp, fast_log_px = _engine.responsibilities(X, weights, means, P, covariance_type)
        resp_tol = np.full((N, K), 1e-12)
        ll_tol = 1e-10 * np.sum(np.abs(log_px))
        if loose:
            b = log_density_bound(X, means, P, covariance_type, log_resp + log_px[:, None])
            spread = np.sum(resp * b, axis=1, keepdims=True)
            resp_tol += resp * (b + spread)
            ll_tol += spread.sum()
        err = np.abs(fast_resp - resp)
        assert np.all(err <= resp_tol), (
            f"responsibilities differ by {err.max():.3g} (tolerance there "
            f"{resp_tol.flat[np.argmax(err - resp_tol)]:.3g})"
        )
        ll = em.log_likelihood(X, weights, means, cov, covariance_type)
        assert ll == pytest.approx(float(np.sum(log_px)), rel=1e-13)
        assert abs(float(np.sum(fast_log_px)) - ll) <= ll_tol, (np.sum(fast_log_px), ll, ll_tol)
        compared += 1

        # M-step, from the same (reference) responsibilities
        new = em.m_step(X, resp, covariance_type, reg_covar, prior)
        fast = _engine.m_step(X, resp, covariance_type, reg_covar, prior)
        for name, got, want, scale in zip(
            ("weights", "means", "covariances"), fast, new, (1.0, x_scale, var_scale), strict=True
        ):
            assert got.shape == want.shape, name
            gap = np.max(np.abs(got - want))
            assert gap <= 1e-10 * scale, f"{name} differ by {gap:.3g}, scale {scale:.3g}"
        compared += 1
        weights, means, cov = new
    return compared


def _compare_problem(seed, covariance_type, N=None, block_rows=None) -> int:
    """One generated problem compared step by step (`compare_run`); blocks of ``block_rows``."""
    kind, X, weights, means, cov, reg, prior = make_problem(seed, covariance_type, N)
    run = (X, weights, means, cov, covariance_type, reg, prior, kind in ("far", "ill"))
    if block_rows is None:
        return compare_run(*run)
    K, D = means.shape
    with _engine.block_values(block_rows * K * D):
        assert len(_engine.blocks(len(X), K * D)) == -(-len(X) // block_rows)
        return compare_run(*run)


@pytest.mark.parametrize("covariance_type", em.COVARIANCE_TYPES)
def test_engine_equals_reference_after_every_step(monkeypatch, covariance_type):
    """51 generated problems per covariance type (204 in all), every E- and M-step compared.

    Each kind of problem (KINDS) gets about 13 seeds, N from K + 1 to 3000. Odd seeds cut the
    data into blocks of 7-64 rows (up to hundreds of blocks, shared by 3 worker threads whatever
    the machine's cores), even seeds run the whole data as one block. The last problem has
    N = K + 1 points.
    """
    monkeypatch.setenv("GMMLIB_NUM_THREADS", "3")
    steps = 0
    for seed in range(51):
        block_rows = int(np.random.default_rng(seed).integers(7, 65)) if seed % 2 else None
        N = None
        if seed == 50:
            N = len(make_problem(seed, covariance_type)[3]) + 1
        steps += _compare_problem(seed, covariance_type, N, block_rows)
    assert steps >= 0.9 * 2 * ROUNDS * 51, steps  # few paths end in a collapse


@pytest.mark.slow
@pytest.mark.parametrize("covariance_type", em.COVARIANCE_TYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_engine_equals_reference_on_1e5_points(monkeypatch, covariance_type, kind):
    """N = 1e5: several blocks at the engine's own block size, and with blocks of 4096 rows."""
    monkeypatch.setenv("GMMLIB_NUM_THREADS", "3")
    seed = 100 + KINDS.index(kind)  # seed % 4 picks the kind
    assert make_problem(seed, covariance_type, 100_000)[0] == kind
    assert _compare_problem(seed, covariance_type, 100_000) >= 2
    assert _compare_problem(seed, covariance_type, 100_000, block_rows=4096) >= 2


def test_tiny_responsibilities_are_flushed_to_zero_not_subnormal():
    """gamma below ~1e-250 is exactly 0 in the engine (no sum can see it; subnormals would slow
    EM down), while the reference keeps the exact tiny value."""
    means = np.array([[0.0], [30.0], [60.0]])
    cov = np.full((3, 1, 1), 1.0)
    X = np.linspace(-5, 65, 141)[:, None]
    weights = np.full(3, 1 / 3)
    resp, _ = _engine.responsibilities(X, weights, means, em.precision_cholesky(cov))
    assert not np.any((resp > 0) & (resp < 1e-250))
    assert np.any(resp == 0)  # the far components of the end points
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-14)
    reference = em.e_step(X, weights, means, cov)
    assert np.any((reference > 0) & (reference < 1e-250))
    np.testing.assert_allclose(resp, reference, rtol=1e-12, atol=1e-250)


@pytest.mark.parametrize("covariance_type", em.COVARIANCE_TYPES)
def test_many_blocks_on_threads_equal_one_block(monkeypatch, covariance_type):
    """The same fit with one block and with ~100 blocks on 3 threads: only the order of the sums
    differs (1e-12 relative: a few u times the number of partial sums)."""
    from gmmlib import GaussianMixture

    monkeypatch.setenv("GMMLIB_NUM_THREADS", "3")
    _, X, weights, means, cov, _, _ = make_problem(8, covariance_type, N=3000)
    weights = np.full(len(means), 1 / len(means))
    kwargs = dict(
        covariance_type=covariance_type,
        max_iter=5,
        tol=0.0,
        reg_covar=1e-6,
        weights_init=weights,
        means_init=means,
        covariances_init=cov,
    )
    with pytest.warns(RuntimeWarning, match="did not converge"):  # 5 rounds on purpose
        one = GaussianMixture(len(weights), **kwargs).fit(X)
    assert len(_engine.blocks(len(X), len(means) * X.shape[1])) == 1
    with _engine.block_values(30 * len(means) * X.shape[1]):
        assert len(_engine.blocks(len(X), len(means) * X.shape[1])) == 100
        with pytest.warns(RuntimeWarning, match="did not converge"):
            many = GaussianMixture(len(weights), **kwargs).fit(X)
    np.testing.assert_allclose(many.covariances_, one.covariances_, rtol=1e-12)
    np.testing.assert_allclose(many.means_, one.means_, rtol=1e-12)
    np.testing.assert_allclose(
        many.history_.log_likelihood, one.history_.log_likelihood, rtol=1e-12
    )
