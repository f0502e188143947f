"""Which processes deserve the costly looks (memory scan, algorithm fingerprints), and why.

A miner that encrypts its strings, packs its file, renames itself and talks
TLS still has to run somewhere, burn CPU at some point in its life and be
some file. A process is a suspect when any of these is off:
  * busy: over the window, or on average over its whole life (so pausing
    while the audit runs, or throttling, does not make it look idle);
  * its executable is out of place: deleted, in memory only (memfd), in a
    world-writable or hidden directory, or not under a package-managed path;
  * its executable is packed (UPX marks, or high-entropy code);
  * its name claims a program its executable is not (audit_agent.detect.identity).
Everything else (the thousands of idle packaged daemons) costs nothing more.
Suspects are ordered by how many reasons they have, so the bounded budget goes
to the likeliest first.
"""
from __future__ import annotations

import time
from functools import lru_cache

from audit_agent.detect.identity import identity_claim, is_packed
from audit_agent.detect.places import (
    PACKAGE_DIRS,
    WORLD_WRITABLE_DIRS,
    hidden_component,
)
from audit_agent.model import Packing, ProcessInfo, ProgramIdentity, Snapshot

BUSY_PERCENT = 25.0             # of one core, over the window or on average over its life
MIN_LIFE_SECONDS = 5.0          # a lifetime average over less than this is noise


def lifetime_cpu_percent(proc: ProcessInfo, now: float) -> float | None:
    """Average CPU since it started (100 = one core); None when unknown or too young to tell."""
    if proc.lifetime_cpu_seconds is None or not proc.create_time:
        return None
    age = now - proc.create_time
    if age < MIN_LIFE_SECONDS:
        return None
    return 100.0 * proc.lifetime_cpu_seconds / age


def suspect_reasons(proc: ProcessInfo, packing: Packing | None, now: float,
                    facts: ProgramIdentity | None = None) -> list[str]:
    """Why this process gets a memory scan ([] when it does not)."""
    why = []
    lifetime = lifetime_cpu_percent(proc, now)
    if (proc.cpu_percent or 0.0) >= BUSY_PERCENT:
        why.append("busy")
    elif lifetime is not None and lifetime >= BUSY_PERCENT:
        why.append("busy over its life")
    why.extend(place_reasons(proc.exe, proc.exe_deleted))
    if packing is not None and is_packed(packing):
        why.append("packed executable")
    if identity_claim(proc, facts) is not None:
        why.append("name its executable contradicts")
    return why


# Thousands of workers run a few executables: what the path says is worked out once for each.
@lru_cache(maxsize=4096)
def place_reasons(exe: str, deleted: bool) -> tuple[str, ...]:
    """What the executable's path and state say (memfd, deleted, odd location, unknown binary)."""
    why = []
    if exe.startswith("/memfd:"):
        why.append("memfd executable")
    elif deleted:
        why.append("deleted executable")
    if exe.startswith(WORLD_WRITABLE_DIRS) or (exe and hidden_component(exe)):
        why.append("odd location")
    elif exe and not exe.startswith(("/memfd:", *PACKAGE_DIRS)):
        why.append("unknown binary")
    return tuple(why)


def find_suspects(snapshot: Snapshot, now: float | None = None) -> list[tuple[ProcessInfo, list[str]]]:
    """(process, reasons) for every suspect, likeliest first. A bare 'unknown binary' that is idle is
    not enough: home-built tools and venvs are everywhere on research hosts."""
    moment = now if now is not None else time.time()
    packing_by_pid = {pid: packing for packing in snapshot.packing for pid in packing.pids}
    facts_by_pid = {facts.pid: facts for facts in snapshot.identities}
    found = []
    for proc in snapshot.processes:
        if proc.hidden or not proc.exe and not proc.cmdline:
            continue        # kernel threads have no memory of their own to scan
        why = suspect_reasons(proc, packing_by_pid.get(proc.pid), moment, facts_by_pid.get(proc.pid))
        if why and why != ["unknown binary"]:
            found.append((proc, why))
    found.sort(key=lambda item: -len(item[1]))
    return found
