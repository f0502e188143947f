"""Load heuristics: saturated CPUs with an unknown executable, and the Stratum behaviour fingerprint.

Both are weak signals: they raise the confidence of other evidence or ask for
review, never condemn on their own (a long simulation or training run is busy
too). Known research frameworks (rules `frameworks`) are left alone, and
nothing is judged when the window was shorter than `min_window_seconds`: CPU
percent over a blink means nothing.

Thresholds come from the policy (audit_agent.policy.Thresholds):
  cpu_busy_fraction, min_cpu_percent   CPU saturation: at least this fraction of the
                                       process's allowed CPUs (its affinity set), and at
                                       least this much of one core, over the window
  gpu_busy_percent                     a GPU this busy counts as saturated
  stratum_max_connections              at most this many established outbound
                                       connections (one pool, maybe a fail-over)
  stratum_max_bytes_per_second         above this traffic a connection is bulk data,
                                       not a pool's few small jobs (when bytes are known)
  stratum_count_loopback               1: a loopback remote counts (a local mining proxy,
                                       the tests' 127.0.0.1 pool); 0: ignore loopback

Connection traffic (bytes_sent/bytes_received) is used when the collector
filled it; psutil does not give per-socket counters, so today it is usually
None and the fingerprint rests on the connection count and the saturation.
"long-lived" is approximated by a connection established at the end of the
window in a process that was alive for the whole window.
"""
from __future__ import annotations

import ipaddress
from collections import defaultdict
from functools import lru_cache
from pathlib import PurePosixPath

from audit_agent.detect import Context, Signal, process_key, process_subject
from audit_agent.detect.gpu import host_process
from audit_agent.detect.places import PACKAGE_DIRS, WORLD_WRITABLE_DIRS, hidden_component
from audit_agent.model import Connection, Evidence, GpuDevice, ProcessInfo, Severity
from audit_agent.policy import Thresholds
from audit_agent.redact import cap

RULE_BUSY = "AA-LOAD-001"
RULE_STRATUM = "AA-LOAD-002"
EPHEMERAL_PORTS_FROM = 32768     # Linux ip_local_port_range starts here by default


def signals(ctx: Context) -> list[Signal]:
    thresholds = ctx.policy.thresholds
    if ctx.snapshot.window_seconds < thresholds.min_window_seconds:
        return []
    busy_gpus = busy_gpu_by_pid(ctx)
    outbound = outbound_by_pid(ctx.snapshot.connections, bool(thresholds.stratum_count_loopback))
    host_cpus = ctx.snapshot.host.cpu_threads
    found: list[Signal] = []
    for proc in ctx.by_pid.values():
        cpu_busy = cpu_saturated(proc, thresholds, host_cpus)
        device = busy_gpus.get(proc.pid)
        if not cpu_busy and device is None:
            continue
        if known_workload(proc, ctx):
            continue        # known ML/HPC workloads are what a busy research server is for
        if cpu_busy:
            found.append(busy_signal(proc, thresholds, host_cpus))
        fingerprint = stratum_shape(proc, outbound.get(proc.pid, []), thresholds, ctx.snapshot.window_seconds,
                                    ctx.snapshot.collected_at)
        if fingerprint is not None:
            found.append(stratum_signal(proc, fingerprint, cpu_busy, device))
    return found


# ---------------------------------------------------------------- CPU saturation

def known_workload(proc: ProcessInfo, ctx: Context) -> bool:
    """A known research framework, unless it runs from an out-of-place path.

    A generic runtime (python, java, ...) running from an ordinary place is how
    most research code runs, so CPU load alone does not question it; `python3
    /tmp/.x/m.py` or a deleted "python" in /dev/shm is not research software.
    (The GPU heuristic is stricter: there a runtime must show ML libraries.)
    """
    rules = ctx.rules
    if not (rules.is_framework(proc.name, proc.exe, " ".join(proc.cmdline), proc.libraries)
            or rules.is_generic_runtime(proc.name, proc.exe)):
        return False
    if suspicious_exe(proc):
        return False
    scripts = [arg for arg in proc.cmdline[1:3] if arg.startswith(("/", "./"))]
    return not any(arg.startswith(WORLD_WRITABLE_DIRS) or hidden_component(arg) for arg in scripts)


def cpu_saturated(proc: ProcessInfo, thresholds: Thresholds, host_cpus: int | None) -> bool:
    """Busy on at least cpu_busy_fraction of its allowed CPUs and at least min_cpu_percent, over the window."""
    if proc.cpu_percent is None:
        return False
    allowed = proc.allowed_cpus or host_cpus or 1
    needed = max(thresholds.min_cpu_percent, thresholds.cpu_busy_fraction * 100.0 * allowed)
    return proc.cpu_percent >= needed


def suspicious_exe(proc: ProcessInfo) -> list[str]:
    """Why the executable itself looks out of place (empty when it looks ordinary)."""
    exe = proc.exe
    reasons = []
    if proc.exe_deleted and not exe.startswith(PACKAGE_DIRS):
        reasons.append("its executable was deleted after it started")
    if exe.startswith(WORLD_WRITABLE_DIRS):
        reasons.append(f"it runs from the world-writable directory {str(PurePosixPath(exe).parent)!r}")
    hidden = hidden_component(exe) if exe else ""
    if hidden:
        reasons.append(f"it runs from the hidden path component {hidden!r}")
    if not exe and proc.cmdline:
        reasons.append("its executable could not be read")
    return reasons


def context_notes(proc: ProcessInfo) -> tuple[list[str], bool]:
    """Who the load belongs to, and whether that context is unaccounted for (no TTY, no job, no container)."""
    notes = []
    if proc.slurm_job_id:
        notes.append(f"it runs inside Slurm job {proc.slurm_job_id}")
    if proc.container_id:
        notes.append(f"it runs in container {proc.container_id}")
    if proc.terminal:
        notes.append(f"it is attached to the terminal {proc.terminal}")
    unaccounted = not (proc.terminal or proc.slurm_job_id or proc.container_id)
    if unaccounted:
        notes.append("it has no controlling terminal and is not inside a Slurm job")
    if proc.exe_deleted and proc.exe.startswith(PACKAGE_DIRS):
        notes.append("its packaged executable was replaced (likely an upgrade; weak on its own)")
    return notes, unaccounted


def busy_signal(proc: ProcessInfo, thresholds: Thresholds, host_cpus: int | None) -> Signal:
    """INFO when only unknown; LOW (asks review) when the executable or its context is out of place."""
    allowed = proc.allowed_cpus or host_cpus or 1
    suspicious = suspicious_exe(proc)
    notes, unaccounted = context_notes(proc)
    user_installed = not proc.exe.startswith(PACKAGE_DIRS)
    raised = bool(suspicious) or (unaccounted and user_installed)
    severity = Severity.LOW if raised else Severity.INFO
    confidence = min(0.4, 0.25 + 0.05 * len(suspicious)) if raised else 0.15
    percent = proc.cpu_percent or 0.0       # only called for a process that is_busy measured
    held = f"{percent:.0f}% CPU ({percent / 100:.1f} of its {allowed} allowed CPUs)"
    why = "; ".join(suspicious + notes)
    return Signal(
        subject_key=process_key(proc.pid), subject=process_subject(proc), rule_id=RULE_BUSY,
        title="CPUs saturated by an unknown executable", category="load", severity=severity,
        confidence=round(confidence, 2),
        reason=cap(f"It held {held} for the whole window and is not a known research framework"
                   + (f"; {why}." if why else "."), 800),
        evidence=Evidence(field="load", value=f"{held}, {proc.num_threads or '?'} threads",
                          matched=f">= {thresholds.cpu_busy_fraction:.0%} of allowed CPUs", rule_id=RULE_BUSY,
                          facts={"cpu_percent": round(proc.cpu_percent or 0),
                                 "cpus": round((proc.cpu_percent or 0) / 100, 1),
                                 "allowed": allowed, "threads": proc.num_threads or "?",
                                 "fraction": round(thresholds.cpu_busy_fraction * 100)}),
        action="Ask the owner what this workload is; check it against the filed research systems.",
        indicator="cpu saturated, unknown executable", weak=True)


# ---------------------------------------------------------------- Stratum behaviour fingerprint

def busy_gpu_by_pid(ctx: Context) -> dict[int, GpuDevice]:
    busy_at = ctx.policy.thresholds.gpu_busy_percent
    found: dict[int, GpuDevice] = {}
    for device in ctx.snapshot.gpus:
        if device.utilization_percent is None or device.utilization_percent < busy_at:
            continue
        for gpu_proc in device.processes:
            proc = host_process(gpu_proc.pid, ctx)      # NVML pids are host pids; NSpid maps containers
            if proc is not None:
                found.setdefault(proc.pid, device)
    return found


def outbound_by_pid(connections: list[Connection], count_loopback: bool) -> dict[int, list[Connection]]:
    """Established TCP connections this host opened (ephemeral local port), per owning process."""
    found: dict[int, list[Connection]] = defaultdict(list)
    for conn in connections:
        if conn.pid is None or not conn.protocol.startswith("tcp") or conn.state.upper() != "ESTABLISHED":
            continue
        if not (conn.local_port >= EPHEMERAL_PORTS_FROM or conn.local_port > conn.remote_port):
            continue        # the remote end dialled us: a server's client, not an outbound session
        if not count_loopback and is_loopback(conn.remote_address):
            continue
        found[conn.pid].append(conn)
    return found


# Thousands of connections share a few remote addresses (a local proxy's 127.0.0.1): each is parsed once.
@lru_cache(maxsize=4096)
def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def stratum_shape(proc: ProcessInfo, outbound: list[Connection], thresholds: Thresholds, window: float,
                  collected_at: float) -> list[str] | None:
    """The endpoints when the process keeps 1..N outbound sessions of little traffic; else None."""
    remotes = sorted({f"{c.remote_address}:{c.remote_port}" for c in outbound})
    if not remotes or len(remotes) > thresholds.stratum_max_connections:
        return None
    if proc.create_time and collected_at and proc.create_time > collected_at:
        return None         # born during the window: not long-lived
    known = [c for c in outbound if c.bytes_sent is not None or c.bytes_received is not None]
    if known and window > 0:
        rate = sum((c.bytes_sent or 0) + (c.bytes_received or 0) for c in known) / window
        if rate > thresholds.stratum_max_bytes_per_second:
            return None     # bulk data (a data loader, a download), not a pool's small jobs
        remotes.append(f"~{rate:.0f} B/s")
    return remotes


def stratum_signal(proc: ProcessInfo, shape: list[str], cpu_busy: bool, device: GpuDevice | None) -> Signal:
    endpoints = [item for item in shape if not item.startswith("~")]
    traffic = [item for item in shape if item.startswith("~")]
    saturated = " and ".join(filter(None, [
        f"its CPUs ({proc.cpu_percent:.0f}%)" if cpu_busy and proc.cpu_percent is not None else "",
        f"GPU {device.index} ({device.utilization_percent:.0f}%)" if device is not None
        and device.utilization_percent is not None else ""]))
    subject = process_subject(proc)
    subject.connections = list(endpoints)
    if device is not None:
        subject.gpu_index = device.index
    notes, _ = context_notes(proc)
    count = "one outbound connection" if len(endpoints) == 1 else f"only {len(endpoints)} outbound connections"
    little = f" with little traffic ({traffic[0][1:]})" if traffic else ""
    return Signal(
        subject_key=process_key(proc.pid), subject=subject, rule_id=RULE_STRATUM,
        title="Mining-like behaviour: one long-lived connection while saturated", category="load",
        severity=Severity.LOW, confidence=0.4 if traffic else 0.3,
        reason=cap(f"It keeps {count} open ({', '.join(endpoints)}){little} while keeping {saturated} saturated: "
                   "the shape of a miner talking to its pool, which survives TLS and proxies"
                   + (f"; {'; '.join(notes)}." if notes else "."), 800),
        evidence=Evidence(field="connection", value=cap(", ".join(endpoints), 300),
                          matched="few long-lived outbound connections + saturation", rule_id=RULE_STRATUM,
                          facts={"endpoints": cap(", ".join(endpoints), 300), "count": len(endpoints),
                                 "cpu_percent": round(proc.cpu_percent or 0) if cpu_busy else "",
                                 "gpu": device.index if device is not None else "",
                                 "gpu_percent": round(device.utilization_percent or 0) if device is not None else ""}),
        action="Find what the remote end is (pool, proxy, VPN); ask the owner what the workload is.",
        indicator="stratum-like session", weak=True)
