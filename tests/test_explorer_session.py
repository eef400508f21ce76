"""The explorer's session without a browser: EM history, scrubbing, data by hand, the address.

`book/_extra/explorer/session.mjs` holds the explorer's whole state with no DOM. Node drives it
through scripted actions (tests/js/session_script.mjs): every state the reader can reach is
written as an address (`url.mjs`) that, opened again, shows exactly the same thing (data, K,
seed, reg_covar, the step shown, every parameter, the trace, each point's colour); the history
the timeline moves through is gmmlib's steps; after a point is added, removed or moved the fit
follows to where gmmlib's fit from the same start ends; the book's deep links (dataset, k, seed,
reg) keep working, and an address with a bad parameter is answered by naming it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gmmlib import GaussianMixture
from gmmlib.datasets import collapse_init
from gmmlib.em import from_full_covariances, full_covariances

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node") or "/usr/bin/node"
SCRIPT = ROOT / "tests" / "js" / "session_script.mjs"
CATALOGUE = json.loads((ROOT / "book" / "_extra" / "explorer" / "data.json").read_text())
RTOL = 1e-9  # the parity tests' tolerance (tests/test_explorer_parity.py)

sys.path.insert(0, str(ROOT / "scripts"))
import make_explorer_fixtures as mef  # noqa: E402


def run_scripts(*scripts: tuple[str, list[str]], later: bool = False) -> list[dict]:
    """Each (query, actions): the address the session ends on, what it shows, what a session
    opened at that address shows, and the problems of both addresses. `later`: every step comes
    from a driver that answers with a Promise (as a notebook widget's Python steps do)."""
    arg = json.dumps([{"query": q, "actions": a, "later": later} for q, a in scripts])
    proc = subprocess.run(
        [NODE, str(SCRIPT), arg], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_one(query: str, actions: list[str]) -> dict:
    return run_scripts((query, actions))[0]


REACHABLE = {
    "steps taken": ("dataset=faithful&k=2&seed=3", ["E", "M", "E"]),
    "scrubbed back": ("dataset=tilted&k=3&seed=0", ["end", "scrub:5"]),
    "mean dragged": ("dataset=tilted&k=3&seed=0", ["end", "mean:1:0.5:-0.25", "M", "E"]),
    "points edited": (
        "dataset=faithful&k=2&seed=3",
        ["end", "add:1.5:-1.25", "remove:0", "move:3:0.2:0.4", "scrub:4"],
    ),
    "own data": (
        "dataset=own&k=2",
        ["add:-2:0", "add:-2.5:0.5", "add:-1.5:-0.5", "add:2:1", "add:2.5:1.5", "add:1.5:0.5"],
    ),
    "collapse, continued": ("dataset=collapse&k=8&seed=0", ["end", "continue", "end"]),
    "reg_covar on": ("dataset=collapse&k=4&seed=0", ["reg:on", "end", "scrub:3"]),
    "K and seed changed": ("dataset=tilted&k=3&seed=0", ["k:5", "seed:7", "E", "M"]),
    "spherical, scrubbed": ("dataset=tilted&k=3&seed=0&cov=spherical", ["end", "scrub:4"]),
    "tied, points edited": ("dataset=faithful&k=2&seed=1&cov=tied", ["add:0:2", "scrub:3"]),
}


@pytest.mark.parametrize("name", list(REACHABLE))
def test_an_address_reproduces_exactly_what_is_shown(name):
    query, actions = REACHABLE[name]
    out = run_one(query, actions)
    assert out["problems"] == [] and out["asked"] == []
    assert out["shown"] == out["reopened"], out["address"]  # every number, bit for bit
    # The address says what it reproduces.
    assert out["address"].startswith(f"dataset={out['shown']['dataset']}&k={out['shown']['k']}&")
    position = out["shown"]["position"]
    assert (f"step={position}" in out["address"]) == (position > 0)


def test_the_address_changes_with_each_state():
    """Different states, different addresses: none of the reachable states shares one."""
    outs = run_scripts(*REACHABLE.values())
    addresses = [o["address"] for o in outs]
    assert len(set(addresses)) == len(addresses), addresses


def _gmmlib_steps(X, K, seed, *, reg_covar=0.0, means=None):
    rules = CATALOGUE["gmmlib"]
    weights, means0, covs = collapse_init(X, K, seed)
    if means is not None:  # a start from stated means: equal weights, the data covariance
        means0 = np.asarray(means, dtype=float)
    return mef.reference_steps(
        X, weights, means0, covs, reg_covar=reg_covar, max_iter=rules["max_iter"],
        on_collapse="warn", tol=rules["tol"],
    )  # fmt: skip


def _assert_same_step(shown, ref, where):
    assert (shown["kind"], shown["iteration"] + (shown["kind"] == "E")) == (
        ref.kind,
        ref.iteration,
    ), where
    np.testing.assert_allclose(shown["weights"], ref.weights, rtol=RTOL, err_msg=where)
    np.testing.assert_allclose(shown["means"], ref.means, rtol=RTOL, err_msg=where)
    covs = np.array([[[a, b], [b, d]] for a, b, d in shown["covariances"]])
    np.testing.assert_allclose(covs, ref.covariances, rtol=RTOL, err_msg=where)


def test_the_timeline_moves_through_gmmlibs_steps():
    """Position p of the history is gmmlib's step p (E and M halves), wherever the reader
    scrubbed from; going back and forward again changes nothing."""
    X = mef.dataset("faithful")
    ref = _gmmlib_steps(X, 2, 3)
    positions = [1, 2, 5, 6, len(ref)]
    outs = run_scripts(
        *[("dataset=faithful&k=2&seed=3", ["end", f"scrub:{p}"]) for p in positions],
        ("dataset=faithful&k=2&seed=3", ["end", "scrub:1", "forward"]),
        ("dataset=faithful&k=2&seed=3", ["E", "M"]),
    )
    assert outs[0]["shown"]["steps"] == len(ref)  # the whole run is in the history
    for p, out in zip(positions, outs, strict=False):
        _assert_same_step(out["shown"], ref[p - 1], f"position {p}")
        assert out["shown"]["position"] == p
    # Back to 1, then forward: the same as two steps from a fresh start.
    replayed, fresh = outs[-2]["shown"], outs[-1]["shown"]
    for key in ("position", "weights", "means", "covariances", "trace", "colours"):
        assert replayed[key] == fresh[key], key
    # The trace shown stops at the moment shown: ln p(X | theta_t) for t up to it.
    scrubbed = outs[2]["shown"]  # position 5: the E-step of iteration 3
    ll = [s.log_likelihood for s in ref if s.kind == "E"]
    np.testing.assert_allclose(scrubbed["trace"], ll[:3], rtol=RTOL)


def test_the_fit_follows_points_added_removed_and_moved():
    X = mef.dataset("faithful")
    out = run_one(
        "dataset=faithful&k=2&seed=3", ["end", "add:1.5:-1.25", "remove:0", "move:3:0.2:0.4"]
    )
    shown = out["shown"]
    # The data: the set less point 0 and point 4 (the 4th left after dropping 0, then moved),
    # then the points added, in order.
    expected = np.vstack([np.delete(X, [0, 4], axis=0), [[1.5, -1.25], [0.2, 0.4]]])
    np.testing.assert_array_equal(shown["points"], expected)
    assert "drop=0,4" in out["address"] and "add=1.5,-1.25;0.2,0.4" in out["address"]
    # The fit ran to its end from the start's means kept through the edits (the seed's).
    start = collapse_init(X, 2, 3)[1]
    np.testing.assert_array_equal(shown["start_means"], start)
    ref = _gmmlib_steps(expected, 2, 3, means=start)
    assert shown["next"] is None and shown["stop"] == ref[-1].stop == "converged"
    assert shown["position"] == shown["steps"] == len(ref)
    _assert_same_step(shown, ref[-1], "after the edits")


def test_own_data_waits_for_more_points_than_components():
    outs = run_scripts(
        ("dataset=own&k=3", ["add:0:0", "add:1:0", "add:0:1"]),
        ("dataset=own&k=3", ["add:0:0", "add:1:0", "add:0:1", "add:1:1.5"]),
        ("dataset=tilted&k=3&seed=0", ["end", "own"]),
    )
    waiting, running, fresh = (o["shown"] for o in outs)
    assert waiting["means"] is None and waiting["steps"] == 0 and waiting["next"] is None
    assert running["means"] is not None and running["steps"] > 0
    assert fresh["points"] == [] and fresh["dataset"] == "own" and fresh["means"] is None
    assert outs[2]["address"] == "dataset=own&k=3&seed=0"


def test_the_books_deep_links_and_bad_addresses():
    """The first version's links (dataset, k, seed, reg) open as before; a parameter that cannot
    be used is named, never silently replaced."""
    good, bad = run_scripts(
        ("dataset=collapse&k=4&seed=0&reg=0", []),
        ("dataset=faithfull&k=12&seed=3&means=1,2&step=x&drop=9999&colour=red", []),
    )
    assert good["asked"] == [] and good["address"] == "dataset=collapse&k=4&seed=0"
    assert (good["shown"]["k"], good["shown"]["seed"], good["shown"]["reg_covar"]) == (4, 0, 0)
    named = {p.split("=")[0].split(":")[0] for p in bad["asked"]}
    assert named == {"dataset", "k", "means", "step", "drop", "colour"}, bad["asked"]


def test_url_round_trip_of_generated_states():
    """encodeState then decodeState (url.mjs) gives back every field of 500 generated states,
    each number bit for bit (full-precision means, -0, 1e-12 and 1e12 included)."""
    proc = subprocess.run(
        [NODE, str(ROOT / "tests" / "js" / "url_roundtrip.mjs"), "500"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["count"] == 500 and out["failures"] == [], out["failures"][:3]


@pytest.mark.parametrize("cov", ["tied", "diag", "spherical"])
def test_the_timeline_moves_through_gmmlibs_steps_in_every_covariance_type(cov):
    """The covariance type reaches the run: each position is gmmlib's step in that type."""
    X = mef.dataset("tilted")
    rules = CATALOGUE["gmmlib"]
    weights, means, covs = collapse_init(X, 3, 0)
    gm = GaussianMixture(
        3, covariance_type=cov, weights_init=weights, means_init=means,
        covariances_init=from_full_covariances(covs, cov, weights),  # the same start, that type
        reg_covar=0.0, max_iter=rules["max_iter"], on_collapse="warn", tol=rules["tol"],
    )  # fmt: skip
    ref = list(gm.steps(X))
    out = run_scripts(*[(f"dataset=tilted&k=3&seed=0&cov={cov}", ["end", f"scrub:{p}"])
                        for p in (2, len(ref))])  # fmt: skip
    for p, o in zip((2, len(ref)), out, strict=True):
        r = ref[p - 1]
        shown = o["shown"]
        assert shown["cov"] == cov and f"cov={cov}" in o["address"]
        np.testing.assert_allclose(shown["means"], r.means, rtol=RTOL)
        covs_js = np.array([[[a, b], [b, d]] for a, b, d in shown["covariances"]])
        np.testing.assert_allclose(covs_js, full_covariances(r.covariances, cov, 3, 2), rtol=RTOL)


def test_a_driver_whose_steps_come_later_shows_the_same():
    """A front end may replace em-core's steps by ones that answer later (mount's `driver`):
    every reachable state is the same, and a step that arrives after a restart is dropped."""
    now = run_scripts(*REACHABLE.values())
    later = run_scripts(*REACHABLE.values(), later=True)
    for name, a, b in zip(REACHABLE, now, later, strict=True):
        assert a["shown"] == b["shown"] == b["reopened"], name
        assert a["address"] == b["address"], name
    stale, fresh = run_scripts(
        ("dataset=tilted&k=3&seed=0", ["E", "M", "stale"]),
        ("dataset=tilted&k=3&seed=0", []),
        later=True,
    )
    assert stale["shown"]["steps"] == 0 and stale["shown"] == fresh["shown"]
