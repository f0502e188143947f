"""Reading a file named by someone else (a process's command line, a user's home) without side effects.

The agent runs as root, and the paths it reads are attacker-controlled: a
config "file" may be /dev/watchdog (opening it arms the watchdog and reboots
the host) or a tape (opening rewinds it); a ~/.bashrc may be swapped for a
FIFO (open blocks forever) or for a symlink to a root-only file (whose lines
would end up in the report).

So on Linux the path is first opened with O_PATH, which runs no driver code and
never blocks, the open descriptor is fstat'ed, and only a regular file is then
reopened for reading through /proc/self/fd/N: the same inode, so there is no
window in which the path can be swapped. Elsewhere (or without a mounted
/proc) the path is stat'ed first, opened with O_NONBLOCK|O_NOCTTY, and the
descriptor must be the same regular file.

A symlink in the last component is followed only when `accept` says so; it is
given the target's stat, the path actually opened and whether a symlink was
followed, and is always asked (the caller may refuse files reached through a
link in an earlier component too).
"""
from __future__ import annotations

import os
import stat
from typing import Any, Callable

from msgspec import Struct

O_PATH = getattr(os, "O_PATH", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_NOCTTY = getattr(os, "O_NOCTTY", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
READ_FLAGS = os.O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | getattr(os, "O_BINARY", 0)

Accept = Callable[[os.stat_result, str, bool], bool]     # (target's stat, real path, via a symlink) -> read it?


class NotRegularFile(Exception):
    """The path is a FIFO, device, socket, directory, or a symlink that was not followed."""


class Refused(Exception):
    """A regular file the caller's policy does not allow (e.g. a symlink to a file owned by someone else)."""


class FileRead(Struct):
    data: bytes
    info: os.stat_result
    real_path: str          # the path actually opened ("" when it cannot be known)
    via_symlink: bool

    @property
    def identity(self) -> tuple[int, int]:
        return self.info.st_dev, self.info.st_ino


def read_regular(path: str | os.PathLike[str], limit: int, accept: Accept | None = None,
                 guard: bool = True, as_uid: int | None = None) -> FileRead:
    """At most `limit` bytes of the regular file at `path`, never opening anything else for reading.

    Raises FileNotFoundError / PermissionError / other OSError as the OS does,
    NotRegularFile for anything but a regular file, Refused when `accept` says no,
    deadline.TimedOut (an OSError) when the file system does not answer in time
    (guard=False: the caller already runs this under a deadline).

    as_uid: open and read with that user's file-system identity (setfsuid, this
    thread only), so the kernel checks every directory on the way and the file
    as it would for that user's process: root never reads for a user what the
    user could not read."""
    path = os.fspath(path)
    read = _read_linux if O_PATH and _proc_fd_works() else _read_portable
    if as_uid is not None:
        read = _as_user(read, as_uid)
    if not guard:
        return read(path, limit, accept)
    from audit_agent.collect import deadline
    return deadline.call(read, path, limit, accept, path=path)


NOGROUP = 65534


def _as_user(read: Callable[[str, int, Accept | None], FileRead], uid: int) -> Callable[..., FileRead]:
    """`read` run under fsuid=uid, fsgid=nogroup in the calling thread (a no-op unless we are root)."""
    libc = _libc()
    if libc is None or os.geteuid() != 0 or uid == 0:
        return read

    def wrapped(path: str, limit: int, accept: Accept | None) -> FileRead:
        libc.setfsgid(NOGROUP)
        libc.setfsuid(uid)
        try:
            if libc.setfsuid(-1 & 0xFFFFFFFF) != uid:      # -1 reads the current value back
                raise PermissionError(1, "cannot take the file-system identity of the process's user", path)
            return read(path, limit, accept)
        finally:
            libc.setfsuid(os.geteuid())
            libc.setfsgid(os.getegid())
    return wrapped


_LIBC: object = None


def _libc() -> Any:
    """glibc's setfsuid/setfsgid (per thread on Linux); None elsewhere."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            from audit_agent.collect.rawsys import open_libc
            lib = open_libc()
            if lib is None:
                raise OSError("no C library")
            lib.setfsuid.argtypes = [ctypes.c_uint]
            lib.setfsgid.argtypes = [ctypes.c_uint]
            _LIBC = lib
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC or None


def read_no_symlink(path: str | os.PathLike[str], limit: int) -> bytes:
    """A regular file of ours, not through a symlink in its last component; ValueError when over `limit` bytes."""
    data = read_regular(path, limit + 1, lambda info, real, linked: not linked).data
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def _read_linux(path: str, limit: int, accept: Accept | None) -> FileRead:
    fd = os.open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC)
    try:
        info = os.fstat(fd)
        linked = stat.S_ISLNK(info.st_mode)
        if linked:
            os.close(fd)
            fd = -1
            fd = os.open(path, O_PATH | O_CLOEXEC)      # still O_PATH: the target is not opened for reading
            info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(path)
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = ""
        if accept is not None and not accept(info, real, linked):
            raise Refused(path)
        reader = os.open(f"/proc/self/fd/{fd}", READ_FLAGS)    # reopens this very inode: no swap possible
        try:
            data = read_fd(reader, limit)
        finally:
            os.close(reader)
    finally:
        if fd >= 0:
            os.close(fd)
    return FileRead(data, info, real, linked)


def _read_portable(path: str, limit: int, accept: Accept | None) -> FileRead:
    info = os.lstat(path)
    linked = stat.S_ISLNK(info.st_mode)
    if linked:
        info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFile(path)
    real = os.path.realpath(path)
    if accept is not None and not accept(info, real, linked):
        raise Refused(path)
    fd = os.open(path, READ_FLAGS | (0 if linked else O_NOFOLLOW))
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise NotRegularFile(path)      # swapped between the stat and the open
        data = read_fd(fd, limit)
    finally:
        os.close(fd)
    return FileRead(data, opened, real, linked)


def read_fd(fd: int, limit: int) -> bytes:
    """At most `limit` bytes of an open file, to its end."""
    chunks = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


_PROC_FD: bool | None = None


def _proc_fd_works() -> bool:
    global _PROC_FD
    if _PROC_FD is None:
        _PROC_FD = os.path.isdir("/proc/self/fd")
    return _PROC_FD

