"""The student's notebook, run for their feedback page, with the release's visible tests only.

`run_notebook` executes a `grading.visible.visible_notebook` in the graded kernel
(`grading.kernel`: bubblewrap and limits) with nbclient, under caps: output bytes per cell and
per notebook (truncated with a note; nbgrader's LimitOutput counts lines, not bytes), a time
budget for all cells together (CPU seconds and seconds asleep, which a loaded machine does not
use up, and a wall-clock backstop), so an endless loop or a row of sleepers cost a slot
seconds. The kernel's stdout and stderr go to the student's own log file, and it inherits no
other descriptor of the grader's.

Nothing here grades: every score comes from the re-check (`grading.recheck`). This run only
gives the student their outputs, and the supervisor's observations (cells stopped, output cut,
the kernel dying, processes left at teardown) for the review list.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import math
import os
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat
import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import ensure_async, run_sync
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from traitlets.config import Config

from grading.cells import LOADER
from grading.kernel_watch import KernelWatch
from grading.watch import (
    INTERRUPT_GRACE,
    KERNEL_SHARE,
    Budget,
    Meter,
    descendants,
    kill_all,
    seconds_to_limit,
    survivors,
)

#: Output a cell may print, and the whole notebook, in bytes (text, or a figure's base64).
CELL_OUTPUT_BYTES = 100_000
NOTEBOOK_OUTPUT_BYTES = 1_000_000
#: The largest message frame the kernel may send the grader: a larger one drops the kernel's
#: connection (ZMQ's MAXMSGSIZE) instead of being received and parsed whole by the grader,
#: before any output cap can cut it.
MESSAGE_BYTES = 16 * NOTEBOOK_OUTPUT_BYTES
#: What the notebook's cells may spend together (kernel start not included) when run on
#: their own: the feedback run's share of a submission's budget (`grading.watch.
#: SubmissionBudget`, which the grader passes), and a wall-clock backstop (seconds).
CPU_BUDGET, ASLEEP_BUDGET = KERNEL_SHARE
WALL_BACKSTOP = 120.0
#: What a cell may still spend after an interrupt ((CPU seconds, seconds asleep), counted in
#: the budget), or wall-clock seconds, before its kernel is killed.
GRACE_SPEND = INTERRUPT_GRACE
GRACE = 5.0


def notebook_budget(**changes) -> Budget:
    """What a notebook's run may spend (`CPU_BUDGET`, `ASLEEP_BUDGET`, `WALL_BACKSTOP`; see
    `CappedClient`), with ``changes`` (``cpu=3.0``) made."""
    return replace(Budget(CPU_BUDGET, ASLEEP_BUDGET, WALL_BACKSTOP), **changes)


#: Seconds a kernel may take to start on a loaded machine, and the margin over the budget
#: after which a run whose kernel stopped answering is cancelled.
STARTUP = 180.0
SLACK = 30.0


def _size(out) -> int:
    if out.get("output_type") == "stream":
        return len(str(out.get("text", "")).encode(errors="replace"))
    if out.get("output_type") == "error":
        return sum(len(str(t)) for t in out.get("traceback") or []) + len(str(out.get("evalue")))
    return sum(len(str(v)) for v in out.get("data", {}).values())


def _note(text):
    return nbformat.v4.new_output("stream", name="stderr", text=f"\n[{text}]\n")


@dataclass
class RunReport:
    """What the supervisor saw of one notebook run (outside the kernel)."""

    status: str = "ok"  # "ok", "timeout" (a cell or the budget ran out), "died", "error"
    detail: str = ""
    observed: list = field(default_factory=list)
    seconds: float = 0.0


class CappedClient(NotebookClient):
    """nbclient with byte caps on outputs and one budget for all cells: CPU seconds and
    seconds asleep of the kernel's process tree (`grading.watch.Meter`: a loaded machine uses
    up neither), and a wall-clock backstop. A cell over budget is interrupted; one that
    ignores the interrupt gets its kernel killed; the cells after it are not run."""

    def __init__(self, nb, budget: Budget, report: RunReport, uid: int | None, runtime=None, **kw):
        super().__init__(nb, **kw)
        self.report, self.uid, self.budget, self.runtime = report, uid, budget, runtime
        self.limits = (budget.cpu, budget.asleep)  # for the messages
        self.deadline, self.total, self.cell_bytes, self.reached = None, 0, {}, -1
        self.started = False
        self.watch = None  # the kernel's `KernelWatch`, if any (`run_notebook`)
        self.timeout_func = self._cell_timeout

    def create_kernel_manager(self):
        """nbclient's kernel manager, whose client's sockets cap frames at `MESSAGE_BYTES`."""
        km = super().create_kernel_manager()
        self.zmq_context = zmq.asyncio.Context()  # closed by `_async_cleanup_kernel`
        self.zmq_context.setsockopt(zmq.MAXMSGSIZE, MESSAGE_BYTES)  # its sockets' default
        km.client = functools.partial(km.client, context=self.zmq_context)
        return km

    def _remaining(self) -> float:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.budget.wall
        return self.deadline - time.monotonic()

    def _cell_timeout(self, cell):
        return max(1, math.ceil(self._remaining()))

    def _observe(self, text):
        if text not in self.report.observed:
            self.report.observed.append(text)

    def _stop(self, why: str) -> None:
        self.report.status = "timeout"
        self.report.detail = self.report.detail or why

    def _spent(self) -> str | None:
        if self.budget.cpu <= 0:
            return f"the notebook's cells used their {self.limits[0]:g} s of CPU time"
        if self.budget.asleep <= 0:
            return f"the notebook's cells slept their {self.limits[1]:g} s"
        if self._remaining() <= 0:
            return f"the notebook's cells ran past {self.budget.wall:g} s"
        return None

    async def async_start_new_kernel_client(self):
        """Start the kernel, then close its runtime folder to it: the sockets are bound, and a
        host folder the sandbox's uid could still write to would be disk outside every cap."""
        lock = self.runtime is not None and self.uid is not None and os.geteuid() == 0
        if lock:  # the kernel (the sandbox's uid) binds its sockets there as it starts
            os.chown(self.runtime, self.uid, self.uid, follow_symlinks=False)
        client = await super().async_start_new_kernel_client()
        self.started = True  # from here on, a failure may be the student's code: no retry
        if lock:
            os.chown(self.runtime, 0, 0, follow_symlinks=False)
            os.chmod(self.runtime, 0o755, follow_symlinks=False)
        return client

    def _kernel_pid(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return process.pid if process is not None else None

    async def async_execute_cell(self, cell, cell_index, execution_count=None, **kw):
        if cell.cell_type != "code" or not cell.source.strip():
            return await super().async_execute_cell(cell, cell_index, execution_count, **kw)
        why = self._spent()
        if why:
            cell.outputs = [_note(f"not run: {why}")]
            self._stop(f"{why} (the rest not run)")
            return cell
        self.reached = cell_index
        pid = self._kernel_pid()
        waited = self.watch.waited if self.watch is not None else None
        meter = Meter(pid, waited) if pid is not None else None
        watcher = asyncio.ensure_future(self._watch(meter)) if meter is not None else None
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, **kw)
        finally:
            if watcher is not None:
                watcher.cancel()
                self.budget.charge(*meter.used())

    async def _watch(self, meter: Meter) -> None:
        """Interrupt the running cell when it spends the rest of the budget (looked at again
        as soon as it could have, `grading.watch.seconds_to_limit`); kill the kernel if the
        cell is still running after it spent `GRACE_SPEND` more, or `GRACE` seconds passed
        (it swallowed the interrupt)."""
        while True:
            cpu, asleep = meter.used()
            room = seconds_to_limit(self.budget.cpu - cpu, self.budget.asleep - asleep)
            if room < 0:
                break
            await asyncio.sleep(min(max(room, 0.02), 0.25))
        kind = "CPU time" if cpu > self.budget.cpu else "time asleep"
        self._stop(f"a cell used the rest of the notebook's {kind} and was interrupted")
        await ensure_async(self.km.interrupt_kernel())
        stop = time.monotonic() + GRACE
        while time.monotonic() < stop:
            await asyncio.sleep(0.02)
            now = meter.used()
            if now[0] - cpu >= GRACE_SPEND[0] or now[1] - asleep >= GRACE_SPEND[1]:
                break
        self.report.detail = (
            f"a cell used the rest of the notebook's {kind}; interrupted, it was not seen to "
            "stop (its kernel was killed)"
        )
        meter.stop()
        kill_all(descendants(meter.pid))

    def mark_not_run(self) -> None:
        """The budget's watch killed the kernel: each code cell after the one it stopped says
        it was not run, and why."""
        why = self._spent() or self.report.detail
        for cell in self.nb.cells[self.reached + 1 :]:
            if cell.cell_type == "code" and cell.source.strip():
                cell.outputs = [_note(f"not run: {why}")]

    async def _async_handle_timeout(self, timeout, cell=None):
        """The wall-clock backstop: noted, then nbclient interrupts the cell."""
        self._stop(f"a cell ran past {timeout} s of wall clock: interrupted")
        return await super()._async_handle_timeout(timeout, cell)

    async def _async_poll_kernel_alive(self) -> None:
        """nbclient's, ending quietly when it outlives the run's cleanup (a cell the budget
        stopped leaves it polling a client that is gone): its AssertionError went unread,
        logged at a garbage collection, whose traceback parses code (`parse_cell`)."""
        try:
            await super()._async_poll_kernel_alive()
        except AssertionError:
            if self.kc is not None:
                raise

    async def _async_cleanup_kernel(self):
        """Count what the student's code left running, shut the kernel down, and kill its
        whole process tree (bwrap, the sandbox's init, anything the student started)."""
        if self.km is None:  # nbclient's exit handler, after the run's own cleanup
            return
        alive = survivors(self.uid, expected=1)
        if alive:
            self._observe(
                f"{alive} process(es) still running when the notebook run ended "
                "(killed with the sandbox)"
            )
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        tree = descendants(process.pid) if process is not None else []
        await super()._async_cleanup_kernel()
        kill_all(tree)
        if getattr(self, "zmq_context", None) is not None:  # the client's channels are closed
            self.zmq_context.destroy(linger=0)

    def output(self, outs, msg, display_id, cell_index):
        out = super().output(outs, msg, display_id, cell_index)
        if out is None:
            return None
        used = self.cell_bytes.get(cell_index, 0)
        room = min(CELL_OUTPUT_BYTES - used, NOTEBOOK_OUTPUT_BYTES - self.total)
        size = _size(out)
        if size <= room:
            self.cell_bytes[cell_index], self.total = used + size, self.total + size
            return out
        outs.remove(out)
        if out.get("output_type") == "stream" and room > 0:
            outs.append(nbformat.v4.new_output("stream", name=out.name, text=out.text[:room]))
        if room > 0 or used < CELL_OUTPUT_BYTES + 1:
            which = (
                "cell"
                if CELL_OUTPUT_BYTES - used <= NOTEBOOK_OUTPUT_BYTES - self.total
                else ("notebook")
            )
            limit = CELL_OUTPUT_BYTES if which == "cell" else NOTEBOOK_OUTPUT_BYTES
            outs.append(_note(f"output truncated: more than {limit:,} bytes in this {which}"))
            self._observe(f"output past {limit:,} bytes per {which} (truncated)")
        # Full: nothing more is kept for this cell (the note is the cell's last output).
        self.cell_bytes[cell_index] = CELL_OUTPUT_BYTES + 1
        self.total += max(room, 0)
        return None


@run_sync
async def _execute(client: CappedClient, limit: float, sink, watch=None) -> None:
    """The whole run, under a last wall-clock limit: a kernel whose messaging the student's
    code broke (it can write into its own sockets) never holds the slot longer. Cancelling
    the run shuts the kernel down and kills its tree (`CappedClient._async_cleanup_kernel`)."""
    fds = watch.pass_fds if watch is not None else ()  # the kernel's hand-over channel
    streams = {"stdin": subprocess.DEVNULL, "stdout": sink, "stderr": sink}
    await asyncio.wait_for(client.async_execute(**streams, close_fds=True, pass_fds=fds), limit)


def kernel_config(runtime: Path | None) -> Config:
    """The kernel manager's settings: Unix sockets in the student's own runtime folder when
    sandboxed (the kernel has no network; an absolute prefix, since the default is relative to
    each side's working directory)."""
    config = Config()
    if runtime is not None:
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(runtime / "kernel")
    return config


def run_notebook(
    nb: nbformat.NotebookNode,
    log: Path,
    runtime: Path | None,
    uid: int | None = None,
    budget: Budget | None = None,
    attempts: int = 2,
) -> tuple[nbformat.NotebookNode, RunReport]:
    """Execute ``nb`` (a `visible_notebook`) in the graded kernel; (executed copy, report).

    A kernel that does not start (the grading machine, not the student) is retried once; a
    run that fails once the kernel is up is not (a message the student's code forged, say).
    ``uid``: the sandbox's, to count the processes the student's code left at teardown.
    ``budget``: what the cells may spend (by default `notebook_budget`); it is charged with
    what the last attempt's cells spent.
    """
    started = time.monotonic()
    for attempt in range(1, attempts + 1):
        report = RunReport()
        work = copy.deepcopy(nb)
        limits = copy.copy(budget) if budget is not None else notebook_budget()
        if not math.isfinite(limits.wall):  # a re-check's budget: the run's own backstop
            limits.wall = WALL_BACKSTOP
        client = CappedClient(
            work,
            limits,
            report,
            uid,
            runtime=runtime,
            config=kernel_config(runtime),
            kernel_manager_class=AsyncKernelManager,
            kernel_name="python3",
            shutdown_kernel="immediate",
            allow_errors=True,
            interrupt_on_timeout=True,
            error_on_timeout={
                "ename": "CellTimeout",
                "evalue": "the cell ran past its time limit and was interrupted",
                "traceback": ["CellTimeout: the cell ran past its time limit and was interrupted"],
            },
            iopub_timeout=2,
            startup_timeout=STARTUP,
            record_timing=False,
            extra_arguments=["--HistoryManager.hist_file=:memory:"],
        )
        watch = KernelWatch.for_kernel(runtime)  # what the kernel attempts, seen from here
        client.watch = watch
        with open(log, "ab") as sink, watch or contextlib.nullcontext():
            try:
                _execute(client, STARTUP + limits.wall + SLACK, sink, watch)
            except TimeoutError:
                report.status = "timeout"
                report.detail = "the kernel stopped answering (killed)"
            except DeadKernelError:
                if report.status != "timeout":  # not killed by the budget's watch
                    report.status = "died"
                    report.detail = "the kernel died while running the notebook"
                else:
                    client.mark_not_run()
            except Exception as exc:  # noqa: BLE001 - a kernel that never started: retry
                report.status, report.detail = "error", f"{type(exc).__name__}: {exc}"[:300]
        report.observed += watch.events if watch is not None else []
        if report.status != "error" or attempt == attempts or client.started:
            break
    report.seconds = round(time.monotonic() - started, 2)
    if budget is not None:
        budget.charge(limits.used_cpu - budget.used_cpu, limits.used_asleep - budget.used_asleep)
    work.cells = [c for c in work.cells if not c.metadata.get(LOADER)]  # the grader's, not theirs
    return work, report
