"""`GaussianMixture`: the estimator that wires the pure EM functions into a fit.

It follows scikit-learn's `sklearn.mixture.GaussianMixture` API (same parameter and attribute
names) so readers can move between the two, and adds what a learner needs:

- `steps(X)`: EM as a generator of E- and M-steps, to step through in a notebook;
- `history_`: the log-likelihood after every iteration, and with ``keep_history=True`` the
  parameters and responsibilities after every step (the book and the explorer replay it);
- collapse detection (`gmmlib.diagnostics`): a specific report instead of a NaN or a generic
  "ill-defined covariance" error, with ``on_collapse`` = "raise" | "warn" | "continue";
- an optional inverse-Wishart prior (`gmmlib.prior`) for MAP estimation, which prevents collapse.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from gmmlib import _engine
from gmmlib._engine import parallel_section
from gmmlib.covariance import COVARIANCE, COVARIANCE_TYPES
from gmmlib.diagnostics import (
    COLLAPSE_TOL,
    CollapseError,
    CollapseReport,
    CollapseRule,
    CollapseWarning,
    collapse_threshold,
    data_subspace,
    min_eigenvalues,
)
from gmmlib.em import (
    SingularCovarianceError,
    full_covariances,
    precision_cholesky,
)
from gmmlib.init import INIT_ALIASES, INIT_PARAMS, init_from_means, initial_parameters
from gmmlib.prior import InverseWishartPrior
from gmmlib.validation import (
    check_choice,
    check_covariances,
    check_feature_names,
    check_means,
    check_positive,
    check_random_state,
    check_weights,
    check_X,
    convergence_warning,
    feature_names,
    not_fitted_error,
)

__all__ = ["GaussianMixture", "Step", "History"]

ON_COLLAPSE = ("raise", "warn", "continue")


@dataclass(frozen=True)
class Step:
    """One E- or M-step of EM, with the parameters and responsibilities after it.

    Iteration t is the E-step on theta_{t-1} followed by the M-step giving theta_t. After an E-step,
    ``resp`` are the new responsibilities and ``log_likelihood`` is ln p(X | theta_{t-1})
    (total over points), the parameters the step shows; after an M-step, ``resp`` are the ones
    it used, ``log_likelihood`` is None (the next E-step computes it) and ``collapse`` reports a
    collapse it produced. EM ends on an E-step that only measures the returned theta_n (its
    ``stop`` says why); the convergence test was passed by the E-step before it.
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
    # scikit-learn's estimator protocol, without importing scikit-learn
    # ----------------------------------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        """The parameters of ``__init__``, as scikit-learn's BaseEstimator reads them."""
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The estimator's parameters, by name (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> GaussianMixture:
        """Set parameters by name (checked later, in `fit`, as scikit-learn does); returns self."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {self}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        """``GaussianMixture(...)`` with the parameters that differ from their defaults."""
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if repr(value) != repr(defaults[name].default)
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        """scikit-learn's tags: a density estimator on dense float data. Only scikit-learn calls
        this, so importing it here keeps gmmlib free of it at import time."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type="density_estimator",
            target_tags=TargetTags(required=False),
            input_tags=InputTags(),
        )

    # ----------------------------------------------------------------------------------------
    # set-up: options, data, initial parameters
    # ----------------------------------------------------------------------------------------

    def _check_options(self) -> None:
        check_positive(self.n_components, "n_components", integer=True)
        check_choice(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_positive(self.reg_covar, "reg_covar", allow_zero=True)
        check_positive(self.tol, "tol", allow_zero=True)
        check_positive(self.max_iter, "max_iter", allow_zero=True, integer=True)
        check_positive(self.n_init, "n_init", integer=True)
        if self.init_params not in INIT_ALIASES:
            check_choice(self.init_params, "init_params", INIT_PARAMS)
        check_choice(self.on_collapse, "on_collapse", ON_COLLAPSE)
        check_positive(self.collapse_tol, "collapse_tol")
        check_positive(self.verbose, "verbose", allow_zero=True, integer=True)
        check_positive(self.verbose_interval, "verbose_interval", integer=True)
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(f"warm_start must be True or False, got {self.warm_start!r}")
        check_random_state(self.random_state)  # a bad seed fails here, with its name
        prior = self.covariance_prior
        if isinstance(prior, str) and prior != "auto":
            raise ValueError(
                "covariance_prior must be None, 'auto', a positive number or a (D, D) "
                f"positive definite array, got {prior!r}"
            )
        if prior is not None and self.covariance_type != "full":
            raise ValueError(
                "covariance_prior is implemented for covariance_type='full' only, "
                f"got covariance_type={self.covariance_type!r}"
            )
        if self.covariances_init is not None and self.precisions_init is not None:
            raise ValueError("give covariances_init or precisions_init, not both")

    def _prepare(self, X):
        """Validate options and X; return (X, prior, the collapse rule for X)."""
        self._check_options()
        X = check_X(X, self.n_components, min_samples=2)
        with np.errstate(over="ignore", invalid="ignore"):
            threshold = collapse_threshold(X, self.collapse_tol)  # from the data's variance
        if not np.isfinite(threshold):
            raise ValueError(
                f"X is too large for float64 arithmetic (max |x| = {np.max(np.abs(X)):.3g}): "
                "its variance overflows to inf. Rescale X (e.g. divide by its standard "
                "deviation) before fitting"
            )
        rule = CollapseRule(threshold, data_subspace(X, threshold))
        if rule.subspace is not None and self.reg_covar == 0:
            raise ValueError(_rank_deficient_message(X, rule.subspace.shape[1]))
        prior = None
        if self.covariance_prior is not None:
            prior = InverseWishartPrior.from_data(
                X, self.n_components, self.covariance_prior, self.degrees_of_freedom_prior
            )
        return X, prior, rule

    def _initial_parameters(self, X: np.ndarray, rng: np.random.Generator):
        """The start: any of ``weights_init``, ``means_init`` and ``precisions_init`` (or
        ``covariances_init``) as given, the others estimated as scikit-learn does, from the
        ``init_params`` start; with ``means_init``, from gmmlib's stated start instead (equal
        weights, every covariance the data covariance plus ``reg_covar``: `init_from_means`)."""
        K, D, ct = self.n_components, X.shape[1], self.covariance_type
        spec = COVARIANCE[ct]
        given = [self.weights_init, self.means_init, self.precisions_init, self.covariances_init]
        weights = None if given[0] is None else check_weights(given[0], K)
        means = None if given[1] is None else check_means(given[1], K, D)
        covariances = None
        if given[3] is not None:
            covariances = check_covariances(given[3], ct, K, D)
        elif given[2] is not None:
            covariances = spec.inverse(check_covariances(given[2], ct, K, D, "precisions"))
        if weights is not None and means is not None and covariances is not None:
            return weights, means, covariances  # all stated: no initialisation runs
        if means is not None:
            start = init_from_means(X, means, self.reg_covar)
        else:
            start = initial_parameters(
                X, K, self.init_params, rng, self.reg_covar, self.collapse_tol
            )
        weights = start[0] if weights is None else weights
        if covariances is None:
            covariances = spec.from_full(start[2], start[0])
        return weights, start[1] if means is None else means, covariances

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
        X, prior, rule = self._prepare(X)
        start = self._initial_parameters(X, check_random_state(self.random_state))
        yield from self._em(X, *start, prior=prior, rule=rule, outcome={})

    def _em(
        self,
        X,
        weights,
        means,
        covariances,
        *,
        prior,
        rule,
        outcome,
        lower_bound=-np.inf,
    ) -> Iterator[Step]:
        """The EM loop. ``outcome`` receives: stop reason, n_iter, collapse, lower bounds, and
        the returned parameters with their log-likelihood and responsibilities."""
        ct, reg = self.covariance_type, self.reg_covar
        N = len(X)
        prec_chol = precision_cholesky(covariances, ct)
        lam = min_eigenvalues(covariances, ct)  # of the current parameters
        outcome.update(
            stop=None,
            n_iter=0,
            collapse=None,
            lower_bound=lower_bound,
            lower_bounds=[],
            clock=time.time(),
        )
        converged = False
        for t in range(1, self.max_iter + 2):
            # E-step on theta_{t-1}: responsibilities and ln p(X | theta_{t-1}).
            resp, log_px = _engine.responsibilities(X, weights, means, prec_chol, ct)
            ll = float(log_px.sum())
            lp = ll + (prior.log_pdf(covariances, prec_chol) if prior is not None else 0.0)
            outcome.update(params=(weights, means, covariances, prec_chol), ll=ll, lp=lp, resp=resp)
            final = converged or t > self.max_iter  # theta_{t-1} is the result: measure only
            if final:
                outcome["stop"] = "converged" if converged else "max_iter"
            else:  # the convergence test (scikit-learn's): then one more M-step
                previous, outcome["lower_bound"] = outcome["lower_bound"], lp / N
                outcome["lower_bounds"].append(lp / N)
                converged = abs(lp / N - previous) < self.tol
                self._print_round(t, lp / N - previous, outcome)
            yield Step(
                "E",
                t,
                weights,
                means,
                covariances,
                resp,
                resp.sum(axis=0),
                lam,
                ll,
                lp,
                stop=outcome["stop"],
            )
            if final:
                return

            # M-step: theta_t, then the collapse rule.
            weights, means, covariances = _engine.m_step(X, resp, ct, reg, prior)
            lam = min_eigenvalues(covariances, ct)
            new_prec = _usable_precision_cholesky(weights, means, covariances, lam, ct)
            rule_lam = lam if rule.subspace is None else rule.min_eigenvalues(covariances, ct)
            collapsed = rule.collapsed(covariances, reg, ct, eigenvalues=rule_lam)
            if new_prec is None and collapsed.size == 0:  # not positive definite, yet above
                collapsed = np.array([int(np.argmin(np.nan_to_num(lam, nan=-np.inf)))])
            report = None
            if collapsed.size and outcome["collapse"] is None:
                report = outcome["collapse"] = self._collapse_report(
                    int(collapsed[0]), t, resp, rule_lam, rule.threshold
                )
            halt = bool(collapsed.size) and (self.on_collapse != "continue" or new_prec is None)
            if halt:
                outcome["stop"] = "collapse"
            yield Step(
                "M",
                t,
                weights,
                means,
                covariances,
                resp,
                resp.sum(axis=0),
                lam,
                collapse=report,
                stop=outcome["stop"],
            )
            if halt:
                if self.on_collapse == "raise":
                    raise CollapseError(outcome["collapse"])
                warnings.warn(outcome["collapse"].message, CollapseWarning, stacklevel=3)
                return
            prec_chol = new_prec
            outcome["n_iter"] = t

    def _print_round(self, t: int, change: float, outcome: dict) -> None:
        if self.verbose >= 2 and t % self.verbose_interval == 0:
            now = time.time()
            print(
                f"  Iteration {t}\t time lapse {now - outcome['clock']:.5f}s\t "
                f"ll change {change:.5f}"
            )
            outcome["clock"] = now

    def _collapse_report(self, k, iteration, resp, lam, threshold) -> CollapseReport:
        tied = COVARIANCE[self.covariance_type].shared
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
        X, prior, rule = self._prepare(X)
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        rng = check_random_state(self.random_state)
        best = None
        for init in range(1 if warm else self.n_init):
            if self.verbose:
                print(f"Initialization {init}")
            if warm:
                start = (self.weights_, self.means_, self.covariances_)
                lower_bound = self.lower_bound_
            else:
                start, lower_bound = self._initial_parameters(X, rng), -np.inf
            history = History()
            outcome: dict = {}
            try:
                for step in self._em(
                    X,
                    *start,
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


def _rank_deficient_message(X: np.ndarray, rank: int) -> str:
    """Why rank-deficient X cannot be fitted with reg_covar=0, and the cure."""
    N, D = X.shape
    constant = np.flatnonzero(np.ptp(X, axis=0) == 0)
    if rank == 0:
        cause = "all points are identical"
    elif constant.size:
        cause = f"column(s) {constant.tolist()} are constant"
    elif N <= D:
        cause = f"there are fewer points ({N}) than features ({D})"
    else:
        cause = "some features are (nearly) linear combinations of others"
    return (
        f"X is rank-deficient: its covariance has rank {rank} < {D} features because {cause}, "
        "so every Gaussian fitted to X with reg_covar=0 is singular (zero variance in "
        f"{D - rank} direction(s)). Set reg_covar > 0 (scikit-learn's default 1e-6), or "
        "remove the constant or redundant features."
    )
