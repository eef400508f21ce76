"""Limits per sandbox, not per process (`grading.cgroups`, `grading.isolation`).

Each test starts a real bubblewrap sandbox under `Limits.apply` as the grader does, makes the
student's code push one limit, and asserts what stopped it. Where the host has no control
groups the tests assert the documented fallback instead (`grading.isolation.mechanism`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from grading import cgroups
from grading.isolation import (
    NPROC,
    SCRATCH_BYTES,
    SHM_BYTES,
    Limits,
    Sandbox,
    default_uid,
    mechanism,
)

MiB = 1024**2


def _run(sandbox: Sandbox, code: str, limits: Limits, *args: str) -> dict:
    """Run ``code`` (it prints one JSON line last) in ``sandbox`` under ``limits``."""
    sandbox.prepare()
    proc = subprocess.run(
        sandbox.command([sys.executable, "-I", "-c", code, *args]),
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only
        preexec_fn=limits.apply,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


_THREE_CHILDREN = r"""
import json, subprocess, sys
size = int(sys.argv[1])
hold = (
    "import sys; b = bytearray(%d); b[::4096] = b'x' * len(b[::4096]); "
    "print('holding', flush=True); sys.stdin.read()" % size
)
children = [
    subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for _ in range(3)
]
holding = [c.stdout.readline().strip() == "holding" for c in children]  # all at once
for c in children:
    c.stdin.close()
codes = [c.wait() for c in children]
print(json.dumps({"holding": holding, "codes": codes}))
"""


def test_three_children_of_one_sandbox_cannot_together_exceed_its_memory(tmp_path):
    """Three processes of one sandbox each touch 45 % of its memory at the same time: with a
    control group, the group's peak stays under the limit and the kernel kills one of them
    (each alone fits); without, the documented fallback lets all three hold it."""
    memory = 600 * MiB
    limits = Limits(memory=memory, cpu=120)
    sandbox = Sandbox(scratch=tmp_path / "s")
    sandbox.prepare()
    proc = subprocess.Popen(
        sandbox.command([sys.executable, "-I", "-c", _THREE_CHILDREN, str(int(0.45 * memory))]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limits.apply,
    )
    stdout, stderr = proc.communicate(timeout=300)  # a hang guard only
    assert proc.returncode == 0, stderr[-2000:]
    seen = json.loads(stdout.strip().splitlines()[-1])
    host = cgroups.available()
    if host is not None:
        group = cgroups.group(host, "memory", proc.pid)
        name = "memory.max_usage_in_bytes" if host.version == 1 else "memory.peak"
        peak = int((group / name).read_text())
        assert peak <= memory < 3 * int(0.45 * memory), (peak, seen)
        assert -9 in seen["codes"] and sum(seen["holding"]) >= 2, seen  # an OOM kill
        assert mechanism(None).startswith("cgroup")
        cgroups.sweep(host)
    else:  # the fallback binds each process only: documented as NPROC x memory per sandbox
        assert seen["holding"] == [True] * 3 and seen["codes"] == [0, 0, 0], seen
        assert mechanism(None).startswith("rlimits per process")


_FORK_LOOP = r"""
import json, os, time
children = 0
try:
    while children < 10_000:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
except OSError:
    pass
print(json.dumps({"uid": os.getuid(), "children": children}), flush=True)
"""


def test_a_fork_loop_stops_at_the_process_limit_even_as_root(tmp_path):
    """No uid switch: the code is root inside its user namespace, where RLIMIT_NPROC does not
    bind. The control group's pids.max stops the loop; without control groups, only a non-root
    grader's own uid (RLIMIT_NPROC) does."""
    seen = _run(Sandbox(scratch=tmp_path / "s", uid=None), _FORK_LOOP, Limits(4096 * MiB, 60))
    if cgroups.available() is not None or os.geteuid() != 0:
        assert 0 < seen["children"] < NPROC, seen
    else:
        assert seen["children"] == 10_000, seen  # root without control groups: unbounded


_FILL = r"""
import errno, json, os, sys
where, total = sys.argv[1], int(sys.argv[2])
written, error = 0, None
block = b"x" * (4 * 1024**2)
try:  # files of 16 MiB: the cap met is the folder's, not RLIMIT_FSIZE
    for i in range(total // len(block)):
        with open(os.path.join(where, f"fill{i // 4:03d}"), "ab") as f:
            written += f.write(block)
except OSError as exc:
    error = errno.errorcode.get(exc.errno)
print(json.dumps({"written": written, "error": error, "listed": sorted(os.listdir(where))}))
"""


def test_dev_shm_is_private_and_capped(tmp_path):
    seen = _run(
        Sandbox(scratch=tmp_path / "s", uid=None),
        _FILL,
        Limits(4096 * MiB, 60),
        "/dev/shm",
        str(4 * SHM_BYTES),
    )
    assert seen["error"] == "ENOSPC" and seen["written"] <= SHM_BYTES, seen
    assert seen["listed"] and all(n.startswith("fill") for n in seen["listed"]), seen


def test_the_scratch_folder_is_capped_and_gone_afterwards(tmp_path):
    """Also for a grader that is not root (no uid switch here): the scratch folder is a tmpfs
    of its own; what trusted code put there is shown read-only, and nothing written stays."""
    scratch = tmp_path / "s"
    scratch.mkdir()
    (scratch / "inputs.npz").write_bytes(b"trusted")
    seen = _run(
        Sandbox(scratch=scratch, uid=None),
        _FILL,
        Limits(4096 * MiB, 60),
        str(scratch),
        str(2 * SCRATCH_BYTES),
    )
    assert seen["error"] == "ENOSPC" and seen["written"] <= SCRATCH_BYTES, seen
    assert "inputs.npz" in seen["listed"] and len(seen["listed"]) > 2, seen
    assert sorted(p.name for p in scratch.iterdir()) == ["inputs.npz"]
    assert (scratch / "inputs.npz").read_bytes() == b"trusted"


def test_a_sandboxs_group_is_removed_once_it_is_empty(tmp_path):
    """`sweep` removes the groups of processes that have ended, and only those."""
    host = cgroups.available()
    if host is None:
        assert cgroups.sweep() == 0
        return
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        preexec_fn=Limits(1024 * MiB, 60).apply,
    )
    groups = [cgroups.group(host, c, proc.pid) for c in host.parents]
    assert all(str(proc.pid) in (g / "cgroup.procs").read_text().split() for g in groups)
    cgroups.sweep(host)
    assert all(g.is_dir() for g in groups)  # its process is alive: kept
    proc.stdin.close()
    proc.wait()
    cgroups.sweep(host)
    assert not any(g.exists() for g in groups)
    assert (Path(f"/proc/{os.getpid()}/cgroup")).exists()


_RELINK = r"""
import json, os
for name in os.listdir(".matplotlib"):
    os.unlink(os.path.join(".matplotlib", name))
    os.symlink("/etc/hostname", os.path.join(".matplotlib", name))
print(json.dumps({"now": sorted(os.listdir(".matplotlib"))}))
"""


def test_what_trusted_code_put_in_the_scratch_folder_is_a_copy(tmp_path):
    """The student's code, as the grader runs it (as root: under a uid of its own), may change
    its copy of the font cache at will (links included); the host folder the grader reuses on
    a restart is never touched."""
    scratch = tmp_path / "s"
    (scratch / ".matplotlib").mkdir(parents=True)
    (scratch / ".matplotlib" / "fontlist.json").write_text("fonts")
    seen = _run(Sandbox(scratch=scratch, uid=default_uid()), _RELINK, Limits(4096 * MiB, 60))
    assert seen["now"] == ["fontlist.json"], seen
    assert not (scratch / ".matplotlib" / "fontlist.json").is_symlink()
    assert (scratch / ".matplotlib" / "fontlist.json").read_text() == "fonts"
