"""Grading on a Dask cluster: ``gmm-grade SUBMISSIONS --scheduler tls://HOST:PORT``.

One task per student (`grade_remote`), no shared file system: the course travels once per worker
in `GradingPlugin`, a task carries the student's notebooks as bytes and returns the graded folder
and feedback pages as bytes, which the coordinator (`grade_on_cluster`) unpacks and hands to the
local run's ``on_done``: the journal, gradebook and CSVs are written by the coordinator alone.
Faults:

- **the sandbox**: a worker whose probe (`grading.probe.prepare`) fails refuses every task
  (`WorkerRefusedError`); its students go to the others, and the run stops when none is left;
- **a worker killed**: its grader and sandboxes die with it (``--pdeathsig``,
  ``--die-with-parent``, `grading.cgroups.sweep`); the scheduler retries the task elsewhere, and
  one that kills ``allowed-failures`` + 1 workers is a grader error on the review list;
- **the scheduler lost**: `SchedulerLostError`; the results so far are in the journal, and
  ``--resume`` grades the rest.

Trust: tasks travel pickled and every worker holds the hidden tests, so the cluster is reached
over ``tls://``; ``tcp://`` needs ``--insecure`` (`grading.pipeline.check_transport`).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
import uuid
from concurrent.futures import CancelledError
from pathlib import Path

from distributed import Client, Queue, WorkerPlugin, as_completed, get_worker

from grading import cgroups, probe
from grading.isolation import SandboxUnavailableError
from grading.journal import InterruptedRunError
from grading.layout import Course, RunFolder
from grading.runner import Worker, worker_env

PLUGIN = "gmm-grading"
#: Files of a graded student folder the coordinator needs (the rest is scratch).
RETURNED = ("submitted", "autograded", "result.json", "worker-error.txt")


class SchedulerLostError(InterruptedRunError):
    """The connection to the Dask scheduler was lost during grading (the message says what is
    kept and how to go on)."""


class WorkerRefusedError(SandboxUnavailableError):
    """A worker whose sandbox probe failed: it grades nothing."""

    def __init__(self, worker: str, reason: str):
        super().__init__(f"worker {worker} cannot sandbox student code: {reason}")
        self.worker, self.reason = worker, reason

    def __reduce__(self):
        return type(self), (self.worker, self.reason)


def pack(folder: Path, names=None) -> bytes:
    """A gzipped tar of ``folder`` (only its entries in ``names`` when given), as bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            keep = names is None or entry.name in names or entry.name.startswith("autograde-")
            if keep and not entry.is_symlink():
                tar.add(entry, arcname=entry.name)
    return buffer.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    """Unpack `pack`'s bytes into ``folder`` (tarfile's "data" filter: no links out of it)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


def pack_course(course: Path, assignments) -> bytes:
    """What a worker needs of the course: the source notebooks (the points and ids, graded
    outside the student's processes) and the release notebooks the kernel runs."""
    layout = Course(course)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(layout.sources, arcname=layout.sources.relative_to(course))
        for assignment in assignments:
            release = layout.folder("release", assignment)
            tar.add(release, arcname=release.relative_to(course))
    return buffer.getvalue()


class GradingPlugin(WorkerPlugin):
    """Set up on every worker: the course, the sandbox probe (in a thread, so that the worker
    keeps answering the scheduler), the graders. A failed probe does not stop the worker; it
    makes `grade_remote` refuse every task there (``refusal``), which the coordinator hears."""

    name = PLUGIN

    def __init__(self, course: bytes, sandbox: bool = True):
        self.course = course
        self.digest = hashlib.sha256(course).hexdigest()
        self.sandbox = sandbox

    async def setup(self, worker):
        self.address = worker.address
        self.folder = Path(tempfile.mkdtemp(prefix="gmm-grading-", dir=worker.local_directory))
        self.graders, self.lock = {}, threading.Lock()
        await asyncio.to_thread(self._prepare)

    def _prepare(self):
        unpack(self.course, self.folder / "course")
        (self.folder / "jobs").mkdir()
        self.env = worker_env(self.folder / "jupyter")
        self.log = open(self.folder / "grading.log", "ab")
        try:
            self.isolation = probe.prepare(self.folder, self.sandbox)
        except SandboxUnavailableError as error:
            self.refusal = str(error)
            return
        self.refusal = None

    def grader(self):
        """This thread's ``grading.worker`` process (started by this thread, so that it dies
        with it; a worker thread lives as long as the worker)."""
        me = threading.get_ident()
        with self.lock:
            if me not in self.graders:
                slot = len(self.graders)  # the sandbox uid's offset (isolation.sandbox_uid)
                self.graders[me] = Worker(self.env, self.log, slot, die_with_parent=True)
            return self.graders[me]

    def teardown(self, worker):
        for grader in getattr(self, "graders", {}).values():
            grader.kill()
        cgroups.sweep()  # a sandbox orphaned on the way (its grader died as it started)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(getattr(self, "folder", ""), ignore_errors=True)


def grade_remote(task: dict) -> dict:
    """Grade one student on this worker; the graded folder and feedback pages as bytes. The
    worker grades in a temporary `RunFolder` laid out as the coordinator's, so the paths its
    results name are the coordinator's once unpacked: nothing is rewritten."""
    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN)
    if plugin is None or getattr(plugin, "digest", None) != task["course"]:
        raise RuntimeError(f"worker {worker.address} holds no copy of this run's course")
    refusal = getattr(plugin, "refusal", "the grading set-up failed (see the worker's log)")
    if refusal:
        raise WorkerRefusedError(worker.address, refusal)
    student = task["student"]
    with tempfile.TemporaryDirectory(dir=plugin.folder / "jobs") as tmp:
        run = RunFolder(Path(tmp))  # laid out as the coordinator's; results name paths in it
        unpack(task["submission"], run.student(student))
        job = {
            "student": student,
            "run": str(run.root),
            "course": str(plugin.folder / "course"),
            "step_timeout": task["step_timeout"],
            "isolation": plugin.isolation.to_dict(),
            "assignments": task["assignments"],
        }
        if task.get("announce"):
            Queue(task["announce"]).put(
                {"student": student, "worker": worker.address, "pid": os.getpid()}
            )
        ok, note = plugin.grader().grade(job)
        return {
            "student": student,
            "ok": ok,
            "note": note,
            "folder": pack(run.student(student), RETURNED),
            "feedback": pack(run.feedback / student),
        }


def _failure(error: BaseException) -> str:
    """The review list's reason for a task that raised ``error`` on the cluster."""
    if type(error).__name__ == "KilledWorker":
        return (
            f"every worker that graded this student died ({error.allowed_failures + 1} tries, "
            "distributed.scheduler.allowed-failures): a submission that brings down its worker?"
        )
    return f"grading failed on the cluster: {error!r}"[:600]


def grade_on_cluster(
    jobs: list[dict],
    scheduler: str,
    course: Path,
    sandbox: bool,
    on_done,
    progress,
    security=None,
    announce: str | None = None,
) -> None:
    """Grade ``jobs`` (`grading.pipeline.grade_folder`'s) on the Dask cluster at ``scheduler``;
    call ``on_done(job, ok, note)`` once per student, its files unpacked where the job says.

    ``announce``: a `distributed.Queue` each task puts ``{"student", "worker", "pid"}`` on as it
    starts (the tests wait on it). At most two tasks per worker thread are in flight, so the
    scheduler holds a few submissions, not the class. Raises `SchedulerLostError` when the
    scheduler goes away, `SandboxUnavailableError` when every worker refuses.
    """
    if not jobs:
        return
    try:
        client = Client(scheduler, security=security, timeout="60s")
    except (OSError, TimeoutError) as error:
        raise SchedulerLostError(
            f"cannot reach the Dask scheduler at {scheduler}: {error}"
        ) from None
    assignments = sorted({a for job in jobs for a in job["assignments"]})
    graded, refused = [0], {}
    try:
        plugin = GradingPlugin(pack_course(course, assignments), sandbox)
        client.register_plugin(plugin, name=PLUGIN)
        pending = list(reversed(jobs))
        running, waiting = as_completed(), {}

        def submit(job):
            live = set(client.scheduler_info()["workers"]) - set(refused)
            if refused and not live:
                raise SandboxUnavailableError(
                    f"no worker of the cluster at {scheduler} can sandbox student code: "
                    + "; ".join(refused.values())
                )
            task = {
                "student": job["student"],
                "submission": pack(RunFolder(Path(job["run"])).student(job["student"])),
                "course": plugin.digest,
                "step_timeout": job["step_timeout"],
                "assignments": job["assignments"],
                "announce": announce,
            }
            future = client.submit(
                grade_remote,
                task,
                key=f"gmm-grade-{job['student']}-{uuid.uuid4().hex[:8]}",
                pure=False,
                workers=sorted(live) if refused else None,
                allow_other_workers=False,
            )
            waiting[future.key] = job
            running.add(future)

        def fill():
            window = 2 * max(sum(client.nthreads().values()), 1)
            while pending and running.count() < window:
                submit(pending.pop())

        fill()
        for future in running:
            job = waiting.pop(future.key)
            if future.status == "cancelled":
                raise SchedulerLostError(
                    f"lost the connection to the Dask scheduler at {scheduler} after "
                    f"{graded[0]} of {len(jobs)} students"
                )
            if future.status == "error":
                error = future.exception()
                if isinstance(error, WorkerRefusedError):
                    if error.worker not in refused:
                        refused[error.worker] = str(error)
                        print(f"{error}: its students go to the other workers", file=progress)
                    pending.append(job)
                else:
                    graded[0] += 1
                    on_done(job, False, _failure(error))
            else:
                answer = future.result()
                run = RunFolder(Path(job["run"]))
                unpack(answer["folder"], run.student(job["student"]))
                page = run.feedback / job["student"]
                shutil.rmtree(page, ignore_errors=True)
                unpack(answer["feedback"], page)
                graded[0] += 1
                on_done(job, answer["ok"], answer["note"])
            future.release()
            fill()
    except (OSError, CancelledError, asyncio.CancelledError) as error:
        raise SchedulerLostError(
            f"lost the connection to the Dask scheduler at {scheduler} after {graded[0]} of "
            f"{len(jobs)} students ({error!r})"
        ) from None
    finally:
        try:
            client.close(timeout=30)
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass
