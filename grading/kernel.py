"""The students' kernel during grading: ipykernel in a bubblewrap sandbox, under limits.

The pipeline puts a kernel spec named "python3" first on JUPYTER_PATH whose command is
``python -m grading.kernel {connection_file}``; `grading.student_run` (and plain nbgrader, for
an instructor) starts kernels by that name, so every student's notebook runs through `main`.
That process is trusted code: it first binds its life to the grading process that started it
(`bind_to_grader`: no kernel outlives its grader, even one that died as the kernel started),
then reads the current student's sandbox settings from ``$GMM_SANDBOX`` (set by
`grading.worker` for each notebook), prepares the student's scratch folder, sets the limits
(`grading.isolation.Limits`) and replaces itself with bwrap running ipykernel as the sandbox's
uid (`grading.isolation`). The kernel reads no file of the course (the notebook's code arrives
as messages), and the assignment's blocked packages (gmmlib in the from-scratch assignment) are
not even mounted.

The kernel talks to the grader over jupyter_client's IPC transport (Unix sockets next to the
connection file, in the student's own runtime folder bound into the sandbox): a kernel in its
own network namespace cannot reach the grader's loopback TCP ports. Interrupts go as messages
(``interrupt_mode``), since a signal to the process group would stop bwrap, not the cell.

What the kernel's code attempts is seen from outside it: given a socket in ``$GMM_KERNEL_CHANNEL``
(`grading.kernel_watch.KernelWatch`, in the process that runs the notebook), the kernel starts
through the re-check child's launcher (`grading.sandbox`, ``--kernel``), which puts its process
tree under the observed seccomp filter and hands the listener over that socket, then closes it,
before the kernel starts (only ipykernel's own modules and numpy are imported first).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from grading.isolation import (
    CODE_ENV,
    KERNEL_CPU,
    Isolation,
    OrphanedError,
    Sandbox,
    code_limits,
    die_with_parent,
)

#: Environment variable holding the current notebook's sandbox settings (`settings`).
SETTINGS = "GMM_SANDBOX"
#: Environment variable naming the inherited socket the kernel's seccomp listener goes over.
CHANNEL = "GMM_KERNEL_CHANNEL"
#: The launcher that hands the kernel's calls over before ipykernel starts (stdlib only).
LAUNCHER = Path(__file__).with_name("sandbox.py")


def settings(isolation: Isolation, scratch: Path, hidden) -> str:
    """``$GMM_SANDBOX`` for one notebook: the run's `Isolation`, the kernel's scratch folder and
    the package folders it may not see (the assignment's blocked ones)."""
    given = {"isolation": isolation.to_dict(), "scratch": str(scratch)}
    return json.dumps({**given, "hidden": [str(p) for p in hidden]})


def write_kernelspec(jupyter_dir: Path) -> Path:
    """Write ``<jupyter_dir>/kernels/python3/kernel.json`` for this Python; return the folder."""
    folder = jupyter_dir / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "grading.kernel", "{connection_file}"],
        "display_name": "Python 3 (graded, sandboxed)",
        "language": "python",
        "interrupt_mode": "message",
        "env": CODE_ENV,
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


def bind_to_grader() -> None:
    """Die with the grading process that started this kernel, or stop now if it is gone.

    Done first, before anything is set up: the kernel's sandbox (bwrap, ``--die-with-parent``)
    then inherits the death signal. The grading process may die between starting this process
    and this call (a Dask worker killed, a worker stopped at teardown): the signal would never
    come, and the kernel, a child of init, would run on for good. jupyter_client names the
    starting process in ``$JPY_PARENT_PID``; a parent that is not that one means it is gone.
    """
    parent = os.environ.pop("JPY_PARENT_PID", None)
    try:
        die_with_parent(int(parent) if parent and parent.isdigit() else None)
    except OrphanedError as error:
        sys.exit(f"grading.kernel: not starting: {error}")


def kernel_command(connection_file: str, extra: list[str]) -> list[str]:
    """ipykernel's command line: through `LAUNCHER` when the grader gave a channel (taken out
    of the environment: the kernel's code never learns it), else ipykernel itself."""
    channel = os.environ.pop(CHANNEL, "")
    if not channel:
        return [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file, *extra]
    if not channel.isdigit():
        sys.exit(f"grading.kernel: not starting: {CHANNEL} is not a descriptor: {channel!r}")
    # No user site nor PYTHON* variables; not -I, whose safe path would keep IPython from
    # putting the working folder on sys.path as it does for every kernel.
    launcher = [sys.executable, "-E", "-s", "-B", str(LAUNCHER), "--kernel", channel]
    return [*launcher, "-f", connection_file, *extra]


def main(argv=None) -> None:
    bind_to_grader()
    argv = sys.argv[1:] if argv is None else argv
    connection_file, extra = argv[0], argv[1:]
    given = json.loads(os.environ[SETTINGS])
    isolation = Isolation.from_dict(given["isolation"])
    # Nothing the kernel prints may reach the worker's stdout (its protocol with the pipeline):
    # the worker gives the kernel the student's own log file as stderr (`grading.student_run`).
    os.dup2(2, 1)
    limits = code_limits(isolation.vm_peak, KERNEL_CPU)
    kernel = kernel_command(connection_file, extra)
    if not isolation.sandbox:
        limits.apply()
        os.execv(sys.executable, kernel)
    sandbox = Sandbox(
        scratch=Path(given["scratch"]),
        readable=[LAUNCHER],
        writable=[Path(connection_file).parent],
        uid=isolation.uid,
        hidden=[Path(p) for p in given["hidden"]],
    )
    sandbox.prepare(Path(isolation.font_cache) if isolation.font_cache else None)
    if sandbox.uid is not None:  # jupyter_client wrote it 0600 for us: the kernel must read it
        os.chown(connection_file, sandbox.uid, sandbox.uid, follow_symlinks=False)
    command = sandbox.command(kernel)
    limits.apply()
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
