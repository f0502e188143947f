"""The collectors' C half (_procread.c), or None where it is not there.

It holds the loops that run once per process, PID, socket or folder entry: the process reader's reads
(processes.py); the brute PID probe, the readlink of every process's namespace and folder listings by
getdents64 (rawsys.py); the split of the socket tables (sockets.py); the stat of every process's executable
(proc_facts.py). Each has a Python twin that gives the same answer (tests/test_native_reader.py); the C half
only leaves out the interpreter between system calls.
"""
from __future__ import annotations

import os
import sys
from typing import Any


def load_native() -> Any:
    """_procread, or None: not Linux, not built (the package installs without a C compiler), or switched off
    with AUDIT_AGENT_PYTHON_READER=1 (to compare the two halves, bench/scan_cost.py)."""
    if not sys.platform.startswith("linux") or os.environ.get("AUDIT_AGENT_PYTHON_READER"):
        return None
    try:
        from audit_agent.collect import _procread  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _procread


NATIVE = load_native()
