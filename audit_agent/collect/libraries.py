"""Which shared libraries busy and GPU processes have mapped: evidence of what a workload really is.

A training job maps libtorch, libcudnn or libtensorflow; a miner renamed to
`python3 train.py` does not. Read only for processes on a GPU or busy over the
window, so the cost stays with the few processes that need judging.
"""
from __future__ import annotations

from pathlib import Path

from audit_agent.collect import CollectOptions, deadline, linux_only
from audit_agent.model import Coverage, CoverageStatus, Snapshot
from audit_agent.collect.coverage import because, coverage

CHECK = "libraries"
BUSY_CPU_PERCENT = 50.0
MAX_LIBRARIES = 300
MAX_MAPS_BYTES = 4 << 20
MAPS_TIMEOUT = 5.0


def collect_libraries(snapshot: Snapshot, options: CollectOptions) -> list[Coverage]:
    """Fill ProcessInfo.libraries for processes on a GPU or busy over the window."""
    not_linux = linux_only(CHECK)
    if not_linux:
        return [not_linux]
    on_gpu = {proc.pid for device in snapshot.gpus for proc in device.processes}
    # no set per process: with no GPU process (most hosts) only the CPU use is looked at
    wanted = [p for p in snapshot.processes if (p.cpu_percent or 0.0) >= BUSY_CPU_PERCENT
              or on_gpu and (p.pid in on_gpu or not on_gpu.isdisjoint(p.ns_pids))]
    denied = 0
    for proc in wanted:
        libraries = mapped_libraries(proc.pid, options.proc_root)
        if libraries is None:
            denied += 1
        else:
            proc.libraries = libraries
    if denied:
        return [coverage(CHECK, CoverageStatus.PARTIAL, because("maps_unreadable", denied=denied, total=len(wanted)),
                         inspected=len(wanted) - denied, denied=denied)]
    return [Coverage(CHECK, CoverageStatus.OK, inspected=len(wanted))]


def _read_maps(path: Path) -> bytes:
    with open(path, "rb") as maps:
        return maps.read(MAX_MAPS_BYTES)


def mapped_libraries(pid: int, proc_root: str = "/proc") -> list[str] | None:
    """Basenames of the shared objects in /proc/PID/maps, in first-mapped order; None if unreadable."""
    try:    # reading maps waits for the process's memory lock, which a process stuck on a FUSE page holds
        text = deadline.call(_read_maps, Path(proc_root) / str(pid) / "maps", timeout=MAPS_TIMEOUT)
    except OSError:
        return None
    seen: dict[str, None] = {}
    for line in text.splitlines():
        path = line.split(None, 5)[5] if line.count(b" ") >= 5 and len(line.split(None, 5)) == 6 else b""
        if b".so" not in path:
            continue
        name = path.rsplit(b"/", 1)[-1].decode("utf-8", "replace").removesuffix(" (deleted)")
        seen.setdefault(name[:200], None)
        if len(seen) >= MAX_LIBRARIES:
            break
    return list(seen)
