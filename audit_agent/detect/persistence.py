"""Signals from persistence: cron, systemd, rc.local and profile lines that start a miner or fetch-and-run.

Every kept line is matched like a command line: the pack's `persistence`
patterns on the whole line, and the miner signals on the command it runs
(names of the programs it starts, miner options, pool domains, wallets), plus a
few coded checks (fetch-and-run droppers, programs in world-writable or hidden
directories, kernel-thread names started from a file). One finding per file,
keyed "file:PATH"; when the started program is running, the process's finding
gets the reason too.
"""
from __future__ import annotations

import re
import shlex
from collections import defaultdict
from pathlib import PurePosixPath

from audit_agent.detect import Context, Signal, process_key, process_subject, signal_from_hit
from audit_agent.detect.places import KERNEL_THREAD_NAME, WORLD_WRITABLE_DIRS, hidden_component
from audit_agent.model import Evidence, PersistenceEntry, ProcessInfo, Severity, Subject
from audit_agent.redact import cap, redact_flat
from audit_agent.rules.compiler import CompiledRules, basename, logins_from_argv

RULE_DROPPER = "AA-PERSIST-001"
RULE_TEMP_DIR = "AA-PERSIST-002"
RULE_HIDDEN_PATH = "AA-PERSIST-003"
RULE_KERNEL_NAME = "AA-PERSIST-004"
RULE_RUNNING = "AA-PERSIST-005"

KIND_WORDS = {"cron": "cron job", "systemd": "systemd unit line", "rc": "boot script line",
              "profile": "login script line"}
CRON_SCHEDULE = re.compile(r"^\s*(?:@\S+|(?:\S+\s+){4}\S+)\s+")
CRON_SCRIPT_DIRS = ("/cron.hourly/", "/cron.daily/", "/cron.weekly/", "/cron.monthly/")
SYSTEM_CRONTAB = re.compile(r"(?:/etc/crontab|/cron\.d/[^/]+)$")
EXEC_LINE = re.compile(r"^\s*Exec\w+\s*=\s*[-@:+!]*")
SEGMENT_SPLIT = re.compile(r"\|\||&&|(?<![<>&])&(?!>)|[;|`\n]|\$\(|\)")   # not the & of 2>&1 or &>
REDIRECT = re.compile(r"^(?:\d*|&)(?:>>?|<<?)(&?\S*)$")
ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Wrappers that start the program named after them; (name, how many non-option words it takes first).
WRAPPERS = {"nohup": 0, "setsid": 0, "exec": 0, "sudo": 0, "doas": 0, "env": 0, "nice": 0, "ionice": 0,
            "chrt": 1, "taskset": 1, "timeout": 1, "stdbuf": 0, "time": 0, "command": 0, "flock": 1,
            "runuser": 0, "su": 0, "cpulimit": 0, "torsocks": 0, "proxychains": 0, "proxychains4": 0}
WRAPPER_OPTIONS_WITH_VALUE = {"-u", "-g", "-n", "-c", "-l", "-s", "-p", "-k", "--user", "--group"}
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"}
FETCH_PIPE_SHELL = re.compile(
    r"\b(?:curl|wget|fetch|lwp-download|tftp|busybox\s+wget)\b[^|;&]*\|\s*(?:sudo\s+)?(?:\S*/)?(?:ba|da|z|k|a)?sh\b",
    re.IGNORECASE)
FETCH_SAVE = re.compile(r"\b(?:curl|wget)\b[^;&|]*?\s(?:-[a-zA-Z]*[oO]\s*|--output[= ]|--output-document[= ])(\S+)",
                        re.IGNORECASE)
DECODE_RUN = re.compile(r"base64\s+(?:-d|--decode)\b[^|]*\|\s*(?:\S*/)?(?:ba)?sh\b", re.IGNORECASE)
URL_HOST = re.compile(r"(?i)\b(?:https?|ftp|tftp)://(?:[^/\s@]+@)?(\[[0-9a-f:]+\]|[^/\s:]+)")
BARE_IP = re.compile(r"^(?:\d{1,3}\.){3}\d{1,3}$|^\[")


def signals(ctx: Context) -> list[Signal]:
    found: list[Signal] = []
    running = running_by_path(ctx)
    for entry in ctx.snapshot.persistence:
        line_signals = entry_signals(entry, ctx.rules)
        found.extend(line_signals)
        if line_signals:
            found.extend(running_signals(entry, line_signals, running))
    return found


def entry_signals(entry: PersistenceEntry, rules: CompiledRules) -> list[Signal]:
    """Every reason to suspect one persistence line, keyed to its file."""
    key = f"file:{entry.path}"
    command = command_of(entry)
    argvs = programs(command) if command else []
    program = next((argv[0] for argv in argvs if "/" in argv[0]), argvs[0][0] if argvs else "")
    subject = persistence_subject(entry, program)
    where = KIND_WORDS.get(entry.kind, f"{entry.kind} line")
    shown = f"{entry.path}:{entry.line}: {redact_flat(entry.text)}"
    hits = [(hit, where) for hit in rules.match_persistence(entry.text)]
    if command:
        for argv in argvs:
            exe = argv[0] if "/" in argv[0] else ""
            hits += [(hit, f"program started by the {where}")
                     for hit in rules.match_names("", exe, argv[0])]
            hits += [(hit, where) for hit in rules.match_wallets(logins_from_argv(argv))]
        hits += [(hit, where) for hit in rules.match_cmdline(command)]
        hits += [(hit, where) for hit in rules.match_domains(command, "persistence")]
    elif entry.kind == "systemd":
        hits += [(hit, where) for hit in rules.match_domains(entry.text, "persistence")]
    found = []
    seen_rules = set()
    for hit, field_name in hits:
        if hit.rule.id in seen_rules:
            continue
        seen_rules.add(hit.rule.id)
        value = hit.value if hit.rule.kind in ("names", "domains", "wallet") else shown
        signal = signal_from_hit(hit, key, subject, field_name=field_name, value=value)
        signal.evidence.field, signal.evidence.value = "persistence", cap(shown, 300)
        found.append(signal)
    pack_persistence_hit = any(hit.rule.kind == "persistence" for hit, _ in hits)
    if command and not pack_persistence_hit:       # the pack's own patterns already said it
        found += dropper_signals(command, key, subject, where, shown)
    for argv in argvs:
        found += path_signals(argv[0], entry, key, subject, where, shown, pack_persistence_hit)
    return found


def command_of(entry: PersistenceEntry) -> str:
    """The shell command a line runs: cron schedule and user field, or `ExecStart=-` stripped."""
    text = entry.text
    if entry.kind == "cron" and not any(d in entry.path for d in CRON_SCRIPT_DIRS):
        match = CRON_SCHEDULE.match(text)
        if not match:
            return ""
        text = text[match.end():]
        if entry.user and SYSTEM_CRONTAB.search(entry.path):
            first, _, rest = text.partition(" ")
            if first == entry.user:
                text = rest
        return text.strip()
    if entry.kind == "systemd":
        match = EXEC_LINE.match(text)
        return text[match.end():].strip() if match else ""
    return text.strip()


def programs(command: str, depth: int = 0) -> list[list[str]]:
    """argv of every simple command in a shell line, wrappers (nohup, sudo, sh -c ...) peeled off."""
    found = []
    for segment in SEGMENT_SPLIT.split(command):
        argv = split_words(segment)
        while argv and ENV_ASSIGN.match(argv[0]):
            argv = argv[1:]
        argv = peel_wrappers(argv)
        if not argv:
            continue
        if basename(argv[0]) in SHELLS and "-c" in argv[1:-1] and depth < 2:
            found += programs(argv[argv.index("-c", 1) + 1], depth + 1)
            continue
        if basename(argv[0]) in SHELLS and len(argv) > 1 and not argv[1].startswith("-"):
            argv = argv[1:]         # `sh /tmp/.x/run.sh`: the script is what runs
        found.append(argv)
    return found


def split_words(segment: str) -> list[str]:
    """Shell words of one simple command, redirections (>/dev/null, 2>&1, < in) left out."""
    try:
        words = shlex.split(segment, comments=False)
    except ValueError:          # unbalanced quotes in hostile text: fall back to whitespace
        words = segment.split()
    kept = []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        redirect = REDIRECT.match(word)
        if redirect:
            skip_next = not redirect.group(1)       # `> file` names its target in the next word
            continue
        kept.append(word)
    return kept


def peel_wrappers(argv: list[str]) -> list[str]:
    for _ in range(6):
        if not argv or basename(argv[0]) not in WRAPPERS:
            return argv
        takes = WRAPPERS[basename(argv[0])]
        index = 1
        while index < len(argv) and (argv[index].startswith("-") or ENV_ASSIGN.match(argv[index])):
            index += 2 if argv[index] in WRAPPER_OPTIONS_WITH_VALUE else 1
        argv = argv[index + takes:]
    return argv


def persistence_subject(entry: PersistenceEntry, program: str) -> Subject:
    return Subject(kind="persistence", name=KIND_WORDS.get(entry.kind, entry.kind), path=cap(entry.path, 1024),
                   exe=cap(program, 1024) if "/" in program else "", username=cap(entry.user, 64),
                   cmdline=cap(redact_flat(entry.text), 2000))


def dropper_signals(command: str, key: str, subject: Subject, where: str, shown: str) -> list[Signal]:
    """Fetch-and-run: a download piped into a shell, or saved and executed, or base64 decoded into a shell."""
    match = FETCH_PIPE_SHELL.search(command) or DECODE_RUN.search(command) or fetch_then_run(command)
    if not match:
        return []
    hosts = [h.strip("[]") for h in URL_HOST.findall(command)]
    bare = [h for h in hosts if BARE_IP.match(h)]
    detail = f" from the bare IP address {bare[0]}" if bare else ""
    return [Signal(
        subject_key=key, subject=subject, rule_id=RULE_DROPPER, title="Persistence downloads and runs code",
        category="persistence", severity=Severity.MEDIUM, confidence=0.6 if bare else 0.5,
        reason=f"The {where} downloads code{detail} and runs it ({cap(match.group(0), 120)}): "
               "the way cryptojacking droppers reinstall their miner.",
        evidence=Evidence(field="persistence", value=cap(shown, 300), matched=cap(match.group(0), 120),
                          rule_id=RULE_DROPPER),
        action="Fetch the script it downloads from a safe host, check what it installs, remove the entry.",
        indicator="fetch-and-run")]


def fetch_then_run(command: str) -> re.Match[str] | None:
    """`curl -o /tmp/x URL; chmod +x /tmp/x; /tmp/x`: a download saved to a file that the line then runs."""
    saved = FETCH_SAVE.search(command)
    if not saved or saved.group(1) in ("-", "/dev/null"):
        return None
    target = saved.group(1).strip("'\"")
    started = [argv[0] for argv in programs(command[saved.end():])]
    if any(path == target or (not path.startswith("/") and target.endswith("/" + path.lstrip("./")))
           for path in started):
        return saved
    return None


def path_signals(program: str, entry: PersistenceEntry, key: str, subject: Subject, where: str,
                 shown: str, pack_hit: bool = False) -> list[Signal]:
    """The started program lives in a world-writable or hidden directory, or borrows a kernel thread's name.

    The path checks are a fallback for what the pack's persistence patterns do not
    cover (e.g. /opt/.cache/x); the kernel-thread name check always runs.
    """
    if "/" not in program:
        return []
    found = []
    name = PurePosixPath(program).name
    if pack_hit:
        pass
    elif program.startswith(WORLD_WRITABLE_DIRS):
        found.append(_path_signal(RULE_TEMP_DIR, "Persistence starts a program from a world-writable directory",
                                  f"The {where} starts {program!r} from a world-writable directory, where "
                                  "droppers put miners.", Severity.MEDIUM, 0.5, program, key, subject, shown,
                                  "world-writable dir"))
    hidden = "" if pack_hit else hidden_component(program)
    if hidden:
        found.append(_path_signal(RULE_HIDDEN_PATH, "Persistence starts a program from a hidden path",
                                  f"The {where} starts {program!r} from the hidden path component {hidden!r}.",
                                  Severity.MEDIUM, 0.45, program, key, subject, shown, "hidden path"))
    if KERNEL_THREAD_NAME.match(name):
        found.append(_path_signal(RULE_KERNEL_NAME, "Persistence starts a program named like a kernel thread",
                                  f"The {where} starts {program!r}, named like the kernel thread {name!r}: "
                                  "kernel threads are never started from a file, miners borrow their names.",
                                  Severity.HIGH, 0.75, program, key, subject, shown, "kernel-thread name"))
    return found


def _path_signal(rule_id: str, title: str, reason: str, severity: Severity, confidence: float, program: str,
                 key: str, subject: Subject, shown: str, indicator: str) -> Signal:
    return Signal(subject_key=key, subject=subject, rule_id=rule_id, title=title, category="persistence",
                  severity=severity, confidence=confidence, reason=cap(reason, 600),
                  evidence=Evidence(field="persistence", value=cap(shown, 300), matched=cap(program, 200),
                                    rule_id=rule_id),
                  action="Inspect the program it starts and who wrote the entry; remove both if unapproved.",
                  indicator=indicator)


# ---------------------------------------------------------------- tie to running processes

def running_by_path(ctx: Context) -> dict[str, list[ProcessInfo]]:
    """Running processes by the path they run: exe, argv[0], or the script an interpreter runs."""
    index: dict[str, list[ProcessInfo]] = defaultdict(list)
    for proc in ctx.by_pid.values():
        paths = {proc.exe}
        if proc.cmdline:
            paths.add(proc.cmdline[0])
            if len(proc.cmdline) > 1 and basename(proc.exe or proc.cmdline[0]) in SHELLS | {"python", "python3", "perl"}:
                paths.add(proc.cmdline[1])
        for path in paths:
            if path and path.startswith("/"):
                index[path].append(proc)
    return index


def running_signals(entry: PersistenceEntry, line_signals: list[Signal],
                    running: dict[str, list[ProcessInfo]]) -> list[Signal]:
    """The suspicious line starts a program that is running now: say so on the process's finding too."""
    command = command_of(entry)
    paths = {argv[0] for argv in programs(command)} if command else set()
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
                evidence=Evidence(field="persistence", value=cap(f"{where}: {redact_flat(entry.text)}", 300),
                                  matched=cap(path, 200), rule_id=RULE_RUNNING),
                action="Remove the persistence entry before stopping the process, or it will come back.",
                indicator=f"persistence {entry.path}", weak=not strong))
    return found
