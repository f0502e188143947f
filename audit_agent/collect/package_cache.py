"""Which package lists an executable, kept between runs so a scheduled scan does not read dpkg's lists again.

collect/programs.py looks up, in /var/lib/dpkg/info/*.list, the executables of processes that are named
like a system program but are not the one on the system PATH (878 lists, 7.6 MB on the dev box: the
largest fixed cost of a quiet scan's identity check). The answers of a complete read ({path: package,
or "" when no list names it}) are saved with a stamp of the lists: each one's name, inode, size, mtime
and ctime (installing, removing or editing a package's list changes it; ctime cannot be set back).
Trusted only when owned by us and nobody else can write it or its folder, like the executable-scan
cache: an entry saying "listed by a package" would otherwise hide an impostor. Bounded in entries and
bytes; anything malformed is ignored, since the cache is only ever a shortcut.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from audit_agent.paths import read_private_json, write_private

FILE_NAME = "package-owners.json"
VERSION = 1
MAX_ENTRIES = 4096
MAX_FILE_BYTES = 2 << 20


def stamp(dpkg_info: str, lists: list[str]) -> str | None:
    """A digest of every list's name and identity; None when one cannot be looked at (then nothing is kept)."""
    digest = hashlib.sha256(f"{VERSION}\0{dpkg_info}\0".encode("utf-8", "surrogateescape"))
    for path in lists:
        try:
            info = os.lstat(path)
        except OSError:
            return None
        digest.update(f"{os.path.basename(path)}\0{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:"
                      f"{info.st_ctime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def load(folder: Path, lists_stamp: str) -> dict[str, str]:
    """The saved answers for lists with this stamp, or nothing when there are none we may trust."""
    data = read_private_json(folder / FILE_NAME, MAX_FILE_BYTES, VERSION)
    if data is None or data.get("stamp") != lists_stamp:
        return {}
    owners = data.get("owners")
    if not isinstance(owners, dict):
        return {}
    return {key: value for key, value in list(owners.items())[:MAX_ENTRIES]
            if isinstance(key, str) and isinstance(value, str)}


def save(folder: Path, lists_stamp: str, owners: dict[str, str]) -> bool:
    """Write the answers (the latest MAX_ENTRIES) atomically; False when there is nowhere we may write."""
    kept = dict(list(owners.items())[-MAX_ENTRIES:])
    try:
        payload = json.dumps({"version": VERSION, "stamp": lists_stamp, "owners": kept},
                             separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError):
        return False
    return len(payload) <= MAX_FILE_BYTES and write_private(folder / FILE_NAME, payload)
