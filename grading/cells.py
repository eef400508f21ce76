"""nbgrader's cell rules as the grader uses them, the one definition of the hidden-test
marker (nbgrader's own `ClearHiddenTests` delimiters), how IPython magic lines are set aside
before a cell is parsed as Python, and the release's helper modules (the test cells' helpers,
shipped next to each notebook) as the grader hands them to a kernel."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
from nbgrader.preprocessors import ClearHiddenTests
from nbgrader.utils import is_grade, is_locked, is_solution

BEGIN_HIDDEN = "### " + ClearHiddenTests.begin_test_delimeter.default_value
END_HIDDEN = "### " + ClearHiddenTests.end_test_delimeter.default_value
MAGIC_LINE = re.compile(r"^\s*[%!]")
#: A whole hidden-test block, with its line ending.
HIDDEN = re.compile(rf"^[ \t]*{BEGIN_HIDDEN}.*?^[ \t]*{END_HIDDEN}[ \t]*\n?", re.S | re.M)


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_fixed(cell) -> bool:
    """A cell the student may not change: nbgrader's locked and grade cells, not answers."""
    return bool(is_locked(cell) or (is_grade(cell) and not is_solution(cell)))


def is_test(cell) -> bool:
    """An autograded test cell (graded, not an answer)."""
    return bool(cell.cell_type == "code" and is_grade(cell) and not is_solution(cell))


def summary_cell_id(assignment: str) -> str:
    """The grade_id of the last cell of a notebook, which runs every visible test and prints a
    summary (written by `grading.release`; not graded, and skipped by the re-check)."""
    return f"{assignment}_visible_tests_summary"


# ----------------------------------------------------------------------------------------------
# The release's helper modules (the test cells' helpers, shipped next to each notebook)
# ----------------------------------------------------------------------------------------------

#: Marks the cell `module_loader_cell` adds, so that it can be taken out after the run.
LOADER = "gmm_release_modules"


def release_modules(folder: Path) -> dict[str, str]:
    """{module name: source} of the Python files next to a release notebook in ``folder``."""
    return {p.stem: p.read_text() for p in sorted(Path(folder).glob("*.py")) if p.is_file()}


def module_loader_source(modules: dict[str, str]) -> str:
    """Code that makes ``modules`` importable from memory, ahead of any file of the same name
    (a meta-path finder first on ``sys.meta_path``): the student's kernel then runs the course's
    helpers, whatever files sit next to the submitted notebook."""
    return (
        "import importlib.abc as _abc, importlib.util as _util, sys as _sys\n"
        "class _ReleaseModules(_abc.MetaPathFinder, _abc.Loader):\n"
        "    def __init__(self, sources, spec_from_loader):\n"
        "        self.sources, self.spec_from_loader = sources, spec_from_loader\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in self.sources:\n"
        "            return self.spec_from_loader(name, self, origin=name + '.py')\n"
        "    def create_module(self, spec):\n"
        "        return None\n"
        "    def exec_module(self, module):\n"
        "        source = self.sources[module.__name__]\n"
        "        exec(compile(source, module.__name__ + '.py', 'exec'), module.__dict__)\n"
        f"_sys.meta_path.insert(0, _ReleaseModules({modules!r}, _util.spec_from_loader))\n"
        "del _abc, _util, _sys, _ReleaseModules\n"
    )


def module_loader_cell(modules: dict[str, str]):
    """A code cell running `module_loader_source`, marked `LOADER` (no nbgrader metadata)."""
    cell = nbformat.v4.new_code_cell(module_loader_source(modules))
    cell.metadata[LOADER] = True
    return cell


def strip_magics(source: str) -> tuple[str, list[str]]:
    """Replace IPython magic / shell lines (``%...``, ``!...``) by ``pass``; return them too.
    Lines are cut at ``\n`` only: str.splitlines would also cut at characters Python allows
    inside a string literal (``\u2028``, form feeds), and break the student's code."""
    kept, magics = [], []
    for line in source.split("\n"):
        if MAGIC_LINE.match(line):
            magics.append(line.strip())
            kept.append(line[: len(line) - len(line.lstrip())] + "pass  # magic removed")
        else:
            kept.append(line)
    return "\n".join(kept), magics


def parse_cell(source: str) -> ast.Module | None:
    """A cell's code with its magics removed (`strip_magics`), parsed; None if it does not
    parse: a syntax error is graded as what it is, the cell fails everywhere."""
    code = strip_magics(source)[0]
    for attempt in (1, 2):
        try:
            return ast.parse(code)
        except (SyntaxError, ValueError):  # ValueError: a null byte in the source
            return None
        except SystemError:  # CPython 3.11: a garbage collection during the parse ran code
            if attempt == 2:  # that parsed too (a logged traceback's carets): once more
                raise
    return None
