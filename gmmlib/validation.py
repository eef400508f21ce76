"""Input checks at the public boundary: each bad input gets a ValueError that names the problem.

The maths in `gmmlib.em` trusts its inputs; everything a user hands to the estimator (or to
`check_parameters`) is checked here once, so a mistake never surfaces as a NaN or a traceback
from deep inside numpy.
"""

from __future__ import annotations

import warnings

import numpy as np

from gmmlib.covariance import COVARIANCE_TYPES, covariance_type_of

__all__ = [
    "not_fitted_error",
    "not_fitted_error_class",
    "convergence_warning",
    "check_X",
    "check_parameters",
    "check_choice",
    "check_positive",
    "check_random_state",
    "feature_names",
    "check_feature_names",
]


_made: dict[str, type] = {}


def _sklearn_flavoured(name: str, fallback: tuple, extra: tuple, doc: str) -> type:
    """gmmlib's class ``name``, made on first use and the same class after that: a subclass of
    scikit-learn's ``sklearn.exceptions.<name>`` where scikit-learn is installed (so code and
    filters written for scikit-learn's class catch gmmlib's), else of ``fallback``; ``extra``
    bases in both cases. Made lazily so that importing gmmlib never imports scikit-learn."""
    if name not in _made:
        try:
            from sklearn import exceptions  # optional dependency
        except ImportError:  # not installed (a student's environment, the grading sandbox)
            bases = fallback
        else:
            bases = (getattr(exceptions, name),)
        _made[name] = type(name, bases + extra, {"__module__": "gmmlib", "__doc__": doc})
    return _made[name]


def not_fitted_error_class() -> type[Exception]:
    """gmmlib's `NotFittedError` class (see `_sklearn_flavoured`)."""
    return _sklearn_flavoured(
        "NotFittedError",
        (ValueError, AttributeError),
        (),
        """A method that needs a fitted model was called before ``fit``.

        A ValueError and an AttributeError, as scikit-learn's ``NotFittedError`` (which it
        subclasses where scikit-learn is installed), so code written for either catches it.
        """,
    )


def not_fitted_error(message: str) -> Exception:
    """A `NotFittedError` to raise, with ``message``."""
    return not_fitted_error_class()(message)


def convergence_warning() -> type[Warning]:
    """gmmlib's `ConvergenceWarning` class (see `_sklearn_flavoured`)."""
    return _sklearn_flavoured(
        "ConvergenceWarning",
        (UserWarning,),
        (RuntimeWarning,),
        """EM stopped at ``max_iter`` before the convergence test passed.

        A UserWarning; scikit-learn's ``ConvergenceWarning`` where scikit-learn is installed
        (a filter on either class catches it); also a RuntimeWarning, gmmlib's earlier base.
        """,
    )


#: The classes `gmmlib.validation.X` (and `gmmlib.X`) give on first access.
LAZY_CLASSES = {"NotFittedError": not_fitted_error_class, "ConvergenceWarning": convergence_warning}


def __getattr__(name: str):
    if name in LAZY_CLASSES:
        return LAZY_CLASSES[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _as_float_array(value, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except TypeError as exc:  # a non-numeric object, e.g. a dict: keep numpy's words
        raise TypeError(f"{name} must be numeric: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}: {exc}") from None
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(arr[where]) else "infinite (inf)"
        raise ValueError(f"{name} contains {kind} values (first at index {where})")


def _reject_sparse_and_complex(X) -> None:
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "Sparse data was passed for X, but dense data is required: "
            "use X.toarray() to convert it to a dense numpy array"
        )
    kind = getattr(getattr(X, "dtype", None), "kind", None)
    if kind is None and not hasattr(X, "columns"):
        try:
            kind = np.asarray(X).dtype.kind
        except (TypeError, ValueError):
            kind = None  # ragged or odd input: the float conversion below explains it
    if kind == "c" or (hasattr(X, "dtypes") and any(d.kind == "c" for d in X.dtypes)):
        raise ValueError(
            "Complex data not supported: X has complex values; a Gaussian mixture is fitted to "
            "real data (pass X.real, np.abs(X), or the real and imaginary parts as columns)"
        )


def check_X(
    X,
    n_components: int | None = None,
    n_features: int | None = None,
    *,
    min_samples: int = 1,
    estimator: str = "GaussianMixture",
) -> np.ndarray:
    """X as a float64 array of shape (N, D), finite, with at least one point per component.

    The messages use scikit-learn's wording where its checks look for it ("Complex data not
    supported", "... while a minimum of ... is required", "X has 1 features, but ... is
    expecting ...").
    """
    _reject_sparse_and_complex(X)
    X = _as_float_array(X, "X")
    if X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D array of shape (n_samples, n_features), got shape {X.shape}"
            + (
                ": Reshape your data with X.reshape(-1, 1) if it has a single feature or "
                "X.reshape(1, -1) if it is a single sample"
                if X.ndim == 1
                else ""
            )
        )
    for axis, what, minimum in ((0, "sample", min_samples), (1, "feature", 1)):
        if X.shape[axis] < minimum:
            raise ValueError(
                f"Found array with {X.shape[axis]} {what}(s) (shape={X.shape}) while a minimum "
                f"of {minimum} is required by {estimator}."
            )
    _check_finite(X, "X")
    if n_components is not None and X.shape[0] < n_components:
        raise ValueError(
            f"X has {X.shape[0]} points but n_components={n_components}: "
            "EM needs at least as many points as components"
        )
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but {estimator} is expecting {n_features} features "
            "as input."
        )
    return X


def check_random_state(random_state) -> np.random.Generator:
    """A numpy Generator from None (fresh entropy), an int seed >= 0, a Generator (used as is,
    so its state advances) or a legacy RandomState (its bit generator, shared)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state)
    if random_state is None or (
        isinstance(random_state, (int, np.integer))
        and not isinstance(random_state, bool)
        and random_state >= 0
    ):
        return np.random.default_rng(random_state)
    raise ValueError(
        "random_state must be None, an integer seed >= 0, a numpy Generator or a "
        f"numpy RandomState, got {random_state!r}"
    )


def feature_names(X) -> np.ndarray | None:
    """The column names of a DataFrame X when they are all strings (scikit-learn's rule)."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "dtypes"):
        return None
    names = np.asarray(list(columns), dtype=object)
    if len(names) == 0 or not all(isinstance(name, str) for name in names):
        if any(isinstance(name, str) for name in names):
            raise TypeError(
                "Feature names are only supported if all input features have string names: "
                "convert them with X.columns = X.columns.astype(str), or drop them"
            )
        return None
    return names


def check_feature_names(fitted: np.ndarray | None, X, estimator: str = "GaussianMixture"):
    """Warn or raise, in scikit-learn's words, when X's column names differ from fit's."""
    names = feature_names(X)
    if fitted is None and names is None:
        return
    if fitted is None:
        warnings.warn(
            f"X has feature names, but {estimator} was fitted without feature names",
            UserWarning,
            stacklevel=4,
        )
        return
    if names is None:
        warnings.warn(
            f"X does not have valid feature names, but {estimator} was fitted with feature names",
            UserWarning,
            stacklevel=4,
        )
        return
    if len(names) != len(fitted) or np.any(names != fitted):
        unseen = sorted(set(names) - set(fitted))
        missing = sorted(set(fitted) - set(names))
        message = "The feature names should match those that were passed during fit.\n"
        if unseen:
            message += (
                "Feature names unseen at fit time:\n"
                + "".join(f"- {n}\n" for n in unseen[:5])
                + ("- ...\n" if len(unseen) > 5 else "")
            )
        if missing:
            message += (
                "Feature names seen at fit time, yet now missing:\n"
                + "".join(f"- {n}\n" for n in missing[:5])
                + ("- ...\n" if len(missing) > 5 else "")
            )
        if not unseen and not missing:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(message)


def check_choice(value, name: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_positive(value, name: str, *, allow_zero: bool = False, integer: bool = False) -> None:
    ok_type = (
        isinstance(value, (int, np.integer))
        if integer
        else isinstance(value, (int, float, np.integer, np.floating))
    )
    if isinstance(value, bool) or not ok_type or not np.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def check_weights(weights, K: int) -> np.ndarray:
    w = _as_float_array(weights, "weights")
    if w.shape != (K,):
        raise ValueError(
            sklearn_shape_message("weights", (K,), w.shape)
            + f": weights must have shape (K,) = ({K},), one per component"
        )
    _check_finite(w, "weights")
    if np.any(w <= 0):
        k = int(np.flatnonzero(w <= 0)[0])
        raise ValueError(f"weights must be positive, but weights[{k}] = {w[k]:g}")
    if not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
        raise ValueError(f"weights must sum to 1, they sum to {w.sum():.6g}")
    return w / w.sum()


def check_means(means, K: int, D: int) -> np.ndarray:
    mu = _as_float_array(means, "means")
    if mu.shape != (K, D):
        raise ValueError(
            sklearn_shape_message("means", (K, D), mu.shape)
            + f": means must have shape (K, D) = ({K}, {D}), one row of D features per component"
        )
    _check_finite(mu, "means")
    return mu


def sklearn_shape_message(param: str, expected: tuple, got: tuple) -> str:
    """scikit-learn's words for a parameter of the wrong shape (what its users match on)."""
    return f"The parameter '{param}' should have the shape of {expected}, but got {got}"


def _check_shape(cov: np.ndarray, spec, K: int, D: int, name: str) -> np.ndarray:
    """cov with the shape of its covariance type (`gmmlib.covariance`), or a ValueError in
    scikit-learn's words (its name for precisions: "full precision"), then gmmlib's."""
    shape = spec.shape(K, D)
    if cov.shape != shape:
        param = f"{spec.name} {name.rstrip('s')}"
        raise ValueError(
            sklearn_shape_message(param, shape, cov.shape)
            + f": {name} for covariance_type={spec.name!r} must have shape "
            f"{spec.shape_text} = {shape}"
        )
    return cov


def check_covariances(
    covariances, covariance_type: str, K: int, D: int, name: str = "covariances"
) -> np.ndarray:
    """Shape for the covariance type, finite, symmetric and positive definite (``name``:
    "covariances" or "precisions", the word the messages use)."""
    spec = covariance_type_of(covariance_type)
    cov = _check_shape(_as_float_array(covariances, name), spec, K, D, name)
    _check_finite(cov, name)
    if spec.matrices:
        for k, c in enumerate(spec.stack(cov)):
            label = name if spec.shared else f"{name}[{k}]"
            if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12 * np.abs(c).max()):
                raise ValueError(f"{label} must be symmetric")
            lam = np.linalg.eigvalsh(c)[0]
            if lam <= 0:
                raise ValueError(
                    f"{label} must be positive definite, but its smallest eigenvalue is {lam:.3g}"
                )
    elif np.any(cov <= 0):
        k = int(np.argwhere(cov <= 0)[0][0])
        raise ValueError(f"{name} of component {k} must be positive (variances > 0)")
    return cov


def _check_X_and_means(X, means, covariance_type: str):
    """X (N, D) and means (K, D) as float64 arrays with the same D; a known covariance_type."""
    check_choice(covariance_type, "covariance_type", COVARIANCE_TYPES)
    mu = _as_float_array(means, "means")
    if mu.ndim != 2:
        raise ValueError(f"means must have shape (K, D), got shape {mu.shape}")
    X = check_X(X)
    if X.shape[1] != mu.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features, but the means have {mu.shape[1]}")
    return X, mu


def check_parameters(X, weights, means, covariances, covariance_type: str = "full"):
    """Validate a full parameter set against data X; returns float64 arrays ``(X, w, mu, cov)``."""
    X, mu = _check_X_and_means(X, means, covariance_type)
    K, D = mu.shape
    return (
        X,
        check_weights(weights, K),
        check_means(mu, K, D),
        check_covariances(covariances, covariance_type, K, D),
    )


def check_step_shapes(X, weights, means, covariances, covariance_type: str = "full"):
    """The inputs of one EM step as float64 arrays whose shapes fit together.

    For the pure functions of `gmmlib.em`: a ValueError naming the array, not an IndexError
    from inside numpy. Only shapes (and a finite X) are checked; a covariance that is not
    positive definite is reported by the maths itself (`SingularCovarianceError`).
    Returns ``(X, weights, means, covariances)``.
    """
    X, mu = _check_X_and_means(X, means, covariance_type)
    K, D = mu.shape
    w = _as_float_array(weights, "weights")
    if w.shape != (K,):
        raise ValueError(f"weights must have shape ({K},), one per mean, got shape {w.shape}")
    cov = _as_float_array(covariances, "covariances")
    return X, w, mu, _check_shape(cov, covariance_type_of(covariance_type), K, D, "covariances")


def check_resp(X, resp):
    """X (N, D) and responsibilities ``resp`` (N, K), finite float64 arrays, for an M-step."""
    X = check_X(X)
    r = _as_float_array(resp, "resp")
    if r.ndim != 2 or r.shape[0] != X.shape[0]:
        raise ValueError(
            f"resp must have shape (N, K) with N = {X.shape[0]} rows (one per point of X), "
            f"got shape {r.shape}"
        )
    _check_finite(r, "resp")
    return X, r
