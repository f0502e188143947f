"""The persistence check's result kept between runs, reused while nothing it looked at has changed.

Reading persistence means opening some 1,000 files through safe descriptor walks,
parsing them and resolving the 300-odd programs they start (content scan, configs
next to them): about 100 ms of every scan, for places that change a few times a
year. While it runs, every look at the file system is recorded with what it saw
(collect/observed.py): each component of each path opened (lstat), each file read
or program examined (fstat of the descriptor read), each folder listed (a name
added, removed or renamed changes the folder's mtime and ctime), each name found
absent. The next run makes the same looks with stat alone (some 2,000, ~10 ms);
when every answer is the same, so is what the collector would read, and the saved
entries are the check's result, with its coverage saying so. Any difference and
the check runs whole, and is saved again.

A result is saved only when it can vouch for itself:
  * the check was complete and clean (coverage ok: nothing denied, refused, stalled,
    skipped, truncated, failed, no limit reached), and every look was answered;
  * nothing it looked at changed in the RACY_SECONDS before the read began or while
    it ran (timestamps come from a clock tick: a second write in the same tick can
    leave them as they were; git treats its index the same way);
  * nothing lies on a FUSE or network mount (their stamps are the server's, and a stat
    there can stall).
It is reused for at most MAX_AGE_SECONDS, so a full read happens at least daily
whatever the stamps say (root can set the clock back and forge a ctime), and only
under the same key: the rule pack's fingerprint (the content scan of programs uses
its signatures), the agent's code (fingerprint.py), the root, the limits and our uid.
Like the other caches it is trusted only when ours alone (paths.read_private):
a planted "nothing here" would hide a miner's persistence.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import msgspec

from audit_agent.collect import deadline, observed
from audit_agent.collect.coverage import because, coverage
from audit_agent.fingerprint import code_fingerprint
from audit_agent.model import Coverage, CoverageStatus, PersistenceEntry
from audit_agent.paths import read_private, write_private

FILE_NAME = "persistence-reuse.msgpack"
VERSION = 1
RACY_SECONDS = 2.0
MAX_AGE_SECONDS = 24 * 3600.0
MAX_FILE_BYTES = 64 << 20
MAX_LOOKS = 100_000


class Saved(msgspec.Struct):
    version: int
    key: str
    read_at: float                                          # wall clock when the full read began
    looks: list[tuple[str, bool, observed.Identity | None]]     # path, links followed, what was seen
    entries: list[PersistenceEntry]
    coverage: Coverage


def key_of(rules_fingerprint: str | None, etc: Path, limits: tuple[object, ...], strings: list[str]) -> str | None:
    """None without a rule pack fingerprint (a pack built without a state folder): then nothing is kept."""
    if not rules_fingerprint:
        return None
    digest = hashlib.sha256(f"{rules_fingerprint}\0{code_fingerprint()}\0{etc}\0{os.geteuid()}\0{limits!r}\0".encode(
        "utf-8", "surrogateescape"))
    for string in strings:
        digest.update(string.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def reusable(folder: Path | None, key: str | None, now: float | None = None) -> Saved | None:
    """The saved result under `key`, when it is ours alone, recent, and every look gives the same answer now."""
    if folder is None or key is None:
        return None
    raw = read_private(folder / FILE_NAME, MAX_FILE_BYTES)
    if raw is None:
        return None
    try:
        saved = msgspec.msgpack.decode(raw, type=Saved)
    except msgspec.DecodeError:
        return None
    now = time.time() if now is None else now
    if saved.version != VERSION or saved.key != key or not 0 <= now - saved.read_at <= MAX_AGE_SECONDS:
        return None
    if any(deadline.remote_mount_of(path) for path, _, _ in saved.looks):   # mounted since: not stat'ed here
        return None
    if not observed.still_the_same(saved.looks):
        return None
    return saved


def reused_coverage(saved: Saved, now: float | None = None) -> Coverage:
    """The saved coverage, saying that it was checked, not read again, and when the full read was."""
    minutes = max(0, round(((time.time() if now is None else now) - saved.read_at) / 60))
    return coverage(saved.coverage.check, saved.coverage.status, *saved.coverage.details,
                    because("persistence_unchanged", minutes=minutes, looks=len(saved.looks)),
                    inspected=saved.coverage.inspected, denied=saved.coverage.denied)


def keep(folder: Path | None, key: str | None, record: observed.Record, read_at: float,
         entries: list[PersistenceEntry], result: Coverage) -> bool:
    """Save a full read that can vouch for itself (see the module docstring); False when it cannot or may not."""
    if folder is None or key is None or not vouches(record, read_at, result):
        return False
    looks = [(path, follow, seen) for (path, follow), seen in record.seen.items()]
    payload = msgspec.msgpack.encode(Saved(VERSION, key, read_at, looks, entries, result))
    return len(payload) <= MAX_FILE_BYTES and write_private(folder / FILE_NAME, payload)


def vouches(record: observed.Record, read_at: float, result: Coverage) -> bool:
    if result.status != CoverageStatus.OK or record.unstable or record.unanswered or len(record.seen) > MAX_LOOKS:
        return False
    racy_from = int((read_at - RACY_SECONDS) * 1e9)
    for (path, _), seen in record.seen.items():
        if seen is not None and max(seen[7], seen[8]) >= racy_from:     # mtime, ctime
            return False
        if deadline.remote_mount_of(path):
            return False
    return True
