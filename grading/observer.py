"""What a re-check child opens, changes, connects to and runs, seen from the grader's process.

The child's own interpreter is the student's: anything it reports, the student's code can forge
or silence. `Observer` holds a seccomp listener the child handed over before any student code
ran (`grading.sandbox`), and looks at each watched call from outside: its arguments read from
``/proc/<pid>/mem``, its paths followed as the sandbox sees them. `grading.recheck` serves it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import select
import socket
import struct
import threading
import time

from grading.call_args import addresses, describe_address, read_memory, read_string

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
        **{435: "clone3", 57: "fork", 58: "vfork", 85: "creat", 83: "mkdir", 258: "mkdirat"},
        **{84: "rmdir", 87: "unlink", 263: "unlinkat", 82: "rename", 264: "renameat"},
        **{316: "renameat2", 86: "link", 265: "linkat", 88: "symlink", 266: "symlinkat"},
        **{76: "truncate", 44: "sendto", 272: "unshare", 308: "setns", 248: "add_key"},
        **{249: "request_key", 250: "keyctl", 46: "sendmsg", 307: "sendmmsg"},
    },
    0xC00000B7: {
        **{56: "openat", 437: "openat2", 203: "connect", 221: "execve", 281: "execveat"},
        **{277: "seccomp", 425: "io_uring_setup", 220: "clone", 435: "clone3"},
        **{34: "mkdirat", 35: "unlinkat", 36: "symlinkat", 37: "linkat", 38: "renameat"},
        **{276: "renameat2", 45: "truncate", 206: "sendto", 97: "unshare", 268: "setns"},
        **{217: "add_key", 218: "request_key", 219: "keyctl", 211: "sendmsg", 269: "sendmmsg"},
    },
}
#: Calls that change the file system: (index of the folder argument, or None for the current
#: folder; index of the path argument), one pair per path changed.
CHANGES = {
    "creat": ((None, 0),),
    "mkdir": ((None, 0),),
    "rmdir": ((None, 0),),
    "unlink": ((None, 0),),
    "truncate": ((None, 0),),
    "mkdirat": ((0, 1),),
    "unlinkat": ((0, 1),),
    "rename": ((None, 0), (None, 1)),
    "renameat": ((0, 1), (2, 3)),
    "renameat2": ((0, 1), (2, 3)),
    "link": ((None, 1),),
    "linkat": ((2, 3),),
    "symlink": ((None, 1),),
    "symlinkat": ((1, 2),),
}
#: At most this many events of one kind (their first word and closing words): a flood of one
#: kind cannot push another out of the record.
PER_KIND = 3
#: A call of another architecture is refused with this error (ENOSYS) once noted.
ENOSYS = 38
#: Links of /proc that lead into another folder or file (a process's root, cwd, descriptors):
#: a path through one is noted as it was written, not followed.
_PROC_LINKS = frozenset({"root", "cwd", "fd", "map_files", "exe"})
#: The most components `_inside` looks at for one path (links make a path longer): a path
#: built to cost the grader more is noted as written.
_MAX_STEPS = 4096
#: clone's flag for a thread of the same process (not a new process).
CLONE_THREAD = 0x10000
#: clone's and unshare's flags for new namespaces (mount, cgroup, UTS, IPC, user, PID, network,
#: time). Refused: a user namespace of its own lets the code mount a tmpfs no size caps.
NAMESPACES = 0x20000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
NAMESPACES |= 0x40000000 | 0x80
EPERM = 1
#: The machine kernel's key store. Refused: a uid's keyring is shared by all its processes and
#: outlives them, so a worker's sandboxes (one uid) could pass keys from one student's
#: submission to the next, and leave them on the machine.
KEY_STORE = ("add_key", "request_key", "keyctl")
_WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_AT_FDCWD = -100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: The made-up file name ipykernel gives a cell, in the sandbox's own /tmp (a private tmpfs).
_CELL_FILE = re.compile(r"^/tmp/ipykernel_[0-9]+/[0-9]+\.py$")
#: A process's folder in /proc (or one of its threads'), whose links `_PROC_LINKS` are.
_PROC_DIR = re.compile(r"^/proc/[^/]+(/task/[^/]+)?$")
#: A path that goes on through one of those links.
_THROUGH_PROC = re.compile(r"^/proc/[^/]+(/task/[^/]+)?/(root|cwd|fd|map_files|exe)/.")
#: `Observer.serve_pending`'s one cap on a burst: stopped calls answered, and seconds spent,
#: before its caller looks up again. 0.2 s is the longest either caller otherwise goes without
#: a look (the re-check's `grading.watch.StepClock.next_check`, the kernel watch's tick), so
#: code that makes calls without end, or calls slow to look at, is timed and stopped within
#: one usual tick. 64 calls (the re-check's cap; the kernel watch had 256 and no time cap):
#: an import's files are answered in runs, not with a reading of the clock (/proc, for the
#: whole tree) between each, which made an honest import wait long enough to be charged.
BURST_CALLS, BURST_SECONDS = 64, 0.2
#: Seconds a burst waits for the next call: the stopped process, let go, needs a moment to make
#: its next (an import opens its files one after another), which then joins the burst.
NEXT_CALL = 0.002


def run_queue_wait() -> float:
    """The calling thread's seconds waiting for a CPU so far (/proc's schedstat, second field)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


class Waited:
    """Seconds the thread serving stopped calls waited for a CPU while they were stopped for
    it: on a loaded machine, time the watched process waited for the grader, not its time
    asleep (`grading.watch.Meter` counts it busy; call the object for the figure so far).

    The serving thread marks the moment it goes to wait for the listener (`sleeping`); the
    burst it then serves (`Observer.serve_pending`) adds its run-queue wait since the mark: its
    wake-up and any wait while it answers. Its idle wake-ups (no call stopped) add nothing,
    nor does its own running time, which calls without end would cost: those stay asleep.
    One per serving thread (the figures are that thread's), shared by its observers in turn.
    """

    def __init__(self):
        self.seconds, self._mark = 0.0, None

    def __call__(self) -> float:
        return self.seconds

    def sleeping(self) -> None:
        """The serving thread is about to wait for the listener (a select on it)."""
        self._mark = run_queue_wait()

    def since_mark(self) -> float:
        """The run-queue wait at the mark (now, if there is none), the mark then cleared."""
        mark, self._mark = self._mark, None
        return run_queue_wait() if mark is None else mark


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

    def __init__(
        self, fd: int, workdir: str, quiet=(), events=None, kinds=None, own=(), waited=None
    ):
        """``events`` and ``kinds`` (events recorded per kind): the record of the observers
        before this one, for the same re-check restarted (its limits hold for them all).
        ``own``: folders whose Unix sockets are the process's own (the kernel's channels).
        ``waited``: the serving thread's `Waited` (a new one if None)."""
        self.waited = Waited() if waited is None else waited
        self.fd, self.workdir = fd, os.path.realpath(workdir)
        self.quiet = tuple(q.rstrip(os.sep) for q in quiet)  # folders: "/a" is not "/ab"
        self.own = tuple(str(o).rstrip(os.sep) + os.sep for o in own)
        self.events: list[str] = [] if events is None else events
        self.kinds: dict[str, int] = {} if kinds is None else kinds

    @classmethod
    def receive(cls, channel: socket.socket, workdir, quiet=(), events=None, kinds=None, **more):
        """The child's seccomp listener, read from ``channel`` (then closed), as an `Observer`
        (None: the child could not make one); ``more``: ``own``, ``waited``."""
        try:
            _, fds, _, _ = socket.recv_fds(channel, 1, 1)
        except OSError:
            fds = []
        finally:
            channel.close()
        return cls(fds[0], str(workdir), quiet, events, kinds, **more) if fds else None

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

    def serve_pending(self, max_calls=BURST_CALLS, max_seconds=BURST_SECONDS) -> bool:
        """Answer the calls stopped now and each that follows within `NEXT_CALL` seconds, at
        most ``max_calls`` of them or ``max_seconds`` (`BURST_CALLS`, `BURST_SECONDS`: the
        caller then looks at its clock); add the serving thread's wait for a CPU since it went
        to wait for the listener to `waited`. False once the child is gone (hung up)."""
        since, end = self.waited.since_mark(), time.monotonic() + max_seconds
        try:
            for _ in range(max_calls):
                if not self.serve():
                    return False
                if time.monotonic() >= end or not select.select([self], [], [], NEXT_CALL)[0]:
                    break
            return True
        finally:
            self.waited.seconds += run_queue_wait() - since

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
        error, flags = (0, NOTIF_CONTINUE) if arch in CALLS else (-ENOSYS, 0)
        try:
            if arch in CALLS:
                refused = self._note(pid, CALLS[arch].get(nr, str(nr)), args)
                error, flags = (-refused, 0) if refused else (error, flags)
            else:  # x86_64's int 0x80: i386 calls, whose numbers mean other calls
                self._add(f"made a call of another architecture ({arch:#x}, call {nr}): refused")
        except (OSError, ValueError, UnicodeError, struct.error):
            pass  # a call whose arguments cannot be read (it died meanwhile) is still let go
        try:
            fcntl.ioctl(self.fd, NOTIF_SEND, struct.pack("QqiI", call, 0, error, flags))
        except OSError:
            pass  # the caller was killed while stopped
        return True

    def _add(self, text: str | None, kind: str = "") -> None:
        """Record ``text`` once (control characters escaped: a path cannot start a new line of
        the record), at most `PER_KIND` of its kind (``kind``, else its first word)."""
        if not text:
            return
        text = text.encode(errors="surrogateescape").decode(errors="replace")  # printable
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)[:200]
        kind = kind or text.split(" ", 1)[0]
        if text not in self.events and self.kinds.get(kind, 0) < PER_KIND:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            self.events.append(text)

    def _note(self, pid: int, name: str, args) -> int:
        """Record what the call does; the error it is refused with, or 0."""
        text = None
        if name in ("open", "openat", "openat2", "creat"):
            at = ctypes.c_int(args[0]).value if name not in ("open", "creat") else _AT_FDCWD
            path = read_string(pid, args[0] if name in ("open", "creat") else args[1])
            flags = args[1] if name == "open" else args[2]
            if name == "openat2":  # struct open_how begins with the flags
                flags = struct.unpack("Q", read_memory(pid, args[2], 8))[0]
            self._add(*self._open(pid, at, path, os.O_WRONLY if name == "creat" else flags))
        elif name in CHANGES:
            for at, where in CHANGES[name]:
                at = _AT_FDCWD if at is None else ctypes.c_int(args[at]).value
                self._add(*self._open(pid, at, read_string(pid, args[where]), os.O_WRONLY))
        elif name in ("connect", "sendto", "sendmsg", "sendmmsg"):
            for raw in addresses(pid, name, args):
                if raw and not self._own_channel(raw):
                    self._add(
                        f"network connection to {describe_address(raw)} (blocked: no network)"
                    )
        elif name in ("execve", "execveat"):
            text = f"ran a program ({read_string(pid, args[name == 'execveat'])})"
        elif name == "clone3":  # its flags are in memory the code could change after a look
            return ENOSYS  # so: unknown here, and the C library falls back to clone
        elif name in ("clone", "fork", "vfork", "unshare", "setns"):
            flags = args[0] if name in ("clone", "unshare") else 0
            if flags & NAMESPACES or name == "setns":  # refused: see NAMESPACES
                self._add(f"made or entered namespaces of its own ({name}): refused")
                return EPERM
            if name != "unshare" and not flags & CLONE_THREAD:
                text = "started processes (fork)"
        elif name in KEY_STORE:
            self._add(f"used the key store ({name}): refused")
            return EPERM
        elif name == "seccomp":
            text = "installed a seccomp filter of its own"
        elif name == "io_uring_setup":
            text = "set up io_uring (file operations no observer sees)"
        self._add(text)
        return 0

    def _own_channel(self, raw: bytes) -> bool:
        """Whether a sockaddr is no connection worth a note: netlink (the machine's kernel asked
        about the sandbox's own, empty, network, as the C library does to resolve a name) or
        a Unix socket in one of the `own` folders (the kernel's channels to the grader)."""
        family = struct.unpack("H", raw[:2])[0] if len(raw) >= 2 else None
        if family == socket.AF_NETLINK:
            return True
        path = raw[2:].split(b"\0")[0].decode(errors="replace") if family == socket.AF_UNIX else ""
        return bool(path) and os.path.normpath(path).startswith(self.own or ("\0",))

    def _quiet_as_written(self, path: str) -> bool:
        """Whether ``path``, as written (no ``..``, not in /proc), is in a `quiet` folder: those
        are read-only in the sandbox (the Python environment, the system), so no link in them
        is the student's, and a read there is not noted wherever their own links lead."""
        if "/.." in path or path == "/proc" or path.startswith("/proc/"):
            return False
        return any(path == q or path.startswith(q + os.sep) for q in self.quiet if q != "/proc")

    def _open(self, pid: int, at: int, path: str, flags: int) -> tuple[str | None, str]:
        """(what an open of ``path`` relative to descriptor ``at`` is worth noting, or None;
        its kind): a read of a file the grading machine has but the sandbox hides is a kind
        of its own, so reads of made-up paths cannot crowd it out."""
        if not os.path.isabs(path):  # the folder it is relative to, as the sandbox sees it
            base = os.readlink(f"/proc/{pid}/cwd" if at == _AT_FDCWD else f"/proc/{pid}/fd/{at}")
            path = os.path.join(base, path)
        if not flags & _WRITES and self._quiet_as_written(path):
            return None, ""  # an import's read: the common case, answered without a walk
        path, inside = os.path.normpath(path), _inside(pid, path)
        if inside is None:
            return f"opened {path} through a link of /proc (not followed)", ""
        path = inside
        seen = f"/proc/{pid}/root{path}"  # the path inside the sandbox's file system
        if any(path == d or path.startswith(d + os.sep) for d in (self.workdir, "/dev", "/proc")):
            return None, ""
        if flags & _WRITES:
            target = seen if os.path.exists(seen) else os.path.dirname(seen)
            if not _writable(target, pid):
                return f"write to {path} (refused: read-only or not visible)", ""
            return None, ""
        if any(path == q or path.startswith(q + os.sep) for q in self.quiet):
            return None, ""
        if flags & os.O_DIRECTORY and any(
            q.startswith(path.rstrip(os.sep) + os.sep) for q in self.quiet
        ):
            return None, ""  # a folder above one shown (the import system lists sys.path)
        if flags & os.O_DIRECTORY:
            text = f"listed {path} (outside its own folder, where nothing of the course is visible)"
            return text, ""
        if not os.path.exists(seen):
            if _CELL_FILE.match(path) and not os.path.exists(path):
                return None, ""  # IPython's traceback looks for its cell's made-up file
            hidden = "read of the machine's" if os.path.exists(path) else ""
            return f"read of {path} (not visible in the sandbox)", hidden
        return None, ""


def _inside(pid: int, path: str) -> str | None:
    """``path`` (absolute) with its links followed as the sandbox of ``pid`` sees them: an
    absolute link leads to the sandbox's root, not the grader's, so a link in /tmp or in the
    student's own folder shows where it points. None: the path goes through a link of /proc
    (`_PROC_LINKS`: /proc/self/root/..., /proc/self/fd/3/...)."""
    found = _follow(pid, path)
    return None if found is None or _THROUGH_PROC.match(found) else found


def _follow(pid: int, path: str) -> str | None:
    """`_inside`'s walk: component by component, at most `_MAX_STEPS` and 40 links; the rest
    of the path as written once a component is missing (None: a /proc link on the way)."""
    root, done, todo, links = f"/proc/{pid}/root", "/", path.split("/"), 0
    for _ in range(_MAX_STEPS):
        if not todo:
            return done
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            done = os.path.dirname(done)
            continue
        if todo and part in _PROC_LINKS and _PROC_DIR.match(done):
            return None
        step = os.path.join(done, part)
        try:
            target = os.readlink(root + step)
        except OSError as error:
            if error.errno != errno.EINVAL:  # not there: the rest is not looked up either
                return os.path.normpath(os.path.join(step, *todo))
            done = step  # not a link
            continue
        links += 1
        if links > 40:  # as the kernel gives up (ELOOP)
            break
        todo = target.split("/") + todo
        done = "/" if target.startswith("/") else done
    return os.path.normpath(path)  # too long to follow: as written


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
