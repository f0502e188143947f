"""Process creation, exec, rename and exit as the kernel reports them (netlink process connector).

`watch` re-reads only the processes these events name, instead of every process
every cycle. The connector needs root (CAP_NET_ADMIN) and a kernel built with
CONFIG_PROC_EVENTS; where it cannot be opened, `open_events()` returns None and the
caller rescans everything. Events can be lost (the socket's buffer overflows on a
fork storm): `drain()` then says so, and the caller must rescan everything too.

Layout of the messages (linux/netlink.h, linux/connector.h, linux/cn_proc.h):
nlmsghdr (16 bytes) | cn_msg (20 bytes) | proc_event: what, cpu, timestamp_ns, then
the event's own fields.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass, field

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_DONE = 3

PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_UID = 0x00000004
PROC_EVENT_GID = 0x00000040
PROC_EVENT_SID = 0x00000080
PROC_EVENT_PTRACE = 0x00000100
PROC_EVENT_COMM = 0x00000200
PROC_EVENT_NONZERO_EXIT = 0x20000000
PROC_EVENT_COREDUMP = 0x40000000
PROC_EVENT_EXIT = 0x80000000

NLMSGHDR = struct.Struct("=IHHII")
CN_MSG = struct.Struct("=IIIIHH")
EVENT_HEAD = struct.Struct("=IIQ")
PID_PAIR = struct.Struct("=ii")          # the (pid, tgid) every event starts with
FORK = struct.Struct("=iiii")            # parent pid, parent tgid, child pid, child tgid
HEADER = NLMSGHDR.size + CN_MSG.size
RECEIVE_BUFFER = 4 * 1024 * 1024         # a fork storm between two cycles fits, mostly; overflow is reported
# Events that change what a process is (its program, name, credentials): it is read again.
CHANGES = (PROC_EVENT_EXEC, PROC_EVENT_COMM, PROC_EVENT_UID, PROC_EVENT_GID, PROC_EVENT_SID, PROC_EVENT_PTRACE)


@dataclass
class EventBatch:
    """What happened since the last drain, by thread-group (process) id."""
    started: set[int] = field(default_factory=set)      # new processes (forks of a thread group, not threads)
    changed: set[int] = field(default_factory=set)      # exec, rename, credential changes
    exited: set[int] = field(default_factory=set)
    lost: bool = False                                   # the kernel dropped events: rescan everything
    count: int = 0

    def touched(self) -> set[int]:
        """Processes to read again: new or changed, and still alive as far as the events know."""
        return (self.started | self.changed) - self.exited


class ProcessEvents:
    """A subscribed process-connector socket; `drain()` reads what queued up without blocking."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self, max_messages: int = 1_000_000) -> EventBatch:
        batch = EventBatch()
        for _ in range(max_messages):
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return batch
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:      # the kernel dropped events: the caller must rescan
                    batch.lost = True
                    continue
                raise
            parse_messages(data, batch)
        batch.lost = True                            # more queued than we are willing to read in one go
        return batch

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "ProcessEvents":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_events() -> tuple[ProcessEvents | None, str]:
    """A subscribed connector and '', or None and why it is not available (not root, no kernel support)."""
    if not hasattr(socket, "AF_NETLINK"):
        return None, "the kernel's process events are a Linux interface"
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except OSError as exc:
        return None, f"cannot open the process connector: {exc.strerror or exc}"
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((os.getpid(), CN_IDX_PROC))
        sock.send(listen_message(os.getpid()))
    except OSError as exc:
        sock.close()
        reason = "needs root (CAP_NET_ADMIN)" if exc.errno in (errno.EPERM, errno.EACCES) else (exc.strerror or str(exc))
        return None, f"cannot subscribe to process events: {reason}"
    return ProcessEvents(sock), ""


def listen_message(port_id: int) -> bytes:
    """The nlmsghdr + cn_msg + PROC_CN_MCAST_LISTEN request that subscribes a socket."""
    operation = struct.pack("=I", PROC_CN_MCAST_LISTEN)
    cn_msg = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(operation), 0)
    length = NLMSGHDR.size + len(cn_msg) + len(operation)
    return NLMSGHDR.pack(length, NLMSG_DONE, 0, 0, port_id) + cn_msg + operation


def parse_messages(data: bytes, batch: EventBatch) -> None:
    """Add every proc_event in one datagram (one or more netlink messages) to `batch`; junk is skipped."""
    offset = 0
    while offset + HEADER + EVENT_HEAD.size <= len(data):
        length = NLMSGHDR.unpack_from(data, offset)[0]
        if length < HEADER + EVENT_HEAD.size or offset + length > len(data):
            return
        idx, val = CN_MSG.unpack_from(data, offset + NLMSGHDR.size)[:2]
        if (idx, val) == (CN_IDX_PROC, CN_VAL_PROC):
            parse_event(data[offset + HEADER: offset + length], batch)
        offset += (length + 3) & ~3                  # NLMSG_ALIGN
    return


def parse_event(event: bytes, batch: EventBatch) -> None:
    what = EVENT_HEAD.unpack_from(event)[0]
    body = event[EVENT_HEAD.size:]
    batch.count += 1
    if what == PROC_EVENT_FORK and len(body) >= FORK.size:
        child_pid, child_tgid = FORK.unpack_from(body)[2:]
        if child_pid == child_tgid:                  # a new process, not a new thread
            batch.started.add(child_tgid)
            batch.exited.discard(child_tgid)         # a recycled PID
        return
    if len(body) < PID_PAIR.size:
        return
    pid, tgid = PID_PAIR.unpack_from(body)
    if what in (PROC_EVENT_EXIT, PROC_EVENT_NONZERO_EXIT):
        if pid == tgid:                              # the whole thread group ends with its leader
            batch.exited.add(tgid)
            batch.started.discard(tgid)
            batch.changed.discard(tgid)
    elif what in CHANGES:
        batch.changed.add(tgid)
