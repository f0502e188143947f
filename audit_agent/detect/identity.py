"""Lies about identity: a process that calls itself python3, java, nginx, sshd or systemd but is not.

Miners rename themselves to what a server always runs (prctl PR_SET_NAME, or
`exec -a`). The name is free; the executable is not: a real python3 is a
python binary or a program with libpython mapped, a real JVM maps libjvm, and
the system daemons (sshd, nginx, systemd-*) run their packaged binary from a
package-managed path. Kernel-thread names on a process with an executable
are AA-STEALTH-005 (audit_agent.detect.stealth).

A right basename proves nothing either: a copy of /usr/bin/python3 at
/tmp/python3 is python, but not the python the system installed. With the facts
of collect/programs.py (the file the name resolves to on the system PATH, and
the package that lists the executable, read from dpkg's lists), an executable
that is neither is a lie when it runs from a world-writable, hidden or deleted
place (medium when a virtual environment's marker sits beside it: `venv
--copies` and conda environments copy the interpreter), and for the system
daemons also when it sits in a system directory that no package lists.

What a program's executable is called is data about real installs: Debian and
Fedora name them python3.X / pypy3, java under a JVM's bin/, sshd (OpenSSH 9.8
adds sshd-session and sshd-auth), nginx (openresty ships nginx too), and
systemd's daemons all start with `systemd`.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import PurePosixPath

from msgspec import Struct

from audit_agent.detect import ALONE, Context, Signal, each_process, process_key, process_subject
from audit_agent.detect.places import PACKAGE_DIRS, WORLD_WRITABLE_DIRS, hidden_component
from audit_agent.model import Evidence, Packing, ProcessInfo, ProgramIdentity, Severity
from audit_agent.redact import cap

RULE_IDENTITY = "AA-IDENT-001"
PACKED_ENTROPY = 7.2        # bits/byte of the code; compiled code measures 5.5-6.6 (see collect/packing.py)
STRIPPED_ENTROPY = 6.8      # without a section table, less is enough


class Family(Struct, frozen=True):
    name: str
    claims: re.Pattern[str]         # what the process calls itself
    executables: re.Pattern[str]    # the basenames the real program's executable has
    libraries: tuple[str, ...]      # a program embedding it maps one of these
    packaged_only: bool             # a system daemon: its real binary lives under a package-managed path


FAMILIES = (
    Family("python", re.compile(r"^python[0-9.]*$"), re.compile(r"^(?:python|pypy)[0-9.]*[dmu]*$"),
           ("libpython",), False),
    Family("java", re.compile(r"^java$"), re.compile(r"^java$"), ("libjvm.so",), False),
    Family("nginx", re.compile(r"^nginx$"), re.compile(r"^(?:nginx|openresty)$"), (), True),
    Family("sshd", re.compile(r"^sshd$"), re.compile(r"^sshd(?:-session|-auth)?$"), (), True),
    Family("systemd", re.compile(r"^systemd(?:-[a-z-]+)?$"), re.compile(r"^systemd"), (), True),
)


def claimed_names(proc: ProcessInfo) -> list[str]:
    """What the process calls itself: its name, and argv[0] up to a ': ' title (`sshd: root@pts/0`)."""
    return list(_names(proc.name, proc.cmdline[0] if proc.cmdline else ""))


def _names(name: str, argv0: str) -> tuple[str, ...]:
    names = [name]
    if argv0:
        names.append(PurePosixPath(argv0.split(":", 1)[0].split(" ", 1)[0]).name)
    return tuple(n for n in names if n)


class Claim(Struct, frozen=True):
    family: Family
    name: str               # what it calls itself
    why: str                # why the executable is not that program
    kind: str               # name (another program), place (not where the package puts it), copy (that
                            # program's file, but a copy in an odd place), unpackaged (in a system directory,
                            # listed by no package and not what the name runs)


def claimed_family(proc: ProcessInfo) -> tuple[Family, str] | None:
    """(family, name) when the process calls itself one of the programs above."""
    return _claimed_family(proc.name, proc.cmdline[0] if proc.cmdline else "")


# Thousands of workers and sleepers share a few (name, argv[0]) pairs, and three steps ask for each process
# (suspects, program facts, the identity rule): each distinct pair is worked out once.
@lru_cache(maxsize=4096)
def _claimed_family(name: str, argv0: str) -> tuple[Family, str] | None:
    names = _names(name, argv0)
    for family in FAMILIES:
        claim = next((n for n in names if family.claims.match(n)), None)
        if claim is not None:
            return family, claim
    return None


def identity_claim(proc: ProcessInfo, facts: ProgramIdentity | None = None) -> Claim | None:
    """The lie, when the executable contradicts the name, on what the snapshot knows without its memory
    maps (and, with `facts`, what the package database and the PATH say); None when there is no claim or
    the executable fits it."""
    exe = proc.exe
    if not exe:
        return None
    claimed = claimed_family(proc)
    if claimed is None:
        return None
    family, claim = claimed
    base = PurePosixPath(exe.removesuffix(" (deleted)")).name
    if not family.executables.match(base):
        return Claim(family, claim, f"its executable is {cap(exe, 200)!r}", "name")
    if family.packaged_only and not exe.startswith(PACKAGE_DIRS):     # a deleted packaged one: an upgrade
        return Claim(family, claim, f"its executable {cap(exe, 200)!r} is not the packaged {family.name}", "place")
    if facts is None or facts.same_as_path or facts.package:
        return None
    where = not_the_program(claim, facts)
    if odd_place(proc):
        return Claim(family, claim, f"its executable {cap(exe, 200)!r} is {where}, and it runs from "
                     "a world-writable, hidden or deleted place", "copy")
    if family.packaged_only and facts.package == "" and exe.startswith(PACKAGE_DIRS):
        return Claim(family, claim, f"its executable {cap(exe, 200)!r} is {where}", "unpackaged")
    return None


def not_the_program(claim: str, facts: ProgramIdentity) -> str:
    db = {"dpkg": "no package in the dpkg database lists it", "": "the host has no package database"}.get(
        facts.package_db, f"the {facts.package_db.split()[0]} database was not read")
    if facts.package is None and facts.package_db == "dpkg":
        db = "the dpkg database could not be read whole"
    path = (f"not the {cap(claim, 60)} that the name runs from the system PATH ({cap(facts.on_path, 200)})"
            if facts.on_path else "not on the system PATH under that name")
    return f"{path}, and {db}"


def odd_place(proc: ProcessInfo) -> bool:
    exe = proc.exe
    return (exe.startswith(("/memfd:", *WORLD_WRITABLE_DIRS)) or bool(hidden_component(exe))
            or (proc.exe_deleted and not exe.startswith(PACKAGE_DIRS)))


def signals(ctx: Context) -> list[Signal]:
    scanned = {scan.pid for scan in ctx.snapshot.memory if not scan.error}
    facts_by_pid = {facts.pid: facts for facts in ctx.snapshot.identities}

    def judge(proc: ProcessInfo) -> list[Signal]:
        facts = facts_by_pid.get(proc.pid)
        claim = identity_claim(proc, facts)
        if claim is None:
            return []
        family, name, why = claim.family, claim.name, claim.why
        severity, confidence = Severity.HIGH, 0.7
        if claim.kind in ("name", "place"):
            embedded = [lib for lib in proc.libraries if lib.startswith(family.libraries)] if family.libraries else []
            if embedded:
                return []       # a program embedding the runtime (uwsgi with libpython, a JVM launcher)
            checked_maps = proc.pid in scanned or bool(proc.libraries)
            if family.libraries:
                why += f", and it maps no {' or '.join(family.libraries)}" if checked_maps else \
                    " (its memory maps could not be read)"
            confidence = 0.7 if checked_maps or not family.libraries else 0.5
        elif claim.kind == "copy" and facts is not None and facts.env_marker:
            why += f" (a {facts.env_marker} beside it: a virtual environment copied there, or made to look like one)"
            severity, confidence = Severity.MEDIUM, 0.4
        elif claim.kind == "unpackaged":
            severity, confidence = Severity.MEDIUM, 0.4
        else:
            confidence = 0.6
        return [Signal(
            subject_key=process_key(proc.pid), subject=process_subject(proc), rule_id=RULE_IDENTITY,
            title="Process name contradicted by its executable", category="stealth", severity=severity,
            confidence=confidence,
            reason=f"The process calls itself {cap(name, 60)!r} but {why}: a disguise, since the name is free to "
                   "choose and the executable is not.",
            evidence=Evidence(field="name", value=cap(f"{name} | exe {proc.exe}", 300),
                              matched=f"claims {family.name}, is not", rule_id=RULE_IDENTITY),
            action="Identify the real executable behind the process, stop it, and check how it started.",
            indicator=f"claims {family.name}")]

    # Beyond its look (each_process), judge reads the maps a process has and what the program facts say of
    # the one behind it: a process with facts is judged on its own.
    return each_process(ctx, judge, lambda proc: ALONE if proc.pid in facts_by_pid else tuple(proc.libraries))


def is_packed(packing: Packing) -> bool:
    """UPX's marks, or code too random for compiled code (tighter when the section table is gone)."""
    if packing.marks:
        return True
    if packing.entropy is None:
        return False
    return packing.entropy >= PACKED_ENTROPY or (not packing.section_table and packing.entropy >= STRIPPED_ENTROPY)
