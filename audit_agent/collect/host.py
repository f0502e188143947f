"""Host inventory: what a filing declares (CPU, memory, GPUs) plus OS and uptime."""
from __future__ import annotations

import os
import platform
import socket
import sys
import time
from pathlib import Path

from audit_agent.model import Coverage, CoverageStatus, HostInfo


def collect_host(proc_root: str = "/proc", etc_root: str = "/etc") -> tuple[HostInfo, Coverage]:
    host = HostInfo(
        hostname=socket.gethostname(),
        os=platform.system(),
        kernel=platform.release(),
        arch=platform.machine(),
        os_release=os_release(etc_root) or platform.platform(),
    )
    try:
        host.cpu_threads, host.cpu_cores, host.memory_total_bytes, host.boot_time = counts(proc_root)
        host.uptime_seconds = round(time.time() - host.boot_time, 1)
    except (OSError, RuntimeError, ValueError):
        pass
    model, sockets = cpu_model_and_sockets(proc_root)
    host.cpu_model = model or platform.processor()
    host.cpu_sockets = sockets
    return host, Coverage("host", CoverageStatus.OK, inspected=1)


def counts(proc_root: str) -> tuple[int | None, int | None, int, float]:
    """(logical CPUs, physical cores, memory bytes, boot time): read from /proc and /sys on Linux (the
    same files psutil reads, without its import cost), through psutil elsewhere."""
    if sys.platform.startswith("linux") and os.path.isfile(os.path.join(proc_root, "meminfo")):
        from audit_agent.collect import procfs
        return (procfs.logical_cpus(), procfs.physical_cores(proc_root=proc_root), procfs.memory_total(proc_root),
                procfs.boot_time(proc_root))
    import psutil
    return (psutil.cpu_count(logical=True), psutil.cpu_count(logical=False), psutil.virtual_memory().total,
            psutil.boot_time())


def os_release(etc_root: str = "/etc") -> str:
    """PRETTY_NAME from os-release, or '' where there is none (macOS, Windows)."""
    for path in (Path(etc_root) / "os-release", Path("/usr/lib/os-release")):
        try:
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
        except OSError:
            continue
    return ""


def cpu_model_and_sockets(proc_root: str = "/proc") -> tuple[str, int | None]:
    """CPU model name and number of physical packages from /proc/cpuinfo ('' and None elsewhere)."""
    try:
        text = (Path(proc_root) / "cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", None
    model = ""
    packages = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and not model:
            model = value.strip()
        elif key == "physical id":
            packages.add(value.strip())
    return model, (len(packages) or 1) if text else None
