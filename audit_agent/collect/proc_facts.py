"""What each process holds open, read once by the process reader and shared by the steps that need it.

Two steps look at every process's descriptors: the connection owners (network.py: which process holds
socket:[INODE]) and the family evidence (families.py: the folders a process has files open in, and who
holds a listening socket). Each walk of /proc/PID/fd is a listdir and a readlink per descriptor, and the
families also read every process's environ a second time: on a host with thousands of processes that
doubled the per-process cost of a scan. So the process reader walks each process's descriptors once,
right after the rest of it, keeps the family environment keys with the others, and records here what
the steps need.

What this does not cover, the steps read themselves as before: a process the reader did not read (one the
stealth step found hidden, one kept from an earlier watch cycle), and a socket opened after the walk (an
owner not found here is looked for again in a live walk, so a connection is never left ownerless by it).

Two more steps ask the same of every process: which file it runs (the executable scan and the packing
check, each a stat() of /proc/PID/exe). The file is what the kernel says, never the path the process shows
(a deleted or memfd executable, or another mount namespace's file under the same path, is a file of its
own), so each process is asked once: by the reader, where the process's folder is open (record_more), or
else by the first of the steps (exe_files), and the other takes the answer. The namespace step's question,
the link /proc/PID/ns/net, is answered by the reader the same way.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from msgspec import Struct, field

from audit_agent.collect import native

if TYPE_CHECKING:
    from audit_agent.collect.sockets import RawSocket

ExeShape = tuple[int, int, int, int, int, bool]      # device, inode, size, mtime_ns, ctime_ns, regular file
MAX_SOCKET_FDS = 1 << 20        # descriptors looked at per process for sockets (as sockets.py)
MAX_DIR_FDS = 1024              # of those, the first ones whose folders the artefact search is given
SKIPPED_PLACES = ("/proc/", "/sys/", "/dev/")   # as in _procread.c
SKIPPED_TARGETS = tuple(os.fsencode(place) for place in SKIPPED_PLACES)


class Held(Struct, frozen=True):
    """One process's open descriptors, as the walk saw them."""
    sockets: frozenset[int] = frozenset()
    dirs: tuple[str, ...] = ()      # folders in which it has a regular file open, in descriptor order
    denied: bool = False            # its descriptors could not be listed


NOTHING = Held()
DENIED = Held(denied=True)


class ExeFile(Struct, frozen=True):
    """The file a process runs, as stat() of /proc/PID/exe found it (followed to the file, deleted or not)."""
    key: tuple[int, int, int, int, int]     # device, inode, size, mtime_ns, ctime_ns
    regular: bool = True
    denied: bool = False                    # the stat was refused (EACCES/EPERM): nothing else is known

    @property
    def file(self) -> tuple[int, int]:
        return self.key[0], self.key[1]


EXE_DENIED = ExeFile((0, 0, 0, 0, 0), regular=False, denied=True)


class ProcFacts(Struct):
    """The shared walk of one scan: per process what it holds, and who holds each socket."""
    env_keys: frozenset[str] = frozenset()      # environ keys the reader kept beyond its own (family keys)
    held: dict[int, Held] = field(default_factory=dict)
    owners: dict[int, int] = field(default_factory=dict)    # socket inode -> first process listed holding it
    # The host namespace's socket tables as the connections step read them (None: not read): the family
    # step's listeners come from the same reading instead of a second one of every table.
    sockets: list[RawSocket] | None = None
    exes: dict[int, ExeFile | None] = field(default_factory=dict)  # pid -> its executable (None: none, gone)
    # pid -> its network namespace link ("net:[INODE]"; None: unreadable), for the namespace step
    netns: dict[int, str | None] = field(default_factory=dict)
    exe_files: dict[ExeShape, ExeFile] = field(default_factory=dict)      # one ExeFile per distinct file

    def record_more(self, pid: int, netns: bytes | int, exe: ExeShape | int) -> None:
        """What the process reader read for the later steps: the ns/net link and the stat() of exe."""
        self.netns[pid] = os.fsdecode(netns) if isinstance(netns, bytes) else None
        self.exes[pid] = exe_file(exe, self.exe_files)

    def record(self, pid: int, held: Held) -> None:
        """What the process reader's walk of /proc/PID/fd found (fd_links, held_of)."""
        self.held[pid] = held
        for inode in held.sockets:
            self.owners.setdefault(inode, pid)

    def covers(self, pid: int) -> bool:
        return pid in self.held


def walk_fds(fd_dir: bytes) -> Held | None:
    """The sockets and open folders of one process; DENIED when its descriptors cannot be listed, None
    when it is gone."""
    return held_of(fd_links(fd_dir))


def fd_links(fd_dir: bytes) -> int | tuple[list[int], list[bytes]]:
    """The errno of listing `fd_dir`, or (the socket inodes of its first MAX_SOCKET_FDS descriptors, the
    absolute targets of the first MAX_DIR_FDS that are neither deleted nor in SKIPPED_PLACES): what
    _procread.c's walk gives."""
    try:
        names = os.listdir(fd_dir)[:MAX_SOCKET_FDS]
    except OSError as error:
        return errno_of(error)
    sockets: list[int] = []
    targets: list[bytes] = []
    readlink = os.readlink
    for index, name in enumerate(names):
        try:
            target = readlink(fd_dir + name)
        except OSError:
            continue        # closed since the listing
        if target.startswith(b"socket:["):
            inode = target[8:-1]
            if target.endswith(b"]") and inode.isdigit() and len(inode) <= 19:
                sockets.append(int(inode))
        elif index < MAX_DIR_FDS and target.startswith(b"/") and not target.endswith(b" (deleted)") \
                and not target.startswith(SKIPPED_TARGETS):
            targets.append(target)
    return sockets, targets


def held_of(links: int | tuple[list[int], list[bytes]]) -> Held | None:
    """A walk's result (fd_links) as the steps use it: None when the process is gone."""
    if isinstance(links, int):
        return DENIED if links in (errno.EACCES, errno.EPERM) else None
    sockets, targets = links
    if not sockets and not targets:
        return NOTHING
    dirs = dict.fromkeys(os.path.dirname(os.fsdecode(target)) for target in targets)
    return Held(frozenset(sockets), tuple(dirs))


def errno_of(error: OSError) -> int:
    """The error's errno; one from its type when it was raised without one."""
    if error.errno:
        return error.errno
    if isinstance(error, PermissionError):
        return errno.EACCES
    if isinstance(error, ProcessLookupError):
        return errno.ESRCH
    if isinstance(error, FileNotFoundError):
        return errno.ENOENT
    return errno.EIO


def exe_files(facts: ProcFacts | None, pids: Iterable[int], proc_root: str) -> dict[int, ExeFile | None]:
    """pid -> the file it runs (None: no executable, gone, or its file system did not answer), for every pid
    given; with `facts`, what an earlier step of the scan asked already is not asked again."""
    if facts is None:
        return stat_exes(pids, proc_root)
    missing = [pid for pid in pids if pid not in facts.exes]
    if missing:
        facts.exes.update(stat_exes(missing, proc_root))
    return facts.exes


def stat_exes(pids: Iterable[int], proc_root: str) -> dict[int, ExeFile | None]:
    """stat() of each /proc/PID/exe: one call a process, and one ExeFile for each distinct file. On a host
    with a FUSE or network mount each goes through deadline.stat_path (a stalled server cannot stop it)."""
    from audit_agent.collect import deadline
    root = os.fsencode(os.path.join(proc_root, ""))
    pids = list(pids)
    paths = [b"%s%d/exe" % (root, pid) for pid in pids]
    if deadline.remote_mount_points():
        shapes = [exe_shape(remote_stat, path) for path in paths]
    elif native.NATIVE is not None:    # no mount that can stall: the same stat()s in one call, ~3x cheaper
        shapes = native.NATIVE.stat_each(paths)
    else:
        shapes = [exe_shape(os.stat, path) for path in paths]
    files: dict[ExeShape, ExeFile] = {}
    return {pid: exe_file(shape, files) for pid, shape in zip(pids, shapes)}


def exe_file(shape: ExeShape | int, files: dict[ExeShape, ExeFile]) -> ExeFile | None:
    """The ExeFile of a stat's shape (one per distinct file in `files`); None for a kernel thread, a gone
    process or a timed-out stat, EXE_DENIED for a refused one."""
    if isinstance(shape, int):
        return EXE_DENIED if shape in (errno.EACCES, errno.EPERM) else None
    exe = files.get(shape)
    if exe is None:
        exe = files[shape] = ExeFile((shape[0], shape[1], shape[2], shape[3], shape[4]), shape[5])
    return exe


def remote_stat(path: bytes) -> os.stat_result:
    """stat() under the scan's deadline: a stalled server cannot stop the scan (deadline.TimedOut)."""
    from audit_agent.collect import deadline
    return deadline.stat_path(os.fsdecode(path), follow_symlinks=True)


def exe_shape(look: Callable[[bytes], os.stat_result], path: bytes) -> ExeShape | int:
    """(device, inode, size, mtime_ns, ctime_ns, is a regular file) of `path` as `look` stats it, or the errno
    it failed with (EACCES for any PermissionError; ETIMEDOUT when no errno is given): as _procread.stat_each."""
    try:
        info = look(path)
    except PermissionError as error:
        return error.errno or errno.EACCES
    except OSError as error:
        return error.errno or errno.ETIMEDOUT
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, stat.S_ISREG(info.st_mode)

