"""Signals from what a process says about itself: its names, command line, logins, hosts, and connections."""
from __future__ import annotations

from audit_agent.detect import Context, Signal, each_process, process_key, process_subject, signal_from_hit
from audit_agent.model import Evidence, ProcessInfo, Severity, Subject
from audit_agent.redact import redact_cmdline
from audit_agent.rules.compiler import logins_from_argv

POOL_PORT_CONFIDENCE = 0.35
LIVE_STATES = {"ESTABLISHED", "SYN_SENT", ""}     # "" = UDP; a TIME_WAIT socket is history, not activity


def signals(ctx: Context) -> list[Signal]:
    # Whether a process says anything depends on its name, executable and command line only: the thousands of
    # identical workers or sleepers of a host are judged once (those that do say something, each one).
    found = each_process(ctx, lambda proc: process_signals(proc, ctx))
    found.extend(connection_signals(ctx))
    return found


def process_signals(proc: ProcessInfo, ctx: Context) -> list[Signal]:
    rules = ctx.rules
    argv0 = proc.cmdline[0] if proc.cmdline else ""
    joined = " ".join(proc.cmdline)
    name_hits = rules.match_names(proc.name, proc.exe, argv0)
    cmdline_hits = wallet_hits = domain_hits = []
    if joined:
        cmdline_hits = rules.match_cmdline(joined)
        wallet_hits = [hit for hit in rules.match_wallets(logins_from_argv(proc.cmdline))
                       if not rules.unless_matches(hit.rule, joined)]
        domain_hits = rules.match_domains(joined, "cmdline")
    if not (name_hits or cmdline_hits or wallet_hits or domain_hits):
        return []                   # the common case: no subject to build, nothing to redact
    key, subject = process_key(proc.pid), process_subject(proc)
    # An info-level name (a coin's node, not its miner) only adds to other evidence.
    found = [signal_from_hit(hit, key, subject, weak=hit.rule.severity == Severity.INFO) for hit in name_hits]
    if cmdline_hits:
        shown_cmdline = redact_cmdline(proc.cmdline, 600)
        found += [signal_from_hit(hit, key, subject, value=shown_cmdline) for hit in cmdline_hits]
    found += [signal_from_hit(hit, key, subject) for hit in wallet_hits]
    found += [signal_from_hit(hit, key, subject, field_name="cmdline") for hit in domain_hits]
    return found


def connection_signals(ctx: Context) -> list[Signal]:
    """An established connection to a pool port, tied to its owning process.

    A pool port alone is weak (a private proxy or a dev server can use 3333);
    generic ports (80, 443, 8080, ...) are never evidence on their own.
    """
    found = []
    for conn in ctx.snapshot.connections:
        rule = ctx.rules.pool_port_rule(conn.remote_port)
        if rule is None or conn.remote_port == conn.local_port or conn.state not in LIVE_STATES:
            continue
        endpoint = f"{conn.remote_address}:{conn.remote_port}"
        proc = ctx.by_pid.get(conn.pid) if conn.pid is not None else None
        if proc is not None:
            key, subject = process_key(proc.pid), process_subject(proc)
        else:
            key = f"conn:{endpoint}"
            subject = Subject(kind="connection", pid=conn.pid, connections=[endpoint])
        if endpoint not in subject.connections:
            subject.connections.append(endpoint)
        found.append(Signal(
            subject_key=key, subject=subject, rule_id=rule.id, title=rule.title, category=rule.category,
            severity=min(rule.severity, Severity.MEDIUM, key=lambda s: s.rank), confidence=min(rule.confidence, POOL_PORT_CONFIDENCE),
            reason=f"Connected to {endpoint} ({conn.protocol}, {conn.state or 'no state'}"
                   f"{', in network namespace ' + conn.namespace if conn.namespace else ''}): "
                   f"port {conn.remote_port} is a common mining-pool port.",
            evidence=Evidence(field="connection", value=f"{conn.local_address}:{conn.local_port} -> {endpoint}",
                              matched=str(conn.remote_port), rule_id=rule.id),
            action=rule.action, indicator=f"port {conn.remote_port}", weak=True))
    return found
