"""Regenerate the student release `exercises/` from the nbgrader source `solutions/`.

    python -m grading.release            # write solutions/' generated cells, then exercises/
    python -m grading.release --check    # exit 1 (and say which file) if either is stale

Two steps. First the generated cells of the source notebooks are written (`write_generated`):
every test cell's hidden tests come from `grading.checks`, the one specification of a graded
part that the out-of-kernel re-check also runs (same cases, data, tolerances and judges; the
points stay in the cells' nbgrader metadata), and a last cell runs every visible test and prints
a summary. Then `nbgrader generate_assignment` runs in a temporary course directory (so no
gradebook, which holds the hidden tests, is ever written into the repository), and each release
notebook is normalised (no outputs, no execution counts, only nbgrader's cell metadata, sorted
keys) so that regenerating gives byte-identical files.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from grading.course import ASSIGNMENTS, EXERCISES, REPO, SOLUTIONS, db_url, tool_env
from grading.layout import summary_cell_id

HIDDEN = re.compile(
    r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.S | re.M
)
#: What the kernel needs from the sandbox's child to call a student's function exactly as the
#: re-check does (`grading.sandbox._call`, with its JSON encoding).
SANDBOX_FUNCTIONS = ("_plain", "_one_line", "_call")
#: The names the generated hidden tests bind in the student's kernel: the global holding the
#: checks and the module it is registered as. No answer has a reason to use them
#: (`grading.scan` flags code that does: it reads or disarms the hidden tests).
CHECKS_NAME = "_gmm_checks"
CHECKS_MODULE = "gmm_checks"


def _nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def _functions_source(path: Path, names) -> str:
    """The source of the top-level functions ``names`` of the module at ``path``."""
    text = path.read_text()
    tree = ast.parse(text)
    found = {n.name: ast.get_source_segment(text, n) for n in tree.body if hasattr(n, "name")}
    return "\n\n\n".join(found[name] for name in names)


def runtime_source() -> str:
    """`grading.checks` plus the sandbox's call: the code the hidden tests run in the kernel."""
    grading = Path(__file__).parent
    text = (grading / "checks.py").read_text().rstrip() + "\n\n\n"
    text += _functions_source(grading / "sandbox.py", SANDBOX_FUNCTIONS) + "\n"
    for forbidden in ("'''", "HIDDEN TESTS", "BEGIN SOLUTION"):
        if forbidden in text:
            raise ValueError(f"grading/checks.py must not contain {forbidden!r}")
    return text


def _runtime_block() -> str:
    return (
        "### BEGIN HIDDEN TESTS\n"
        "# The grader's checks, written here by `python -m grading.release` from\n"
        "# grading/checks.py (edit them there): the out-of-kernel re-check runs the same ones.\n"
        "import sys as _sys\n"
        "import types as _types\n\n"
        f'{CHECKS_NAME} = _sys.modules["{CHECKS_MODULE}"] = _types.ModuleType("{CHECKS_MODULE}")\n'
        "exec(compile(r'''\n" + runtime_source() + '\'\'\', "grading/checks.py", "exec"), '
        f"{CHECKS_NAME}.__dict__)\n"
        "### END HIDDEN TESTS\n"
    )


def _run_block(grade_id: str) -> str:
    return (
        "### BEGIN HIDDEN TESTS\n"
        f'{CHECKS_NAME}.run_in_kernel("{grade_id}", globals(), {CHECKS_NAME}._call)\n'
        "### END HIDDEN TESTS"
    )


def _is_test_cell(cell) -> bool:
    meta = _nbgrader(cell)
    return cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")


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
    tests (from `grading.checks`) and the summary cell at the end. Everything else is kept."""
    from grading.checks import spec

    checked = {c.grade_id for c in spec(assignment).checks}
    summary_id = summary_cell_id(assignment)
    cells = [c for c in nb.cells if _nbgrader(c).get("grade_id") != summary_id]
    tests, first = [], True
    for cell in cells:
        if not _is_test_cell(cell):
            continue
        grade_id = _nbgrader(cell)["grade_id"]
        if grade_id not in checked:
            raise ValueError(f"{assignment}: test cell {grade_id} has no check in checks.py")
        visible = visible_source(cell.source)
        tests.append((grade_id, float(_nbgrader(cell).get("points", 0)), visible))
        cell.source = (_runtime_block() if first else "") + visible + "\n" + _run_block(grade_id)
        first = False
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


def write_generated(check: bool = False) -> list[str]:
    """Write the generated cells of every source notebook; return the stale ones' names.

    With ``check``, write nothing (the test that the stored notebooks are up to date).
    """
    stale = []
    for assignment, notebook in ASSIGNMENTS.items():
        path = SOLUTIONS / assignment / notebook
        text = path.read_text()
        nb = generated(nbformat.reads(text, as_version=4), assignment)
        new = nbformat.writes(nb) + "\n"
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
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    from grading.course import configure

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


def normalised_text(path: Path) -> str:
    nb = normalise(nbformat.read(path, as_version=4))
    return nbformat.writes(nb) + "\n"


def build_release(dest: Path) -> list[Path]:
    """Write the normalised release notebooks under ``dest``; return their paths."""
    written = []
    with tempfile.TemporaryDirectory(prefix="gmm-release-") as tmp:
        release = generate(Path(tmp))
        for assignment, notebook in ASSIGNMENTS.items():
            target = dest / assignment / notebook
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(normalised_text(release / assignment / notebook))
            written.append(target)
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
    if not args.check:
        for name in write_generated():
            print(f"wrote the generated cells of {name}")
        for path in build_release(EXERCISES):
            print(f"wrote {path.relative_to(EXERCISES.parent)}")
        return 0
    stale_sources = write_generated(check=True)
    if stale_sources:
        print(
            "the generated cells (hidden tests, summary) of "
            + ", ".join(stale_sources)
            + " differ from grading/checks.py: run `python -m grading.release`"
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
