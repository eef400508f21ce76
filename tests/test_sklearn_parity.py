"""Same numbers as scikit-learn from the same explicit start, at the default tol and at tol=0.

scikit-learn's loop: round t runs the E-step on theta_{t-1} (its mean log-likelihood is the
"lower bound"), then the M-step giving theta_t, then tests |lower bound change| < tol; it
returns theta_n (the M-step after the last test) with ``lower_bound_`` of theta_{n-1}. gmmlib's
`GaussianMixture` follows the same rule, so n_iter_, converged_, lower_bound_ and the
parameters agree for every covariance type.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from gmmlib import ConvergenceWarning, GaussianMixture
from gmmlib.em import from_full_covariances
from gmmlib.init import init_from_means

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
# Both libraries compute the same sums in a different order: rounding differs at ~1e-15
# relative per step, and EM contracts such differences, so 1e-8 leaves a wide margin while
# still catching any difference of one EM round (at least ~1e-4 here).
RTOL = 1e-8


def problem(seed: int):
    """Data from K Gaussians and an explicit start: unequal weights, K data points as means,
    the data covariance for every component."""
    rng = np.random.default_rng(seed)
    K, D = int(rng.integers(2, 5)), int(rng.integers(1, 5))
    N = int(rng.integers(60, 400))
    centres = rng.normal(scale=3.0, size=(K, D))
    labels = rng.integers(K, size=N)
    A = rng.normal(size=(K, D, D)) / np.sqrt(D)
    X = centres[labels] + np.einsum("nde,ne->nd", A[labels], rng.normal(size=(N, D)))
    weights, means, full = init_from_means(X, X[rng.choice(N, K, replace=False)])
    weights = weights * np.linspace(0.6, 1.4, K)
    return X, weights / weights.sum(), means, full


def start(full, covariance_type, weights):
    """The start's covariances in the type's shape (gmmlib's conversion) and their inverses."""
    cov = from_full_covariances(full, covariance_type, weights)
    return cov, (np.linalg.inv(cov) if covariance_type in ("full", "tied") else 1.0 / cov)


def fit_both(X, weights, means, full, covariance_type, **options):
    cov, precisions = start(full, covariance_type, weights)
    common = dict(
        covariance_type=covariance_type, weights_init=weights, means_init=means, **options
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(len(weights), precisions_init=precisions, **common).fit(X)
        gm = GaussianMixture(len(weights), covariances_init=cov, keep_history=True, **common).fit(X)
    return sk, gm


def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def assert_same_fit(sk, gm):
    assert gm.n_iter_ == sk.n_iter_
    assert gm.converged_ == sk.converged_
    assert rel_err(gm.lower_bound_, sk.lower_bound_) <= RTOL
    np.testing.assert_allclose(gm.lower_bounds_, sk.lower_bounds_, rtol=RTOL)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert rel_err(getattr(gm, name), getattr(sk, name)) <= RTOL, name


def borderline(sk, tol) -> bool:
    """A round whose change is within 1e-6 * tol of tol: its outcome depends on the last bit."""
    changes = np.abs(np.diff(sk.lower_bounds_))
    return tol > 0 and bool(np.any(np.abs(changes - tol) <= 1e-6 * tol))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("tol", [1e-3, 1e-5, 0.0])
def test_same_numbers_as_sklearn_on_generated_problems(covariance_type, tol):
    compared = 0
    for seed in range(8):
        X, weights, means, full = problem(seed)
        sk, gm = fit_both(X, weights, means, full, covariance_type, tol=tol, max_iter=60)
        if borderline(sk, tol):
            continue
        assert_same_fit(sk, gm)
        # history_ is exact about what each number belongs to: ln p(X | theta_t), t = 0..n.
        assert len(gm.history_.log_likelihood) == gm.n_iter_ + 1
        np.testing.assert_allclose(
            np.array(gm.history_.log_likelihood[:-1]) / len(X), sk.lower_bounds_, rtol=RTOL
        )
        assert rel_err(gm.history_.log_likelihood[-1] / len(X), sk.score(X)) <= RTOL
        np.testing.assert_array_equal(gm.predict(X), sk.predict(X))
        compared += 1
    assert compared >= 6


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_converged_at_the_max_iter_boundary_as_sklearn(covariance_type):
    """With max_iter = the round at which the test first passes, both report converged; one
    round fewer, neither does."""
    X, weights, means, full = problem(3)
    sk, _ = fit_both(X, weights, means, full, covariance_type, max_iter=200)
    assert sk.converged_
    n = sk.n_iter_
    for max_iter in (n, n - 1):
        sk, gm = fit_both(X, weights, means, full, covariance_type, max_iter=max_iter)
        assert_same_fit(sk, gm)
        assert gm.converged_ == (max_iter == n)


def test_the_issue_example_stops_at_the_same_round():
    """300 points, two unit blobs 3 apart, means_init=X[[0, 200]], identity covariances."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(200, 2)), rng.normal(size=(100, 2)) + 3])
    gm = GaussianMixture(
        2,
        means_init=X[[0, 200]],
        weights_init=[0.5, 0.5],
        covariances_init=np.array([np.eye(2)] * 2),
    ).fit(X)
    sk = SkGaussianMixture(
        2,
        means_init=X[[0, 200]],
        weights_init=[0.5, 0.5],
        precisions_init=np.array([np.eye(2)] * 2),
    ).fit(X)
    assert_same_fit(sk, gm)
    assert gm.stop_reason_ == "converged"


def test_warm_start_continues_like_sklearn():
    """One round per fit with warm_start (scikit-learn's test_monotonic_likelihood)."""
    X, weights, means, full = problem(1)
    cov, precisions = start(full, "full", weights)
    common = dict(weights_init=weights, means_init=means, max_iter=1, warm_start=True, tol=0.0)
    gm = GaussianMixture(len(weights), covariances_init=cov, **common)
    sk = SkGaussianMixture(len(weights), precisions_init=precisions, **common)
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(6):
            gm.fit(X)
            sk.fit(X)
            assert_same_fit(sk, gm)
            bounds.append(gm.lower_bound_)
    assert np.all(np.diff(bounds) >= 0)


def test_fit_predict_is_fit_then_predict():
    X, weights, means, full = problem(2)
    gm = GaussianMixture(len(weights), covariance_type="diag", random_state=0)
    labels = gm.fit_predict(X)
    np.testing.assert_array_equal(labels, gm.predict(X))
