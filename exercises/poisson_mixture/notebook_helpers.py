"""What the visible tests of the course's notebooks use to call your functions and say what is
wrong. It ships next to every assignment's notebook (the same file in each folder); you do not
need to read or change it, and the grader uses the course's copy, not yours.

- `call_quietly(function, *args)`: calls one of your functions with numpy's warnings silenced
  (a harmless warning costs nothing), under a time limit (a loop that never ends becomes a
  message, not a notebook that hangs), and checks that it left its inputs as they were.
- `assert_close(name, got, expected, where, why="")`: the first entry that differs, printed with
  enough digits to see the difference, and why the expected value is right.
- `assert_float64(function, what, value)`: float32 keeps about 7 digits; the tests need 15.
- After a cell fails with a SyntaxError, the functions it would define say so when a test calls
  them (instead of "not defined", or your previous version running unseen).
"""

import _thread
import inspect
import re
import signal
import sys
import threading
import warnings

import numpy as np

__all__ = [
    "TIME_LIMIT",
    "assert_close",
    "assert_float64",
    "assert_resp",
    "call_quietly",
    "name_the_mistake",
    "np",
]

#: Seconds of CPU time one call of your function may take in a visible test. The visible cases
#: are tiny (a few dozen points): a correct answer needs milliseconds.
TIME_LIMIT = 5.0
#: Seconds of wall clock, for a function that sleeps or waits instead of computing.
WALL_LIMIT = 60.0

_active = []  # the time limit in force, if any (calls inside a limited call are not limited again)


class _TimeLimit:
    """Raise TimeoutError in the running cell when ``what`` has used `TIME_LIMIT` s of CPU time
    (or `WALL_LIMIT` s): POSIX interval timers where there are, else a timer thread that
    interrupts the main thread (Windows)."""

    def __init__(self, what: str):
        self.what, self.fired, self.timer = what, False, None

    def message(self) -> str:
        return (
            f"{self.what} did not return within {TIME_LIMIT:g} s of CPU time (the visible cases "
            "take milliseconds): a loop that never ends? A loop must stop by itself, e.g. "
            "`for _ in range(n_iter):`, not `while True:` waiting for a change that never comes"
        )

    def _expire(self, signum=None, frame=None):
        if _active and _active[-1] is self and not self.fired:
            self.fired = True
            raise TimeoutError(self.message())

    def __enter__(self):
        if _active or threading.current_thread() is not threading.main_thread():
            return self
        _active.append(self)
        if hasattr(signal, "setitimer"):
            self.saved = {s: signal.signal(s, self._expire) for s in (signal.SIGPROF, signal.SIGALRM)}
            signal.setitimer(signal.ITIMER_PROF, TIME_LIMIT)
            signal.setitimer(signal.ITIMER_REAL, WALL_LIMIT)
        else:  # pragma: no cover - Windows
            self.timer = threading.Timer(TIME_LIMIT, self._interrupt)
            self.timer.daemon = True
            self.timer.start()
        return self

    def _interrupt(self):  # pragma: no cover - Windows
        self.fired = True
        _thread.interrupt_main()

    def __exit__(self, kind, error, traceback):
        if not _active or _active[-1] is not self:
            return False
        if self.timer is None:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)
            for number, handler in self.saved.items():
                signal.signal(number, handler)
        else:  # pragma: no cover - Windows
            self.timer.cancel()
        _active.pop()
        if kind is KeyboardInterrupt and self.fired:  # pragma: no cover - Windows
            raise TimeoutError(self.message()) from None
        return False


def _changed(before, after):
    """Where array ``after`` differs from its copy ``before``: (index, old, new) or None."""
    if not isinstance(after, np.ndarray) or after.shape != before.shape:
        return None
    same = before == after
    if after.dtype.kind in "fc":
        same |= np.isnan(before) & np.isnan(after)
    if np.all(same):
        return None
    index = tuple(int(i) for i in np.argwhere(~np.asarray(same))[0])
    return index, before[index], after[index]


def call_quietly(function, *args, **kwargs):
    """``function(*args, **kwargs)`` with numpy's warnings silenced, under a time limit, and
    an error if it changed one of its array arguments in place."""
    name = getattr(function, "__name__", "your function")
    try:
        params = list(inspect.signature(function).parameters)
    except (ValueError, TypeError):  # a builtin: no signature to read
        params = []
    named = [(params[i] if i < len(params) else f"argument {i + 1}", a) for i, a in enumerate(args)]
    named += list(kwargs.items())
    copies = [(n, a, a.copy()) for n, a in named if isinstance(a, np.ndarray)]
    with warnings.catch_warnings(), np.errstate(all="ignore"), _TimeLimit(name):
        warnings.simplefilter("ignore")
        result = function(*args, **kwargs)
    for param, array, before in copies:
        change = _changed(before, array)
        if change:
            index, old, new = change
            raise AssertionError(
                f"{name} changed its input {param} in place: {param}{list(index)} was "
                f"{old:.10g} before the call and is {new:.10g} after it. The caller's data must "
                f"stay as they were (fit_em passes the same {param} to every step): compute into "
                f"a new array (diff = X - means[k]) instead of writing into {param} "
                f"({param} -= ..., {param}[...] = ..., or a view of it)"
            )
    return result


def _number(value) -> str:
    return f"{value:.10g}" if np.isfinite(value) else str(value)


def assert_close(name, got, expected, where, why="", rtol=1e-6, atol=1e-8):
    """Fail with the first entry of ``got`` that differs from ``expected``: where it was
    computed, both numbers with enough digits to see the difference, and ``why``."""
    got, want = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    assert got.shape == want.shape, f"{where}: {name} has shape {got.shape}, expected {want.shape}"
    wrong = ~np.isclose(got, want, rtol=rtol, atol=atol)
    if wrong.any():
        index = tuple(int(j) for j in np.argwhere(wrong)[0])
        label = f"{name}{list(index)}" if got.ndim else name
        gap = abs(got[index] - want[index])
        raise AssertionError(
            f"{where}: {label} = {_number(got[index])}, expected {_number(want[index])}"
            + (f" (they differ by {gap:.3g})" if np.isfinite(gap) else "")
            + (f"; {int(wrong.sum())} of {wrong.size} entries differ" if wrong.size > 1 else "")
            + (f": {why}" if why else "")
        )


def assert_float64(function, what, value):
    """Fail unless ``value`` is a float64 array (or number), naming the dtype found."""
    dtype = np.asarray(value).dtype
    assert dtype == np.float64, (
        f"{function} returned {what} of dtype {dtype}, expected float64: float32 keeps about 7 "
        "significant digits, so rows sum to 1 only to about 1e-7 and every later step inherits "
        "the error; compute in float64 (numpy's default: no .astype(np.float32), no "
        "dtype=np.float32)"
    )


def name_the_mistake(got, mistakes, otherwise=""):
    """The explanation of the first known wrong answer that ``got`` equals (``mistakes``: {why:
    the value that mistake gives on this case}), else ``otherwise``."""
    got = np.asarray(got, dtype=float)
    for why, wrong in mistakes.items():
        wrong = np.asarray(wrong, dtype=float)
        if got.shape == wrong.shape and np.allclose(got, wrong, rtol=1e-6, atol=1e-8):
            return why
    return otherwise


def assert_resp(function, resp, N, K, where):
    """Responsibilities as the E-step must return them: an (N, K) float64 array of finite,
    non-negative numbers whose rows sum to 1; the message names the usual way each goes wrong."""
    got = np.asarray(resp)
    if got.shape == (K, N) and N != K:
        raise AssertionError(
            f"{where}: {function} returned shape {got.shape} = (K, N), expected ({N}, {K}) = "
            "(N, K): one row per point, one column per component (transposed?)"
        )
    assert got.shape == (N, K), (
        f"{where}: {function} returned shape {got.shape}, expected ({N}, {K}) = (N, K)"
    )
    assert_float64(function, "responsibilities", got)
    assert np.all(np.isfinite(got)), (
        f"{where}: {function} returned non-finite responsibilities {got.tolist()}: densities "
        "underflow to 0 far from the means (0/0 = NaN); normalise in log space (log-sum-exp)"
    )
    assert np.all(got >= 0), (
        f"{where}: {function} returned a negative responsibility ({got.min():.10g}): "
        "responsibilities are probabilities; return exp(log_resp), not the log"
    )
    sums = got.sum(axis=1)
    off = np.flatnonzero(abs(sums - 1) > 1e-8)
    if off.size:
        i = int(off[0])
        columns = N > 1 and np.allclose(got.sum(axis=0), 1)
        raise AssertionError(
            f"{where}: responsibilities of row {i} sum to {sums[i]:.15g} (1 {sums[i] - 1:+.3g}), "
            "expected 1: "
            + (
                "each COLUMN sums to 1; normalise each row (over the components k, axis=1)"
                if columns
                else "each point's responsibilities are a probability over k: divide by their "
                "sum over k"
            )
        )


# ==============================================================================================
# A cell that failed with a SyntaxError: its functions say so when a test calls them
# ==============================================================================================

_DEFINED = re.compile(r"^def\s+([A-Za-z_]\w*)\s*\(", re.M)


def _syntax_stub(name, error):
    line = (error.text or "").strip()
    where = f"line {error.lineno}" + (f" ({line})" if line else "")

    def stub(*args, **kwargs):
        raise SyntaxError(
            f"{name} is not defined: the cell that defines it has a syntax error at {where}: "
            f"{error.msg}. Fix it and run that cell again"
        )

    stub.__name__ = name
    return stub


def _after_cell(result):
    """IPython's post_run_cell hook: a cell that did not compile leaves stubs for its functions
    (which would otherwise be undefined, or silently an older version)."""
    error = getattr(result, "error_before_exec", None)
    if not isinstance(error, SyntaxError):
        return
    shell = _shell()
    for name in _DEFINED.findall(getattr(result.info, "raw_cell", "") or ""):
        shell.user_ns[name] = _syntax_stub(name, error)


def _shell():
    """The IPython shell running this code, or None (plain Python: nothing is imported)."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _watch_syntax_errors():
    shell = _shell()
    if shell is None:
        return
    callbacks = shell.events.callbacks["post_run_cell"]
    for callback in list(callbacks):  # one watcher, however often this module is (re)loaded
        if getattr(callback, "__name__", "") == "_after_cell" and callback.__module__ == __name__:
            shell.events.unregister("post_run_cell", callback)
    shell.events.register("post_run_cell", _after_cell)


_watch_syntax_errors()
