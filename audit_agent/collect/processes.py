"""Processes, with CPU use measured over the sampling window.

Two readings a known interval apart: `first_reading()` before the window,
`read_processes()` after it. Access denied is data (the attribute is listed in
`denied` and counted for coverage); a process that vanishes is simply gone.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from audit_agent.collect.cgroups import container_id, read_cgroup, slurm_job_id
from audit_agent.model import Coverage, CoverageStatus, ProcessInfo

ATTRS = ["pid", "ppid", "name", "exe", "cmdline", "username", "cwd", "create_time", "status", "nice",
         "num_threads", "memory_info", "cpu_times", "terminal", "uids"]
ENV_KEYS = ("LD_PRELOAD", "LD_AOUT_PRELOAD", "LD_ELF_PRELOAD", "LD_LIBRARY_PATH", "SLURM_JOB_ID",
            "SLURM_JOB_USER", "CUDA_VISIBLE_DEVICES", "KUBERNETES_SERVICE_HOST", "container")
MAX_ARG_CHARS = 4096        # one argument; a longer one is cut and marked
MAX_ARGS = 256
ON_LINUX = sys.platform.startswith("linux")


@dataclass
class FirstReading:
    started: float
    cpu_seconds: dict[int, float]


def first_reading() -> FirstReading:
    """CPU seconds of every visible process at the start of the window."""
    seconds = {}
    for proc in psutil.process_iter(["cpu_times"], ad_value=None):
        times = proc.info.get("cpu_times")
        if times is not None:
            seconds[proc.pid] = times.user + times.system
    return FirstReading(time.monotonic(), seconds)


def read_processes(first: FirstReading, proc_root: str = "/proc") -> tuple[list[ProcessInfo], Coverage]:
    """Every visible process, with CPU % over the window since `first`."""
    elapsed = max(time.monotonic() - first.started, 1e-6)
    processes: list[ProcessInfo] = []
    denied_processes = 0
    for proc in psutil.process_iter(ATTRS, ad_value=_DENIED):
        try:
            info = build_process(proc.info, first, elapsed, proc_root, proc)
        except psutil.Error:
            continue    # vanished between listing and reading
        if info is None:
            continue
        if info.denied:
            denied_processes += 1
        processes.append(info)
    return processes, process_coverage(len(processes), denied_processes)


def process_coverage(total: int, denied: int) -> Coverage:
    if total == 0:
        return Coverage("processes", CoverageStatus.SKIPPED, "no process could be listed")
    if denied:
        return Coverage("processes", CoverageStatus.PARTIAL,
                        f"{denied} of {total} processes could not be fully read (access denied); run as root for full coverage",
                        inspected=total - denied, denied=denied)
    return Coverage("processes", CoverageStatus.OK, inspected=total)


class _Denied:
    """Placeholder psutil puts where access was denied."""

    def __repr__(self) -> str:
        return "<denied>"


_DENIED = _Denied()


def build_process(raw: dict, first: FirstReading, elapsed: float, proc_root: str = "/proc",
                  proc: psutil.Process | None = None) -> ProcessInfo | None:
    denied = sorted(key for key, value in raw.items() if value is _DENIED and key not in ("terminal",))
    value = {key: (None if v is _DENIED else v) for key, v in raw.items()}
    pid = value["pid"]
    if pid is None:
        return None
    memory = value.get("memory_info")
    times = value.get("cpu_times")
    info = ProcessInfo(
        pid=pid,
        ppid=value.get("ppid"),
        name=value.get("name") or "",
        exe=value.get("exe") or "",
        cmdline=cap_cmdline(value.get("cmdline") or []),
        username=value.get("username") or "",
        uid=value["uids"].real if value.get("uids") else None,
        cwd=value.get("cwd") or "",
        create_time=value.get("create_time"),
        status=value.get("status") or "",
        nice=value.get("nice"),
        num_threads=value.get("num_threads"),
        rss_bytes=memory.rss if memory else None,
        terminal=value.get("terminal") or "",
        denied=denied,
    )
    if times is not None:
        now_seconds = times.user + times.system
        started_before = first.cpu_seconds.get(pid)
        if started_before is None:      # born during the window: measure from its start
            age = max(time.time() - (info.create_time or time.time()), 1e-3)
            window = min(age, elapsed)
            used = now_seconds if age <= elapsed else now_seconds * (elapsed / age)
        else:
            window, used = elapsed, max(now_seconds - started_before, 0.0)
        info.cpu_seconds = round(used, 3)
        info.cpu_percent = round(100.0 * used / window, 1)
    info.allowed_cpus = allowed_cpus(proc)
    if ON_LINUX:
        add_linux_details(info, proc_root, proc)
    return info


def cap_cmdline(argv: list[str]) -> list[str]:
    """Bound what one hostile command line can cost us: at most 256 args of 4 kB each."""
    capped = [arg if len(arg) <= MAX_ARG_CHARS else arg[:MAX_ARG_CHARS] + "…[cut]" for arg in argv[:MAX_ARGS]]
    if len(argv) > MAX_ARGS:
        capped.append(f"…[{len(argv) - MAX_ARGS} more arguments cut]")
    return capped


def allowed_cpus(proc: psutil.Process | None) -> int | None:
    if proc is None or not hasattr(proc, "cpu_affinity"):
        return psutil.cpu_count() or None
    try:
        return len(proc.cpu_affinity()) or None
    except (psutil.Error, OSError):
        return psutil.cpu_count() or None


def add_linux_details(info: ProcessInfo, proc_root: str, proc: psutil.Process | None) -> None:
    """Linux-only facts read straight from /proc: cgroup, deleted exe, NSpid, selected environment."""
    info.cgroup = read_cgroup(info.pid, proc_root)
    info.container_id = container_id(info.cgroup)
    info.slurm_job_id = slurm_job_id(info.cgroup)
    link = exe_link(info.pid, proc_root)
    if link.endswith(" (deleted)"):
        info.exe_deleted = True
        info.exe = info.exe or link[: -len(" (deleted)")]
    info.ns_pids = ns_pids(info.pid, proc_root)
    info.environ = selected_environ(info.pid, proc_root)
    if not info.slurm_job_id:
        info.slurm_job_id = info.environ.get("SLURM_JOB_ID", "")


def exe_link(pid: int, proc_root: str = "/proc") -> str:
    try:
        return os.readlink(Path(proc_root) / str(pid) / "exe")
    except OSError:
        return ""


def ns_pids(pid: int, proc_root: str = "/proc") -> list[int]:
    """NSpid from /proc/PID/status: the pid in each nested pid namespace, host first."""
    try:
        with open(Path(proc_root) / str(pid) / "status", encoding="utf-8", errors="replace") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return [int(part) for part in line.split()[1:] if part.isdigit()]
    except OSError:
        pass
    return []


def selected_environ(pid: int, proc_root: str = "/proc") -> dict[str, str]:
    """Only the environment keys that matter for the audit; values capped."""
    try:
        raw = (Path(proc_root) / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    found = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key.decode("utf-8", "replace") in ENV_KEYS:
            found[key.decode()] = value.decode("utf-8", "replace")[:1024]
    return found
