"""`GaussianMixture`: the estimator that wires the pure EM functions into a fit.

It follows scikit-learn's `sklearn.mixture.GaussianMixture` API (same parameter and attribute
names) so readers can move between the two, and adds what a learner needs:

- `steps(X)`: EM as a generator of E- and M-steps, to step through in a notebook;
- `history_`: the log-likelihood after every round, and with ``keep_history=True`` the
  parameters and responsibilities after every step (the book and the explorer replay it);
- collapse detection (`gmmlib.diagnostics`): a specific report instead of a NaN or a generic
  "ill-defined covariance" error, with ``on_collapse`` = "raise" | "warn" | "continue";
- an optional inverse-Wishart prior (`gmmlib.prior`) for MAP estimation, which prevents collapse.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from gmmlib import _engine
from gmmlib._engine import parallel_section
from gmmlib.diagnostics import (
    CollapseError,
    CollapseReport,
    CollapseWarning,
    collapse_threshold,
    collapsed_components,
    min_eigenvalues,
)
from gmmlib.em import COVARIANCE_TYPES, SingularCovarianceError, precision_cholesky
from gmmlib.init import INIT_PARAMS, init_from_means, initial_parameters
from gmmlib.prior import InverseWishartPrior
from gmmlib.validation import (
    check_choice,
    check_covariances,
    check_means,
    check_positive,
    check_weights,
    check_X,
)

__all__ = ["GaussianMixture", "Step", "History"]

ON_COLLAPSE = ("raise", "warn", "continue")


@dataclass(frozen=True)
class Step:
    """One E- or M-step of EM, with the parameters and responsibilities after it.

    Round t is the E-step on theta_{t-1} followed by the M-step giving theta_t. After an E-step,
    ``resp`` are the new responsibilities and ``log_likelihood`` is ln p(X | theta_{t-1})
    (total over points); after an M-step, ``resp`` are the ones it used, ``log_likelihood`` is
    None (the next E-step computes it) and ``collapse`` reports a collapse it produced.
    """

    kind: str  # "E" or "M"
    iteration: int
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    resp: np.ndarray
    nk: np.ndarray
    min_eigenvalues: np.ndarray
    log_likelihood: float | None = None
    log_posterior: float | None = None
    collapse: CollapseReport | None = None
    stop: str | None = None  # on the last step: "converged", "max_iter" or "collapse"


@dataclass
class History:
    """What a fit went through: ``log_likelihood[t]`` = ln p(X | theta_t), total over points.

    ``log_posterior`` adds the prior's log density (equal to ``log_likelihood`` without a
    prior); EM never decreases it. ``steps`` holds every `Step` when ``keep_history=True``.
    """

    log_likelihood: list[float] = field(default_factory=list)
    log_posterior: list[float] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


class GaussianMixture:
    """A Gaussian mixture fitted by EM.

    Parameters
    ----------
    n_components : int, K >= 1.
    covariance_type : {"full", "tied", "diag", "spherical"}; shapes of ``covariances_``:
        (K, D, D), (D, D), (K, D), (K,).
    reg_covar : float >= 0, added to every covariance's diagonal after each M-step (default
        1e-6, as scikit-learn). 0 is allowed: the plain maximum-likelihood EM that can collapse.
    tol : float >= 0, stop when the mean log-likelihood per point (log-posterior with a prior)
        changes by less than this between rounds (scikit-learn's convention).
    max_iter : int >= 1, maximum EM rounds.
    n_init : int >= 1, number of initialisations; the best final log-posterior is kept.
    init_params : {"kmeans++", "random", "random_from_data"}, see `gmmlib.init`.
    weights_init, means_init, covariances_init : optional stated start. With ``means_init``
        only, weights are equal and every covariance is the data covariance.
    random_state : int, numpy Generator or None.
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
    weights_ (K,), means_ (K, D), covariances_, precisions_cholesky_, converged_, n_iter_,
    log_likelihood_ (total, final parameters), lower_bound_ (mean per point, as scikit-learn),
    history_ (`History`), collapse_ (`CollapseReport` or None).
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans++",
        weights_init=None,
        means_init=None,
        covariances_init=None,
        random_state=None,
        on_collapse: str = "raise",
        collapse_tol: float = 1e-8,
        covariance_prior=None,
        degrees_of_freedom_prior: float | None = None,
        keep_history: bool = False,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.covariances_init = covariances_init
        self.random_state = random_state
        self.on_collapse = on_collapse
        self.collapse_tol = collapse_tol
        self.covariance_prior = covariance_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.keep_history = keep_history

    # ----------------------------------------------------------------------------------------
    # set-up: options, data, initial parameters
    # ----------------------------------------------------------------------------------------

    def _check_options(self) -> None:
        check_positive(self.n_components, "n_components", integer=True)
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_positive(self.reg_covar, "reg_covar", allow_zero=True)
        check_positive(self.tol, "tol", allow_zero=True)
        check_positive(self.max_iter, "max_iter", integer=True)
        check_positive(self.n_init, "n_init", integer=True)
        check_choice(self.init_params, "init_params", INIT_PARAMS)
        check_choice(self.on_collapse, "on_collapse", ON_COLLAPSE)
        check_positive(self.collapse_tol, "collapse_tol")
        if self.covariance_prior is not None and self.covariance_type != "full":
            raise ValueError(
                "covariance_prior is implemented for covariance_type='full' only, "
                f"got covariance_type={self.covariance_type!r}"
            )
        if self.means_init is None and (
            self.weights_init is not None or self.covariances_init is not None
        ):
            raise ValueError("weights_init and covariances_init need means_init too")

    def _prepare(self, X):
        """Validate options and X; return (X, prior, collapse threshold)."""
        self._check_options()
        X = check_X(X, self.n_components)
        prior = None
        if self.covariance_prior is not None:
            prior = InverseWishartPrior.from_data(
                X, self.n_components, self.covariance_prior, self.degrees_of_freedom_prior
            )
        return X, prior, collapse_threshold(X, self.collapse_tol)

    def _initial_parameters(self, X: np.ndarray, rng: np.random.Generator):
        K, D = self.n_components, X.shape[1]
        if self.means_init is not None:
            weights, means, full = init_from_means(X, check_means(self.means_init, K, D))
            if self.weights_init is not None:
                weights = check_weights(self.weights_init, K)
            if self.covariances_init is not None:
                return weights, means, check_covariances(
                    self.covariances_init, self.covariance_type, K, D
                )
            return weights, means, _from_full(full, weights, self.covariance_type)
        weights, means, full = initial_parameters(X, K, self.init_params, rng, self.reg_covar)
        return weights, means, _from_full(full, weights, self.covariance_type)

    # ----------------------------------------------------------------------------------------
    # EM, one step at a time
    # ----------------------------------------------------------------------------------------

    def steps(self, X) -> Iterator[Step]:
        """EM as a generator of `Step` objects (E, M, E, M, ..., ending with an E-step).

        Starts from the stated initial parameters (``means_init``...) or, without them, from the
        first initialisation ``init_params`` draws with ``random_state``. Stops on convergence,
        after ``max_iter`` rounds, or on a collapse (the collapsed M-step is yielded first, with
        ``step.collapse`` set; then, with ``on_collapse="raise"``, `CollapseError` is raised).
        """
        X, prior, threshold = self._prepare(X)
        rng = np.random.default_rng(self.random_state)
        start = self._initial_parameters(X, rng)
        yield from self._em(X, *start, prior=prior, threshold=threshold, outcome={})

    def _em(self, X, weights, means, covariances, *, prior, threshold, outcome) -> Iterator[Step]:
        """The EM loop. ``outcome`` receives: stop reason, n_iter, collapse, last good params."""
        ct, reg = self.covariance_type, self.reg_covar
        N = len(X)
        prec_chol = precision_cholesky(covariances, ct)
        lam = min_eigenvalues(covariances, ct)  # of the current parameters
        outcome.update(stop=None, n_iter=0, collapse=None)
        previous = None
        for t in range(1, self.max_iter + 2):
            # E-step on theta_{t-1}: responsibilities and ln p(X | theta_{t-1}).
            resp, log_px = _engine.responsibilities(X, weights, means, prec_chol, ct)
            ll = float(log_px.sum())
            lp = ll + (prior.log_pdf(covariances, prec_chol) if prior is not None else 0.0)
            outcome.update(params=(weights, means, covariances, prec_chol), ll=ll, lp=lp)
            if previous is not None and abs(lp - previous) / N < self.tol:
                outcome["stop"] = "converged"
            elif t > self.max_iter:
                outcome["stop"] = "max_iter"
            yield Step("E", t, weights, means, covariances, resp, resp.sum(axis=0),
                       lam, ll, lp, stop=outcome["stop"])
            if outcome["stop"]:
                return
            previous = lp

            # M-step: theta_t, then the collapse rule.
            weights, means, covariances = _engine.m_step(X, resp, ct, reg, prior)
            lam = min_eigenvalues(covariances, ct)
            new_prec = _usable_precision_cholesky(weights, means, covariances, lam, ct)
            collapsed = collapsed_components(covariances, reg, threshold, ct, eigenvalues=lam)
            if new_prec is None and collapsed.size == 0:  # not positive definite, yet above
                collapsed = np.array([int(np.argmin(np.nan_to_num(lam, nan=-np.inf)))])
            report = None
            if collapsed.size and outcome["collapse"] is None:
                report = outcome["collapse"] = self._collapse_report(
                    int(collapsed[0]), t, resp, lam, threshold
                )
            halt = bool(collapsed.size) and (self.on_collapse != "continue" or new_prec is None)
            if halt:
                outcome["stop"] = "collapse"
            yield Step("M", t, weights, means, covariances, resp, resp.sum(axis=0), lam,
                       collapse=report, stop=outcome["stop"])
            if halt:
                if self.on_collapse == "raise":
                    raise CollapseError(outcome["collapse"])
                warnings.warn(outcome["collapse"].message, CollapseWarning, stacklevel=3)
                return
            prec_chol = new_prec
            outcome["n_iter"] = t

    def _collapse_report(self, k, iteration, resp, lam, threshold) -> CollapseReport:
        tied = self.covariance_type == "tied"
        return CollapseReport(
            component=0 if tied else k,
            iteration=iteration,
            nk=float(len(resp)) if tied else float(resp[:, k].sum()),
            n_points=len(resp) if tied else int(np.sum(resp[:, k] > 0.5)),
            min_eigenvalue=float(lam[0 if tied else k]),
            threshold=threshold,
            reg_covar=self.reg_covar,
            n_components=self.n_components,
        )

    # ----------------------------------------------------------------------------------------
    # fit and use
    # ----------------------------------------------------------------------------------------

    def fit(self, X, y=None) -> GaussianMixture:
        """Fit by EM (``n_init`` starts, best log-posterior kept); returns self."""
        with parallel_section():
            return self._fit(X)

    def _fit(self, X) -> GaussianMixture:
        X, prior, threshold = self._prepare(X)
        rng = np.random.default_rng(self.random_state)
        best = None
        for _ in range(self.n_init):
            start = self._initial_parameters(X, rng)
            history = History()
            outcome: dict = {}
            try:
                for step in self._em(X, *start, prior=prior, threshold=threshold, outcome=outcome):
                    if step.kind == "E":
                        history.log_likelihood.append(step.log_likelihood)
                        history.log_posterior.append(step.log_posterior)
                    if self.keep_history:
                        history.steps.append(step)
            except CollapseError:
                self._store(X, outcome, history)
                raise
            if best is None or outcome["lp"] > best[0]["lp"]:
                best = (outcome, history)
        self._store(X, *best)
        return self

    def _store(self, X, outcome: dict, history: History) -> None:
        weights, means, covariances, prec_chol = outcome["params"]
        self.weights_, self.means_, self.covariances_ = weights, means, covariances
        self.precisions_cholesky_ = prec_chol
        self.converged_ = outcome["stop"] == "converged"
        self.stop_reason_ = outcome["stop"]
        self.n_iter_ = outcome["n_iter"]
        self.collapse_ = outcome["collapse"]
        self.log_likelihood_ = outcome["ll"]
        self.lower_bound_ = outcome["ll"] / len(X)
        self.history_ = history
        self.n_features_in_ = X.shape[1]
        if not self.converged_ and self.collapse_ is None:
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} rounds (tol={self.tol}); "
                "raise max_iter or tol",
                RuntimeWarning,
                stacklevel=3,
            )

    def _check_fitted(self, X) -> np.ndarray:
        if not hasattr(self, "means_"):
            raise ValueError("this GaussianMixture is not fitted yet: call fit(X) first")
        return check_X(X, n_features=self.n_features_in_)

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
        """Draw ``(X, labels)`` from the fitted mixture."""
        self._check_fitted(np.zeros((1, self.means_.shape[1])))
        check_positive(n_samples, "n_samples", integer=True)
        rng = np.random.default_rng(random_state)
        labels = rng.choice(len(self.weights_), size=n_samples, p=self.weights_)
        D = self.means_.shape[1]
        z = rng.standard_normal((n_samples, D))
        full = _to_full(self.covariances_, self.covariance_type, len(self.weights_), D)
        chol = np.linalg.cholesky(full)
        X = self.means_[labels] + np.einsum("nde,ne->nd", chol[labels], z)
        return X, labels

    def _n_parameters(self) -> int:
        K, D = self.means_.shape
        cov = {"full": K * D * (D + 1) / 2, "diag": K * D, "tied": D * (D + 1) / 2,
               "spherical": K}[self.covariance_type]
        return int(cov + K * D + K - 1)

    def bic(self, X) -> float:
        """Bayesian information criterion: -2 ln p(X) + p ln N (lower is better)."""
        X = self._check_fitted(X)
        return -2 * self.score(X) * len(X) + self._n_parameters() * np.log(len(X))

    def aic(self, X) -> float:
        """Akaike information criterion: -2 ln p(X) + 2 p (lower is better)."""
        X = self._check_fitted(X)
        return -2 * self.score(X) * len(X) + 2 * self._n_parameters()


def _usable_precision_cholesky(weights, means, covariances, lam, covariance_type):
    """The precision factors of theta_t, or None when EM cannot go on from it: a non-finite
    parameter, or a covariance that is not positive definite (lambda_min <= 0 or no Cholesky)."""
    if not all(np.all(np.isfinite(a)) for a in (weights, means, covariances, lam)):
        return None
    if np.min(lam) <= 0:
        return None
    try:
        return precision_cholesky(covariances, covariance_type)
    except SingularCovarianceError:
        return None


def _from_full(full: np.ndarray, weights: np.ndarray, covariance_type: str) -> np.ndarray:
    """Full (K, D, D) covariances -> the shape of ``covariance_type``."""
    if covariance_type == "full":
        return full
    if covariance_type == "tied":
        return np.einsum("k,kde->de", weights, full)
    diag = np.diagonal(full, axis1=1, axis2=2).copy()
    return diag if covariance_type == "diag" else diag.mean(axis=1)


def _to_full(covariances: np.ndarray, covariance_type: str, K: int, D: int) -> np.ndarray:
    """Any covariance type -> (K, D, D)."""
    if covariance_type == "full":
        return covariances
    if covariance_type == "tied":
        return np.repeat(covariances[None], K, axis=0)
    if covariance_type == "diag":
        return np.array([np.diag(v) for v in covariances])
    return covariances[:, None, None] * np.eye(D)
