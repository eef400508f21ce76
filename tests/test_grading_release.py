"""The nbgrader source (solutions/) and its committed release (exercises/)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import fixture_students
import nbformat
import numpy as np
import pytest

from grading.checks import SPECS
from grading.course import ASSIGNMENTS, EXERCISES, SOLUTIONS, tool_env

ROOT = Path(__file__).resolve().parents[1]
# The test cells' helper modules sit next to each notebook: cells run here import them.
sys.path[:0] = [str(SOLUTIONS / a) for a in ASSIGNMENTS]
BLOCK = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)(.*?)### END \1", re.S)


def _read(folder, assignment):
    return nbformat.read(folder / assignment / ASSIGNMENTS[assignment], as_version=4)


@pytest.mark.slow
def test_committed_release_is_what_nbgrader_generates(release_check):
    """`python -m grading.release --check` passes (conftest.py `release_check`: run once per
    test run, the instructor's way, also read by tests/test_instructor_setup.py)."""
    assert release_check["returncode"] == 0, (
        "exercises/ differs from `nbgrader generate_assignment` of solutions/ "
        "(run `python -m grading.release`):\n"
        f"{release_check['stdout']}\n{release_check['stderr'][-2000:]}"
    )


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_no_solution_or_hidden_test_leaks_into_the_release(assignment):
    source = _read(SOLUTIONS, assignment)
    release_text = (EXERCISES / assignment / ASSIGNMENTS[assignment]).read_text()
    release = _read(EXERCISES, assignment)
    everything = "\n".join(c.source for c in release.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "Model answer"):
        assert marker not in release_text, f"{assignment}: release contains {marker!r}"
    secret = []
    for cell in source.cells:
        for _, block in BLOCK.findall(cell.source):
            secret += [
                " ".join(line.split()) for line in block.splitlines() if len(line.strip()) >= 25
            ]
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution"):
            secret.append(" ".join(cell.source.split())[:80])  # the model answer
    flat = " ".join(everything.split())
    public = " ".join(
        " ".join(BLOCK.sub("", c.source).split())
        for c in source.cells
        if not (c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution"))
    )
    secret = [line for line in secret if line not in public]  # also outside the blocks
    assert len(secret) > 10  # enough source-only lines for the test to mean something
    leaked = [line for line in secret if line in flat]
    assert not leaked, f"{assignment}: release contains source-only lines: {leaked[:3]}"


@pytest.mark.slow
def test_nbgrader_validate_solutions_pass_and_stubs_fail():
    nbgrader = [sys.executable, "-m", "nbgrader", "validate"]
    sources = [str(SOLUTIONS / a / nb) for a, nb in ASSIGNMENTS.items()]
    releases = [str(EXERCISES / a / nb) for a, nb in ASSIGNMENTS.items()]
    ok = subprocess.run(
        nbgrader + sources, cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=300
    )
    assert ok.returncode == 0 and "Success!" in ok.stdout and "failed" not in ok.stdout, (
        f"a source notebook fails its own tests:\n{ok.stdout[-3000:]}"
    )
    inverted = subprocess.run(
        nbgrader + ["--invert"] + releases,
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert inverted.returncode == 0 and inverted.stdout.count("Success!") == len(releases), (
        f"a release stub passes a test cell:\n{inverted.stdout[-3000:]}"
    )


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_every_autograded_cell_has_an_out_of_kernel_recheck(assignment):
    source = _read(SOLUTIONS, assignment)
    test_cells = {
        c.metadata["nbgrader"]["grade_id"]
        for c in source.cells
        if c.metadata.get("nbgrader", {}).get("grade")
        and not c.metadata["nbgrader"].get("solution")
    }
    answers = {
        c.metadata["nbgrader"]["grade_id"]
        for c in source.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    checks = SPECS[assignment]().checks
    assert {c.grade_id for c in checks} == test_cells, (
        f"{assignment}: test cells without a re-check (or re-checks without a cell): "
        f"{sorted({c.grade_id for c in checks} ^ test_cells)}"
    )
    for check in checks:
        assert set(check.depends) <= answers, f"{check.grade_id} depends on unknown cells"


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_each_test_cell_builds_its_own_inputs(assignment):
    """No test cell reads a variable set by an answer cell's output (no cascades)."""
    source = _read(SOLUTIONS, assignment)
    calls_code = {
        c.grade_id for c in SPECS[assignment]().checks if any(not case.variable for case in c.cases)
    }
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") in calls_code:
            # every function's result is recomputed from inputs the cell defines
            assert "call_quietly(" in cell.source, (
                f"{meta['grade_id']}: call the student's code through call_quietly so a "
                "harmless warning never zeroes the cell"
            )


# ------------------------------------------------------------------------------------------
# One specification per graded part: the hidden tests are generated from grading/checks/
# ------------------------------------------------------------------------------------------


def test_hidden_tests_are_what_the_checks_generate():
    """The stored source notebooks' generated cells (every hidden-test block, the summary cell)
    are exactly what `python -m grading.release` writes from grading/checks/: nothing is
    written here, the stored and the generated text are compared."""
    from grading.release import write_generated

    stale = write_generated(check=True)
    assert stale == [], f"run `python -m grading.release`: {stale} differ from grading/checks/"


def test_a_hand_edited_hidden_test_is_caught():
    """Editing a hidden block in the notebook (not grading/checks/) makes the notebook stale."""
    from grading.release import generated

    text = (SOLUTIONS / "break_it" / ASSIGNMENTS["break_it"]).read_text()
    nb = nbformat.reads(text, as_version=4)
    cell = next(c for c in nb.cells if "### BEGIN HIDDEN TESTS" in c.source)
    cell.source = cell.source.replace("### END HIDDEN TESTS", "assert True\n### END HIDDEN TESTS")
    assert nbformat.writes(generated(nb, "break_it")) + "\n" == text


def _run_cells(nb, skip_tests=True):
    """Execute a notebook's answer and course cells in one namespace, as a kernel would."""
    import contextlib
    import io
    import warnings

    namespace = {"__name__": "__main__"}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or (skip_tests and meta.get("grade")):
            continue
        if meta.get("grade_id", "").endswith("_visible_tests_summary"):
            continue
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                exec(compile(cell.source, "<cell>", "exec"), namespace)
            except Exception:  # noqa: BLE001 - a stub's NotImplementedError, as in a kernel
                pass
    return namespace


#: Fixture students whose parts pass and fail in every way the tests can tell apart.
AGREEMENT = {
    "em_by_hand": (
        "reference",
        "valid_style_while",
        "bug_naive_exp",
        "bug_cov_divide_by_n",
        "bug_history_without_start",
    ),
    "break_it": (
        "reference",
        "valid_style_while",
        "bug_collapse_largest_eigenvalue",
        "bug_keeps_collapsed_params",
        "bug_fix_reg_covar",
        "bug_fix_by_hand",
    ),
}


@pytest.mark.parametrize(
    "assignment",
    ["em_by_hand", pytest.param("break_it", marks=pytest.mark.slow)],  # break_it: ~25 s
)
def test_the_recheck_judges_as_the_spec_does_in_process(tmp_path, assignment):
    """For each fixture student and each test cell, the spec's checks run in this process on
    the student's functions (the cells executed here) and the sandboxed re-check give the same
    verdict: the sandbox only calls, the judging is the spec's."""
    import json
    import warnings

    from grading.checks import call_plan, judge
    from grading.recheck import recheck_notebook
    from grading.sandbox import _call

    fixtures = fixture_students.load()
    table = fixtures.students()
    seen = set()
    for student in AGREEMENT[assignment]:
        nb = fixtures.build_notebook(assignment, table[student][1])
        namespace = _run_cells(nb)
        here = {}
        for check in SPECS[assignment]().checks:
            cases, arrays = call_plan(check)
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                outputs = [json.loads(json.dumps(_call(namespace, c, arrays, np))) for c in cases]
            here[check.grade_id] = judge(check, {"status": "ok", "outputs": outputs})["passed"]
        path = tmp_path / student / ASSIGNMENTS[assignment]
        path.parent.mkdir()
        nbformat.write(nb, path)
        source_path = SOLUTIONS / assignment / ASSIGNMENTS[assignment]
        work = tmp_path / "w" / student
        verdicts = recheck_notebook(path, source_path, assignment, work)["verdicts"]
        recheck = {gid: v["passed"] for gid, v in verdicts.items()}
        assert here == recheck, f"{student}: in process {here} vs re-check {recheck}"
        seen |= {(gid, passed) for gid, passed in here.items()}
    # the students exercise both outcomes of most parts (else the comparison proves little)
    assert len({gid for gid, passed in seen if not passed}) >= 3, seen


def test_the_summary_cell_lists_every_visible_test(capsys):
    """The release's last cell runs every visible test, each on its own, never raises, and says
    which pass and the points at stake; the re-check does not run it."""
    from grading.layout import summary_cell_id
    from grading.recheck import notebook_steps

    fixtures = fixture_students.load()
    for assignment, answers, failing in [
        ("em_by_hand", {}, set()),
        ("break_it", {}, set()),
        (
            "em_by_hand",
            fixtures.BUGS["bug_cov_divide_by_n"][1],
            {"m_step_covariances", "fit_em_tests", "fit_em_monotone"},  # as the hidden
        ),
        ("break_it", fixtures.BUGS["bug_fix_reg_covar"][1], {"fix_tests"}),
    ]:
        nb = fixtures.build_notebook(assignment, answers)
        summary = nb.cells[-1]
        assert summary.metadata["nbgrader"]["grade_id"] == summary_cell_id(assignment)
        assert not summary.metadata["nbgrader"]["grade"]
        namespace = _run_cells(nb)
        capsys.readouterr()
        exec(compile(summary.source, "<summary>", "exec"), namespace)
        out = capsys.readouterr().out
        points = {
            c.metadata["nbgrader"]["grade_id"].removeprefix(assignment + "_"): c.metadata[
                "nbgrader"
            ]["points"]
            for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
        }
        for name, p in points.items():
            unit = "point" if p == 1 else "points"
            if name in failing:
                assert f"FAIL  {name} ({p:g} {unit} at stake)" in out, out
            else:
                assert f"pass  {name} ({p:g} {unit})" in out, out
        lost = sum(points[n] for n in failing)
        total = sum(points.values())
        assert f"Visible tests pass for {total - lost:g} of {total:g}" in out, out
        source = _read(SOLUTIONS, assignment)
        names = [step["name"] for step in notebook_steps(nb, source)]
        assert summary_cell_id(assignment) not in names


@pytest.mark.parametrize("assignment", list(ASSIGNMENTS))
def test_the_summary_cell_says_what_is_not_answered_yet(assignment, capsys):
    """Run on the notebook as handed out, every line of the summary says "not answered yet",
    never a NotImplementedError, a "got None" or a failure of another function."""
    nb = fixture_students.load().build_notebook(assignment, None)
    namespace = _run_cells(nb)
    capsys.readouterr()
    exec(compile(nb.cells[-1].source, "<summary>", "exec"), namespace)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(lines) == len([c for c in tests if c.cell_type == "code"])
    for line in lines:
        assert line.split(": ", 1)[1].startswith("not answered yet"), line


def test_break_it_model_answer_follows_gmmlibs_collapse_rule():
    """On the collapse recipe (K=4, reg_covar=1e-3, 60 iterations, seeds 0-29) the model
    answer's `run_em` (with its `collapsed`) and gmmlib's estimator stop at the same iteration
    and component, or both run to the end (issue 12: before the rule subtracted reg_covar they
    disagreed on 18 of 30 seeds).

    The decisions are compared exactly, so each must sit clear of the threshold: the smallest
    eigenvalue minus reg_covar is known to about eps * lambda_max ~ 1e-15, i.e. 5e-8 of the
    threshold collapse_tol * s2 = 2.4e-8; every decision is at least 5% away from it.
    """
    import warnings

    from gmmlib.collapse.experiment import trace_em
    from gmmlib.datasets import collapse_data, collapse_init

    fixtures = fixture_students.load()
    source = _read(SOLUTIONS, "break_it")
    namespace = {"__name__": "__main__"}
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") in ("break_it_setup", "break_it_collapsed", "break_it_run_em"):
            exec(fixtures.solution_text(cell.source), namespace)
    X = collapse_data()
    threshold = 1e-8 * namespace["s2"]
    stops = 0
    for seed in range(30):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mine = namespace["run_em"](X, *collapse_init(X, 4, seed), 60, reg_covar=1e-3)
            theirs = trace_em(X, 4, seed, reg_covar=1e-3, max_iter=60, tol=0.0)
        report = theirs["collapse"]
        expected = None if report is None else (report["iteration"], report["component"])
        assert mine[4] == expected, f"seed {seed}: model answer {mine[4]}, gmmlib {expected}"
        stops += expected is not None
        # the margin of every decision the model answer took
        w, mu, cov = collapse_init(X, 4, seed)
        for t in range(1, len(mine[3]) + (mine[4] is not None)):
            w, mu, cov = namespace["m_step"](X, namespace["e_step"](X, w, mu, cov), reg_covar=1e-3)
            ratio = (np.linalg.eigvalsh(cov)[:, 0] - 1e-3) / threshold
            assert np.all(np.abs(ratio - 1) > 0.05), f"seed {seed}, iteration {t}: {ratio}"
    assert 10 <= stops <= 25, f"{stops} of 30 seeds collapse: the recipe no longer tests both"


# --- the model answers go through every check before a release (issue 22 item 6) -------------

BROKEN_M_STEP = ("diff).T @ diff / nk[k]", "diff).T @ diff / N")


def _solutions_copy(tmp_path, monkeypatch, edit=None):
    """solutions/ copied to ``tmp_path`` (em_by_hand only, ``edit`` applied to its text), with
    the release module pointed at it and at an empty exercises folder."""
    from grading import release

    solutions = tmp_path / "solutions"
    shutil.copytree(SOLUTIONS / "em_by_hand", solutions / "em_by_hand")
    path = solutions / "em_by_hand" / ASSIGNMENTS["em_by_hand"]
    if edit is not None:
        text = path.read_text()
        assert edit[0] in text, f"the model answer no longer contains {edit[0]!r}"
        path.write_text(text.replace(*edit))
    monkeypatch.setattr(release, "SOLUTIONS", solutions)
    monkeypatch.setattr(release, "EXERCISES", tmp_path / "exercises")
    monkeypatch.setattr(release, "REPO", tmp_path)
    monkeypatch.setattr(release, "ASSIGNMENTS", {"em_by_hand": ASSIGNMENTS["em_by_hand"]})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("args", [[], ["--check"]], ids=["release", "check"])
def test_a_model_that_fails_its_hidden_checks_is_not_released(tmp_path, monkeypatch, capsys, args):
    """`/ N` for `/ nk[k]` in the model's M-step: `make release` (and `--check`) exit non-zero,
    name the part and the check's own message, and write nothing."""
    from grading import release

    path = _solutions_copy(tmp_path, monkeypatch, BROKEN_M_STEP)
    before = path.read_bytes()
    assert release.main(args) == 1
    said = capsys.readouterr().err
    assert "refusing to release" in said
    assert "em_by_hand_m_step_covariances: hidden check failed: m_step on the hand case" in said
    assert "covariances[0, 0, 0] = 0.666666666667, expected 1" in said
    assert "divided by N instead of N_k" in said
    assert "em_by_hand_fit_em_tests: hidden check failed" in said
    assert "em_by_hand_m_step_covariances: visible test failed: AssertionError" in said
    assert not (tmp_path / "exercises").exists(), "a refused release wrote exercises/"
    assert path.read_bytes() == before, "a refused release rewrote solutions/"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_every_model_answer_passes_every_visible_test_and_hidden_check(assignment):
    from grading.model_check import model_problems
    from grading.release import generated

    nb = generated(_read(SOLUTIONS, assignment), assignment)
    assert model_problems(nb, assignment) == []


def test_a_visible_test_that_fails_on_the_model_is_named(tmp_path):
    """The visible side alone: a test cell that raises on the model answer, in a kernel."""
    from grading.model_check import visible_problems

    answer = nbformat.v4.new_code_cell("def double(x):\n    return x + x")
    test = nbformat.v4.new_code_cell("assert double(2) == 5, 'double(2) should be 5'")
    test.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "t_double"}
    noisy = nbformat.v4.new_code_cell("import sys; print('careful', file=sys.stderr)")
    noisy.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "t_noisy"}
    fine = nbformat.v4.new_code_cell("assert double(2) == 4")
    fine.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "t_fine"}
    nb = nbformat.v4.new_notebook(cells=[answer, test, noisy, fine])
    assert visible_problems(nb, tmp_path) == [
        "t_double: visible test failed: AssertionError: double(2) should be 5",
        "t_noisy: visible test failed: wrote to stderr: careful",
    ]


# --- the points the text shows come from the metadata ---------------------------------------


def _with_points(assignment, points: dict):
    """The source notebook with ``points`` ({grade_id suffix: points}) set in the metadata,
    through `generated`; its markdown, joined."""
    from grading.release import generated

    nb = _read(SOLUTIONS, assignment)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if gid.removeprefix(assignment + "_") in points:
            cell.metadata["nbgrader"]["points"] = points[gid.removeprefix(assignment + "_")]
    nb = generated(nb, assignment)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return nb, " ".join(markdown.split())


def test_the_text_shows_the_points_in_the_metadata():
    committed = " ".join(
        "\n".join(
            c.source for c in _read(SOLUTIONS, "em_by_hand").cells if c.cell_type == "markdown"
        ).split()
    )
    assert "`m_step_covariances` (2) | 4 |" in committed  # the numbers before the change
    nb, text = _with_points("em_by_hand", {"m_step_covariances": 5, "written": 3})
    assert "`m_step_weights` (1), `m_step_means` (1), `m_step_covariances` (5) | 7 |" in text
    assert "(7 points: `m_step_weights` 1, `m_step_means` 1, `m_step_covariances` 5.)" in text
    assert "(3 points, graded by hand.)" in text
    assert "(2 points, graded by hand.)" not in text
    summary = nb.cells[-1].source
    assert '("m_step_covariances", 5,' in summary  # the summary cell's points at stake too
    _, text = _with_points("break_it", {"collapse_seed_tests": 2, "written": 1, "run_em_tests": 1})
    assert "`collapse_seed_tests` (2)" in text and "graded by hand (1)" in text
    assert "(2 points; the visible test runs" in text  # names no cell: the next test cell's
    assert "(1 point: `run_em_tests`;" in text and "(1 point, graded by hand.)" in text


def test_points_in_the_text_that_no_cell_vouches_for_are_refused():
    from grading.points_text import with_points

    nb = _read(SOLUTIONS, "break_it")
    nb.cells.append(nbformat.v4.new_markdown_cell("A bonus question (3 points, graded by hand)."))
    with pytest.raises(ValueError, match=r"\(3 points, graded by hand\).*no written answer"):
        with_points(nb, "break_it")


def test_changed_points_make_the_committed_sources_stale(tmp_path, monkeypatch):
    """`make release --check` reports a text whose points disagree with the metadata."""
    from grading import release

    path = _solutions_copy(tmp_path, monkeypatch)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "em_by_hand_e_step_tests":
            cell.metadata["nbgrader"]["points"] = 4
    nbformat.write(nb, path)
    assert release.write_generated(check=True) == ["solutions/em_by_hand/em_by_hand.ipynb"]
    release.write_generated()
    assert "`e_step_tests` (4), `e_step_stability` (1) | 5 |" in path.read_text().replace(
        "\\n", " "
    )
