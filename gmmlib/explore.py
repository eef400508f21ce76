"""The book's EM explorer in Jupyter, driven by your own E- and M-step.

``explore(X, e_step=my_e_step, m_step=my_m_step)`` shows the explorer of the book (same
JavaScript, through anywidget) on the 2-D points X. Each E- or M-step button asks Python for the
step: your function computes it, the result is checked (shape, finite numbers, rows of resp
summing to 1, covariances symmetric and positive definite) and sent back to be drawn. So a wrong
M-step shows wrong ellipses and a log-likelihood trace that falls; an error in your function
shows as a message in the widget instead of a traceback. Without functions it runs gmmlib's
(`gmmlib.em.e_step`, `gmmlib.em.m_step`). The trace is always measured by gmmlib
(`gmmlib.em.log_likelihood`), never by the functions under test.

The signatures are the exercise's: ``e_step(X, weights, means, covariances) -> resp`` (N, K)
and ``m_step(X, resp) -> (weights, means, covariances)``, (K,), (K, 2), (K, 2, 2).

Needs the ``anywidget`` package (``pip install gmmlib[student]``); the JavaScript ships inside
the wheel (gmmlib/_explorer/), so it works offline. `StepDriver` is the message handling without
any widget, which the tests drive directly.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gmmlib import em
from gmmlib.datasets import collapse_init
from gmmlib.diagnostics import collapse_threshold, data_subspace
from gmmlib.mixture import GaussianMixture
from gmmlib.plotting import NEUTRAL, PALETTE, PALETTE_NAMES

__all__ = ["explore", "StepDriver", "StepError", "catalogue"]

ASSETS = Path(__file__).with_name("_explorer")
#: The explorer's K slider goes up to this, as on the book's page.
K_MAX = 8
#: Seeds offered (each is the start ``gmmlib.datasets.collapse_init(X, K, seed)``).
N_SEEDS = 20
#: How far the rows of resp may be from summing to 1, and weights from summing to 1.
SUM_TOL = 1e-6


class StepError(ValueError):
    """A step function raised, or returned something the explorer cannot draw."""


def _default_m_step(X, resp):
    return em.m_step(X, resp)


def _where(err: BaseException) -> str:
    """' (file.py, line 12)' for the innermost frame of an exception's traceback."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" ({Path(last.filename).name}, line {last.lineno})"


def _array(value, name: str, shape: tuple[int, ...], who: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise StepError(f"{who} returned {name} that is not an array of numbers: {err}") from None
    if a.shape != shape:
        raise StepError(
            f"{who} returned {name} of shape {a.shape}; expected {shape} ({_shape_words(name)})"
        )
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise StepError(
            f"{who} returned {name} with a non-finite value (nan or inf) at index "
            f"{tuple(int(i) for i in bad)}"
        )
    return a


def _shape_words(name: str) -> str:
    return {
        "resp": "N points x K components",
        "weights": "K components",
        "means": "K x D",
        "covariances": "K x D x D",
    }[name]


class StepDriver:
    """Answers the explorer's requests for E- and M-steps with the given functions.

    `handle` takes one message from the front end and returns the reply: for
    ``{"kind": "E", "weights", "means", "covs"}`` (the parameters, means flat 2K and covs the
    flat [a, b, d] of each 2x2 covariance) the responsibilities (flat N K) and gmmlib's
    ln p(X | parameters); for ``{"kind": "M", "resp"}`` the new parameters in the same layout.
    A message may carry ``"X"``, the points shown (flat 2N): the reader can add, move and
    remove points in the explorer, and the step is then computed on those; without it, on X.
    A failure (the function raises, or its result has a wrong shape, NaN, rows of resp not
    summing to 1, a covariance not symmetric positive definite) is the reply
    ``{"ok": False, "error": message}``.
    """

    def __init__(self, X, e_step: Callable | None = None, m_step: Callable | None = None):
        self.X = np.asarray(X, dtype=np.float64)
        self.e_step = e_step if e_step is not None else em.e_step
        self.m_step = m_step if m_step is not None else _default_m_step
        self.e_name = "gmmlib's e_step" if e_step is None else "your e_step"
        self.m_name = "gmmlib's m_step" if m_step is None else "your m_step"

    def handle(self, message: dict) -> dict:
        """The reply to one request (always a dict with the request's id and kind)."""
        reply = {"type": "step", "id": message.get("id"), "kind": message.get("kind")}
        try:
            if message.get("kind") == "E":
                reply.update(self.e(message))
            elif message.get("kind") == "M":
                reply.update(self.m(message))
            else:
                raise StepError(f"unknown request kind {message.get('kind')!r}")
        except StepError as err:
            return {**reply, "ok": False, "error": str(err)}
        return {**reply, "ok": True}

    def _points(self, message: dict) -> np.ndarray:
        """The points the step is for: the message's (edited by hand), else X."""
        if message.get("X") is None:
            return self.X
        X = np.asarray(message["X"], dtype=np.float64)
        if X.ndim != 1 or X.size % 2 or X.size < 2 or not np.all(np.isfinite(X)):
            raise StepError("the explorer sent points that are not a flat list of finite (x, y)")
        return X.reshape(-1, 2)

    def _parameters(self, message: dict):
        K = len(message["weights"])
        weights = np.asarray(message["weights"], dtype=np.float64)
        means = np.asarray(message["means"], dtype=np.float64).reshape(K, 2)
        abd = np.asarray(message["covs"], dtype=np.float64).reshape(K, 3)
        covariances = np.stack([abd[:, 0], abd[:, 1], abd[:, 1], abd[:, 2]], axis=1).reshape(
            K, 2, 2
        )
        return weights, means, covariances

    def e(self, message: dict) -> dict:
        """Call the E-step on the message's parameters; resp and gmmlib's ln p(X)."""
        weights, means, covariances = self._parameters(message)
        X = self._points(message)
        N, K = len(X), len(weights)
        try:
            resp = self.e_step(X, weights, means, covariances)
        except Exception as err:
            raise StepError(
                f"{self.e_name} raised {type(err).__name__}: {err}{_where(err)}"
            ) from None
        resp = _array(resp, "resp", (N, K), self.e_name)
        if np.any(resp < -SUM_TOL):
            i, k = np.argwhere(resp < -SUM_TOL)[0]
            raise StepError(f"{self.e_name} returned a negative responsibility resp[{i}, {k}]")
        sums = resp.sum(axis=1)
        off = np.abs(sums - 1)
        if np.any(off > SUM_TOL):
            i = int(np.argmax(off))
            raise StepError(
                f"{self.e_name} returned resp whose row {i} sums to {sums[i]:.6g}, not 1: each "
                "point's responsibilities must add up to 1"
            )
        try:
            ll = em.log_likelihood(X, weights, means, covariances)
        except (np.linalg.LinAlgError, ValueError):
            ll = None  # a covariance without a Cholesky factor: the trace shows a gap
        return {"resp": resp.ravel().tolist(), "log_likelihood": ll}

    def m(self, message: dict) -> dict:
        """Call the M-step on the message's responsibilities; the checked new parameters."""
        X = self._points(message)
        N, K = len(X), int(message["k"])
        resp = np.asarray(message["resp"], dtype=np.float64).reshape(N, K)
        try:
            result = self.m_step(X, resp)
        except Exception as err:
            raise StepError(
                f"{self.m_name} raised {type(err).__name__}: {err}{_where(err)}"
            ) from None
        if not isinstance(result, tuple | list) or len(result) != 3:
            raise StepError(
                f"{self.m_name} must return (weights, means, covariances), got "
                f"{type(result).__name__}"
                + (f" of length {len(result)}" if isinstance(result, tuple | list) else "")
            )
        weights = _array(result[0], "weights", (K,), self.m_name)
        means = _array(result[1], "means", (K, 2), self.m_name)
        covariances = _array(result[2], "covariances", (K, 2, 2), self.m_name)
        if np.any(weights < 0) or abs(weights.sum() - 1) > SUM_TOL:
            raise StepError(
                f"{self.m_name} returned weights summing to {weights.sum():.6g} (they must be "
                ">= 0 and sum to 1)"
            )
        for k, c in enumerate(covariances):
            if abs(c[0, 1] - c[1, 0]) > 1e-9 * max(abs(c).max(), 1e-300):
                raise StepError(f"{self.m_name} returned covariance {k} that is not symmetric")
            if not (c[0, 0] > 0 and c[0, 0] * c[1, 1] - c[0, 1] * c[1, 0] > 0):
                raise StepError(
                    f"{self.m_name} returned covariance {k} that is not positive definite "
                    f"(variances {c[0, 0]:.3g}, {c[1, 1]:.3g}, determinant "
                    f"{c[0, 0] * c[1, 1] - c[0, 1] * c[1, 0]:.3g})"
                )
        return {
            "weights": weights.tolist(),
            "means": means.ravel().tolist(),
            "covs": np.stack(
                [covariances[:, 0, 0], covariances[:, 0, 1], covariances[:, 1, 1]], axis=1
            )
            .ravel()
            .tolist(),
        }


def _start_indices(X: np.ndarray, K: int, seed: int) -> list[int]:
    """Row indices of the means `collapse_init(X, K, seed)` starts from (first equal row)."""
    _, means, _ = collapse_init(X, K, seed)
    return [int(np.flatnonzero((X == m).all(axis=1))[0]) for m in means]


def catalogue(X, *, title: str = "Your data", k: int = 3, seed: int = 0) -> dict:
    """What the explorer draws and runs with, in the format of the book's data.json: gmmlib's
    rule constants and palette, and X as the one data set with its seeds' starts."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"the explorer draws 2-D points: X must have shape (N, 2), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains nan or inf")
    if len(X) < 2:
        raise ValueError(f"the explorer needs at least 2 points, got {len(X)}")
    k_max = min(K_MAX, len(X))
    if not 1 <= k <= k_max:
        raise ValueError(f"k must be between 1 and {k_max}, got {k}")
    defaults = GaussianMixture().get_params()
    rules = {name: defaults[name] for name in ("tol", "max_iter", "reg_covar", "collapse_tol")}
    rules["nk_eps"] = float(em.NK_EPS)
    Q = data_subspace(X, collapse_threshold(X, rules["collapse_tol"]))
    starts = {
        str(K): [_start_indices(X, K, s) for s in range(N_SEEDS)] for K in range(1, k_max + 1)
    }
    return {
        "k_max": k_max,
        "n_seeds": N_SEEDS,
        "gmmlib": rules,
        "palette": [{"name": n, "hex": h} for n, h in zip(PALETTE_NAMES, PALETTE, strict=True)],
        "neutral": NEUTRAL,
        "datasets": {
            "yours": {
                "title": title,
                "axes": ["x₁", "x₂"],
                "k": k,
                "seed": seed,
                "X": X.tolist(),
                "subspace": None if Q is None else Q.T.tolist(),
                "starts": starts,
            }
        },
    }


@functools.cache
def _widget_class():
    """The anywidget class (built on first use: anywidget is an optional dependency)."""
    try:
        import anywidget
        import traitlets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "gmmlib.explore needs anywidget: pip install 'gmmlib[student]' (or pip install "
            "anywidget)"
        ) from err

    class ExplorerWidget(anywidget.AnyWidget):
        """The explorer; EM steps come from `driver` (a StepDriver) through custom messages."""

        _esm = ASSETS / "explorer.bundle.mjs"
        _css = ASSETS / "explorer.css"
        catalogue = traitlets.Dict().tag(sync=True)
        driver_names = traitlets.Dict().tag(sync=True)

        def __init__(self, driver: StepDriver, catalogue: dict, **kwargs):
            super().__init__(catalogue=catalogue, **kwargs)
            self.driver = driver
            self.driver_names = {"e": driver.e_name, "m": driver.m_name}
            self.on_msg(self._on_request)

        def _on_request(self, _widget, content, _buffers):
            if isinstance(content, dict) and content.get("type") == "step":
                self.send(self.driver.handle(content))

    return ExplorerWidget


def explore(
    X,
    e_step: Callable | None = None,
    m_step: Callable | None = None,
    *,
    k: int = 3,
    seed: int = 0,
    title: str = "Your data",
):
    """Show the EM explorer on the 2-D points X, its steps computed by your functions.

    ``e_step(X, weights, means, covariances) -> resp`` and ``m_step(X, resp) -> (weights,
    means, covariances)``; either left out is gmmlib's. ``k`` and ``seed`` are the first start
    (the widget's controls change them). Returns the widget (display it as a cell's last line).
    """
    cat = catalogue(X, title=title, k=k, seed=seed)
    return _widget_class()(StepDriver(X, e_step, m_step), cat)
