"""The out-of-kernel re-check's child process: run a student's cells, call their functions.

Started by `grading.recheck` as ``python -I -S sandbox.py WORKDIR FIRST_STEP CHANNEL`` inside the
bubblewrap sandbox (`grading.isolation`: WORKDIR is its only writable folder; no network; a
non-root uid; CPU, memory, file-size and process limits), with one BLAS thread. It imports
nothing from the repository (only the standard library and numpy/scipy from the paths in the
plan); names listed as blocked (gmmlib, sklearn for the from-scratch assignment) cannot be
imported.

Protocol: the plan arrives as one JSON line on stdin (steps: ``cell``, exec a cell's source;
``call``, call a function or read a variable on arrays from ``cases.npz``). For each step from
FIRST_STEP on it writes ``start <i>`` then ``done <i> <result as JSON>`` to its original stdout
(a pipe; plain JSON: lists of floats, never pickles), then ``finished``. The parent compares
the numbers with gmmlib itself, outside this process: nothing here decides a grade. Nor does
anything here watch the student's code (what runs in this interpreter, the student's code can
silence): before it runs, the files it opens, its connections and the processes and programs
it starts are handed to the grader (`_hand_over`: a seccomp listener sent over the CHANNEL
socket; `grading.observer.Observer` reads them), which lists what the sandbox refused or hid.

The feedback kernel starts here too (``python -E -s -B sandbox.py --kernel CHANNEL ARGS``, from
`grading.kernel`): the same hand-over, then ipykernel runs in this process with ARGS (no new
program: the filter, kept across everything, would note it as the student's).
"""

import ctypes
import importlib
import inspect
import json
import os
import platform
import resource
import socket
import struct
import sys
import time
import traceback


def _emit(fd, text):
    os.write(fd, (text + "\n").encode())


class _Blocker:
    """A meta-path finder that refuses the blocked top-level packages."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ImportError(f"{fullname} is not available while your work is graded")
        return None


def _plain(obj, np, depth=0):
    """The returned value as plain JSON data (arrays as nested lists of floats)."""
    if depth > 6:
        return {"__repr__": "(nested too deeply)"}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (tuple, list)):
        return [_plain(v, np, depth + 1) for v in obj[:10000]]
    if isinstance(obj, dict):
        return {"__dict__": {str(k): _plain(v, np, depth + 1) for k, v in list(obj.items())[:100]}}
    try:
        arr = np.asarray(obj)
        if arr.dtype.kind in "biuf" and arr.size <= 10**6:
            kind = (
                "bool" if arr.dtype.kind == "b" else ("int" if arr.dtype.kind in "iu" else "float")
            )
            data = arr.astype(float).tolist() if kind == "float" else arr.tolist()
            return {"__array__": data, "shape": list(arr.shape), "kind": kind}
    except Exception:  # noqa: BLE001 - anything the student returns is just data to us
        pass
    return {"__repr__": repr(obj)[:300]}


#: Per machine: (audit arch, seccomp's number, sendmsg's, the calls the grader watches: those
#: that open, create, remove or rename a file, connect or send to an address, run a program,
#: start a process or namespaces, install a filter, set up io_uring or use the key store), as
#: `grading.observer.CALLS` names them. A call of another architecture (x86_64's ``int 0x80``)
#: always goes to the grader too.
_WATCHED = {
    "x86_64": (
        0xC000003E,
        317,
        46,
        (2, 257, 437, 42, 59, 322, 317, 425, 56, 435, 57, 58, 85, 83, 258, 84, 87, 263)
        + (82, 264, 316, 86, 265, 88, 266, 76, 44, 272, 308, 248, 249, 250, 46, 307),
    ),
    "aarch64": (
        0xC00000B7,
        277,
        211,
        (56, 437, 203, 221, 281, 277, 425, 220, 435, 34, 35, 36, 37, 38, 276, 45, 206)
        + (97, 268, 217, 218, 219, 211, 269),
    ),
}
#: The highest descriptor number the hand-over's channel may take (`_hand_over`).
CHANNEL_CEILING = 4096


def _filter(arch: int, sendmsg: int, calls, channel: int) -> bytes:
    """The BPF program of `_hand_over`: a call of another arch, or one of ``calls``, goes to the
    grader (USER_NOTIF), any other is allowed; but sendmsg on descriptor ``channel`` (the
    hand-over's own, which would otherwise stop itself) is allowed."""
    notify, allow = (0x06, 0, 0, 0x7FC00000), (0x06, 0, 0, 0x7FFF0000)
    n = len(calls)
    code = [(0x20, 0, 0, 4), (0x15, 0, n + 8, arch), (0x20, 0, 0, 0)]  # arch; the call's number
    # sendmsg? Its first argument (64 bits, low word first) the channel: allow; else go on.
    code += [(0x15, 0, 4, sendmsg), (0x20, 0, 0, 16), (0x15, 0, 2, channel), (0x20, 0, 0, 20)]
    code += [(0x15, n + 1, 0, 0), (0x20, 0, 0, 0)]
    code += [(0x15, n - j, 0, nr) for j, nr in enumerate(calls)]
    code += [allow, notify]
    return b"".join(struct.pack("HBBI", *i) for i in code)


def _hand_over(channel):
    """Stop every watched call of this process (and all it starts) until the grader has seen
    it: a seccomp filter whose listener goes to the grader over ``channel`` (a socket), then
    both are closed here. The filter cannot be removed; the student's code never holds the
    listener. Without seccomp (another machine, an old kernel) "-" is sent instead.

    The listener goes with sendmsg, a watched call: the filter lets it through on the channel's
    descriptor only, which is first moved to the highest number allowed, and the limit on open
    descriptors is then lowered below it, for good: no later descriptor can take that number."""

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = min(soft, CHANNEL_CEILING) - 1
    if channel != top:
        os.dup2(channel, top)
        os.close(channel)
        channel = top
    sock = socket.socket(fileno=channel)
    try:
        arch, seccomp, sendmsg, calls = _WATCHED[platform.machine()]
        code = _filter(arch, sendmsg, calls, channel)
        raw = ctypes.create_string_buffer(code, len(code))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS, which a filter needs without root
        program = Program(len(code) // 8, ctypes.addressof(raw))
        listener = libc.syscall(seccomp, 1, 8, ctypes.byref(program))  # NEW_LISTENER
        if listener < 0:
            raise OSError(ctypes.get_errno(), "seccomp")
        socket.send_fds(sock, [b"L"], [listener])
        os.close(listener)
    except (KeyError, OSError, AttributeError):
        sock.send(b"-")
    finally:
        sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, top))


#: ipykernel's modules that its start imports (the kernel, its shell, its debugger: debugpy),
#: and numpy, which every course notebook imports first (as the re-check's child preloads the
#: course cells' imports): imported before the hand-over, their thousand files are not stopped
#: one by one. A stopped call waits for the grader, and that wait counts as the kernel's time
#: asleep, which a loaded machine would otherwise inflate (`grading.watch.Meter`).
KERNEL_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell")
KERNEL_MODULES += ("ipykernel.debugger", "numpy")


def kernel(channel, args):
    """The feedback kernel: ipykernel's modules imported (trusted code: the student's code
    arrives later, as messages), its calls handed over (`_hand_over`), then the kernel started
    as ``python -m ipykernel_launcher ARGS`` starts it. Imported first, ipykernel's own start
    (`KERNEL_MODULES`) is not stopped call by call."""
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # this file's folder: the kernel's path is Python's own, as with -m
    for name in KERNEL_MODULES:  # not there for the re-check (-S): imported here alone
        importlib.import_module(name)
    # debugpy, imported as the kernel starts, names the platform in its log: Python learns the
    # processor by running ``uname -p``, a program the observer would list. Asked here, first.
    platform.uname().processor  # noqa: B018 - cached on the shared uname result
    # The filter binds the thread that installs it and what it starts, not a thread already
    # running (which the kernel's code might reach): there must be none.
    if len(os.listdir("/proc/self/task")) != 1:
        sys.exit("grading.sandbox: not starting the kernel: a thread started before the hand-over")
    _hand_over(channel)
    sys.argv = ["ipykernel_launcher", *args]
    sys.modules["ipykernel.kernelapp"].launch_new_instance()


def main():
    if sys.argv[1] == "--kernel":
        return kernel(int(sys.argv[2]), sys.argv[3:])
    workdir, first = sys.argv[1], int(sys.argv[2])
    os.chdir(workdir)
    plan = json.loads(sys.stdin.readline())
    main_pid = os.getpid()
    for extra in plan["sys_path"]:
        sys.path.append(extra)
    sys.meta_path.insert(0, _Blocker(plan["blocked"]))
    # The protocol goes to a private copy of stdout; the student's prints go to a file.
    proto = os.dup(1)
    # A forked child must not speak the protocol (a fork bomb would flood it).
    os.register_at_fork(after_in_child=lambda: os.close(proto))
    sink = os.open("student-output.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    # Imported here, once the plan's paths are on sys.path (the child starts with -I -S).
    import warnings

    import numpy as np

    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    cases = dict(np.load("cases.npz", allow_pickle=False))
    for name in plan.get("preload", []):  # the course cells' imports (the grader's choice)
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - the course cell will say what is wrong
            pass
    if len(sys.argv) > 3:  # from here on, the grader sees the calls worth a look
        _hand_over(int(sys.argv[3]))
    namespace = {"__name__": "__main__"}
    for index, step in enumerate(plan["steps"]):
        if index < first and step["kind"] != "cell":
            continue
        if step["kind"] == "cell" and step.get("skip"):
            continue
        _emit(proto, f"start {index}")
        started = time.perf_counter()
        result = {"status": "ok"}
        try:
            if step["kind"] == "cell":
                exec(compile(step["source"], f"<cell {step['name']}>", "exec"), namespace)
            else:
                result["outputs"] = [_call(namespace, case, cases, np) for case in step["cases"]]
        except BaseException as exc:  # noqa: BLE001 - a student's error is a result
            result = {"status": "error", "error": _one_line(exc)}
            if step["kind"] != "cell":
                result["traceback"] = traceback.format_exc(limit=-3)[-2000:]
        if os.getpid() != main_pid:  # a forked copy of this process: it reports nothing
            os._exit(0)
        result["seconds"] = time.perf_counter() - started
        _emit(proto, f"done {index} {json.dumps(result)}")
    _emit(proto, "finished")


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def _call(namespace, case, cases, np):
    """One case: call the named function (or read a variable) and return plain data.

    ``counts``: how often each function in ``case["count"]`` was called meanwhile, and the
    largest number passed to each of its parameters, by keyword or by position
    (``"m_step(reg_covar)"``).
    """

    name = case["name"]
    if name not in namespace:
        return {"error": f"NameError: {name} is not defined"}
    if case.get("variable"):
        return {"value": _plain(namespace[name], np)}
    args = [cases[a["key"]] if "key" in a else a["literal"] for a in case["args"]]
    kwargs = case.get("kwargs", {})
    counts = {}
    saved = {}
    for counted in case.get("count", []):
        if counted in namespace:
            saved[counted] = namespace[counted]
            counts[counted] = 0

            def wrapper(*a, _name=counted, **k):
                counts[_name] += 1
                named = dict(k)
                try:  # m_step(X, resp, "full", 0.05) passes reg_covar too
                    named = {**inspect.signature(saved[_name]).bind(*a, **k).arguments, **k}
                except (TypeError, ValueError):
                    pass
                for key, value in named.items():  # the largest number passed
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        label = f"{_name}({key})"  # e.g. "m_step(reg_covar)"
                        counts[label] = max(counts.get(label, value), value)
                return saved[_name](*a, **k)

            namespace[counted] = wrapper
    try:
        value = namespace[name](*args, **kwargs)
        return {"value": _plain(value, np), "counts": dict(counts)}
    except Exception as exc:  # noqa: BLE001
        return {"error": _one_line(exc)}
    finally:
        namespace.update(saved)


if __name__ == "__main__":
    main()
