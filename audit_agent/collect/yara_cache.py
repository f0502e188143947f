"""Compiled YARA rules kept between runs, keyed by what they were compiled from.

Compiling the pack's YARA files and the signature rule raises the agent's
resident memory by 7-12 MB that libyara's compiler frees but the allocator
keeps (the set itself, saved, is ~45 KB); loading a saved set costs neither
that memory nor the compile time. libyara refuses a file saved by another
version of its format, and a crafted compiled file is a risk to the process
that loads it, so a saved set is trusted exactly as the pack cache's pickle:
owned by us, writable by nobody else, in a folder nobody else can write.
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Callable

from audit_agent import __version__
from audit_agent.paths import private_file, write_private

FOLDER = "yara-cache"
SUFFIX = ".yarc"
MAX_FILE_BYTES = 16 << 20
KEEP = 4        # sets in use at once: the executable and memory scans' and persistence's (strings only)


def cache_key(yara: Any, sources: dict[str, str], strings: list[str]) -> str:
    """sha256 of the agent's and libyara's versions, every source (name and text) and every string."""
    digest = hashlib.sha256(f"audit-agent {__version__}\0yara-python {getattr(yara, '__version__', '?')}\0"
                            f"libyara {getattr(yara, 'YARA_VERSION', '?')}\0".encode())
    for name, text in sources.items():
        digest.update(name.encode("utf-8", "backslashreplace") + b"\0" + text.encode("utf-8", "backslashreplace"))
        digest.update(b"\0")
    digest.update(b"strings\0" + "\0".join(strings).encode("utf-8", "backslashreplace"))
    return digest.hexdigest()


def cached_rules(yara: Any, sources: dict[str, str], strings: list[str], state: Path | None,
                 compile_rules: Callable[[], Any]) -> Any:
    """The compiled set: loaded from `state` when saved there for the same inputs, else compiled (errors
    go to the caller: a broken set is never saved) and saved."""
    if state is None:
        return compile_rules()
    folder = state / FOLDER
    path = folder / (cache_key(yara, sources, strings) + SUFFIX)
    if private_file(path, MAX_FILE_BYTES):
        try:
            return yara.load(filepath=str(path))
        except Exception:       # noqa: BLE001 - a torn or foreign file is compiled again, never fatal
            pass
    rules = compile_rules()
    if rules is not None:
        save(folder, path, rules)
    return rules


def save(folder: Path, path: Path, rules: Any) -> None:
    """Write the set where nobody else can write (the newest KEEP kept); silently skip where we cannot."""
    buffer = io.BytesIO()
    try:
        rules.save(file=buffer)
    except Exception:           # noqa: BLE001 - a cache that cannot be written only costs the next run a compile
        return
    if write_private(path, buffer.getvalue()):
        prune(folder, path)


def prune(folder: Path, keep: Path) -> None:
    def age(item: Path) -> float:
        try:
            return -item.stat().st_mtime
        except OSError:
            return 0.0
    others = sorted((p for p in folder.glob("*" + SUFFIX) if p.name != keep.name), key=age)
    for old in others[KEEP - 1:]:
        try:
            os.unlink(old)
        except OSError:
            pass
