"""Build the wheel students install: gmmlib only, never the grading code.

    python scripts/make_student_wheel.py [--out dist]

The repository's package also ships `grading/`, whose re-check definitions are the hidden tests,
and the `gmm-grade` command. Students need neither, so the wheel is built from a staged copy of
the repository holding `gmmlib/`, `README.md`, `LICENSE` and `pyproject.toml` with those two
entries taken out. Students install it with
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

# Each edit must match exactly once, so a change to pyproject.toml that would let the grading
# code into the student wheel fails this script instead of passing silently.
PYPROJECT_EDITS = [
    ('include = ["gmmlib*", "grading*"]', 'include = ["gmmlib*"]'),
    ('gmm-grade = "grading.cli:main"\n', ""),
]


def student_pyproject(text: str) -> str:
    """pyproject.toml with the grading package and the gmm-grade command taken out."""
    for old, new in PYPROJECT_EDITS:
        if text.count(old) != 1:
            raise SystemExit(
                f"pyproject.toml no longer contains {old!r} exactly once: "
                "update PYPROJECT_EDITS in scripts/make_student_wheel.py"
            )
        text = text.replace(old, new)
    return text


def build(out: Path) -> Path:
    """Build the student wheel into ``out``; return its path."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "gmmlib"
        shutil.copytree(
            REPO / "gmmlib", stage / "gmmlib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        for name in ("README.md", "LICENSE"):
            if (REPO / name).exists():
                shutil.copy2(REPO / name, stage / name)
        (stage / "pyproject.toml").write_text(
            student_pyproject((REPO / "pyproject.toml").read_text())
        )
        wheels = Path(tmp) / "wheels"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "-q",
                "-w",
                str(wheels),
                str(stage),
            ],
            check=True,
        )
        (built,) = wheels.glob("gmmlib-*.whl")
        target = out / built.name
        shutil.copy2(built, target)
    names = zipfile.ZipFile(target).namelist()
    leaked = [n for n in names if n.startswith("grading/")]
    if leaked:
        raise SystemExit(f"the student wheel contains grading code: {leaked[:3]}")
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
