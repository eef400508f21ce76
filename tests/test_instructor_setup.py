"""The instructor's install needs no node: `make instructor`, `grade`, `release` and `dist`.

`make setup` (everything: the book's vendored MathJax, eslint, Chromium) needs node and npm; an
instructor who only grades, releases and builds the student wheel must not. The recipes are
read with ``make -n``; then the instructor's setup, the release check and the wheel build run
with ``node``, ``npm`` and ``npx`` shadowed on PATH by scripts that record any call and fail.
"""

from __future__ import annotations

import subprocess
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP_ONLY = ("setup-assets", "vendor-mathjax", "npm", "node", '".[all]"', "playwright")


def _dry_run(*args: str) -> str:
    """The commands ``make`` would run for ``args``, every prerequisite treated as stale."""
    result = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize("target", ["grade", "release", "dist"])
def test_instructor_targets_install_only_python(target):
    commands = _dry_run(target, "SUBMISSIONS=subs")
    assert '-m pip install -q -e ".[instructor]"' in commands, commands
    assert "setup-bubblewrap.sh" in commands, commands
    for word in SETUP_ONLY:
        assert word not in commands, f"make {target} would run {word!r}:\n{commands}"


def test_make_grade_passes_the_assignments():
    commands = _dry_run("grade", "SUBMISSIONS=subs", "ASSIGNMENT=em_by_hand break_it", "OUT=g")
    line = next(c for c in commands.splitlines() if "gmm-grade" in c)
    assert line.endswith('--out "g" --assignment em_by_hand --assignment break_it'), line
    every = next(c for c in _dry_run("grade", "SUBMISSIONS=subs").splitlines() if "gmm-grade" in c)
    assert "--assignment" not in every, every


def test_the_full_setup_still_vendors_the_book_assets():
    assert "setup-assets.sh" in _dry_run("setup")


@pytest.mark.slow
def test_instructor_setup_release_check_and_wheel_run_without_node(without_node, release_check):
    """`make instructor`, the release check and `make dist` (into the repository's dist/, as
    an instructor runs it) with node, npm and npx failing if called. The release check is the
    test run's one (conftest.py `release_check`), run the same way, in an environment of its
    own that shadows node alike."""
    env, calls = without_node
    started = time.time()
    for step in [["make", "instructor"], ["make", "dist"]]:
        result = subprocess.run(step, cwd=ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(step)} failed:\n{result.stdout}{result.stderr}"
    assert not calls.exists(), f"node tools were called: {calls.read_text()}"
    assert release_check["returncode"] == 0, (
        f"python -m grading.release --check failed:\n"
        f"{release_check['stdout']}{release_check['stderr']}"
    )
    assert not release_check["node_calls"], f"node tools were called: {release_check['node_calls']}"
    built = [w for w in (ROOT / "dist").glob("gmmlib-*.whl") if w.stat().st_mtime >= started - 1]
    assert len(built) == 1, f"make dist built {built}"
    names = zipfile.ZipFile(built[0]).namelist()
    assert "gmmlib/em.py" in names and not any(n.startswith("grading/") for n in names)
