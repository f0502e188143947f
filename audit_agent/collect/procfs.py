"""Host facts that Linux prints in /proc and /sys: boot time, CPU counts, memory, whole-host CPU load.

psutil reads the same files; importing it costs more CPU than a quiet host's whole
process list (its import pulls in subprocess, socket and its C extension), so a
Linux scan reads them itself and psutil stays the reader on other systems.
"""
from __future__ import annotations

import glob
import os

from msgspec import Struct


def boot_time(proc_root: str = "/proc") -> float:
    """Seconds since the epoch at boot (`btime` in /proc/stat)."""
    with open(os.path.join(proc_root, "stat"), "rb") as handle:
        for line in handle:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError(f"no btime line in {proc_root}/stat")


def logical_cpus() -> int | None:
    return os.cpu_count()


def physical_cores(sys_root: str = "/sys", proc_root: str = "/proc") -> int | None:
    """Distinct cores, as psutil counts them: core sibling lists in sysfs, else (physical id, core id) pairs."""
    siblings = set()
    for path in glob.glob(os.path.join(sys_root, "devices/system/cpu/cpu[0-9]*/topology/core_cpus_list")) or \
            glob.glob(os.path.join(sys_root, "devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list")):
        try:
            with open(path, encoding="ascii") as handle:
                siblings.add(handle.read().strip())
        except OSError:
            continue
    if siblings:
        return len(siblings)
    pairs, physical = set(), None
    try:
        with open(os.path.join(proc_root, "cpuinfo"), encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    pairs.add((physical, value.strip()))
    except OSError:
        return None
    return len(pairs) or None


def memory_total(proc_root: str = "/proc") -> int:
    """Total memory in bytes (MemTotal in /proc/meminfo)."""
    with open(os.path.join(proc_root, "meminfo"), "rb") as handle:
        for line in handle:
            if line.startswith(b"MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no MemTotal line in {proc_root}/meminfo")


class CpuTimes(Struct):
    total: float
    busy: float


def cpu_times(proc_root: str = "/proc") -> CpuTimes:
    """The whole host's CPU time from the first line of /proc/stat, split as psutil does: guest time is
    already counted in user time, and idle and iowait are not busy."""
    with open(os.path.join(proc_root, "stat"), "rb") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    total = sum(fields[:8])             # user nice system idle iowait irq softirq steal (guest is inside user)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return CpuTimes(total=total, busy=total - idle)


class CpuLoad:
    """Percent of all CPUs busy since the previous call (the first call measures since boot), like
    psutil.cpu_percent(interval=None)."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self.last: CpuTimes | None = None

    def percent(self) -> float:
        now = cpu_times(self.proc_root)
        before, self.last = self.last, now
        if before is None:
            return round(100.0 * now.busy / now.total, 1) if now.total else 0.0
        spent = now.total - before.total
        if spent <= 0:
            return 0.0
        return round(min(max(100.0 * (now.busy - before.busy) / spent, 0.0), 100.0), 1)

