"""The students' kernel during grading: ipykernel with CPU, memory and file-size limits.

The pipeline puts a kernel spec named "python3" whose command is ``python -m grading.kernel``
first on JUPYTER_PATH, so nbgrader (which starts kernels by name) runs every student's notebook
in a kernel that cannot take the machine's memory or disk: a huge allocation fails with a
MemoryError inside the student's own cell.
"""

import json
import resource
import sys
from pathlib import Path

KERNEL_MEMORY = 3 * 1024**3
KERNEL_CPU = 600


def write_kernelspec(jupyter_dir: Path) -> Path:
    """Write ``<jupyter_dir>/kernels/python3/kernel.json`` for this Python; return the folder."""
    folder = jupyter_dir / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "grading.kernel", "-f", "{connection_file}"],
        "display_name": "Python 3 (graded, limited)",
        "language": "python",
        "env": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "MALLOC_ARENA_MAX": "2", "MPLBACKEND": "Agg"},
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


def main():
    resource.setrlimit(resource.RLIMIT_AS, (KERNEL_MEMORY, KERNEL_MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (KERNEL_CPU, KERNEL_CPU + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024**2, 64 * 1024**2))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
