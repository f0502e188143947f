"""What a fast watch cycle takes over from the last one instead of looking again.

Between two watch cycles almost every process is the same process running the
same program (incremental.py knows which: no exec, rename or credential event,
same start time). Its executable's content, packing and identity cannot have
changed (the running image is the file it was started from), and the configs it
named were read a cycle ago. So the per-process checks look only at processes
that are new or changed, and the last cycle's results for the others are kept.

The memory of a suspect is the exception worth care: a process that is the same
but newly busy becomes a suspect, so every process not yet scanned stays in
view; only one already scanned is carried. Everything is looked at afresh on the
slow cycles (watch --slow-every), where a fresh snapshot carries nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from audit_agent.collect.coverage import because
from audit_agent.i18n import coverage_text
from audit_agent.model import Coverage, CoverageStatus, Snapshot

# The Snapshot field each carried step fills (its records name one `pid` or list `pids`).
STEP_FIELDS = {
    "collect_binaries": "binaries",
    "collect_configs": "configs",
    "collect_packing": "packing",
    "collect_programs": "identities",
    "collect_memory": "memory",
}


class UnchangedSource(Protocol):
    """The watch loop's process tracker: which processes this cycle only refreshed (same start, no event)."""
    unchanged: frozenset[int]


@dataclass
class Carry:
    """The last cycle's snapshot, and the tracker that knows which processes are unchanged since."""
    previous: Snapshot
    source: UnchangedSource

    def unchanged(self) -> frozenset[int]:
        """Processes of this cycle that the last snapshot holds as the same process running the same program."""
        seen = {p.pid for p in self.previous.processes}
        return frozenset(pid for pid in self.source.unchanged if pid in seen)


def carried_step(name: str) -> bool:
    return name in STEP_FIELDS


def run_with_carry(step: Callable[[Snapshot, Any], list[Coverage]], snapshot: Snapshot, options: Any,
                   carry: Carry, checks: tuple[str, ...]) -> list[Coverage]:
    """Run `step` on the processes it has not settled, then add the last cycle's records for the rest.
    A step that failed or ran out of time last cycle has nothing to carry: it looks at every process."""
    if any(c.check in checks and c.status == CoverageStatus.ERROR for c in carry.previous.coverage):
        return step(snapshot, options)
    name = STEP_FIELDS[step.__name__]
    unchanged = carry.unchanged()
    kept = records_of(getattr(carry.previous, name), unchanged)
    settled = settled_pids(name, kept, unchanged)
    view = msgspec.structs.replace(snapshot, processes=[p for p in snapshot.processes if p.pid not in settled])
    setattr(view, name, [])
    coverage = step(view, options)
    setattr(snapshot, name, merge(getattr(view, name), kept))
    if settled:
        for entry in coverage:
            entry.details.append(because("carried", n=len(settled)))
            entry.reason = coverage_text(entry.details)
    return coverage


def settled_pids(name: str, kept: list[Any], unchanged: frozenset[int]) -> set[int]:
    """Processes whose results this step takes from the last cycle."""
    if name == "memory":        # only those already scanned: an unchanged process may have become a suspect
        return {record.pid for record in kept}
    return set(unchanged)


def records_of(records: Iterable[Any], unchanged: frozenset[int]) -> list[Any]:
    """The last cycle's records about unchanged processes (a record listing several keeps only those)."""
    kept: list[Any] = []
    for record in records:
        pids = getattr(record, "pids", None)
        if pids is None:
            if record.pid in unchanged:
                kept.append(record)
            continue
        still = [pid for pid in pids if pid in unchanged]
        if still:
            kept.append(record if len(still) == len(pids) else msgspec.structs.replace(record, pids=still))
    return kept


def merge(fresh: list[Any], kept: list[Any]) -> list[Any]:
    """Fresh records and carried ones; a file seen by both (a new process running a carried program)
    becomes one record listing every pid."""
    by_path = {record.path: record for record in fresh if hasattr(record, "pids")}
    merged = list(fresh)
    for record in kept:
        same = by_path.get(getattr(record, "path", None))
        if same is None:
            merged.append(record)
        else:
            same.pids = sorted({*same.pids, *record.pids})
    return merged


