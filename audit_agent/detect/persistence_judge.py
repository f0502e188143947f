"""How unusual a persistence entry is, and what the program it starts is, judged like a running one.

Not a list of bad strings: the facts the collector resolved on disk. The
program's content (the executable scanner's signature and YARA hits), its
packer marks, the miner configs it names or that lie next to it, who besides
root may replace it, whether it was written after the package manager last
touched the host, whether its name is random; and for the entry itself, a
file owned by an ordinary user that runs as root. Pure: no I/O.
"""
from __future__ import annotations

import itertools
from functools import cached_property

from audit_agent.collect.persistence.shell import command_of, programs
from audit_agent.detect import Signal, signal_from_hit
from audit_agent.detect.content import RULE_CONFIG, RULE_YARA, config_shape
from audit_agent.model import (
    Evidence,
    PersistenceBaseline,
    PersistenceEntry,
    Severity,
    StartedProgram,
    Subject,
)
from audit_agent.redact import cap, redact_flat
from audit_agent.rules.compiler import CompiledRules

RULE_DECODED = "AA-PERSIST-006"
RULE_PACKED = "AA-PERSIST-007"
RULE_REPLACEABLE = "AA-PERSIST-008"
RULE_USER_OWNED_ROOT = "AA-PERSIST-009"
RULE_RECENT = "AA-PERSIST-010"
RULE_RANDOM_NAME = "AA-PERSIST-011"

KIND_WORDS = {"cron": "cron job", "systemd": "systemd unit line", "rc": "boot script line",
              "profile": "login script line", "at": "at job", "anacron": "anacron job", "udev": "udev rule",
              "generator": "systemd generator", "autostart": "autostart entry", "ssh": "SSH login hook",
              "motd": "login message script", "ld-preload": "preload entry", "ld-conf": "library path entry",
              "container": "container restart policy", "pam": "PAM login hook"}
# Started without anyone asking: at boot, on a schedule, on a device event, in every process, at a login.
UNATTENDED = {"boot", "timer", "schedule", "device", "every-process", "ssh-login", "restart"}
RECENT_SLACK = 24 * 3600.0      # a day after the last package change still counts as the package's doing
ACTION = "Inspect the program it starts and who wrote the entry; remove both if unapproved."


class About:
    """What the signals of one persistence entry name: its key, its subject and the line as shown. Worked out
    on the first signal only: redacting and capping every line of a host (hundreds of vendor units, none
    suspect) was most of this check's cost."""

    def __init__(self, entry: PersistenceEntry) -> None:
        self.entry = entry
        self.key = f"file:{entry.path}"

    @cached_property
    def subject(self) -> Subject:
        """Names the program the entry starts: the resolved one, else the first named by path, else the first."""
        entry = self.entry
        command = command_of(entry)
        argvs = programs(command) if command else []
        resolved = next((p.path for p in entry.programs if p.exists and not p.via), "")
        program = resolved or next((argv[0] for argv in argvs if "/" in argv[0]), argvs[0][0] if argvs else "")
        return Subject(kind="persistence", name=KIND_WORDS.get(entry.kind, entry.kind), path=cap(entry.path, 1024),
                       exe=cap(program, 1024) if "/" in program else "", username=cap(entry.user, 64),
                       cmdline=cap(redact_flat(entry.text), 2000))

    @cached_property
    def shown(self) -> str:
        return f"{self.entry.path}:{self.entry.line}: {redact_flat(self.entry.text)}"


def signal(rule_id: str, title: str, key: str, subject: Subject, severity: Severity, confidence: float,
           reason: str, shown: str, matched: str, indicator: str, *, weak: bool = False, category: str = "persistence",
           action: str = ACTION) -> Signal:
    return Signal(subject_key=key, subject=subject, rule_id=rule_id, title=title, category=category,
                  severity=severity, confidence=confidence, reason=cap(reason, 600),
                  evidence=Evidence(field="persistence", value=cap(shown, 300), matched=cap(matched, 200),
                                    rule_id=rule_id),
                  action=action, indicator=indicator, weak=weak)


def entry_judgement(entry: PersistenceEntry, baseline: PersistenceBaseline, rules: CompiledRules,
                    about: About) -> list[Signal]:
    """Signals about the entry's file and about every program it resolved to."""
    where = KIND_WORDS.get(entry.kind, f"{entry.kind} line")
    found: list[Signal] = []
    runs_as_root = entry.user in ("root", "*") and entry.trigger in UNATTENDED | {"login"}
    if runs_as_root and entry.owner_uid not in (None, 0) and entry.kind != "ssh":
        found.append(signal(
            RULE_USER_OWNED_ROOT, "Persistence file owned by an ordinary user runs as root", about.key, about.subject,
            Severity.HIGH, 0.7, f"The {where} lies in a file owned by {entry.owner or entry.owner_uid!s}, yet runs "
            f"as {'root' if entry.user == 'root' else 'every user, root included'}: whoever owns the file "
            "controls what root runs.", about.shown, f"owner {entry.owner or entry.owner_uid}", "user-owned, runs as root"))
    if is_recent(entry.ctime, baseline) and entry.trigger in UNATTENDED:
        found.append(signal(
            RULE_RECENT, "Persistence entry written after the last package change", about.key, about.subject, Severity.INFO,
            0.3, f"The {where} was last changed after the package database was (no package wrote it).",
            about.shown, "changed after the package database", "recent entry", weak=True))
    for program in entry.programs:
        found += program_signals(entry, program, baseline, rules, about, where)
    return found


def program_signals(entry: PersistenceEntry, program: StartedProgram, baseline: PersistenceBaseline,
                    rules: CompiledRules, about: About, where: str) -> list[Signal]:
    """The program the entry starts, judged as if it ran: content, packing, configs, who can replace it."""
    found: list[Signal] = []
    if not program.exists:
        return found
    path = program.path
    route = f" (through {program.via})" if program.via else ""
    plain = {s for s in program.matched_strings if not s.startswith("yara:")}
    described = f"{path} (sha256 {program.sha256[:16]})" if program.sha256 else path
    for hit in rules.match_strings(plain, path):
        made = signal_from_hit(hit, about.key, about.subject, field_name="binary", value=described)
        made.reason = cap(f"The program the {where} starts{route}: {made.reason}", 600)
        found.append(made)
    for name in (s[len("yara:"):] for s in program.matched_strings if s.startswith("yara:")):
        found.append(signal(RULE_YARA, "Executable matches a YARA miner rule", about.key, about.subject, Severity.HIGH, 0.8,
                            f"The program {cap(path, 300)!r} that the {where} starts{route} matches the YARA rule "
                            f"{cap(name, 100)!r}.", about.shown, f"yara:{cap(name, 100)}", f"yara:{name}", category="miner",
                            action="Preserve the executable as evidence, remove the entry, and find who wrote it."))
    for config in program.configs:
        shape = config_shape(config)
        hits = [*(h for url in config.urls for h in rules.match_domains(url, "config")),
                *rules.match_wallets(config.users, "config")]
        for hit in hits:
            found.append(signal_from_hit(hit, about.key, about.subject, field_name="config", value=cap(f"{config.path}: {hit.value}", 300)))
        if shape is not None:
            severity, confidence, what = shape
            found.append(signal(RULE_CONFIG, "Miner configuration file", about.key, about.subject, severity, confidence,
                                f"The program the {where} starts has the miner configuration {config.path!r} "
                                f"({what}).", about.shown, what, what, category="miner", weak=severity.rank < Severity.HIGH.rank,
                                action="Preserve the config file as evidence; identify the pool and wallet owner."))
    if program.packer == "upx":
        found.append(signal(RULE_PACKED, "Persistence starts a packed executable", about.key, about.subject, Severity.MEDIUM, 0.5,
                            f"The {where} starts {path!r}{route}, packed with UPX: miners are packed to hide their "
                            "strings from scanners.", about.shown, "upx", "packed"))
    elif program.packer:
        found.append(signal(RULE_PACKED, "Persistence starts a packed executable", about.key, about.subject, Severity.INFO, 0.3,
                            f"The {where} starts {path!r}{route}, an executable with {program.packer}.", about.shown,
                            program.packer, "packed", weak=True))
    recent = is_recent(program.ctime, baseline)
    if program.writable_by and entry.user == "root" and entry.trigger in UNATTENDED:
        unusual = recent or program.writable_by == "world" or bool(program.hidden_dir)
        found.append(signal(
            RULE_REPLACEABLE, "Root starts at boot or on a schedule a program that others can replace", about.key, about.subject,
            Severity.HIGH if unusual else Severity.MEDIUM, 0.7 if unusual else 0.5,
            f"The {where} starts {path!r}{route} as root without anyone logging in, and "
            f"{'anyone' if program.writable_by == 'world' else program.writable_by} can replace that file"
            + (" (changed after the last package change)" if recent else "") + ".",
            about.shown, f"writable by {program.writable_by}", "replaceable program"))
    name = path.rsplit("/", 1)[-1]
    unit = entry.path.rsplit("/", 1)[-1]
    generated = name if random_name(name) else unit if random_name(unit) else ""
    if generated:
        # A generated name alone is context; written after the last package change and started unattended
        # (a random-named root timer, a dropper's cron job) it is a reason to look, on its own.
        fresh = (recent or is_recent(entry.ctime, baseline)) and entry.trigger in UNATTENDED
        found.append(signal(RULE_RANDOM_NAME, "Persistence starts a randomly named program", about.key, about.subject,
                            Severity.MEDIUM if fresh else Severity.INFO, 0.55 if fresh else 0.3,
                            f"The {where} starts {path!r}; the name {generated!r} looks generated"
                            + (", the files are newer than the last package change, and it starts unattended."
                               if fresh else "."), about.shown, generated, "random name", weak=not fresh))
    return found


def is_recent(moment: float | None, baseline: PersistenceBaseline) -> bool:
    """Changed after the package database last was (and after the install), so no package wrote it."""
    if moment is None or baseline.package_db_mtime is None:
        return False
    floor = max(baseline.package_db_mtime, baseline.install_time or 0.0)
    return moment > floor + RECENT_SLACK


def random_name(name: str) -> bool:
    """A name that looks generated: long runs of letters and digits mixed, or no vowels at all.

    `x7Gk2pQ9`, `a3f9c2e1d0b4`, `qwzxkvbn` yes; `kworker`, `python3.11`, `sshd`, `node_exporter` no."""
    stem = name.split(".", 1)[0]
    if len(stem) < 8 or len(stem) > 64 or not stem.isalnum() or not stem.isascii():
        return False
    digits = sum(ch.isdigit() for ch in stem)
    letters = len(stem) - digits
    switches = sum(1 for a, b in itertools.pairwise(stem) if a.isdigit() != b.isdigit())
    if digits >= 2 and letters >= 2 and switches >= 4:
        return True
    lowered = stem.lower()
    vowels = sum(ch in "aeiouy" for ch in lowered)
    return letters >= 8 and vowels == 0
