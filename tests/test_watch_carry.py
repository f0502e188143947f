"""A fast watch cycle looks only at new and changed processes and keeps the last cycle's per-process
results for the rest (collect/carry.py, issue 16 item 4). It must hold the same evidence as a full scan
taken at the same moment, see what started since, and drop what exited."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from audit_agent.collect import CollectOptions, collect_snapshot
from audit_agent.collect.carry import Carry, merge, records_of
from audit_agent.collect.incremental import IncrementalProcesses
from audit_agent.model import BinaryScan, MemoryScan, Snapshot
from tests.conftest import have_compiler
from tests.standin.cbuild import build_cminer
from tests.standin.pool import StratumPool

linux_root = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                                reason="the process connector needs Linux and root")


def test_records_of_unchanged_processes_keep_only_those_pids():
    shared = BinaryScan(path="/opt/x/worker", pids=[10, 11, 12], matched_strings=["stratum+tcp://"])
    gone = BinaryScan(path="/opt/y/old", pids=[20])
    memory = [MemoryScan(pid=10), MemoryScan(pid=20)]
    kept = records_of([shared, gone], frozenset({10, 12}))
    assert [(r.path, r.pids) for r in kept] == [("/opt/x/worker", [10, 12])]
    assert shared.pids == [10, 11, 12], "the last cycle's record is never changed in place"
    assert [r.pid for r in records_of(memory, frozenset({10}))] == [10]


def test_a_new_process_running_a_carried_program_joins_its_record():
    fresh = [BinaryScan(path="/opt/x/worker", pids=[30])]
    kept = [BinaryScan(path="/opt/x/worker", pids=[10]), BinaryScan(path="/opt/z/other", pids=[11])]
    merged = merge(fresh, kept)
    assert sorted((r.path, tuple(r.pids)) for r in merged) == [("/opt/x/worker", (10, 30)), ("/opt/z/other", (11,))]


class Tracker:
    def __init__(self, unchanged: set[int]) -> None:
        self.unchanged = frozenset(unchanged)


def test_a_process_the_last_snapshot_never_saw_is_not_taken_as_unchanged():
    """A cycle that failed leaves the tracker a cycle ahead of the last snapshot: only pids both know carry."""
    previous = Snapshot()
    previous.processes = []
    assert Carry(previous, Tracker({os.getpid()})).unchanged() == frozenset()


def per_pid(snapshot: Snapshot, pids: set[int]) -> dict[str, object]:
    """The per-process evidence about `pids`, in a form two snapshots can be compared by."""
    def files(records: list) -> set:
        return {(r.path, tuple(sorted(p for p in r.pids if p in pids))) for r in records if set(r.pids) & pids}
    return {
        "binaries": {(r.path, tuple(sorted(p for p in r.pids if p in pids)), tuple(sorted(r.matched_strings)))
                     for r in snapshot.binaries if set(r.pids) & pids},
        "packing": files(snapshot.packing),
        "identities": {(r.pid, r.claimed, r.exe, r.same_as_path) for r in snapshot.identities if r.pid in pids},
        "memory": {(r.pid, tuple(sorted(r.matched_strings)), tuple(r.size_bytes for r in r.regions))
                   for r in snapshot.memory if r.pid in pids},
    }


@linux_root
@pytest.mark.skipif(not have_compiler(), reason="needs a C compiler")
def test_a_fast_cycle_holds_what_a_full_scan_sees(compiled_rules, processes, tmp_path: Path):
    with StratumPool(0, tls=tmp_path / "cert") as pool:
        exe = build_cminer(tmp_path / "bin", port=pool.port, pack="scrubbed")

        def start(name: str):
            return processes.start([str(exe), "--tls", "--name", name, "--blank-argv", "--threads", "1",
                                    "--seconds", "240"], wait_for_line="ready")
        before = start("python3")
        tracker = IncrementalProcesses.open("/proc", full_every=1000)
        assert tracker.events is not None, tracker.unavailable

        def options(**extra: object) -> CollectOptions:
            return CollectOptions(window=0, check_stealth=False, check_persistence=False, check_families=False,
                                  signature_strings=compiled_rules.signature_strings(),
                                  yara_sources=compiled_rules.pack.yara_sources, **extra)  # type: ignore[arg-type]
        try:
            first = collect_snapshot(options(process_source=tracker))
            after = start("python3")               # born between the cycles: read and examined in full
            fast = collect_snapshot(options(process_source=tracker, carry=Carry(first, tracker)))
            full = collect_snapshot(options())
        finally:
            tracker.close()
        ours = {before.pid, after.pid}
        assert before.pid in tracker.unchanged and after.pid not in tracker.unchanged
        carried, fresh = per_pid(fast, ours), per_pid(full, ours)
        assert carried == fresh
        assert {r.pid for r in fast.memory} >= ours, "both miners' memory is in the fast cycle's snapshot"
        assert any(pid in r.pids for r in fast.packing for pid in (before.pid,)), "packing carried"
        memory = next(c for c in fast.coverage if c.check == "memory")
        assert any(d.code == "carried" for d in memory.details), memory.reason


@linux_root
@pytest.mark.skipif(not have_compiler(), reason="needs a C compiler")
def test_a_process_that_exited_is_not_carried(compiled_rules, processes, tmp_path: Path):
    with StratumPool(0) as pool:
        exe = build_cminer(tmp_path / "bin", port=pool.port, pack="scrubbed")
        miner = processes.start([str(exe), "--threads", "1", "--seconds", "240"], wait_for_line="ready")
        tracker = IncrementalProcesses.open("/proc", full_every=1000)
        try:
            options = CollectOptions(window=0, check_stealth=False, check_persistence=False, check_families=False,
                                     signature_strings=compiled_rules.signature_strings(), process_source=tracker)
            first = collect_snapshot(options)
            assert any(miner.pid in r.pids for r in first.packing)
            processes.stop(miner)
            options.carry = Carry(first, tracker)
            fast = collect_snapshot(options)
        finally:
            tracker.close()
        for records in (fast.binaries, fast.packing):
            assert all(miner.pid not in r.pids for r in records)
        assert all(r.pid != miner.pid for r in fast.memory + fast.identities)
