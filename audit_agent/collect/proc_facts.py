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
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audit_agent.collect.sockets import RawSocket

MAX_SOCKET_FDS = 1 << 20        # descriptors looked at per process for sockets (as sockets.py)
MAX_DIR_FDS = 1024              # of those, the first ones whose folders the artefact search is given
SKIPPED_PLACES = ("/proc/", "/sys/", "/dev/")


@dataclass(frozen=True, slots=True)
class Held:
    """One process's open descriptors, as the walk saw them."""
    sockets: frozenset[int] = frozenset()
    dirs: tuple[str, ...] = ()      # folders in which it has a regular file open, in descriptor order
    denied: bool = False            # its descriptors could not be listed


NOTHING = Held()
DENIED = Held(denied=True)


@dataclass
class ProcFacts:
    """The shared walk of one scan: per process what it holds, and who holds each socket."""
    env_keys: frozenset[str] = frozenset()      # environ keys the reader kept beyond its own (family keys)
    held: dict[int, Held] = field(default_factory=dict)
    owners: dict[int, int] = field(default_factory=dict)    # socket inode -> first process listed holding it
    # The host namespace's socket tables as the connections step read them (None: not read): the family
    # step's listeners come from the same reading instead of a second one of every table.
    sockets: list[RawSocket] | None = None

    def record(self, pid: int, base: bytes) -> None:
        """Walk /proc/PID/fd (`base` is /proc/PID/); a process that is gone is left out."""
        held = walk_fds(base + b"fd/")
        if held is None:
            return
        self.held[pid] = held
        for inode in held.sockets:
            self.owners.setdefault(inode, pid)

    def covers(self, pid: int) -> bool:
        return pid in self.held


def walk_fds(fd_dir: bytes) -> Held | None:
    """The sockets and open folders of one process; DENIED when its descriptors cannot be listed, None
    when it is gone."""
    try:
        names = os.listdir(fd_dir)[:MAX_SOCKET_FDS]
    except PermissionError:
        return DENIED
    except OSError:
        return None
    sockets: set[int] = set()
    dirs: dict[str, None] = {}
    readlink = os.readlink
    for index, name in enumerate(names):
        try:
            target = readlink(fd_dir + name)
        except OSError:
            continue        # closed since the listing
        if target.startswith(b"socket:["):
            sockets.add(int(target[8:-1]))
        elif index < MAX_DIR_FDS and target.startswith(b"/") and not target.endswith(b" (deleted)"):
            path = os.fsdecode(target)
            if not path.startswith(SKIPPED_PLACES):
                dirs.setdefault(os.path.dirname(path), None)
    if not sockets and not dirs:
        return NOTHING
    return Held(frozenset(sockets), tuple(dirs))
