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


# ---- where a scikit-learn user meets gmmlib: warnings, errors, partial starts ----------------


def _no_convergence(estimator, X):
    """Fit with max_iter=1 and tol=0, so EM stops before it converges and warns."""
    return estimator.set_params(max_iter=1, tol=0.0).fit(X)


def test_convergence_warning_is_caught_by_either_library_s_filter():
    X, weights, means, full = problem(3)
    assert issubclass(ConvergenceWarning, SkConvergenceWarning)
    assert issubclass(ConvergenceWarning, UserWarning)
    for category in (SkConvergenceWarning, ConvergenceWarning):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.filterwarnings("ignore", category=category)
            _no_convergence(GaussianMixture(len(weights), random_state=0), X)  # no error
    with pytest.warns(ConvergenceWarning, match="did not converge"):  # gmmlib's own class
        _no_convergence(GaussianMixture(len(weights), random_state=0), X)
    with pytest.warns(SkConvergenceWarning) as theirs:  # what scikit-learn itself warns
        _no_convergence(SkGaussianMixture(len(weights), random_state=0), X)
    assert theirs and all(issubclass(w.category, SkConvergenceWarning) for w in theirs)


def test_importing_gmmlib_does_not_import_sklearn_and_works_without_it():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "{block}"
        "import warnings, numpy as np, gmmlib\n"
        "assert sys.modules.get('sklearn') is None, 'import gmmlib imported sklearn'\n"
        "W = gmmlib.ConvergenceWarning\n"
        "assert issubclass(W, UserWarning) and issubclass(W, RuntimeWarning)\n"
        "X = np.random.default_rng(0).normal(size=(40, 2))\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    gmmlib.GaussianMixture(2, max_iter=1, tol=0, random_state=0).fit(X)\n"
        "assert [w.category for w in seen] == [W], seen\n"
        "E = gmmlib.NotFittedError\n"
        "assert issubclass(E, ValueError) and issubclass(E, AttributeError)\n"
        "try:\n"
        "    gmmlib.GaussianMixture(2).predict(X)\n"
        "except E:\n"
        "    pass\n"
        "print(W.__mro__[1].__module__, E.__mro__[1].__module__)\n"
    )
    # Installed: its base is scikit-learn's class. Absent (an import of it fails): UserWarning.
    hidden = "sys.modules['sklearn'] = None\n"
    for block, base in (("", "sklearn.exceptions " * 2), (hidden, "builtins " * 2)):
        out = subprocess.run(
            [sys.executable, "-c", code.format(block=block)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.split() == base.split()


def test_not_fitted_error_in_scikit_learn_s_words():
    from sklearn.exceptions import NotFittedError

    import gmmlib

    assert issubclass(gmmlib.NotFittedError, NotFittedError)
    X = problem(0)[0]
    for method in ("predict", "predict_proba", "score_samples", "score"):
        with pytest.raises(NotFittedError) as theirs:
            getattr(SkGaussianMixture(2), method)(X)
        with pytest.raises(NotFittedError) as ours:
            getattr(GaussianMixture(2), method)(X)
        assert str(ours.value) == str(theirs.value)
        assert isinstance(ours.value, gmmlib.NotFittedError)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("bad", ["weights_init", "means_init", "precisions_init"])
def test_init_shape_errors_start_with_scikit_learn_s_words(covariance_type, bad):
    X, weights, means, full = problem(1)
    K, D = means.shape
    _, precisions = start(full, covariance_type, weights)
    given = {"weights_init": weights, "means_init": means, "precisions_init": precisions}
    given[bad] = np.concatenate([given[bad], given[bad][:1]])  # one component too many
    options = dict(covariance_type=covariance_type, **given)
    with pytest.raises(ValueError) as theirs:
        SkGaussianMixture(K, **options).fit(X)
    with pytest.raises(ValueError) as ours:
        GaussianMixture(K, **options).fit(X)
    assert str(theirs.value).startswith("The parameter '")
    assert str(ours.value).startswith(str(theirs.value) + ": ")  # then gmmlib's explanation


SUBSETS = [
    ("weights_init",),
    ("precisions_init",),
    ("weights_init", "precisions_init"),
    ("means_init",),
    ("means_init", "weights_init"),
    ("means_init", "precisions_init"),
]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("subset", SUBSETS, ids="+".join)
def test_any_subset_of_the_initial_parameters_is_accepted_as_scikit_learn_does(
    covariance_type, subset
):
    """The given ones start EM as given; the missing ones come from the init_params start
    (scikit-learn's rule), or, when means_init is given, from gmmlib's stated start for those
    means (equal weights, the data covariance)."""
    X, weights, means, full = problem(2)
    K = len(weights)
    cov, precisions = start(full, covariance_type, weights)
    values = {"weights_init": weights, "means_init": means, "precisions_init": precisions}
    options = dict(covariance_type=covariance_type, random_state=0, max_iter=5)
    options.update({name: values[name] for name in subset})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        SkGaussianMixture(K, **options).fit(X)  # scikit-learn accepts the subset...
        first = next(GaussianMixture(K, **options).steps(X))  # ... and so does gmmlib
        if "means_init" in subset:
            w0, m0, full0 = init_from_means(X, means, 1e-6)
        else:
            plain = {k: v for k, v in options.items() if not k.endswith("_init")}
            reference = next(GaussianMixture(K, **plain).steps(X))
            w0, m0 = reference.weights, reference.means
            full0 = None
    np.testing.assert_allclose(first.weights, weights if "weights_init" in subset else w0)
    np.testing.assert_allclose(first.means, means if "means_init" in subset else m0)
    if "precisions_init" in subset:
        np.testing.assert_allclose(first.covariances, cov, rtol=1e-10)
    elif full0 is not None:
        np.testing.assert_allclose(
            first.covariances, from_full_covariances(full0, covariance_type, w0)
        )
    else:
        np.testing.assert_allclose(first.covariances, reference.covariances)
