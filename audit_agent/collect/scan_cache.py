"""Executable scan results kept between runs, so a scheduled scan does not read every binary again.

Two kinds, one file each: the signature scan of collect/binaries.py (FILE_NAME) and the packing facts of
collect/packing.py (PACKING_FILE: UPX marks, entropy, section and import tables, which depend on the file
alone and on the code's sampling, hence its own VERSION).

An entry is keyed by what identifies a file's content without reading it
(device, inode, size, mtime and ctime: a rewrite or a chmod/rename-over changes
ctime) plus the digest of the signatures it was scanned for (a new rule pack scans
again). The file lives in the agent's state directory; it is trusted only when
it is owned by us and nobody else can write it or its directory, because an entry
that says "clean" would otherwise be a way to hide a miner. Bounded in entries
and bytes; anything malformed is ignored (the cache is only ever a shortcut).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit_agent.paths import read_private_json, write_private

FILE_NAME = "binary-scans.json"
PACKING_FILE = "packing-scans.json"
VERSION = 1
PACKING_VERSION = 1     # raise when packing.examine reads or computes differently
MAX_ENTRIES = 4096
MAX_FILE_BYTES = 8 << 20


def entry_key(identity: tuple[int, ...], signature_digest: str) -> str:
    return ":".join(str(part) for part in identity) + ":" + signature_digest


def load(folder: Path | None, name: str = FILE_NAME, version: int = VERSION,
         valid: Callable[[Any], bool] | None = None) -> dict[str, dict[str, Any]]:
    """The saved entries, or nothing when there are none we may trust."""
    data = read_private_json(folder / name, MAX_FILE_BYTES, version) if folder is not None else None
    if data is None or not isinstance(data.get("entries"), dict):
        return {}
    check = valid or valid_entry
    return {key: value for key, value in list(data["entries"].items())[:MAX_ENTRIES] if check(value)}


def valid_entry(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("sha256"), str) and isinstance(value.get("engine"), str)
            and all(isinstance(value.get(k), int) and not isinstance(value.get(k), bool) for k in ("size", "scanned"))
            and isinstance(value.get("matched"), list) and all(isinstance(m, str) for m in value["matched"]))


def valid_packing(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("marks"), list)
            and all(isinstance(m, str) for m in value["marks"]) and isinstance(value.get("section_table"), bool)
            and _int_or_none(value.get("imports")) and isinstance(value.get("sampled_bytes"), int)
            and (value.get("entropy") is None or isinstance(value.get("entropy"), (int, float)))
            and not isinstance(value.get("entropy"), bool))


def _int_or_none(value: Any) -> bool:
    return value is None or isinstance(value, int) and not isinstance(value, bool)


def save(folder: Path | None, entries: dict[str, dict[str, Any]], name: str = FILE_NAME,
         version: int = VERSION) -> bool:
    """Write the entries (at most MAX_ENTRIES) atomically; False when there is nowhere we may write."""
    if folder is None:
        return False
    kept = dict(list(entries.items())[-MAX_ENTRIES:])
    payload = json.dumps({"version": version, "entries": kept}, separators=(",", ":")).encode("utf-8")
    return len(payload) <= MAX_FILE_BYTES and write_private(folder / name, payload)
