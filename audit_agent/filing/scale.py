"""What a research system actually used in the audit window, next to what its filing allows.

The notice asks that a filed system be no larger than the research needs: cores (CPU time over the
window, 100% = one core), GPUs and their memory (from the GPU sampler), and for farming the
storage its plots or sectors take: measured on disk where the artefact search found plots or sectors
of the system (a folder its processes have open or name, or one its family config lists, such as a
Chia harvester's `plot_directories` or a lotus-miner's storage.json `StoragePaths`), otherwise what
the command line declares (subspace `size=`). What the command line declares is kept beside it.
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
# programs of a farming family whose name does not start with the family id (chia_harvester does)
FAMILY_PROGRAMS = {"FILECOIN": ("lotus", "curio", "venus", "boost"), "SPACEMESH": ("go-spacemesh", "postcli"),
                   "SUBSPACE": ("subspace",)}
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
    declared = round(sum(known) / TIB, 3) if known else None
    on_disk = farmed_bytes({p.pid for p in procs}, snapshot)
    measured = round(on_disk / TIB, 3) if on_disk is not None else None
    return {"cpu_cores": round(cores, 2), "allowed_cpus": sum(p.allowed_cpus or 0 for p in procs) or None,
            "gpus": len(gpus), "gpu_indices": sorted(gpus), "gpu_memory_gib": round(gpu_memory / GIB, 2),
            "storage_tib": measured if measured is not None else declared,
            "storage_source": "disk" if measured is not None else ("command line" if declared is not None else ""),
            "declared_storage_tib": declared}


def farmed_bytes(pids: set[int], snapshot: Snapshot) -> int | None:
    """Bytes of plots / sectors on disk that the processes `pids` farm; None when the search found none of theirs.

    A group counts when one of the processes has its folder open or names it (ArtefactGroup.pids), or when
    the group lies in a folder that a family config read by one of them lists (config.dirs: the plot
    directories a harvester is told to farm, which it opens only while looking up proofs). Each folder
    is counted once, by its apparent size: what the network credits as farmed space.
    """
    if not pids:
        return None
    names = {pid: p.name.lower() for p in snapshot.processes if (pid := p.pid) in pids}
    dirs = [d.rstrip("/") for config in snapshot.family_configs
            if any(r.pid in pids and farms_with(config.family, r.via, names.get(r.pid, "")) for r in config.readers)
            for d in config.dirs if d.startswith("/")]
    total, found = 0, False
    for group in snapshot.artefacts:
        mine = bool(pids & set(group.pids)) or any(
            group.directory == d or group.directory.startswith(d + "/") for d in dirs)
        if mine:
            total += group.total_bytes
            found = True
    return total if found else None


def farms_with(family: str, via: str, name: str) -> bool:
    """A config found in a user's home is read by every process of that user: it counts for a process that
    points at it (environment, argument, working or program folder) or that is that family's software."""
    if via != "home":
        return True
    return name.startswith(FAMILY_PROGRAMS.get(family, (family.lower(),)))


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
