"""Grading on this machine: ``python -m grading.worker`` processes, one student each at a time.

`run_workers` hands one job per student to `Worker` processes (two per core by default) and
calls ``on_done`` as each finishes; a student whose grading exceeds `STUDENT_TIMEOUT` is
stopped, listed, and the worker restarted. A Dask cluster's workers use the same `Worker`
(`grading.distributed`).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from grading.course import REPO, tool_env
from grading.kernel import write_kernelspec

STUDENT_TIMEOUT = 600.0  # seconds for all of one student's notebooks (a backstop)


DIED = "grader process died"


def took_too_long(student_timeout: float) -> str:
    return f"grading took longer than {student_timeout:g} s: stopped"


class Worker:
    """One ``python -m grading.worker`` process; grades one student at a time.

    ``die_with_parent``: the process gets SIGKILL when the thread that started it ends (util-linux
    ``setpriv --pdeathsig``), and with it every sandbox it started (bubblewrap's
    ``--die-with-parent``): what a Dask worker starts does not outlive it.
    """

    def __init__(self, env, log, slot=0, die_with_parent=False):
        self.env, self.log = {**env, "GMM_WORKER_SLOT": str(slot)}, log
        self.prefix = ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"] if die_with_parent else []
        self.proc = None
        self.job = None
        self.started = 0.0
        self.buffer = b""
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "grading.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=self.env,
            cwd=REPO,
            start_new_session=True,
        )

    def submit(self, job):
        self.job, self.started, self.buffer = job, time.monotonic(), b""
        self.proc.stdin.write((json.dumps(job) + "\n").encode())
        self.proc.stdin.flush()

    def grade(self, job, student_timeout=STUDENT_TIMEOUT) -> tuple[bool, str]:
        """Grade one job and wait for it: (True, "") or (False, why it failed); a worker that
        died or ran out of time is restarted for the next job."""
        if self.proc.poll() is not None:
            self.kill()
            self.start()
        self.submit(job)
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = self.started + student_timeout - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                note = took_too_long(student_timeout)
            elif chunk := os.read(fd, 4096):
                self.buffer += chunk
                continue
            else:
                note = DIED
            self.restart()
            return False, note
        self.job = None
        return True, ""

    def restart(self):
        """Kill the process (a dead or overdue one) and start a fresh one for the next job;
        return the job it held."""
        job, self.job = self.job, None
        self.kill()
        self.start()
        return job

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._close_pipes()

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.kill()
        self._close_pipes()

    def _close_pipes(self):
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:  # stdin of a dead worker: nothing left to flush to
                pass


def run_workers(jobs, n_workers, env, log, on_done, student_timeout=STUDENT_TIMEOUT):
    """Grade ``jobs`` on ``n_workers`` processes; call ``on_done(job, ok, note)`` for each."""
    pending = list(jobs)
    workers = [Worker(env, log, slot) for slot in range(min(n_workers, len(pending)) or 1)]
    for w in workers:
        if pending:
            w.submit(pending.pop(0))
    while any(w.job for w in workers):
        busy = [w for w in workers if w.job]
        fds = {w.proc.stdout.fileno(): w for w in busy}
        ready = select.select(list(fds), [], [], 1.0)[0]
        for fd in ready:
            w = fds[fd]
            chunk = os.read(fd, 4096)
            if not chunk:  # the worker died: restart it
                on_done(w.restart(), False, DIED)
            else:
                w.buffer += chunk
                if b"\n" in w.buffer:
                    job = w.job
                    w.job = None
                    on_done(job, True, "")
            if w.job is None and pending:
                w.submit(pending.pop(0))
        for w in busy:
            if w.job and time.monotonic() - w.started > student_timeout:
                on_done(w.restart(), False, took_too_long(student_timeout))
                if pending:
                    w.submit(pending.pop(0))
    for w in workers:
        w.close()


def default_jobs() -> int:
    """Students graded at once: two per core (a worker waits on its kernel about half the time;
    measured on 2 cores: 4 at once graded 40 notebooks ~1.4x faster than 2)."""
    return 2 * (os.cpu_count() or 1)


def worker_env(jupyter: Path) -> dict:
    """The environment of a ``grading.worker`` process: the course's tools first on PATH, and
    the graded kernel spec (`grading.kernel`) first on JUPYTER_PATH (``jupyter``)."""
    write_kernelspec(jupyter)
    env = tool_env()
    env["JUPYTER_PATH"] = str(jupyter)
    env["JUPYTER_RUNTIME_DIR"] = str(jupyter / "runtime")
    env["MALLOC_ARENA_MAX"] = "2"
    return env
