"""Watch cycles that cost less than a `ps`: re-read only the processes that changed.

A full read of a process is about ten /proc files and links. Between two watch
cycles almost every process is the same one running the same program, so a
cycle reads only /proc/PID/stat of those (for CPU, state, threads, memory) and
keeps the rest from the last cycle. The kernel's process events (proc_events.py)
say which processes were born, exec'd, renamed or changed credentials: those are
read in full. A process whose start time differs from the one we kept is a new
process behind a recycled PID, and is read in full too.

What events can miss (they are lost on overflow, or unavailable without root),
a full rescan every `full_every` cycles catches; the hidden-process and
persistence checks, which look at the whole host rather than at processes that
changed, run on their own slower cadence and their results are carried between.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field

from audit_agent.collect.proc_events import EventBatch, ProcessEvents, open_events
from audit_agent.collect.processes import (
    CLOCK_TICKS,
    PAGE_SIZE,
    PROC_STATES,
    FirstReading,
    ProcReader,
    is_live_procfs,
    process_coverage,
    read_proc_file,
    set_cpu_use,
    split_stat,
)
from audit_agent.collect.coverage import because, coverage
from audit_agent.model import Coverage, CoverageDetail, CoverageStatus, ProcessInfo, Snapshot

CHECK = "process-events"
SLOW_CHECKS = ("hidden-processes", "stealth", "persistence")


@dataclass
class CycleStats:
    """What one cycle read: for the coverage note and the benchmark."""
    full_scan: bool = True
    read_in_full: int = 0
    refreshed: int = 0
    events: int = 0
    reason: CoverageDetail | None = None      # why every process was read in full, when it was


@dataclass
class IncrementalProcesses:
    """The processes of the last cycle, refreshed from events; owned by one watch loop."""
    proc_root: str = "/proc"
    full_every: int = 10
    events: ProcessEvents | None = None
    unavailable: str = ""
    known: dict[int, tuple[int, ProcessInfo]] = field(default_factory=dict)   # pid -> (start ticks, info)
    cycle: int = 0
    last: CycleStats = field(default_factory=CycleStats)
    unchanged: frozenset[int] = frozenset()     # this cycle's processes only refreshed: same program, same start

    @classmethod
    def open(cls, proc_root: str = "/proc", full_every: int = 10) -> "IncrementalProcesses":
        tracker = cls(proc_root=proc_root, full_every=max(1, full_every))
        if is_live_procfs(proc_root):
            tracker.events, tracker.unavailable = open_events()
        else:
            tracker.unavailable = "not a live /proc"
        return tracker

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
            self.events = None

    def read(self, first: FirstReading) -> tuple[list[ProcessInfo], Coverage]:
        """Every visible process, as read_processes() gives them, reading in full only what changed."""
        elapsed = max(time.monotonic() - first.started, 1e-6)
        batch = self.events.drain() if self.events is not None else EventBatch(lost=True)
        full = self.events is None or batch.lost or not self.known or self.cycle % self.full_every == 0
        self.cycle += 1
        stats = CycleStats(full_scan=full, events=batch.count, reason=self.full_reason(batch))
        touched = batch.touched()
        reader = ProcReader(self.proc_root)
        entries = [entry for entry in os.listdir(reader.root) if entry.isdigit()]
        if full:
            reader.walk_cgroups(len(entries))
        known: dict[int, tuple[int, ProcessInfo]] = {}
        processes: list[ProcessInfo] = []
        unchanged: set[int] = set()
        for entry in entries:
            pid = int(entry)
            kept = None if full or pid in touched else self.known.get(pid)
            info = refresh(reader.root + entry + b"/", kept, first, elapsed) if kept else None
            if info is None:
                info = reader.read(pid, entry, first, elapsed)
                stats.read_in_full += info is not None
            else:
                stats.refreshed += 1
                unchanged.add(pid)
            if info is not None:
                processes.append(info)
                known[pid] = (start_ticks(info, reader.boot_time), info)
        self.known = known
        self.last = stats
        self.unchanged = frozenset(unchanged)
        denied = sum(1 for info in processes if info.denied) + reader.unreadable
        return processes, process_coverage(len(processes) + reader.unreadable, denied, processes)

    def full_reason(self, batch: EventBatch) -> CoverageDetail | None:
        if self.events is None:
            return because("events_unavailable", why=self.unavailable)
        if batch.lost:
            return because("events_lost")
        return None

    def coverage(self) -> Coverage:
        """How this cycle read processes, for the report. Without events every process is read in full, so
        nothing is missed: the note explains the cost, it is not a gap in coverage."""
        stats = self.last
        how = because("incremental_read", full=stats.read_in_full, refreshed=stats.refreshed, events=stats.events)
        details = [stats.reason, how] if stats.reason else [how]
        return coverage(CHECK, CoverageStatus.OK, *details, inspected=stats.read_in_full + stats.refreshed)


def start_ticks(info: ProcessInfo, boot_time: float) -> int:
    """A process's identity beside its PID: its start time in clock ticks since boot, as /proc/PID/stat has
    it (a recycled PID has another)."""
    return round(((info.create_time or 0.0) - boot_time) * CLOCK_TICKS)


def refresh(base: bytes, kept: tuple[int, ProcessInfo], first: FirstReading, elapsed: float) -> ProcessInfo | None:
    """The kept process with what changes while it runs the same program re-read from its stat file alone;
    None when it is gone or is not the same process (the caller then reads it in full or drops it)."""
    ticks, old = kept
    try:
        _, fields = split_stat(read_proc_file(base + b"stat"))
        if len(fields) < 22:
            return None
        if abs(int(fields[19]) - ticks) > 1:         # another process behind a recycled PID
            return None
        state = fields[0].decode("ascii", "replace")
        info = copy.copy(old)      # the last cycle's report may still hold `old`: never change it in place
        info.status = PROC_STATES.get(state, "?")
        info.nice, info.num_threads = int(fields[16]), int(fields[17])
        info.rss_bytes = int(fields[21]) * PAGE_SIZE
        info.hidden = False
        set_cpu_use(info, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, first, elapsed,
                    (int(fields[13]) + int(fields[14])) / CLOCK_TICKS)
        return info
    except (OSError, ValueError, IndexError):
        return None


def carry_slow_checks(snapshot: Snapshot, previous: Snapshot | None) -> None:
    """Give a fast cycle the last slow cycle's hidden-process and persistence results, marked as carried."""
    if previous is None:
        return
    snapshot.persistence = previous.persistence
    snapshot.persistence_baseline = previous.persistence_baseline
    snapshot.stealth = previous.stealth
    alive = {p.pid for p in snapshot.processes}
    for proc in previous.processes:
        if proc.hidden and proc.pid not in alive and os.path.exists(f"/proc/{proc.pid}"):
            snapshot.processes.append(proc)
    for entry in previous.coverage:
        if entry.check in SLOW_CHECKS and not any(c.check == entry.check for c in snapshot.coverage):
            snapshot.coverage.append(entry)
