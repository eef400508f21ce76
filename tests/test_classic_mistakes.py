"""Classic mistakes, one at a time, in the model answers of the three assignments: each is
caught by the VISIBLE tests before submission, with a message naming the problem, or (marked
``hidden``) passes every visible test and is caught only by grading, for the reason given.

The table of these mistakes, with the reasons, is in docs/instructor-notes.md. The visible test
cells run here in-process (each mistake: the setup cell, the model answers with one replaced,
then the test cell, in a fresh namespace), which is what a kernel does with them;
`test_a_kernel_says_what_the_in_process_route_says` runs one notebook in a real kernel to show
the two agree (and that a SyntaxError is named, which needs IPython's hooks).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import warnings
from dataclasses import dataclass

import nbformat
import numpy as np
import pytest

from grading.checks import call_plan, judge
from grading.checks.break_it import break_it
from grading.checks.em_by_hand import em_by_hand
from grading.checks.poisson_mixture import poisson_mixture
from grading.course import SOLUTIONS
from grading.sandbox import _call

ASSIGNMENTS = ("em_by_hand", "break_it", "poisson_mixture")
sys.path[:0] = [str(SOLUTIONS / a) for a in ASSIGNMENTS]  # the helper modules, as in a kernel
import notebook_helpers  # noqa: E402 - found through the path above


@dataclass
class Mistake:
    assignment: str
    answer: str  # the answer cell's grade_id (without the assignment prefix)
    code: str  # the answer cell's new code
    test: str  # the test cell that must catch it (without the prefix)
    words: str  # what its message must say
    hidden: bool = False  # True: visible tests pass; only the hidden check catches it


E_STEP_HEAD = """
def e_step(X, weights, means, covariances):
    X = np.asarray(X, dtype=float)
    N, D = X.shape
    K = len(weights)
    log_joint = np.empty((N, K))
    for k in range(K):
        L = np.linalg.cholesky(covariances[k])
        z = np.linalg.solve(L, (X - means[k]).T)
        log_joint[:, k] = (np.log(weights[k]) - 0.5 * D * np.log(2 * np.pi)
                           - np.sum(np.log(np.diag(L))) - 0.5 * np.sum(z * z, axis=0))
    top = log_joint.max(axis=1, keepdims=True)
    log_resp = log_joint - top - np.log(np.sum(np.exp(log_joint - top), axis=1, keepdims=True))
"""

M_STEP = """
def m_step(X, resp):
    X = np.asarray(X, dtype=float)
    N, D = X.shape
    nk = resp.sum(axis=0)
    weights = {weights}
    means = {means}
    covariances = np.empty((len(nk), D, D))
    for k in range(len(nk)):
        diff = X - {centre}
        covariances[k] = ({weight} * diff).T @ diff / {divisor}
    return weights, means, covariances
"""
M_OK = {
    "weights": "nk / N",
    "means": "resp.T @ X / nk[:, None]",
    "centre": "means[k]",
    "weight": "resp[:, k, None]",
    "divisor": "nk[k]",
}


def m_step(**change):
    return M_STEP.format(**(M_OK | change))


LL = """
def log_likelihood(X, weights, means, covariances):
    X = np.asarray(X, dtype=float)
    N, D = X.shape
    log_joint = np.empty((N, len(weights)))
    for k in range(len(weights)):
        L = np.linalg.cholesky(covariances[k])
        z = np.linalg.solve(L, (X - means[k]).T)
        log_joint[:, k] = ({weight}np.log(weights[k]) - 0.5 * {D} * np.log(2 * np.pi)
                           - np.sum(np.log(np.diag(L))) - 0.5 * np.sum(z * z, axis=0))
    top = log_joint.max(axis=1)
    return {result}
"""
LL_OK = {
    "weight": "",
    "D": "D",
    "result": "float(np.sum(top + np.log(np.sum(np.exp(log_joint - top[:, None]), axis=1))))",
}


def ll(**change):
    return LL.format(**(LL_OK | change))


FIT = """
def fit_em(X, means_init, n_iter):
    X = np.asarray(X, dtype=float)
    means = np.array(means_init, dtype=float)
    K = len(means)
    weights = np.full(K, 1.0 / K)
    covariances = {start}
    log_likelihoods = [log_likelihood(X, weights, means, covariances)]
    {loop}
        resp = e_step(X, weights, means, covariances)
        weights, means, covariances = m_step(X, resp)
        log_likelihoods.append(log_likelihood(X, weights, means, covariances))
        {stop}
    return weights, means, covariances, log_likelihoods
"""
FIT_OK = {
    "start": "np.repeat(np.cov(X, rowvar=False, bias=True)[None], K, axis=0)",
    "loop": "for _ in range(n_iter):",
    "stop": "pass",
}


def fit(**change):
    return FIT.format(**(FIT_OK | change))


RUN_EM = """
def run_em(X, weights, means, covariances, n_iter, reg_covar=0.0, collapse_tol=1e-8):
    data_s2 = np.trace(np.cov(X, rowvar=False, bias=True)) / X.shape[1]
    log_likelihoods = [log_likelihood(X, weights, means, covariances)]
    for t in range(1, n_iter + 1):
        resp = e_step(X, weights, means, covariances)
        new_weights, new_means, new_covariances = m_step(X, resp, reg_covar=reg_covar)
        flags = {flags}
        if flags.any():
            return {returned}, log_likelihoods, (t, int(np.argmax(flags)))
        weights, means, covariances = new_weights, new_means, new_covariances
        log_likelihoods.append(log_likelihood(X, weights, means, covariances))
    return weights, means, covariances, log_likelihoods, None
"""
RUN_EM_OK = {
    "flags": "collapsed(new_covariances, data_s2, reg_covar, collapse_tol)",
    "returned": "weights, means, covariances",
}


def run_em(**change):
    return RUN_EM.format(**(RUN_EM_OK | change))


COLLAPSED = """
def collapsed(covariances, s2, reg_covar=0.0, collapse_tol=1e-8):
    covariances = np.asarray(covariances, dtype=float)
    finite = np.all(np.isfinite(covariances), axis=(1, 2))
    safe = np.where(finite[:, None, None], covariances, 0.0)
    smallest = np.linalg.eigvalsh(safe).{which}(axis=1) - {reg}
    return ~finite | (smallest <= collapse_tol * s2)
"""

PM_E = """
def e_step(X, weights, rates):
    X = np.asarray(X, dtype=float)[:, None]
    log_joint = np.log(weights) + X * np.log(rates) - rates - gammaln(X + 1)
    return {result}
"""

MISTAKES = {
    # --- em_by_hand, the E-step -----------------------------------------------------------
    "e_step_float32": Mistake(
        "em_by_hand",
        "e_step",
        E_STEP_HEAD + "    return np.exp(log_resp).astype(np.float32)",
        "e_step_tests",
        "dtype float32",
    ),
    "e_step_forgets_weights": Mistake(
        "em_by_hand",
        "e_step",
        E_STEP_HEAD.replace("np.log(weights[k]) - ", "") + "    return np.exp(log_resp)",
        "e_step_tests",
        "weights are left out",
    ),
    "e_step_normalises_columns": Mistake(
        "em_by_hand",
        "e_step",
        E_STEP_HEAD + "    p = np.exp(log_joint - log_joint.max())\n"
        "    return p / p.sum(axis=0, keepdims=True)",
        "e_step_tests",
        "each COLUMN sums to 1",
    ),
    "e_step_returns_log_resp": Mistake(
        "em_by_hand", "e_step", E_STEP_HEAD + "    return log_resp", "e_step_tests", "not the log"
    ),
    "e_step_transposed": Mistake(
        "em_by_hand",
        "e_step",
        E_STEP_HEAD + "    return np.exp(log_resp).T",
        "e_step_tests",
        "(K, N)",
    ),
    "e_step_not_normalised": Mistake(
        "em_by_hand",
        "e_step",
        E_STEP_HEAD + "    return np.exp(log_joint)",
        "e_step_tests",
        "divide by their sum over k",
    ),
    "e_step_without_log_sum_exp": Mistake(
        "em_by_hand",
        "e_step",
        E_STEP_HEAD + "    p = np.exp(log_joint)\n    return p / p.sum(axis=1, keepdims=True)",
        "e_step_stability",
        "log-sum-exp",
    ),
    "e_step_centres_X_in_place": Mistake(
        "em_by_hand",
        "e_step",
        E_STEP_HEAD.replace(
            "z = np.linalg.solve(L, (X - means[k]).T)",
            "X -= means[k]\n        z = np.linalg.solve(L, X.T)\n        X += means[k]",
        ).replace(
            "X = np.asarray(X, dtype=float)", "X = np.asarray(X, dtype=float)\n    X[...] = X"
        )
        + "    X[0] = X[0] + 0.0\n    X *= 1.0\n    X -= 0.5\n    return np.exp(log_resp)",
        "e_step_tests",
        "changed its input X in place",
    ),
    "e_step_uses_only_variances": Mistake(
        # The visible E-step cases are 1-D (checkable by hand): a diagonal covariance is the
        # whole covariance there. The hidden cases are 2-D to 5-D with correlations.
        "em_by_hand",
        "e_step",
        E_STEP_HEAD.replace(
            "np.linalg.cholesky(covariances[k])", "np.diag(np.sqrt(np.diag(covariances[k])))"
        )
        + "    return np.exp(log_resp)",
        "e_step_tests",
        "resp",
        hidden=True,
    ),
    # --- em_by_hand, the M-step -----------------------------------------------------------
    "m_step_covariances_over_N": Mistake(
        "em_by_hand",
        "m_step",
        m_step(divisor="N"),
        "m_step_covariances",
        "divided by N instead of nk[k]",
    ),
    "m_step_covariances_unweighted": Mistake(
        "em_by_hand",
        "m_step",
        m_step(weight="1.0"),
        "m_step_covariances",
        "weighted by resp[i, k] and divided by nk[k]",
    ),
    "m_step_covariances_unbiased": Mistake(
        "em_by_hand", "m_step", m_step(divisor="(nk[k] - 1)"), "m_step_covariances", "unbiased"
    ),
    "m_step_covariances_global_centre": Mistake(
        "em_by_hand",
        "m_step",
        m_step(centre="X.mean(axis=0)"),
        "m_step_covariances",
        "mean of all the data",
    ),
    "m_step_weights_are_nk": Mistake(
        "em_by_hand", "m_step", m_step(weights="nk"), "m_step_weights", "divide by N"
    ),
    "m_step_weights_integer_division": Mistake(
        "em_by_hand", "m_step", m_step(weights="nk // N"), "m_step_weights", "weights[0] = 0"
    ),
    "m_step_means_over_N": Mistake(
        "em_by_hand",
        "m_step",
        m_step(means="resp.T @ X / N"),
        "m_step_means",
        "divided by N instead of N_k",
    ),
    "m_step_centres_X_in_place": Mistake(
        "em_by_hand",
        "m_step",
        m_step(centre="0").replace("diff = X - 0", "X -= means[k]\n        diff = X"),
        "m_step_weights",
        "changed its input X in place",
    ),
    "m_step_covariances_diagonal": Mistake(
        # The visible hand case's covariance is diagonal (its points lie on a horizontal
        # line); the hidden cases are random 2-D and 3-D data with correlations.
        "em_by_hand",
        "m_step",
        m_step().replace(
            "return weights,", "covariances = covariances * np.eye(D)\n    return weights,"
        ),
        "m_step_covariances",
        "covariances",
        hidden=True,
    ),
    # --- em_by_hand, the log-likelihood -----------------------------------------------------
    "log_likelihood_sum_of_logs": Mistake(
        "em_by_hand",
        "log_likelihood",
        ll(result="float(np.sum(log_joint))"),
        "log_likelihood_tests",
        "sum over k of ln",
    ),
    "log_likelihood_mean": Mistake(
        "em_by_hand",
        "log_likelihood",
        ll(result="float(np.mean(top + np.log(np.sum(np.exp(log_joint - top[:, None]), 1))))"),
        "log_likelihood_tests",
        "not the mean",
    ),
    "log_likelihood_max_only": Mistake(
        "em_by_hand",
        "log_likelihood",
        ll(result="float(np.sum(top))"),
        "log_likelihood_tests",
        "largest term only",
    ),
    "log_likelihood_log_of_sum": Mistake(
        "em_by_hand",
        "log_likelihood",
        ll(result="float(np.sum(np.log(np.sum(np.exp(log_joint), axis=1))))"),
        "log_likelihood_stability",
        "use log-sum-exp",
    ),
    "log_likelihood_per_point": Mistake(
        "em_by_hand",
        "log_likelihood",
        ll(result="top + np.log(np.sum(np.exp(log_joint - top[:, None]), axis=1))"),
        "log_likelihood_tests",
        "expected one number",
    ),
    "log_likelihood_constant_without_D": Mistake(
        # Every visible log-likelihood case is 1-D, where D = 1 hides the missing factor (they
        # are worked by hand); the hidden cases are 2-D and 3-D.
        "em_by_hand",
        "log_likelihood",
        ll(D="1"),
        "log_likelihood_tests",
        "log_likelihood",
        hidden=True,
    ),
    # --- em_by_hand, the loop -------------------------------------------------------------
    "fit_em_stops_at_a_tolerance": Mistake(
        "em_by_hand",
        "fit_em",
        fit(stop="if abs(log_likelihoods[-1] - log_likelihoods[-2]) < 1e-6:\n            break"),
        "fit_em_tests",
        "no early stop",
    ),
    "fit_em_while_true": Mistake(
        "em_by_hand",
        "fit_em",
        fit(loop="while True:"),
        "fit_em_tests",
        "fit_em did not return within",
    ),
    "fit_em_history_without_start": Mistake(
        "em_by_hand",
        "fit_em",
        fit().replace(
            "log_likelihoods = [log_likelihood(X, weights, means, covariances)]",
            "log_likelihoods = []",
        ),
        "fit_em_tests",
        "expected 4",
    ),
    "fit_em_starts_from_identity": Mistake(
        # The visible tests check shapes, the history's length and that it never goes down:
        # EM from identity covariances does all that. The hidden tests compare the run with
        # gmmlib's from the start the task states (the data covariance).
        "em_by_hand",
        "fit_em",
        fit(start="np.repeat(np.eye(X.shape[1])[None], K, axis=0)"),
        "fit_em_tests",
        "fit_em",
        hidden=True,
    ),
    # --- break_it -------------------------------------------------------------------------
    "run_em_without_the_collapse_check": Mistake(
        "break_it",
        "run_em",
        run_em(flags="np.zeros(len(weights), dtype=bool)"),
        "run_em_tests",
        "a collapsed covariance (not positive definite) reached",
    ),
    "run_em_keeps_the_collapsed_parameters": Mistake(
        "break_it",
        "run_em",
        run_em(returned="new_weights, new_means, new_covariances"),
        "run_em_tests",
        "the last accepted parameters",
    ),
    "collapsed_largest_eigenvalue": Mistake(
        "break_it",
        "collapsed",
        COLLAPSED.format(which="max", reg="reg_covar"),
        "collapsed_tests",
        "expected [False, True, True]",
    ),
    "collapsed_ignores_reg_covar": Mistake(
        "break_it",
        "collapsed",
        COLLAPSED.format(which="min", reg="0.0"),
        "collapsed_tests",
        "subtract reg_covar",
    ),
    "fix_with_reg_covar": Mistake(
        "break_it",
        "fix",
        """
def fit_without_collapse(X, weights, means, covariances, n_iter):
    log_likelihoods = [log_likelihood(X, weights, means, covariances)]
    for _ in range(n_iter):
        weights, means, covariances = m_step(X, e_step(X, weights, means, covariances),
                                             reg_covar=0.05)
        log_likelihoods.append(log_likelihood(X, weights, means, covariances))
    return weights, means, covariances, log_likelihoods
""",
        "fix_tests",
        "reg_covar",
    ),
    # --- poisson_mixture ------------------------------------------------------------------
    "poisson_e_step_float32": Mistake(
        "poisson_mixture",
        "e_step",
        PM_E.format(
            result="np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))"
            ".astype(np.float32)"
        ),
        "e_step_tests",
        "dtype float32",
    ),
    "poisson_e_step_not_in_log_space": Mistake(
        "poisson_mixture",
        "e_step",
        PM_E.format(result="np.exp(log_joint) / np.exp(log_joint).sum(axis=1, keepdims=True)"),
        "e_step_tests",
        "log-sum-exp",
    ),
    "poisson_rates_over_N": Mistake(
        "poisson_mixture",
        "m_step",
        "\ndef m_step(X, resp):\n    nk = resp.sum(axis=0)\n"
        "    return nk / len(X), resp.T @ X / len(X)\n",
        "m_step_tests",
        "rates",
    ),
    "poisson_sum_of_logs": Mistake(
        "poisson_mixture",
        "log_likelihood",
        "\ndef log_likelihood(X, weights, rates):\n    X = np.asarray(X, dtype=float)[:, None]\n"
        "    return float(np.sum(np.log(weights) + X * np.log(rates) - rates - gammaln(X + 1)))\n",
        "log_likelihood_tests",
        "not the sum over k of logs",
    ),
}

SOLUTION = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$", re.M)


def _cells(assignment):
    return nbformat.read(SOLUTIONS / assignment / f"{assignment}.ipynb", as_version=4).cells


def _gid(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def namespace(assignment, answers):
    """The course cells and the answers (model answers, with ``answers`` replacing some), run
    in notebook order in a fresh namespace, as a kernel would: test cells are not run."""
    ns = {"__name__": "__main__"}
    for cell in _cells(assignment):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("grade") or _gid(cell).endswith("_summary"):
            continue
        short = _gid(cell).removeprefix(assignment + "_")
        source = answers.get(short, SOLUTION.sub("", cell.source))
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                exec(compile(source, _gid(cell) or "<cell>", "exec"), ns)
            except Exception:  # noqa: BLE001 - as in a kernel: the next cells still run
                if not meta.get("solution"):
                    raise  # a course cell must never fail
    return ns


def visible(assignment, answers, test) -> str | None:
    """The visible test cell ``test`` run on those answers: None if it passes, else its error."""
    ns = namespace(assignment, answers)
    cell = next(c for c in _cells(assignment) if _gid(c) == f"{assignment}_{test}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(cell.source, _gid(cell), "exec"), ns)
    except Exception as error:  # noqa: BLE001 - the message is what is tested
        return f"{type(error).__name__}: {error}"
    return None


SPECS = {"em_by_hand": em_by_hand, "break_it": break_it, "poisson_mixture": poisson_mixture}


def hidden(assignment, answers, test=None) -> dict:
    """The hidden check ``test``'s verdict on those answers, called as the sandbox calls
    (every check's, {grade_id: verdict}, when ``test`` is None)."""
    ns = namespace(assignment, answers)
    verdicts = {}
    for check in SPECS[assignment]().checks:
        if test is not None and check.grade_id != f"{assignment}_{test}":
            continue
        cases, arrays = call_plan(check)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            outputs = [json.loads(json.dumps(_call(ns, c, arrays, np))) for c in cases]
        verdicts[check.grade_id] = judge(check, {"status": "ok", "outputs": outputs})
    return verdicts[f"{assignment}_{test}"] if test is not None else verdicts


@pytest.fixture(autouse=True)
def _short_time_limit(monkeypatch):
    """A loop that never ends is stopped after 0.3 s of CPU time here, not 5 (the same path)."""
    monkeypatch.setattr(notebook_helpers, "TIME_LIMIT", 0.3)


def test_there_are_at_least_25_across_the_three_assignments():
    assert len(MISTAKES) >= 25
    assert {m.assignment for m in MISTAKES.values()} == set(ASSIGNMENTS)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_model_answers_pass_every_visible_test(assignment):
    tests = [
        _gid(c).removeprefix(assignment + "_")
        for c in _cells(assignment)
        if c.cell_type == "code"
        and c.metadata.get("nbgrader", {}).get("grade")
        and not c.metadata["nbgrader"].get("solution")
    ]
    assert tests
    assert {t: visible(assignment, {}, t) for t in tests} == {t: None for t in tests}


@pytest.mark.parametrize("name", [n for n, m in MISTAKES.items() if not m.hidden])
def test_the_visible_tests_catch_it_and_name_it(name):
    mistake = MISTAKES[name]
    error = visible(mistake.assignment, {mistake.answer: mistake.code}, mistake.test)
    assert error is not None, f"{name}: the visible test {mistake.test} passes"
    assert mistake.words in error, error


@pytest.mark.parametrize("name", [n for n, m in MISTAKES.items() if m.hidden])
def test_only_grading_catches_it_and_why(name):
    """These pass every visible test (the reason is in the mistake's comment and in
    docs/instructor-notes.md) and fail the hidden check."""
    mistake = MISTAKES[name]
    answers = {mistake.answer: mistake.code}
    assert visible(mistake.assignment, answers, mistake.test) is None
    verdict = hidden(mistake.assignment, answers, mistake.test)
    assert not verdict["passed"] and mistake.words in verdict["message"], verdict


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if m.assignment == "break_it" else n
        for n, m in MISTAKES.items()
        if not m.hidden and "did not return" not in m.words
    ],
)
def test_grading_never_passes_what_the_visible_tests_catch(name):
    """The visible tests are among the spec's cases: a mistake they catch also fails a hidden
    check (the one of the same test cell, or, for a change of the caller's data, the loop's).
    (A loop that never ends is left out: the re-check stops it by its CPU-time limit,
    `grading.recheck.STEP_TIMEOUT`; in this process nothing would.)"""
    mistake = MISTAKES[name]
    verdicts = hidden(mistake.assignment, {mistake.answer: mistake.code})
    failed = {
        g.removeprefix(mistake.assignment + "_") for g, v in verdicts.items() if not v["passed"]
    }
    assert failed, f"{name}: every hidden check passes"
    in_place = "in place" in mistake.words
    assert in_place or mistake.test in failed, (name, failed)


def test_every_assignment_ships_the_same_notebook_helpers():
    """notebook_helpers.py is one file (solutions/shared/), linked from each assignment's
    source folder and copied, as a plain file, into each release folder."""
    one = SOLUTIONS / "shared" / "notebook_helpers.py"
    for a in ASSIGNMENTS:
        assert (SOLUTIONS / a / "notebook_helpers.py").resolve() == one.resolve(), a
        shipped = SOLUTIONS.parent / "exercises" / a / "notebook_helpers.py"
        assert not shipped.is_symlink() and shipped.read_text() == one.read_text(), a


def test_instructor_notes_list_every_mistake():
    notes = (SOLUTIONS.parent / "docs" / "instructor-notes.md").read_text()
    missing = [name for name in MISTAKES if f"`{name}`" not in notes]
    assert not missing, missing


@pytest.mark.slow
def test_a_kernel_says_what_the_in_process_route_says(tmp_path, monkeypatch):
    """em_by_hand in a real kernel (from its folder, as a student opens it), with two mistakes:
    a SyntaxError in the e_step cell and the log-likelihood as a sum over k of logs. The test
    cell of log_likelihood fails with the in-process route's message, and the summary cell
    names the syntax error instead of "not defined"."""
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "no-specs"))  # this Python's kernel
    folder = SOLUTIONS / "em_by_hand"
    nb = nbformat.read(folder / "em_by_hand.ipynb", as_version=4)
    mistake = MISTAKES["log_likelihood_sum_of_logs"]
    for cell in nb.cells:
        if _gid(cell) == "em_by_hand_e_step":
            cell.source = "def e_step(X, weights, means, covariances):\n    return (\n"
        if _gid(cell) == "em_by_hand_log_likelihood":
            cell.source = mistake.code
    NotebookClient(
        nb, timeout=300, allow_errors=True, resources={"metadata": {"path": folder}}
    ).execute()
    by_id = {_gid(c): c for c in nb.cells}
    errors = [
        o for o in by_id["em_by_hand_log_likelihood_tests"].outputs if o.output_type == "error"
    ]
    expected = visible("em_by_hand", {mistake.answer: mistake.code}, mistake.test)
    assert errors and f"{errors[0].ename}: {errors[0].evalue}" == expected
    summary = "".join(o.get("text", "") for o in by_id["em_by_hand_visible_tests_summary"].outputs)
    said = (
        "FAIL  e_step_tests (3 points at stake): SyntaxError: e_step is not defined: the cell "
        "that defines it has a syntax error"
    )
    assert said in summary, summary
    assert "pass  m_step_covariances" in summary, summary
