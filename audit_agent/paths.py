"""Where the shipped data directories (rules/, reports/, seeds/) are found."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the shipped data directory `name`: the package's data/ (what importlib.resources names for a
    package on a file system; importlib.resources itself only for another loader's layout), else the source
    tree's top level (a checkout or an editable install).

    A Path, not a Traversable: Jinja2's loader, yara-python and the rule loader need real files, and
    an installed wheel is always unpacked on a file system.
    """
    packaged = PACKAGE_DIR / "data" / name      # what importlib.resources names for a package on a file system
    if packaged.is_dir():
        return packaged
    checkout = PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    from importlib import resources     # another loader's layout; its import (tempfile, zipfile) is a scan's cost
    installed = resources.files("audit_agent") / "data" / name
    if installed.is_dir():
        return Path(str(installed))
    return checkout


def private_file(path: Path, max_bytes: int) -> bool:
    """A file the agent may trust as its own state: a regular file (not a link) owned by us, that nobody else
    can write, in a folder nobody else can write, at most max_bytes. Used for caches whose content would
    otherwise let another user hide a miner (a 'clean' scan result) or run code (a pickle)."""
    try:
        info = os.lstat(path)
        folder = os.stat(path.parent)
    except OSError:
        return False
    uid = os.geteuid()
    return (stat.S_ISREG(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o022
            and folder.st_uid == uid and not folder.st_mode & 0o022 and info.st_size <= max_bytes)


def private_folder(folder: Path) -> bool:
    """Create `folder` (0700) if needed; True when it is ours and nobody else can write it."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(folder)
    except OSError:
        return False
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


def read_private(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of one of the agent's own state files (see private_file), opened without following a link;
    None when it is missing, not ours alone, larger than max_bytes or unreadable."""
    if not private_file(path, max_bytes):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError:
        return None
    return data if len(data) <= max_bytes else None


def read_private_json(path: Path, max_bytes: int, version: int) -> dict[str, Any] | None:
    """A JSON state file (read_private) whose "version" is `version`, as a dict; None otherwise."""
    raw = read_private(path, max_bytes)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and data.get("version") == version else None


def write_private(path: Path, payload: bytes) -> bool:
    """Write a state file atomically (0600) in a folder only we can write, creating the folder (0700);
    False where we may not, or the write failed: a cache that is not saved only costs the next run."""
    if not private_folder(path.parent):
        return False
    from audit_agent.output import write_atomic
    try:
        write_atomic(str(path), payload, mode=0o600)
    except (OSError, TypeError):
        return False
    return True
