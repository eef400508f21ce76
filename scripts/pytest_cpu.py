"""CPU seconds per test and per fixture set-up: a pytest plugin, and its report.

    PYTHONPATH=scripts PYTEST_CPU_DIR=results/cpu pytest -p pytest_cpu -n 2 ...
    python scripts/pytest_cpu.py results/cpu [N]

Wall times mean little on a shared 2-core machine; CPU seconds compare. Each process (an
xdist worker, or the one pytest process) appends a JSON line per test phase and per fixture
set-up to ``$PYTEST_CPU_DIR/<worker>-<pid>.jsonl``: the CPU of the process and of its reaped
children (`resource.getrusage`), plus that of its live descendants (psutil: Chromium, a Jupyter
server, Dask workers). What it misses: processes that leave the tree before they are reaped,
e.g. a sandbox killed with SIGKILL whose children go to init. Grading loses most: the graded
class alone counts 75 CPU s here and 325 s in a cgroup of its own (2026-12-08). For totals, run
pytest in a cgroup (v1: /sys/fs/cgroup/cpuacct/NAME/cpuacct.usage, in ns).
"""

from __future__ import annotations

import collections
import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest

_out = None


def cpu_seconds() -> float:
    """CPU of this process, its reaped children and its live descendants, in seconds."""
    import psutil

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:  # gone meanwhile: counted by whoever reaps it
            pass
    return total


def _emit(**record) -> None:
    global _out
    if _out is None:
        folder = Path(os.environ.get("PYTEST_CPU_DIR", "results/cpu"))
        folder.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        _out = open(folder / f"{worker}-{os.getpid()}.jsonl", "a")  # noqa: SIM115 - kept open
    _out.write(json.dumps(record) + "\n")
    _out.flush()


def _measured(kind: str, **info):
    at, started, wall = time.time(), cpu_seconds(), time.monotonic()
    yield
    _emit(kind=kind, cpu=cpu_seconds() - started, wall=time.monotonic() - wall, at=at, **info)


def _hook(phase):
    @pytest.hookimpl(hookwrapper=True)
    def hook(item, *rest):
        yield from _measured("phase", nodeid=item.nodeid, phase=phase)

    return hook


pytest_runtest_setup = _hook("setup")
pytest_runtest_call = _hook("call")
pytest_runtest_teardown = _hook("teardown")


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    node = getattr(request, "node", None)
    yield from _measured(
        "fixture", name=fixturedef.argname, scope=fixturedef.scope, nodeid=node.nodeid
    )


def report(folder: Path, top: int = 30) -> str:
    """The ``top`` tests by CPU seconds, CPU per module, and the costly fixture set-ups."""
    tests = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    fixtures = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["kind"] == "phase":
                index = ("setup", "call", "teardown").index(record["phase"])
                tests[record["nodeid"]][index] += record["cpu"]
            elif record["kind"] == "fixture" and record["cpu"] >= 1:
                fixtures.append(record)
    modules = collections.Counter()
    for nodeid, phases in tests.items():
        modules[nodeid.split("::")[0]] += sum(phases)
    lines = [f"{len(tests)} tests, {sum(modules.values()):.0f} CPU s", "", "per module:"]
    lines += [f"  {cpu:7.1f}  {module}" for module, cpu in modules.most_common(25)]
    lines += ["", "tests (CPU s: total = setup + call + teardown):"]
    ranked = sorted(tests.items(), key=lambda item: -sum(item[1]))[:top]
    lines += [f"  {sum(p):7.1f} = {p[0]:.1f} + {p[1]:.1f} + {p[2]:.1f}  {n}" for n, p in ranked]
    lines += ["", "fixture set-ups of 1 CPU s or more:"]
    lines += [
        f"  {f['cpu']:7.1f}  {f['name']} ({f['scope']}) {f['nodeid']}"
        for f in sorted(fixtures, key=lambda f: -f["cpu"])
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 30))
