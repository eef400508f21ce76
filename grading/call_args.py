"""A stopped call's arguments, read from outside its process (``/proc/<pid>/mem``).

`grading.observer.Observer` looks at each watched call of a re-check child or a kernel while it
is stopped: its strings (paths, programs) and the socket addresses it names are in the
process's memory, read here a bounded amount at a time, and a socket address is put in the
words of Python's audit hook.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

#: The messages of one sendmmsg whose addresses are looked at (a `struct mmsghdr` is 64 bytes).
MMSG_LOOKED_AT = 8


def addresses(pid: int, name: str, args) -> list[bytes]:
    """The socket addresses a connect, sendto, sendmsg or sendmmsg names (none for a send on a
    connected socket): from the arguments, or from each message's header (``msg_name``, a
    pointer, then ``msg_namelen``, at the start of `struct msghdr`)."""
    if name in ("connect", "sendto"):
        address, size = (args[1], args[2]) if name == "connect" else (args[4], args[5])
        return [read_memory(pid, address, size) if address else b""]
    count = 1 if name == "sendmsg" else min(args[2], MMSG_LOOKED_AT)
    headers = read_memory(pid, args[1], 64 * count - 48)  # the last: its name and length only
    found = []
    for at in range(0, len(headers) - 11, 64):
        address, size = struct.unpack_from("QI", headers, at)
        found.append(read_memory(pid, address, size) if address else b"")
    return found


def read_memory(pid: int, address: int, size: int) -> bytes:
    """At most ``size`` bytes (and 4 kB) of process ``pid``'s memory at ``address``."""
    if not 0 <= address < 1 << 63:  # no file offset (os.pread would raise OverflowError)
        raise OSError(errno.EFAULT, f"no memory at {address:#x}")
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        return os.pread(fd, min(size, 4096), address)
    finally:
        os.close(fd)


def read_string(pid: int, address: int) -> str:
    """A NUL-terminated string of the process, read a page at a time (at most 4 kB)."""
    data = b""
    while b"\0" not in data and len(data) < 4096:
        page_end = (address + len(data)) // 4096 * 4096 + 4096
        data += read_memory(pid, address + len(data), page_end - address - len(data))
    # The bytes as the kernel sees them: a name that is not UTF-8 is looked up as it is.
    return data.split(b"\0")[0].decode(errors="surrogateescape")


def describe_address(raw: bytes) -> str:
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
