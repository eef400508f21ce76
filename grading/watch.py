"""What the grader sees of a sandbox from outside it, through /proc.

The student's code can forge or silence anything it reports itself (an audit hook in its own
process, its own output). What is read here it cannot touch: the processes of the sandbox's uid
still alive when a run ends, the CPU time and time asleep of a process tree (`Meter`), and
the files, connections and programs a re-check child's calls name (`grading.observer`).
`grading.student_run` (the kernel) and `grading.recheck` (the re-check's child) both use it,
and both spend one `SubmissionBudget` of those seconds per submission: the feedback run its
share, the re-check the rest, step by step (`StepClock`).
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


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """{pid: its own CPU time in clock ticks (user + system, every thread)} of ``pids``."""
    out = {}
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[p] = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return out


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


def busy_nanoseconds(pids: list[int]) -> dict[tuple[int, str], int]:
    """{(pid, thread): nanoseconds it spent running or waiting to run} (/proc's schedstat)."""
    out = {}
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    run, wait = f.read().split()[:2]
                out[p, task] = int(run) + int(wait)
            except (OSError, ValueError):
                pass
    return out


class Meter:
    """CPU time and time asleep of the process tree under ``pid`` since `start`: asleep is
    the wall clock no thread of it spent running or waiting for a CPU, so neither measure
    grows when the machine is loaded. Each process and thread counts with the last figures
    read of it, so one that ends (or a tree that is killed) takes nothing back; what a
    process too short-lived to be seen did counts as time asleep (the wall clock it took)."""

    def __init__(self, pid: int, waited=None):
        #: ``waited``: a function giving seconds the tree spent stopped for a reason of the
        #: grader's, counted as busy, not asleep (`grading.observer.Waited`: the kernel's,
        #: `grading.kernel_watch.KernelWatch.waited`, and the re-check's, `StepClock`).
        self.pid, self.waited = pid, waited
        self.start()

    def _read(self) -> tuple[float, float]:
        pids = descendants(self.pid)
        self.ticks.update(cpu_ticks(pids))
        self.busy.update(busy_nanoseconds(pids))
        cpu = sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")
        waited = self.waited() if self.waited is not None else 0.0
        return cpu, sum(self.busy.values()) / 1e9 + waited

    def start(self) -> None:
        self.ticks, self.busy, self.final = {}, {}, None
        self.t0 = time.monotonic()
        self.cpu0, self.busy0 = self._read()
        self.last = (0.0, 0.0)

    def used(self) -> tuple[float, float]:
        """(CPU seconds, seconds asleep) since `start`, until `stop` or until the tree's root
        ends (a process that exited, or was killed, sleeps no longer)."""
        if self.final is not None:
            return self.final
        wall = time.monotonic() - self.t0
        cpu, busy = self._read()
        if not _alive(self.pid):
            self.final = (cpu - self.cpu0, self.last[1])
            return self.final
        # Never less than read before: the budget's watch acted on that figure (the time
        # the tree waited for the grader, `waited`, may be learnt late).
        self.last = (cpu - self.cpu0, max(wall - (busy - self.busy0), self.last[1], 0.0))
        return self.last

    def stop(self) -> tuple[float, float]:
        """Read `used` a last time (before the tree is killed: the wait for it to die is
        not the student's time asleep); it returns this from now on."""
        self.final = self.used()
        return self.final


#: One submission's time (one student's notebook of one assignment), for its feedback run and
#: its re-check together: CPU seconds and seconds asleep. A loop that never ends, or a row of
#: sleepers, costs a slot at most their sum (15 s), whatever the load.
SUBMISSION_CPU = 10.0
SUBMISSION_ASLEEP = 5.0
#: The feedback run's share (CPU seconds, seconds asleep), and what a cell interrupted at its
#: end may still spend of each before its kernel is killed (asleep: more, since a kernel that
#: stopped waits idle until the grader reads its reply); the re-check gets the rest, never
#: less than the total less both (`RECHECK_FLOOR_*`): it gives the points, so honest work
#: there is never starved. Measured (benchmarks/RESULTS.md), over the test class: an honest
#: submission spends at most 1.6 s of CPU in the feedback run and 1.3 s in the re-check
#: (break_it), asleep < 0.2 s, but for a cell importing scipy.stats: up to 1.5 s asleep in the
#: re-check on a loaded machine (each file it opens waits for the grader's observer).
KERNEL_SHARE = (3.5, 1.0)
INTERRUPT_GRACE = (0.5, 1.0)
RECHECK_FLOOR_CPU = SUBMISSION_CPU - KERNEL_SHARE[0] - INTERRUPT_GRACE[0]
RECHECK_FLOOR_ASLEEP = SUBMISSION_ASLEEP - KERNEL_SHARE[1] - INTERRUPT_GRACE[1]
#: What one re-check step may not take of what is left, (CPU seconds, seconds asleep), and
#: what each of the course's steps (its cells, the answers, the calls) gets of that reserve
#: once the rest is spent; a cell the student added gets none of it (but for its run again
#: after a restart). The step that loops or sleeps first is killed with the reserve untouched,
#: the honest steps after it still run, and a row of such steps cannot share out more than
#: the budget between them.
RESERVE = (4.0, 1.5)
RESERVE_STEP = (2.0, 0.5)
#: A step's wall-clock backstop, in multiples of its CPU limit (`StepClock`).
WALL_STEPS = 15
#: Wall-clock backstop of one submission (feedback run and re-check; kernel start-up aside),
#: for a machine so loaded that CPU time barely moves; the re-check keeps at least its floor.
SUBMISSION_WALL = 180.0
RECHECK_WALL_FLOOR = 60.0


@dataclass
class Budget:
    """What one user of a submission's time (its feedback run, or its re-check) may still
    spend: CPU seconds, and seconds asleep (wall clock neither running nor waiting for a CPU,
    so a loaded machine does not use it up); ``used_*`` is what it has spent so far."""

    cpu: float
    asleep: float
    #: A wall-clock backstop for a user that has one (the kernel's run, `grading.student_run`);
    #: the re-check's steps have their own (`StepClock`).
    wall: float = math.inf
    used_cpu: float = 0.0
    used_asleep: float = 0.0

    def charge(self, cpu: float, asleep: float) -> None:
        """Spend ``cpu`` and ``asleep`` seconds."""
        self.cpu -= cpu
        self.asleep -= asleep
        self.used_cpu += cpu
        self.used_asleep += asleep

    def spent(self) -> dict:
        return {"cpu": round(self.used_cpu, 2), "asleep": round(self.used_asleep, 2)}


class SubmissionBudget:
    """One submission's time, shared by its feedback run and its re-check (`grading.worker`).

    The feedback run gets `kernel` (its share); the re-check gets `recheck`, what the
    feedback run left, and at least the total less the share and the interrupt's grace. Both
    charge what they measure (`Meter`), so ``used()`` is the submission's whole spend, never
    more than the total but for the overshoot of a poll. One wall-clock backstop for both.
    """

    def __init__(
        self,
        cpu: float = SUBMISSION_CPU,
        asleep: float = SUBMISSION_ASLEEP,
        share: tuple[float, float] = KERNEL_SHARE,
        wall: float = SUBMISSION_WALL,
    ):
        floor = (cpu - share[0] - INTERRUPT_GRACE[0], asleep - share[1] - INTERRUPT_GRACE[1])
        if min(share) < 0 or min(floor) < 0:
            raise ValueError(
                f"the feedback run's share ({share[0]:g} s CPU, {share[1]:g} s asleep) and "
                f"its grace ({INTERRUPT_GRACE[0]:g} s, {INTERRUPT_GRACE[1]:g} s) must lie "
                "within the submission's budget "
                f"({cpu:g} s CPU, {asleep:g} s asleep)"
            )
        self.cpu, self.asleep, self.wall, self.floor = cpu, asleep, wall, floor
        self.deadline = time.monotonic() + wall
        self.kernel = Budget(*share)
        self.recheck: Budget | None = None

    def for_recheck(self) -> Budget:
        """The re-check's budget: what the feedback run left, at least the floor."""
        self.recheck = Budget(
            max(self.cpu - self.kernel.used_cpu, self.floor[0]),
            max(self.asleep - self.kernel.used_asleep, self.floor[1]),
        )
        return self.recheck

    def wall_left(self, floor: float = 0.0) -> float:
        """Seconds of the wall-clock backstop left (at least ``floor``)."""
        return max(self.deadline - time.monotonic(), floor)

    def used(self) -> dict:
        """What each side spent, the total (CPU + asleep) and the limit, in seconds."""
        sides = {"kernel": self.kernel.spent()}
        if self.recheck is not None:
            sides["recheck"] = self.recheck.spent()
        total = sum(s["cpu"] + s["asleep"] for s in sides.values())
        return {**sides, "total": round(total, 2), "limit": self.cpu + self.asleep}


def seconds_to_limit(cpu_left: float, asleep_left: float) -> float:
    """The fewest wall-clock seconds in which a process tree could spend ``cpu_left`` CPU
    seconds or ``asleep_left`` seconds asleep (negative: one is spent already): CPU time grows
    at most a second per second and core, time asleep a second per second."""
    return min(cpu_left / (os.cpu_count() or 1), asleep_left)


def allowance(left: float, reserve: float, step: float, added: bool = False) -> float:
    """What the running step may use of a budget with ``left`` seconds: all but ``reserve``,
    then at most ``step`` of the reserve (none for a cell the student ``added``), then
    nothing (`RESERVE`, `RESERVE_STEP`)."""
    return max(left - reserve, 0.0 if added else min(step, left), 0.0)


class StepClock:
    """One step's limits in a process tree: ``limit`` seconds of CPU time and its `allowance`
    of the submission's re-check `Budget`, plus `WALL_STEPS` x ``limit`` of wall time as a
    backstop (time asleep is what the budget catches; the backstop is for a machine so loaded
    that CPU time barely moves). The process's start (the interpreter, numpy and the course's
    imports: trusted code, before the first step) is not charged: a restart after a kill costs
    the budget nothing; it has ``limit`` CPU seconds and ``first_wall`` seconds."""

    def __init__(self, pid: int, limit: float, budget: Budget, first_wall: float, waited=None):
        """``waited``: the grader's wait for a CPU while the tree's calls were stopped for
        it (`Meter`; `grading.observer.Waited`)."""
        self.limit, self.budget, self.meter = limit, budget, Meter(pid, waited)
        # added: the running step is a cell of theirs, run for the first time (run again after
        # a restart, it only rebuilds what later steps call: `grading.recheck.run_sandbox`).
        self.counting, self.added = False, False
        self.room = None  # seconds before the step could reach a limit, as last read
        self.wall_deadline = self.meter.t0 + first_wall

    def restart(self) -> None:
        """A step began or ended: charge the time since the last mark to the budget."""
        if self.counting:
            self.budget.charge(*self.meter.used())
        self.counting, self.room = True, None
        self.meter.start()
        self.wall_deadline = self.meter.t0 + WALL_STEPS * self.limit

    def stop(self) -> None:
        """The steps are over (or the process is to be killed): charge what is left, then
        nothing more."""
        if self.counting:
            self.budget.charge(*self.meter.stop())
        self.counting = False

    def _limits(self) -> tuple[float, float]:
        if not self.counting:
            return self.limit, math.inf
        cpu = allowance(self.budget.cpu, RESERVE[0], RESERVE_STEP[0], self.added)
        asleep = allowance(self.budget.asleep, RESERVE[1], RESERVE_STEP[1], self.added)
        return min(self.limit, cpu), asleep

    def _room(self, cpu: float, asleep: float) -> float:
        cpu_limit, asleep_limit = self._limits()
        return seconds_to_limit(cpu_limit - cpu, asleep_limit - asleep)

    def expired(self) -> str | None:
        """Why the running step must stop (in words), or None."""
        cpu, asleep = self.meter.used()
        self.room = self._room(cpu, asleep)  # for `next_check`: the same reading of /proc
        cpu_limit, asleep_limit = self._limits()
        if cpu > cpu_limit:
            return f"no result after {cpu:.1f} s of CPU time (killed)"
        if asleep > asleep_limit:
            return f"no result after {asleep:.1f} s asleep (killed)"
        if time.monotonic() > self.wall_deadline:
            return f"no result after {self.wall_deadline - self.meter.t0:g} s (killed)"
        return None

    def next_check(self, most: float = 0.2) -> float:
        """Seconds to wait before `expired` is worth asking again (at most ``most``), so a step
        is caught within a few hundredths of a second of its limit: from the reading `expired`
        took last, or a new one after a `restart` (the step and its limits changed)."""
        if self.room is None:
            self.room = self._room(*self.meter.used())
        return min(max(self.room, 0.01), most)
