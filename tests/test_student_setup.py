"""A student's setup, as the README's "For students" section gives it, works from nothing.

The instructor builds the student wheel (`make dist`); a student with only Python and pip
installs it with its `student` extra into a new virtual environment and opens the release
notebooks. Here: build the wheel, check it carries no grading code (the re-check definitions are
the hidden tests), install it into a clean venv, and execute both release notebooks there with
the reference answer filled in: every visible test cell must pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))


@pytest.fixture(scope="module")
def student_wheel(tmp_path_factory) -> Path:
    import make_student_wheel

    return make_student_wheel.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def student_env(tmp_path_factory, student_wheel):
    """A new venv with only `pip install "<wheel>[student]"`, and an environment that sees
    nothing of the repository or of the test run's own Jupyter set-up.

    ``--no-compile``: pip would byte-compile every installed module (~13 of the install's ~35
    CPU seconds, JupyterLab's whole tree); Python compiles what the notebooks import when they
    import it, which is all a student's first run does differently."""
    home = tmp_path_factory.mktemp("student")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-compile",
            f"{student_wheel}[student]",
        ],
        check=True,
        timeout=1200,
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "JUPYTER_PATH"}
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        JUPYTER_DATA_DIR=str(home / "jupyter-data"),
        JUPYTER_CONFIG_DIR=str(home / "jupyter-config"),
        IPYTHONDIR=str(home / "ipython"),
        MPLBACKEND="Agg",
    )
    return venv, env, home


@pytest.mark.slow
def test_wheel_holds_gmmlib_and_no_grading_code(student_wheel):
    """The built wheel's file list: every file of gmmlib/ (its data included), its metadata,
    and nothing else: no grading code, solutions, exercises or tests, no hidden tests."""
    wheel = zipfile.ZipFile(student_wheel)
    names = wheel.namelist()
    package = {n for n in names if n.startswith("gmmlib/")}
    metadata = {n for n in names if n.startswith("gmmlib-") and ".dist-info/" in n}
    assert set(names) == package | metadata
    source = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "gmmlib").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert package == source  # nothing of gmmlib left out (data files too), nothing added
    assert "gmmlib/data/old_faithful.csv" in package
    for forbidden in ("grading/", "solutions/", "exercises/", "tests/"):
        assert not [n for n in names if forbidden in n]
    for name in package:  # (METADATA holds the README, which tells instructors about them)
        text = wheel.read(name).decode("utf-8", "replace")
        assert "BEGIN HIDDEN TESTS" not in text, name
        assert "from grading" not in text and "import grading" not in text, name
    entry_points = next(n for n in metadata if n.endswith("entry_points.txt"))
    assert "gmm-grade" not in wheel.read(entry_points).decode()
    assert "gmm-collapse = gmmlib.collapse:main" in wheel.read(entry_points).decode()


def test_student_distribution_is_configured_like_the_course_one():
    """packaging/student/pyproject.toml is the course's pyproject.toml without grading: the
    same version, Python, run-time dependencies, student extra, gmm-collapse command and
    package data, and gmmlib the only package it names."""
    course = tomllib.loads((ROOT / "pyproject.toml").read_text())
    student = tomllib.loads((ROOT / "packaging" / "student" / "pyproject.toml").read_text())
    for key in ("name", "version", "requires-python", "license", "dependencies"):
        assert student["project"][key] == course["project"][key], key
    extras = student["project"]["optional-dependencies"]
    assert extras == {"student": course["project"]["optional-dependencies"]["student"]}
    assert student["project"]["scripts"] == {"gmm-collapse": "gmmlib.collapse:main"}
    assert course["project"]["scripts"]["gmm-collapse"] == "gmmlib.collapse:main"
    setuptools = student["tool"]["setuptools"]
    assert setuptools["packages"]["find"]["include"] == ["gmmlib", "gmmlib.*"]
    assert setuptools["package-data"] == {
        "gmmlib": course["tool"]["setuptools"]["package-data"]["gmmlib"]
    }


def test_student_wheel_refuses_files_outside_gmmlib():
    import make_student_wheel

    names = ["gmmlib/em.py", "gmmlib-0.1.0.dist-info/METADATA", "grading/checks.py"]
    assert make_student_wheel.unexpected_files(names) == ["grading/checks.py"]


@pytest.mark.slow
def test_student_venv_has_what_the_notebooks_need(student_env):
    venv, env, home = student_env
    python = str(venv / "bin" / "python")
    probe = (
        "import gmmlib, jupyterlab, ipykernel, sys; "
        "assert gmmlib.__file__.startswith(sys.prefix), gmmlib.__file__"
    )
    subprocess.run([python, "-c", probe], check=True, env=env, cwd=home)
    no_grading = subprocess.run(
        [python, "-c", "import grading"], env=env, cwd=home, capture_output=True, text=True
    )
    assert no_grading.returncode != 0 and "ModuleNotFoundError" in no_grading.stderr
    specs = json.loads(
        subprocess.run(
            [str(venv / "bin" / "jupyter"), "kernelspec", "list", "--json"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["kernelspecs"]
    # The kernel the notebooks name is this venv's own Python, not the course's .venv.
    assert specs["python3"]["spec"]["argv"][0] in {"python", python, str(venv / "bin/python3")}
    assert str(ROOT) not in specs["python3"]["resource_dir"]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ["em_by_hand", "break_it"])
def test_release_notebook_runs_with_a_correct_answer(student_env, assignment):
    from make_submissions import ASSIGNMENTS, build_notebook

    venv, env, home = student_env
    work = home / "work"
    work.mkdir(exist_ok=True)
    notebook = work / ASSIGNMENTS[assignment]
    nbformat.write(build_notebook(assignment, {}), notebook)
    # The folder a student is given: the notebook and the test cells' helper modules.
    helpers = sorted((ROOT / "exercises" / assignment).glob("*.py"))
    assert helpers, f"exercises/{assignment} ships no helper module"
    for module in helpers:
        shutil.copy(module, work / module.name)
    proc = subprocess.run(
        [
            str(venv / "bin" / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--inplace",
            "--ExecutePreprocessor.timeout=600",
            str(notebook),
        ],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    executed = nbformat.read(notebook, as_version=4)
    errors = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, errors
    ran = [c for c in executed.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(ran) == sum(c.cell_type == "code" for c in executed.cells)


@pytest.mark.slow
def test_the_book_names_the_wheel_make_dist_builds(student_wheel):
    """Chapter 7 gives students a command to copy: it must name the file they are handed."""
    chapter = (ROOT / "book" / "exercises.md").read_text()
    assert f'pip install "{student_wheel.name}[student]"' in chapter, (
        f"book/exercises.md should tell students to install {student_wheel.name}"
    )


def test_the_feedback_run_imports_the_courses_helpers_not_the_students(tmp_path):
    """`visible_notebook` puts first a cell that serves the release's helper modules from memory:
    run in a folder where the student left their own `notebook_helpers.py` (which would fail
    every test), the helper cell imports the course's; `run_notebook` drops that cell again."""
    from make_submissions import build_notebook

    from grading.cells import LOADER
    from grading.visible import visible_notebook

    release = build_notebook("em_by_hand", None)
    run = visible_notebook(build_notebook("em_by_hand", {}), release)
    loader = run.cells[0]
    assert loader.metadata.get(LOADER) and "nbgrader" not in loader.metadata
    helpers = next(
        c
        for c in run.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "em_by_hand_helpers"
    )
    (tmp_path / "notebook_helpers.py").write_text("raise SystemExit('the student copy')\n")
    (tmp_path / "em_by_hand_helpers.py").write_text("raise SystemExit('the student copy')\n")
    code = "\n".join([loader.source, helpers.source, "print(call_quietly.__module__)"])
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "notebook_helpers", done.stderr
    # Without the loader, the same folder gives the student's file: the loader is what decides.
    bare = subprocess.run(
        [sys.executable, "-c", helpers.source], cwd=tmp_path, capture_output=True, text=True
    )
    assert "the student copy" in bare.stderr
