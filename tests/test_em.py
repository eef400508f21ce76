"""The pure EM functions: agreement with scikit-learn and scipy, properties, stability."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import expit
from scipy.special import logsumexp as scipy_logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from gmmlib import GaussianMixture, e_step, log_likelihood, m_step
from gmmlib.em import estimate_log_resp, logsumexp, precision_cholesky
from gmmlib.init import init_from_means


def blobs(N=400, D=3, K=4, seed=0):
    """Data from K anisotropic Gaussians, and a stated start: K data points as means."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(K, D))
    labels = rng.integers(K, size=N)
    A = rng.normal(size=(K, D, D))
    X = centres[labels] + np.einsum("nde,ne->nd", A[labels], rng.normal(size=(N, D)))
    means = X[rng.choice(N, K, replace=False)]
    return X, means


def start_for(X, means, covariance_type):
    """Initial (weights, means, covariances, precisions for sklearn) in the type's shapes."""
    weights, means, full = init_from_means(X, means)
    weights = weights * np.linspace(0.5, 1.5, len(weights))
    weights /= weights.sum()  # unequal weights, so a bug ignoring them shows
    cov = {
        "full": full,
        "tied": full[0],
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": np.diagonal(full, axis1=1, axis2=2).mean(axis=1),
    }[covariance_type]
    precisions = np.linalg.inv(cov) if covariance_type in ("full", "tied") else 1.0 / cov
    return weights, means, cov, precisions


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("n_iter", [1, 10])
def test_agrees_with_sklearn_from_the_same_start(covariance_type, n_iter):
    X, means0 = blobs()
    weights, means, cov, precisions = start_for(X, means0, covariance_type)
    sk = SkGaussianMixture(
        len(weights), covariance_type=covariance_type, max_iter=n_iter, tol=0.0,
        reg_covar=1e-6, weights_init=weights, means_init=means, precisions_init=precisions,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X)
    gm = GaussianMixture(
        len(weights), covariance_type=covariance_type, max_iter=n_iter, tol=0.0,
        reg_covar=1e-6, weights_init=weights, means_init=means, covariances_init=cov,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gm.fit(X)
    assert gm.n_iter_ == n_iter
    assert rel_err(gm.weights_, sk.weights_) <= 1e-8
    assert rel_err(gm.means_, sk.means_) <= 1e-8
    assert rel_err(gm.covariances_, sk.covariances_) <= 1e-8
    # sklearn's lower_bound_ is the mean log-likelihood of the parameters before the last M-step
    assert rel_err(gm.history_.log_likelihood[n_iter - 1] / len(X), sk.lower_bound_) <= 1e-8
    assert rel_err(gm.score(X), sk.score(X)) <= 1e-8
    assert rel_err(gm.predict_proba(X), sk.predict_proba(X)) <= 1e-8
    assert rel_err(gm.bic(X), sk.bic(X)) <= 1e-8
    assert rel_err(gm.aic(X), sk.aic(X)) <= 1e-8
    np.testing.assert_array_equal(gm.predict(X), sk.predict(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:EM did not converge:RuntimeWarning")  # 5 rounds on purpose
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_many_blocks_on_threads_agree_with_sklearn(monkeypatch, covariance_type):
    """Big data is cut into blocks of rows shared by worker threads (`gmmlib._blocks`). With
    blocks made tiny, 3,000 points take that path (dozens of blocks, sums combined across
    threads) and must give scikit-learn's fit as the one-block path does."""
    import gmmlib._blocks as blocks_module

    X, means0 = blobs(N=3000, D=9, K=4, seed=5)
    weights, means, cov, precisions = start_for(X, means0, covariance_type)
    kwargs = dict(covariance_type=covariance_type, max_iter=5, tol=0.0, reg_covar=1e-6,
                  weights_init=weights, means_init=means)
    sk = SkGaussianMixture(len(weights), precisions_init=precisions, **kwargs).fit(X)
    one_block = GaussianMixture(len(weights), covariances_init=cov, **kwargs).fit(X)
    monkeypatch.setattr(blocks_module, "BLOCK_VALUES", 1 << 11)
    assert len(blocks_module.blocks(len(X), 4 * 9)) > 20
    many = GaussianMixture(len(weights), covariances_init=cov, **kwargs).fit(X)
    for fitted in (one_block, many):
        assert rel_err(fitted.weights_, sk.weights_) <= 1e-8
        assert rel_err(fitted.means_, sk.means_) <= 1e-8
        assert rel_err(fitted.covariances_, sk.covariances_) <= 1e-8
        assert rel_err(fitted.score(X), sk.score(X)) <= 1e-8
    # Only the order of the sums differs between the two paths.
    assert rel_err(many.covariances_, one_block.covariances_) <= 1e-12
    np.testing.assert_allclose(many.history_.log_likelihood, one_block.history_.log_likelihood,
                               rtol=1e-12)


@pytest.mark.parametrize("D", [2, 9, 16])  # 9 and 16 take the split triangular products
def test_log_likelihood_matches_scipy_densities(D):
    X, means = blobs(N=200, D=D, K=3, seed=3)
    weights, means, cov, _ = start_for(X, means, "full")
    cov = cov * np.array([0.3, 1.0, 2.0])[:, None, None]
    dens = np.column_stack([
        np.log(w) + multivariate_normal(m, c).logpdf(X)
        for w, m, c in zip(weights, means, cov, strict=True)
    ])
    expected_total = scipy_logsumexp(dens, axis=1).sum()
    assert log_likelihood(X, weights, means, cov) == pytest.approx(expected_total, rel=1e-12)
    resp = e_step(X, weights, means, cov)
    np.testing.assert_allclose(resp, np.exp(dens - scipy_logsumexp(dens, axis=1)[:, None]),
                               rtol=1e-11, atol=1e-300)


@pytest.mark.parametrize("D", [1, 3, 9, 16])
def test_m_step_is_the_closed_form(D):
    """Weights, means and covariances by the textbook formulas, written out with loops."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, D)) + 5.0
    resp = rng.dirichlet(np.ones(4), size=30)
    weights, means, cov = m_step(X, resp)
    np.testing.assert_array_equal(cov, cov.transpose(0, 2, 1))
    for k in range(4):
        nk = resp[:, k].sum()
        mu = sum(resp[i, k] * X[i] for i in range(30)) / nk
        sigma = sum(resp[i, k] * np.outer(X[i] - mu, X[i] - mu) for i in range(30)) / nk
        assert weights[k] == pytest.approx(nk / 30, rel=1e-13)
        np.testing.assert_allclose(means[k], mu, rtol=1e-12)
        np.testing.assert_allclose(cov[k], sigma, rtol=1e-11, atol=1e-14)


def test_responsibilities_exact_for_points_far_away():
    """Two unit-covariance components: the log-odds is linear in x, so gamma is a sigmoid.

    Points 1e3 standard deviations from both means give log-densities near -5e5: a naive
    exp() underflows to 0/0, log-sum-exp must still be exact.
    """
    means = np.array([[0.0, 0.0], [1.0, 0.5]])
    cov = np.repeat(np.eye(2)[None], 2, axis=0)
    weights = np.array([0.3, 0.7])
    X = np.array([[1000.0, 0.0], [-1000.0, 3.0], [0.5, 1000.0], [700.0, -700.0], [0.2, 0.1]])
    resp = e_step(X, weights, means, cov)
    # ln(gamma_0 / gamma_1) = ln(w0/w1) + (mu0 - mu1)^T x - (|mu0|^2 - |mu1|^2) / 2
    log_odds = np.log(weights[0] / weights[1]) + X @ (means[0] - means[1]) - 0.5 * (
        means[0] @ means[0] - means[1] @ means[1]
    )
    expected = np.column_stack([expit(log_odds), expit(-log_odds)])
    assert np.all(np.isfinite(resp))
    np.testing.assert_allclose(resp, expected, rtol=1e-12, atol=1e-12)
    # In log space the odds stay exact to ~1e-12 relative even where gamma underflows.
    log_resp, _ = estimate_log_resp(X, weights, means, precision_cholesky(cov))
    np.testing.assert_allclose(log_resp[:, 0] - log_resp[:, 1], log_odds, rtol=1e-12)
    assert np.isfinite(log_likelihood(X, weights, means, cov))


def test_far_from_origin_data_loses_no_digits():
    """Shifting data and means by 1e6 must not change responsibilities or the likelihood."""
    X, means = blobs(N=100, D=2, K=3, seed=5)
    weights, means, cov, _ = start_for(X, means, "full")
    shift = np.array([1e6, -2e6])
    np.testing.assert_allclose(
        e_step(X + shift, weights, means + shift, cov), e_step(X, weights, means, cov),
        rtol=1e-8, atol=1e-12,
    )
    assert log_likelihood(X + shift, weights, means + shift, cov) == pytest.approx(
        log_likelihood(X, weights, means, cov), rel=1e-9
    )


def test_logsumexp_handles_extremes():
    a = np.array([[1000.0, 1000.0], [-1000.0, -1000.0], [-np.inf, -np.inf], [0.0, -np.inf]])
    out = logsumexp(a, axis=1)
    np.testing.assert_allclose(out[:2], [1000 + np.log(2), -1000 + np.log(2)], rtol=1e-15)
    assert out[2] == -np.inf and out[3] == 0.0


def test_precision_cholesky_inverts_the_covariance():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(3, 4, 4))
    cov = A @ A.transpose(0, 2, 1) + np.eye(4)
    P = precision_cholesky(cov)
    np.testing.assert_allclose(P @ P.transpose(0, 2, 1) @ cov, np.repeat(np.eye(4)[None], 3, 0),
                               atol=1e-10)
    assert np.allclose(P, np.triu(P))  # upper triangular


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    N=st.integers(2, 60),
    D=st.integers(1, 4),
    K=st.integers(1, 5),
)
def test_responsibilities_are_a_distribution(seed, N, D, K):
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=rng.uniform(0.1, 100), size=(N, D))
    means = rng.normal(scale=10, size=(K, D))
    A = rng.normal(size=(K, D, D))
    cov = A @ A.transpose(0, 2, 1) + 0.1 * np.eye(D)
    weights = rng.dirichlet(np.ones(K))
    resp = e_step(X, weights, means, cov)
    assert resp.shape == (N, K)
    assert np.all(resp >= 0)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    K=st.integers(1, 5),
    D=st.integers(1, 3),
    covariance_type=st.sampled_from(["full", "tied", "diag", "spherical"]),
)
def test_log_likelihood_never_decreases(seed, K, D, covariance_type):
    """Each EM round cannot lower ln p(X) (Dempster, Laird & Rubin 1977). reg_covar=0 is the
    exact EM; a collapse may end the run early (on_collapse="warn") but never breaks the rule."""
    rng = np.random.default_rng(seed)
    N = int(rng.integers(5 * K, 80))
    X = rng.normal(size=(N, D)) * rng.uniform(0.5, 3, size=D) + rng.integers(0, 3, (N, 1)) * 3
    gm = GaussianMixture(
        K, covariance_type=covariance_type, reg_covar=0.0, tol=0.0, max_iter=30,
        init_params="random", random_state=seed, on_collapse="warn",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    ll = np.array(gm.history_.log_likelihood)
    assert np.all(np.isfinite(ll))
    drops = np.diff(ll)
    assert np.all(drops >= -1e-9 * np.maximum(1.0, np.abs(ll[1:]))), f"ll went down: {ll}"


def test_tiny_responsibilities_are_flushed_to_zero_not_subnormal():
    """gamma below ~1e-250 is exactly 0 (no sum can see it; subnormals would slow EM down)."""
    means = np.array([[0.0], [30.0], [60.0]])
    cov = np.full((3, 1, 1), 1.0)
    X = np.linspace(-5, 65, 141)[:, None]
    resp = e_step(X, np.full(3, 1 / 3), means, cov)
    assert not np.any((resp > 0) & (resp < 1e-250))
    assert np.any(resp == 0)  # the far components of the end points
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-14)
