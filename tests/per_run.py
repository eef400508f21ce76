"""Folders made once per test run and shared by its pytest-xdist workers (the book, the graded
class, the release check, the cluster tests' submissions; conftest.py's `host_links` lock)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from filelock import FileLock


def run_folder(tmp_path_factory) -> Path:
    """The run's shared temporary folder: under pytest-xdist the parent of the workers' own
    folders, else pytest's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once_per_run(tmp_path_factory, name: str, build, done: str) -> Path:
    """The folder ``build(folder)`` made, once per test run: under pytest-xdist the tests that
    need it may run on several workers, so the first builds it under a file lock in the run's
    shared temporary folder and the others wait and read it (as conftest.py's `book_build`).
    ``done``: the file ``build`` writes last; a folder without it (a build that failed) is
    built again."""
    folder = run_folder(tmp_path_factory) / name
    with FileLock(f"{folder}.lock"):
        if not (folder / done).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
    return folder
