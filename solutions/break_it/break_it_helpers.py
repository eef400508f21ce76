"""The helpers of assignment 2's test cells: `notebook_helpers` (how your functions are called
and compared), plus `call_run_em`, which turns a crash inside your loop into a test message. You
do not need to read or change this file; the grader uses the course's copy, not yours.
"""

from notebook_helpers import *  # noqa: F403 - the test cells use them by name
from notebook_helpers import __all__ as _shared
from notebook_helpers import call_quietly, np

__all__ = [*_shared, "call_run_em"]


def call_run_em(run_em, *args, **kwargs):
    """`call_quietly(run_em, ...)`; a linear-algebra error from inside the loop (gmmlib's
    `SingularCovarianceError`: "Cholesky failed") becomes a message saying what it means."""
    try:
        return call_quietly(run_em, *args, **kwargs)
    except np.linalg.LinAlgError as error:
        raise AssertionError(
            f"run_em raised {type(error).__name__} ({str(error)[:200]}): a collapsed covariance "
            "(not positive definite) reached a step that factorises it. After every M-step, "
            "check the NEW covariances with your collapsed(covariances, s2, reg_covar, "
            "collapse_tol); if one has collapsed, return the previous parameters and "
            "collapse = (t, k) before the next E-step or log_likelihood uses them"
        ) from None
