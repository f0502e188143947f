"""What a detector concluded about an input that has not changed, kept between runs.

A host's persistence lines are the same from one scheduled scan to the next, and
judging them is the largest part of a quiet host's evaluation: each pack pattern a
line reaches is compiled first (some 30 ms a run), then matched, and its shell
words parsed. `detect.persistence.entry_signals` is a pure function of the entry and
the compiled rules, so its signals are remembered by the digest of every field of
the entry (text, file, line, owner, ages, the programs it starts...), under one key
for the whole memo: the rule pack's fingerprint (every file of the pack and the
overlay, and the rules code: rules/pack_cache.py) and the agent's own source files
(name, size and mtime of each). A changed line, another pack or overlay, an edited
module or another version is a miss, and a memo saved under another key is ignored
whole.

The memo lives in the state folder like the other caches and is trusted on the same
terms (paths.read_private: ours alone), because an entry that says "nothing here"
would otherwise be a way to hide a miner. Only the entries used by the last run are
saved, so it stays as large as the host's persistence, at most MAX_ENTRIES.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from audit_agent.fingerprint import code_fingerprint
from audit_agent.paths import read_private, write_private

if TYPE_CHECKING:
    from audit_agent.detect import Signal

FILE_NAME = "signal-memo.msgpack"
VERSION = 1
MAX_ENTRIES = 50_000
MAX_FILE_BYTES = 32 << 20


class MemoFile(msgspec.Struct):
    version: int
    key: str
    entries: dict[str, bytes]       # digest of the input -> its signals, msgpack


class SignalMemo:
    """Signals by the digest of what they were made from; `recall` gives fresh objects every time."""

    def __init__(self, key: str, saved: dict[str, bytes] | None = None) -> None:
        self.key = key
        self.saved = saved or {}
        self.used: dict[str, bytes] = {}
        self.changed = False

    @staticmethod
    def digest(item: msgspec.Struct) -> str:
        return hashlib.blake2b(msgspec.msgpack.encode(item), digest_size=16).hexdigest()

    def recall(self, digest: str) -> list[Signal] | None:
        encoded = self.used.get(digest) or self.saved.get(digest)
        if encoded is None:
            return None
        try:
            found = _decoder().decode(encoded)
        except msgspec.DecodeError:     # a file of another shape under our key: judged again
            return None
        self.used[digest] = encoded
        return found

    def remember(self, digest: str, signals: list[Signal]) -> None:
        self.used[digest] = msgspec.msgpack.encode(signals)
        self.changed = True

    def to_bytes(self) -> bytes:
        kept = dict(list(self.used.items())[:MAX_ENTRIES])
        return msgspec.msgpack.encode(MemoFile(VERSION, self.key, kept))


@lru_cache(maxsize=1)
def _decoder() -> msgspec.msgpack.Decoder[list[Signal]]:
    from audit_agent.detect import Signal
    return msgspec.msgpack.Decoder(list[Signal])


def memo_key(rules_fingerprint: str | None) -> str | None:
    """The key of a memo of conclusions drawn with these rules by this code; None when the rules have no
    fingerprint (built without a state folder: nothing to key by, nothing remembered)."""
    if not rules_fingerprint:
        return None
    return hashlib.sha256(f"{rules_fingerprint}\0{code_fingerprint()}".encode()).hexdigest()


def load_memo(folder: Path | None, key: str | None) -> SignalMemo | None:
    """The memo saved in `folder` under `key` (empty when there is none we may trust); None without a key."""
    if folder is None or key is None:
        return None
    raw = read_private(folder / FILE_NAME, MAX_FILE_BYTES)
    if raw is not None:
        try:
            saved = msgspec.msgpack.decode(raw, type=MemoFile)
        except msgspec.DecodeError:
            saved = None
        if saved is not None and saved.version == VERSION and saved.key == key:
            return SignalMemo(key, saved.entries)
    return SignalMemo(key)


def save_memo(folder: Path | None, memo: SignalMemo | None) -> bool:
    """Write what the last run used, when it judged anything anew or left something unused."""
    if folder is None or memo is None or not (memo.changed or memo.saved.keys() - memo.used.keys()):
        return False
    payload = memo.to_bytes()
    return len(payload) <= MAX_FILE_BYTES and write_private(folder / FILE_NAME, payload)
