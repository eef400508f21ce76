"""The sandbox probe: before anything is graded, one sandbox is started and checked from inside.

`prepare` (once per run, and on each Dask worker) runs `probe` and returns the run's typed
sandbox settings (`grading.isolation.Isolation`): the measured baseline, the uid block, the font
cache and the mechanism that bounds each sandbox (`grading.cgroups`, or rlimits).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from grading import isolation
from grading.isolation import Isolation, Limits, Sandbox, SandboxUnavailableError, python_env


def build_font_cache(folder: Path) -> Path:
    """Matplotlib's font list, built once outside (a fresh sandbox has none and would spend
    seconds per kernel building it); each sandbox gets a copy in its scratch folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if not list(folder.glob("fontlist-*.json")):
        env = dict(os.environ, MPLCONFIGDIR=str(folder), MPLBACKEND="Agg")
        subprocess.run(
            [sys.executable, "-c", "import matplotlib.font_manager"],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return folder


_PROBE = r"""
import json, os, socket, sys, resource
out = {"uid": os.getuid(), "cwd": os.getcwd(), "tmp": sorted(os.listdir("/tmp"))}
try:
    open(sys.argv[1], "a").close()
    out["outside_writable"] = True
except OSError:
    out["outside_writable"] = False
out["home_visible"] = [p for p in json.loads(sys.argv[2]) if os.path.lexists(p)]
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    out["network"] = True
except OSError:
    out["network"] = False
out["interfaces"] = sorted(n for _, n in socket.if_nameindex())
out["nproc"] = resource.getrlimit(resource.RLIMIT_NPROC)[0]
open("written", "w").write("ok")
out["scratch_writable"] = open("written").read() == "ok"
out["shm"] = sorted(os.listdir("/dev/shm"))
import numpy, scipy.special, ipykernel.kernelapp, matplotlib.pyplot  # the kernel's baseline
status = open("/proc/self/status").read().split("\n")
out["vm_peak"] = int(next(l for l in status if l.startswith("VmPeak")).split()[1]) * 1024
print(json.dumps(out))
"""


def probe(scratch: Path, uid: int | None) -> dict:
    """Start one sandbox and check from inside that it isolates (see the module docstring).

    Returns what was measured (``vm_peak``: the address space of an interpreter with the
    kernel's imports, the baseline of `kernel_limits`); raises `SandboxUnavailableError` naming
    the first check that failed.
    """
    if not Path(isolation.BWRAP).exists():
        raise SandboxUnavailableError(
            f"{isolation.BWRAP} is missing: install Debian's bubblewrap (make setup does, as root)"
        )
    if uid is not None and not Path(isolation.SETPRIV).exists():
        raise SandboxUnavailableError(f"{isolation.SETPRIV} is missing (util-linux)")
    sandbox = Sandbox(scratch=scratch, uid=uid)
    shutil.rmtree(scratch, ignore_errors=True)
    sandbox.prepare()
    outside = scratch.parent / "outside-probe"
    home = Path.home()
    bound = python_env() + [scratch]
    entries = sorted(home.iterdir()) if home.is_dir() else []
    private = [str(p) for p in entries if not any(p == b or p in b.parents for b in bound)][:20]
    argv = sandbox.command([sys.executable, "-I", "-c", _PROBE, str(outside), json.dumps(private)])
    limits = Limits(memory=8 * 1024**3, cpu=120)
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, preexec_fn=limits.apply
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailableError(f"bubblewrap did not run: {exc}") from exc
    if proc.returncode != 0:
        raise SandboxUnavailableError(
            f"bubblewrap failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}"
        )
    try:
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise SandboxUnavailableError(f"the probe printed no report: {proc.stdout[-300:]}") from exc
    problems = []
    if seen["outside_writable"] or outside.exists():
        problems.append("a file outside the scratch folder could be written")
    if seen["home_visible"]:
        problems.append(f"the home directory is visible ({seen['home_visible'][0]})")
    if seen["network"] or set(seen["interfaces"]) - {"lo"}:
        problems.append(f"the network is reachable (interfaces {seen['interfaces']})")
    # The sandbox's /tmp is empty but for the folders it shows on purpose (the scratch folder,
    # and the Python environment or gmmlib when they live under /tmp, as in a clone there).
    shown = [scratch, *python_env()]
    ours = {p.relative_to("/tmp").parts[0] for p in shown if p.is_relative_to("/tmp")}
    if set(seen["tmp"]) - ours:
        problems.append(f"/tmp is not private ({sorted(set(seen['tmp']) - ours)[:3]})")
    if uid is not None and seen["uid"] != uid:
        problems.append(f"runs as uid {seen['uid']}, not {uid}")
    if seen["uid"] == 0:
        problems.append("runs as root (the process limit would not bind)")
    if not seen["scratch_writable"]:
        problems.append("the scratch folder is not writable")
    if seen["shm"]:
        problems.append(f"/dev/shm is not private ({seen['shm'][:3]})")
    if problems:
        raise SandboxUnavailableError("the sandbox does not isolate: " + "; ".join(problems))
    outside.unlink(missing_ok=True)
    seen["limits"] = isolation.mechanism(uid)
    return seen


def prepare(out: Path, sandbox: bool = True) -> Isolation:
    """The sandbox settings every worker gets: the probe's measurements, the uid block, the
    font cache, the limits' mechanism. Raises `SandboxUnavailableError` when bubblewrap cannot
    isolate (``gmm-grade`` then refuses unless given ``--no-sandbox``)."""
    if not sandbox:
        return Isolation(sandbox=False, limits=isolation.mechanism(None))
    uid = isolation.default_uid()
    probe_dir = Path(tempfile.mkdtemp(prefix="gmm-probe-"))
    try:
        seen = probe(probe_dir / "scratch", uid)
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    return Isolation(
        sandbox=True,
        uid_base=uid,
        vm_peak=seen["vm_peak"],
        font_cache=str(build_font_cache(Path(out) / "jupyter" / "matplotlib")),
        limits=seen["limits"],
    )
