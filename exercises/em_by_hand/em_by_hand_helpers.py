"""The helpers of assignment 1's test cells: `notebook_helpers` (how your functions are called
and compared), plus what the tests of `fit_em` add: when one fails, which of your `e_step`,
`m_step` and `log_likelihood` to look at. You do not need to read or change this file; the
grader uses the course's copy, not yours.
"""

from notebook_helpers import *  # noqa: F403 - the test cells use them by name
from notebook_helpers import __all__ as _shared
from notebook_helpers import call_quietly, np

__all__ = [*_shared, "run_fit_em_test", "which_function"]


def which_function(X, K, namespace):
    """When a test of fit_em fails: which of your e_step, m_step, log_likelihood to look at.

    Each is checked on X against what the maths says (one-hot responsibilities for m_step, rows
    that sum to one for e_step, a single Gaussian at its best fit for log_likelihood).
    Returns a sentence, or "" when all three look right.
    """
    e_step, m_step = namespace.get("e_step"), namespace.get("m_step")
    log_likelihood = namespace.get("log_likelihood")
    N, D = X.shape
    labels = np.arange(N) % K
    data_cov = np.cov(X, rowvar=False, bias=True)
    try:
        weights, means, covariances = (
            np.asarray(a, dtype=float) for a in call_quietly(m_step, X, np.eye(K)[labels])
        )
        for k in range(K):
            own = X[labels == k]
            if not np.allclose(weights[k], len(own) / N):
                return f"look at your m_step: with one-hot resp, weights[{k}] is not N_k / N"
            if not np.allclose(means[k], own.mean(axis=0)):
                return (
                    f"look at your m_step: with one-hot resp, means[{k}] is not the average "
                    "of the points of component k"
                )
            if not np.allclose(covariances[k], np.cov(own, rowvar=False, bias=True)):
                return (
                    f"look at your m_step: with one-hot resp, covariances[{k}] is not the "
                    "covariance of the points of component k (centre on means[k], divide by "
                    "N_k = the sum of column k of resp, not by N)"
                )
    except NotImplementedError:
        return "your m_step is not written yet"
    except Exception as error:  # noqa: BLE001 - any error of the student's is the hint
        return f"look at your m_step: it raised {type(error).__name__}: {error}"
    try:
        start = (np.full(K, 1 / K), X[:K], np.repeat(data_cov[None], K, axis=0))
        resp = np.asarray(call_quietly(e_step, X, *start))
        if resp.shape != (N, K) or not np.allclose(resp.sum(axis=1), 1):
            return (
                "look at your e_step: on this data its responsibilities are not an (N, K) "
                "array whose rows sum to 1"
            )
    except NotImplementedError:
        return "your e_step is not written yet"
    except Exception as error:  # noqa: BLE001
        return f"look at your e_step: it raised {type(error).__name__}: {error}"
    try:
        # One Gaussian at its maximum-likelihood fit: ln p(X) = -N/2 (D ln 2 pi + ln|S| + D).
        value = call_quietly(log_likelihood, X, np.ones(1), X.mean(axis=0)[None], data_cov[None])
        expected = -0.5 * N * (D * np.log(2 * np.pi) + np.linalg.slogdet(data_cov)[1] + D)
        if not np.isclose(float(value), expected):
            return (
                f"look at your log_likelihood: one Gaussian at its best fit gives {value}, "
                f"expected {expected:.10g}"
            )
    except NotImplementedError:
        return "your log_likelihood is not written yet"
    except Exception as error:  # noqa: BLE001
        return f"look at your log_likelihood: it raised {type(error).__name__}: {error}"
    return ""


def run_fit_em_test(test, X, K, namespace):
    """Run a visible test of fit_em; if it fails, add which of your functions to look at
    (``namespace``: the notebook's, where your functions are: pass ``globals()``)."""
    try:
        test()
    except NotImplementedError:  # fit_em, or a function it calls, is still a stub
        hint = which_function(X, K, namespace) or "your fit_em is not written yet"
        raise NotImplementedError(hint) from None
    except (SyntaxError, TimeoutError):
        raise
    except Exception as error:  # noqa: BLE001
        message = (
            str(error)
            if isinstance(error, AssertionError)
            else f"fit_em raised {type(error).__name__}: {str(error)[:300]}"
        )
        hint = which_function(X, K, namespace)
        raise AssertionError(message + (f"\n{hint}" if hint else "")) from None
