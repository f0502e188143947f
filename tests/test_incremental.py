"""Watch cycles that re-read only what changed: the kernel's process events and the incremental reader."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

import pytest

from audit_agent.collect.incremental import IncrementalProcesses, carry_slow_checks, refresh, start_ticks
from audit_agent.collect.proc_events import (CN_IDX_PROC, CN_MSG, CN_VAL_PROC, EVENT_HEAD, NLMSGHDR,
                                             PROC_EVENT_COMM, PROC_EVENT_EXEC, PROC_EVENT_EXIT, PROC_EVENT_FORK,
                                             EventBatch, listen_message, open_events, parse_messages)
from audit_agent.collect.processes import FirstReading, ProcReader, first_reading, read_processes
from audit_agent.model import Coverage, CoverageStatus, PersistenceEntry, ProcessInfo, Snapshot

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the process connector needs root")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and netlink")


def message(what: int, body: bytes, idx: int = CN_IDX_PROC) -> bytes:
    event = EVENT_HEAD.pack(what, 0, 0) + body
    cn = CN_MSG.pack(idx, CN_VAL_PROC, 0, 0, len(event), 0)
    length = NLMSGHDR.size + len(cn) + len(event)
    padded = (length + 3) & ~3
    return NLMSGHDR.pack(length, 3, 0, 0, 0) + cn + event + b"\0" * (padded - length)


def test_events_tell_processes_from_threads_and_follow_exec_rename_and_exit():
    batch = EventBatch()
    data = b"".join([
        message(PROC_EVENT_FORK, struct.pack("=iiii", 1, 1, 500, 500)),       # a new process
        message(PROC_EVENT_FORK, struct.pack("=iiii", 500, 500, 501, 500)),   # a thread of it
        message(PROC_EVENT_EXEC, struct.pack("=ii", 600, 600)),
        message(PROC_EVENT_COMM, struct.pack("=ii", 700, 700) + b"kworker\0".ljust(16, b"\0")),
        message(PROC_EVENT_EXIT, struct.pack("=iiII", 702, 700, 0, 17)),      # a thread of 700 ends
        message(PROC_EVENT_EXIT, struct.pack("=iiII", 800, 800, 0, 17)),
    ])
    parse_messages(data, batch)
    assert batch.started == {500}
    assert batch.changed == {600, 700}
    assert batch.exited == {800}
    assert batch.touched() == {500, 600, 700}
    assert batch.count == 6


def test_a_process_that_exits_is_not_read_again_and_a_recycled_pid_is():
    batch = EventBatch()
    parse_messages(message(PROC_EVENT_EXEC, struct.pack("=ii", 42, 42))
                   + message(PROC_EVENT_EXIT, struct.pack("=iiII", 42, 42, 0, 0)), batch)
    assert batch.touched() == set() and batch.exited == {42}
    parse_messages(message(PROC_EVENT_FORK, struct.pack("=iiii", 1, 1, 42, 42)), batch)
    assert batch.touched() == {42} and 42 not in batch.exited


@pytest.mark.parametrize("junk", [b"", b"\0" * 10, NLMSGHDR.pack(9999, 3, 0, 0, 0) + b"\0" * 40,
                                  NLMSGHDR.pack(4, 3, 0, 0, 0) + b"\0" * 40])
def test_truncated_or_malformed_datagrams_are_ignored(junk):
    batch = EventBatch()
    parse_messages(junk, batch)
    assert batch.count == 0 and not batch.touched()


def test_messages_from_other_connectors_are_ignored():
    batch = EventBatch()
    parse_messages(message(PROC_EVENT_EXEC, struct.pack("=ii", 9, 9), idx=7), batch)
    assert batch.count == 0


def test_the_subscription_request_is_a_well_formed_netlink_message():
    request = listen_message(1234)
    length, kind, _, _, port = NLMSGHDR.unpack_from(request)
    assert length == len(request) == NLMSGHDR.size + CN_MSG.size + 4
    assert port == 1234 and kind == 3
    assert CN_MSG.unpack_from(request, NLMSGHDR.size)[:2] == (CN_IDX_PROC, CN_VAL_PROC)
    assert struct.unpack_from("=I", request, NLMSGHDR.size + CN_MSG.size) == (1,)


@linux
@needs_root
def test_the_kernel_reports_a_process_we_start_and_end():
    events, why = open_events()
    assert events is not None, why
    with events:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            deadline = time.monotonic() + 10
            seen = EventBatch()
            while child.pid not in seen.started and time.monotonic() < deadline:
                batch = events.drain()
                seen.started |= batch.started
                time.sleep(0.05)
            assert child.pid in seen.started
        finally:
            child.kill()
            child.wait()
        deadline = time.monotonic() + 10
        exited: set[int] = set()
        while child.pid not in exited and time.monotonic() < deadline:
            exited |= events.drain().exited
            time.sleep(0.05)
        assert child.pid in exited


@linux
def test_without_events_every_cycle_reads_everything_and_says_why(monkeypatch):
    monkeypatch.setattr("audit_agent.collect.incremental.open_events", lambda: (None, "needs root (CAP_NET_ADMIN)"))
    tracker = IncrementalProcesses.open("/proc", full_every=10)
    for _ in range(2):
        processes, _ = tracker.read(first_reading())
        assert tracker.last.full_scan and tracker.last.refreshed == 0
        assert tracker.last.read_in_full == len(processes) > 0
    coverage = tracker.coverage()
    assert coverage.status == CoverageStatus.OK and "CAP_NET_ADMIN" in coverage.reason


def sleeper(processes, *code: str) -> subprocess.Popen:
    return processes.start([sys.executable, "-c", "; ".join(code)], wait_for_line="ready")


READY = "import sys, time; print('ready', flush=True)"


@linux
@needs_root
def test_a_cycle_reads_in_full_only_what_changed_and_sees_exec_and_rename(processes):
    tracker = IncrementalProcesses.open("/proc", full_every=1000)
    assert tracker.events is not None, tracker.unavailable
    try:
        steady = sleeper(processes, READY, "time.sleep(60)")
        renamer = sleeper(processes, READY, "sys.stdin = None",
                          "import ctypes; time.sleep(1.0)",
                          "ctypes.CDLL(None).prctl(15, b'kworker/0:7', 0, 0, 0)", "time.sleep(60)")
        execer = sleeper(processes, READY, "import os; time.sleep(1.0)",
                         "os.execvp('sleep', ['sleep', '61'])")
        tracker.read(first_reading())                 # first cycle: everything in full
        assert tracker.last.full_scan
        time.sleep(2.0)                               # the rename and the exec happen
        born = sleeper(processes, READY, "time.sleep(60)")
        gone = sleeper(processes, READY, "time.sleep(60)")
        tracker.read(first_reading())
        processes.stop(gone)
        listed, _ = tracker.read(first_reading())
        stats = tracker.last
        assert not stats.full_scan and stats.refreshed > 0
        by_pid = {p.pid: p for p in listed}
        assert by_pid[execer.pid].cmdline == ["sleep", "61"]
        assert by_pid[renamer.pid].name == "kworker/0:7"
        assert born.pid in by_pid and steady.pid in by_pid
        assert gone.pid not in by_pid
    finally:
        tracker.close()


@linux
def test_a_refreshed_process_carries_the_same_evidence_as_a_full_read(processes):
    """The incremental reader must not lose evidence: every field but the ones that move on their own."""
    proc = sleeper(processes, READY, "time.sleep(60)")
    first = first_reading()
    full, _ = read_processes(first)
    kept = next(p for p in full if p.pid == proc.pid)
    reader = ProcReader("/proc")
    again = refresh(reader.root + str(proc.pid).encode() + b"/", (start_ticks(kept, reader.boot_time), kept),
                    FirstReading(first.started, first.cpu_seconds), 1.0)
    assert again is not None
    fresh = next(p for p in read_processes(first)[0] if p.pid == proc.pid)
    moving = {"cpu_percent", "cpu_seconds", "children_cpu_seconds", "rss_bytes"}
    for name in ProcessInfo.__struct_fields__:
        if name not in moving:
            assert getattr(again, name) == getattr(fresh, name), name
    assert abs(again.rss_bytes - fresh.rss_bytes) <= 1 << 20


@linux
def test_a_recycled_pid_is_not_taken_for_the_process_we_kept(processes):
    proc = sleeper(processes, READY, "time.sleep(60)")
    full, _ = read_processes(first_reading())
    kept = next(p for p in full if p.pid == proc.pid)
    reader = ProcReader("/proc")
    other_start = start_ticks(kept, reader.boot_time) - 500      # as if the PID had belonged to an older process
    assert refresh(reader.root + str(proc.pid).encode() + b"/", (other_start, kept), first_reading(), 1.0) is None


def test_a_fast_cycle_carries_the_last_slow_checks():
    slow = Snapshot()
    slow.persistence = [PersistenceEntry(kind="cron", path="/etc/cron.d/x", line=1, text="* * * * * root /tmp/.x/run")]
    slow.coverage = [Coverage("persistence", CoverageStatus.OK, inspected=3),
                     Coverage("hidden-processes", CoverageStatus.OK)]
    slow.processes = [ProcessInfo(pid=os.getpid(), name="hidden", hidden=True),
                      ProcessInfo(pid=2 ** 22 + 12345, name="gone", hidden=True)]
    fast = Snapshot(coverage=[Coverage("processes", CoverageStatus.OK)])
    carry_slow_checks(fast, slow)
    assert fast.persistence == slow.persistence
    assert {c.check for c in fast.coverage} == {"processes", "persistence", "hidden-processes"}
    assert [p.name for p in fast.processes] == ["hidden"]      # still alive: kept; gone: dropped
