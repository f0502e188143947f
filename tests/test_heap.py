"""The heap set-up a scan makes (collect/heap.py), each in a process of its own: it changes the process."""
from __future__ import annotations

import subprocess
import sys

import pytest

TUNED = """
import gc, weakref
from audit_agent.collect.heap import YOUNG_COLLECTION_EVERY, tune_collector
before = object.__new__(type("Before", (), {}))
tune_collector()
frozen = gc.get_freeze_count()
assert frozen > 0, "nothing frozen"
assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY
made = [[i] for i in range(50000)]
tune_collector()                    # a watch's next cycle: nothing more is frozen
assert gc.get_freeze_count() == frozen, (gc.get_freeze_count(), frozen)

class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a             # a cycle made after the freeze is still the collector's
gone = weakref.ref(a)
del a, b
gc.collect()
assert gone() is None, "a cycle made during the scan was never collected"
print("ok")
"""

ALLOCATOR = """
from audit_agent.collect.heap import tune_allocator
first = tune_allocator()
assert tune_allocator() is first    # once per process
print(first)
"""


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_collector_is_told_once_what_lives_as_long_as_the_process_and_still_collects_cycles():
    done = run(TUNED)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_allocator_is_set_once_per_process():
    done = run(ALLOCATOR)
    assert done.returncode == 0 and done.stdout.strip() in ("True", "False"), done.stderr


def test_a_scan_tunes_the_collector_before_it_collects(tmp_path):
    """collect_snapshot() does it: after one scan of a fake tree the process's collector is set."""
    code = ("import gc\n"
            "from audit_agent.collect import CollectOptions, collect_snapshot\n"
            "from audit_agent.collect.heap import YOUNG_COLLECTION_EVERY\n"
            "assert gc.get_freeze_count() == 0\n"
            f"collect_snapshot(CollectOptions(window=0, proc_root={str(tmp_path)!r}, etc_root={str(tmp_path / 'etc')!r},\n"
            "                 check_stealth=False, check_persistence=False))\n"
            "assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY\n"
            "print('ok')\n")
    done = run(code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
