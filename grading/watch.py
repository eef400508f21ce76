"""What the grader sees of a sandbox from outside it, through /proc.

The student's code can forge or silence anything it reports itself (an audit hook in its own
process, its own output). What is read here it cannot touch: the processes of the sandbox's uid
still alive when a run ends, the CPU time and time asleep of a process tree (`Meter`, and the
re-check's per-step `StepClock` against a notebook's `Budget`), and the files, connections and
programs a re-check child's calls name (`Observer`). `grading.student_run` (the kernel) and
`grading.recheck` (the re-check's child) both use it.
"""

from __future__ import annotations

import ctypes
import fcntl
import math
import os
import select
import signal
import socket
import struct
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


def cpu_seconds(pid: int) -> float:
    """CPU time of the process tree under ``pid`` (reaped children included)."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


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


def busy_seconds(pid: int) -> float:
    """Seconds the threads of the tree under ``pid`` spent running or waiting to run (from
    /proc's schedstat): what is left of the wall clock is time asleep, which a loaded
    machine does not inflate."""
    total = 0
    for p in descendants(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    run, wait = f.read().split()[:2]
                total += int(run) + int(wait)
            except (OSError, ValueError):
                pass
    return total / 1e9


class Meter:
    """CPU time and time asleep of the process tree under ``pid`` since `start`: asleep is
    the wall clock no thread of it spent running or waiting for a CPU, so neither measure
    grows when the machine is loaded."""

    def __init__(self, pid: int):
        self.pid = pid
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.cpu0, self.busy0 = cpu_seconds(self.pid), busy_seconds(self.pid)

    def used(self) -> tuple[float, float]:
        """(CPU seconds, seconds asleep) since `start`."""
        wall = time.monotonic() - self.t0
        busy = busy_seconds(self.pid) - self.busy0
        return cpu_seconds(self.pid) - self.cpu0, max(wall - busy, 0.0)


#: The least a step gets of what is left of a `Budget` (a slow honest step is not cut short).
MIN_STEP = 1.0
#: What a step gets once the budget is spent: short sleepers or spinners that each stay under
#: `MIN_STEP` cannot share out more than the budget between them.
SPENT_STEP = 0.25
#: A step's wall-clock backstop, in multiples of its CPU limit (`StepClock`).
WALL_STEPS = 15


@dataclass
class Budget:
    """What one notebook may still spend over all its steps (and restarts): CPU seconds, and
    seconds asleep (wall clock neither running nor waiting for a CPU, so a loaded machine does
    not use it up). A loop that never ends, or a row of sleepers, costs a slot this much."""

    cpu: float
    asleep: float
    #: A wall-clock backstop for a user that has one (the kernel's run, `grading.student_run`);
    #: the re-check's steps have their own (`StepClock`).
    wall: float = math.inf


def allowance(left: float) -> float:
    """What the running step may use of a budget with ``left`` seconds: at least `MIN_STEP`
    while it lasts, `SPENT_STEP` once it is spent."""
    return max(left, MIN_STEP) if left > 0 else SPENT_STEP


class StepClock:
    """One step's limits in a process tree: ``limit`` seconds of CPU time and its `allowance`
    of the notebook's `Budget`, plus `WALL_STEPS` x ``limit`` of wall time as a backstop (time
    asleep is what the budget catches; the backstop is for a machine so loaded that CPU time
    barely moves). The process's start (imports from a cold disk) is not charged as sleep."""

    def __init__(self, pid: int, limit: float, budget: Budget, first_wall: float):
        self.limit, self.budget, self.meter = limit, budget, Meter(pid)
        self.counting_sleep = False
        self.wall_deadline = self.meter.t0 + first_wall

    def _used(self) -> tuple[float, float]:
        cpu, asleep = self.meter.used()
        return cpu, asleep if self.counting_sleep else 0.0

    def restart(self) -> None:
        """A step began or ended: charge the time since the last mark to the budget."""
        cpu, asleep = self._used()
        self.budget.cpu -= cpu
        self.budget.asleep -= asleep
        self.counting_sleep = True
        self.meter.start()
        self.wall_deadline = self.meter.t0 + WALL_STEPS * self.limit

    def expired(self) -> str | None:
        """Why the running step must stop (in words), or None."""
        cpu, asleep = self._used()
        if cpu > min(self.limit, allowance(self.budget.cpu)):
            return f"no result after {cpu:.1f} s of CPU time (killed)"
        if asleep > allowance(self.budget.asleep):
            return f"no result after {asleep:.1f} s asleep (killed)"
        if time.monotonic() > self.wall_deadline:
            return f"no result after {WALL_STEPS * self.limit:g} s (killed)"
        return None


#: seccomp's user-notification ioctls (linux/seccomp.h): receive one stopped call, answer it.
NOTIF_RECV, NOTIF_SEND = 0xC0502100, 0xC0182101
#: The answer "carry on with the call as the program made it" (SECCOMP_USER_NOTIF_FLAG_CONTINUE).
NOTIF_CONTINUE = 1
#: The calls `Observer` is asked about, by audit arch (x86_64, aarch64) and number (the
#: re-check's child, `grading.sandbox._WATCHED`, asks for these).
CALLS = {
    0xC000003E: {
        **{2: "open", 257: "openat", 437: "openat2", 42: "connect", 59: "execve"},
        **{322: "execveat", 317: "seccomp", 425: "io_uring_setup", 56: "clone"},
        **{435: "clone3", 57: "fork", 58: "vfork"},
    },
    0xC00000B7: {
        **{56: "openat", 437: "openat2", 203: "connect", 221: "execve", 281: "execveat"},
        **{277: "seccomp", 425: "io_uring_setup", 220: "clone", 435: "clone3"},
    },
}
#: clone's flag for a thread of the same process (not a new process).
CLONE_THREAD = 0x10000
_WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_AT_FDCWD = -100


class Observer:
    """What a re-check child opens, connects to and runs, seen from the grader's process.

    The child puts itself, before any student code runs, under a seccomp filter that stops each
    of those calls (`CALLS`) until the holder of the filter's listener has looked at it, and
    hands the listener over (`grading.sandbox`); the child keeps no handle to it. Here the
    call's arguments are read from ``/proc/<pid>/mem`` and the paths checked against the
    sandbox's own root (``/proc/<pid>/root``), then the call goes on unchanged. Nothing the
    student's code does in its own interpreter (silencing the audit hook, closing descriptors)
    reaches this record; a filter of its own is itself a call seen here. ``events`` use the
    audit hook's words, so a call both see is listed once.
    """

    def __init__(self, fd: int, workdir: str, quiet=()):
        self.fd, self.workdir, self.quiet = fd, os.path.realpath(workdir), tuple(quiet)
        self.events: list[str] = []

    @classmethod
    def receive(cls, channel: socket.socket, workdir, quiet=()) -> Observer | None:
        """The child's seccomp listener, read from ``channel`` (then closed), as an `Observer`
        (None: the child could not make one)."""
        try:
            _, fds, _, _ = socket.recv_fds(channel, 1, 1)
        except OSError:
            fds = []
        finally:
            channel.close()
        return cls(fds[0], str(workdir), quiet) if fds else None

    def finish(self, events: list) -> None:
        """Let the calls stopped before the child was killed go, close the listener and add
        what was seen to ``events`` (each once)."""
        while select.select([self], [], [], 0)[0] and self.serve():
            pass
        self.close()
        events.extend(e for e in dict.fromkeys(self.events) if e not in events)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        os.close(self.fd)

    def serve(self) -> bool:
        """Answer one stopped call (noting what it does); False once the child is gone."""
        poll = select.poll()
        poll.register(self.fd, select.POLLIN)
        ready = poll.poll(0)
        if not ready:
            return True
        if not ready[0][1] & select.POLLIN:
            return False  # hung up: no process is left under the filter
        notice = bytearray(80)  # struct seccomp_notif, zeroed as the kernel requires
        try:
            fcntl.ioctl(self.fd, NOTIF_RECV, notice, True)
        except OSError:
            return True  # the caller was killed before its call was received
        call, pid, _flags, nr, arch, _ip, *args = struct.unpack("QIIiIQ6Q", notice)
        try:
            self._note(pid, CALLS.get(arch, {}).get(nr, str(nr)), args)
        except (OSError, ValueError, UnicodeError):
            pass  # a call whose arguments cannot be read (it died meanwhile) is still let go
        try:
            fcntl.ioctl(self.fd, NOTIF_SEND, struct.pack("QqiI", call, 0, 0, NOTIF_CONTINUE))
        except OSError:
            pass  # the caller was killed while stopped
        return True

    def _note(self, pid: int, name: str, args) -> None:
        text = None
        if name in ("open", "openat", "openat2"):
            at = ctypes.c_int(args[0]).value if name != "open" else _AT_FDCWD
            path = _string(pid, args[0] if name == "open" else args[1])
            flags = args[1] if name == "open" else args[2]
            if name == "openat2":  # struct open_how begins with the flags
                flags = struct.unpack("Q", _memory(pid, args[2], 8))[0]
            text = self._open(pid, at, path, flags)
        elif name == "connect":
            text = f"network connection to {_address(_memory(pid, args[1], args[2]))} "
            text += "(blocked: no network)"
        elif name in ("execve", "execveat"):
            text = f"ran a program ({_string(pid, args[name == 'execveat'])})"
        elif name in ("clone", "clone3", "fork", "vfork"):
            flags = struct.unpack("Q", _memory(pid, args[0], 8))[0] if name == "clone3" else 0
            flags = args[0] if name == "clone" else flags
            text = None if flags & CLONE_THREAD else "started processes (fork)"
        elif name == "seccomp":
            text = "installed a seccomp filter of its own"
        elif name == "io_uring_setup":
            text = "set up io_uring (file operations no observer sees)"
        if text and len(self.events) < 20 and text[:200] not in self.events:
            self.events.append(text[:200])

    def _open(self, pid: int, at: int, path: str, flags: int) -> str | None:
        if not os.path.isabs(path):  # the folder it is relative to, as the sandbox sees it
            base = os.readlink(f"/proc/{pid}/cwd" if at == _AT_FDCWD else f"/proc/{pid}/fd/{at}")
            path = os.path.join(base, path)
        path = os.path.normpath(path)
        seen = f"/proc/{pid}/root{path}"  # the path inside the sandbox's file system
        if any(path == d or path.startswith(d + os.sep) for d in (self.workdir, "/dev", "/proc")):
            return None
        if flags & _WRITES:
            target = seen if os.path.exists(seen) else os.path.dirname(seen)
            if not _writable(target, pid):
                return f"write to {path} (refused: read-only or not visible)"
            return None
        if path.startswith(self.quiet):
            return None
        if flags & os.O_DIRECTORY:
            return f"listed {path} (outside its own folder, where nothing of the course is visible)"
        if not os.path.exists(seen):
            return f"read of {path} (not visible in the sandbox)"
        return None


def _writable(path: str, pid: int) -> bool:
    """Whether process ``pid`` may write ``path`` (seen through its root): a file or folder on
    a mount that is not read-only, whose mode lets the process's uid write (as that uid, not
    as the grader: the grader may be root)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            uid = int(next(ln for ln in f if ln.startswith("Uid:")).split()[2])
        info, mount = os.stat(path), os.statvfs(path)
    except (OSError, StopIteration, ValueError):
        return False
    if mount.f_flag & os.ST_RDONLY:
        return False
    return uid == 0 or bool(info.st_mode & (0o200 if info.st_uid == uid else 0o002))


def _memory(pid: int, address: int, size: int) -> bytes:
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        return os.pread(fd, min(size, 4096), address)
    finally:
        os.close(fd)


def _string(pid: int, address: int) -> str:
    """A NUL-terminated string of the process, read a page at a time (at most 4 kB)."""
    data = b""
    while b"\0" not in data and len(data) < 4096:
        page_end = (address + len(data)) // 4096 * 4096 + 4096
        data += _memory(pid, address + len(data), page_end - address - len(data))
    return data.split(b"\0")[0].decode(errors="replace")


def _address(raw: bytes) -> str:
    """A sockaddr as the audit hook prints Python's address: ('1.2.3.4', 80), or a path."""
    family = struct.unpack("H", raw[:2])[0] if len(raw) >= 2 else None
    if family == socket.AF_INET and len(raw) >= 8:
        return repr((socket.inet_ntop(socket.AF_INET, raw[4:8]), struct.unpack(">H", raw[2:4])[0]))
    if family == socket.AF_INET6 and len(raw) >= 28:
        port, flow = struct.unpack(">HI", raw[2:8])
        host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        return repr((host, port, flow, struct.unpack("I", raw[24:28])[0]))
    if family == socket.AF_UNIX:
        return repr(raw[2:].split(b"\0")[0].decode(errors="replace") or raw[2:])
    return f"an address of family {family}"
