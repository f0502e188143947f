"""What a step looked at on the file system, and what it saw: the record a result kept between runs is checked
against (collect/persistence/reuse.py).

While a Record is active in the calling thread (`recording`), every observation the
persistence collector makes is kept as (path, whether links were followed, identity
or None for "absent"). An identity is what changes whenever a file's bytes, a
folder's names, a link's target or an owner or mode does: inode, device, mode,
links, owner, group, size, mtime and ctime (a rewrite, a rename over it, a chmod
or a utime all set ctime; only a clock set back by root can repeat one).
Observations of other threads and of code run without a Record cost one lookup.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from audit_agent.collect import deadline

Identity = tuple[int, int, int, int, int, int, int, int, int]


def identity_of(info: os.stat_result) -> Identity:
    return (info.st_mode, info.st_ino, info.st_dev, info.st_nlink, info.st_uid, info.st_gid, info.st_size,
            info.st_mtime_ns, info.st_ctime_ns)


class Record:
    """Observations by (path, followed links); one seen two ways in the same run makes the record unstable."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, bool], Identity | None] = {}
        self.unstable = False
        self.unanswered = False     # a look that failed otherwise (denied, timed out): the record is not whole

    def add(self, path: str, follow: bool, info: os.stat_result | None) -> None:
        found = identity_of(info) if info is not None else None
        key = (path, follow)
        if key in self.seen and self.seen[key] != found:
            self.unstable = True        # it changed while the step looked: the result may mix both
        self.seen.setdefault(key, found)


_ACTIVE: ContextVar[Record | None] = ContextVar("observed_record", default=None)


@contextmanager
def recording() -> Iterator[Record]:
    """Observations made in this thread until the block ends go to the Record it gives."""
    record = Record()
    token = _ACTIVE.set(record)
    try:
        yield record
    finally:
        _ACTIVE.reset(token)


def saw(path: str, follow: bool, info: os.stat_result | None) -> None:
    """Note an observation: `info` is the stat (or fstat of a descriptor opened at `path`); None for absent."""
    record = _ACTIVE.get()
    if record is not None:
        record.add(path, follow, info)


def unanswered() -> None:
    """Note a look that got no answer to keep (denied, timed out): the record cannot vouch for the result."""
    record = _ACTIVE.get()
    if record is not None:
        record.unanswered = True


def stat_path(path: str, follow_symlinks: bool = False) -> os.stat_result:
    """deadline.stat_path, noted: a result or a missing path is an observation; any other failure
    (denied, timed out) marks the record as not whole."""
    try:
        info = deadline.stat_path(path, follow_symlinks=follow_symlinks)
    except (FileNotFoundError, NotADirectoryError):
        saw(path, follow_symlinks, None)
        raise
    except OSError:
        unanswered()
        raise
    saw(path, follow_symlinks, info)
    return info


def still_the_same(looks: Iterable[tuple[str, bool, Identity | None]]) -> bool:
    """Whether each observation (path, links followed, what was seen), made again now, gives the same answer."""
    for path, follow, expected in looks:
        try:
            now: Identity | None = identity_of(os.stat(path, follow_symlinks=follow))
        except (FileNotFoundError, NotADirectoryError):
            now = None
        except OSError:
            return False
        if now != expected:
            return False
    return True
