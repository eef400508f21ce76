"""Build the wheel students install: gmmlib only, never the grading code.

    python scripts/make_student_wheel.py [--out dist]

The repository's pyproject.toml is the course's distribution (gmmlib, `grading/`, whose checks
are the hidden tests, and the `gmm-grade` command). The student's is a second distribution,
configured in `packaging/student/pyproject.toml`: the wheel is built from a staging folder that
holds that file, `gmmlib/`, `README.md` and `LICENSE`, and nothing else, so no grading code,
solutions or tests are there to be picked up. No configuration text is edited. The built
wheel's file list is checked before it is kept. Students install it with
``pip install "gmmlib-<version>-py3-none-any.whl[student]"``: gmmlib, its run-time
dependencies and JupyterLab, which is what the release notebooks need.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "packaging" / "student" / "pyproject.toml"
#: Top-level entries a student wheel may hold: the package and its metadata.
ALLOWED_TOP = ("gmmlib/", "gmmlib-")


def stage(folder: Path) -> Path:
    """Lay out the student distribution's source in ``folder``: its pyproject.toml, gmmlib/,
    README.md and LICENSE."""
    folder.mkdir(parents=True)
    shutil.copy2(CONFIG, folder / "pyproject.toml")
    shutil.copytree(
        REPO / "gmmlib",
        folder / "gmmlib",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    for name in ("README.md", "LICENSE"):
        shutil.copy2(REPO / name, folder / name)
    return folder


def unexpected_files(names: list[str]) -> list[str]:
    """Entries of a wheel that are neither gmmlib's package nor its metadata."""
    return [n for n in names if not n.startswith(ALLOWED_TOP)]


def build(out: Path) -> Path:
    """Build the student wheel into ``out``; return its path."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = stage(Path(tmp) / "gmmlib-student")
        wheels = Path(tmp) / "wheels"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), source],
            check=True,
        )
        (built,) = wheels.glob("gmmlib-*.whl")
        leaked = unexpected_files(zipfile.ZipFile(built).namelist())
        if leaked:
            raise SystemExit(f"the student wheel holds files outside gmmlib: {leaked[:5]}")
        target = out / built.name
        shutil.copy2(built, target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO / "dist", help="folder for the wheel (default: dist/)"
    )
    wheel = build(parser.parse_args(argv).out)
    print(wheel)
    print(f'students install it with: pip install "{wheel.name}[student]"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
