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
from gmmlib.em import (
    SingularCovarianceError,
    estimate_log_resp,
    from_full_covariances,
    full_covariances,
    logsumexp,
    precision_cholesky,
)
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
    cov = from_full_covariances(full, covariance_type, weights)  # gmmlib's own
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
        len(weights),
        covariance_type=covariance_type,
        max_iter=n_iter,
        tol=0.0,
        reg_covar=1e-6,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X)
    gm = GaussianMixture(
        len(weights),
        covariance_type=covariance_type,
        max_iter=n_iter,
        tol=0.0,
        reg_covar=1e-6,
        weights_init=weights,
        means_init=means,
        covariances_init=cov,
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


@pytest.mark.parametrize("D", [2, 9, 16])
def test_log_likelihood_matches_scipy_densities(D):
    X, means = blobs(N=200, D=D, K=3, seed=3)
    weights, means, cov, _ = start_for(X, means, "full")
    cov = cov * np.array([0.3, 1.0, 2.0])[:, None, None]
    dens = np.column_stack(
        [
            np.log(w) + multivariate_normal(m, c).logpdf(X)
            for w, m, c in zip(weights, means, cov, strict=True)
        ]
    )
    expected_total = scipy_logsumexp(dens, axis=1).sum()
    assert log_likelihood(X, weights, means, cov) == pytest.approx(expected_total, rel=1e-12)
    resp = e_step(X, weights, means, cov)
    np.testing.assert_allclose(
        resp, np.exp(dens - scipy_logsumexp(dens, axis=1)[:, None]), rtol=1e-11, atol=1e-300
    )


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
    log_odds = (
        np.log(weights[0] / weights[1])
        + X @ (means[0] - means[1])
        - 0.5 * (means[0] @ means[0] - means[1] @ means[1])
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
        e_step(X + shift, weights, means + shift, cov),
        e_step(X, weights, means, cov),
        rtol=1e-8,
        atol=1e-12,
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
    np.testing.assert_allclose(
        P @ P.transpose(0, 2, 1) @ cov, np.repeat(np.eye(4)[None], 3, 0), atol=1e-10
    )
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
        K,
        covariance_type=covariance_type,
        reg_covar=0.0,
        tol=0.0,
        max_iter=30,
        init_params="random",
        random_state=seed,
        on_collapse="warn",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    ll = np.array(gm.history_.log_likelihood)
    assert np.all(np.isfinite(ll))
    drops = np.diff(ll)
    assert np.all(drops >= -1e-9 * np.maximum(1.0, np.abs(ll[1:]))), f"ll went down: {ll}"


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_from_full_covariances_undoes_full_covariances(covariance_type):
    """Each type's covariances -> full matrices -> back: unchanged (the weights sum to 1)."""
    rng = np.random.default_rng(5)
    K, D = 3, 4
    A = rng.normal(size=(K, D, D))
    full = A @ A.transpose(0, 2, 1) + np.eye(D)
    weights = rng.dirichlet(np.ones(K))
    cov = {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(0.5, 2.0, (K, D)),
        "spherical": rng.uniform(0.5, 2.0, K),
    }[covariance_type]
    back = from_full_covariances(
        full_covariances(cov, covariance_type, K, D), covariance_type, weights
    )
    # rel 1e-15: "tied" averages K equal matrices with weights that sum to 1 (a few ulp).
    np.testing.assert_allclose(back, cov, rtol=1e-15 * K, atol=0)
    assert back.shape == cov.shape
    # "tied" is the weighted mean of the components' matrices; "spherical" the mean variance.
    if covariance_type == "tied":
        np.testing.assert_allclose(
            from_full_covariances(full, "tied", weights), np.einsum("k,kde->de", weights, full)
        )
    if covariance_type == "spherical":
        np.testing.assert_allclose(
            from_full_covariances(full, "spherical", weights),
            np.trace(full, axis1=1, axis2=2) / D,
        )


def test_from_full_covariances_names_an_unknown_type():
    with pytest.raises(ValueError, match="covariance_type must be one of .* got .banana."):
        from_full_covariances(np.eye(2)[None], "banana", np.ones(1))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_m_step_is_the_closed_form_for_every_covariance_type(covariance_type):
    """tied = sum_k S_k / N, diag = diagonal of S_k / N_k, spherical = its mean (with reg)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 3)) * [1.0, 2.0, 0.5] + 7.0
    resp = rng.dirichlet(np.ones(3), size=40)
    weights, means, cov = m_step(X, resp, covariance_type, reg_covar=1e-3)
    full = np.array(
        [
            sum(resp[i, k] * np.outer(X[i] - means[k], X[i] - means[k]) for i in range(40))
            for k in range(3)
        ]
    )  # S_k
    nk = resp.sum(axis=0)
    expected = {
        "full": full / nk[:, None, None] + 1e-3 * np.eye(3),
        "tied": full.sum(axis=0) / 40 + 1e-3 * np.eye(3),
        "diag": np.diagonal(full, axis1=1, axis2=2) / nk[:, None] + 1e-3,
        "spherical": (np.diagonal(full, axis1=1, axis2=2) / nk[:, None]).mean(axis=1) + 1e-3,
    }[covariance_type]
    # rel 1e-12: the same sums in another order (N_k carries a 1e-15 guard, far below).
    np.testing.assert_allclose(cov, expected, rtol=1e-12)
    np.testing.assert_allclose(weights, nk / 40, rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros(5), [1.0], [[0.0]], [[[1.0]]]), "2-D array"),
        ((np.zeros((5, 2)), [1.0], [[0.0]], [[[1.0]]]), "X has 2 features"),
        ((np.zeros((5, 1)), [0.5, 0.5], [[0.0]], [[[1.0]]]), "weights must have shape"),
        ((np.zeros((5, 1)), [1.0], [0.0], [[[1.0]]]), "means must have shape"),
        ((np.zeros((5, 1)), [1.0], [[0.0]], [[1.0]]), "covariances for covariance_type"),
    ],
)
def test_bad_shapes_get_a_clear_error(args, message):
    for step in (e_step, log_likelihood):
        with pytest.raises(ValueError, match=message):
            step(*args)


def test_m_step_rejects_bad_shapes():
    with pytest.raises(ValueError, match="2-D array"):
        m_step(np.zeros(5), np.ones((5, 1)))
    with pytest.raises(ValueError, match="resp must have shape"):
        m_step(np.zeros((5, 2)), np.ones((4, 1)))
    with pytest.raises(ValueError, match="resp must have shape"):
        m_step(np.zeros((5, 2)), np.ones(5))
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        m_step(np.zeros((5, 2)), np.ones((5, 1)), covariance_type="round")


def test_singular_covariance_names_the_component():
    X = np.zeros((3, 2))
    cov = np.array([np.eye(2), [[1.0, 1.0], [1.0, 1.0]]])
    with pytest.raises(SingularCovarianceError, match="component 1") as info:
        e_step(X, [0.5, 0.5], np.zeros((2, 2)), cov)
    assert info.value.component == 1


def test_reference_lines_fit_the_book_page():
    """The book shows gmmlib/em.py whole: lines of at most 79 characters need no scrolling."""
    from pathlib import Path

    import gmmlib.em

    lines = Path(gmmlib.em.__file__).read_text(encoding="utf-8").splitlines()
    long = [(n, len(line)) for n, line in enumerate(lines, 1) if len(line) > 79]
    assert not long, f"lines longer than 79 characters (line, length): {long}"


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_em_loop_is_e_step_then_m_step_with_every_log_likelihood(covariance_type):
    from gmmlib.em import em_loop, from_full_covariances

    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 2)) + np.repeat([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]], 20, axis=0)
    weights, means, full = init_from_means(X, X[[0, 20, 40]])
    cov = from_full_covariances(full, covariance_type, weights)
    run = em_loop(X, weights, means, cov, 4, covariance_type, reg_covar=1e-6)
    w, mu, c = weights, means, cov
    lls = [log_likelihood(X, w, mu, c, covariance_type)]
    for _ in range(4):
        w, mu, c = m_step(X, e_step(X, w, mu, c, covariance_type), covariance_type, 1e-6)
        lls.append(log_likelihood(X, w, mu, c, covariance_type))
    assert run.collapse is None and np.allclose(run.log_likelihoods, lls, rtol=0, atol=1e-9)
    for got, expected in zip(run[:3], (w, mu, c), strict=True):
        assert np.allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(run.log_likelihoods) > -1e-9)  # EM never goes down


def test_em_loop_stops_before_the_collapse_the_estimator_reports():
    from gmmlib import CollapseError
    from gmmlib.datasets import collapse_data, collapse_init
    from gmmlib.em import em_loop

    X = collapse_data()
    start = collapse_init(X, 4, 22)
    run = em_loop(X, *start, 50, collapse_tol=1e-8)
    w0, m0, c0 = start
    gm = GaussianMixture(4, reg_covar=0.0, weights_init=w0, means_init=m0, covariances_init=c0)
    with pytest.raises(CollapseError) as caught:
        gm.fit(X)
    report = caught.value.report
    assert run.collapse == (report.iteration, report.component) == (9, 2)
    assert len(run.log_likelihoods) == 9  # theta_0 .. theta_8, the collapsed theta_9 refused
