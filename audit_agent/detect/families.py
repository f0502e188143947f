"""Signals from family evidence: environment keys, default ports, configs where they sit, artefacts on disk.

A config found in a user's home is that user's, not every process's: it is
tied to a process that says it is that software (name, command line, port),
to a bare interpreter (`python3` with no arguments: how a renamed farmer
looks), or to one that reads it from its working directory, executable
folder, environment or command line. Otherwise it is a finding about the file.
Artefacts are tied to the processes that have their folder open or name it
(directly or through a config); otherwise they are a finding about the folder,
with the farmed capacity either way.
"""
from __future__ import annotations

from audit_agent.detect import (
    Context,
    Signal,
    each_process,
    process_key,
    process_subject,
    rule_family,
    safe_format,
    signal_from_hit,
)
from audit_agent.model import (
    ArtefactGroup,
    Evidence,
    FamilyConfig,
    ProcessInfo,
    Severity,
    Subject,
)
from audit_agent.redact import cap
from audit_agent.rules.loader import Rule

STRONG_VIA = {"cwd", "exe_dir", "env", "arg", "fixed"}
LIVE_STATES = {"ESTABLISHED", "SYN_SENT", ""}
TIB = 1 << 40


def signals(ctx: Context) -> list[Signal]:
    matchers = ctx.rules.families
    if not matchers.families:
        return []
    # env_signals reads the process's environment (part of its look) and its parent's (the parent's look).
    looks = ctx.looks()
    found = each_process(ctx, lambda proc: env_signals(proc, ctx),
                         lambda proc: looks.get(proc.ppid) if proc.ppid else None)
    found += port_signals(ctx)
    attributed: dict[str, list[int]] = {}
    for config in ctx.snapshot.family_configs:
        attributed[config.path] = config_pids(config, ctx)
        found += config_signals(config, attributed[config.path], ctx)
    for group in ctx.snapshot.artefacts:
        found += artefact_signals(group, attributed, ctx)
    return found


def signal(rule: Rule, key: str, subject: Subject, field: str, value: str, matched: str, *,
           severity: Severity | None = None, confidence: float | None = None, weak: bool = False) -> Signal:
    shown = cap(value, 300)
    reason = safe_format(rule.reason, field=field, value=shown, matched=cap(matched, 200))
    return Signal(subject_key=key, subject=subject, rule_id=rule.id, title=rule.title, category=rule.category,
                  severity=severity or rule.severity, confidence=rule.confidence if confidence is None else confidence,
                  reason=reason, evidence=Evidence(field=field, value=shown, matched=cap(matched, 200), rule_id=rule.id),
                  action=rule.action, indicator=matched, weak=weak, identifies=rule_family(rule))


def env_signals(proc: ProcessInfo, ctx: Context) -> list[Signal]:
    """A family variable the process sets itself (one inherited unchanged from its parent is the parent's)."""
    hits = ctx.rules.families.match_env(proc.environ)
    if not hits:
        return []
    parent = ctx.by_pid.get(proc.ppid) if proc.ppid else None
    found = []
    for rule, env_key, env_value in hits:
        if parent is not None and parent.environ.get(env_key) == env_value:
            continue
        found.append(signal(rule, process_key(proc.pid), process_subject(proc), "environ",
                            f"{env_key}={env_value}", env_key))
    return found


def port_signals(ctx: Context) -> list[Signal]:
    """A family's default port listened on or dialled: context only (other software uses these ports too)."""
    matchers = ctx.rules.families
    found = []
    for listener in ctx.snapshot.listeners:
        rule = matchers.listen_ports.get(listener.port)
        proc = ctx.by_pid.get(listener.pid) if listener.pid is not None else None
        if rule and proc:
            found.append(signal(rule, process_key(proc.pid), process_subject(proc), "port",
                                f"listening on {listener.address}:{listener.port}/{listener.protocol}",
                                f"port {listener.port}", severity=Severity.INFO, confidence=rule.confidence, weak=True))
    for conn in ctx.snapshot.connections:
        rule = matchers.connect_ports.get(conn.remote_port)
        proc = ctx.by_pid.get(conn.pid) if conn.pid is not None else None
        if rule and proc and conn.state in LIVE_STATES and conn.remote_port != conn.local_port:
            found.append(signal(rule, process_key(proc.pid), process_subject(proc), "connection",
                                f"connected to {conn.remote_address}:{conn.remote_port}", f"port {conn.remote_port}",
                                severity=Severity.INFO, confidence=rule.confidence, weak=True))
    return found


def says_it_is(proc: ProcessInfo, family: str, ctx: Context) -> bool:
    """The process names itself as the family's software, or listens on one of its ports."""
    prefix = f"AA-{family}-"
    argv0 = proc.cmdline[0] if proc.cmdline else ""
    if any(hit.rule.id.startswith(prefix) for hit in ctx.rules.match_names(proc.name, proc.exe, argv0)):
        return True
    if proc.cmdline and any(hit.rule.id.startswith(prefix) for hit in ctx.rules.match_cmdline(" ".join(proc.cmdline))):
        return True
    return any(listener.pid == proc.pid and ctx.rules.families.listen_ports.get(listener.port) is not None
               and ctx.rules.families.listen_ports[listener.port].id.startswith(prefix) for listener in ctx.snapshot.listeners)


def bare_interpreter(proc: ProcessInfo, ctx: Context) -> bool:
    """`python3` with no script and no terminal: nothing a person runs, what a renamed farmer looks like."""
    return len(proc.cmdline) <= 1 and not proc.terminal and ctx.rules.is_generic_runtime(proc.name, proc.exe)


def config_pids(config: FamilyConfig, ctx: Context) -> list[int]:
    pids = []
    for reader in config.readers:
        proc = ctx.by_pid.get(reader.pid)
        if proc is None:
            continue
        if reader.via in STRONG_VIA or bare_interpreter(proc, ctx) or says_it_is(proc, config.family, ctx):
            pids.append(proc.pid)
    return pids


def config_signals(config: FamilyConfig, pids: list[int], ctx: Context) -> list[Signal]:
    rule = ctx.rules.families.config_rules.get(config.family)
    if rule is None:
        return []
    details = [f"keys {', '.join(config.keys[:5])}"]
    if config.logins:
        details.append(f"payout/account {', '.join(config.logins[:2])}")
    if config.urls:
        details.append(f"pool {', '.join(config.urls[:2])}")
    if config.dirs:
        details.append(f"folders {', '.join(config.dirs[:3])}")
    if config.network:
        details.append(f"network {config.network}")
    value = f"{config.path} ({'; '.join(details)})"
    matched = f"{config.family.lower()} config {config.path.rsplit('/', 1)[-1]}"
    if pids:
        subjects = [(process_key(pid), process_subject(ctx.by_pid[pid])) for pid in pids]
        severity, confidence = rule.severity, rule.confidence
    else:
        subjects = [(f"file:{config.path}", Subject(kind="file", path=cap(config.path, 1024), username=config.owner))]
        severity, confidence = Severity.MEDIUM, 0.5
    found = []
    for key, subject in subjects:
        found.append(signal(rule, key, subject, "config", value, matched, severity=severity, confidence=confidence))
        for hit in ctx.rules.match_wallets(config.logins, "config"):     # the payout address says the coin
            found.append(signal_from_hit(hit, key, subject, value=f"{config.path}: {hit.value}",
                                         severity=hit.rule.severity if pids else Severity.MEDIUM))
        for url in config.urls:
            for hit in ctx.rules.match_domains(url, "config"):
                found.append(signal(hit.rule, key, subject, "config", f"{config.path}: {url}", hit.matched,
                                    severity=hit.rule.severity if pids else Severity.MEDIUM))
    return found


def artefact_signals(group: ArtefactGroup, attributed: dict[str, list[int]], ctx: Context) -> list[Signal]:
    rule = ctx.rules.families.file_rules.get(group.family)
    if rule is None:
        return []
    pids = set(group.pids)
    configured: set[int] = set()
    for config in ctx.snapshot.family_configs:
        if config.family == group.family and any(
                group.directory == d.rstrip("/") or group.directory.startswith(d.rstrip("/") + "/") for d in config.dirs):
            configured |= set(attributed.get(config.path, []))
    pids |= configured
    pids = {pid for pid in pids if pid in ctx.by_pid}
    spec = ctx.rules.families.spec(group.family, group.kind)
    if spec is not None and spec.tied:
        # A name other software uses too (hostd's volumes are `<name>.dat`): only the family's own processes,
        # or the folders its configuration names, make these files its artefacts.
        pids = {pid for pid in pids if pid in configured or says_it_is(ctx.by_pid[pid], group.family, ctx)}
        if not pids:
            return []
    value = (f"{group.count} {group.kind} file(s) in {group.directory}, {group.total_bytes / TIB:.2f} TiB "
             f"({group.total_bytes} bytes; {group.allocated_bytes} allocated on disk), e.g. {', '.join(group.examples)}"
             f" (found via {group.found_via})")
    matched = f"{group.family.lower()} {group.kind}: {group.total_bytes / TIB:.2f} TiB"
    if pids:
        return [signal(rule, process_key(pid), process_subject(ctx.by_pid[pid]), "file", value, matched)
                for pid in sorted(pids)]
    subject = Subject(kind="storage", path=group.directory)
    return [signal(rule, f"storage:{group.directory}", subject, "file", value, matched,
                   severity=Severity.MEDIUM, confidence=0.5)]
