"""Limits per sandbox, not per process: one control group per sandbox, where the host offers it.

A process limit (``RLIMIT_AS``, ``RLIMIT_NPROC``) binds each process alone: three children of one
kernel could hold three times the memory, and ``RLIMIT_NPROC`` does not bind root at all. A
control group binds a sandbox and everything it starts, together: memory (the sum of its
processes and of the tmpfs pages they write), process count, CPU share.

`available` probes the host once: cgroup **v2** where the grader's own group delegates the
``memory`` and ``pids`` controllers to children (``cgroup.subtree_control``), else cgroup **v1**
where the ``memory``, ``pids`` and ``cpu`` hierarchies are mounted and writable (root on these
machines). `join` (called by `grading.isolation.Limits.apply` in the child, before exec) makes
a fresh group for the calling process under the grader's own group, writes the limits and moves
the process in; the sandbox and all its descendants stay in it. A group outlives its last
process as an empty folder: `sweep` removes those whose process is gone (called before each new
group, at the end of a run and when a Dask worker closes), first killing what is still inside
such a group: a sandbox orphaned by a grader that died at the wrong moment. Without either,
`available` returns None and the documented fallback applies (`grading.isolation`: a non-root
uid with ``RLIMIT_NPROC``, ``RLIMIT_AS`` per process).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PREFIX = "gmm-sandbox-"
#: CPU period and quota of a sandbox: one core at most.
CPU_PERIOD_US = 100_000
CPU_QUOTA_US = 100_000


@dataclass(frozen=True)
class Host:
    """Where this host's control groups are: ``version`` 1 or 2, and the folder under which a
    sandbox's group is made, per controller (v2: one folder for all)."""

    version: int
    parents: dict[str, Path]

    @property
    def name(self) -> str:
        return f"cgroup v{self.version} ({', '.join(sorted(self.parents))})"


def _own_paths(pid: str = "self") -> dict[str, str]:
    """{controller or "" (v2): the group path of process ``pid``} from /proc/PID/cgroup."""
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK)


def _v2(paths: dict) -> Host | None:
    for mount in (ROOT, ROOT / "unified"):
        here = mount / paths.get("", "/").lstrip("/")
        control = here / "cgroup.subtree_control"
        try:
            delegated = set(control.read_text().split())
        except OSError:
            continue
        if {"memory", "pids"} <= delegated and _writable(here):
            wanted = {"memory", "pids", "cpu"} & delegated
            return Host(2, dict.fromkeys(sorted(wanted), here))
    return None


def _v1(paths: dict) -> Host | None:
    parents = {}
    for controller in ("memory", "pids", "cpu"):
        here = ROOT / controller / paths.get(controller, "/").lstrip("/")
        if _writable(here) and (here / "cgroup.procs").exists():
            parents[controller] = here
    return Host(1, parents) if {"memory", "pids"} <= set(parents) else None


def available() -> Host | None:
    """The host's usable control groups (v2 preferred), or None."""
    try:
        paths = _own_paths()
    except OSError:
        return None
    return _v2(paths) or _v1(paths)


def _settings(version: int, controller: str, memory: int, nproc: int) -> dict[str, str]:
    if version == 2:
        return {
            "memory": {"memory.max": str(memory), "memory.swap.max": "0"},
            "pids": {"pids.max": str(nproc)},
            "cpu": {"cpu.max": f"{CPU_QUOTA_US} {CPU_PERIOD_US}"},
        }[controller]
    return {
        # memsw (memory + swap) must be set after, and be >=, the memory limit.
        "memory": {
            "memory.limit_in_bytes": str(memory),
            "memory.memsw.limit_in_bytes": str(memory),
        },
        "pids": {"pids.max": str(nproc)},
        "cpu": {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(CPU_QUOTA_US)},
    }[controller]


def join(host: Host, memory: int, nproc: int, pid: int | None = None) -> list[Path]:
    """Make a group for process ``pid`` (default: this one) with these limits and move it in;
    return the group's folders (one per v1 controller)."""
    pid = os.getpid() if pid is None else pid
    sweep(host)
    folders = []
    for controller in sorted(host.parents):
        folder = group(host, controller, pid)
        if folder in folders:  # v2: one folder for every controller
            continue
        folder.mkdir(exist_ok=True)
        folders.append(folder)
    for controller in sorted(host.parents):
        folder = group(host, controller, pid)
        for name, value in _settings(host.version, controller, memory, nproc).items():
            try:
                (folder / name).write_text(value)
            except FileNotFoundError:  # memsw / swap.max: the host has no swap accounting
                pass
    for folder in folders:
        (folder / "cgroup.procs").write_text(str(pid))
    return folders


def sweep(host: Host | None = None) -> int:
    """Remove the sandboxes' groups whose process has gone; return how many were removed.

    A group is named after the sandbox's first process (bwrap, which ``--die-with-parent``
    takes down with the grader). Anything still in a group whose first process is gone was
    orphaned on the way (its grader died before the death signal was set up): killed here,
    and its group removed by a later sweep, once it has exited."""
    host = host or available()
    removed = 0
    for parent in set((host.parents if host else {}).values()):
        for folder in parent.glob(f"{_prefix()}*"):  # groups of this PID namespace only
            pid = folder.name[len(_prefix()) :]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                if kill_members(folder):
                    continue
                try:
                    folder.rmdir()
                    removed += 1
                except OSError:  # processes still in it, or just removed by another sweep
                    pass
    return removed


def kill_members(folder: Path) -> int:
    """SIGKILL every process in the group at ``folder``; return how many there were."""
    try:
        members = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return 0
    for member in members:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(members)


def group(host: Host, controller: str, pid: int) -> Path:
    """The folder of process ``pid``'s sandbox group for ``controller`` (see `join`)."""
    return host.parents[controller] / f"{_prefix()}{pid}"


def _prefix() -> str:
    """``gmm-sandbox-<PID namespace>-``: a grader sees the processes of its own namespace only,
    so it judges (and sweeps) only the groups made there."""
    namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    return f"{PREFIX}{namespace[5:-1]}-"
