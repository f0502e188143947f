"""The agent's own code, as one digest: what results kept between runs are keyed by besides their inputs."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from audit_agent import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
CODE_SUFFIXES = (".py", ".so", ".yaml")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The agent's version and the name, size and mtime of each of its source files: a development checkout
    or a patched install that changes a collector or detector changes this, and with it every such key.
    Stats only (some 200 files, ~1 ms): the bytes would cost a read of each."""
    digest = hashlib.sha256(f"audit-agent {__version__}\0".encode())
    top = str(PACKAGE_DIR)
    for folder, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(CODE_SUFFIXES):
                path = f"{folder}/{name}"
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                digest.update(f"{path[len(top):]}\0{info.st_size}\0{info.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


