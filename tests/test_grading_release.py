"""The nbgrader source (solutions/) and its committed release (exercises/)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grading.checks import SPECS
from grading.course import ASSIGNMENTS, EXERCISES, SOLUTIONS, tool_env

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)(.*?)### END \1", re.S)


def _read(folder, assignment):
    return nbformat.read(folder / assignment / ASSIGNMENTS[assignment], as_version=4)


@pytest.mark.slow
def test_committed_release_is_what_nbgrader_generates():
    proc = subprocess.run(
        [sys.executable, "-m", "grading.release", "--check"],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        "exercises/ differs from `nbgrader generate_assignment` of solutions/ "
        f"(run `python -m grading.release`):\n{proc.stdout}\n{proc.stderr[-2000:]}"
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
    assert len(secret) > 20
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
