"""One time budget per submission, shared by the feedback run and the re-check (issue 21 item 3).

`grading.watch.SubmissionBudget` gives the feedback run its share and the re-check what is left;
each side charges what it measures. These tests use no kernel: the feedback run's watch is
driven by a meter that spends a fixed amount per reading, and the re-check's child (without
bubblewrap) runs a loop and a sleeper. They assert the budget's accounting, never a wall-clock
time: a side that ignored its budget would spend past it and fail them.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import nbformat
import numpy as np
import pytest
from jupyter_core.utils import run_sync

from grading import student_run
from grading.recheck import run_sandbox
from grading.student_run import GRACE_SPEND, CappedClient, RunReport, notebook_budget
from grading.watch import (
    INTERRUPT_GRACE,
    KERNEL_SHARE,
    RECHECK_FLOOR_ASLEEP,
    RECHECK_FLOOR_CPU,
    RESERVE,
    RESERVE_STEP,
    SUBMISSION_ASLEEP,
    SUBMISSION_CPU,
    Budget,
    SubmissionBudget,
    allowance,
)

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("attacks", HERE / "fixtures" / "attacks.py")
attacks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attacks)


def test_the_feedback_run_gets_its_share_and_the_recheck_what_is_left():
    budget = SubmissionBudget()
    assert SUBMISSION_CPU + SUBMISSION_ASLEEP <= 15.0
    assert (budget.kernel.cpu, budget.kernel.asleep) == KERNEL_SHARE
    budget.kernel.charge(1.5, 0.25)
    recheck = budget.for_recheck()
    assert (recheck.cpu, recheck.asleep) == (SUBMISSION_CPU - 1.5, SUBMISSION_ASLEEP - 0.25)
    recheck.charge(2.0, 0.5)
    used = budget.used()
    assert used["kernel"] == {"cpu": 1.5, "asleep": 0.25}
    assert used["recheck"] == {"cpu": 2.0, "asleep": 0.5}
    assert used["total"] == 4.25 and used["limit"] == SUBMISSION_CPU + SUBMISSION_ASLEEP


def test_a_feedback_run_that_overspends_leaves_the_recheck_its_floor():
    """Its share and the interrupt's grace spent: the re-check gets the rest of the total;
    spent past that (a late poll), the re-check still gets its floor."""
    budget = SubmissionBudget()
    budget.kernel.charge(*(s + g for s, g in zip(KERNEL_SHARE, INTERRUPT_GRACE, strict=True)))
    recheck = budget.for_recheck()
    assert (recheck.cpu, recheck.asleep) == (RECHECK_FLOOR_CPU, RECHECK_FLOOR_ASLEEP)
    assert RECHECK_FLOOR_CPU + KERNEL_SHARE[0] + INTERRUPT_GRACE[0] == SUBMISSION_CPU
    assert RECHECK_FLOOR_ASLEEP + KERNEL_SHARE[1] + INTERRUPT_GRACE[1] == SUBMISSION_ASLEEP
    budget.kernel.charge(5.0, 5.0)
    recheck = budget.for_recheck()
    assert (recheck.cpu, recheck.asleep) == (RECHECK_FLOOR_CPU, RECHECK_FLOOR_ASLEEP)


def test_a_share_beyond_the_budget_is_refused():
    with pytest.raises(ValueError, match="share"):
        SubmissionBudget(cpu=5.0, share=(6.0, 1.0))


def test_a_step_leaves_the_reserve_then_gets_a_slice_of_it():
    cpu_reserve, cpu_step = RESERVE[0], RESERVE_STEP[0]
    assert allowance(cpu_reserve + 3.0, cpu_reserve, cpu_step) == 3.0
    assert allowance(cpu_reserve, cpu_reserve, cpu_step) == cpu_step
    assert allowance(cpu_step / 2, cpu_reserve, cpu_step) == cpu_step / 2
    assert allowance(-0.1, cpu_reserve, cpu_step) == 0.0
    assert allowance(cpu_reserve + 3.0, cpu_reserve, cpu_step, added=True) == 3.0
    assert allowance(cpu_reserve, cpu_reserve, cpu_step, added=True) == 0.0


class _Meter:
    """A kernel's meter that spends ``step`` CPU seconds per reading (no kernel, no clock)."""

    def __init__(self, step: float):
        self.pid, self.cpu, self.step, self.final = 0, 0.0, step, None
        self.at_interrupt = None

    def used(self):
        if self.final is not None:
            return self.final
        self.cpu += self.step
        return self.cpu, 0.0

    def stop(self):
        self.final = self.used()
        return self.final


def test_the_feedback_run_interrupts_at_its_share_and_kills_after_the_grace(monkeypatch):
    """The watch interrupts the cell on the first reading past the budget, and kills the
    kernel once the cell has spent `GRACE_SPEND` more (the wall-clock grace made endless)."""
    meter, killed = _Meter(0.3), []

    class Kernel:
        def interrupt_kernel(self):
            meter.at_interrupt = meter.cpu

    monkeypatch.setattr(student_run, "GRACE", 1e9)
    monkeypatch.setattr(student_run, "kill_all", killed.append)
    monkeypatch.setattr(student_run, "descendants", lambda pid: [pid])
    report = RunReport()
    client = CappedClient(nbformat.v4.new_notebook(), notebook_budget(cpu=2.0), report, None)
    client.km = Kernel()

    # As `grading.student_run` runs its coroutines (jupyter_core's run_sync): on a pytest
    # worker whose session Playwright (conftest `chromium`) holds a running loop in this
    # thread, asyncio.run would refuse.
    async def watch():
        await asyncio.wait_for(client._watch(meter), 600)

    run_sync(watch)()
    assert 2.0 < meter.at_interrupt <= 2.0 + meter.step
    assert killed == [[0]] and meter.final[0] - meter.at_interrupt >= GRACE_SPEND[0]
    assert report.status == "timeout" and "CPU time" in report.detail
    client.budget.charge(*meter.used())
    assert client._spent() == "the notebook's cells used their 2 s of CPU time"


SPIN_AND_NAP = """\
import time

def spin():
    while True:
        pass

def nap():
    time.sleep(600)

def fine():
    return 2.0
"""


def _call(name: str) -> dict:
    case = {"name": name, "args": [], "kwargs": {}, "count": [], "variable": False}
    return {"kind": "call", "name": f"{name}_tests", "cases": [case]}


def test_the_recheck_spends_what_is_left_and_gives_no_loop_a_second_slice(tmp_path):
    """A function that loops, and one that sleeps, are each killed at their allowance of the
    budget the re-check was given; a later step calling them is "not run", the honest one
    after them runs; the budget is charged with what was spent, and no more than it had. The
    step's own CPU limit is far above the budget: a re-check ignoring it would spend past."""
    workdir = tmp_path / "recheck"
    workdir.mkdir()
    np.savez(workdir / "cases.npz", unused=np.zeros(1))
    plan = attacks.plan(SPIN_AND_NAP)
    names = ["spin", "spin", "nap", "nap", "fine"]
    plan["steps"] += [_call(name) for name in names]
    calls = {i + 1: {name} for i, name in enumerate(names)}
    cpu, asleep = RESERVE[0] + 1.5, RESERVE[1] + 2.0  # the first cell may wait at load
    budget = Budget(cpu, asleep)
    results, _ = run_sandbox(workdir, plan, step_timeout=60.0, budget=budget, calls=calls)
    assert results[0]["status"] == "ok", results[0]
    assert results[1]["status"] == "timeout" and "of CPU time (killed)" in results[1]["error"]
    assert results[2] == {"status": "not run", "error": "not run: spin already ran out of time"}
    assert results[3]["status"] == "timeout" and "asleep (killed)" in results[3]["error"]
    assert results[4] == {"status": "not run", "error": "not run: nap already ran out of time"}
    assert results[5]["status"] == "ok" and results[5]["outputs"][0]["value"]["__array__"] == 2.0
    assert 1.5 < budget.used_cpu < cpu, budget
    assert 1.0 < budget.used_asleep < asleep, budget


def test_cells_after_a_kernel_the_watch_killed_say_they_were_not_run():
    """The kernel killed at the budget's end: the run stops at the dead kernel, and each code
    cell after the stopped one says why it has no output."""
    cells = [nbformat.v4.new_code_cell(s) for s in ("import time", "time.sleep(19)", "1", "2")]
    client = CappedClient(
        nbformat.v4.new_notebook(cells=cells), notebook_budget(asleep=1.0), RunReport(), None
    )
    client.reached = 1  # the sleeper, interrupted then killed
    client.budget.charge(0.1, 1.5)
    client.mark_not_run()
    notes = [[o.get("text", "") for o in c.get("outputs", [])] for c in client.nb.cells]
    assert notes[:2] == [[], []], notes
    assert notes[2:] == [["\n[not run: the notebook's cells slept their 1 s]\n"]] * 2, notes


def test_a_tree_that_ended_sleeps_no_longer():
    """A kernel or re-check child that exits (os._exit, or killed) is not charged time asleep
    while the grader notices: its meter keeps what it read last."""
    import subprocess
    import sys
    import time

    from grading.watch import Meter

    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    meter = Meter(proc.pid)
    alive = meter.used()
    proc.stdin.close()
    proc.wait()
    ended = meter.used()
    time.sleep(0.2)  # the wall clock moves on; what the meter says must not
    assert meter.used() == ended and ended[1] == alive[1], (alive, ended)


def test_time_the_tree_waited_for_the_grader_is_not_asleep():
    """A kernel's watched call waits for the grader's observer thread; on a loaded machine
    that thread waits for a CPU first. What `Meter` is told the tree waited for the grader
    counts as busy, not as the student's time asleep."""
    import subprocess
    import time

    from grading.watch import Meter

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        start = time.monotonic()
        plain = Meter(sleeper.pid)
        told = Meter(sleeper.pid, waited=lambda: time.monotonic() - start)
        time.sleep(0.5)
        asleep_plain, asleep_told = plain.used()[1], told.used()[1]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert asleep_plain >= 0.4, asleep_plain
    assert asleep_told < asleep_plain - 0.3, (asleep_told, asleep_plain)


#: A cell whose calls the observer is slow to answer: each open names a marked path.
SLOW_CALLS = 20
SLOW_CELL = f"""\
for i in range({SLOW_CALLS}):
    try:
        open(f"/nonexistent/slow-observer-{{i}}")
    except OSError:
        pass
"""


def test_the_recheck_credits_its_childs_wait_for_the_observer(tmp_path, monkeypatch):
    """The re-check's child waits, at each watched call, until the grader's thread has looked
    at it; on a loaded machine that thread first waits for a CPU, and that wait is the
    grader's, not the student's time asleep (an honest cell was once killed so). Built here
    without load: the observer takes 0.1 s over each marked open and says it spent them
    waiting for a CPU (its run-queue wait, as /proc gives it, plus those seconds). The cell is
    charged none of them: without the credit it would be charged them all (2 s asleep)."""
    from grading import observer as observer_module

    delay, slept = 0.1, []
    run_queue_wait, note = observer_module.run_queue_wait, observer_module.Observer._open

    def slow_open(self, pid, at, path, flags):
        if "slow-observer-" in path:
            observer_module.time.sleep(delay)
            slept.append(delay)
        return note(self, pid, at, path, flags)

    monkeypatch.setattr(observer_module.Observer, "_open", slow_open)
    monkeypatch.setattr(observer_module, "run_queue_wait", lambda: run_queue_wait() + sum(slept))
    workdir = tmp_path / "recheck"
    workdir.mkdir()
    np.savez(workdir / "cases.npz", unused=np.zeros(1))
    budget = Budget(100.0, 100.0)
    results, observed = run_sandbox(workdir, attacks.plan(SLOW_CELL), budget=budget)
    assert results[0]["status"] == "ok", results[0]
    assert len(slept) == SLOW_CALLS, "every open was stopped and looked at"
    assert "read of /nonexistent/slow-observer-0 (not visible in the sandbox)" in observed["events"]
    assert budget.used_asleep < SLOW_CALLS * delay / 2, budget


SPIN_AFTER_WORK = """\
import time

start = time.process_time()
while time.process_time() - start < 0.3:  # some work before the definitions: 0.3 s of CPU
    pass

def spin():
    while True:
        pass

def fine():
    return 2.0
"""


def test_a_cell_run_again_after_a_restart_gets_a_slice_of_the_reserve(tmp_path):
    """A call that loops is killed past its allowance, which leaves the budget below the
    reserve; the child restarts and runs the student's added cell again (the next call needs
    its definitions). That run gets a course step's slice of the reserve: an added cell's
    first run gets none, and this one, killed at its first CPU tick, took the cell's "ok" and
    every later call with it (CI once: "no result after 0.0 s asleep", on a cell that only
    defines functions)."""
    workdir = tmp_path / "recheck"
    workdir.mkdir()
    np.savez(workdir / "cases.npz", unused=np.zeros(1))
    plan = attacks.plan(SPIN_AFTER_WORK)
    plan["steps"] += [_call("spin"), _call("fine")]
    budget = Budget(RESERVE[0] + 1.0, 100.0)
    results, _ = run_sandbox(workdir, plan, step_timeout=60.0, budget=budget, calls={1: {"spin"}})
    assert results[0]["status"] == "ok", results[0]
    assert results[1]["status"] == "timeout" and "of CPU time (killed)" in results[1]["error"]
    assert results[2]["status"] == "ok" and results[2]["outputs"][0]["value"]["__array__"] == 2.0
    assert budget.cpu < RESERVE[0] - 0.2, budget  # the run again was charged
