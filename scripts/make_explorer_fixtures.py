"""Export gmmlib's data sets and starts for the in-browser EM explorer, and its parity fixtures.

Writes (deterministically: same bytes on every run):

- ``book/_extra/explorer/data.json``: the component palette (gmmlib.plotting's), the explorer's
  three data sets (tilted blobs, Old Faithful
  standardised, the collapse recipe's 20 points) and, for every K in 1..K_MAX and seed in
  0..N_SEEDS-1, the indices of the data points `gmmlib.datasets.collapse_init` takes as the
  starting means, so seed s in the explorer is the start ``collapse_init(X, K, s)`` in Python.
- ``tests/fixtures/explorer/<case>.json``: data + initial parameters + options for each parity
  case, with gmmlib's log-likelihood trace and collapse (if any) for reference. The parity test
  re-runs gmmlib live and the JavaScript core under node on these inputs and compares every step.

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

from gmmlib import GaussianMixture
from gmmlib.datasets import collapse_data, collapse_init, old_faithful, tilted_blobs
from gmmlib.plotting import PALETTE, PALETTE_NAMES

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

# Parity cases: (dataset, K, seed, reg_covar, max_iter, on_collapse). tol=0 so EM runs every round.
CASES = {
    "tilted_k3": ("tilted", 3, 0, 0.0, 30, "warn"),
    "tilted_k8": ("tilted", 8, 0, 0.0, 20, "warn"),
    "faithful_k2": ("faithful", 2, 1, 0.0, 25, "warn"),
    "collapse_k4_seed0": ("collapse", 4, 0, 0.0, 60, "warn"),
    "collapse_k8_seed0": ("collapse", 8, 0, 0.0, 60, "warn"),
    "collapse_k4_seed0_reg": ("collapse", 4, 0, 1e-6, 40, "continue"),
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


def reference_steps(X, weights, means, covariances, *, reg_covar, max_iter, on_collapse):
    """gmmlib's step-wise EM from a stated start (tol=0: every round runs)."""
    gm = GaussianMixture(
        len(weights),
        reg_covar=reg_covar,
        tol=0.0,
        max_iter=max_iter,
        weights_init=weights,
        means_init=means,
        covariances_init=covariances,
        on_collapse=on_collapse,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(gm.steps(X))


def make_case(name: str) -> dict:
    data_name, K, seed, reg_covar, max_iter, on_collapse = CASES[name]
    X = dataset(data_name)
    weights, means, covariances = collapse_init(X, K, seed)
    steps = reference_steps(
        X,
        weights,
        means,
        covariances,
        reg_covar=reg_covar,
        max_iter=max_iter,
        on_collapse=on_collapse,
    )
    collapse = next((s.collapse for s in steps if s.collapse is not None), None)
    return {
        "case": name,
        "dataset": data_name,
        "n_components": K,
        "seed": seed,
        "start_indices": start_indices(X, K, seed),
        "X": X.tolist(),
        "weights_init": weights.tolist(),
        "means_init": means.tolist(),
        "covariances_init": covariances.tolist(),
        "reg_covar": reg_covar,
        "tol": 0.0,
        "max_iter": max_iter,
        "collapse_tol": 1e-8,
        "on_collapse": on_collapse,
        "expected": {
            "n_steps": len(steps),
            "kinds": "".join(s.kind for s in steps),
            "log_likelihood": [s.log_likelihood for s in steps if s.kind == "E"],
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


def make_data_json() -> dict:
    # The component colours, from gmmlib.plotting (the explorer keeps no copy of its own).
    palette = [{"name": n, "hex": h} for n, h in zip(PALETTE_NAMES, PALETTE, strict=True)]
    out = {"k_max": K_MAX, "n_seeds": N_SEEDS, "palette": palette, "datasets": {}}
    for name, meta in DATASETS.items():
        X = dataset(name)
        starts = {
            str(K): [start_indices(X, K, seed) for seed in range(N_SEEDS)]
            for K in range(1, K_MAX + 1)
        }
        out["datasets"][name] = {**meta, "X": X.tolist(), "starts": starts}
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
