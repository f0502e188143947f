"""The compiled rule pack, kept between runs and keyed by the bytes of every file it was built from.

Loading a pack means importing YAML, parsing every file, validating every rule
(its regexes, its examples against itself) and building the matchers: most of a
scan's fixed cost on a quiet host. None of it changes until a file of the pack
(or the agent) does, so the built object is saved with pickle and loaded when
the fingerprint matches. Pickle runs code when loaded, so a saved pack is
trusted exactly as the agent trusts its own state: owned by us, writable by
nobody else, in a folder nobody else can write; anything else is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any, Callable, TypeVar

from audit_agent import __version__
from audit_agent.paths import read_private, write_private

T = TypeVar("T")
FOLDER = "pack-cache"
MAX_FILES = 2000
MAX_FILE_BYTES = 64 << 20


def fingerprint(roots: list[Path]) -> str | None:
    """sha256 over the relative names and bytes of every file under `roots` (and the agent's version);
    None when a root cannot be read whole (then nothing is cached)."""
    digest = hashlib.sha256(f"audit-agent {__version__}\0".encode())
    # The pickled classes are defined here (rules/*.py): a changed definition under an unchanged version
    # number (a development install, a patched package) must not load an object of the old shape.
    for source in sorted(Path(__file__).resolve().parent.glob("*.py")):
        try:
            digest.update(source.name.encode() + b"\0" + hashlib.sha256(source.read_bytes()).digest())
        except OSError:
            return None
    count = 0
    for root in roots:
        digest.update(f"root\0{root}\0".encode("utf-8", "backslashreplace"))
        if not root.exists():
            continue
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            if "__pycache__" in path.parts:
                continue
            count += 1
            if count > MAX_FILES:
                return None
            try:
                data = path.read_bytes()
            except OSError:
                return None
            digest.update(str(path.relative_to(root) if path != root else path.name).encode("utf-8", "backslashreplace"))
            digest.update(b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def cached(roots: list[Path], state: Path | None, build: Callable[[], T]) -> T:
    """`build()`'s result for these files: loaded from `state` when saved for the same bytes, else built
    (any ConfigError it raises goes to the caller: a broken pack is never cached) and saved.

    An object with a `fingerprint` attribute (the compiled pack) gets the key in it: caches of what was
    concluded with it (detect/memo.py) are keyed by it. Without a state folder it stays None."""
    key = fingerprint(roots) if state is not None else None
    if key is None or state is None:
        return build()
    folder = state / FOLDER
    path = folder / f"{key}.pickle"
    saved = read_private(path, MAX_FILE_BYTES)
    if saved is not None:
        try:
            loaded: T = pickle.loads(saved)         # noqa: S301 - our own file, trusted as above
            return stamped(loaded, key)
        except Exception:                      # noqa: BLE001 - a stale or torn cache is rebuilt, never fatal
            pass
    built = build()
    save(folder, path, built)
    return stamped(built, key)


def stamped(value: T, key: str) -> T:
    if hasattr(value, "fingerprint"):
        value.fingerprint = key
    return value


def save(folder: Path, path: Path, value: object) -> None:
    """Write the pickle (the only one kept) where nobody else can write; silently skip where we cannot."""
    try:
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return
    if not write_private(path, payload):
        return
    for old in folder.glob("*.pickle"):
        if old.name != path.name:
            try:
                old.unlink()
            except OSError:
                pass


DATA_FOLDER = "data-cache"
MAX_DATA_BYTES = 16 << 20


def cached_data(source: Path, state: Path | None, parse: Callable[[bytes], Any]) -> Any:
    """`parse(bytes of source)`, kept as JSON between runs and keyed by those bytes (and the agent's version).

    For the shipped data files a scan reads (detect/checks.yaml, reports/i18n/*.yaml): parsing them needs
    PyYAML, whose import alone costs a quiet scan more than reading the JSON. JSON runs no code when
    loaded, yet a report's texts come from it, so it is trusted like the pack cache (ours, private);
    a value that does not survive JSON unchanged (non-string keys, dates) is simply not kept."""
    data = source.read_bytes()
    if state is None:
        return parse(data)
    digest = hashlib.sha256(f"audit-agent {__version__}\0{source.resolve()}\0".encode("utf-8", "backslashreplace"))
    key = hashlib.sha256(digest.digest() + data).hexdigest()
    path = state / DATA_FOLDER / f"{digest.hexdigest()[:32]}.json"     # one file per source, overwritten on change
    return saved_data(path, key, lambda: parse(data))


def cached_json(name: str, roots: list[Path], state: Path | None, build: Callable[[], Any]) -> Any:
    """`build()`'s result, kept as JSON like cached_data under `name` and keyed by the bytes of every file under
    `roots` (and the rules/*.py sources and the agent's version, as the pack cache): for plain data built
    from many shipped files (the texts of the family rules)."""
    key = fingerprint(roots) if state is not None else None
    if key is None or state is None:
        return build()
    return saved_data(state / DATA_FOLDER / f"{name}.json", key, build)


def saved_data(path: Path, key: str, build: Callable[[], Any]) -> Any:
    """The value saved at `path` for `key`, else build() saved there (one file per path, overwritten on change)."""
    saved = read_private(path, MAX_DATA_BYTES)
    if saved is not None:
        try:
            stored = json.loads(saved)
            if isinstance(stored, dict) and stored.get("key") == key:
                return stored["value"]
        except (ValueError, RecursionError):
            pass                    # torn or stale: built again and rewritten
    value = build()
    save_data(path, key, value)
    return value


def save_data(path: Path, key: str, value: Any) -> None:
    try:
        text = json.dumps({"key": key, "value": value}, ensure_ascii=False)
        payload = text.encode("utf-8")
        if json.loads(payload)["value"] != value:
            return
    except (TypeError, ValueError, RecursionError):
        return
    write_private(path, payload)
