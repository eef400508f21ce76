"""What a fit went through: one `Step` per E- or M-step, and the `History` of a fit.

`GaussianMixture.steps` yields the steps one by one (to step through EM in a notebook) and
`GaussianMixture.history_` keeps the log-likelihood after every iteration (every step too, with
``keep_history=True``): the book and the explorer replay them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gmmlib.diagnostics import CollapseReport

__all__ = ["Step", "History"]


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
