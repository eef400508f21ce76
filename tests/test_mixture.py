"""The estimator: step-wise EM, history, collapse reports, the prior, bad input, data sets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gmmlib import (
    CollapseError,
    CollapseWarning,
    ConvergenceWarning,
    GaussianMixture,
    check_parameters,
    e_step,
    m_step,
)
from gmmlib.datasets import collapse_data, collapse_init, old_faithful, tilted_blobs
from gmmlib.diagnostics import collapse_threshold, collapsed_components

# The collapse recipe (docs/DESIGN.md): 20 points, K=4, means on data points chosen by a seed,
# reg_covar=0. Seed 22 collapses component 2 onto a single point at iteration 9.
REFERENCE_SEED, REFERENCE_ITERATION, REFERENCE_COMPONENT = 22, 9, 2


def recipe(seed=REFERENCE_SEED, K=4, **options):
    X = collapse_data()
    weights, means, covariances = collapse_init(X, K, seed)
    params = dict(n_components=K, reg_covar=0.0, tol=0.0, max_iter=200, means_init=means)
    params.update(options)
    return X, GaussianMixture(**params)


def test_fit_recovers_tilted_blobs_better_than_labels_by_chance():
    X, labels = tilted_blobs()
    gm = GaussianMixture(3, random_state=0, n_init=3).fit(X)
    assert gm.converged_ and gm.stop_reason_ == "converged"
    # Up to relabelling, nearly every point lands in its true cluster.
    pred = gm.predict(X)
    agreement = max(
        np.mean(perm[pred] == labels)
        for perm in map(np.array, __import__("itertools").permutations(range(3)))
    )
    assert agreement > 0.95
    np.testing.assert_allclose(gm.weights_.sum(), 1.0, rtol=1e-12)


def test_steps_alternate_and_replay_the_fit():
    X, gm = recipe(seed=1, K=2, max_iter=15)
    steps = list(gm.steps(X))
    kinds = [s.kind for s in steps]
    assert kinds[0] == "E" and kinds[-1] == "E"
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))
    assert [s.iteration for s in steps if s.kind == "M"] == list(range(1, 16))
    assert steps[-1].stop == "max_iter"
    # Each M-step is m_step on the responsibilities of the E-step before it ...
    for e, m in zip(steps[0::2], steps[1::2], strict=False):
        w, mu, cov = m_step(X, e.resp, "full", 0.0)
        np.testing.assert_allclose(m.means, mu, rtol=1e-13)
        np.testing.assert_allclose(m.covariances, cov, rtol=1e-13)
        np.testing.assert_array_equal(m.resp, e.resp)
    # ... and each E-step is e_step on the parameters of the M-step before it.
    for m, e in zip(steps[1::2], steps[2::2], strict=False):
        np.testing.assert_allclose(
            e.resp, e_step(X, m.weights, m.means, m.covariances), rtol=1e-12, atol=1e-300
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = recipe(seed=1, K=2, max_iter=15, keep_history=True)[1].fit(X)
    assert len(fitted.history_.steps) == len(steps)
    assert fitted.history_.log_likelihood == [s.log_likelihood for s in steps if s.kind == "E"]
    np.testing.assert_array_equal(fitted.means_, steps[-1].means)


def test_history_is_kept_only_on_request():
    X, gm = recipe(seed=1, K=2, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    assert gm.history_.steps == []
    assert len(gm.history_.log_likelihood) == 6  # theta_0 .. theta_5


def test_reference_collapse_is_reported_with_component_iteration_and_points():
    X, gm = recipe()
    with pytest.raises(CollapseError) as info:
        gm.fit(X)
    report = info.value.report
    assert (report.component, report.iteration) == (REFERENCE_COMPONENT, REFERENCE_ITERATION)
    assert report.n_points == 1
    assert report.nk == pytest.approx(1.0, abs=1e-6)
    assert report.min_eigenvalue <= collapse_threshold(X)
    message = str(info.value)
    for words in (
        "Component 2",
        "iteration 9",
        "one data point",
        "reg_covar",
        "fewer components",
        "prior",
    ):
        assert words in message
    # The estimator keeps the last parameters before the collapse: finite and usable.
    assert gm.n_iter_ == REFERENCE_ITERATION - 1
    assert np.all(np.isfinite(gm.covariances_)) and np.all(np.isfinite(gm.predict_proba(X)))
    assert collapsed_components(gm.covariances_, 0.0, collapse_threshold(X)).size == 0


def test_collapse_warn_stops_with_finite_parameters():
    X, gm = recipe(on_collapse="warn")
    with pytest.warns(CollapseWarning, match="Component 2 collapsed at iteration 9"):
        gm.fit(X)
    assert gm.stop_reason_ == "collapse" and not gm.converged_
    assert gm.collapse_.component == REFERENCE_COMPONENT
    assert all(np.all(np.isfinite(a)) for a in (gm.weights_, gm.means_, gm.covariances_))


def test_collapse_steps_yield_the_collapsed_step_then_raise():
    X, gm = recipe()
    seen = []
    with pytest.raises(CollapseError):
        for step in gm.steps(X):
            seen.append(step)
    last = seen[-1]
    assert last.kind == "M" and last.stop == "collapse"
    assert last.collapse.component == REFERENCE_COMPONENT
    assert last.min_eigenvalues[REFERENCE_COMPONENT] <= collapse_threshold(X)


def test_reg_covar_stops_the_crash_but_not_the_collapse():
    X, gm = recipe(reg_covar=1e-6, on_collapse="continue", max_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    assert gm.collapse_ is not None  # the empirical covariance still went singular ...
    assert gm.n_iter_ > gm.collapse_.iteration  # ... but EM went on, finite
    assert np.min(np.linalg.eigvalsh(gm.covariances_)) >= 1e-6 * (1 - 1e-9)
    assert np.isfinite(gm.log_likelihood_)


def test_prior_prevents_collapse_and_log_posterior_never_decreases():
    X, gm = recipe(covariance_prior="auto", max_iter=300, keep_history=True, tol=1e-10)
    gm.fit(X)
    assert gm.collapse_ is None and gm.converged_
    lp = np.array(gm.history_.log_posterior)
    assert np.all(np.diff(lp) >= -1e-9 * np.abs(lp[1:]))
    floor = np.linalg.eigvalsh(np.cov(X.T, bias=True) / 4)[0] / (len(X) + 4 + 2 + 1)
    assert min(s.min_eigenvalues.min() for s in gm.history_.steps) >= floor * (1 - 1e-9)


def test_prior_changes_nothing_but_the_covariance_update():
    X, gm = recipe(seed=3, K=2, covariance_prior=0.5, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    start = collapse_init(X, 2, 3)
    resp = e_step(X, *start)
    nk = resp.sum(axis=0)
    w, mu, _ = m_step(X, resp)
    np.testing.assert_allclose(gm.means_, mu, rtol=1e-12)
    for k in range(2):
        S = ((X - mu[k]).T * resp[:, k]) @ (X - mu[k])
        expected = (0.5 * np.eye(2) + S) / (nk[k] + 4 + 2 + 1)  # dof = D + 2 = 4
        np.testing.assert_allclose(gm.covariances_[k], expected, rtol=1e-12)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_each_initialisation_fits_and_is_reproducible(init_params):
    X = old_faithful(standardize=True)
    fits = [
        GaussianMixture(2, init_params=init_params, random_state=7, tol=1e-8, max_iter=1000).fit(X)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(fits[0].means_, fits[1].means_)
    # Bishop's Fig. 9.8: two clusters, short and long eruptions.
    assert sorted(np.round(fits[0].weights_, 2)) == pytest.approx([0.36, 0.64], abs=0.02)


def test_sample_draws_from_the_fitted_mixture():
    X = old_faithful()
    gm = GaussianMixture(2, random_state=0).fit(X)
    Y, labels = gm.sample(20000, random_state=1)
    assert Y.shape == (20000, 2) and set(np.unique(labels)) == {0, 1}
    for k in range(2):
        np.testing.assert_allclose(Y[labels == k].mean(axis=0), gm.means_[k], rtol=0.02)
        np.testing.assert_allclose(np.mean(labels == k), gm.weights_[k], atol=0.015)


def test_datasets():
    X = old_faithful()
    assert X.shape == (272, 2)
    np.testing.assert_array_equal(X[0], [3.6, 79.0])
    Z = old_faithful(standardize=True)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1, rtol=1e-12)
    Xt, labels = tilted_blobs(601)
    assert Xt.shape == (601, 2) and np.bincount(labels).tolist() == [201, 200, 200]
    np.testing.assert_array_equal(collapse_data(), collapse_data())
    w, mu, cov = collapse_init(collapse_data(), 4, 0)
    assert len({tuple(m) for m in mu}) == 4 and np.allclose(w, 0.25)


# ---- bad input: a ValueError that names the problem -------------------------------------------

GOOD = np.random.default_rng(0).normal(size=(30, 2))


@pytest.mark.parametrize(
    "X, options, match",
    [
        (GOOD[:, 0], {}, r"2-D array .* got shape \(30,\).*reshape"),
        (GOOD[None], {}, r"2-D array .* got shape \(1, 30, 2\)"),
        (np.where(np.eye(30, 2) > 0, np.nan, GOOD), {}, r"X contains NaN .*index \(0, 0\)"),
        (np.where(np.eye(30, 2) > 0, np.inf, GOOD), {}, r"X contains infinite"),
        (GOOD[:3], {"n_components": 4}, r"3 points but n_components=4"),
        ([["a", "b"]], {}, r"X must be numeric"),
        (GOOD, {"n_components": 0}, r"n_components must be > 0"),
        (GOOD, {"n_components": 2.5}, r"n_components must be an integer"),
        (GOOD, {"covariance_type": "ful"}, r"covariance_type must be one of"),
        (GOOD, {"init_params": "k-means"}, r"init_params must be one of"),
        (GOOD, {"on_collapse": "ignore"}, r"on_collapse must be one of"),
        (GOOD, {"reg_covar": -1e-6}, r"reg_covar must be >= 0"),
        (GOOD, {"tol": np.nan}, r"tol must be a finite number"),
        (GOOD, {"max_iter": -1}, r"max_iter must be >= 0"),
        (
            GOOD,
            {"n_components": 2, "means_init": np.zeros((3, 2))},
            r"The parameter 'means' should have the shape of \(2, 2\), but got \(3, 2\): "
            r"means must have shape \(K, D\) = \(2, 2\)",
        ),
        (
            GOOD,
            {"n_components": 2, "means_init": np.zeros((2, 2)), "weights_init": [1.2, -0.2]},
            r"weights must be positive, but weights\[1\] = -0.2",
        ),
        (
            GOOD,
            {"n_components": 2, "means_init": np.zeros((2, 2)), "weights_init": [0.2, 0.2]},
            r"weights must sum to 1",
        ),
        (
            GOOD,
            {
                "n_components": 2,
                "means_init": np.zeros((2, 2)),
                "covariances_init": np.array([np.eye(2), [[1.0, 2.0], [2.0, 1.0]]]),
            },
            r"covariances\[1\] must be positive definite, but its smallest eigenvalue is -1",
        ),
        (
            GOOD,
            {
                "n_components": 2,
                "means_init": np.zeros((2, 2)),
                "covariances_init": np.array([np.eye(2), [[1.0, 0.5], [0.0, 1.0]]]),
            },
            r"covariances\[1\] must be symmetric",
        ),
        (
            GOOD,
            {"n_components": 2, "means_init": np.zeros((2, 2)), "covariances_init": np.eye(2)},
            r"The parameter 'full covariance' should have the shape of \(2, 2, 2\), but got "
            r"\(2, 2\): covariances for covariance_type='full' must have shape \(K, D, D\)",
        ),
        (
            GOOD,
            {
                "n_components": 2,
                "means_init": np.zeros((2, 2)),
                "covariance_type": "diag",
                "covariances_init": np.array([[1.0, 1.0], [0.0, 1.0]]),
            },
            r"covariances of component 1 must be positive",
        ),
        (GOOD, {"covariance_type": "diag", "covariance_prior": "auto"}, r"'full' only"),
        (GOOD, {"covariance_prior": -1.0}, r"covariance_prior must be positive"),
        (
            GOOD,
            {"covariance_prior": "auto", "degrees_of_freedom_prior": 0.5},
            r"degrees_of_freedom_prior must be > D - 1 = 1",
        ),
    ],
)
def test_bad_input_raises_a_clear_value_error(X, options, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**{"n_components": 2, **options}).fit(X)


def test_using_an_unfitted_or_mismatched_model_is_explained():
    with pytest.raises(ValueError, match="not fitted yet"):
        GaussianMixture(2).predict(GOOD)
    gm = GaussianMixture(2, random_state=0).fit(GOOD)
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 2"):
        gm.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="n_samples must be > 0"):
        gm.sample(0)


def test_check_parameters_for_the_pure_functions():
    with pytest.raises(ValueError, match=r"X has 3 features, but the means have 2"):
        check_parameters(np.zeros((5, 3)), [1.0], np.zeros((1, 2)), np.eye(2)[None])
    with pytest.raises(ValueError, match=r"parameter 'weights' should have the shape of \(1,\)"):
        check_parameters(np.zeros((5, 2)), [0.5, 0.5], np.zeros((1, 2)), np.eye(2)[None])
    X, w, mu, cov = check_parameters(GOOD, [1.0], np.zeros((1, 2)), np.eye(2)[None])
    assert X.dtype == np.float64 and cov.shape == (1, 2, 2)


# ---- scikit-learn's behaviours: rank-deficient data, translation, random_state ---------------

BLOBS = np.vstack([GOOD + 0.0, GOOD + 4.0])
RANK_DEFICIENT = {
    "constant column": np.column_stack([BLOBS, np.full(len(BLOBS), 5.0)]),
    "collinear features": np.column_stack([BLOBS, BLOBS @ [1.0, 2.0]]),
    "all points identical": np.ones((10, 3)),
}


# scikit-learn's own KMeans warns that identical points give fewer distinct clusters.
@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("case", sorted(RANK_DEFICIENT))
def test_rank_deficient_data_fit_with_reg_covar_as_sklearn(case, covariance_type):
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    X = RANK_DEFICIENT[case]
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    assert gm.collapse_ is None and gm.converged_
    assert np.all(np.isfinite(gm.score_samples(X)))
    sk = SkGaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    # Different starts (gmmlib's own k-means), same optimum: the mean log-likelihood agrees
    # to the tolerance both stop at (tol=1e-3 per point).
    assert gm.score(X) == pytest.approx(sk.score(X), abs=1e-2)


def test_more_features_than_points_fit_with_reg_covar():
    X = np.random.default_rng(1).normal(size=(5, 8))
    gm = GaussianMixture(1).fit(X)  # one component spans the data's 4-D subspace: no collapse
    assert gm.converged_ and gm.collapse_ is None
    # With K=2 each component holds fewer points than the subspace has dimensions: a real
    # collapse by gmmlib's rule; on_collapse="continue" fits on as scikit-learn does.
    gm2 = GaussianMixture(2, random_state=0, on_collapse="continue").fit(X)
    assert gm2.collapse_ is not None and np.isfinite(gm2.lower_bound_)


@pytest.mark.parametrize("case", sorted(RANK_DEFICIENT) + ["more features than points"])
def test_rank_deficient_data_with_reg_covar_zero_name_cause_and_cure(case):
    X = RANK_DEFICIENT.get(case, np.random.default_rng(1).normal(size=(5, 8)))
    cause = {
        "constant column": "column\\(s\\) \\[2\\] are constant",
        "collinear features": "linear combinations",
        "all points identical": "all points are identical",
        "more features than points": "fewer points \\(5\\) than features \\(8\\)",
    }[case]
    with pytest.raises(ValueError, match=f"rank-deficient.*{cause}.*Set reg_covar > 0"):
        GaussianMixture(2, reg_covar=0.0).fit(X)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_default_start_does_not_move_with_the_data(init_params):
    """Distances are taken on centred data: shifting X by 1e8 moves the start by 1e8 only."""
    X = tilted_blobs()[0]
    first = [
        next(GaussianMixture(3, init_params=init_params, random_state=1).steps(Z))
        for Z in (X, X + 1e8)
    ]
    # X + 1e8 holds X to ulp(1e8) = 1.5e-8 only: agreement to ~1e-7 is all there is to have.
    np.testing.assert_allclose(first[1].weights, first[0].weights, rtol=1e-6)
    np.testing.assert_allclose(first[1].means - 1e8, first[0].means, atol=1e-6)
    np.testing.assert_allclose(first[1].covariances, first[0].covariances, rtol=1e-6)


def test_default_init_is_sklearns_kmeans_and_reproducible():
    assert GaussianMixture().init_params == "kmeans"
    X = tilted_blobs()[0]
    a, b = (GaussianMixture(3, random_state=5).fit(X) for _ in range(2))
    np.testing.assert_array_equal(a.means_, b.means_)


def test_sample_follows_random_state():
    gm = GaussianMixture(2, random_state=3).fit(BLOBS)
    np.testing.assert_array_equal(gm.sample(5)[0], gm.sample(5)[0])
    assert not np.array_equal(gm.sample(5, random_state=4)[0], gm.sample(5)[0])
    moving = GaussianMixture(2, random_state=np.random.default_rng(3)).fit(BLOBS)
    assert not np.array_equal(moving.sample(5)[0], moving.sample(5)[0])


@pytest.mark.parametrize(
    "X, options, match",
    [
        (GOOD + 1j, {}, r"Complex data not supported"),
        (GOOD * 1e160, {}, r"too large for float64.*Rescale X"),
        (GOOD, {"covariance_prior": "bogus"}, r"covariance_prior must be None, 'auto'.*'bogus'"),
        (GOOD, {"random_state": "abc"}, r"random_state must be None, an integer.*'abc'"),
        (GOOD, {"random_state": -1}, r"random_state must be"),
        (GOOD[:1], {"n_components": 1}, r"1 sample\(s\) .* while a minimum of 2 is required"),
        (GOOD, {"warm_start": "yes"}, r"warm_start must be True or False"),
        (
            GOOD,
            {
                "n_components": 2,
                "means_init": np.zeros((2, 2)),
                "covariances_init": np.array([np.eye(2)] * 2),
                "precisions_init": np.array([np.eye(2)] * 2),
            },
            r"not both",
        ),
        (
            GOOD,
            {
                "n_components": 2,
                "means_init": np.zeros((2, 2)),
                "precisions_init": np.array([np.eye(2), -np.eye(2)]),
            },
            r"precisions\[1\] must be positive definite",
        ),
    ],
)
def test_more_bad_input_is_named(X, options, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**{"n_components": 2, **options}).fit(X)


def test_max_iter_zero_returns_the_start_and_precisions_init_is_used():
    means = np.array([[0.0, 0.0], [4.0, 4.0]])
    precisions = np.array([np.eye(2) * 2, np.eye(2) * 0.5])
    gm = GaussianMixture(2, means_init=means, precisions_init=precisions, max_iter=0).fit(BLOBS)
    assert gm.n_iter_ == 0 and gm.lower_bound_ == -np.inf and not gm.converged_
    np.testing.assert_allclose(gm.precisions_, precisions, rtol=1e-12)
    np.testing.assert_array_equal(gm.means_, means)
