"""The explorer's ln p, BIC and AIC against K agree with gmmlib's fitted estimator.

For each covariance type, data set and K = 1..5, criteria.mjs (criteriaAgainstK, under node)
runs EM from the explorer's start for seed 0 to its stop and reports ln p(X), the number of
free parameters, BIC and AIC; gmmlib's GaussianMixture is fitted from the same start with the
same rule constants (data.json's: GaussianMixture's defaults) and its log_likelihood_,
_n_parameters(), bic(X) and aic(X) must agree: the parameter count exactly, the rest to 1e-9
relative, and EM must stop for the same reason after the same number of iterations.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from gmmlib import GaussianMixture
from gmmlib.datasets import collapse_init
from gmmlib.em import COVARIANCE_TYPES, from_full_covariances

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node") or "/usr/bin/node"
RTOL = 1e-9
KS = range(1, 6)

sys.path.insert(0, str(ROOT / "scripts"))
import make_explorer_fixtures as mef  # noqa: E402

pytestmark = pytest.mark.slow  # node, and 40 fits


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dataset", ["tilted", "faithful"])
def test_criteria_against_k_match_gmmlib(dataset, covariance_type):
    X = mef.dataset(dataset)
    rules = mef.gmmlib_rules()
    payload = {
        "X": X.tolist(),
        "subspace": mef.subspace(X, rules["collapse_tol"]),
        "covariance_type": covariance_type,
        "starts": {str(k): mef.start_indices(X, k, 0) for k in KS},
        "rules": rules,
    }
    proc = subprocess.run(
        [NODE, str(ROOT / "tests" / "js" / "criteria.mjs"), json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["k"] for r in rows] == list(KS)
    for row in rows:
        k = row["k"]
        where = f"{dataset} {covariance_type} K={k}"
        weights, means, full = collapse_init(X, k, 0)
        gm = GaussianMixture(
            k,
            covariance_type=covariance_type,
            weights_init=weights,
            means_init=means,
            covariances_init=from_full_covariances(full, covariance_type, weights),
            tol=rules["tol"],
            max_iter=rules["max_iter"],
            reg_covar=rules["reg_covar"],
            collapse_tol=rules["collapse_tol"],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)
        assert row["stop"] == gm.stop_reason_, where
        collapsed = gm.stop_reason_ == "collapse"
        assert row["iterations"] == gm.n_iter_ + (1 if collapsed else 0), where
        assert row["nParameters"] == gm._n_parameters(), where
        assert row["logLikelihood"] == pytest.approx(gm.log_likelihood_, rel=RTOL), where
        assert row["bic"] == pytest.approx(gm.bic(X), rel=RTOL), where
        assert row["aic"] == pytest.approx(gm.aic(X), rel=RTOL), where
    # The panel's point: the criteria differ between K (else this compares nothing useful).
    assert len({round(r["bic"], 6) for r in rows}) == len(rows)
    assert np.isfinite([r["bic"] for r in rows]).all()
