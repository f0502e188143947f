"""The heap set up for a scan: glibc's allocator (one arena, large blocks always given back) and Python's
cyclic garbage collector (told what lives as long as the process).

Each collection step runs in a thread of its own (collect/deadline.py). glibc gives concurrently live
threads separate malloc arenas, and what a step frees in its arena stays in the process for the next
thread to maybe reuse; and after the first large block (a 2 MiB memory-scan window, a socket table) is
freed, glibc raises its mmap threshold to that size, so later blocks of up to that size come from the
heap and are kept when freed. Both show as peak RSS that grows step by step with memory no step still
uses. One arena and a fixed 128 KiB threshold (glibc's default before it adapts) keep a scan's peak to
what it holds. Other C libraries (musl) and other systems are left as they are.

The cyclic collector walks every container object it tracks, again and again as a scan allocates: ~100 ms
of a scan at 8,000 processes went to it (gc.callbacks), although nearly all of what a scan makes is freed by
reference counting, and the modules and the rule pack it walked most live until the process ends.
"""
from __future__ import annotations

import gc
import sys

M_MMAP_THRESHOLD = -3           # malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
YOUNG_COLLECTION_EVERY = 10_000     # container allocations between two young collections (CPython: 700)
_done: list[bool] = []
_collector_tuned: list[bool] = []


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


def tune_collector() -> None:
    """Once per process, as its first scan starts: what exists then (modules, the rule pack, the configuration)
    is moved where the collector no longer walks it (gc.freeze: it lives as long as the process anyway), and
    young collections run less often. A watch's later cycles keep the setting. At 8,000 processes this took
    the collector's time in one scan from 80-100 ms to 33-36 ms (gc.callbacks, bench/scan_cost.py's load)."""
    if _collector_tuned:
        return
    _collector_tuned.append(True)
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)
