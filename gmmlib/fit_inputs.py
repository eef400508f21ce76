"""What a fit starts from: the estimator's options checked, X prepared, the start chosen.

Validation happens once, at the public boundary (`GaussianMixture.fit` and `steps`), with
messages that name the parameter and the bad value; the EM loop and the engine trust their
inputs. Each function reads the options of a `GaussianMixture` ``gm`` (scikit-learn's names).
"""

from __future__ import annotations

import numpy as np

from gmmlib.covariance import COVARIANCE, COVARIANCE_TYPES
from gmmlib.diagnostics import CollapseRule, collapse_threshold, data_subspace
from gmmlib.init import INIT_ALIASES, INIT_PARAMS, init_from_means, initial_parameters
from gmmlib.prior import InverseWishartPrior
from gmmlib.validation import (
    check_choice,
    check_covariances,
    check_means,
    check_positive,
    check_random_state,
    check_weights,
    check_X,
)

__all__ = ["ON_COLLAPSE", "check_options", "prepare", "start", "rank_deficient_message"]

ON_COLLAPSE = ("raise", "warn", "continue")


def check_options(gm) -> None:
    """Every option of ``gm`` in its range, or a ValueError naming it and the bad value."""
    check_positive(gm.n_components, "n_components", integer=True)
    check_choice(gm.covariance_type, "covariance_type", COVARIANCE_TYPES)
    check_positive(gm.reg_covar, "reg_covar", allow_zero=True)
    check_positive(gm.tol, "tol", allow_zero=True)
    check_positive(gm.max_iter, "max_iter", allow_zero=True, integer=True)
    check_positive(gm.n_init, "n_init", integer=True)
    if gm.init_params not in INIT_ALIASES:
        check_choice(gm.init_params, "init_params", INIT_PARAMS)
    check_choice(gm.on_collapse, "on_collapse", ON_COLLAPSE)
    check_positive(gm.collapse_tol, "collapse_tol")
    check_positive(gm.verbose, "verbose", allow_zero=True, integer=True)
    check_positive(gm.verbose_interval, "verbose_interval", integer=True)
    if not isinstance(gm.warm_start, (bool, np.bool_)):
        raise ValueError(f"warm_start must be True or False, got {gm.warm_start!r}")
    check_random_state(gm.random_state)  # a bad seed fails here, with its name
    prior = gm.covariance_prior
    if isinstance(prior, str) and prior != "auto":
        raise ValueError(
            "covariance_prior must be None, 'auto', a positive number or a (D, D) "
            f"positive definite array, got {prior!r}"
        )
    if prior is not None and gm.covariance_type != "full":
        raise ValueError(
            "covariance_prior is implemented for covariance_type='full' only, "
            f"got covariance_type={gm.covariance_type!r}"
        )
    if gm.covariances_init is not None and gm.precisions_init is not None:
        raise ValueError("give covariances_init or precisions_init, not both")


def prepare(gm, X):
    """Validate ``gm``'s options and X; return (X, prior, the collapse rule for X)."""
    check_options(gm)
    X = check_X(X, gm.n_components, min_samples=2)
    with np.errstate(over="ignore", invalid="ignore"):
        threshold = collapse_threshold(X, gm.collapse_tol)  # from the data's variance
    if not np.isfinite(threshold):
        raise ValueError(
            f"X is too large for float64 arithmetic (max |x| = {np.max(np.abs(X)):.3g}): "
            "its variance overflows to inf. Rescale X (e.g. divide by its standard "
            "deviation) before fitting"
        )
    rule = CollapseRule(threshold, data_subspace(X, threshold))
    if rule.subspace is not None and gm.reg_covar == 0:
        raise ValueError(rank_deficient_message(X, rule.subspace.shape[1]))
    prior = None
    if gm.covariance_prior is not None:
        prior = InverseWishartPrior.from_data(
            X, gm.n_components, gm.covariance_prior, gm.degrees_of_freedom_prior
        )
    return X, prior, rule


def start(gm, X: np.ndarray, rng: np.random.Generator):
    """The start (weights, means, covariances): any of ``weights_init``, ``means_init`` and
    ``precisions_init`` (or ``covariances_init``) as given, the others estimated as
    scikit-learn does, from the ``init_params`` start; with ``means_init``, from gmmlib's stated
    start instead (equal weights, every covariance the data covariance plus ``reg_covar``:
    `init_from_means`)."""
    K, D, ct = gm.n_components, X.shape[1], gm.covariance_type
    spec = COVARIANCE[ct]
    given = [gm.weights_init, gm.means_init, gm.precisions_init, gm.covariances_init]
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
        drawn = init_from_means(X, means, gm.reg_covar)
    else:
        drawn = initial_parameters(X, K, gm.init_params, rng, gm.reg_covar, gm.collapse_tol)
    weights = drawn[0] if weights is None else weights
    if covariances is None:
        covariances = spec.from_full(drawn[2], drawn[0])
    return weights, drawn[1] if means is None else means, covariances


def rank_deficient_message(X: np.ndarray, rank: int) -> str:
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
