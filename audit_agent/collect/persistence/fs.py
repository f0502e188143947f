"""Reading persistence places on a hostile host: one directory descriptor per tree, no symlink out of it.

A `Tree` is a directory the agent trusts as a whole (the scan root for system
places, one user's home for that user's places). Every name below it is opened
one component at a time relative to a directory descriptor with O_NOFOLLOW, so
a symlink can never take a read outside the tree: a symlink met on the way is
read as text, resolved against the tree, and followed only when its target
stays inside and, in a home, belongs to the home's owner (GNU stow dotfiles
still work; `~/.config/systemd -> /root` does not). Files are opened O_PATH
first and only a regular file is reopened for reading (a FIFO cannot hang
the agent, a device is never opened).

Walks are iterative with a depth cap (1,100 nested folders cost a counter, not
a RecursionError), and every file read, byte read, name listed and second
spent is charged to a `Scope`: the system, or one user. When a scope's budget
is spent the rest of that scope is counted and named as skipped, and the next
scope starts with its own budget, so a flood in one home hides nothing else.
"""
from __future__ import annotations

import os
import posixpath
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator

from msgspec import Struct, field

from audit_agent.collect import deadline, observed, rawsys
from audit_agent.collect.safe_read import read_fd as read_all

O_PATH = getattr(os, "O_PATH", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
MAX_FILE_BYTES = 256 * 1024     # a crontab or unit is tiny; a bigger file is read only this far
MAX_LINKS = 8                   # symlinks followed while opening one path (loops end here)
MAX_DIR_NAMES = 20000           # names looked at in one directory
MAX_OPEN_DIRS = 256             # folder descriptors a tree keeps open for the paths below them
MAX_TOP_NAMES = 4096            # a top folder with more names is not listed for the misses (see Tree.absent)
MAX_EXAMPLES = 5


class Limits(Struct):
    files: int
    bytes: int
    seconds: float
    names: int                  # directory entries listed


SYSTEM_LIMITS = Limits(files=20000, bytes=96 * 1024 * 1024, seconds=60.0, names=400000)
USER_LIMITS = Limits(files=400, bytes=8 * 1024 * 1024, seconds=3.0, names=40000)


class Tally(Struct):
    """A count with a few example paths, for the coverage reason."""
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(what)


class Scope(Struct):
    """The budget and the troubles of one part of the check: "system" or "user NAME"."""
    name: str
    limits: Limits
    files: int = 0
    bytes: int = 0
    names: int = 0
    started: float = field(default_factory=time.monotonic)
    limit_hit: str = ""                                     # the first limit reached
    skipped: Tally = field(default_factory=Tally)           # files not read at a limit
    denied: Tally = field(default_factory=Tally)            # files or folders access was denied to
    refused: Tally = field(default_factory=Tally)           # symlinks not followed
    deep: Tally = field(default_factory=Tally)              # folders below the depth cap
    truncated: Tally = field(default_factory=Tally)         # files read only in part
    failed: Tally = field(default_factory=Tally)            # places lost to an unexpected error
    stalled: Tally = field(default_factory=Tally)           # places on a mount that did not answer in time

    def spent(self) -> str:
        """The limit this scope has reached ('' while it may go on)."""
        if not self.limit_hit:
            if self.files >= self.limits.files:
                self.limit_hit = f"{self.limits.files} files"
            elif self.bytes >= self.limits.bytes:
                self.limit_hit = f"{self.limits.bytes // (1024 * 1024)} MiB"
            elif self.names >= self.limits.names:
                self.limit_hit = f"{self.limits.names} directory entries"
            elif time.monotonic() - self.started >= self.limits.seconds:
                self.limit_hit = f"{self.limits.seconds:g} s"
        return self.limit_hit


class Read(Struct):
    path: str                   # the full path read (below the test root, if any)
    data: bytes
    info: os.stat_result
    linked: bool                # reached through a symlink

    def lines(self) -> list[str]:
        return self.data.decode("utf-8", "replace").splitlines()


class Tree:
    """A directory read through descriptors (see the module docstring).

    `owner_uid`: in a home, the uid a symlink's target must belong to (None: any, the system tree).
    `seen`: (device, inode) of files already read by any tree, so a file is read once."""

    def __init__(self, top: str, scope: Scope, seen: set[tuple[int, int]], owner_uid: int | None = None) -> None:
        self.top = top.rstrip("/") or "/"
        self.scope = scope
        self.seen = seen
        self.owner_uid = owner_uid
        self.real = os.path.realpath(self.top)
        self.fd = -1
        # Folders this tree already opened safely (each component with O_NOFOLLOW, no symlink on the way),
        # by their names: the next path below one starts there. A system scan opens ~1,000 files in a few
        # dozen folders; without this each open walked (stat, open, close) every folder from the top again.
        self.dirs: dict[tuple[str, ...], int] = {}
        # The names directly in the top folder, listed once (None: not yet, or too many to keep): a home is
        # asked for some thirty places (.bashrc, .zlogin, .config/...) and holds a few of them; each miss was
        # a walk of its own (a dup, a stat, an exception, a close).
        self.top_names: frozenset[str] | None = None
        self.top_listed = False
        try:
            self.fd = os.open(self.top, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            observed.saw(self.top, True, os.fstat(self.fd))
        except FileNotFoundError:
            observed.saw(self.top, True, None)
        except OSError:
            scope.denied.add(self.top)

    def __enter__(self) -> Tree:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def usable(self) -> bool:
        return self.fd >= 0

    def full(self, rel: str) -> str:
        return posixpath.join(self.top, rel) if rel else self.top

    # ---------------------------------------------------------------- opening

    def _open(self, rel: str, want_dir: bool) -> tuple[int, bool] | None:
        """A descriptor for `rel` (a directory fd, or an O_PATH fd of a regular file) and whether a
        symlink was followed; None when it is missing, denied, refused or of the wrong type."""
        if self.fd < 0:
            return None
        if not deadline.answers(self.full(rel)):    # a user's FUSE mount that never answers: not entered
            self.scope.stalled.add(self.full(rel))
            return None
        parts: deque[str] = deque(p for p in rel.split("/") if p and p != ".")
        if parts and parts[0] != ".." and self.absent(parts[0]):
            return None
        fd, done = self._start(parts)
        links = 0
        linked = False
        try:
            while parts:
                name = parts.popleft()
                last = not parts
                if name == "..":
                    self.scope.refused.add(self.full(rel))
                    return None
                info = self._component(fd, done, name)
                if info is None:
                    return None
                if stat.S_ISLNK(info.st_mode):
                    links += 1
                    target = os.readlink(name, dir_fd=fd)
                    base = posixpath.join(self.real, *done)
                    resolved = posixpath.normpath(posixpath.join(base, target))
                    inside = self.real == "/" or resolved.startswith(self.real + "/")
                    if links > MAX_LINKS or not inside:
                        self.scope.refused.add(self.full(rel))
                        return None
                    parts = deque([*posixpath.relpath(resolved, self.real).split("/"), *parts])
                    parts = deque(p for p in parts if p and p != ".")
                    os.close(fd)
                    fd, done = self._start(parts)
                    linked = True
                    continue
                if last and not want_dir:
                    if not stat.S_ISREG(info.st_mode):
                        return None
                    opened = os.open(name, (O_PATH or os.O_RDONLY | os.O_NONBLOCK) | O_NOFOLLOW | O_CLOEXEC,
                                     dir_fd=fd)
                    os.close(fd)
                    fd = opened
                    now = os.fstat(fd)
                    if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                        return None             # swapped between the look and the open
                    result = (fd, linked)
                    fd = -1
                    return result
                if not stat.S_ISDIR(info.st_mode):
                    return None
                opened = os.open(name, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = opened
                done.append(name)
                if len(self.dirs) < MAX_OPEN_DIRS:
                    self.dirs[tuple(done)] = os.dup(fd)
            if not want_dir:
                return None
            result = (fd, linked)
            fd = -1
            return result
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            if error.errno in (40,):           # ELOOP: became a symlink after the look
                self.scope.refused.add(self.full(rel))
            else:
                self.scope.denied.add(self.full(rel))
            return None
        finally:
            if fd >= 0:
                os.close(fd)

    def _component(self, fd: int, done: list[str], name: str) -> os.stat_result | None:
        """The lstat of one name in the folder open as `fd` (None when it is not there), noted as seen."""
        path = posixpath.join(self.top, *done, name)
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            observed.saw(path, False, None)
            return None
        observed.saw(path, False, info)
        return info

    def _start(self, parts: deque[str]) -> tuple[int, list[str]]:
        """A descriptor (a dup, the caller's to close) of the deepest folder on the way that this tree already
        opened, and its names; the names are taken off `parts`. The top when none is."""
        names = tuple(parts)
        for depth in range(len(names), 0, -1):
            cached = self.dirs.get(names[:depth])
            if cached is not None:
                for _ in range(depth):
                    parts.popleft()
                # reopened, not dup'ed: a listing must not share (and move) the kept descriptor's offset
                return os.open(".", DIR_FLAGS, dir_fd=cached), list(names[:depth])
        return os.dup(self.fd), []

    def absent(self, name: str) -> bool:
        """True when `name` is not in the top folder as listed once by this tree (a name made since counts
        as made after the scan); False when unknown (the listing failed or held too many names)."""
        if not self.top_listed:
            self.top_listed = True
            self.top_names = self._top_names()
        return self.top_names is not None and name not in self.top_names

    def _top_names(self) -> frozenset[str] | None:
        """Listed with getdents64 where the platform allows: a readdir hook that hides `.bashrc` from `ls`
        must not hide it from this check, which before the listing opened each place by its name."""
        try:
            # reopened, not dup'ed: the listing must not move the kept descriptor's offset
            fd = os.open(".", DIR_FLAGS, dir_fd=self.fd)
        except OSError:
            return None
        try:
            names = rawsys.list_fd(fd, MAX_TOP_NAMES + 1) if rawsys.available() else os.listdir(fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        return frozenset(names) if len(names) <= MAX_TOP_NAMES else None

    def open_file(self, rel: str) -> tuple[int, bool] | None:
        """An O_PATH descriptor of the regular file `rel` (the caller closes it) and whether a symlink led
        there; None when it is missing, denied, refused or not a regular file. Nothing is charged."""
        return self._open(rel, want_dir=False)

    def read(self, rel: str, limit: int = MAX_FILE_BYTES) -> Read | None:
        """The file's first `limit` bytes, charged to the scope; None if it cannot or may not be read."""
        path = self.full(rel)
        opened = self._charged_open(rel)
        if opened is None:
            return None
        fd, linked = opened
        try:
            info = os.fstat(fd)
            observed.saw(path, True, info)
            if linked and self.owner_uid is not None and info.st_uid != self.owner_uid:
                self.scope.refused.add(path)    # a home's link to someone else's file: never read as root
                return None
            identity = (info.st_dev, info.st_ino)
            if identity in self.seen:
                return None                     # merged /usr, linked units: each file once
            self.seen.add(identity)
            data = read_fd(fd, limit + 1)
        except OSError:
            self.scope.denied.add(path)
            return None
        finally:
            os.close(fd)
        if len(data) > limit:
            self.scope.truncated.add(path)
            data = data[:limit]
        self.scope.files += 1
        self.scope.bytes += len(data)
        return Read(path, data, info, linked)

    def _charged_open(self, rel: str) -> tuple[int, bool] | None:
        """_open, unless the scope's budget is spent (then the file is counted as skipped)."""
        if self.scope.spent():
            if self.exists(rel):
                self.scope.skipped.add(self.full(rel))
            return None
        return self._open(rel, want_dir=False)

    def look(self, rel: str) -> Read | None:
        """The file's identity and ages only (a program such as a generator), charged as one file."""
        opened = self._charged_open(rel)
        if opened is None:
            return None
        fd, _ = opened
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        observed.saw(self.full(rel), True, info)
        self.scope.files += 1
        return Read(self.full(rel), b"", info, False)

    def exists(self, rel: str) -> bool:
        try:
            observed.stat_path(self.full(rel))
            return True
        except (OSError, deadline.TimedOut):
            return False

    def lstat(self, rel: str) -> os.stat_result | None:
        """The entry itself (a symlink is not followed), looked up by path: only for ordering and ages."""
        try:
            return observed.stat_path(self.full(rel))
        except (OSError, deadline.TimedOut):
            return None

    # ---------------------------------------------------------------- listing

    def listdir(self, rel: str) -> list[tuple[str, str]]:
        """(name, "dir" | "file" | "link" | "other") of a directory's entries, sorted; bounded."""
        opened = self._open(rel, want_dir=True)
        if opened is None:
            return []
        fd, _ = opened
        found: list[tuple[str, str]] = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if len(found) >= MAX_DIR_NAMES or self.scope.names >= self.scope.limits.names:
                        self.scope.skipped.add(self.full(rel) + "/…")
                        self.scope.spent()
                        break
                    self.scope.names += 1
                    found.append((entry.name, _kind(entry)))
        except OSError:
            self.scope.denied.add(self.full(rel))
        finally:
            os.close(fd)
        return sorted(found)

    def files(self, rel: str) -> list[str]:
        """Files (and links to them) directly in a folder, as paths relative to the tree."""
        return [_join(rel, name) for name, kind in self.listdir(rel) if kind != "dir"]

    def walk(self, rel: str, max_depth: int, keep: Callable[[str], bool]) -> list[str]:
        """Files below `rel` whose name `keep` accepts, at most `max_depth` folders down; iterative."""
        found: list[str] = []
        stack = [(rel, 0)]
        while stack:
            if self.scope.spent():
                if self.exists(stack[-1][0]):
                    self.scope.skipped.add(self.full(stack[-1][0]) + "/…")
                break
            current, depth = stack.pop()
            for name, kind in reversed(self.listdir(current)):
                child = _join(current, name)
                if kind == "dir":
                    if depth + 1 > max_depth:
                        self.scope.deep.add(self.full(child))
                    else:
                        stack.append((child, depth + 1))
                elif keep(name):
                    found.append(child)
        found.sort()
        return found


def _kind(entry: os.DirEntry[str]) -> str:
    try:
        if entry.is_symlink():
            return "link"
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
    except OSError:
        pass
    return "other"


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def read_fd(fd: int, limit: int) -> bytes:
    """Read a regular file's O_PATH descriptor by reopening the same inode through /proc/self/fd."""
    reader = os.open(f"/proc/self/fd/{fd}", READ_FLAGS) if O_PATH and os.path.isdir("/proc/self/fd") else os.dup(fd)
    try:
        return read_all(reader, limit)
    finally:
        os.close(reader)


def iter_tallies(scope: Scope) -> Iterator[tuple[str, Tally]]:
    for name in ("denied", "refused", "stalled", "skipped", "deep", "truncated", "failed"):
        yield name, getattr(scope, name)
