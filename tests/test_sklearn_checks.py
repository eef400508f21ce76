"""gmmlib.GaussianMixture as a scikit-learn citizen: scikit-learn's own estimator checks,
clone / Pipeline / GridSearchCV, and no scikit-learn import when gmmlib is imported."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SkNotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

import gmmlib
from gmmlib import GaussianMixture

ESTIMATORS = [
    GaussianMixture(),
    GaussianMixture(2, covariance_type="diag", random_state=0, on_collapse="continue"),
    GaussianMixture(2, covariance_type="diag", random_state=0),
]


def expected_failed_checks(estimator) -> dict[str, str]:
    """The checks gmmlib fails on purpose, each with its reason (reported as xfail)."""
    if estimator.n_components > 1 and estimator.on_collapse == "raise":
        return {
            "check_estimators_dtypes": "integer data let a component collapse onto points that "
            "share a coordinate: gmmlib raises CollapseError by default (on_collapse='raise'), "
            "scikit-learn fits on with reg_covar",
        }
    return {}


with warnings.catch_warnings():
    # gmmlib cannot inherit from sklearn.base.BaseEstimator: it never imports scikit-learn.
    warnings.filterwarnings("ignore", "Estimator GaussianMixture does not inherit", UserWarning)
    sklearn_checks = parametrize_with_checks(
        ESTIMATORS, expected_failed_checks=expected_failed_checks
    )


# check_array_api_input skips itself unless SCIPY_ARRAY_API=1 (gmmlib is numpy-only anyway).
@sklearn_checks
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_gmmlib_does_not_import_sklearn():
    code = "import sys, gmmlib; gmmlib.GaussianMixture(2); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_density_estimator_tags():
    tags = get_tags(GaussianMixture())
    assert tags.estimator_type == "density_estimator"
    assert not tags.target_tags.required
    assert tags.input_tags.two_d_array and not tags.input_tags.sparse


def test_clone_pipeline_and_grid_search():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 4])
    gm = GaussianMixture(2, covariance_type="diag", random_state=0)
    twin = clone(gm)
    assert twin is not gm and twin.get_params() == gm.get_params()
    pipe = make_pipeline(StandardScaler(), GaussianMixture(2, random_state=0)).fit(X)
    assert pipe.predict(X).shape == (200,)
    search = GridSearchCV(GaussianMixture(random_state=0), {"n_components": [1, 2, 3]}, cv=3)
    search.fit(X)
    assert search.best_params_["n_components"] >= 2  # two blobs: one component scores worse


def test_repr_shows_the_changed_parameters_and_set_params_checks_names():
    gm = GaussianMixture(3, covariance_type="tied", random_state=0)
    assert repr(gm) == "GaussianMixture(n_components=3, covariance_type='tied', random_state=0)"
    assert gm.set_params(tol=1e-4) is gm and gm.tol == 1e-4
    with pytest.raises(ValueError, match="Invalid parameter 'tolerance'"):
        gm.set_params(tolerance=1)


def test_not_fitted_error_is_understood_by_sklearn():
    gm = GaussianMixture(2)
    with pytest.raises(SkNotFittedError):
        check_is_fitted(gm)
    for method in (gm.predict, gm.score_samples, gm.predict_proba):
        with pytest.raises(gmmlib.NotFittedError, match="not fitted yet"):
            method(np.zeros((3, 2)))
    with pytest.raises(gmmlib.NotFittedError, match="not fitted yet"):
        gm.sample(3)
    assert issubclass(gmmlib.NotFittedError, ValueError)
    assert issubclass(gmmlib.NotFittedError, AttributeError)
    assert issubclass(gmmlib.ConvergenceWarning, UserWarning)
    check_is_fitted(gm.fit(np.random.default_rng(0).normal(size=(20, 2))))


def test_dataframe_feature_names_and_verbose(capsys):
    pd = pytest.importorskip("pandas")  # in the test extra; scikit-learn's checks need it too
    X = np.random.default_rng(0).normal(size=(60, 2))
    df = pd.DataFrame(X, columns=["waiting", "duration"])
    gm = GaussianMixture(2, random_state=0, verbose=2, verbose_interval=1).fit(df)
    assert list(gm.feature_names_in_) == ["waiting", "duration"] and gm.n_features_in_ == 2
    assert "Initialization 0" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        gm.predict(X)
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- eruptions"):
        gm.predict(df.rename(columns={"duration": "eruptions"}))
    assert not hasattr(gm.fit(X), "feature_names_in_")  # refit on an array forgets them
