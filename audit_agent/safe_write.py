"""Writes that a local user cannot redirect: every output goes to a file the agent itself created.

The agent runs as root and writes into directories (a report folder, the
node_exporter textfile folder, the push spool) that a careless install may let
another user write. With the usual "temp file + chmod/rename by path", that user
swaps a symlink in between and root chmods or overwrites a file of the user's
choosing. So here:

* the directory is opened once and every later step is relative to that
  descriptor (a renamed or swapped parent changes nothing);
* a directory that another user may write is refused (UnsafeTarget, one line,
  exit 2), unless it is sticky (like /tmp), where other users cannot rename or
  delete what we create;
* the temp file is created with O_CREAT|O_EXCL|O_NOFOLLOW (never an existing
  file, never through a link), its mode set with fchmod on the descriptor,
  written, fsync'ed, then renamed: a report is whole or absent;
* something planted at the final name (a directory, a symlink, a FIFO, a file of
  another user) is never followed or overwritten: it is reported and the report
  goes to a dated name next to it, so scheduled runs keep producing reports.
"""
from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path
from typing import Callable

import msgspec

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC | getattr(os, "O_BINARY", 0)

Warn = Callable[[str], None]


class UnsafeTarget(OSError):
    """The target directory may be written by another user: writing there could be redirected."""

    def __init__(self, directory: str, why: str) -> None:
        super().__init__(errno.EPERM, f"refusing to write here: {why}", directory)


class Written(msgspec.Struct):
    path: Path              # where the data went (the fallback name when the asked-for name was taken)
    fallback: bool          # True when something planted at the asked-for name was left alone


def _default_warn(message: str) -> None:
    import sys
    print(f"audit-agent: warning: {message}", file=sys.stderr)


def others_can_write(info: os.stat_result) -> str:
    """Why a directory with this stat may be written by a user other than us (or root); "" when it may not."""
    me = os.geteuid()
    mode = info.st_mode
    if info.st_uid not in (me, 0):
        return f"it belongs to uid {info.st_uid}"
    if mode & stat.S_IWOTH:
        return "it is writable by every user"
    if mode & stat.S_IWGRP and info.st_gid not in (os.getegid(), 0):
        return f"it is writable by group {info.st_gid}"
    return ""


def open_target_dir(directory: str | os.PathLike[str]) -> tuple[int, bool]:
    """An O_DIRECTORY descriptor of `directory` and whether it is shared-but-sticky; UnsafeTarget if others may write it."""
    name = os.fspath(directory) or "."
    fd = os.open(name, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try:
        info = os.fstat(fd)
        why = others_can_write(info)
        sticky = bool(info.st_mode & stat.S_ISVTX)
        if why and not sticky:
            raise UnsafeTarget(name, f"{why} (another user could redirect the write); "
                                     "use a directory only root or this user can write")
    except BaseException:
        os.close(fd)
        raise
    return fd, bool(why)


def check_target_dir(directory: str | os.PathLike[str]) -> None:
    """Raise UnsafeTarget (or OSError) now, at start-up, rather than at the first write."""
    fd, _shared = open_target_dir(directory)
    os.close(fd)


def _ours(info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()


def fallback_name(name: str, now: float | None = None) -> str:
    """report.json -> report-20261129T114500Z.json: a dated name next to a planted one."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    stem, dot, suffix = name.rpartition(".")
    if not stem:
        return f"{name}-{stamp}"
    return f"{stem}-{stamp}{dot}{suffix}"


def write_file(path: str | os.PathLike[str], data: bytes, mode: int = 0o640, warn: Warn | None = None,
               replace: bool = True) -> Written:
    """Write `data` to `path` (whole or not at all) in a file created here; see the module doc.

    replace=False: never replace anything at `path` (FileExistsError instead), for a file that must be
    created once, such as a signing key: two first runs at once cannot leave two different keys."""
    warn = warn or _default_warn
    target = Path(path)
    name = target.name
    if not name or name in (".", ".."):
        raise IsADirectoryError(errno.EISDIR, "not a file name", str(path))
    dfd, shared = open_target_dir(target.parent if str(target.parent) else ".")
    try:
        tmp = _write_temp(dfd, name, data, mode)
        try:
            if not replace:     # link() never replaces, and never follows a link planted at the name
                os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
                _unlink(dfd, tmp)
                return Written(target, False)
            return _place(dfd, tmp, target, shared, warn)
        except BaseException:
            _unlink(dfd, tmp)
            raise
    finally:
        os.close(dfd)


def _write_temp(dfd: int, name: str, data: bytes, mode: int) -> str:
    for _ in range(20):
        tmp = f".{name}.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, WRITE_FLAGS, 0o600, dir_fd=dfd)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(errno.EEXIST, "no free temp name", name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)     # on the descriptor: a swapped path cannot receive the mode
            os.fsync(handle.fileno())
    except BaseException:
        _unlink(dfd, tmp)
        raise
    return tmp


def _place(dfd: int, tmp: str, target: Path, shared: bool, warn: Warn) -> Written:
    """Rename the temp file to the target name, or to a dated name if something not ours sits there."""
    name = target.name
    try:
        existing = os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        existing = None
    planted = existing is not None and not (stat.S_ISREG(existing.st_mode) and (not shared or _ours(existing)))
    if not planted:
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)   # rename never follows a link at the target
        return Written(target, False)
    assert existing is not None
    kind = describe(existing)
    alternative = fallback_name(name)
    try:    # link() never replaces: something planted at the fallback name too is not overwritten
        os.link(tmp, alternative, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        _unlink(dfd, tmp)
    except FileExistsError:
        if not _ours(os.lstat(alternative, dir_fd=dfd)):      # a second run within the same second is ours
            raise
        os.rename(tmp, alternative, src_dir_fd=dfd, dst_dir_fd=dfd)
    _drop_older_fallbacks(dfd, name, alternative)
    written = target.with_name(alternative)
    warn(f"{target}: {kind} is in the way (not followed, left alone); wrote {written} instead")
    return Written(written, True)


def _drop_older_fallbacks(dfd: int, name: str, keep: str) -> None:
    """Remove our earlier dated files for `name`: a timer run must not pile them up (or, in a textfile
    folder, leave two .prom files that repeat the same series)."""
    stem, dot, suffix = name.rpartition(".")
    prefix, end = (f"{stem}-", f"{dot}{suffix}") if stem else (f"{name}-", "")
    size = len(fallback_name(name, 0))
    for entry in os.listdir(dfd):
        if entry == keep or len(entry) != size or not (entry.startswith(prefix) and entry.endswith(end)):
            continue
        try:
            info = os.lstat(entry, dir_fd=dfd)
        except OSError:
            continue
        if _ours(info):
            _unlink(dfd, entry)


def describe(info: os.stat_result) -> str:
    if stat.S_ISLNK(info.st_mode):
        return "a symlink"
    if stat.S_ISDIR(info.st_mode):
        return "a directory"
    if stat.S_ISREG(info.st_mode):
        return f"a file of uid {info.st_uid}"
    return "a special file"


def _unlink(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def make_private_dir(directory: str | os.PathLike[str], mode: int = 0o750) -> None:
    """Create `directory` (and parents) if missing; an existing one is checked, never chmod'ed by path."""
    Path(directory).mkdir(parents=True, exist_ok=True, mode=mode)
    check_target_dir(directory)
