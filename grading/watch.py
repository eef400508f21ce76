"""What the grader sees of a sandbox from outside it, through /proc.

The student's code can forge or silence anything it reports itself (an audit hook in its own
process, its own output). What is read here it cannot touch: the processes of the sandbox's uid
still alive when a run ends, and the CPU time of a process tree. `grading.student_run` (the
kernel) and `grading.recheck` (the re-check's child) both use it.
"""

from __future__ import annotations

import os
import signal
import time


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

    def used(self) -> tuple[float, float]:
        """(CPU seconds, seconds asleep) since `start`."""
        wall = time.monotonic() - self.t0
        busy = busy_seconds(self.pid) - self.busy0
        return cpu_seconds(self.pid) - self.cpu0, max(wall - busy, 0.0)
