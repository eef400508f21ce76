"""SQUAREM (gmmlib.accelerate): same maximum as EM in fewer EM steps, never downhill."""

from __future__ import annotations

import numpy as np
import pytest

from gmmlib import GaussianMixture, log_likelihood
from gmmlib.accelerate import from_vector, gmm_em_map, squarem, squarem_gmm, to_vector
from gmmlib.datasets import tilted_blobs


def start(X, K, seed):
    """EM's start from K random data points (max_iter=0 returns the start)."""
    gm = GaussianMixture(
        n_components=K, init_params="random_from_data", random_state=seed, max_iter=0, reg_covar=0
    ).fit(X)
    return gm.weights_, gm.means_, gm.covariances_


def test_vector_round_trip_and_count():
    rng = np.random.default_rng(0)
    K, D = 3, 4
    A = rng.normal(size=(K, D, D))
    covariances = A @ A.transpose(0, 2, 1) + np.eye(D)
    weights = np.array([0.2, 0.3, 0.5])
    means = rng.normal(size=(K, D))
    theta = to_vector(weights, means, covariances)
    assert theta.shape == (K - 1 + K * D + K * D * (D + 1) // 2,)
    back = from_vector(theta, K, D)
    for a, b in zip(back, (weights, means, covariances), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)


def test_linear_map_converges_faster_than_plain_iteration():
    """On theta -> A theta + b (rate 0.95), SQUAREM reaches the fixed point in far fewer maps."""
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    A = Q @ np.diag([0.95, 0.9, 0.5, 0.3, 0.1]) @ Q.T
    b = rng.normal(size=5)
    fixed = np.linalg.solve(np.eye(5) - A, b)
    # The objective -1/2 (theta - fixed)' (I - A) (theta - fixed) rises under the map.
    P = np.eye(5) - A

    def em_map(theta):
        d = theta - fixed
        return A @ theta + b, -0.5 * d @ P @ d

    result = squarem(em_map, np.zeros(5), tol=1e-14, max_em_steps=500)
    assert result.converged
    np.testing.assert_allclose(result.theta, fixed, atol=1e-6)
    plain_steps = int(np.ceil(np.log(1e-7) / np.log(0.95)))  # 0.95^t below 1e-7: 315 maps
    assert result.em_steps[-1] < plain_steps / 5, result.em_steps[-1]
    assert np.all(np.diff(result.objective) >= 0)


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_gmm_reaches_em_maximum_in_fewer_steps_and_never_descends():
    X, _ = tilted_blobs(n_samples=300, random_state=0)
    w, m, c = start(X, 3, seed=10)
    em = GaussianMixture(
        n_components=3,
        weights_init=w,
        means_init=m,
        covariances_init=c,
        tol=0,
        max_iter=400,
        reg_covar=0,
    ).fit(X)
    ll = np.array(em.history_.log_likelihood)
    (w2, m2, c2), result = squarem_gmm(X, w, m, c, tol=1e-10, max_em_steps=400)
    objective = np.array(result.objective)
    # Both run to a gain of ~1e-10 on a total ln p of ~1e3: the same maximum to 1e-6.
    assert abs(objective[-1] - ll[-1]) < 1e-6
    assert abs(log_likelihood(X, w2, m2, c2) - objective[-1]) < 1e-9
    assert np.all(np.diff(objective) >= -1e-9 * abs(objective[-1]))  # rounding only
    em_steps = int(np.argmax(ll[-1] - ll < 1e-6 * len(X)))
    sq_steps = int(np.array(result.em_steps)[np.argmax(ll[-1] - objective < 1e-6 * len(X))])
    assert sq_steps < em_steps, (sq_steps, em_steps)


def test_a_jump_out_of_the_parameter_space_is_pulled_back():
    """Some extrapolations leave the parameter space (a covariance that is not positive
    definite); SQUAREM pulls them back, and the result is valid and never downhill."""
    X, _ = tilted_blobs(n_samples=200, random_state=1)
    em_map = gmm_em_map(X, 3)
    rejected = []

    def watched_map(theta):  # the EM map, recording the points it rejects
        try:
            return em_map(theta)
        except (ValueError, np.linalg.LinAlgError):
            rejected.append(theta)
            raise

    w, m, c = start(X, 3, seed=1)
    result = squarem(watched_map, to_vector(w, m, c), tol=1e-8, max_em_steps=300)
    assert rejected, "no jump left the parameter space: the test no longer tests the pull-back"
    assert np.all(np.diff(result.objective) >= -1e-9 * abs(result.objective[-1]))
    weights, _, covariances = from_vector(result.theta, 3, 2)
    assert np.all(weights > 0) and np.all(np.linalg.eigvalsh(covariances) > 0)


@pytest.mark.parametrize(
    ("theta0", "kwargs", "message"),
    [
        (np.zeros((2, 2)), {}, "1-D"),
        (np.array([np.nan, 1.0]), {}, "finite"),
        (np.zeros(2), {"tol": -1.0}, "tol"),
        (np.zeros(2), {"max_em_steps": 2}, "max_em_steps"),
    ],
)
def test_bad_input_is_named(theta0, kwargs, message):
    with pytest.raises(ValueError, match=message):
        squarem(lambda t: (t, 0.0), theta0, **kwargs)


def test_from_vector_names_a_wrong_length():
    with pytest.raises(ValueError, match="entries for K = 2, D = 2"):
        from_vector(np.zeros(5), 2, 2)


def test_a_map_that_descends_is_reported():
    with pytest.raises(RuntimeError, match="not an EM map"):
        squarem(lambda t: (t + 1.0, -float(t @ t)), np.ones(2), max_em_steps=50)
