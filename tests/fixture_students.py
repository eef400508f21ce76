"""The fixture students of tests/fixtures/make_submissions.py, for every grading test.

That file is also a script (it writes a class of submissions to a folder), so it is loaded from
its path rather than imported as a package.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parent / "fixtures" / "make_submissions.py"


@functools.cache
def load():
    """The make_submissions module: `write_all`, `STYLES`, the students' answers."""
    spec = importlib.util.spec_from_file_location("make_submissions", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
