"""Regenerate the student release `exercises/` from the nbgrader source `solutions/`.

    python -m grading.release            # write solutions/' generated cells, then exercises/
    python -m grading.release --check    # exit 1 (and say why) if either is stale or a model fails

`generated` writes each test cell's hidden block as a note naming its check in `grading.checks`
(no hidden-test code is ever in a notebook), the points in the text (`grading.points_text`) and
a last cell running every visible test; `grading.model_check` refuses a model answer that fails
a check; `build_release` runs ``nbgrader generate_assignment`` in a temporary course (the
gradebook, which holds the hidden tests, never lands in the repository) and normalises the
notebooks so that regenerating gives identical bytes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbgrader.apps import NbGraderAPI
from traitlets.config import Config

from grading.cells import BEGIN_HIDDEN, END_HIDDEN, HIDDEN, is_test, summary_cell_id
from grading.checks import spec
from grading.course import (
    ASSIGNMENTS,
    EXERCISES,
    REPO,
    SOLUTIONS,
    configure,
    db_url,
    tool_env,
)
from grading.model_check import model_problems
from grading.points_text import nbgrader_meta, with_points


def hidden_block(check, assignment: str) -> str:
    """A test cell's hidden-test block: where its hidden cases live, in words. Nothing in it
    runs when grading (the re-check runs the check outside the student's processes);
    nbgrader removes it from the release, so students see the visible tests only."""
    cases = len(check.cases)
    return (
        f"{BEGIN_HIDDEN}\n"
        f"# Hidden tests: {cases} case{'s' * (cases != 1)} of `{check.cases[0].name}`, check "
        f"{check.grade_id} in\n"
        f"# grading/checks/{assignment}.py. The grader runs them outside the student's notebook\n"
        "# (the re-check); nothing in this block is executed. Written by `make release`.\n"
        f"{END_HIDDEN}"
    )


def visible_source(source: str) -> str:
    """A test cell's own (hand-written) part: everything outside its hidden-test blocks."""
    return HIDDEN.sub("", source).strip("\n")


def _summary_source(assignment: str, tests) -> str:
    """The last cell: run every visible test, each on its own, and list which pass."""
    entries = []
    for grade_id, points, code in tests:
        short = grade_id.removeprefix(assignment + "_")
        if "'''" in code:
            raise ValueError(f"{grade_id}: a visible test must not contain triple quotes")
        entries.append(f"    (\"{short}\", {points:g}, r'''\n{code}\n'''),")
    return "\n".join(
        [
            '# Every visible test at once. "Run All" stops at the first cell that fails;',
            "# this cell runs the visible part of every test cell above again, each on its own,",
            "# and lists which pass and the points at stake. Run the cells that define your",
            "# answers first. Passing here is a good sign, not a grade: the hidden tests check",
            "# more cases. (Written from the test cells above by the course's release script;",
            "# it is not graded.)",
            "_VISIBLE_TESTS = [  # (test cell, its points, its visible tests)",
            *entries,
            "]",
            "_passed = _total = 0",
            "for _name, _points, _code in _VISIBLE_TESTS:",
            "    _total += _points",
            "    try:",
            "        exec(_code, globals())",
            "    except Exception as _error:  # a failing test is reported, never raised",
            '        _why = "\\n      ".join(str(_error).strip().splitlines())[:600]',
            "        if isinstance(_error, NotImplementedError):",
            '            _why = "not answered yet" + (f" ({_why})" if _why else "")',
            "        elif isinstance(_error, NameError):",
            '            _why = f"{_error}: run the cell that defines it first"',
            "        else:",
            '            _why = f"{type(_error).__name__}: {_why}"',
            '        _unit = "point" if _points == 1 else "points"',
            '        print(f"FAIL  {_name} ({_points:g} {_unit} at stake): {_why}")',
            "    else:",
            "        _passed += _points",
            '        _unit = "point" if _points == 1 else "points"',
            '        print(f"pass  {_name} ({_points:g} {_unit})")',
            'print(f"\\nVisible tests pass for {_passed:g} of {_total:g} autograded points.")',
        ]
    )


def generated(nb: nbformat.NotebookNode, assignment: str) -> nbformat.NotebookNode:
    """``nb`` (a source notebook) with its generated parts written: every test cell's hidden
    block (a note naming its check in `grading.checks`), the points its text shows (from the
    metadata) and the summary cell at the end. Everything else is kept."""
    with_points(nb, assignment)
    checks = {c.grade_id: c for c in spec(assignment).checks}
    summary_id = summary_cell_id(assignment)
    cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") != summary_id]
    tests = []
    for cell in cells:
        if not is_test(cell):
            continue
        grade_id = nbgrader_meta(cell)["grade_id"]
        if grade_id not in checks:
            raise ValueError(f"{assignment}: test cell {grade_id} has no check in grading/checks/")
        visible = visible_source(cell.source)
        tests.append((grade_id, float(nbgrader_meta(cell).get("points", 0)), visible))
        cell.source = visible + "\n" + hidden_block(checks[grade_id], assignment)
    summary = nbformat.v4.new_code_cell(_summary_source(assignment, tests))
    summary.id = summary_id.replace("_", "-")
    summary.metadata["nbgrader"] = {
        "grade": False,
        "grade_id": summary_id,
        "locked": True,
        "schema_version": 3,
        "solution": False,
    }
    nb.cells = cells + [summary]
    return nb


def generated_sources() -> dict[str, nbformat.NotebookNode]:
    """Every source notebook of solutions/ with its generated parts, in memory."""
    return {
        assignment: generated(
            nbformat.read(SOLUTIONS / assignment / notebook, as_version=4), assignment
        )
        for assignment, notebook in ASSIGNMENTS.items()
    }


def refused(sources: dict[str, nbformat.NotebookNode]) -> list[str]:
    """Why the release is refused: every check a model answer fails, in words (empty: none)."""
    lines = []
    for assignment, nb in sources.items():
        problems = model_problems(nb, assignment)
        if problems:
            where = (SOLUTIONS / assignment / ASSIGNMENTS[assignment]).relative_to(REPO)
            lines.append(f"the model answer in {where} fails its own checks:")
            lines += [f"  {problem}" for problem in problems]
    return lines


def write_generated(check: bool = False, sources=None) -> list[str]:
    """Write the generated cells of every source notebook; return the stale ones' names.

    With ``check``, write nothing (the test that the stored notebooks are up to date).
    ``sources``: `generated_sources`, if already made.
    """
    stale = []
    sources = generated_sources() if sources is None else sources
    for assignment, notebook in ASSIGNMENTS.items():
        path = SOLUTIONS / assignment / notebook
        text = path.read_text()
        new = nbformat.writes(sources[assignment]) + "\n"
        if new != text:
            stale.append(str(path.relative_to(REPO)))
            if not check:
                path.write_text(new)
    return stale


CONFIG_TEMPLATE = """\
import sys
sys.path.insert(0, {repo!r})
from grading.course import configure
c = get_config()
configure(c)
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = {db!r}
"""


def write_course_config(root: Path) -> None:
    """An nbgrader_config.py for a course directory at ``root`` with the course's settings."""
    text = CONFIG_TEMPLATE.format(root=str(root), repo=str(REPO), db=db_url(root))
    (root / "nbgrader_config.py").write_text(text)


def generate(root: Path, assignments=ASSIGNMENTS) -> Path:
    """Copy solutions/ into ``root`` and run nbgrader generate_assignment there.

    Returns the release folder. ``root`` also gets the gradebook with the hidden tests.
    """
    root.mkdir(parents=True, exist_ok=True)
    write_course_config(root)
    source = root / "solutions"
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(SOLUTIONS, source, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    proc = subprocess.run(
        [sys.executable, "-m", "grading.release", "--generate-into", str(root), *assignments],
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{proc.stdout}\n{proc.stderr}")
    return root / "exercises"


def _generate_in_process(root: Path, assignments) -> None:
    """nbgrader generate_assignment for each assignment, through its Python API (one import)."""
    config = Config()
    configure(config)
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url(root)
    api = NbGraderAPI(config=config)
    for assignment in assignments:
        result = api.generate_assignment(assignment, force=True, create=True)
        if not result.get("success"):
            raise RuntimeError(
                f"generate_assignment {assignment}: {result.get('error')}\n{result.get('log')}"
            )


def normalise(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip everything that varies between runs: outputs, counts, non-nbgrader metadata."""
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "nbgrader"}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("attachments", None)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def build_release(dest: Path) -> list[Path]:
    """Write the normalised release notebooks under ``dest``; return their paths."""
    written = []
    with tempfile.TemporaryDirectory(prefix="gmm-release-") as tmp:
        release = generate(Path(tmp))
        for assignment, notebook in ASSIGNMENTS.items():
            target = dest / assignment / notebook
            target.parent.mkdir(parents=True, exist_ok=True)
            nb = normalise(nbformat.read(release / assignment / notebook, as_version=4))
            target.write_text(nbformat.writes(nb) + "\n")
            written.append(target)
            for module in sorted((release / assignment).glob("*.py")):  # the tests' helpers
                shutil.copyfile(module, dest / assignment / module.name)
                written.append(dest / assignment / module.name)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="do not write; fail if the committed exercises/ differ"
    )
    parser.add_argument("--generate-into", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("assignments", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate_into:
        _generate_in_process(args.generate_into, args.assignments or list(ASSIGNMENTS))
        return 0
    sources = generated_sources()
    problems = refused(sources)
    if problems:
        print(
            "refusing to release: a model answer fails the checks its students face\n"
            + "\n".join(problems)
            + "\nfix the model answer in solutions/ (or the check in grading/checks/), then "
            "run `make release` again",
            file=sys.stderr,
        )
        return 1
    if not args.check:
        for name in write_generated(sources=sources):
            print(f"wrote the generated cells of {name}")
        for path in build_release(EXERCISES):
            print(f"wrote {path.relative_to(EXERCISES.parent)}")
        return 0
    stale_sources = write_generated(check=True, sources=sources)
    if stale_sources:
        print(
            "the generated cells (hidden tests, summary, points in the text) of "
            + ", ".join(stale_sources)
            + " differ from grading/checks/: run `python -m grading.release`"
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="gmm-release-check-") as tmp:
        stale = []
        for path in build_release(Path(tmp)):
            committed = EXERCISES / path.relative_to(tmp)
            if not committed.exists() or committed.read_text() != path.read_text():
                stale.append(str(committed.relative_to(EXERCISES.parent)))
    if stale:
        print("exercises/ is stale, run `python -m grading.release`: " + ", ".join(stale))
        return 1
    print("exercises/ is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
