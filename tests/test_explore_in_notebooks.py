"""The explorer on the student's own steps, inside a graded assignment-1 notebook.

Assignment 1 forbids gmmlib, yet the notebook may offer ``from gmmlib.explore import explore``
and ``explore(X, e_step=e_step, m_step=m_step, k=2)`` (issue 24). The grader accepts exactly
that (`grading.display_only`, `grading.scan`), sets it aside before the re-check and the
feedback kernel (where gmmlib is not mounted), and notes it in the feedback; every other use
of gmmlib, also through the explorer, stays a proven violation. The notebooks are built here
from the release notebook (exercises/em_by_hand) and the model answer.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import fixture_students
import nbformat
import pytest
from graded_class import EXPLORER_CELL, explorer_notebook
from graded_class import EXPLORER_CLASS as CLASS

from grading.cells import grade_id, release_modules
from grading.course import SOLUTIONS
from grading.display_only import (
    NOTE,
    display_bindings,
    neutralise,
    neutralise_notebook,
    restore_notebook,
)
from grading.scan import proven, scan_cell

FORBIDDEN = ("gmmlib", "sklearn")
ACCEPTED = {
    "the notebook's cell": EXPLORER_CELL,
    "import gmmlib.explore": (
        "import gmmlib.datasets\nimport gmmlib.explore\n\n"
        "gmmlib.explore.explore(gmmlib.datasets.old_faithful(standardize=True),\n"
        "                       e_step=e_step, m_step=m_step, k=2)  # watch my steps"
    ),
    "an alias, on one line": "import gmmlib.explore as gx; gx.explore(X, e_step=e_step)",
    "gmmlib's own steps": "from gmmlib.explore import explore\nexplore(X, k=3)",
}
#: Ways to reach gmmlib through the explorer's import (each a proven violation).
ABUSES = {
    "gmmlib.em": "import gmmlib.em",
    "from gmmlib import e_step": "from gmmlib import e_step",
    "another name of gmmlib.explore": "from gmmlib.explore import StepDriver",
    "the module's __dict__": "import gmmlib.explore\nem = gmmlib.explore.__dict__['em']",
    "the function's globals": (
        "from gmmlib.explore import explore\ne_step = explore.__globals__['em'].e_step"
    ),
    "sys.modules by name": (
        "import gmmlib.explore\nimport sys\n\ne_step = sys.modules['gmmlib.em'].e_step"
    ),
    "sys.modules by a joined name": (
        "import gmmlib.explore\nimport sys\n\ne_step = sys.modules['gmmlib' + '.em'].e_step"
    ),
    "importlib by name": "import importlib\nem = importlib.import_module('gmmlib.em')",
    "gmmlib's step as the explorer's argument": (
        "import gmmlib.explore\ngmmlib.explore.explore(X, e_step=gmmlib.em.e_step)"
    ),
    "the widget kept": "from gmmlib.explore import explore\nwidget = explore(X)",
    "the explorer inside an answer": (
        "from gmmlib.explore import explore\n\n"
        "def e_step(X, weights, means, covariances):\n"
        "    explore(X)\n    return None"
    ),
    "an import inside a function": (
        "def e_step(X, weights, means, covariances):\n"
        "    from gmmlib.explore import explore\n    return explore"
    ),
}


@pytest.mark.parametrize("code", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_the_explorer_cell_is_accepted(code):
    assert scan_cell(code, FORBIDDEN) == []


@pytest.mark.parametrize("code", ABUSES.values(), ids=ABUSES.keys())
def test_any_other_use_of_gmmlib_is_proven(code):
    findings = scan_cell(code, FORBIDDEN)
    assert any(proven(f) for f in findings), findings


def test_the_explorer_imported_in_one_cell_is_watched_in_the_others():
    """The names the explorer's import binds are the notebook's: a later cell that reaches
    through them is caught even though it imports nothing itself."""
    later = "def e_step(X, weights, means, covariances):\n    return explore.__globals__['em']"
    bound = display_bindings([EXPLORER_CELL, later])
    assert bound["explore"] == "gmmlib.explore.explore"
    assert any(proven(f) for f in scan_cell(later, FORBIDDEN, {"explore"}, bound))
    assert scan_cell(EXPLORER_CELL, FORBIDDEN, {"explore"}, bound) == []
    # ... and the call alone, in a cell of its own, is still only drawing.
    assert scan_cell("explore(X, e_step=e_step)", FORBIDDEN, {"explore"}, bound) == []


@pytest.mark.parametrize("code", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_neutralised_cells_run_without_gmmlib_and_keep_their_lines(code):
    text = neutralise(code, display_bindings([code]))
    assert "gmmlib" not in text.split("#")[0] and "explore(" not in text
    assert text.count("\n") == code.count("\n")
    exec(compile(text, "<cell>", "exec"), {})  # nothing left to import or call


def test_neutralise_keeps_the_rest_of_a_mixed_line():
    code = "a = 1; explore(X,\n    k=2); b = a + 1\nexplore(X)  # look"
    bound = {"explore": "gmmlib.explore.explore"}
    text = neutralise(code, bound)
    namespace = {}
    exec(compile(text, "<cell>", "exec"), namespace)
    assert namespace["b"] == 2 and text.count("\n") == 2
    # a cell that does not parse is left alone (it fails everywhere as what it is)
    assert neutralise("explore(X", bound) == "explore(X"
    # Python's line ends only: a line separator inside a string literal is not one
    text = neutralise('s = "a\u2028b"\nexplore(X)\nc = 1', bound)
    namespace = {}
    exec(compile(text, "<cell>", "exec"), namespace)
    assert namespace["s"] == "a\u2028b" and namespace["c"] == 1


def test_the_feedback_run_sets_the_cell_aside_and_says_so():
    nb = explorer_notebook()
    original = copy.deepcopy(nb)
    changed = neutralise_notebook(nb)
    # the student's cell, and the release's own invitation near the end of the notebook
    added = next(i for i, c in enumerate(nb.cells) if c.get("id") == "student-explorer")
    offered = [i for i, c in enumerate(original.cells) if "explore(" in c.source and i != added]
    assert sorted(changed) == sorted([added, *offered]) and len(offered) == 1
    for index in changed:
        assert nb.cells[index].source != original.cells[index].source
        assert "gmmlib" not in nb.cells[index].source.split("#")[0]
    restore_notebook(nb, changed)
    for index in changed:
        assert nb.cells[index].source == original.cells[index].source
        assert nb.cells[index].outputs[-1]["text"] == NOTE
    untouched = [i for i in range(len(nb.cells)) if i not in changed]
    assert all(nb.cells[i] == original.cells[i] for i in untouched)


def test_a_course_cell_holding_the_explorer_is_set_aside_in_the_recheck(tmp_path):
    """If the source notebook itself offers the explorer (a locked cell), the re-check runs its
    neutralised copy: gmmlib is not mounted there in assignment 1, and nothing fails."""
    from grading.recheck import recheck_notebook

    folder = SOLUTIONS / "em_by_hand"
    source = nbformat.read(folder / "em_by_hand.ipynb", as_version=4)
    (offered,) = [c for c in source.cells if grade_id(c) == "em_by_hand_explore"]
    assert "explore(" in offered.source and offered.metadata["nbgrader"]["locked"]
    for name, text in release_modules(folder).items():  # the test cells' helpers, as released
        (tmp_path / f"{name}.py").write_text(text)
    nbformat.write(source, tmp_path / "source.ipynb")
    submitted = fixture_students.load().build_notebook("em_by_hand", {})
    nbformat.write(submitted, tmp_path / "submitted.ipynb")  # the student's copy lacks it
    result = recheck_notebook(
        tmp_path / "submitted.ipynb",
        tmp_path / "source.ipynb",
        "em_by_hand",
        tmp_path / "work",
    )
    assert result["cell_problems"] == {}, result["cell_problems"]
    assert all(v["passed"] for v in result["verdicts"].values()), result["verdicts"]


@pytest.fixture(scope="module")
def graded(graded_class):
    """The explorer's class (`graded_class.EXPLORER_CLASS`, assignment 1) in the test run's
    graded class, through the whole pipeline (`gmm-grade`'s grade_folder):
    (output folder, {student: em_by_hand's grades.csv row})."""
    with open(graded_class.out / "grades.csv") as f:
        grades = {
            r["student_id"]: r
            for r in csv.DictReader(f)
            if r["student_id"] in CLASS and r["assignment"] == "em_by_hand"
        }
    assert set(grades) == set(CLASS)
    return graded_class.out, grades


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(CLASS))
def test_the_class_is_graded_as_it_deserves(graded, student):
    out, grades = graded
    _, _, lost, status = CLASS[student]
    row = grades[student]
    assert row["status"] == status, row
    assert row["needs_review"] == ("yes" if status != "ok" else "no"), row
    for key, value in row.items():
        if key.startswith("em_by_hand_") and key != "em_by_hand_written":
            part = key.removeprefix("em_by_hand_")
            if value in ("", None) or not value.replace(".", "", 1).isdigit():
                continue
            assert (float(value) == 0) == (part in lost), f"{student}: {key} = {value}"
    if not lost:
        assert row["autograded"] == row["autograded_max"], row


@pytest.mark.slow
def test_the_feedback_shows_the_cell_and_the_note_not_an_error(graded):
    out, _ = graded
    page = Path(out, "feedback", "explorer_model_answer", "em_by_hand", "em_by_hand.html")
    text = page.read_text()
    assert "from gmmlib.explore import explore" in text  # the student's own source
    assert "The explorer only draws" in text
    assert "ModuleNotFoundError" not in text and "not available while your work" not in text
