"""What the feedback kernel's code attempts, seen from the process that runs the notebook.

The re-check's child has been watched from outside since it stopped trusting its own audit
hook; the kernel runs the same student code and is watched the same way. `KernelWatch` makes a
socket pair and names one end in ``$GMM_KERNEL_CHANNEL``; the kernel is started with that end
(``pass_fds``), and `grading.kernel` starts ipykernel through the re-check child's launcher
(`grading.sandbox`), which installs the same seccomp filter, sends its listener over the end it
was given and closes it before the kernel starts (the student's code arrives later, as messages;
only ipykernel's own modules and numpy are imported first). Here a thread reads that one message,
closes its own end (nothing sent later is read: the student's code could hand over no other
listener even if it found the socket), and serves the listener with `grading.observer.Observer`
(the re-check's rules and caps: reads of course files, writes refused, connections, programs,
io_uring; namespaces and other architectures' calls refused) until the run is over, in the
re-check's bursts (`Observer.serve_pending`), crediting the kernel its calls' wait for the
thread as the re-check's child is credited (`grading.observer.Waited`).
"""

from __future__ import annotations

import json
import os
import select
import socket
import sysconfig
import threading
from pathlib import Path

from grading.isolation import Isolation, python_env
from grading.kernel import CHANNEL, SETTINGS
from grading.observer import Observer, Waited

#: Recorded when the kernel could not install the filter (seccomp's user notification missing).
UNOBSERVED = "its calls were not observed (seccomp user notification unavailable here)"
#: Where ipykernel names each cell's code (``/tmp/ipykernel_<its pid>/<hash>.py``,
#: `ipykernel.compiler`), a file it never writes but looks for to show a traceback: in the
#: sandbox's PID namespace the kernel is pid 2 (bubblewrap's init is 1). Reads there are its own.
CELL_FILES = "/tmp/ipykernel_2"
#: Seconds the thread waits between looks at whether the run is over.
_TICK = 0.2


class KernelWatch:
    """The observer of one kernel, served by a thread for the length of a ``with`` block.

    ``workdir``: the kernel's scratch folder (its own: nothing noted there); ``quiet``: folders
    whose reads are not noted (the Python environment, the system, the kernel's runtime
    folder); ``own``: folders of the kernel's own Unix sockets (its runtime folder).
    ``events``: what was seen, in the observer's words, once the block is left.
    """

    def __init__(self, workdir: Path, quiet=(), own=()):
        self.workdir, self.quiet, self.own = Path(workdir), [str(q) for q in quiet], list(own)
        self.events: list[str] = []
        self.kinds: dict[str, int] = {}
        self.received = threading.Event()
        self._stop = threading.Event()
        self._ours = self._theirs = self._thread = None
        self._waited = Waited()

    @classmethod
    def for_kernel(cls, runtime: Path | None) -> KernelWatch | None:
        """The watch of the notebook about to run, from the sandbox settings the worker set
        (``$GMM_SANDBOX``: the kernel's scratch folder); None when there are none (a kernel
        started outside the grading pipeline) or no sandbox (``--no-sandbox``: the kernel
        talks to the grader over loopback TCP and reads the instructor's home, by design)."""
        given = json.loads(os.environ.get(SETTINGS) or "{}")
        if not given or not Isolation.from_dict(given["isolation"]).sandbox:
            return None
        site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        quiet = [*python_env(), *site, "/usr", "/etc", "/proc", "/sys", CELL_FILES]
        own = [runtime] if runtime is not None else []
        return cls(Path(given["scratch"]), quiet + own, own)

    @property
    def pass_fds(self) -> tuple[int, ...]:
        """The descriptor the kernel's process must inherit (jupyter_client passes it on)."""
        return (self._theirs.fileno(),) if self._theirs is not None else ()

    def __enter__(self) -> KernelWatch:
        self._ours, self._theirs = socket.socketpair()
        os.environ[CHANNEL] = str(self._theirs.fileno())
        self._thread = threading.Thread(target=self._serve, name="kernel-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        """Once the kernel is gone: stop serving, let what is left go, close everything."""
        os.environ.pop(CHANNEL, None)
        self._theirs.close()
        self._stop.set()
        self._thread.join()

    def waited(self) -> float:
        """Seconds this watch's thread waited for a CPU while calls of the kernel's were
        stopped for it: on a loaded machine, time they waited that is not the student's time
        asleep (`grading.watch.Meter`). Its own running time, which watched calls without end
        would cost, stays asleep, and so do its idle wake-ups (`grading.observer.Waited`)."""
        return self._waited()

    def _serve(self) -> None:
        observer = None
        try:
            while not self._stop.is_set() and observer is None and self._ours is not None:
                if select.select([self._ours], [], [], _TICK)[0]:
                    observer = self._receive()
            while observer is not None and not self._stop.is_set():
                self._waited.sleeping()
                if not select.select([observer], [], [], _TICK)[0]:
                    continue
                if not observer.serve_pending():  # hung up: no process is left under the filter
                    observer.finish(self.events)
                    observer = None
        finally:
            if self._ours is not None:
                self._ours.close()
            if observer is not None:
                observer.finish(self.events)

    def _receive(self) -> Observer | None:
        """The kernel's listener (its first and only message), as an `Observer`; the channel
        is closed after it, whatever arrived."""
        channel, self._ours = self._ours, None
        observer = Observer.receive(
            channel,
            self.workdir,
            self.quiet,
            self.events,
            self.kinds,
            own=self.own,
            waited=self._waited,
        )
        if observer is None:
            self.events.append(UNOBSERVED)
        self.received.set()
        return observer
