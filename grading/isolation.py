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
import os
import resource
import shutil
import signal
import sys
import sysconfig
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from grading import cgroups
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
#: The environment of every process that runs student code (plus its PATH, HOME, ...): one BLAS
#: thread, two malloc arenas, matplotlib without a display.
CODE_ENV = {
    **{"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    **{"MALLOC_ARENA_MAX": "2", "MPLBACKEND": "Agg", "LANG": "C.UTF-8"},
}
#: prctl's option number for "signal me when my parent dies" (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: First uid handed to sandboxes (see `sandbox_uid`); far above any account's uid.
UID_BASE = 3_000_000


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox: of its first process, and of everything it starts."""

    memory: int  # bytes: RLIMIT_AS of each process; with a cgroup, of all of them together
    cpu: int  # RLIMIT_CPU, seconds (a backstop: wall timeouts act first)
    fsize: int = 64 * 1024**2  # RLIMIT_FSIZE, bytes
    nproc: int = NPROC  # processes + threads: RLIMIT_NPROC (a non-root uid), cgroup pids.max
    #: Put the process in a control group of its own (`grading.cgroups`) where the host has
    #: them: memory, processes and CPU are then bounded for the sandbox as a whole.
    per_sandbox: bool = True

    def apply(self) -> None:
        """Set the limits on this process (call in the child before exec: ``preexec_fn``).

        First asks the kernel to kill this process when its parent dies (PR_SET_PDEATHSIG,
        kept across exec), as bwrap's --die-with-parent does: a grader killed mid-notebook (a
        lost Dask worker, a timeout) leaves no student process behind, with or without the
        sandbox (first: a parent dying before it is the one case the signal misses). Then,
        where the host offers control groups, the process moves into a group of its own with
        the memory, process and CPU limits (`grading.cgroups.join`; an error stops the child:
        it never runs with less than it was promised).
        """
        die_with_parent()
        host = cgroups.available() if self.per_sandbox else None
        if host is not None:
            cgroups.join(host, self.memory, self.nproc)
        resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu, self.cpu + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.fsize, self.fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (self.nproc, self.nproc))


def mechanism(uid: int | None) -> str:
    """How a sandbox's limits bind on this host, as the probe, the summary and grades.csv say:
    control groups, or the fallback (a uid of the sandbox's own: RLIMIT_NPROC counts its
    processes; RLIMIT_AS bounds each one, so a sandbox holds at most NPROC x its memory)."""
    host = cgroups.available()
    if host is not None:
        return host.name
    return "rlimits per process" + (", own uid" if uid is not None else "")


@dataclass(frozen=True)
class Isolation:
    """The sandbox settings of a run, as every grading process uses them: made by the probe
    (`grading.probe.prepare`), sent to each ``grading.worker`` in its job and on to
    ``grading.kernel`` in ``$GMM_SANDBOX``, read by the re-check. They cross a process
    boundary only as `to_dict` writes them and `from_dict` reads them.

    ``sandbox``: bubblewrap on (``--no-sandbox``: off); ``uid_base``: the first sandbox uid
    (root only; see `sandbox_uid`); ``vm_peak``: the probe's baseline address space;
    ``font_cache``: matplotlib's font list to copy in; ``limits``: `mechanism`; ``uid``: the
    uid of one worker's sandboxes (`for_slot`).
    """

    sandbox: bool
    uid_base: int | None = None
    vm_peak: int | None = None
    font_cache: str | None = None
    limits: str = ""
    uid: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Isolation:
        """The settings `to_dict` wrote (None: no sandbox); unknown keys are an error."""
        data = {"sandbox": False} if data is None else data
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown or "sandbox" not in data:
            raise ValueError(f"not sandbox settings: unknown {sorted(unknown)} in {data!r}"[:300])
        return cls(**data)

    def for_slot(self, slot: int) -> Isolation:
        """The settings of worker ``slot``: its own sandbox uid (see `sandbox_uid`)."""
        return self if self.uid_base is None else replace(self, uid=self.uid_base + slot)

    @property
    def code_uid(self) -> int | None:
        """The uid student code runs as (None: the grader's own, or no sandbox)."""
        return self.uid if self.sandbox else None


class OrphanedError(RuntimeError):
    """The process that started this one died before it could ask to die with it."""


def die_with_parent(parent: int | None = None) -> None:
    """prctl(PR_SET_PDEATHSIG, SIGKILL) on this process: SIGKILL when its parent exits.

    A parent that died *before* the prctl sends nothing: this process was already handed to
    init (or a subreaper), which never exits, and it would live on with no one to stop it.
    ``parent``: the pid of the process that started this one; if it is no longer the parent
    after the prctl, `OrphanedError` (the caller stops there).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent is not None and os.getppid() != parent:
        raise OrphanedError(f"the process that started this one (pid {parent}) is gone")


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
#: Size of the scratch folder (the working directory): a tmpfs of its own in the sandbox, so
#: what student code writes is capped whoever runs the grader, and gone when the sandbox ends.
SCRATCH_BYTES = 256 * 1024**2
#: Where the host's scratch folder (what trusted code put there) is shown inside, read-only;
#: it is copied into the capped scratch folder before the code starts.
SEED = "/run/gmm-scratch-seed"
#: Size of the sandbox's private /dev/shm (POSIX shared memory, also memory no rlimit counts).
SHM_BYTES = 64 * 1024**2


@dataclass
class Sandbox:
    """The bwrap command line for one piece of student code.

    ``scratch`` is the only writable folder (it becomes the working directory); ``readable``
    are extra files or folders shown read-only; ``uid`` is the uid to run as (root only; see
    `sandbox_uid`); ``bind`` maps further host folders to be writable (the kernel's runtime
    folder with its connection file and IPC sockets).

    ``scratch_bytes``: the scratch folder is, inside the sandbox, a tmpfs of that size (None:
    the host folder itself, uncapped). What trusted code put in the host folder before the
    start (the font cache, the re-check's inputs) is copied in first; what the student's code
    writes there stays in the sandbox's memory, counted by its memory limit, and is gone when
    the sandbox ends (the host folder is never written).
    """

    scratch: Path
    readable: list[Path] = field(default_factory=list)
    writable: list[Path] = field(default_factory=list)
    uid: int | None = None
    env: dict = field(default_factory=dict)
    #: Package folders of the Python environment the code must not reach (gmmlib in the
    #: from-scratch assignment): not shown, or an empty folder where they would be.
    hidden: list[Path] = field(default_factory=list)
    scratch_bytes: int | None = SCRATCH_BYTES

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
            "--perms",
            "1777",
            "--size",
            str(SHM_BYTES),
            "--tmpfs",
            "/dev/shm",
            "--perms",
            "1777",  # writable by the sandbox's uid too (as root it is not the tmpfs's owner)
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
        if self.scratch_bytes is None:
            args += parents(self.scratch) + ["--bind", str(self.scratch), str(self.scratch)]
        else:
            args += parents(self.scratch) + self._capped_scratch()
        for path in self.writable:
            args += parents(path) + ["--bind", str(path), str(path)]
        args += ["--chdir", str(self.scratch), "--clearenv"]
        env = {
            **CODE_ENV,
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(self.scratch),
            "TMPDIR": "/tmp",
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
        if self.scratch_bytes is not None:  # the seed's files, as the sandbox's uid's own
            argv = ["/bin/sh", "-c", f'cp -R {SEED}/. . 2>/dev/null; exec "$@"', "sh", *argv]
        return args + list(argv)

    def _capped_scratch(self) -> list[str]:
        """bwrap arguments: a tmpfs of ``scratch_bytes`` at the scratch folder, writable by the
        sandbox's uid, and the host folder shown read-only at `SEED` (copied in by `command`)."""
        return [
            "--perms",
            "1777",
            "--size",
            str(self.scratch_bytes),
            "--tmpfs",
            str(self.scratch),
            "--perms",
            "0755",
            "--dir",
            str(Path(SEED).parent),
            "--ro-bind",
            str(self.scratch),
            SEED,
        ]

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


class SandboxUnavailableError(RuntimeError):
    """bubblewrap cannot isolate student code on this machine (the message says why)."""


#: Baseline used when none was measured (``--no-sandbox``): a kernel with numpy, scipy and
#: matplotlib imported measured ~0.4 GB of address space here.
DEFAULT_BASELINE = 1024**3


def code_limits(vm_peak: int | None, cpu: int) -> Limits:
    """Limits of a kernel or re-check process: its measured baseline (the probe's ``vm_peak``)
    + `MEMORY_HEADROOM`."""
    return Limits(memory=int(vm_peak or DEFAULT_BASELINE) + MEMORY_HEADROOM, cpu=cpu)
