"""A hostile student against the observed feedback kernel and the time budget (issue 21, item 8).

The kernel now runs under the re-check's seccomp filter, its listener served by
`grading.kernel_watch.KernelWatch` in a thread of the process that runs the notebook. Each
notebook here runs as the worker runs it (the `kernel` fixture of test_kernel_watch.py:
bubblewrap, the sandbox's uid, its own runtime folder). Each test asserts the safe outcome of
an attack that worked against that design; each failed before its fix.

Tried and held (not kept as tests): ptrace of the sandbox's pid 1 (bwrap, uid 0: EPERM; the
only other process is the kernel, under the filter); SysV IPC between sandboxes (an IPC
namespace each); files planted in the kernel's IPython folder for a second start (the scratch
folder is a tmpfs of the sandbox's own: gone with it); a niced spinner pinned to a CPU a
neighbour loads (its CPU cgroup makes nice count for nothing against other sandboxes: stopped
by the CPU budget). Measured, not fixed: six threads flooding the observer with paths of 1,160
components while a seventh spins cost the grader 5.2 s of CPU (3.4 ms a call), charged to no
budget; and on a machine at load 14 a spinning cell ran its full 30 s with status "ok" (its
wait for a CPU counts as busy, so neither budget moved fast): the 120 s wall backstop is the
only bound then. A thread that rewrites a path between the observer's look and the call
(seccomp's user notification, by design) makes an attempt unrecorded; the sandbox still
refuses it.
"""

from __future__ import annotations

import numpy as np
import pytest
import test_kernel_watch
from graded_class import COURSE_FILE

from grading.isolation import Isolation, default_uid
from grading.recheck import run_sandbox
from grading.student_run import notebook_budget

#: K1: a watched call naming an address past the 63-bit range of file offsets (an open whose
#: path pointer is 0xfff...f0). The observer reads the path from /proc/<pid>/mem at that offset;
#: ``os.pread`` raised OverflowError, which `Observer.serve` did not catch: in the kernel the
#: watch's thread died (every watched call after it failed unseen, ENOSYS), in the re-check
#: the exception left `run_sandbox` (the submission's grading crashed).
BAD_POINTER = f"""\
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_uint64, ctypes.c_long]
print("bad", _libc.syscall(2, 0xFFFFFFFFFFFFFFF0, 0), ctypes.get_errno())
try:
    open({str(COURSE_FILE)!r}).read()
except OSError as e:
    print("read", e.errno)
"""
#: Runs a notebook in the observed kernel as the worker does (test_kernel_watch's fixture).
kernel = test_kernel_watch.kernel
READ_RECORDED = f"read of {COURSE_FILE} (not visible in the sandbox)"


def _text(executed) -> str:
    return "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


def test_a_call_with_an_address_past_any_offset_leaves_the_kernels_observer_serving(kernel):
    executed, report = kernel([BAD_POINTER])
    assert report.status == "ok"
    assert "read 2" in _text(executed)  # ENOENT, as the sandbox hides it; not ENOSYS (38)
    assert report.observed == [READ_RECORDED]


def test_a_call_with_an_address_past_any_offset_is_no_crash_of_the_re_check(tmp_path):
    import importlib.util
    from pathlib import Path

    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("attacks", here / "fixtures" / "attacks.py")
    attacks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(attacks)
    workdir = tmp_path / "recheck"
    workdir.mkdir()
    np.savez(workdir / "cases.npz", unused=np.zeros(1))
    iso = Isolation(True, uid=default_uid())
    results, observed = run_sandbox(workdir, attacks.plan(BAD_POINTER), isolation=iso)
    assert results[0]["status"] == "ok"
    assert observed["events"] == [READ_RECORDED]


def test_an_honest_cells_error_is_nothing_to_report_and_the_machines_tmp_still_is(kernel, tmp_path):
    """K2: a cell that raises (the commonest thing an honest student's notebook does) put
    "read of /tmp/ipykernel_2/<n>.py (not visible in the sandbox)" on the record: IPython's
    traceback opens its cell's made-up file name, in the sandbox's own /tmp (a private tmpfs).
    Every such student went to the review list. A read under /tmp of a file the grading
    machine has (the grader's own folders) is still recorded."""
    host = tmp_path / "grader-only.txt"
    host.write_text("on the grading machine only\n")
    cells = [
        "def f():\n    return 1 / 0",
        "f()",
        f"try:\n    open({str(host)!r})\nexcept OSError:\n    pass",
    ]
    executed, report = kernel(cells)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert report.status == "ok" and [e.ename for e in errors] == ["ZeroDivisionError"]
    assert report.observed == [f"read of {host} (not visible in the sandbox)"]


#: K3: a link to a course file inside a folder whose name is not UTF-8 (b"/tmp/\xff"). The
#: observer decoded the path with "replace", so it looked up "/tmp/\ufffd/l", a folder that does
#: not exist, and noted the read as a made-up path ("read" kind), not as a read of the grading
#: machine's file (a kind of its own, which made-up paths cannot crowd out): three reads of
#: made-up paths first, and the read of the course file was on no record.
UNDECODABLE_LINK = f"""\
import os
for _i in range(3):
    try:
        open("/nowhere/" + str(_i))
    except OSError:
        pass
os.mkdir(b"/tmp/\\xff")
os.symlink({str(COURSE_FILE)!r}, b"/tmp/\\xff/l")
try:
    open(b"/tmp/\\xff/l")
except OSError as e:
    print("read", e.errno)
"""


def test_a_link_in_a_folder_named_in_no_encoding_is_followed(kernel):
    executed, report = kernel([UNDECODABLE_LINK])
    assert report.status == "ok" and "read 2" in _text(executed)
    made_up = [f"read of /nowhere/{i} (not visible in the sandbox)" for i in range(3)]
    assert report.observed == [*made_up, READ_RECORDED]


#: K4: a datagram sent with sendmsg (Python's ``socket.sendmsg`` with an address; sendmmsg
#: alike) was not a watched call, in the kernel or the re-check: the launcher hands its listener
#: over with sendmsg after its filter is in place, so the filter let sendmsg through. It is
#: watched now, but on the hand-over's descriptor, which is moved to the highest number the
#: process may open and the limit then lowered below it (`grading.sandbox._hand_over`): a
#: socket put in its place (dup2) is refused, and so is the sendmsg that would bypass the filter.
SENDMSG = """\
import socket
_s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    print("sendmsg", _s.sendmsg([b"x"], [], 0, ("10.1.2.3", 53)))
except OSError as e:
    print("sendmsg", e.errno)
"""
SENDMMSG = """\
import ctypes, socket, struct
_s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_to = socket.inet_aton("10.4.5.6")
_sa = struct.pack("<H", socket.AF_INET) + struct.pack(">H", 99) + _to + bytes(8)
_name = ctypes.create_string_buffer(_sa)
_data = ctypes.create_string_buffer(b"x")
_iov = struct.pack("QQ", ctypes.addressof(_data), 1)
_iovb = ctypes.create_string_buffer(_iov)
_HDR = "QI4xQQQQI4xI4x"  # struct mmsghdr: msghdr (name, namelen, iov, iovlen, ...), msg_len
_quiet = struct.pack(_HDR, 0, 0, ctypes.addressof(_iovb), 1, 0, 0, 0, 0)
_loud = struct.pack(_HDR, ctypes.addressof(_name), 16, ctypes.addressof(_iovb), 1, 0, 0, 0, 0)
_msgs = ctypes.create_string_buffer(_quiet + _loud)
_libc = ctypes.CDLL(None, use_errno=True)
print("sendmmsg", _libc.sendmmsg(_s.fileno(), _msgs, 2, 0), ctypes.get_errno())
"""
PLANT = """\
import os, resource, socket
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _n in (_hard, _soft, 4095):
    try:
        os.dup2(_s.fileno(), _n)
        print("dup2-done", _n)
    except OSError as e:
        print("dup2-refused", _n, e.errno)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard + 1, _hard + 1))
    print("limit-raised")
except (OSError, ValueError) as e:
    print("limit-kept")
"""


def test_a_datagram_sent_with_sendmsg_is_recorded(kernel):
    executed, report = kernel([SENDMSG])
    assert report.status == "ok" and "sendmsg" in _text(executed)
    assert report.observed == ["network connection to ('10.1.2.3', 53) (blocked: no network)"]


def test_each_address_of_a_sendmmsg_is_recorded(kernel):
    """The address may be in any message of the batch, not only the first."""
    executed, report = kernel([SENDMMSG])
    assert report.status == "ok" and "sendmmsg" in _text(executed)
    assert report.observed == ["network connection to ('10.4.5.6', 99) (blocked: no network)"]


def test_no_socket_can_take_the_hand_overs_descriptor(kernel):
    """The filter lets sendmsg through on one descriptor number only: the one the listener was
    sent on. That number is past the limit on open descriptors, which cannot be raised again."""
    executed, report = kernel([PLANT])
    text = _text(executed)
    assert report.status == "ok" and "dup2-done" not in text and "limit-raised" not in text, text
    assert text.count("dup2-refused") == 3 and "limit-kept" in text, text


#: K5: the machine kernel's key store. Every process of a uid shares that uid's keyring, and
#: its keys outlive the processes: a worker's sandboxes all run as the worker's uid, so a
#: kernel (or a re-check) could leave up to 20,000 bytes there (its code, say) for the next
#: submission that worker grades, a channel between students that no copy check sees, and keys
#: stayed on the machine after grading. The calls are now stopped, refused and recorded.
KEYS = """\
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_found = _libc.syscall(250, 10, -4, b"user", b"gmm-atk", 0)  # keyctl SEARCH, the uid's keyring
_buf = ctypes.create_string_buffer(64)
if _found > 0:
    _libc.syscall(250, 11, _found, _buf, 64)  # keyctl READ
print("found", _buf.value)
print("added", _libc.syscall(248, b"user", b"gmm-atk", b"my e_step", 9, -4) > 0)  # add_key
"""


def test_the_uids_keyring_is_no_channel_from_one_submission_to_the_next(kernel):
    first, report = kernel([KEYS])
    assert "found b''\nadded False" in _text(first)
    assert report.observed == [f"used the key store ({c}): refused" for c in ("keyctl", "add_key")]
    second, _ = kernel([KEYS])  # the next submission of the same worker: the same uid
    assert "found b''" in _text(second)


#: K6: the kernel publishes a message nbclient cannot read (a stream without its name). The
#: run ended with a KeyError, which `run_notebook` took for a kernel that did not start and
#: ran the whole notebook again in a new kernel, with a new budget: a cell that spends the
#: budget and then sends this held its slot twice as long (and more with more attempts).
MALFORMED = """\
_k = get_ipython().kernel
_k.session.send(_k.iopub_socket, "stream", {"text": "no name"}, parent=_k.get_parent())
"""


@pytest.fixture
def starts(monkeypatch):
    """The kernels `run_notebook` starts, one entry each."""
    from grading.student_run import CappedClient

    started = []
    start = CappedClient.async_start_new_kernel_client

    async def counted(self):
        started.append(self)
        return await start(self)

    monkeypatch.setattr(CappedClient, "async_start_new_kernel_client", counted)
    return started


def test_a_message_nbclient_cannot_read_is_no_second_run_of_the_notebook(kernel, starts):
    executed, report = kernel([MALFORMED])
    assert report.status == "error" and "KeyError" in report.detail
    assert len(starts) == 1


def test_a_kernel_that_does_not_start_is_still_tried_twice(kernel, starts, tmp_path):
    """What the retry is for: the grading machine's failure, before any student code runs."""
    import json

    spec = tmp_path / "jupyter" / "kernels" / "python3" / "kernel.json"
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "argv": ["false"]}))
    executed, report = kernel(["x = 1"])
    assert report.status == "error" and len(starts) == 2


#: K7: one message of 400 MB on iopub (a stream the kernel sends itself). The output caps cut
#: it only once jupyter_client has received and parsed it: the grader process grew by ~1.2 GB
#: for it (the root worker, which no sandbox limit holds). ZMQ's MAXMSGSIZE on the grader's
#: sockets now drops that message and the kernel's connection, which ZMQ makes again (output
#: sent meanwhile is lost: the student's own). Not covered: a message of many frames each
#: under the cap (ZMQ has no cap on a whole message), which the kernel can send from one
#: buffer named many times.
BIG_MESSAGE = """\
_k = get_ipython().kernel
_k.session.send(_k.iopub_socket, "stream", {"name": "stdout", "text": "x" * (400 << 20)},
                parent=_k.get_parent())
"""


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmRSS:"))


def test_a_message_past_any_output_cap_is_not_read_into_the_grader(kernel):
    import threading

    kernel(["x = 1"])  # the grader's own first-run memory, before the baseline
    base, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        # Building and signing 400 MB costs the kernel more CPU than a notebook's share of a
        # submission's budget, and the dropped message's lost "idle" keeps nbclient waiting
        # (asleep) for its iopub timeout: this run gets more of both, since what is tested
        # is the grader's memory and that the run goes on.
        more = notebook_budget(cpu=60.0, asleep=30.0)
        executed, report = kernel([BIG_MESSAGE, "print('after')"], more)
    finally:
        done.set()
        sampler.join()
    assert peak[0] - base < 200 << 20, f"the grader grew by {(peak[0] - base) >> 20} MB"
    assert report.status == "ok" and executed.cells[-1].execution_count == 2  # the run goes on
