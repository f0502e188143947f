"""Kernel interfaces reached without the libc functions an LD_PRELOAD hider replaces.

A userland rootkit (libprocesshider, Jynx2, Azazel, BEURK and their copies in
mining droppers) is a shared library in /etc/ld.so.preload or LD_PRELOAD that
defines readdir, open, fopen, stat, kill, ... itself. Dynamic linking binds
every call the agent makes through Python (os.listdir, open, os.stat, os.kill)
to the first definition in the global scope: the hider's.

Two facts make the bypass simple and portable:

* `dlsym(handle, name)` on a handle to libc.so.6 searches libc and its own
  dependencies only, never the preloaded libraries of the global scope. So
  `ctypes.CDLL("libc.so.6").syscall` is libc's real syscall(2) wrapper even when
  a hider defines `syscall`, and the system calls below (getdents64, openat,
  read, readlinkat, kill) go straight to the kernel.
* Comparing that address with what the global scope resolves for the same name
  (`dlsym(RTLD_DEFAULT, name)`) says whether the name is interposed, and
  `dladdr` names the library that interposes it: the hider reports itself.

What this cannot see past: a kernel rootkit (it filters the system calls
themselves), and a hider that patches libc's code in memory or hooks dlsym;
the brute PID probe in stealth.py still catches the first kind when it leaves
kill(2) alone. Linux only; `available()` says whether the calls can be made.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
from functools import lru_cache

from audit_agent.collect import native

# System call numbers (linux/arch/*/include/uapi/asm/unistd*.h, asm-generic for arm64/riscv).
SYSCALLS = {
    "x86_64": {"read": 0, "close": 3, "kill": 62, "getdents64": 217, "openat": 257, "readlinkat": 267},
    "aarch64": {"read": 63, "close": 57, "kill": 129, "getdents64": 61, "openat": 56, "readlinkat": 78},
    "riscv64": {"read": 63, "close": 57, "kill": 129, "getdents64": 61, "openat": 56, "readlinkat": 78},
}
AT_FDCWD = -100
O_RDONLY, O_DIRECTORY, O_CLOEXEC, O_NOFOLLOW = 0, 0o200000, 0o2000000, 0o400000
if platform.machine() == "aarch64":     # arm64 swaps these two bits (asm/fcntl.h)
    O_DIRECTORY, O_NOFOLLOW = 0o40000, 0o100000
DIRENT_HEAD = struct.Struct("=QqHB")       # struct linux_dirent64: d_ino, d_off, d_reclen, d_type, d_name[]
RECLEN, RECLEN_AT = struct.Struct("=H"), 16     # d_reclen alone, and where it sits
GETDENTS_BUFFER = 64 * 1024
MAX_ENTRIES = 1 << 22                   # more than pid_max: a directory cannot make the listing unbounded
# The functions a process hider replaces to filter /proc and hide itself (libprocesshider: readdir;
# Jynx2/Azazel/BEURK: open*, fopen*, *stat*, kill, access, unlink ...).
WATCHED_FUNCTIONS = ("readdir", "readdir64", "opendir", "open", "open64", "openat", "openat64", "fopen", "fopen64",
                     "stat", "stat64", "lstat", "lstat64", "fstatat", "fstatat64", "__xstat", "__lxstat",
                     "statx", "access", "kill", "readlink", "readlinkat", "getdents64", "syscall")


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.machine() not in SYSCALLS:
        return None
    return open_libc()


def open_libc() -> ctypes.CDLL | None:
    """The C library's own handle (its symbols, never a preloaded library's), by glibc's name first:
    ctypes.util.find_library runs `ldconfig -p` in a child process, which every scan paid twice."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        pass
    from ctypes.util import find_library     # another C library (musl): its name as the system knows it
    name = find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


@lru_cache(maxsize=1)
def _syscall() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    libc = _libc()
    if libc is None:
        return None
    function = libc.syscall
    function.restype = ctypes.c_long
    return function


def _address(function: ctypes._CFuncPtr) -> int:  # type: ignore[name-defined]
    """Where libc's own syscall(2) wrapper is, for the C half to call it (never the global scope's)."""
    return int(ctypes.cast(function, ctypes.c_void_p).value or 0)


def syscall_address() -> int:
    """Where libc's own syscall(2) wrapper is (0 where raw system calls cannot be made), for the C half."""
    function = _syscall()
    return _address(function) if function is not None else 0


def available() -> bool:
    """Whether raw system calls can be made here (Linux on a known architecture, libc found)."""
    return _syscall() is not None


@lru_cache(maxsize=None)
def _number(name: str) -> ctypes.c_long:
    return ctypes.c_long(SYSCALLS[platform.machine()][name])


def _call(name: str, *args: object) -> int:
    """One system call; raises OSError with the kernel's errno on failure."""
    function = _syscall()
    if function is None:
        raise OSError(errno.ENOSYS, "raw system calls are not available on this platform")
    result = function(_number(name), *args)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return int(result)


def _open(path: str, flags: int) -> int:
    return _call("openat", ctypes.c_int(AT_FDCWD), ctypes.c_char_p(os.fsencode(path)),
                 ctypes.c_int(flags | O_CLOEXEC), ctypes.c_int(0))


def _close(fd: int) -> None:
    try:
        _call("close", ctypes.c_int(fd))
    except OSError:
        pass


def list_dir(path: str, limit: int = MAX_ENTRIES) -> list[str]:
    """Names in a directory, read with getdents64 (no readdir/opendir); raises OSError like os.listdir."""
    fd = _open(path, O_RDONLY | O_DIRECTORY)
    try:
        return list_fd(fd, limit)
    finally:
        _close(fd)


def list_fd(fd: int, limit: int = MAX_ENTRIES) -> list[str]:
    """Names in the directory open as `fd` (the caller's, from its start), read with getdents64."""
    function = _syscall()
    if native.NATIVE is not None and function is not None:     # the same calls, ~4x cheaper a name
        return list(native.NATIVE.list_fd(_address(function), fd, limit))
    names: list[bytes] = []
    buffer = ctypes.create_string_buffer(GETDENTS_BUFFER)
    # One entry of /proc is one process: only the record length and the name are taken out of each.
    reclen_at, head, find, append = RECLEN.unpack_from, DIRENT_HEAD.size, bytes.find, names.append
    while len(names) < limit:
        size = _call("getdents64", ctypes.c_int(fd), buffer, ctypes.c_uint(GETDENTS_BUFFER))
        if size == 0:
            break
        raw = ctypes.string_at(buffer, size)
        offset = 0
        while offset + head <= size:
            reclen, = reclen_at(raw, offset + RECLEN_AT)
            if reclen <= 0:
                break
            end = find(raw, b"\0", offset + head, offset + reclen)
            name = raw[offset + head: end if end != -1 else offset + reclen]
            if name != b"." and name != b"..":
                append(name)
            offset += reclen
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    return [name.decode(encoding, errors) for name in names[:limit]]      # os.fsdecode, without a call each


def read_file(path: str, limit: int, follow: bool = True, eof_below: int = 0) -> bytes:
    """At most `limit` bytes of a file, read with openat/read system calls; raises OSError.

    `eof_below`: the caller knows a read that returns fewer bytes is the end of the file. A /proc seq file
    (maps, net/tcp) stops a read early only when its page-sized buffer cannot take the next record, so for
    records shorter than 512 bytes a read of under 3,584 is the end; asking again is not free there: each
    read of /proc/net/tcp walks the kernel's whole connection hash table, the last (empty) one too."""
    fd = _open(path, O_RDONLY | (0 if follow else O_NOFOLLOW))
    chunks: list[bytes] = []
    total = 0
    # One buffer for every read, and only the bytes read copied out: a /proc seq file gives ~4 KB a read.
    buffer = ctypes.create_string_buffer(min(64 * 1024, limit))
    try:
        while total < limit:
            want = min(len(buffer), limit - total)
            got = _call("read", ctypes.c_int(fd), buffer, ctypes.c_size_t(want))
            if got == 0:
                break
            chunks.append(ctypes.string_at(buffer, got))
            total += got
            if got < eof_below:
                break
    finally:
        _close(fd)
    return b"".join(chunks)


def readlink(path: str) -> str:
    """Target of a symbolic link (readlinkat system call); raises OSError."""
    buffer = ctypes.create_string_buffer(4096)
    size = _call("readlinkat", ctypes.c_int(AT_FDCWD), ctypes.c_char_p(os.fsencode(path)), buffer,
                 ctypes.c_size_t(4096))
    return os.fsdecode(buffer.raw[:size])


def readlink_each(paths: list[bytes]) -> list[str | None]:
    """readlink() of each path (None where it fails), with one buffer and the call's arguments made once:
    one link of every process (its network namespace) is thousands of calls."""
    function = _syscall()
    if function is None:
        raise OSError(errno.ENOSYS, "raw system calls are not available on this platform")
    if native.NATIVE is not None:       # the same calls through the same wrapper, ~4x cheaper a process
        return list(native.NATIVE.readlink_each(_address(function), paths))
    number, cwd = _number("readlinkat"), ctypes.c_int(AT_FDCWD)
    store = bytearray(4096)             # sliced in C, where ctypes.string_at is a call of its own
    buffer = (ctypes.c_char * len(store)).from_buffer(store)
    length = ctypes.c_size_t(len(store))
    decoded: dict[bytes, str] = {}      # most processes share their link's target (one namespace)
    found: list[str | None] = []
    for path in paths:
        size = function(number, cwd, path, buffer, length)
        if size < 0:
            found.append(None)
            continue
        raw = bytes(store[:size])
        text = decoded.get(raw)
        if text is None:
            text = decoded[raw] = os.fsdecode(raw)
        found.append(text)
    return found


def pid_alive(pid: int) -> bool:
    """kill(pid, 0) as a system call: alive when it succeeds or is refused (EPERM), gone on ESRCH (read from
    errno: most PIDs asked about are gone, and an exception for each costs more than the call)."""
    function = _syscall()
    if function is None:
        raise OSError(errno.ENOSYS, "raw system calls are not available on this platform")
    return function(_number("kill"), ctypes.c_int(pid), ctypes.c_int(0)) == 0 or ctypes.get_errno() == errno.EPERM


def interposed_functions(names: tuple[str, ...] = WATCHED_FUNCTIONS) -> dict[str, str]:
    """{function: library} for each libc function that something loaded before libc replaces in this process.

    The global scope (what the agent's own calls bind to) is compared with libc's
    own definition; a difference is an interposition, and dladdr names its library."""
    libc = _libc()
    if libc is None:
        return {}
    try:
        global_scope = ctypes.CDLL(None)
        dladdr = libc.dladdr
    except (OSError, AttributeError):
        return {}
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    found: dict[str, str] = {}
    for name in names:
        try:
            own = ctypes.cast(getattr(libc, name), ctypes.c_void_p).value
            seen = ctypes.cast(getattr(global_scope, name), ctypes.c_void_p).value
        except AttributeError:
            continue        # not in this libc (e.g. __xstat on a new glibc), or not defined anywhere
        if own == seen or seen is None:
            continue
        info = _DlInfo()
        library = os.fsdecode(info.dli_fname) if dladdr(seen, ctypes.byref(info)) and info.dli_fname else "?"
        found[name] = library
    return found


def alive_pids(limit: int) -> list[int]:
    """Every PID (or TID) in 1..limit that kill(pid, 0) finds, probed with the system call in a tight loop."""
    function = _syscall()
    if function is None:
        raise OSError(errno.ENOSYS, "raw system calls are not available on this platform")
    if native.NATIVE is not None:       # the same loop through the same wrapper, ~4x cheaper a PID
        return list(native.NATIVE.alive_pids(_address(function), limit))
    number, zero = _number("kill"), ctypes.c_int(0)
    get_errno, eperm = ctypes.get_errno, errno.EPERM
    alive = []
    for pid in range(1, limit + 1):
        if function(number, pid, zero) == 0 or get_errno() == eperm:
            alive.append(pid)
    return alive


# ---- the same, falling back to ordinary calls where system calls cannot be made (other platforms)


def read_any(path: str, limit: int, eof_below: int = 0) -> bytes:
    """At most `limit` bytes of a small kernel or config file, past libc hooks where the platform allows."""
    if available():
        return read_file(path, limit, eof_below=eof_below)
    with open(path, "rb") as handle:
        return handle.read(limit)


def readlink_any(path: str) -> str:
    return readlink(path) if available() else os.readlink(path)


def readlink_each_any(paths: list[bytes]) -> list[str | None]:
    if available():
        return readlink_each(paths)
    found: list[str | None] = []
    for path in paths:
        try:
            found.append(os.fsdecode(os.readlink(path)))
        except OSError:
            found.append(None)
    return found


def list_any(path: str, limit: int = MAX_ENTRIES) -> list[str]:
    return list_dir(path, limit) if available() else os.listdir(path)[:limit]
