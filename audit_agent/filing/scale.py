"""What a research system actually used in the audit window, next to what its filing allows.

The notice asks that a filed system be no larger than the research needs: cores (CPU time over the
window, 100% = one core), GPUs and their memory (from the GPU sampler), and for farming the
storage its plots or sectors take, where the command line declares it (subspace `size=`).
"""
from __future__ import annotations

import math
import re
from typing import Any

from audit_agent.filing.decision import english
from audit_agent.model import Finding, ProcessInfo, Snapshot

TOLERANCE = 1.05        # CPU use is sampled: 5% over the filed cores is noise, not over-use
GIB = 1024 ** 3
TIB = 1024 ** 4
SIZE = re.compile(r"(?:^|[\s,])size=(\d+(?:\.\d+)?)\s*([KMGTP])i?B?\b", re.IGNORECASE)
UNITS = {"K": 1024, "M": 1024 ** 2, "G": GIB, "T": TIB, "P": 1024 ** 5}


def observed(pids: set[int], by_pid: dict[int, ProcessInfo], snapshot: Snapshot,
             gpu_indices: set[int] | None = None) -> dict[str, Any]:
    """Resources the processes `pids` (and GPU findings `gpu_indices`) used in the window."""
    procs = [by_pid[pid] for pid in sorted(pids) if pid in by_pid]
    cores = sum((p.cpu_percent or 0.0) for p in procs) / 100.0
    gpus: set[int] = set(gpu_indices or ())
    gpu_memory = 0
    for device in snapshot.gpus:
        for proc in device.processes:
            if proc.pid in pids:
                gpus.add(device.index)
                gpu_memory += proc.used_memory_bytes or 0
    storage = [declared_storage(p.cmdline) for p in procs]
    known = [s for s in storage if s is not None]
    return {"cpu_cores": round(cores, 2), "allowed_cpus": sum(p.allowed_cpus or 0 for p in procs) or None,
            "gpus": len(gpus), "gpu_indices": sorted(gpus), "gpu_memory_gib": round(gpu_memory / GIB, 2),
            "storage_tib": round(sum(known) / TIB, 3) if known else None}


def declared_storage(argv: list[str]) -> int | None:
    """Bytes of farming storage the command line declares (subspace-farmer path=...,size=2T)."""
    total = 0
    found = False
    for match in SIZE.finditer(" ".join(argv)):
        total += int(float(match.group(1)) * UNITS[match.group(2).upper()])
        found = True
    return total if found else None


def finding_pids(findings: list[Finding]) -> set[int]:
    return {f.subject.pid for f in findings if f.subject.pid is not None}


def excess(filed: dict[str, Any], used: dict[str, Any], number: str) -> list[str]:
    """One sentence per resource used beyond the filing; [] when within it (or nothing filed)."""
    return [english(code, facts) for code, facts in excess_facts(filed, used, number)]


def excess_facts(filed: dict[str, Any], used: dict[str, Any], number: str) -> list[tuple[str, dict[str, Any]]]:
    """(decision code, facts) per resource used beyond the filing, for the reports to phrase."""
    over = []
    if filed.get("cpu_cores") is not None and used["cpu_cores"] > filed["cpu_cores"] * TOLERANCE:
        over.append(("filing_cpu", {"used": f"{used['cpu_cores']:.1f}", "filed": f"{filed['cpu_cores']:g}"}))
    if filed.get("gpus") is not None and used["gpus"] > filed["gpus"]:
        over.append(("filing_gpu", {"used": used["gpus"], "filed": filed["gpus"]}))
    if filed.get("gpu_memory_gib") is not None and used["gpu_memory_gib"] > filed["gpu_memory_gib"] * TOLERANCE:
        over.append(("filing_gpu_memory", {"used": f"{used['gpu_memory_gib']:g}", "filed": f"{filed['gpu_memory_gib']:g}"}))
    if (filed.get("storage_tib") is not None and used.get("storage_tib") is not None
            and used["storage_tib"] > filed["storage_tib"]):
        over.append(("filing_storage", {"used": f"{used['storage_tib']:g}", "filed": f"{filed['storage_tib']:g}"}))
    return [(code, {**facts, "number": number}) for code, facts in over]


def rounded_up(used: dict[str, Any]) -> dict[str, Any]:
    """The observed scale as a draft proposes it: whole cores and GiB, rounded up, never below one core."""
    scale: dict[str, Any] = {"cpu_cores": max(1, math.ceil(used["cpu_cores"])), "gpus": used["gpus"],
                             "gpu_memory_gib": math.ceil(used["gpu_memory_gib"])}
    if used.get("storage_tib") is not None:
        scale["storage_tib"] = math.ceil(used["storage_tib"] * 10) / 10
    return scale
