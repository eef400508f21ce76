"""Where a student's code runs: a bubblewrap sandbox with resource limits (one place for both).

Every process that executes a submission (the nbgrader kernel, `grading.kernel`; the re-check
child, `grading.recheck`) is started through `Sandbox.command` under `Limits.apply`:

- **file system**: only the Python environment (``sys.base_prefix``, the virtualenv, the
  repository's ``gmmlib/`` for the editable install) and ``/usr``, ``/etc`` are visible,
  read-only, plus the paths the caller names (the release notebook, the student's own
  submission) read-only and one scratch folder writable. The course, ``solutions/``, other
  students, the gradebooks, the submissions folder, other kernels' connection files and
  ``$HOME`` do not exist inside; ``/tmp`` is a private tmpfs.
- **no network** (``--unshare-net``: only the sandbox's own loopback), its own PID namespace
  (``--unshare-pid --die-with-parent``: whatever the code starts dies with the sandbox);
- **limits** (`Limits`): address space, CPU seconds, file size, no core dumps, and a process
  count that binds because the code runs as a non-root uid (``setpriv``): ``RLIMIT_NPROC``
  does not bind root, so as root the sandbox switches to `sandbox_uid`, a uid no other
  sandbox running at the same time uses (the count is per uid, machine-wide).

`probe` starts one sandbox and checks all of this from inside before anything is graded.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from grading.course import REPO

BWRAP = "/usr/bin/bwrap"
SETPRIV = "/usr/bin/setpriv"
#: Extra address space a kernel or re-check process gets on top of its measured baseline (an
#: interpreter with numpy, scipy and ipykernel imported): the exercises need far less, and a
#: runaway allocation fails at once as MemoryError instead of paging the machine.
MEMORY_HEADROOM = 1024**3
#: CPU seconds of one kernel / one re-check process (backstops: wall-clock timeouts act first).
KERNEL_CPU = 600
RECHECK_CPU = 120
#: Processes + threads one sandbox may have (an idle kernel has ~10 threads).
NPROC = 48
#: prctl's option number for "signal me when my parent dies" (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: First uid handed to sandboxes (see `sandbox_uid`); far above any account's uid.
UID_BASE = 3_000_000


@dataclass(frozen=True)
class Limits:
    """Resource limits of one process that runs student code (inherited by its children)."""

    memory: int  # RLIMIT_AS, bytes
    cpu: int  # RLIMIT_CPU, seconds (a backstop: wall timeouts act first)
    fsize: int = 64 * 1024**2  # RLIMIT_FSIZE, bytes
    nproc: int = NPROC  # RLIMIT_NPROC (binds only a non-root uid)

    def apply(self) -> None:
        """Set the limits on this process (call in the child before exec: ``preexec_fn``).

        Also asks the kernel to kill this process when its parent dies (PR_SET_PDEATHSIG, kept
        across exec), as bwrap's --die-with-parent does: a grader killed mid-notebook (a lost
        Dask worker, a timeout) leaves no student process behind, with or without the sandbox.
        """
        die_with_parent()
        resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu, self.cpu + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.fsize, self.fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (self.nproc, self.nproc))

    def to_json(self) -> dict:
        return {"memory": self.memory, "cpu": self.cpu, "fsize": self.fsize, "nproc": self.nproc}


def die_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) on this process: SIGKILL when its parent exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def sandbox_uid(slot: int) -> int:
    """The uid of worker ``slot``'s sandboxes: unique among the sandboxes of this run and of
    any other run on the machine (the pipeline's pid picks a block of 64 uids)."""
    return UID_BASE + (os.getpid() % 100_000) * 64 + slot


def python_env() -> list[Path]:
    """Folders that hold this Python: the base interpreter, the virtualenv, site-packages, and
    the repository's gmmlib/ (an editable install)."""
    paths = {
        Path(sys.base_prefix),
        Path(sys.prefix),
        Path(sys.exec_prefix),
        Path(sysconfig.get_paths()["purelib"]),
        Path(sysconfig.get_paths()["platlib"]),
        REPO / "gmmlib",
    }
    return sorted(p.resolve() for p in paths if p.exists())


def _covered(path: Path, by: list[Path]) -> bool:
    return any(path == p or p in path.parents for p in by)


#: Size of each sandbox's private /tmp. It is memory (tmpfs), which no process limit counts:
#: without a size, files written there could take half the machine's memory from everyone.
TMP_BYTES = 256 * 1024**2


@dataclass
class Sandbox:
    """The bwrap command line for one piece of student code.

    ``scratch`` is the only writable folder (it becomes the working directory); ``readable``
    are extra files or folders shown read-only; ``uid`` is the uid to run as (root only; see
    `sandbox_uid`); ``bind`` maps further host folders to be writable (the kernel's runtime
    folder with its connection file and IPC sockets).
    """

    scratch: Path
    readable: list[Path] = field(default_factory=list)
    writable: list[Path] = field(default_factory=list)
    uid: int | None = None
    env: dict = field(default_factory=dict)
    #: Package folders of the Python environment the code must not reach (gmmlib in the
    #: from-scratch assignment): not shown, or an empty folder where they would be.
    hidden: list[Path] = field(default_factory=list)

    def command(self, argv: list[str]) -> list[str]:
        args = [
            BWRAP,
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            str(TMP_BYTES),
            "--tmpfs",
            "/tmp",
        ]
        system = [Path(p) for p in ("/usr", "/etc", "/lib", "/lib64", "/lib32", "/bin", "/sbin")]
        for path in system:
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.exists():
                args += ["--ro-bind", str(path), str(path)]
        shown = [p for p in system if p.exists()]
        made: set[Path] = set()

        def parents(path: Path) -> list[str]:
            # bwrap would create missing parents with the host's modes (/root is 0700):
            # make them traversable for the sandbox's uid, and nothing more.
            out = []
            for parent in reversed(path.parents[:-1]):
                if parent not in made and not _covered(parent, shown):
                    made.add(parent)
                    out += ["--perms", "0755", "--dir", str(parent)]
            return out

        hidden = [Path(p).resolve() for p in self.hidden]
        for path in python_env() + [Path(p).resolve() for p in self.readable]:
            if not _covered(path, shown) and not _covered(path, hidden):
                args += parents(path) + ["--ro-bind", str(path), str(path)]
                shown.append(path)
        for path in hidden:
            if _covered(path, shown):  # inside a folder shown (site-packages): mask it
                args += ["--tmpfs", str(path)]
        for path in [self.scratch, *self.writable]:
            args += parents(path) + ["--bind", str(path), str(path)]
        args += ["--chdir", str(self.scratch), "--clearenv"]
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.scratch),
            "TMPDIR": "/tmp",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MALLOC_ARENA_MAX": "2",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(self.scratch / ".matplotlib"),
            "IPYTHONDIR": str(self.scratch / ".ipython"),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            # The Python environment is read-only here: never try to write bytecode into it.
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.env,
        }
        for key, value in env.items():
            args += ["--setenv", key, value]
        if self.uid is not None:
            args += [
                "--cap-add",
                "CAP_SETUID",
                "--cap-add",
                "CAP_SETGID",
                "--",
                SETPRIV,
                f"--reuid={self.uid}",
                f"--regid={self.uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ]
        else:
            args += ["--unshare-user", "--"]
        return args + list(argv)

    def prepare(self, font_cache: Path | None = None) -> None:
        """Create the scratch folder owned by the sandbox's uid, with the font cache.

        Called again when a sandbox restarts, so the scratch folder may hold what the student's
        code left there: this runs as root and never writes through it. The font cache is
        copied to a fresh folder (whatever was at its name, a link to another student's
        notebook say, is removed first, without following it).
        """
        self.scratch.mkdir(parents=True, exist_ok=True)
        if font_cache is not None and font_cache.is_dir():
            target = self.scratch / ".matplotlib"
            remove(target)
            shutil.copytree(font_cache, target)
        if self.uid is not None:
            for folder, dirs, files in os.walk(self.scratch):
                for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                    os.chown(name, self.uid, self.uid, follow_symlinks=False)
            for path in self.writable:
                os.chown(path, self.uid, self.uid, follow_symlinks=False)


def package_folders(names) -> list[Path]:
    """Where the top-level packages ``names`` are installed (found without importing them)."""
    import importlib.util

    folders = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            folders += [Path(p) for p in spec.submodule_search_locations or ()]
    return folders


def remove(path: Path) -> None:
    """Delete whatever is at ``path`` (file, link or folder) without following links."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def default_uid() -> int | None:
    """As root: a uid of our own (see the module docstring); otherwise the user's own."""
    return sandbox_uid(0) if os.geteuid() == 0 else None


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
import numpy, scipy.special, ipykernel.kernelapp, matplotlib.pyplot  # the kernel's baseline
status = open("/proc/self/status").read().split("\n")
out["vm_peak"] = int(next(l for l in status if l.startswith("VmPeak")).split()[1]) * 1024
print(json.dumps(out))
"""


class SandboxUnavailableError(RuntimeError):
    """bubblewrap cannot isolate student code on this machine (the message says why)."""


def probe(scratch: Path, uid: int | None) -> dict:
    """Start one sandbox and check from inside that it isolates (see the module docstring).

    Returns what was measured (``vm_peak``: the address space of an interpreter with the
    kernel's imports, the baseline of `kernel_limits`); raises `SandboxUnavailableError` naming
    the first check that failed.
    """
    if not Path(BWRAP).exists():
        raise SandboxUnavailableError(
            f"{BWRAP} is missing: install Debian's bubblewrap (make setup does, as root)"
        )
    if uid is not None and not Path(SETPRIV).exists():
        raise SandboxUnavailableError(f"{SETPRIV} is missing (util-linux)")
    sandbox = Sandbox(scratch=scratch, uid=uid)
    shutil.rmtree(scratch, ignore_errors=True)
    sandbox.prepare()
    outside = scratch.parent / "outside-probe"
    home = Path.home()
    bound = python_env() + [scratch]
    private = (
        [
            str(p)
            for p in sorted(home.iterdir())
            if not any(p == b or p in b.parents for b in bound)
        ][:20]
        if home.is_dir()
        else []
    )
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
    if not (scratch / "written").exists():
        problems.append("the scratch folder is not writable")
    if problems:
        raise SandboxUnavailableError("the sandbox does not isolate: " + "; ".join(problems))
    outside.unlink(missing_ok=True)
    return seen


#: Baseline used when none was measured (``--no-sandbox``): a kernel with numpy, scipy and
#: matplotlib imported measured ~0.4 GB of address space here.
DEFAULT_BASELINE = 1024**3


def code_limits(vm_peak: int | None, cpu: int) -> Limits:
    """Limits of a kernel or re-check process: its measured baseline (the probe's ``vm_peak``)
    + `MEMORY_HEADROOM`."""
    return Limits(memory=int(vm_peak or DEFAULT_BASELINE) + MEMORY_HEADROOM, cpu=cpu)
