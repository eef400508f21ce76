"""What watching the feedback kernel from outside costs (`grading.kernel_watch`).

    python benchmarks/bench_kernel_watch.py [--repeats 5]

Runs, in the sandboxed kernel as a grading worker does (bubblewrap, the sandbox's uid when
root, a font cache, Unix sockets in a runtime folder), two notebooks with the observer and
without it, alternating: a one-cell notebook (the kernel's start, with its shutdown) and the
reference student's em_by_hand notebook (the release's visible tests). For each it prints the
median wall seconds, the CPU seconds of the grader's own process (the observer's thread
serves the kernel's stopped calls there) and of the kernel's process tree (bubblewrap, the
launcher, ipykernel; read from /proc just before the kernel is shut down: a tree killed with
its PID namespace leaves no usage to its parent), and what the observer recorded (it must be
nothing).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fixture_students  # noqa: E402 - the fixture builder lives beside the tests

from grading import kernel_watch  # noqa: E402
from grading.checks import spec  # noqa: E402
from grading.course import EXERCISES  # noqa: E402
from grading.display_only import neutralise_notebook  # noqa: E402
from grading.isolation import Isolation, package_folders, sandbox_uid  # noqa: E402
from grading.kernel import SETTINGS, settings, write_kernelspec  # noqa: E402
from grading.probe import build_font_cache  # noqa: E402
from grading.student_run import CappedClient, run_notebook  # noqa: E402
from grading.visible import visible_notebook  # noqa: E402
from grading.watch import cpu_seconds  # noqa: E402

#: The kernel tree's CPU seconds at its last shutdown (`measure_kernels`).
KERNEL_CPU: list[float] = []


def measure_kernels() -> None:
    """Note the kernel tree's CPU time just before each run shuts its kernel down."""
    cleanup = CappedClient._async_cleanup_kernel

    async def measured(self):
        if self.km is not None and self._kernel_pid() is not None:
            KERNEL_CPU.append(cpu_seconds(self._kernel_pid()))
        return await cleanup(self)

    CappedClient._async_cleanup_kernel = measured


def notebooks() -> dict[str, nbformat.NotebookNode]:
    """The two notebooks timed: the kernel's start alone, and the reference em_by_hand run."""
    start = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    submitted = fixture_students.load().build_notebook("em_by_hand", {})
    release = nbformat.read(EXERCISES / "em_by_hand" / "em_by_hand.ipynb", as_version=4)
    visible = visible_notebook(submitted, release)
    neutralise_notebook(visible)  # as the worker: the explorer only draws, it is not run
    return {"kernel start": start, "em_by_hand reference": visible}


def cpu() -> float:
    """CPU seconds of this process (the observer's thread included)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def run_once(nb, base: Path, watched: bool) -> tuple[float, float, float, list]:
    """One run in a fresh runtime folder: (wall, grader CPU, kernel CPU, observed)."""
    runtime = Path(tempfile.mkdtemp(prefix="runtime-", dir=base))
    uid = sandbox_uid(60) if os.geteuid() == 0 else None
    if uid is not None:
        os.chown(runtime, uid, uid)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)
    tempfile.tempdir = str(runtime)
    find = kernel_watch.KernelWatch.for_kernel
    if not watched:
        kernel_watch.KernelWatch.for_kernel = classmethod(lambda cls, runtime: None)
    try:
        own, started, KERNEL_CPU[:] = cpu(), time.perf_counter(), []
        _, report = run_notebook(nb, base / "kernel.log", runtime, uid)
        wall, own = time.perf_counter() - started, cpu() - own
    finally:
        kernel_watch.KernelWatch.for_kernel = find
        tempfile.tempdir = None
    if report.status != "ok":
        raise SystemExit(f"the run failed: {report.status} {report.detail}")
    return wall, own, KERNEL_CPU[-1], report.observed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    measure_kernels()
    base = Path(tempfile.mkdtemp(prefix="bench-kernel-watch-"))
    try:
        jupyter = base / "jupyter"
        write_kernelspec(jupyter)
        os.environ["JUPYTER_PATH"] = str(jupyter)
        fonts = build_font_cache(jupyter / "matplotlib")
        uid = sandbox_uid(60) if os.geteuid() == 0 else None
        isolation = Isolation(sandbox=True, uid=uid, font_cache=str(fonts))
        hidden = package_folders(spec("em_by_hand").blocked)  # as the worker: gmmlib not mounted
        os.environ[SETTINGS] = settings(isolation, base / "scratch", hidden)
        print(f"load {os.getloadavg()[0]:.1f}; {args.repeats} runs each, alternating; medians")
        print("| notebook | observer | wall s | grader CPU s | kernel CPU s | recorded |")
        print("|---|---|---|---|---|---|")
        for name, nb in notebooks().items():
            runs = {True: [], False: []}
            for _ in range(args.repeats):
                for watched in (True, False):
                    runs[watched].append(run_once(nb, base, watched))
            for watched in (True, False):
                wall, own, kids = (statistics.median(r[i] for r in runs[watched]) for i in range(3))
                seen = sum(len(r[3]) for r in runs[watched])
                on = "on" if watched else "off"
                print(f"| {name} | {on} | {wall:.2f} | {own:.2f} | {kids:.2f} | {seen} events |")
        print(f"load {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
