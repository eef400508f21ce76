"""Export gmmlib's data sets and starts for the in-browser EM explorer, and its parity fixtures.

Writes (deterministically: same bytes on every run):

- ``book/_extra/explorer/data.json``: the rule constants the explorer runs EM with (gmmlib's
  own: GaussianMixture's default tol, max_iter, reg_covar and collapse_tol, and gmmlib.em.NK_EPS;
  the explorer types none of them), the component palette and the grey of points before any
  fit (gmmlib.plotting's PALETTE and NEUTRAL), the explorer's three data sets (tilted blobs,
  Old Faithful standardised, the collapse recipe's 20 points), each with gmmlib's data subspace
  for the collapse rule, and, for every K in 1..K_MAX and seed in 0..N_SEEDS-1, the indices of
  the data points `gmmlib.datasets.collapse_init` takes as the starting means, so seed s in the
  explorer is the start ``collapse_init(X, K, s)`` in Python.
- ``tests/fixtures/explorer/<case>.json``: data + initial parameters + options (and the same rule
  constants) for each parity case, with gmmlib's log-likelihood trace, collapse (if any) and
  where and why it stopped (n_iter_, stop_reason_, converged_, log_likelihood_) for reference.
  The parity test re-runs gmmlib live and the JavaScript core under node on these inputs and
  compares every step and the stop.

Usage: ``python scripts/make_explorer_fixtures.py``. tests/test_explorer_parity.py checks that the
files on disk still match what gmmlib produces (to rounding), so a change in gmmlib that alters
the fixtures' meaning fails the tests until this script is re-run.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from gmmlib import GaussianMixture, em
from gmmlib.datasets import collapse_data, collapse_init, old_faithful, tilted_blobs
from gmmlib.diagnostics import collapse_threshold, data_subspace
from gmmlib.em import from_full_covariances, full_covariances
from gmmlib.plotting import NEUTRAL, PALETTE, PALETTE_NAMES

ROOT = Path(__file__).resolve().parents[1]
DATA_JSON = ROOT / "book" / "_extra" / "explorer" / "data.json"
FIXTURES = ROOT / "tests" / "fixtures" / "explorer"

K_MAX = 8  # the explorer's "too high" end of the K slider
N_SEEDS = 100  # seeds 0..99 in the explorer

DATASETS = {
    "tilted": {
        "title": "Tilted blobs",
        "python": "gmmlib.datasets.tilted_blobs(600, random_state=0)[0]",
        "axes": ["x₁", "x₂"],
        "k": 3,
        "seed": 0,
    },
    "faithful": {
        "title": "Old Faithful (standardised)",
        "python": "gmmlib.datasets.old_faithful(standardize=True)",
        "axes": ["eruption duration (standardised)", "waiting time (standardised)"],
        "k": 2,
        "seed": 0,
    },
    "collapse": {
        "title": "Collapse (20 points)",
        "python": "gmmlib.datasets.collapse_data()",
        "axes": ["x₁", "x₂"],
        "k": 4,
        "seed": 8,
    },
}


def gmmlib_rules() -> dict:
    """The constants of gmmlib's rules the explorer runs with, read from gmmlib (never typed here).

    ``tol``, ``max_iter``, ``reg_covar`` and ``collapse_tol`` are `GaussianMixture`'s defaults
    (the explorer's seed s is ``GaussianMixture(K, means_init=collapse_init(X, K, s)[1])``);
    ``nk_eps`` is what the M-step adds to N_k (`gmmlib.em.NK_EPS`).
    """
    defaults = GaussianMixture().get_params()
    rules = {name: defaults[name] for name in ("tol", "max_iter", "reg_covar", "collapse_tol")}
    return {**rules, "nk_eps": float(em.NK_EPS)}


#: Rounding differences between two machines (processor, BLAS build, thread count) in one EM
#: iteration, in units of the machine epsilon: a few ulp per operation on each sum.
ROUND_ULPS = 16


def trace_rtol(covariances_init, steps, covariance_type: str = "full") -> np.ndarray:
    """How far a log-likelihood trace may move between machines: one tolerance per E-step.

    Another processor or BLAS build rounds differently by a few ulp (ROUND_ULPS * eps) per
    iteration. EM carries those differences on, so they grow at most linearly with the number of
    iterations t (EM contracts towards its fixed point; in practice they grow more slowly). A
    covariance with condition number kappa turns a relative error e in its entries into up to
    kappa * e in its log-determinant and Mahalanobis terms, and a run approaching a collapse has
    kappa in the 1e5s. So E-step t may differ by ROUND_ULPS * eps * t * kappa_t, with kappa_t the
    largest condition number of any covariance so far. Measured here: perturbing every data
    value by 4 ulp moves each fixture's trace by 80x to 800x less than this; a change to the EM
    maths moves it by far more (1e-6 and up).
    """
    eps = np.finfo(float).eps

    def kappa(covariances):
        covariances = np.asarray(covariances, dtype=float)
        K = 1 if covariance_type == "tied" else len(covariances)
        ev = np.linalg.eigvalsh(full_covariances(covariances, covariance_type, K, 2))
        return float(np.max(ev[:, -1] / np.maximum(ev[:, 0], np.finfo(float).tiny)))

    k, t, out = kappa(np.asarray(covariances_init)), 0, []
    for step in steps:
        if step.kind == "E":
            t += 1
            out.append(ROUND_ULPS * eps * t * k)
        else:
            k = max(k, kappa(step.covariances))
    return np.array(out)


#: Every convergence test of a parity case with tol > 0 is decided by at least this many times
#: what rounding can move it: |change - tol| >= STOP_MARGIN * (r_t |ln p_t| + r_{t-1} |ln p_{t-1}|)
#: / N, with change = |ln p_t - ln p_{t-1}| / N the mean log-likelihood per point moved since the
#: previous E-step and r_t = trace_rtol at E-step t. So no fixture's stopping iteration depends on
#: the last bits of any machine's arithmetic.
STOP_MARGIN = 1e3

#: Parity cases: (dataset, K, seed, reg_covar, max_iter, on_collapse, tol[, covariance_type]).
#: None = gmmlib's default (`gmmlib_rules`). tol = 0: EM runs every iteration (the long
#: step-by-step cases); tol > 0: EM stops where gmmlib's convergence test says, and the explorer
#: must stop on the same iteration. covariance_type is "full" unless given; the start is then
#: collapse_init's in that type (gmmlib.em.from_full_covariances).
CASES = {
    "tilted_k3": ("tilted", 3, 0, 0.0, 30, "warn", 0.0),
    "tilted_k8": ("tilted", 8, 0, 0.0, 20, "warn", 0.0),
    "faithful_k2": ("faithful", 2, 1, 0.0, 25, "warn", 0.0),
    "collapse_k4_seed0": ("collapse", 4, 0, 0.0, 60, "warn", 0.0),
    "collapse_k8_seed0": ("collapse", 8, 0, 0.0, 60, "warn", 0.0),
    "collapse_k4_seed0_reg": ("collapse", 4, 0, 1e-6, 40, "continue", 0.0),
    # Stopped by the convergence test at gmmlib's default tol (12 and 27 iterations), and at
    # a tighter tol (30 iterations).
    "faithful_k2_tol": ("faithful", 2, 1, 0.0, None, "warn", None),
    "tilted_k3_tol": ("tilted", 3, 0, 0.0, None, "warn", None),
    "tilted_k3_tol1e-6": ("tilted", 3, 0, 0.0, None, "warn", 1e-6),
    # The other covariance types, step by step and stopped by the convergence test, and a
    # collapse for diag and spherical (a tied covariance, shared by all, does not collapse on
    # these data). Not K = 5, seed 4, spherical: near its collapse gmmlib's fast diagonal
    # M-step (E[x^2] - mu^2) rounds a variance of ~1e-7 s2 by ~eps s2, which moves a
    # responsibility by 2e-9 relative, past the parity tolerance.
    "tilted_k3_tied": ("tilted", 3, 0, 0.0, 30, "warn", 0.0, "tied"),
    "tilted_k3_diag": ("tilted", 3, 0, 0.0, 30, "warn", 0.0, "diag"),
    "tilted_k3_spherical": ("tilted", 3, 0, 0.0, 30, "warn", 0.0, "spherical"),
    "faithful_k2_tied_tol": ("faithful", 2, 1, 0.0, None, "warn", None, "tied"),
    "faithful_k2_diag_tol": ("faithful", 2, 1, 0.0, None, "warn", None, "diag"),
    "faithful_k2_spherical_tol": ("faithful", 2, 1, 0.0, None, "warn", None, "spherical"),
    "collapse_k4_seed4_diag": ("collapse", 4, 4, 0.0, 60, "warn", 0.0, "diag"),
    "collapse_k4_seed7_spherical": ("collapse", 4, 7, 0.0, 60, "warn", 0.0, "spherical"),
}


def case_options(name: str) -> dict:
    """A case's options, gmmlib's defaults filled in."""
    data_name, K, seed, reg_covar, max_iter, on_collapse, tol, *rest = CASES[name]
    rules = gmmlib_rules()
    return {
        "covariance_type": rest[0] if rest else "full",
        "dataset": data_name,
        "n_components": K,
        "seed": seed,
        "reg_covar": reg_covar,
        "max_iter": rules["max_iter"] if max_iter is None else max_iter,
        "on_collapse": on_collapse,
        "tol": rules["tol"] if tol is None else tol,
        "collapse_tol": rules["collapse_tol"],
        "nk_eps": rules["nk_eps"],
    }


def dataset(name: str) -> np.ndarray:
    """The points of an explorer data set, from gmmlib."""
    if name == "tilted":
        return tilted_blobs(600, random_state=0)[0]
    if name == "faithful":
        return old_faithful(standardize=True)
    if name == "collapse":
        return collapse_data()
    raise ValueError(f"unknown data set {name!r}")


def start_indices(X: np.ndarray, K: int, seed: int) -> list[int]:
    """Row indices of the means `collapse_init(X, K, seed)` starts from (first equal row)."""
    _, means, _ = collapse_init(X, K, seed)
    idx = [int(np.flatnonzero((X == m).all(axis=1))[0]) for m in means]
    assert np.array_equal(X[idx], means)
    return idx


def _estimator(weights, means, covariances, **settings):
    """gmmlib's estimator from a stated start; ``settings``: reg_covar, max_iter, on_collapse,
    tol."""
    return GaussianMixture(
        len(weights),
        weights_init=weights,
        means_init=means,
        covariances_init=covariances,
        **settings,
    )


def reference_steps(
    X, weights, means, covariances, *, reg_covar, max_iter, on_collapse, tol, covariance_type="full"
):
    """gmmlib's step-wise EM from a stated start (tol = 0: every iteration runs)."""
    settings = dict(reg_covar=reg_covar, max_iter=max_iter, on_collapse=on_collapse, tol=tol)
    settings["covariance_type"] = covariance_type
    gm = _estimator(weights, means, covariances, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(gm.steps(X))


def reference_fit(
    X, weights, means, covariances, *, reg_covar, max_iter, on_collapse, tol, covariance_type="full"
):
    """Where gmmlib's `fit` stops from that start: n_iter_, stop_reason_, converged_ and the
    total log-likelihood of the returned parameters (log_likelihood_)."""
    settings = dict(reg_covar=reg_covar, max_iter=max_iter, on_collapse=on_collapse, tol=tol)
    settings["covariance_type"] = covariance_type
    gm = _estimator(weights, means, covariances, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    return {
        "n_iter": gm.n_iter_,
        "stop_reason": gm.stop_reason_,
        "converged": bool(gm.converged_),
        "log_likelihood": gm.log_likelihood_,
    }


def stop_margin(steps, tol: float, n: int, covariances_init, covariance_type="full") -> float:
    """How far the convergence tests of a run are from flipping, in units of what rounding can
    move them: min |change_t - tol| / bound_t (inf when tol = 0; see STOP_MARGIN).

    change_t = |ln p_t - ln p_{t-1}| / N is tested by every E-step but the first (nothing to
    compare) and the last (which only measures the returned parameters).
    """
    if tol == 0:
        return float("inf")
    ll = np.array([s.log_likelihood for s in steps if s.kind == "E"])
    # rounding of ln p_t / N
    slack = trace_rtol(covariances_init, steps, covariance_type) * np.abs(ll) / n
    tested = len(ll) if steps[-1].stop == "collapse" else len(ll) - 1
    changes = np.abs(np.diff(ll[:tested])) / n
    bounds = slack[1:tested] + slack[: tested - 1]
    return float(np.min(np.abs(changes - tol) / bounds)) if changes.size else float("inf")


def make_case(name: str) -> dict:
    opts = case_options(name)
    X = dataset(opts["dataset"])
    K, seed = opts["n_components"], opts["seed"]
    weights, means, covariances = collapse_init(X, K, seed)
    ct = opts["covariance_type"]
    covariances = from_full_covariances(covariances, ct, weights)
    keys = ("reg_covar", "max_iter", "on_collapse", "tol", "covariance_type")
    run = {key: opts[key] for key in keys}
    steps = reference_steps(X, weights, means, covariances, **run)
    margin = stop_margin(steps, opts["tol"], len(X), covariances, ct)
    assert margin >= STOP_MARGIN, (
        f"{name}: a convergence test only {margin:.3g} rounding bounds from flipping"
    )
    if opts["tol"] > 0:
        assert steps[-1].stop == "converged", f"{name}: meant to stop by the convergence test"
    collapse = next((s.collapse for s in steps if s.collapse is not None), None)
    return {
        "case": name,
        **opts,
        "start_indices": start_indices(X, K, seed),
        "subspace": subspace(X, opts["collapse_tol"]),
        "X": X.tolist(),
        "weights_init": weights.tolist(),
        "means_init": means.tolist(),
        "covariances_init": covariances.tolist(),
        "expected": {
            "n_steps": len(steps),
            "kinds": "".join(s.kind for s in steps),
            "log_likelihood": [s.log_likelihood for s in steps if s.kind == "E"],
            "stop": steps[-1].stop,
            "stop_margin": margin if np.isfinite(margin) else None,
            "fit": reference_fit(X, weights, means, covariances, **run),
            "collapse": None
            if collapse is None
            else {
                "component": collapse.component,
                "iteration": collapse.iteration,
                "n_points": collapse.n_points,
                "nk": collapse.nk,
                "min_eigenvalue": collapse.min_eigenvalue,
                "threshold": collapse.threshold,
            },
        },
    }


def subspace(X: np.ndarray, collapse_tol: float) -> list | None:
    """gmmlib's data subspace for the collapse rule (`diagnostics.data_subspace`): None when X
    varies in both directions (the explorer then measures each covariance in the whole plane),
    else its orthonormal basis as a list of r unit vectors."""
    Q = data_subspace(X, collapse_threshold(X, collapse_tol))
    return None if Q is None else Q.T.tolist()


def make_data_json() -> dict:
    # The component colours, from gmmlib.plotting (the explorer keeps no copy of its own).
    palette = [{"name": n, "hex": h} for n, h in zip(PALETTE_NAMES, PALETTE, strict=True)]
    rules = gmmlib_rules()
    out = {
        "k_max": K_MAX,
        "n_seeds": N_SEEDS,
        "gmmlib": rules,
        "palette": palette,
        "neutral": NEUTRAL,  # points before the first E-step, as gmmlib's figures draw them
        "datasets": {},
    }
    for name, meta in DATASETS.items():
        X = dataset(name)
        starts = {
            str(K): [start_indices(X, K, seed) for seed in range(N_SEEDS)]
            for K in range(1, K_MAX + 1)
        }
        out["datasets"][name] = {
            **meta,
            "X": X.tolist(),
            "subspace": subspace(X, rules["collapse_tol"]),
            "starts": starts,
        }
    return out


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def outputs() -> dict[Path, str]:
    files = {DATA_JSON: dumps(make_data_json())}
    for name in CASES:
        files[FIXTURES / f"{name}.json"] = dumps(make_case(name))
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)} ({len(text) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
