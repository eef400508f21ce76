"""Regenerate the student release `exercises/` from the nbgrader source `solutions/`.

    python -m grading.release            # rewrite exercises/
    python -m grading.release --check    # exit 1 (and say which file) if exercises/ is stale

It runs `nbgrader generate_assignment` in a temporary course directory (so no gradebook, which
holds the hidden tests, is ever written into the repository), then normalises each release
notebook (no outputs, no execution counts, only nbgrader's cell metadata, sorted keys) so that
regenerating gives byte-identical files.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from grading.course import ASSIGNMENTS, EXERCISES, REPO, SOLUTIONS, db_url, tool_env

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
        for path in build_release(EXERCISES):
            print(f"wrote {path.relative_to(EXERCISES.parent)}")
        return 0
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
