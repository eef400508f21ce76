"""The poisson_mixture assignment: its reference, its checks and its source notebook.

The reference (`grading.references.poisson`) is held to the definition (scipy.stats.poisson) and
to EM's properties; the checks (`grading.checks.poisson_mixture`) pass the notebook's model
answer and fail the classic mistakes with a message that names them; the notebook's visible
tests pass the model answer and catch the same mistakes before submission.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from scipy.stats import poisson

from grading.checks import judge
from grading.checks.poisson_mixture import ASSIGNMENT, poisson_mixture
from grading.course import SOLUTIONS, tool_env
from grading.references import poisson as reference
from grading.sandbox import _plain

NOTEBOOK = SOLUTIONS / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
sys.path.insert(0, str(NOTEBOOK.parent))  # the test cells' helper module, next to the notebook
SOLUTION = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$", re.M)


def _cells():
    return nbformat.read(NOTEBOOK, as_version=4).cells


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def model_answers() -> dict[str, str]:
    """{answer cell grade_id: the model answer's code}."""
    return {
        _grade_id(c): SOLUTION.sub("", c.source)
        for c in _cells()
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
    }


def namespace(answers: dict[str, str]) -> dict:
    """The helpers cell and ``answers`` run as a student's kernel would."""
    ns = {}
    helpers = next(c for c in _cells() if _grade_id(c) == f"{ASSIGNMENT}_helpers")
    exec(helpers.source, ns)
    for code in answers.values():
        exec(code, ns)
    return ns


def verdicts(ns: dict) -> dict[str, dict]:
    """Every check's verdict on the functions in ``ns``, called in this process the way the
    sandbox calls them (the returned values go through the sandbox's JSON encoding)."""
    out = {}
    for check in poisson_mixture().checks:
        outputs = []
        for case in check.cases:
            try:
                with np.errstate(all="ignore"):  # as the sandbox: a warning is not a verdict
                    value = ns[case.name](*[np.copy(a) for a in case.args])
                outputs.append({"value": json.loads(json.dumps(_plain(value, np)))})
            except Exception as error:  # noqa: BLE001 - the verdict names it
                outputs.append({"error": f"{type(error).__name__}: {error}"})
        out[check.grade_id] = judge(check, {"status": "ok", "outputs": outputs})
    return out


def test_the_reference_is_the_definition():
    rng = np.random.default_rng(1)
    X = rng.poisson(4.0, size=30).astype(float)
    weights, rates = np.array([0.2, 0.5, 0.3]), np.array([0.7, 4.0, 11.0])
    joint = weights * poisson.pmf(X[:, None], rates)
    np.testing.assert_allclose(
        reference.e_step(X, weights, rates), joint / joint.sum(1, keepdims=True)
    )
    assert np.isclose(reference.log_likelihood(X, weights, rates), np.log(joint.sum(1)).sum())


def test_the_reference_m_step_maximises_q_and_em_climbs():
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.poisson(1.5, 200), rng.poisson(9.0, 100)]).astype(float)
    resp = reference.e_step(X, np.array([0.5, 0.5]), np.array([1.0, 4.0]))

    def q(weights, rates):
        return float(np.sum(resp * reference.log_joint(X, weights, rates)))

    best = q(*reference.m_step(X, resp))
    for _ in range(50):  # no nearby parameters do better
        weights = rng.dirichlet([5.0, 5.0])
        rates = reference.m_step(X, resp)[1] * rng.uniform(0.9, 1.1, size=2)
        assert q(weights, rates) <= best + 1e-9
    lls = reference.fit(X, [1.0, 4.0], 30)[2]
    assert np.all(np.diff(lls) >= -1e-9), lls


def test_the_model_answer_passes_every_check():
    failed = {
        g: v["message"] for g, v in verdicts(namespace(model_answers())).items() if not v["passed"]
    }
    assert failed == {}


MISTAKES = {  # the answer cell replaced -> (the check that must fail, words its message must hold)
    "sum_of_logs": (
        "log_likelihood",
        """
def log_likelihood(X, weights, rates):
    X = np.asarray(X, dtype=float)[:, None]
    return float(np.sum(np.log(weights) + X * np.log(rates) - rates - gammaln(X + 1)))
""",
        "log of the sum over k",
    ),
    "rates_over_n": (
        "m_step",
        """
def m_step(X, resp):
    nk = resp.sum(axis=0)
    return nk / len(X), resp.T @ X / len(X)
""",
        "divided by N_k",
    ),
    "not_in_log_space": (
        "e_step",
        """
def e_step(X, weights, rates):
    X = np.asarray(X, dtype=float)[:, None]
    p = weights * np.exp(X * np.log(rates) - rates - gammaln(X + 1))
    return p / p.sum(axis=1, keepdims=True)
""",
        "log-sum-exp",
    ),
    "not_normalised": (
        "e_step",
        """
def e_step(X, weights, rates):
    X = np.asarray(X, dtype=float)[:, None]
    return np.exp(np.log(weights) + X * np.log(rates) - rates - gammaln(X + 1))
""",
        "not normalised",
    ),
    "mean_not_total": (
        "log_likelihood",
        """
def log_likelihood(X, weights, rates):
    X = np.asarray(X, dtype=float)[:, None]
    a = np.log(weights) + X * np.log(rates) - rates - gammaln(X + 1)
    return float(np.mean(logsumexp(a, axis=1)))
""",
        "the mean over the counts",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_classic_mistake_fails_its_check_and_says_why(mistake):
    part, code, words = MISTAKES[mistake]
    answers = model_answers() | {f"{ASSIGNMENT}_{part}": code}
    result = verdicts(namespace(answers))
    failed = {g for g, v in result.items() if not v["passed"]}
    assert failed == {f"{ASSIGNMENT}_{part}_tests"}, result
    assert words in result[f"{ASSIGNMENT}_{part}_tests"]["message"], result


def _run_visible(answers: dict[str, str]) -> dict[str, str | None]:
    """{test cell: None if its visible tests pass, else the error} with ``answers``."""
    ns = namespace(answers)
    out = {}
    for cell in _cells():
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            try:
                with np.errstate(all="ignore"):
                    exec(cell.source, ns)
                out[meta["grade_id"]] = None
            except Exception as error:  # noqa: BLE001 - the test's message is the point
                out[meta["grade_id"]] = f"{type(error).__name__}: {error}"
    return out


def test_the_visible_tests_pass_the_model_answer():
    assert _run_visible(model_answers()) == {
        f"{ASSIGNMENT}_{p}_tests": None for p in ("e_step", "m_step", "log_likelihood")
    }


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_the_visible_tests_catch_each_classic_mistake(mistake):
    part, code, _ = MISTAKES[mistake]
    result = _run_visible(model_answers() | {f"{ASSIGNMENT}_{part}": code})
    assert result[f"{ASSIGNMENT}_{part}_tests"] is not None, result
    assert (
        f"{part}" in result[f"{ASSIGNMENT}_{part}_tests"]
        or "resp" in result[f"{ASSIGNMENT}_{part}_tests"]
    ), result


def test_the_visible_e_step_test_names_a_float32_result():
    code = (
        model_answers()[f"{ASSIGNMENT}_e_step"]
        + "\n_e = e_step\ne_step = lambda *a: _e(*a).astype(np.float32)\n"
    )
    result = _run_visible(model_answers() | {f"{ASSIGNMENT}_e_step": code})
    assert "dtype float32" in result[f"{ASSIGNMENT}_e_step_tests"], result


def test_every_test_cell_has_a_check_and_the_derivation_is_graded_by_hand():
    cells = {_grade_id(c): c for c in _cells() if _grade_id(c)}
    tests = {
        g for g, c in cells.items() if c.metadata["nbgrader"]["grade"] and c.cell_type == "code"
    }
    assert tests == {c.grade_id for c in poisson_mixture().checks}
    for check in poisson_mixture().checks:
        assert all(d in cells for d in check.depends), check.depends
    written = cells[f"{ASSIGNMENT}_derivation"]
    assert written.cell_type == "markdown" and written.metadata["nbgrader"]["solution"]
    assert written.metadata["nbgrader"]["points"] > 0


@pytest.mark.slow
def test_nbgrader_releases_it_and_the_stubs_fail_every_visible_test(tmp_path):
    """nbgrader validates the source (model answers pass), generates the release (answers and
    the derivation replaced by stubs), and the release fails every test (validate --invert)."""
    source = tmp_path / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    shutil.copy(NOTEBOOK, source)
    env = tool_env()
    nbgrader = [sys.executable, "-m", "nbgrader"]
    root = f"--CourseDirectory.root={tmp_path}"
    release = tmp_path / "release" / ASSIGNMENT / NOTEBOOK.name
    steps = [
        nbgrader + ["validate", str(NOTEBOOK)],
        nbgrader + ["generate_assignment", ASSIGNMENT, root, "--force"],
        nbgrader + ["validate", "--invert", str(release)],
    ]
    for step in steps:
        done = subprocess.run(step, cwd=tmp_path, env=env, capture_output=True, text=True)
        said = done.stdout + done.stderr
        assert done.returncode == 0, f"{' '.join(step[2:])}:\n{said}"
        assert step[3] != "validate" or "Success!" in said, f"{' '.join(step[2:])}:\n{said}"
    cells = {_grade_id(c): c for c in nbformat.read(release, as_version=4).cells}
    assert cells[f"{ASSIGNMENT}_derivation"].source == "YOUR ANSWER HERE"
    assert "lambda_k = " not in json.dumps([c.source for c in cells.values()])
    assert "raise NotImplementedError()" in cells[f"{ASSIGNMENT}_e_step"].source
