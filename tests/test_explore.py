"""gmmlib.explore: the explorer driven by the student's functions (the Python side).

StepDriver answers the front end's requests: with gmmlib's steps by default (the answers are
gmmlib.em's to the last bit), with the student's functions when given (they are really called),
and with an error in words when a function raises or returns a wrong shape, NaN, rows of resp
not summing to 1, or a covariance that is not positive definite. The widget routes custom
messages to the driver, and the bundle it loads is what the explorer's sources give now.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gmmlib import em
from gmmlib.datasets import collapse_init, tilted_blobs
from gmmlib.explore import StepDriver, catalogue, explore
from gmmlib.plotting import NEUTRAL

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def X():
    return tilted_blobs(120, random_state=0)[0]


def e_request(weights, means, covariances, id_=1):
    """The front end's E-step request (em-core's flat layout)."""
    covs = np.stack([covariances[:, 0, 0], covariances[:, 0, 1], covariances[:, 1, 1]], axis=1)
    return {
        "type": "step",
        "id": id_,
        "kind": "E",
        "weights": list(weights),
        "means": np.ravel(means).tolist(),
        "covs": covs.ravel().tolist(),
    }


def m_request(resp, id_=2):
    return {
        "type": "step",
        "id": id_,
        "kind": "M",
        "k": resp.shape[1],
        "resp": resp.ravel().tolist(),
    }


def test_default_driver_is_gmmlib(X):
    """Without functions, the answers are gmmlib.em's e_step, log_likelihood and m_step."""
    weights, means, covariances = collapse_init(X, 3, 0)
    driver = StepDriver(X)
    reply = driver.handle(e_request(weights, means, covariances, id_=7))
    assert reply["ok"] and reply["id"] == 7 and reply["kind"] == "E"
    resp = np.array(reply["resp"]).reshape(len(X), 3)
    np.testing.assert_array_equal(resp, em.e_step(X, weights, means, covariances))
    assert reply["log_likelihood"] == em.log_likelihood(X, weights, means, covariances)
    reply = driver.handle(m_request(resp))
    assert reply["ok"] and reply["kind"] == "M"
    w, m, c = em.m_step(X, resp)
    np.testing.assert_array_equal(reply["weights"], w)
    np.testing.assert_array_equal(np.reshape(reply["means"], (3, 2)), m)
    abd = np.reshape(reply["covs"], (3, 3))
    np.testing.assert_array_equal(abd, np.stack([c[:, 0, 0], c[:, 0, 1], c[:, 1, 1]], axis=1))


def test_points_edited_in_the_explorer_are_the_steps_data(X):
    """The explorer sends the points it shows (the reader may add, move or remove some): the
    step is computed on those, not on the X the widget was made with; bad points are an error
    in words."""
    weights, means, covariances = collapse_init(X, 3, 0)
    edited = np.vstack([X[1:], [[0.5, -0.25]]])  # the first point removed, one added
    driver = StepDriver(X)
    request = {**e_request(weights, means, covariances), "X": edited.ravel().tolist()}
    reply = driver.handle(request)
    assert reply["ok"]
    resp = np.array(reply["resp"]).reshape(len(edited), 3)
    np.testing.assert_array_equal(resp, em.e_step(edited, weights, means, covariances))
    assert reply["log_likelihood"] == em.log_likelihood(edited, weights, means, covariances)
    reply = driver.handle({**m_request(resp), "X": edited.ravel().tolist()})
    np.testing.assert_array_equal(reply["means"], np.ravel(em.m_step(edited, resp)[1]))
    reply = driver.handle({**request, "X": [0.0, 1.0, float("nan"), 2.0]})
    assert not reply["ok"] and "finite (x, y)" in reply["error"]


def test_student_functions_are_called_with_the_sent_parameters(X):
    calls = []

    def my_e_step(X_, weights, means, covariances):
        calls.append(("E", X_.shape, weights.copy(), means.copy(), covariances.copy()))
        return em.e_step(X_, weights, means, covariances)

    def my_m_step(X_, resp):
        calls.append(("M", X_.shape, resp.copy()))
        weights, means, covariances = em.m_step(X_, resp)
        return weights, means + 1.0, covariances  # a wrong M-step: shifted means

    weights, means, covariances = collapse_init(X, 2, 1)
    driver = StepDriver(X, my_e_step, my_m_step)
    resp = np.array(driver.handle(e_request(weights, means, covariances))["resp"])
    reply = driver.handle(m_request(resp.reshape(len(X), 2)))
    assert [c[0] for c in calls] == ["E", "M"]
    _, shape, w, m, c = calls[0]
    assert shape == X.shape
    np.testing.assert_array_equal(w, weights)
    np.testing.assert_array_equal(m, means)
    np.testing.assert_array_equal(c, covariances)  # rebuilt from the flat [a, b, d]
    np.testing.assert_array_equal(calls[1][2], resp.reshape(len(X), 2))
    # The student's answer is sent back as it is, wrong or not.
    np.testing.assert_array_equal(
        np.reshape(reply["means"], (2, 2)), em.m_step(X, calls[1][2])[1] + 1.0
    )


def _error(driver, request):
    reply = driver.handle(request)
    assert reply["ok"] is False
    return reply["error"]


@pytest.mark.parametrize(
    ("e_step", "words"),
    [
        (lambda X, w, m, c: np.ones((len(X), len(w))), "row 0 sums to 3"),
        (lambda X, w, m, c: np.ones((len(X), 2)) / 2, "shape (120, 2); expected (120, 3)"),
        (lambda X, w, m, c: np.full((len(X), len(w)), np.nan), "non-finite value"),
        (lambda X, w, m, c: 1 / 0, "your e_step raised ZeroDivisionError: division by zero"),
        (lambda X, w, m, c: "resp", "not an array of numbers"),
    ],
)
def test_a_bad_e_step_is_reported_in_words(X, e_step, words):
    weights, means, covariances = collapse_init(X, 3, 0)
    error = _error(StepDriver(X, e_step=e_step), e_request(weights, means, covariances))
    assert words in error


def _m_step_returning(change):
    def m_step(X, resp):
        return change(*em.m_step(X, resp))

    return m_step


@pytest.mark.parametrize(
    ("m_step", "words"),
    [
        (_m_step_returning(lambda w, m, c: (w, m)), "must return (weights, means, covariances)"),
        (_m_step_returning(lambda w, m, c: (w, m.T, c)), "means of shape (2, 3); expected (3, 2)"),
        (_m_step_returning(lambda w, m, c: (w * 2, m, c)), "weights summing to 2"),
        (_m_step_returning(lambda w, m, c: (w, m, -c)), "covariance 0 that is not positive"),
        (_m_step_returning(lambda w, m, c: (w, m, c + [[0, 1], [0, 0]])), "not symmetric"),
        (_m_step_returning(lambda w, m, c: (w, m * np.nan, c)), "means with a non-finite"),
        (lambda X, resp: np.linalg.inv(np.zeros((2, 2))), "your m_step raised LinAlgError"),
    ],
)
def test_a_bad_m_step_is_reported_in_words(X, m_step, words):
    resp = em.e_step(X, *collapse_init(X, 3, 0))
    error = _error(StepDriver(X, m_step=m_step), m_request(resp))
    assert words in error


def test_a_raising_step_names_where(X):
    def m_step(X, resp):
        raise RuntimeError("not written yet")

    resp = em.e_step(X, *collapse_init(X, 3, 0))
    error = _error(StepDriver(X, m_step=m_step), m_request(resp))
    assert error.startswith("your m_step raised RuntimeError: not written yet (test_explore.py")


def test_the_catalogue_is_the_books_format_for_your_data(X):
    cat = catalogue(X, k=2, seed=3)
    assert cat["gmmlib"]["nk_eps"] == em.NK_EPS
    assert cat["neutral"] == NEUTRAL  # the grey of points before any E-step: gmmlib's
    ds = cat["datasets"]["yours"]
    assert ds["k"] == 2 and ds["seed"] == 3 and len(ds["X"]) == len(X)
    idx = ds["starts"]["3"][5]  # seed 5, K = 3: collapse_init's means
    np.testing.assert_array_equal(X[idx], collapse_init(X, 3, 5)[1])
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        catalogue(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="nan or inf"):
        catalogue(np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_the_widget_routes_step_messages_to_the_driver(X, monkeypatch):
    """A custom message {type: "step"} from the front end is answered with driver.handle's
    reply; other messages are ignored."""
    widget = explore(X, k=3)
    sent = []
    monkeypatch.setattr(widget, "send", lambda content, buffers=None: sent.append(content))
    weights, means, covariances = collapse_init(X, 3, 0)
    request = e_request(weights, means, covariances, id_=11)
    widget._on_request(widget, request, [])
    widget._on_request(widget, {"type": "other"}, [])
    assert len(sent) == 1 and sent[0] == widget.driver.handle(request)
    assert widget.driver_names == {"e": "gmmlib's e_step", "m": "gmmlib's m_step"}
    # The front end is the packaged bundle (anywidget reads the file: no network needed).
    bundle = ROOT / "gmmlib" / "_explorer" / "explorer.bundle.mjs"
    assert str(widget._esm) == bundle.read_text()


def test_the_bundle_is_current_and_packaged():
    """gmmlib/_explorer holds what scripts/bundle_explorer.py builds from the sources now, and
    pyproject.toml ships it in the wheel."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bundle_explorer.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"_explorer/*.mjs"' in pyproject and '"_explorer/*.css"' in pyproject
