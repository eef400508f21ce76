"""The integrity re-check: the student's answer cells, outside their kernel.

1. `notebook_steps` takes the student's code in notebook order: their answer cells and any cells
   they added, with the course's read-only cells restored from the source notebook; test cells
   are left out, and so is the summary cell that re-runs the visible tests.
2. `scan.scan_cell` looks at that code for patching (numpy, builtins, IPython, import hooks,
   frames) and, where the assignment forbids it, for gmmlib.
3. `run_sandbox` executes the code in a fresh ``python -I -S`` process (`grading.sandbox`) with
   CPU, memory and file-size limits, calls the student's functions on the `grading.checks`
   inputs, and brings back plain numbers. A step that hangs (also one that swallows interrupts)
   is killed after `STEP_TIMEOUT` seconds of CPU time, or sooner at its allowance of what the
   feedback run left of the submission's `Budget` (CPU time and time asleep, over all steps);
   a step that kills the process is recorded, and the sandbox restarts after it (start-up not
   charged; the cells run again), so every other part is still scored, except those that call
   a function that already ran out of time: "not run".
4. `recheck_notebook` judges those numbers against gmmlib here, one verdict per test cell.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
import numpy as np
from nbgrader.utils import is_grade, is_solution

import gmmlib
from grading import checks as checks_module
from grading import not_run
from grading.cells import grade_id, module_loader_source, parse_cell, release_modules
from grading.display_only import display_bindings, neutralise
from grading.isolation import (
    CODE_ENV,
    RECHECK_CPU,
    Isolation,
    Sandbox,
    code_limits,
    package_folders,
    python_env,
    remove,
)
from grading.layout import summary_cell_id
from grading.observer import Observer, Waited
from grading.scan import imported_names, scan_cell, strip_magics
from grading.watch import SUBMISSION_ASLEEP, SUBMISSION_CPU, Budget, StepClock, survivors

SANDBOX = Path(__file__).with_name("sandbox.py")
STEP_TIMEOUT = 8.0  # seconds of CPU time for one cell or one test's cases
#: Wall-clock seconds for a whole re-check, restarts included, by default (a backstop: the
#: budget stops a notebook first; steps not reached by then are not run).
NOTEBOOK_WALL = 90.0
#: A result line longer than this (bytes) is not read: honest results are a few kB.
MAX_LINE = 4 << 20
UNREADABLE = {"status": "crashed", "error": "the step's result was unreadable"}
NO_SANDBOX = Isolation(sandbox=False)


def notebook_steps(submitted: nbformat.NotebookNode, source: nbformat.NotebookNode):
    """The code cells to run, in order: [{"name", "source", "answer": grade_id or None}]."""
    by_id = {grade_id(c): c for c in source.cells if grade_id(c)}
    summaries = {g for g in by_id if g.endswith(summary_cell_id(""))}  # re-run visible tests
    locked = [
        g
        for g, c in by_id.items()
        if c.cell_type == "code" and not is_grade(c) and not is_solution(c) and g not in summaries
    ]
    steps, added, seen = [], 0, set()
    for cell in submitted.cells:
        gid = grade_id(cell)
        if cell.cell_type != "code" or gid in summaries:
            continue
        src = by_id.get(gid)
        if src is None or src.cell_type != "code":
            added += 1
            steps.append({"name": f"added cell {added}", "source": cell.source, "answer": None})
        elif is_solution(src):
            steps.append({"name": gid, "source": cell.source, "answer": gid})
        elif gid in locked:
            seen.add(gid)
            steps.append({"name": gid, "source": src.source, "answer": "<course>"})
        # test cells are not run: the judging happens outside
    course = [{"name": g, "source": by_id[g].source, "answer": "<course>"} for g in locked]
    return [s for s in course if s["name"] not in seen] + steps


def _modules(source: str) -> set[str]:
    """The modules a cell imports (absolute imports only)."""
    tree = parse_cell(source)
    nodes = list(ast.walk(tree)) if tree is not None else []
    found = {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}
    return found | {n.module for n in nodes if isinstance(n, ast.ImportFrom) and not n.level}


def _kill(proc):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


#: The re-check child's interpreter flags: isolated (-I: no user site, no PYTHON* variables),
#: no site-packages hooks (-S), and no bytecode written (-B): gmmlib and the course are
#: read-only in the sandbox, and an attempt to refresh a stale .pyc there would be observed
#: as the student's write.
CHILD_FLAGS = ("-I", "-S", "-B")


def _child_command(workdir: Path, first: int, isolation: Isolation, blocked=(), channel=-1):
    """(argv, env, limits) of one re-check child: in the sandbox unless isolation is off.
    The ``blocked`` packages (the plan's) are not even mounted there: a blocked import stops an
    ``import``, but code that finds the package's files could still load them."""
    limits = code_limits(isolation.vm_peak, RECHECK_CPU)
    argv = [sys.executable, *CHILD_FLAGS, str(SANDBOX), str(workdir), str(first), str(channel)]
    if not isolation.sandbox:
        return argv, {**CODE_ENV, "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}, limits
    sandbox = Sandbox(
        scratch=workdir, readable=[SANDBOX], uid=isolation.uid, hidden=package_folders(blocked)
    )
    sandbox.prepare(Path(isolation.font_cache) if isolation.font_cache else None)
    return sandbox.command(argv), {"PATH": "/usr/bin:/bin"}, limits


def run_sandbox(
    workdir: Path,
    plan: dict,
    step_timeout: float = STEP_TIMEOUT,
    isolation: Isolation = NO_SANDBOX,
    budget: Budget | None = None,
    wall: float = NOTEBOOK_WALL,
    calls: dict | None = None,
) -> tuple[dict, dict]:
    """Run the plan's steps in sandbox processes; ({step index: result dict}, observations).

    Results have ``status`` "ok" / "error" (the student's exception) / "timeout" / "crashed" /
    "not run" (`grading.not_run`; ``calls``: {call step index: the functions it runs}).
    ``budget``: what the steps may spend (by default a submission's), charged as they run;
    ``wall``: the backstop in seconds. They arrive as one JSON line per step on the child's
    stdout (a pipe: nothing the student's code writes to a file is read back) and are checked
    strictly: a line for a step other than the one running, or unreadable, counts as a crash.
    Observations: what the grader saw of the child's calls (`grading.observer.Observer`: writes
    refused, paths it cannot see, listings, connections, processes and programs started) and
    processes left running at the end (``survivors``).
    """
    steps, results = plan["steps"], {}  # results: {step index: result dict}
    observed = {"events": [], "survivors": 0}
    # What the observers saw over every restart (their caps hold for them all), and this
    # thread's wait for a CPU while the child's calls were stopped for it: not time asleep.
    waited = Waited()
    record = {"events": observed["events"], "kinds": {}, "waited": waited}
    uid, first = isolation.code_uid, 0
    budget = budget if budget is not None else Budget(SUBMISSION_CPU, SUBMISSION_ASLEEP)
    deadline = time.monotonic() + wall
    for _attempt in range(len(steps) + 1):
        if time.monotonic() > deadline:
            break
        channel, theirs = socket.socketpair()  # the Observer's listener arrives on it
        argv, env, limits = _child_command(
            workdir, first, isolation, plan.get("blocked", ()), theirs.fileno()
        )
        # The child's own pipes, the student's stderr file and the channel, which it closes
        # before any student code runs; no other descriptor.
        with open(workdir.parent / f"{workdir.name}-stderr.log", "ab") as stderr, theirs:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                close_fds=True,
                pass_fds=(theirs.fileno(),),
                preexec_fn=limits.apply,
                start_new_session=True,
            )
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write((json.dumps(plan) + "\n").encode())
            proc.stdin.close()
        current, buffer, finished = None, bytearray(), False
        # Cells run again after a restart (later steps call into them): a course step's slice.
        replays = {i for i in results if steps[i]["kind"] == "cell"}
        clock = StepClock(proc.pid, step_timeout, budget, first_wall=60.0, waited=waited)
        fd = proc.stdout.fileno()
        observer = None
        try:
            while True:
                watched = [fd] + [c for c in (channel, observer) if c is not None]
                waited.sleeping()  # a call that wakes this thread waits while it gets a CPU
                ready = select.select(watched, [], [], clock.next_check())[0]
                if channel in ready:
                    observer = Observer.receive(channel, workdir, plan.get("quiet", ()), **record)
                    channel = None  # closed by receive
                if observer in ready and not observer.serve_pending():  # hung up: the
                    observer.finish(observed["events"])  # child's processes are gone
                    observer = None
                # The clock is read on every pass: a child that keeps the pipe busy (a trickle
                # of newlines from the student's code) is timed like a silent one.
                why = clock.expired()
                if time.monotonic() > deadline:
                    why = f"the notebook's re-check ran past {wall:g} s (killed)"
                if why:
                    observed["survivors"] += survivors(uid)
                    clock.stop()
                    _kill(proc)
                    if current is not None:
                        results[current] = {"status": "timeout", "error": why}
                    break
                if fd not in ready:
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    clock.stop()
                    code = proc.wait()
                    if current is not None:
                        how = f"signal {-code}" if code < 0 else f"exit code {code}"
                        error = f"the process ended during this step ({how})"
                        results[current] = {"status": "crashed", "error": error}
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
                        replay = current in replays  # once: a forged start gets no more
                        replays.discard(current)
                        step = steps[current] if current < len(steps) else {"name": "added cell"}
                        clock.added = step["name"].startswith("added cell") and not replay
                    elif word == "done" and current is not None:
                        if current not in results:  # not a step marked "not run"
                            results[current] = _result_line(arg, current)
                        current = None
                        clock.restart()
                    elif word == "finished":
                        finished = True
                        clock.stop()
                        observed["survivors"] += survivors(uid)
        finally:
            if finished or proc.poll() is None:
                _kill(proc)
            if channel is not None:
                channel.close()
            if observer is not None:
                observer.finish(observed["events"])
        if finished or current is None:
            break
        # Restart after the step that hung or crashed: skip it if it was a cell.
        if steps[current]["kind"] == "cell":
            steps[current]["skip"] = True
        else:
            first = current + 1
            if results[current]["status"] == "timeout":
                not_run.mark(steps, current, results, calls or {})
        if first >= len(steps):
            break
    for index in range(len(steps)):  # steps the notebook's time did not reach
        if index not in results and time.monotonic() > deadline and not steps[index].get("skip"):
            results[index] = {"status": "timeout", "error": "not run: the re-check's time ran out"}
    return results, observed


def _result_line(text: str, index: int) -> dict:
    """One ``done`` line's result, validated: it must name the running step."""
    try:
        number, _, payload = text.partition(" ")
        data = json.loads(payload)
        if int(number) != index or data.get("status") not in ("ok", "error"):
            raise ValueError("out of turn")
        return data
    except (ValueError, TypeError, AttributeError, RecursionError, MemoryError):
        return dict(UNREADABLE)


def recheck_notebook(
    submitted_path: Path,
    source_path: Path,
    assignment: str,
    workdir: Path,
    step_timeout: float = STEP_TIMEOUT,
    isolation: Isolation = NO_SANDBOX,
    budget: Budget | None = None,
    wall: float = NOTEBOOK_WALL,
) -> dict:
    """Scan and re-run one submitted notebook; return findings and a verdict per test cell.

    ``isolation``: the run's sandbox settings; the default runs the child without bubblewrap,
    under the same limits (the unit tests). ``budget`` and ``wall``: see `run_sandbox`.
    """
    spec = checks_module.spec(assignment)
    remove(workdir)  # a fresh folder: nothing an earlier try's student code left in it
    workdir.mkdir(parents=True)
    try:
        submitted = nbformat.read(submitted_path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a result to report
        message = "the notebook could not be read"
        verdict = {"passed": False, "status": "unreadable", "message": message}
        return {
            "readable": False,
            "error": f"cannot read the notebook: {exc}",
            "findings": {},
            "verdicts": {c.grade_id: dict(verdict) for c in spec.checks},
        }
    source = nbformat.read(source_path, as_version=4)
    code_cells = notebook_steps(submitted, source)
    # The test cells' helper modules, next to the course's notebook, served from memory: the
    # course cells that import them run as in the student's kernel, and no file of the student's
    # can stand in for them.
    modules = release_modules(Path(source_path).parent)
    if modules:
        loader = {"name": "<course modules>", "source": module_loader_source(modules)}
        code_cells.insert(0, loader | {"answer": "<course>"})
    known = set().union(*(imported_names(c["source"]) for c in code_cells)) if code_cells else set()
    # The explorer's import and calls only draw: accepted by the scan, not run (gmmlib is not
    # mounted here in assignment 1), see grading.display_only.
    display = display_bindings(c["source"] for c in code_cells)
    answers = [c for c in code_cells if c["answer"] != "<course>"]
    found = {c["name"]: scan_cell(c["source"], spec.blocked, known, display) for c in answers}
    findings = {name: f for name, f in found.items() if f}
    arrays, steps = {}, []
    for cell in code_cells:
        steps.append(
            {
                "kind": "cell",
                "name": cell["name"],
                "source": strip_magics(neutralise(cell["source"], display))[0],
            }
        )
    check_steps, calls = {}, {}
    sources = {c["name"]: c["source"] for c in answers}
    for check in spec.checks:
        cases, check_arrays = checks_module.call_plan(check)
        arrays.update(check_arrays)
        check_steps[check.grade_id] = len(steps)
        calls[len(steps)] = not_run.functions_run(cases, check.depends, sources)
        steps.append({"kind": "call", "name": check.grade_id, "cases": cases})
    np.savez(workdir / "cases.npz", **arrays)
    site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    sys_path = list(site)
    if "gmmlib" not in spec.blocked:
        sys_path.append(str(Path(gmmlib.__file__).resolve().parents[1]))
    plan = {
        "steps": steps,
        "sys_path": list(dict.fromkeys(sys_path)),
        # Folders whose reads are not noted: what the sandbox shows (not gmmlib's parent, the
        # repository, on the path where gmmlib is allowed: only gmmlib/ of it is shown).
        "quiet": [str(p) for p in python_env()] + site + ["/usr", "/etc", "/proc", "/sys"],
        "blocked": list(spec.blocked),
        # Loaded before the grader starts watching (trusted code: the course cells' imports),
        # so the calls of a large import are not charged to the student's time asleep.
        "preload": sorted(
            m
            for c in code_cells
            if c["answer"] == "<course>"
            for m in _modules(c["source"])
            if m.split(".")[0] not in spec.blocked
        ),
    }
    results, observed = run_sandbox(workdir, plan, step_timeout, isolation, budget, wall, calls)

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
