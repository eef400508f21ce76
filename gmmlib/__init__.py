"""gmmlib: the reference EM implementation for Gaussian mixtures behind gmm-course.

- `gmmlib.em`: the maths as pure functions (`e_step`, `m_step`, `log_likelihood`).
- `gmmlib.mixture.GaussianMixture`: the estimator (scikit-learn's API, plus step-wise
  history and collapse reports).
- `gmmlib.datasets`, `gmmlib.init`, `gmmlib.prior`, `gmmlib.diagnostics`, `gmmlib.plotting`,
  `gmmlib.collapse` (the collapse experiment and its CLI).
"""

from gmmlib.diagnostics import CollapseError, CollapseReport, CollapseWarning
from gmmlib.em import e_step, log_likelihood, m_step
from gmmlib.mixture import GaussianMixture, History, Step
from gmmlib.prior import InverseWishartPrior
from gmmlib.validation import LAZY_CLASSES, check_parameters

__version__ = "0.1.0"

__all__ = [
    "GaussianMixture",
    "History",
    "Step",
    "CollapseError",
    "CollapseReport",
    "CollapseWarning",
    "ConvergenceWarning",
    "NotFittedError",
    "InverseWishartPrior",
    "e_step",
    "m_step",
    "log_likelihood",
    "check_parameters",
]


def __getattr__(name: str):
    # NotFittedError and ConvergenceWarning subclass scikit-learn's where it is installed, so
    # they are made on first use (`gmmlib.validation`): importing gmmlib never imports it.
    if name in LAZY_CLASSES:
        return LAZY_CLASSES[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
