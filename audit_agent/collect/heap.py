"""glibc's allocator set up for a scan: one arena, and large blocks always given back.

Each collection step runs in a thread of its own (collect/deadline.py). glibc gives concurrently live
threads separate malloc arenas, and what a step frees in its arena stays in the process for the next
thread to maybe reuse; and after the first large block (a 2 MiB memory-scan window, a socket table) is
freed, glibc raises its mmap threshold to that size, so later blocks of up to that size come from the
heap and are kept when freed. Both show as peak RSS that grows step by step with memory no step still
uses. One arena and a fixed 128 KiB threshold (glibc's default before it adapts) keep a scan's peak to
what it holds. Other C libraries (musl) and other systems are left as they are.
"""
from __future__ import annotations

import sys

M_MMAP_THRESHOLD = -3           # malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
_done: list[bool] = []


def tune_allocator() -> bool:
    """Set the two options once per process (before the scan starts its threads); True when glibc took them."""
    if _done:
        return _done[0]
    _done.append(False)
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt
        gnu = ctypes.CDLL(None).gnu_get_libc_version     # glibc only: musl's mallopt is a stub anyway
    except (OSError, AttributeError):
        return False
    del gnu
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done[0] = bool(mallopt(M_ARENA_MAX, 1)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return _done[0]
