"""The explorer's JavaScript EM core agrees with gmmlib, step by step (node vs numpy).

Each fixture in tests/fixtures/explorer/ (written by scripts/make_explorer_fixtures.py from
gmmlib) holds data and initial parameters. gmmlib's `GaussianMixture.steps()` runs live from
them here; book/_extra/explorer/em-core.mjs runs under node from the same numbers (via
tests/js/run_fixture.mjs). After every E- and M-step we compare, to 1e-9 relative:
responsibilities, N_k, weights, means, covariances and the log-likelihood; the smallest
eigenvalues (absolute, relative to the largest); and the collapse: same iteration, component
and number of points. Where EM stops is compared exactly: the cases with tol > 0 stop by
gmmlib's convergence test, and the explorer must stop on the same iteration for the same reason
(n_iter_, stop_reason_, converged_), with the same final log-likelihood. The explorer's rule
constants (tol, max_iter, reg_covar, collapse_tol, the N_k guard) reach it only from gmmlib,
through the fixtures and data.json.
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
from gmmlib.em import full_covariances

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "explorer"
RUNNER = ROOT / "tests" / "js" / "run_fixture.mjs"
NODE = shutil.which("node") or "/usr/bin/node"
# JS and numpy round differently (summation order, BLAS kernels, exp/log): measured here, the
# worst relative difference over every case and step is 1.7e-11 (responsibilities near a
# collapse), 4e-12 for parameters, 1e-12 for the log-likelihood: 1e-9 leaves a margin of 60x
# or more for other processors and BLAS builds.
RTOL = 1e-9
# Responsibilities far below 1 (down to 1e-300 here) are exp(log gamma): their relative error is
# the absolute error of log gamma. They are compared relatively down to 1e-11, absolutely below.
RESP_ATOL = 1e-20

sys.path.insert(0, str(ROOT / "scripts"))
import make_explorer_fixtures as mef  # noqa: E402

CASES = sorted(mef.CASES)

# node for every case, and 480 EM runs in the sweeps: out of `make test-fast`.
pytestmark = pytest.mark.slow


def _load(case: str) -> dict:
    return json.loads((FIXTURES / f"{case}.json").read_text())


def _run_node(case: str) -> dict:
    return _node_json(RUNNER.name, str(FIXTURES / f"{case}.json"))


def _reference(fx: dict):
    return mef.reference_steps(
        np.array(fx["X"]),
        np.array(fx["weights_init"]),
        np.array(fx["means_init"]),
        np.array(fx["covariances_init"]),
        reg_covar=fx["reg_covar"],
        max_iter=fx["max_iter"],
        on_collapse=fx["on_collapse"],
        tol=fx["tol"],
        covariance_type=_type(fx),
    )


def _type(fx: dict) -> str:
    return fx.get("covariance_type", "full")


def _full(covariances, fx: dict) -> np.ndarray:
    """gmmlib's covariances of the fixture's type as K full matrices (em-core's layout)."""
    return full_covariances(covariances, _type(fx), fx["n_components"], 2)


@pytest.fixture(scope="module", params=CASES)
def case(request):
    fx = _load(request.param)
    return request.param, fx, _reference(fx), _run_node(request.param)


#: How far a log-likelihood trace may move between machines (derived in its docstring).
trace_rtol = mef.trace_rtol


def test_fixture_is_current(case):
    """The committed fixture is what gmmlib produces now (data, start, trace, collapse), up to
    the rounding differences between machines."""
    name, fx, ref, _ = case
    fresh = mef.make_case(name)  # asserts the stopping margin too (mef.STOP_MARGIN)
    # The options and gmmlib's rule constants, exactly as gmmlib states them now.
    for key in (
        *("dataset", "n_components", "seed", "start_indices", "reg_covar", "max_iter"),
        *("on_collapse", "tol", "collapse_tol", "nk_eps", "subspace", "covariance_type"),
    ):
        assert fx[key] == fresh[key], key
    # Data and starts come from seeded generators, one small matrix product and a mean: 1e-14 is
    # ~45 ulp. Covariance entries are compared on the scale of the matrix (an entry may be ~0).
    for key in ("X", "weights_init", "means_init"):
        np.testing.assert_allclose(fx[key], fresh[key], rtol=1e-14, atol=0, err_msg=key)
    scale = np.max(np.abs(fresh["covariances_init"]))
    np.testing.assert_allclose(
        fx["covariances_init"], fresh["covariances_init"], rtol=1e-14, atol=1e-14 * scale
    )
    exp, new = fx["expected"], fresh["expected"]
    assert exp["kinds"] == new["kinds"]
    ll_exp, ll_new = np.array(exp["log_likelihood"]), np.array(new["log_likelihood"])
    rtol = trace_rtol(fx["covariances_init"], ref, _type(fx))
    err = np.abs(ll_exp - ll_new) / np.abs(ll_new)
    assert np.all(err <= rtol), (
        f"{name}: log-likelihood trace moved beyond rounding at E-steps "
        f"{np.flatnonzero(err > rtol).tolist()}: relative {err.max():.1e}: "
        "re-run scripts/make_explorer_fixtures.py if gmmlib's EM changed on purpose"
    )
    assert (exp["collapse"] is None) == (new["collapse"] is None)
    if exp["collapse"]:
        for key in ("component", "iteration", "n_points"):
            assert exp["collapse"][key] == new["collapse"][key]
    # Where and why gmmlib's fit stops, and the returned parameters' log-likelihood.
    assert exp["stop"] == new["stop"]
    for key in ("n_iter", "stop_reason", "converged"):
        assert exp["fit"][key] == new["fit"][key], key
    assert exp["fit"]["log_likelihood"] == pytest.approx(
        new["fit"]["log_likelihood"], rel=rtol[-1], abs=0
    )


def test_enough_steps(case):
    """>= 20 E/M steps per case; a case may stop earlier only at a collapse or, with tol > 0,
    by the convergence test (which is then what the case is for)."""
    _, fx, ref, js = case
    stopped_early = ref[-1].collapse is not None or (fx["tol"] > 0 and ref[-1].stop == "converged")
    assert len(ref) >= 20 or stopped_early
    assert len(js["steps"]) == len(ref) == fx["expected"]["n_steps"]


def test_cases_with_tol_stop_by_gmmlibs_convergence_test():
    """Some cases use gmmlib's default tol and one a tighter tol; each stops by convergence after
    several iterations, with every convergence test at least mef.STOP_MARGIN times what rounding
    can move it from tol, so the iteration it stops on never depends on the last bits."""
    rules = mef.gmmlib_rules()
    cases = [fx for fx in map(_load, CASES) if fx["tol"] > 0]
    tols = {fx["tol"] for fx in cases}
    assert rules["tol"] in tols and min(tols) < rules["tol"]
    assert len({fx["dataset"] for fx in cases}) >= 2
    for fx in cases:
        exp = fx["expected"]
        assert exp["stop"] == exp["fit"]["stop_reason"] == "converged", fx["case"]
        assert 5 <= exp["fit"]["n_iter"] < fx["max_iter"], fx["case"]
        assert exp["stop_margin"] >= mef.STOP_MARGIN, fx["case"]


def test_stops_where_gmmlib_stops(case):
    """The explorer stops on gmmlib's iteration for gmmlib's reason: same n_iter_ (the M-steps done;
    after a collapse gmmlib counts only the iterations before it), stop_reason_, converged_, and the
    same log-likelihood of the returned parameters (log_likelihood_, the last E-step's)."""
    name, fx, ref, js = case
    fit = fx["expected"]["fit"]
    assert js["stop"] == ref[-1].stop == fit["stop_reason"], name
    assert js["converged"] == fit["converged"], name
    collapsed = fit["stop_reason"] == "collapse"
    assert js["iteration"] == fit["n_iter"] + (1 if collapsed else 0), name
    if not collapsed:
        # JS and numpy round differently, as two machines do: the trace's derived tolerance.
        rtol = trace_rtol(fx["covariances_init"], ref, _type(fx))[-1]
        final = [s["log_likelihood"] for s in js["steps"] if s["kind"] == "E"][-1]
        assert final == pytest.approx(fit["log_likelihood"], rel=rtol, abs=0), name


def test_a_long_collapse_case():
    """At least one collapse case runs >= 20 steps before collapsing."""
    long_collapses = [
        fx
        for fx in map(_load, CASES)
        if fx["expected"]["collapse"] and fx["expected"]["n_steps"] >= 20
    ]
    assert long_collapses


def test_explorer_start_is_gmmlibs(case):
    """The explorer's start for (K, seed) = gmmlib.datasets.collapse_init(X, K, seed)."""
    _, fx, _, js = case
    start = js["explorer_start"]
    np.testing.assert_array_equal(start["means"], fx["means_init"])
    np.testing.assert_allclose(start["weights"], fx["weights_init"], rtol=1e-15)
    expected = _full(fx["covariances_init"], fx)
    np.testing.assert_allclose(start["covariances"], expected, rtol=1e-12)


def test_every_step_agrees(case):
    """Every step, for every covariance type (gmmlib's covariances compared as em-core holds
    them: K full matrices, gmmlib.em.full_covariances; a tied run's one smallest eigenvalue
    against each of em-core's K equal ones)."""
    name, fx, ref, js = case
    for r, j in zip(ref, js["steps"], strict=True):
        where = f"{name}: step {r.kind}{r.iteration}"
        assert (j["kind"], j["iteration"]) == (r.kind, r.iteration), where
        np.testing.assert_allclose(
            j["resp"], r.resp, rtol=RTOL, atol=RESP_ATOL, err_msg=f"{where} resp"
        )
        for key in ("nk", "weights", "means"):
            np.testing.assert_allclose(
                j[key], getattr(r, key), rtol=RTOL, atol=0, err_msg=f"{where} {key}"
            )
        full = _full(r.covariances, fx)
        # gmmlib's fast diagonal M-step forms E[(x - c)^2] - (mu - c)^2 (c the data mean), so
        # its variances carry an absolute rounding error ~ eps * s2 (s2 the data's variance);
        # em-core, as gmmlib.em, centres on mu first. A component sitting on one point has
        # variances that are only that rounding (1e-16 vs 1e-30 in collapse_k4_seed4_diag):
        # diag and spherical covariances are compared to RTOL relative or RTOL * s2 absolute.
        s2 = float(np.mean(np.var(np.array(fx["X"]), axis=0)))
        atol = RTOL * s2 if _type(fx) in ("diag", "spherical") else 0
        np.testing.assert_allclose(
            j["covariances"], full, rtol=RTOL, atol=atol, err_msg=f"{where} covariances"
        )
        largest = np.linalg.eigvalsh(full)[:, -1]
        if atol:  # the same rounding of a variance at ~0 (see above)
            largest = np.maximum(largest, s2)
        lam_err = np.abs(np.array(j["min_eigenvalues"]) - r.min_eigenvalues) / largest
        assert lam_err.max() <= RTOL, f"{where} min_eigenvalues"
        if r.kind == "E":
            assert j["log_likelihood"] == pytest.approx(r.log_likelihood, rel=RTOL, abs=0), where
        else:
            assert j["log_likelihood"] is None


def test_same_collapse(case):
    """Collapse detected at the same iteration, on the same component, onto the same points."""
    name, fx, ref, js = case
    ref_collapse = [(s.iteration, s.collapse) for s in ref if s.collapse is not None]
    js_collapse = [(s["iteration"], s["collapse"]) for s in js["steps"] if s["collapse"]]
    assert len(ref_collapse) == len(js_collapse) <= 1
    if name.startswith("collapse"):
        assert ref_collapse, f"{name} is meant to collapse"
    for (it_r, rep), (it_j, jrep) in zip(ref_collapse, js_collapse, strict=True):
        assert it_r == it_j == rep.iteration == jrep["iteration"]
        assert jrep["component"] == rep.component
        assert jrep["n_points"] == rep.n_points
        assert jrep["nk"] == pytest.approx(rep.nk, rel=RTOL)
        assert jrep["threshold"] == pytest.approx(rep.threshold, rel=1e-12)
        assert (
            f"Component {rep.component} collapsed at iteration {rep.iteration}" in (jrep["message"])
        )
    if fx["on_collapse"] == "warn" and ref_collapse:
        assert js["stop"] == "collapse" and ref[-1].collapse is not None


def test_log_likelihood_never_decreases(case):
    """EM's guarantee, seen in the JS trace (up to rounding)."""
    _, _, _, js = case
    ll = [s["log_likelihood"] for s in js["steps"] if s["kind"] == "E"]
    assert all(b >= a - 1e-9 * abs(a) for a, b in zip(ll, ll[1:], strict=False))


def test_data_json_is_current():
    """The explorer's data.json = gmmlib's rule constants, palette, data sets and collapse_init
    starts."""
    on_disk = json.loads(mef.DATA_JSON.read_text())
    fresh = mef.make_data_json()
    # k_max, n_seeds, the palette and gmmlib's rule constants (tol, max_iter, reg_covar,
    # collapse_tol, nk_eps), compared exactly: they are copied, never computed.
    assert {k: v for k, v in on_disk.items() if k != "datasets"} == {
        k: v for k, v in fresh.items() if k != "datasets"
    }
    from gmmlib import GaussianMixture, em

    defaults = GaussianMixture().get_params()
    for key in ("tol", "max_iter", "reg_covar", "collapse_tol"):
        assert on_disk["gmmlib"][key] == defaults[key], key
    assert on_disk["gmmlib"]["nk_eps"] == em.NK_EPS
    assert on_disk["datasets"].keys() == fresh["datasets"].keys()
    for name, ds in fresh["datasets"].items():
        disk = on_disk["datasets"][name]
        np.testing.assert_allclose(disk["X"], ds["X"], rtol=1e-14, atol=0, err_msg=name)
        assert disk["starts"] == ds["starts"], name
        assert {k: v for k, v in disk.items() if k not in ("X", "starts")} == {
            k: v for k, v in ds.items() if k not in ("X", "starts")
        }


@pytest.mark.parametrize(
    ("dataset", "reg_covar"), [("collapse", 0.0), ("collapse", 1e-6), ("faithful", 0.0)]
)
def test_collapse_sweep_matches_gmmlib(dataset, reg_covar):
    """Every K in 1..8 and seeds 0..19 from the explorer's own starts: EM stops at the same
    round for the same reason (converged or collapsed), on the same component.

    Decisions compared exactly, so none may sit on its threshold: measured over these 480 runs,
    no smallest eigenvalue is within 1% of the collapse threshold and no change of ln p(X) per
    point within 0.1% of tol, while rounding differences between machines move them by < 1e-8.
    """
    max_k, n_seeds, max_iter = 8, 20, 200
    proc = subprocess.run(
        [NODE, str(ROOT / "tests" / "js" / "collapse_sweep.mjs"), dataset, str(max_k),
         str(n_seeds), repr(reg_covar), str(max_iter)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)
    X = mef.dataset(dataset)
    collapses = 0
    tol = mef.gmmlib_rules()["tol"]  # the explorer's, from data.json
    for r in runs:
        # The explorer's start is collapse_init's, as the collapse experiment's: the data
        # covariance without reg_covar (GaussianMixture's means_init alone would add it).
        weights, means, covariances = collapse_init(X, r["k"], r["seed"])
        gm = GaussianMixture(
            r["k"], reg_covar=reg_covar, tol=tol, max_iter=max_iter, on_collapse="warn",
            weights_init=weights, means_init=means, covariances_init=covariances,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            steps = list(gm.steps(X))
        last = steps[-1]
        where = f"K={r['k']} seed={r['seed']}"
        ref = last.collapse
        if ref is None:
            assert r["collapse"] is None, where
            assert r["stop"] == last.stop and r["stop"] in ("converged", "max_iter"), where
            assert r["converged"] == (last.stop == "converged"), where
            assert r["iteration"] == last.iteration - 1, where  # ends on the E-step of round t+1
        else:
            collapses += 1
            assert r["stop"] == "collapse", where
            got = r["collapse"]
            assert (got["iteration"], got["component"], got["n_points"]) == (
                ref.iteration, ref.component, ref.n_points,
            ), where  # fmt: skip
    if dataset == "collapse":
        assert collapses >= 20  # the sweep really exercises the rule


def _node_json(script: str, *args: str):
    proc = subprocess.run(
        [NODE, str(ROOT / "tests" / "js" / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_explorer_core_needs_gmmlibs_rule_constants():
    """The explorer's EM (em-core.mjs, em-run.mjs) holds no constant of gmmlib's rules: EMRun
    refuses to run without each of them (tol, maxIter, regCovar, collapseTol, nkEps), naming the
    one left out."""
    errors = _node_json("rules_required.mjs", str(FIXTURES / "faithful_k2_tol.json"))
    assert errors.pop("none") is None  # all given: it runs
    assert set(errors) == {"tol", "maxIter", "regCovar", "collapseTol", "nkEps"}
    for name, message in errors.items():
        assert message is not None and f"needs {name}" in message and "gmmlib" in message, name


def test_axis_tick_labels_have_one_precision():
    """Every axis of the explorer (scatter x and y, the log-likelihood trace) labels its ticks by
    one rule: round values 1, 2 or 5 x 10^p apart, at least two of them, and every label with
    the decimals of the step (so -25.05 and -56.587 never sit on one axis)."""
    ranges = [
        [-56.587, -25.05, 3],  # a trace (the two precisions this rule replaced)
        [-2446.3, -2083.3, 3],
        [-385.9, -385.46, 3],  # a trace near convergence
        [-3.3, 2.9, 8],  # scatter axes
        [-2.41, 2.02, 3],
        [0.0, 1.0, 4],
        [-1.2e-5, 3.2e-5, 3],
    ]
    all_ticks = _node_json("axis_ticks.mjs", json.dumps(ranges))
    for (lo, hi, _), ticks in zip(ranges, all_ticks, strict=True):
        where = f"[{lo}, {hi}]"
        values, labels, step = ticks["values"], ticks["labels"], ticks["step"]
        assert len(values) >= 2, where
        mantissa = step / 10 ** np.floor(np.log10(step))
        assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-9, where
        assert all(lo - 1e-9 * step <= v <= hi + 1e-9 * step for v in values), where
        np.testing.assert_allclose(np.diff(values), step, rtol=1e-9, err_msg=where)
        decimals = max(0, -int(np.floor(np.log10(step) + 1e-9)))
        for v, text in zip(values, labels, strict=True):
            shown = len(text.split(".")[1]) if "." in text else 0
            assert shown == decimals, (where, labels)
            assert abs(float(text) - v) <= 1e-9 * step, (where, text, v)
    # An empty range has no ticks (the trace widens a flat one before asking).
    assert _node_json("axis_ticks.mjs", "[[7.0, 7.0, 3]]")[0]["values"] == []


def test_collapse_rule_measures_within_gmmlibs_data_subspace():
    """With a data subspace from gmmlib (rank-deficient data: the points on a line, or all one
    point), em-core's lambda_min is gmmlib's: Q^T Sigma_k Q's smallest eigenvalue, +inf when
    the data have no direction at all; without one, Sigma_k's own."""
    from gmmlib.diagnostics import collapse_threshold, data_subspace, min_eigenvalues

    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 2, 2))
    covs = A @ A.transpose(0, 2, 1) + 1e-3 * np.eye(2)
    t = rng.normal(size=50)
    line = np.outer(t, [0.6, 0.8])  # collinear: gmmlib's subspace is the line
    for X in (rng.normal(size=(50, 2)), line, np.ones((5, 2))):
        Q = data_subspace(X, collapse_threshold(X))
        subspace = None if Q is None else Q.T.tolist()
        js = _node_json(
            "min_eigenvalues.mjs",
            json.dumps({"covs": [[c[0, 0], c[0, 1], c[1, 1]] for c in covs], "subspace": subspace}),
        )
        expected = min_eigenvalues(covs, "full", Q)
        # Eigenvalues of 2x2 matrices by formula vs LAPACK: a few ulp of the largest eigenvalue.
        scale = np.linalg.eigvalsh(covs)[:, -1]
        got = np.array([float(v) for v in js])
        assert np.array_equal(np.isinf(got), np.isinf(expected))
        finite = np.isfinite(expected)
        err = np.abs(got[finite] - expected[finite])
        assert np.all(err <= 1e-14 * scale[finite]), (got, expected)
    assert data_subspace(line, collapse_threshold(line)).shape == (2, 1)  # the case is exercised
