"""`GaussianMixture`: the estimator that wires the pure EM functions into a fit.

It follows scikit-learn's `sklearn.mixture.GaussianMixture` API (same parameter and attribute
names) so readers can move between the two, and adds what a learner needs:

- `steps(X)`: EM as a generator of E- and M-steps, to step through in a notebook;
- `history_`: the log-likelihood after every iteration, and with ``keep_history=True`` the
  parameters and responsibilities after every step (the book and the explorer replay it);
- collapse detection (`gmmlib.diagnostics`): a specific report instead of a NaN or a generic
  "ill-defined covariance" error, with ``on_collapse`` = "raise" | "warn" | "continue";
- an optional inverse-Wishart prior (`gmmlib.prior`) for MAP estimation, which prevents collapse.

This module holds the class that wires the parts together; each part has its own module:
`gmmlib.estimator` (scikit-learn's get_params/set_params protocol), `gmmlib.fit_inputs` (options
checked, X prepared, the start), `gmmlib.fit_loop` (the EM loop, its convergence test and the
collapse rule after each M-step), `gmmlib.history` (`Step`, `History`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from gmmlib import _engine
from gmmlib._engine import parallel_section
from gmmlib.covariance import COVARIANCE
from gmmlib.diagnostics import COLLAPSE_TOL, CollapseError
from gmmlib.em import full_covariances
from gmmlib.estimator import Estimator
from gmmlib.fit_inputs import prepare, start
from gmmlib.fit_loop import fit_loop
from gmmlib.history import History, Step
from gmmlib.validation import (
    check_feature_names,
    check_positive,
    check_random_state,
    check_X,
    convergence_warning,
    feature_names,
    not_fitted_error,
)

__all__ = ["GaussianMixture", "Step", "History"]


class GaussianMixture(Estimator):
    """A Gaussian mixture fitted by EM, a drop-in for ``sklearn.mixture.GaussianMixture``.

    scikit-learn's parameters, attributes and methods (``get_params``/``set_params``, ``clone``,
    Pipeline and GridSearchCV work; scikit-learn's estimator checks pass), plus what a learner
    needs: `steps`, ``history_`` and collapse reports.

    Parameters
    ----------
    n_components : int, K >= 1.
    covariance_type : {"full", "tied", "diag", "spherical"}; shapes of ``covariances_``:
        (K, D, D), (D, D), (K, D), (K,).
    tol : float >= 0, stop when the mean log-likelihood per point (log-posterior with a prior)
        measured by an E-step changes by less than this from the previous E-step's; the M-step
        that follows that E-step is still done, as scikit-learn does.
    reg_covar : float >= 0, added to every covariance's diagonal, in the start and after each
        M-step (default 1e-6, as scikit-learn). 0 is allowed: the plain maximum-likelihood EM
        that can collapse (rank-deficient X then raise a ValueError naming the cure).
    max_iter : int >= 0, maximum EM iterations (0: return the start, as scikit-learn).
    n_init : int >= 1, number of initialisations; the best ``lower_bound_`` is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, see `gmmlib.init`.
    weights_init, means_init, precisions_init : optional stated start (scikit-learn's names),
        any subset: the missing ones come from the ``init_params`` start, as in scikit-learn;
        with ``means_init``, from gmmlib's stated start (equal weights, every covariance the
        data covariance plus ``reg_covar``), where scikit-learn runs k-means for them.
    random_state : None, int >= 0, numpy Generator or RandomState: the start and `sample`.
    warm_start : bool, start a new `fit` from the last fit's parameters (``n_init`` ignored).
    verbose : int, 0 silent, 1 each initialisation, 2 every ``verbose_interval`` iterations too.
    verbose_interval : int >= 1.
    covariances_init : optional stated start as covariances (instead of ``precisions_init``).
    on_collapse : {"raise", "warn", "continue"}: on a collapse (see `gmmlib.diagnostics`),
        raise `CollapseError`; or warn (`CollapseWarning`) and stop; or record it and go on while
        the covariances stay positive definite. Raise and warn keep the last parameters before
        the collapse, so the fitted parameters are always finite and usable.
    collapse_tol : float > 0, the collapse rule's threshold relative to the data variance.
    covariance_prior : None, "auto", float or (D, D) array: scale of an inverse-Wishart prior
        on each covariance ("full" only); None = maximum likelihood.
    degrees_of_freedom_prior : float, the prior's nu (default D + 2).
    keep_history : bool, store every step's parameters and responsibilities in ``history_``.

    Attributes
    ----------
    weights_ (K,), means_ (K, D), covariances_, precisions_, precisions_cholesky_:
        theta_n, the parameters of the last M-step (n = ``n_iter_``).
    converged_ : bool, the convergence test passed (before ``max_iter`` iterations ran out).
    n_iter_ : int, EM iterations (M-steps) done by the best initialisation.
    lower_bound_ : float, scikit-learn's: the MEAN log-likelihood per point (log-posterior
        with a prior) measured by the last convergence test, i.e. of theta_{n-1}, the
        parameters before the last M-step (-inf when ``max_iter=0``).
    lower_bounds_ : list of float, ``lower_bound_`` after every iteration.
    log_likelihood_ : float, TOTAL ln p(X | theta_n) of the returned parameters (a final
        E-step measures it, as scikit-learn's final E-step gives ``fit_predict`` its labels).
    history_ : `History`, ``history_.log_likelihood[t]`` = ln p(X | theta_t), t = 0 .. n.
    stop_reason_ : "converged", "max_iter" or "collapse"; collapse_ : `CollapseReport` or None.
    n_features_in_ : int; feature_names_in_ : (D,) object array, when fitted on a DataFrame
        with string column names.
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        covariances_init=None,
        on_collapse: str = "raise",
        collapse_tol: float = COLLAPSE_TOL,
        covariance_prior=None,
        degrees_of_freedom_prior: float | None = None,
        keep_history: bool = False,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.covariances_init = covariances_init
        self.on_collapse = on_collapse
        self.collapse_tol = collapse_tol
        self.covariance_prior = covariance_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.keep_history = keep_history

    # ----------------------------------------------------------------------------------------
    # EM, one step at a time
    # ----------------------------------------------------------------------------------------

    def steps(self, X) -> Iterator[Step]:
        """EM as a generator of `Step` objects: E, M, E, M, ..., ending with an E-step.

        Starts from the stated initial parameters (``means_init``...) or, without them, from the
        first initialisation ``init_params`` draws with ``random_state``. The E-step of iteration t
        measures ln p(X | theta_{t-1}); when it has changed by less than ``tol`` (mean per
        point) since the previous E-step, or iteration t is the ``max_iter``-th, the M-step of
        iteration t still runs (as in scikit-learn) and a last E-step measures the theta_t returned
        (its ``stop`` says why EM stopped). A collapse stops EM after the collapsed M-step
        (``step.collapse`` set; then, with ``on_collapse="raise"``, `CollapseError` is raised).
        """
        X, prior, rule = prepare(self, X)
        theta = start(self, X, check_random_state(self.random_state))
        yield from fit_loop(self, X, *theta, prior=prior, rule=rule, outcome={})

    # ----------------------------------------------------------------------------------------
    # fit and use
    # ----------------------------------------------------------------------------------------

    def fit(self, X, y=None) -> GaussianMixture:
        """Fit by EM (``n_init`` starts, the best ``lower_bound_`` kept); returns self."""
        self.fit_predict(X, y)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit, then the most responsible component of each point of X (from the final
        E-step, so it equals ``fit(X).predict(X)``): shape (N,)."""
        with parallel_section():
            return self._fit(X)

    def _fit(self, X) -> np.ndarray:
        names = feature_names(X)
        X, prior, rule = prepare(self, X)
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        rng = check_random_state(self.random_state)
        best = None
        for init in range(1 if warm else self.n_init):
            if self.verbose:
                print(f"Initialization {init}")
            if warm:
                theta = (self.weights_, self.means_, self.covariances_)
                lower_bound = self.lower_bound_
            else:
                theta, lower_bound = start(self, X, rng), -np.inf
            history = History()
            outcome: dict = {}
            try:
                for step in fit_loop(
                    self,
                    X,
                    *theta,
                    prior=prior,
                    rule=rule,
                    outcome=outcome,
                    lower_bound=lower_bound,
                ):
                    if step.kind == "E":
                        history.log_likelihood.append(step.log_likelihood)
                        history.log_posterior.append(step.log_posterior)
                    if self.keep_history:
                        history.steps.append(step)
            except CollapseError:
                self._store(X, outcome, history, names)
                raise
            if self.verbose:
                done = "converged" if outcome["stop"] == "converged" else "did not converge"
                print(f"Initialization {done}. lower bound {outcome['lower_bound']:.5f}")
            if best is None or outcome["lower_bound"] > best[0]["lower_bound"]:
                best = (outcome, history)
        self._store(X, *best, names)
        return np.argmax(best[0]["resp"], axis=1)

    def _store(self, X, outcome: dict, history: History, names) -> None:
        weights, means, covariances, prec_chol = outcome["params"]
        self.weights_, self.means_, self.covariances_ = weights, means, covariances
        self.precisions_cholesky_ = prec_chol
        self.precisions_ = COVARIANCE[self.covariance_type].precisions(prec_chol)
        self.converged_ = outcome["stop"] == "converged"
        self.stop_reason_ = outcome["stop"]
        self.n_iter_ = outcome["n_iter"]
        self.collapse_ = outcome["collapse"]
        self.log_likelihood_ = outcome["ll"]
        self.lower_bound_ = outcome["lower_bound"]
        self.lower_bounds_ = outcome["lower_bounds"]
        self.history_ = history
        self.n_features_in_ = X.shape[1]
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if not self.converged_ and self.collapse_ is None and self.max_iter > 0:
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} iterations (tol={self.tol}): "
                "raise max_iter or tol, try other init parameters, or check for degenerate data",
                convergence_warning(),
                stacklevel=4,
            )

    def _require_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise not_fitted_error(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def _check_fitted(self, X) -> np.ndarray:
        self._require_fitted()
        check_feature_names(getattr(self, "feature_names_in_", None), X, type(self).__name__)
        return check_X(X, n_features=self.n_features_in_, estimator=type(self).__name__)

    def _responsibilities(self, X):
        """(resp, ln p(x_i)) under the fitted parameters: the E-step's own fast path."""
        X = self._check_fitted(X)
        with parallel_section():
            return _engine.responsibilities(
                X, self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type
            )

    def score_samples(self, X) -> np.ndarray:
        """ln p(x_i) for each point: shape (N,)."""
        return self._responsibilities(X)[1]

    def score(self, X, y=None) -> float:
        """MEAN log-likelihood per point (scikit-learn's convention; times N for the total)."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities gamma_ik under the fitted parameters: shape (N, K)."""
        return self._responsibilities(X)[0]

    def predict(self, X) -> np.ndarray:
        """The most responsible component of each point: shape (N,)."""
        return np.argmax(self._responsibilities(X)[0], axis=1)

    def sample(self, n_samples: int = 1, random_state=None):
        """Draw ``(X, labels)`` from the fitted mixture: shapes (n_samples, D), (n_samples,).

        The draws follow ``random_state`` (this call's, else the estimator's, as scikit-learn):
        an int seed gives the same sample on every call, a Generator moves on.
        """
        self._require_fitted()
        check_positive(n_samples, "n_samples", integer=True)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        labels = rng.choice(
            len(self.weights_), size=n_samples, p=self.weights_ / np.sum(self.weights_)
        )
        D = self.means_.shape[1]
        z = rng.standard_normal((n_samples, D))
        full = full_covariances(self.covariances_, self.covariance_type, len(self.weights_), D)
        chol = np.linalg.cholesky(full)
        X = self.means_[labels] + np.einsum("nde,ne->nd", chol[labels], z)
        return X, labels

    def _n_parameters(self) -> int:
        K, D = self.means_.shape
        return COVARIANCE[self.covariance_type].n_parameters(K, D) + K * D + K - 1

    def bic(self, X) -> float:
        """Bayesian information criterion: -2 ln p(X) + p ln N (lower is better)."""
        log_px = self.score_samples(X)
        return -2 * float(np.sum(log_px)) + self._n_parameters() * np.log(len(log_px))

    def aic(self, X) -> float:
        """Akaike information criterion: -2 ln p(X) + 2 p (lower is better)."""
        return -2 * float(np.sum(self.score_samples(X))) + 2 * self._n_parameters()
