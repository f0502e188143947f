"""Signals from persistence: what each entry says, and what the program it starts is.

Every kept line is matched like a command line (the pack's `persistence`
patterns, then the miner signals on the command and on any payload it
decodes: names of the programs it starts, miner options, pool domains,
wallets), plus coded checks: fetch-and-run droppers, programs in world-writable
or hidden folders, kernel-thread names started from a file. Then the programs
the collector resolved are judged like running ones (persistence_judge.py):
their content, packing, configs, who may replace them, how new they are.
One finding per file, keyed "file:PATH"; when the started program is running,
the process's finding gets the reason too.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

from audit_agent.collect.persistence.shell import (
    INTERPRETERS,
    basename,
    command_of,
    downloads,
    programs,
    saved_then_run,
    url_hosts,
)
from audit_agent.detect import (
    Context,
    Signal,
    process_key,
    process_subject,
    signal_from_hit,
)
from audit_agent.detect.persistence_judge import (
    KIND_WORDS,
    About,
    RULE_DECODED,
    entry_judgement,
    signal,
)
from audit_agent.detect.places import (
    KERNEL_THREAD_NAME,
    WORLD_WRITABLE_DIRS,
    hidden_component,
)
from audit_agent.model import Evidence, PersistenceEntry, ProcessInfo, Severity, Subject
from audit_agent.redact import cap, redact_flat
from audit_agent.rules.compiler import CompiledRules, logins_from_argv

RULE_DROPPER = "AA-PERSIST-001"
RULE_TEMP_DIR = "AA-PERSIST-002"
RULE_HIDDEN_PATH = "AA-PERSIST-003"
RULE_KERNEL_NAME = "AA-PERSIST-004"
RULE_RUNNING = "AA-PERSIST-005"
BARE_IP_CHARS = set("0123456789.")


def signals(ctx: Context) -> list[Signal]:
    found: list[Signal] = []
    running: dict[str, list[ProcessInfo]] | None = None     # indexed when a suspicious entry first needs it
    baseline = ctx.snapshot.persistence_baseline
    for entry in ctx.snapshot.persistence:
        about = About(entry)
        entry_found = remembered_signals(entry, ctx, about)
        entry_found += entry_judgement(entry, baseline, ctx.rules, about)
        found.extend(entry_found)
        if any(not s.weak or s.severity != Severity.INFO for s in entry_found):
            if running is None:
                running = running_by_path(ctx)
            found.extend(running_signals(entry, entry_found, running, baseline.root_prefix))
    return found


def remembered_signals(entry: PersistenceEntry, ctx: Context, about: About) -> list[Signal]:
    """entry_signals, from the memo of earlier runs when this very entry was judged by these rules and code."""
    memo = ctx.memo
    if memo is None:
        return entry_signals(entry, ctx.rules, about)
    digest = memo.digest(entry)
    found = memo.recall(digest)
    if found is None:
        found = entry_signals(entry, ctx.rules, about)
        memo.remember(digest, found)
    return found


def subject_of(entry: PersistenceEntry) -> tuple[str, Subject]:
    about = About(entry)
    return about.key, about.subject


def entry_signals(entry: PersistenceEntry, rules: CompiledRules, about: About | None = None) -> list[Signal]:
    """Every reason to suspect one persistence line for what it says, keyed to its file."""
    about = about or About(entry)
    command = command_of(entry)
    where = KIND_WORDS.get(entry.kind, f"{entry.kind} line")
    hits = [(hit, where) for hit in rules.match_persistence(entry.text)]
    texts = [command, *entry.decoded] if command else list(entry.decoded)
    for text in texts:
        decoded_from = text is not command
        place = f"command decoded by the {where}" if decoded_from else where
        if decoded_from:
            hits += [(hit, place) for hit in rules.match_persistence(text)]
        for argv in programs(text):
            exe = argv[0] if "/" in argv[0] else ""
            hits += [(hit, f"program started by the {where}") for hit in rules.match_names("", exe, argv[0])]
            hits += [(hit, place) for hit in rules.match_wallets(logins_from_argv(argv))]
        hits += [(hit, place) for hit in rules.match_cmdline(text)]
        hits += [(hit, place) for hit in rules.match_domains(text, "persistence")]
    if not command and entry.kind in ("systemd", "container"):
        hits += [(hit, where) for hit in rules.match_domains(entry.text, "persistence")]
        hits += [(hit, where) for hit in rules.match_cmdline(entry.text)]
    found = []
    seen_rules = set()
    for hit, field_name in hits:
        if hit.rule.id in seen_rules:
            continue
        seen_rules.add(hit.rule.id)
        value = hit.value if hit.rule.kind in ("names", "domains", "wallet") else about.shown
        made = signal_from_hit(hit, about.key, about.subject, field_name=field_name, value=value)
        made.evidence.field, made.evidence.value = "persistence", cap(about.shown, 300)
        found.append(made)
    pack_hit = any(hit.rule.kind == "persistence" for hit, _ in hits)
    if texts and not pack_hit:       # the pack's own patterns already said it
        found += dropper_signals(entry, texts, about, where)
    if entry.decoded and any(programs(text) for text in entry.decoded):
        found.append(signal(RULE_DECODED, "Persistence runs a decoded command", about.key, about.subject, Severity.MEDIUM, 0.6,
                            f"The {where} decodes a hidden command and runs it: "
                            f"{cap(redact_flat(entry.decoded[0]), 200)!r}.",
                            about.shown, cap(entry.decoded[0], 200), "decoded command"))
    for text in texts:
        for argv in programs(text):
            found += path_signals(argv[0], about, where, pack_hit)
    return found


def dropper_signals(entry: PersistenceEntry, texts: list[str], about: About, where: str) -> list[Signal]:
    """Fetch-and-run: a download piped into an interpreter, run through $(...), or saved and executed."""
    urls = list(entry.downloads) or [url for text in texts for url in downloads(text)]
    saved = next((m for m in map(saved_then_run, texts) if m), None)
    if not urls and saved is None:
        return []
    hosts = url_hosts(urls) if urls else []
    bare = [h for h in hosts if set(h) <= BARE_IP_CHARS or ":" in h]
    detail = f" from the bare IP address {bare[0]}" if bare else ""
    matched = urls[0] if urls else saved.group(0) if saved else ""
    return [signal(RULE_DROPPER, "Persistence downloads and runs code", about.key, about.subject,
                   Severity.HIGH if bare else Severity.MEDIUM, 0.7 if bare else 0.5,
                   f"The {where} downloads code{detail} and runs it ({cap(matched, 120)}): "
                   "the way cryptojacking droppers reinstall their miner.", about.shown, cap(matched, 120),
                   "fetch-and-run", action="Fetch the script it downloads from a safe host, check what it "
                   "installs, remove the entry.")]


def path_signals(program: str, about: About, where: str, pack_hit: bool = False) -> list[Signal]:
    """The started program lives in a world-writable or hidden directory, or borrows a kernel thread's name.

    The path checks are a fallback for what the pack's persistence patterns do not
    cover (e.g. /opt/.cache/x); the kernel-thread name check always runs."""
    if "/" not in program:
        return []
    found = []
    name = PurePosixPath(program).name
    if not pack_hit and program.startswith(WORLD_WRITABLE_DIRS):
        found.append(signal(RULE_TEMP_DIR, "Persistence starts a program from a world-writable directory", about.key,
                            about.subject, Severity.MEDIUM, 0.5, f"The {where} starts {program!r} from a world-writable "
                            "directory, where droppers put miners.", about.shown, cap(program, 200), "world-writable dir"))
    hidden = "" if pack_hit else hidden_component(program)
    if hidden:
        found.append(signal(RULE_HIDDEN_PATH, "Persistence starts a program from a hidden path", about.key, about.subject,
                            Severity.MEDIUM, 0.45, f"The {where} starts {program!r} from the hidden path "
                            f"component {hidden!r}.", about.shown, cap(program, 200), "hidden path"))
    if KERNEL_THREAD_NAME.match(name):
        found.append(signal(RULE_KERNEL_NAME, "Persistence starts a program named like a kernel thread", about.key, about.subject,
                            Severity.HIGH, 0.75, f"The {where} starts {program!r}, named like the kernel thread "
                            f"{name!r}: kernel threads are never started from a file, miners borrow their names.",
                            about.shown, cap(program, 200), "kernel-thread name"))
    return found


# ---------------------------------------------------------------- tie to running processes

def running_by_path(ctx: Context) -> dict[str, list[ProcessInfo]]:
    """Running processes by the path they run: exe, argv[0], or the script an interpreter runs."""
    index: dict[str, list[ProcessInfo]] = defaultdict(list)
    for proc in ctx.by_pid.values():
        paths = {proc.exe}
        if proc.cmdline:
            paths.add(proc.cmdline[0])
            interpreter = basename(proc.exe or proc.cmdline[0]).rstrip("0123456789.")
            if len(proc.cmdline) > 1 and interpreter in INTERPRETERS:
                paths.add(next((a for a in proc.cmdline[1:] if not a.startswith("-")), ""))
        for path in paths:
            if path and path.startswith("/"):
                index[path].append(proc)
    return index


def running_signals(entry: PersistenceEntry, line_signals: list[Signal], running: dict[str, list[ProcessInfo]],
                    root_prefix: str = "") -> list[Signal]:
    """The suspicious entry starts a program that is running now: say so on the process's finding too.

    Paths resolved below a test root (`root_prefix`) are matched as the processes see them too."""
    command = command_of(entry)
    paths = {argv[0] for argv in programs(command)} if command else set()
    paths |= {p.path for p in entry.programs}
    if root_prefix:
        paths |= {root_prefix.rstrip("/") + p for p in list(paths) if p.startswith("/")}
    strong = [s for s in line_signals if not s.weak]
    severity = max((s.severity for s in (strong or line_signals)), key=lambda s: s.rank)
    found = []
    seen: set[int] = set()
    for path in sorted(paths):
        for proc in running.get(path, []):
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            where = f"{entry.path}:{entry.line}"
            found.append(Signal(
                subject_key=process_key(proc.pid), subject=process_subject(proc), rule_id=RULE_RUNNING,
                title="Process is started by a suspicious persistence entry", category="persistence",
                severity=severity, confidence=0.5,
                reason=cap(f"This process runs {path!r}, which the {KIND_WORDS.get(entry.kind, entry.kind)} "
                           f"{where} starts: " + "; ".join(sorted({s.title for s in line_signals})) + ".", 800),
                evidence=_running_evidence(entry, path),
                action="Remove the persistence entry before stopping the process, or it will come back.",
                indicator=f"persistence {entry.path}", weak=not strong))
    return found


def _running_evidence(entry: PersistenceEntry, path: str) -> Evidence:
    return Evidence(field="persistence", value=cap(f"{entry.path}:{entry.line}: {redact_flat(entry.text)}", 300),
                    matched=cap(path, 200), rule_id=RULE_RUNNING)
