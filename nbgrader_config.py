"""nbgrader settings for gmm-course: `solutions/` is nbgrader's source, `exercises/` its release.

The settings live in `grading.course.configure`, so plain `nbgrader` commands run here, the
release script (`python -m grading.release`) and the pipeline (`gmm-grade`) all use the same
ones. Plain `nbgrader` commands keep their gradebook in ./gradebook.db: it holds the hidden
tests, so it is git-ignored and never released (`gmm-grade` keeps its own in its output folder).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # works before `pip install -e .`, too

from grading.course import configure  # noqa: E402

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)
configure(c)
