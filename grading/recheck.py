"""The integrity re-check: the student's answer cells, outside their kernel.

1. `notebook_steps` takes the student's code in notebook order: their answer cells and any cells
   they added, with the course's read-only cells restored from the source notebook; test cells
   are left out, and so is the summary cell that re-runs the visible tests.
2. `scan.scan_cell` looks at that code for patching (numpy, builtins, IPython, import hooks,
   frames) and, where the assignment forbids it, for gmmlib.
3. `run_sandbox` executes the code in a fresh ``python -I -S`` process (`grading.sandbox`) with
   CPU, memory and file-size limits, calls the student's functions on the `grading.checks`
   inputs, and brings back plain numbers. A step that hangs (also one that swallows interrupts)
   is killed after `STEP_TIMEOUT` seconds of CPU time, or sooner when the notebook's `Budget`
   (CPU time and time asleep, over all steps) runs out; a step that kills the process is
   recorded, and the sandbox restarts after it, so every other part is still scored.
4. `recheck_notebook` judges those numbers against gmmlib here, one verdict per test cell.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
import numpy as np

import gmmlib
from grading import checks as checks_module
from grading.display_only import display_bindings, neutralise
from grading.isolation import (
    RECHECK_CPU,
    Sandbox,
    code_limits,
    package_folders,
    python_env,
    remove,
)
from grading.layout import summary_cell_id
from grading.scan import imported_names, scan_cell, strip_magics
from grading.watch import busy_seconds, cpu_seconds, survivors

SANDBOX = Path(__file__).with_name("sandbox.py")
STEP_TIMEOUT = 8.0  # seconds of CPU time for one cell or one test's cases
#: What one notebook's whole re-check may spend (see `Budget`), and the least any step gets.
BUDGET_CPU = 12.0
BUDGET_ASLEEP = 4.0
MIN_STEP = 1.0
#: What a step gets once the notebook's budget is spent: short sleepers or spinners that each
#: stay under `MIN_STEP` cannot share out more than the budget between them.
SPENT_STEP = 0.25
#: Wall-clock seconds for one notebook's whole re-check, restarts included (a backstop: the
#: budget above is what normally stops a notebook; steps not reached by then are not run).
NOTEBOOK_WALL = 90.0
WALL_STEPS = 15
#: A result line longer than this (bytes) is not read: honest results are a few kB.
MAX_LINE = 4 << 20
UNREADABLE = {"status": "crashed", "error": "the step's result was unreadable"}


def _nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def notebook_steps(submitted: nbformat.NotebookNode, source: nbformat.NotebookNode):
    """The code cells to run, in order: [{"name", "source", "answer": grade_id or None}]."""
    source_cells = {_nbgrader(c).get("grade_id"): c for c in source.cells if _nbgrader(c)}
    summaries = {gid for gid in source_cells if gid and gid.endswith(summary_cell_id(""))}
    locked = [
        gid
        for gid, c in source_cells.items()
        if c.cell_type == "code"
        and not _nbgrader(c).get("grade")
        and not _nbgrader(c).get("solution")
        and gid not in summaries  # it re-runs the visible tests: nothing to re-check
    ]
    seen_locked = set()
    steps, added = [], 0
    for cell in submitted.cells:
        if cell.cell_type != "code":
            continue
        gid = _nbgrader(cell).get("grade_id")
        src_cell = source_cells.get(gid)
        if gid in summaries:
            continue
        if src_cell is None or src_cell.cell_type != "code":
            added += 1
            steps.append({"name": f"added cell {added}", "source": cell.source, "answer": None})
        elif _nbgrader(src_cell).get("solution"):
            steps.append({"name": gid, "source": cell.source, "answer": gid})
        elif gid in locked:
            seen_locked.add(gid)
            steps.append({"name": gid, "source": src_cell.source, "answer": "<course>"})
        # test cells are not run: the judging happens outside
    missing = [
        {"name": gid, "source": source_cells[gid].source, "answer": "<course>"}
        for gid in locked
        if gid not in seen_locked
    ]
    return missing + steps


class Budget:
    """What one notebook's re-check may still spend, over every step and every restart of the
    child: CPU seconds, and seconds asleep (wall clock neither running nor waiting for a CPU,
    so a loaded machine does not use it up). A loop that never ends, or a row of sleepers,
    costs a grading slot about this much and no more."""

    def __init__(self, cpu: float = BUDGET_CPU, asleep: float = BUDGET_ASLEEP):
        self.cpu, self.asleep = cpu, asleep


class _StepClock:
    """A step's limits: ``limit`` seconds of the sandbox's CPU time and what is left of the
    notebook's `Budget` (at least `MIN_STEP` seconds of each, so a step always gets a try),
    plus `WALL_STEPS` x ``limit`` of wall time as a backstop (sleeping is what the budget's
    time asleep catches; the backstop is for a machine so loaded that CPU time barely moves)."""

    def __init__(self, pid, limit, budget: Budget, first_wall):
        self.pid, self.limit, self.budget = pid, limit, budget
        self.counting_sleep = False  # the child's start (imports from a cold disk) is free
        self._mark(first_wall)

    def _mark(self, wall):
        self.t0, self.cpu0, self.busy0 = time.monotonic(), cpu_seconds(self.pid), 0.0
        self.busy0 = busy_seconds(self.pid)
        self.wall_deadline = self.t0 + wall

    def _used(self) -> tuple[float, float]:
        cpu = cpu_seconds(self.pid) - self.cpu0
        wall = time.monotonic() - self.t0
        asleep = max(wall - (busy_seconds(self.pid) - self.busy0), 0.0)
        return cpu, asleep if self.counting_sleep else 0.0

    def restart(self):
        """A step began or ended: charge the time since the last mark to the budget."""
        cpu, asleep = self._used()
        self.budget.cpu -= cpu
        self.budget.asleep -= asleep
        self.counting_sleep = True
        self._mark(WALL_STEPS * self.limit)

    def expired(self) -> str | None:
        """Why the running step must stop (in words), or None."""
        cpu, asleep = self._used()
        if cpu > min(self.limit, _allowance(self.budget.cpu)):
            return f"no result after {cpu:.1f} s of CPU time (killed)"
        if asleep > _allowance(self.budget.asleep):
            return f"no result after {asleep:.1f} s asleep (killed)"
        if time.monotonic() > self.wall_deadline:
            return f"no result after {WALL_STEPS * self.limit:g} s (killed)"
        return None


def _allowance(left: float) -> float:
    """What the running step may use of a budget with ``left`` seconds: at least `MIN_STEP`
    while the budget lasts (a slow honest step is not cut short), `SPENT_STEP` once it is
    spent."""
    return max(left, MIN_STEP) if left > 0 else SPENT_STEP


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


#: The re-check child's interpreter flags: isolated (-I: no user site, no PYTHON* variables),
#: no site-packages hooks (-S), and no bytecode written (-B): gmmlib and the course are
#: read-only in the sandbox, and an attempt to refresh a stale .pyc there would be observed
#: as the student's write.
CHILD_FLAGS = ("-I", "-S", "-B")


def _child_command(workdir: Path, first: int, isolation: dict | None, blocked=()):
    """(argv, env, limits) of one re-check child: in the sandbox unless isolation is off.
    The ``blocked`` packages (the plan's) are not even mounted there: a blocked import stops an
    ``import``, but code that finds the package's files could still load them."""
    isolation = isolation or {}
    limits = code_limits(isolation.get("vm_peak"), RECHECK_CPU)
    argv = [sys.executable, *CHILD_FLAGS, str(SANDBOX), str(workdir), str(first)]
    if not isolation.get("sandbox"):
        env = {
            "PATH": "/usr/bin:/bin",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MALLOC_ARENA_MAX": "2",
            "HOME": "/nonexistent",
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
        }
        return argv, env, limits
    sandbox = Sandbox(
        scratch=workdir,
        readable=[SANDBOX],
        uid=isolation.get("uid"),
        hidden=package_folders(blocked),
    )
    sandbox.prepare(Path(isolation["font_cache"]) if isolation.get("font_cache") else None)
    return sandbox.command(argv), {"PATH": "/usr/bin:/bin"}, limits


def run_sandbox(
    workdir: Path, plan: dict, step_timeout: float = STEP_TIMEOUT, isolation: dict | None = None
) -> tuple[dict, dict]:
    """Run the plan's steps in sandbox processes; ({step index: result dict}, observations).

    Results have ``status`` "ok" / "error" (the student's exception) / "timeout" / "crashed".
    They arrive as one JSON line per step on the child's stdout (a pipe: nothing the student's
    code writes to a file is read back) and are checked strictly: a line for a step other than
    the one running, or unreadable, counts as a crash. Observations: what the child's audit
    hook saw (writes outside its folder, connections, processes started) and processes left
    running at the end (``survivors``).
    """
    steps = plan["steps"]
    results: dict[int, dict] = {}
    observed = {"events": [], "survivors": 0}
    uid = (isolation or {}).get("uid") if (isolation or {}).get("sandbox") else None
    first = 0
    budget = Budget()
    deadline = time.monotonic() + NOTEBOOK_WALL
    for _attempt in range(len(steps) + 1):
        if time.monotonic() > deadline:
            break
        argv, env, limits = _child_command(workdir, first, isolation, plan.get("blocked", ()))
        # The child's own pipes and the student's stderr file; no other descriptor.
        with open(workdir.parent / f"{workdir.name}-stderr.log", "ab") as stderr:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                close_fds=True,
                preexec_fn=limits.apply,
                start_new_session=True,
            )
        try:
            proc.stdin.write((json.dumps(plan) + "\n").encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        current, buffer, finished = None, bytearray(), False
        clock = _StepClock(proc.pid, step_timeout, budget, first_wall=60.0)
        fd = proc.stdout.fileno()
        try:
            while True:
                ready = select.select([fd], [], [], 0.2)[0]
                # The clock is read on every pass: a child that keeps the pipe busy (a trickle
                # of newlines from the student's code) is timed like a silent one.
                why = clock.expired()
                if time.monotonic() > deadline:
                    why = f"the notebook's re-check ran past {NOTEBOOK_WALL:g} s (killed)"
                if why:
                    observed["survivors"] += survivors(uid)
                    clock.restart()
                    _kill(proc)
                    if current is not None:
                        results[current] = {"status": "timeout", "error": why}
                    break
                if not ready:
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    code = proc.wait()
                    if current is not None:
                        how = f"signal {-code}" if code < 0 else f"exit code {code}"
                        results[current] = {
                            "status": "crashed",
                            "error": f"the process ended during this step ({how})",
                        }
                    break
                complete = b"\n" in chunk  # only the new bytes are searched: linear in the input
                buffer += chunk
                if not complete and len(buffer) > MAX_LINE:
                    # A line past any honest size: the step's result is unreadable, and the
                    # grader does not buffer it.
                    _kill(proc)
                    if current is not None:
                        results[current] = dict(UNREADABLE)
                    break
                while complete and b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if len(line) > MAX_LINE:
                        word, arg = "done", "unreadable"
                    else:
                        word, _, arg = line.decode(errors="replace").partition(" ")
                    if word == "start" and arg.isdigit() and current is None:
                        current = int(arg)
                        clock.restart()
                    elif word == "done" and current is not None:
                        results[current] = _result_line(arg, current, observed)
                        current = None
                        clock.restart()
                    elif word == "finished":
                        finished = True
                        observed["survivors"] += survivors(uid)
        finally:
            if finished or proc.poll() is None:
                _kill(proc)
        if finished or current is None:
            break
        # Restart after the step that hung or crashed: skip it if it was a cell.
        if steps[current]["kind"] == "cell":
            steps[current]["skip"] = True
        else:
            first = current + 1
        if first >= len(steps):
            break
    for index in range(len(steps)):  # steps the notebook's time did not reach
        if index not in results and time.monotonic() > deadline and not steps[index].get("skip"):
            results[index] = {"status": "timeout", "error": "not run: the re-check's time ran out"}
    return results, observed


def _result_line(text: str, index: int, observed: dict) -> dict:
    """One ``done`` line's result, validated: it must name the running step."""
    try:
        number, _, payload = text.partition(" ")
        data = json.loads(payload)
        if int(number) != index or data.get("status") not in ("ok", "error"):
            raise ValueError("out of turn")
        events = data.pop("observed", [])
        if isinstance(events, list):
            for event in events[:50]:
                if isinstance(event, str) and event[:200] not in observed["events"]:
                    observed["events"].append(event[:200])
        return data
    except (ValueError, TypeError, AttributeError, RecursionError, MemoryError):
        return dict(UNREADABLE)


def recheck_notebook(
    submitted_path: Path,
    source_path: Path,
    assignment: str,
    workdir: Path,
    step_timeout: float = STEP_TIMEOUT,
    isolation: dict | None = None,
) -> dict:
    """Scan and re-run one submitted notebook; return findings and a verdict per test cell.

    ``isolation``: the pipeline's sandbox settings (`grading.isolation`); None runs the child
    without bubblewrap, under the same limits (the unit tests).
    """
    spec = checks_module.spec(assignment)
    remove(workdir)  # a fresh folder: nothing an earlier try's student code left in it
    workdir.mkdir(parents=True)
    try:
        submitted = nbformat.read(submitted_path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a result to report
        return {
            "readable": False,
            "error": f"cannot read the notebook: {exc}",
            "findings": {},
            "verdicts": {
                c.grade_id: {
                    "passed": False,
                    "status": "unreadable",
                    "message": "the notebook could not be read",
                }
                for c in spec.checks
            },
        }
    source = nbformat.read(source_path, as_version=4)
    code_cells = notebook_steps(submitted, source)
    known = set().union(*(imported_names(c["source"]) for c in code_cells)) if code_cells else set()
    # The explorer's import and calls only draw: accepted by the scan, not run (gmmlib is not
    # mounted here in assignment 1), see grading.display_only.
    display = display_bindings(c["source"] for c in code_cells)
    findings = {}
    for cell in code_cells:
        if cell["answer"] == "<course>":
            continue
        found = scan_cell(cell["source"], spec.blocked, known, display)
        if found:
            findings[cell["name"]] = found

    arrays, steps = {}, []
    for cell in code_cells:
        steps.append(
            {
                "kind": "cell",
                "name": cell["name"],
                "source": strip_magics(neutralise(cell["source"], display))[0],
            }
        )
    check_steps = {}
    for check in spec.checks:
        cases, check_arrays = checks_module.call_plan(check)
        arrays.update(check_arrays)
        check_steps[check.grade_id] = len(steps)
        steps.append({"kind": "call", "name": check.grade_id, "cases": cases})
    np.savez(workdir / "cases.npz", **arrays)
    sys_path = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if "gmmlib" not in spec.blocked:
        sys_path.append(str(Path(gmmlib.__file__).resolve().parents[1]))
    plan = {
        "steps": steps,
        "sys_path": list(dict.fromkeys(sys_path)),
        "quiet": (
            [str(p) for p in python_env()]
            + list(dict.fromkeys(sys_path))
            + ["/usr/", "/etc/", "/proc/", "/sys/"]
        ),
        "blocked": list(spec.blocked),
    }
    results, observed = run_sandbox(workdir, plan, step_timeout, isolation)

    cell_problems = {}
    for index, cell in enumerate(code_cells):
        result = results.get(index, {"status": "missing"})
        if result["status"] != "ok":
            cell_problems[cell["name"]] = f"{result['status']}: {result.get('error', '')}"
    verdicts = {}
    for check in spec.checks:
        result = results.get(
            check_steps[check.grade_id], {"status": "not run", "error": "never reached"}
        )
        verdicts[check.grade_id] = checks_module.judge(check, result)
    return {
        "readable": True,
        "findings": findings,
        "cell_problems": cell_problems,
        "verdicts": verdicts,
        "observed": observed,
        "answers": sorted({c["answer"] for c in code_cells if c["answer"] != "<course>"}, key=str),
    }
