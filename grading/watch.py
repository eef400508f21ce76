"""What the grader sees of a sandbox from outside it, through /proc.

The student's code can forge or silence anything it reports itself (an audit hook in its own
process, its own output). What is read here it cannot touch: the processes of the sandbox's uid
still alive when a run ends, the CPU time and time asleep of a process tree (`Meter`, and the
re-check's per-step `StepClock` against a notebook's `Budget`), and the files, connections and
programs a re-check child's calls name (`grading.observer`). `grading.student_run` (the
kernel) and `grading.recheck` (the re-check's child) both use it.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (bwrap, its init, the child, whatever that forked)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of the process tree under ``pid`` (reaped children included)."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def survivors(uid: int | None, expected: int = 1) -> int:
    """Live processes of the sandbox's ``uid`` beyond the ``expected`` ones (the kernel, or the
    re-check's child); 0 without a sandbox uid. Zombies are gone already and do not count."""
    if uid is None:
        return 0
    alive = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(ln.split(":", 1) for ln in f if ":" in ln)
                alive += int(fields["Uid"].split()[0]) == uid and not fields[
                    "State"
                ].strip().startswith("Z")
            except (OSError, KeyError, ValueError):
                pass
    return max(alive - expected, 0)


def kill_all(pids: list[int], wait: float = 5.0) -> None:
    """SIGKILL every process of ``pids`` (a tree from `descendants`) and wait until they are
    gone (reaped by their parents), at most ``wait`` seconds."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def busy_seconds(pid: int) -> float:
    """Seconds the threads of the tree under ``pid`` spent running or waiting to run (from
    /proc's schedstat): what is left of the wall clock is time asleep, which a loaded
    machine does not inflate."""
    total = 0
    for p in descendants(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    run, wait = f.read().split()[:2]
                total += int(run) + int(wait)
            except (OSError, ValueError):
                pass
    return total / 1e9


class Meter:
    """CPU time and time asleep of the process tree under ``pid`` since `start`: asleep is
    the wall clock no thread of it spent running or waiting for a CPU, so neither measure
    grows when the machine is loaded."""

    def __init__(self, pid: int):
        self.pid = pid
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.cpu0, self.busy0 = cpu_seconds(self.pid), busy_seconds(self.pid)
        self.busy = self.busy0

    def used(self) -> tuple[float, float]:
        """(CPU seconds, seconds asleep) since `start`. A tree that is gone (a kernel that
        died) reads as no time at all: the most seen so far counts, not a drop to 0 that would
        turn all its past busy time into time asleep."""
        wall = time.monotonic() - self.t0
        self.busy = max(self.busy, busy_seconds(self.pid))
        return cpu_seconds(self.pid) - self.cpu0, max(wall - (self.busy - self.busy0), 0.0)


#: The least a step gets of what is left of a `Budget` (a slow honest step is not cut short).
MIN_STEP = 1.0
#: What a step gets once the budget is spent: short sleepers or spinners that each stay under
#: `MIN_STEP` cannot share out more than the budget between them.
SPENT_STEP = 0.25
#: A step's wall-clock backstop, in multiples of its CPU limit (`StepClock`).
WALL_STEPS = 15


@dataclass
class Budget:
    """What one notebook may still spend over all its steps (and restarts): CPU seconds, and
    seconds asleep (wall clock neither running nor waiting for a CPU, so a loaded machine does
    not use it up). A loop that never ends, or a row of sleepers, costs a slot this much."""

    cpu: float
    asleep: float
    #: A wall-clock backstop for a user that has one (the kernel's run, `grading.student_run`);
    #: the re-check's steps have their own (`StepClock`).
    wall: float = math.inf


def allowance(left: float) -> float:
    """What the running step may use of a budget with ``left`` seconds: at least `MIN_STEP`
    while it lasts, `SPENT_STEP` once it is spent."""
    return max(left, MIN_STEP) if left > 0 else SPENT_STEP


class StepClock:
    """One step's limits in a process tree: ``limit`` seconds of CPU time and its `allowance`
    of the notebook's `Budget`, plus `WALL_STEPS` x ``limit`` of wall time as a backstop (time
    asleep is what the budget catches; the backstop is for a machine so loaded that CPU time
    barely moves). The process's start (imports from a cold disk) is not charged as sleep."""

    def __init__(self, pid: int, limit: float, budget: Budget, first_wall: float):
        self.limit, self.budget, self.meter = limit, budget, Meter(pid)
        self.counting_sleep = False
        self.wall_deadline = self.meter.t0 + first_wall

    def _used(self) -> tuple[float, float]:
        cpu, asleep = self.meter.used()
        return cpu, asleep if self.counting_sleep else 0.0

    def restart(self) -> None:
        """A step began or ended: charge the time since the last mark to the budget."""
        cpu, asleep = self._used()
        self.budget.cpu -= cpu
        self.budget.asleep -= asleep
        self.counting_sleep = True
        self.meter.start()
        self.wall_deadline = self.meter.t0 + WALL_STEPS * self.limit

    def expired(self) -> str | None:
        """Why the running step must stop (in words), or None."""
        cpu, asleep = self._used()
        if cpu > min(self.limit, allowance(self.budget.cpu)):
            return f"no result after {cpu:.1f} s of CPU time (killed)"
        if asleep > allowance(self.budget.asleep):
            return f"no result after {asleep:.1f} s asleep (killed)"
        if time.monotonic() > self.wall_deadline:
            return f"no result after {WALL_STEPS * self.limit:g} s (killed)"
        return None
