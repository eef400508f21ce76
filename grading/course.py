"""The course layout and the nbgrader settings shared by every entry point.

`nbgrader_config.py` at the repository root calls `configure`, and so do the release script and
the grading pipeline, so an instructor running plain `nbgrader` commands and `gmm-grade` get the
same timeouts and cell rules.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"
EXERCISES = REPO / "exercises"

#: assignment id -> notebook file name (one notebook per assignment).
ASSIGNMENTS = {
    "em_by_hand": "em_by_hand.ipynb",
    "break_it": "break_it.ipynb",
    "poisson_mixture": "poisson_mixture.ipynb",
}

#: Seconds a single notebook cell may run in the student's kernel before it is interrupted.
CELL_TIMEOUT = 20

CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def configure(c) -> None:
    """Apply the course's nbgrader settings to a traitlets config object ``c``."""
    c.CourseDirectory.course_id = "gmm-course"
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "exercises"
    # A deleted or metadata-stripped test cell is put back instead of going to manual grading.
    c.OverwriteCells.add_missing_cells = True
    c.Execute.timeout = CELL_TIMEOUT
    c.Execute.interrupt_on_timeout = True
    # nbclient waits 60 s for a new kernel; give a loaded grading machine (several students
    # at once on few cores, a cold disk cache) more before calling it a failure.
    c.Execute.startup_timeout = 180
    c.ClearSolutions.code_stub = {"python": CODE_STUB}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
    # Feedback made by nbgrader itself (formgrader's button) must not show the hidden tests.
    c.GenerateFeedback.preprocessors = [
        "nbgrader.preprocessors.GetGrades",
        "grading.feedback.HideHiddenTests",
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    ]
    # ... and no markup of the student's (HTML in a markdown cell or an output) runs there.
    c.HTMLExporter.sanitize_html = True
    # History in memory: kernels running side by side must not share one IPython history file.
    c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:"]


def db_url(path: Path) -> str:
    """SQLAlchemy URL of a gradebook: ``path`` is the .db file or the course folder holding
    ``gradebook.db``."""
    path = Path(path)
    return f"sqlite:///{path if path.suffix == '.db' else path / 'gradebook.db'}"


def tool_env(base: dict | None = None) -> dict:
    """Environment for nbgrader and its kernels: this Python's bin/ first on PATH (nbgrader
    shells out to `alembic` and starts the kernel "python3" by name), one BLAS thread."""
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return env


def use_tool_env() -> None:
    """Apply `tool_env` to this process (for code that calls nbgrader's Python API)."""
    os.environ.update(tool_env())
