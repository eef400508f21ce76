"""What every check is made of: `Case`, `Check`, `AssignmentSpec`; decoding the sandbox's plain
JSON, comparing numbers; and running a check (`call_plan` for the sandbox, `judge` here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Verdict = Callable[[object], "str | None"]  # decoded value -> failure message, or None if right


@dataclass
class Case:
    """Call ``name(*args, **kwargs)`` in the sandbox (or read variable ``name``), then judge."""

    name: str
    judge: Verdict
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    count: tuple = ()  # functions whose calls are counted during the call
    variable: bool = False
    judge_counts: Callable[[dict], str | None] | None = None
    #: The student's exception text -> why it happened (appended to the message), or None.
    explain_error: Callable[[str], str | None] | None = None


@dataclass
class Check:
    """The re-check of one autograded test cell."""

    grade_id: str
    depends: tuple  # answer cells (grade ids) whose code this test runs
    cases: list


@dataclass
class AssignmentSpec:
    checks: list
    blocked: tuple  # packages the student's code may not import


# ----------------------------------------------------------------------------------------------
# Decoding and comparing
# ----------------------------------------------------------------------------------------------


def decode(plain):
    """Plain JSON from the sandbox back to numpy arrays / lists / scalars."""
    if isinstance(plain, list):
        return [decode(v) for v in plain]
    if isinstance(plain, dict):
        if "__array__" in plain:
            if not plain["shape"]:  # a numpy scalar: back to the Python number
                return {"float": float, "int": int, "bool": bool}[plain["kind"]](plain["__array__"])
            arr = np.array(plain["__array__"], dtype=float if plain["kind"] == "float" else None)
            return arr.reshape(plain["shape"]) if arr.size else np.zeros(plain["shape"])
        if "__dict__" in plain:
            return {k: decode(v) for k, v in plain["__dict__"].items()}
        if "__repr__" in plain:
            return _Opaque(plain["__repr__"])
    return plain


class _Opaque:
    """A returned object that is not numbers (shown by its repr in messages)."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def as_array(value):
    """The value as a float array, or None if it is not numbers."""
    if isinstance(value, _Opaque):
        return None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr


def close(name, got, expected, where, rtol=1e-6, atol=1e-8, why=""):
    """None if ``got`` matches ``expected``; otherwise a message naming the first bad entry
    (and ``why``, when known: the classic mistake that gives ``got``)."""
    expected = np.asarray(expected, dtype=float)
    arr = as_array(got)
    if arr is None:
        return f"{where}: {name} is {got!r}, expected numbers of shape {expected.shape}"
    if arr.shape != expected.shape:
        return f"{where}: {name} has shape {arr.shape}, expected {expected.shape}"
    bad = ~np.isclose(arr, expected, rtol=rtol, atol=atol)
    if not bad.any():
        return None
    why = f": {why}" if why else ""
    if arr.ndim == 0:
        return f"{where}: {name} = {float(arr):.12g}, expected {float(expected):.12g}{why}"
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return (
        f"{where}: {name}{list(index)} = {arr[index]:.12g}, expected {expected[index]:.12g}"
        f" ({int(bad.sum())} of {bad.size} entries differ){why}"
    )


def first_failure(*messages):
    return next((m for m in messages if m), None)


def looks_float32(arr) -> bool:
    """Whether every entry of ``arr`` (decoded: float64) is a float32 number and some is not a
    small dyadic one: the student's function computed in float32 (the sandbox sends values, not
    dtypes). A float64 computation gives such an array by chance with probability ~2^-29 per
    entry."""
    arr = np.asarray(arr, dtype=float)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return False
    exact = np.all(finite.astype(np.float32).astype(float) == finite)
    return bool(exact and np.any(finite * 2**12 != np.round(finite * 2**12)))


def resp_judge(expected, where, non_finite, rtol=1e-6, sum_digits=15, hint=None) -> Verdict:
    """Every mixture's e_step judge: what is wrong with the responsibilities before comparing
    them with ``expected`` (N, K): the shape (transposed named), a NaN or inf (``non_finite``
    says how to avoid it), a negative entry (log-responsibilities), or a row not summing to 1
    (columns normalised, float32 named; ``hint(arr)`` appended when given)."""
    shape = expected.shape

    def judge(value):
        arr = as_array(value)
        if arr is None or arr.shape != shape:
            got = None if arr is None else arr.shape
            turned = " (transposed: one row per point, please)" if got == shape[::-1] else ""
            return f"{where}: e_step returned shape {got}, expected {shape} = (N, K){turned}"
        if not np.all(np.isfinite(arr)):
            return f"{where}: e_step returned {non_finite}"
        if np.any(arr < 0):
            return (
                f"{where}: e_step returned a negative responsibility ({arr.min():.10g}): return "
                "the probabilities exp(log resp), not their logarithms"
            )
        sums = arr.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1) > 1e-8)
        if bad.size:
            i = int(bad[0])
            extra = hint(arr) if hint is not None else ""
            if looks_float32(arr):
                extra += " (every entry is a float32 number: compute in float64, numpy's default)"
            elif shape[0] > 1 and np.allclose(arr.sum(axis=0), 1):
                extra += " (each column sums to 1: normalise over k, axis=1)"
            return (
                f"{where}: responsibilities of row {i} sum to {sums[i]:.{sum_digits}g} "
                f"(1 {sums[i] - 1:+.3g}), expected 1{extra}"
            )
        return close("resp", arr, expected, where, rtol=rtol)

    return judge


def ll_judge(expected, sum_of_logs, n, K, where, density, underflow, items, rtol=1e-6, atol=1e-8):
    """Every mixture's log_likelihood judge: one finite number equal to ``expected``; the two
    classic wrong totals named (``sum_of_logs``, the sum over i and k of ln(pi_k ``density``),
    and the mean over the ``n`` points, called ``items``); ``underflow`` says how to avoid a NaN
    or inf."""

    def judge(value):
        arr = as_array(value)
        if arr is None or arr.ndim != 0:
            shape = None if arr is None else arr.shape
            return f"{where}: log_likelihood returned shape {shape}, expected one number (a float)"
        got = float(arr)
        if not np.isfinite(got):
            return f"{where}: log_likelihood returned {got}: {underflow}"
        if K > 1 and np.isclose(got, sum_of_logs) and not np.isclose(got, expected):
            return (
                f"{where}: log_likelihood = {got:.12g} is the sum over i and k of ln(pi_k "
                f"{density}); ln p(x_i) is the log of the sum over k: expected {expected:.12g}"
            )
        if np.isclose(got, expected / n) and not np.isclose(got, expected):
            return (
                f"{where}: log_likelihood = {got:.12g} is the mean over the {items}; "
                f"expected the total {expected:.12g}"
            )
        return close("log_likelihood", got, expected, where, rtol=rtol, atol=atol)

    return judge


def case(name: str, make_judge, args: tuple, where: str, **options) -> Case:
    """A case calling ``name(*args)``, judged by ``make_judge(*args, where)``: the reference is
    computed from the very inputs the student's function gets."""
    return Case(name, make_judge(*args, where), args=args, **options)


def tuple_of(value, n, what, where):
    if not isinstance(value, list) or len(value) != n:
        return None, f"{where}: {what} should return {n} values, got {value!r:.120}"
    return value, None


# ----------------------------------------------------------------------------------------------
# Running a check: the re-check's sandbox calls, the grader judges (grading.recheck)
# ----------------------------------------------------------------------------------------------


def call_plan(check: Check) -> tuple[list, dict]:
    """The check's cases as one sandbox ``call`` step: (cases, {key: array}).

    The sandbox (`grading.sandbox._call`) calls ``case["name"]`` on the arrays named by the
    keys; literals travel as JSON.
    """
    arrays, cases = {}, []
    for i, case in enumerate(check.cases):
        args = []
        for j, arg in enumerate(case.args):
            if isinstance(arg, np.ndarray):
                key = f"{check.grade_id}__{i}__{j}"
                arrays[key] = arg.copy()
                args.append({"key": key})
            else:
                args.append({"literal": arg.item() if isinstance(arg, np.generic) else arg})
        cases.append(
            {
                "name": case.name,
                "args": args,
                "kwargs": case.kwargs,
                "count": list(case.count),
                "variable": case.variable,
            }
        )
    return cases, arrays


def _shape_text(args):
    shapes = [str(tuple(np.shape(a))) if isinstance(a, np.ndarray) else repr(a) for a in args]
    return ", ".join(shapes)


def _failed(status: str, message: str) -> dict:
    return {"passed": False, "status": status, "message": message}


def judge(check: Check, result: dict) -> dict:
    """The verdict on one check from the sandbox's result: {"passed", "status", "message"}."""
    if result.get("status") != "ok":
        status = result.get("status", "error")
        return _failed(status, f"{check.cases[0].name}: {result.get('error', status)}")
    try:
        for case, output in zip(check.cases, result["outputs"], strict=True):
            if "error" in output:
                why = case.explain_error(output["error"]) if case.explain_error else None
                raised = f"{case.name}({_shape_text(case.args)}) raised {output['error']}"
                return _failed("error", raised + (f": {why}" if why else ""))
            message = case.judge(decode(output["value"]))
            if message is None and case.judge_counts is not None:
                message = case.judge_counts(output.get("counts", {}))
            if message:
                return _failed("wrong", message)
    except Exception:  # noqa: BLE001 - the result comes from the student's process: any shape
        return _failed("crashed", f"{check.cases[0].name}: the step's result was unreadable")
    return {"passed": True, "status": "ok", "message": None}
