"""Signals from what a process carries: miner strings inside its executable, and its miner config files.

Content survives renaming: a binary called `kworker_helper` that holds the
RandomX implementation names, stratum method names and xmrig's banner is a
miner whatever its command line says. Config files hold the pool and the
wallet a miner started with no arguments uses.
"""
from __future__ import annotations

import msgspec

from audit_agent.detect import Context, Signal, process_key, process_subject, signal_from_hit
from audit_agent.model import BinaryScan, Evidence, MinerConfig, Severity, Subject
from audit_agent.redact import cap
from audit_agent.rules.compiler import logins_from_argv

RULE_YARA = "AA-CONTENT-001"
RULE_CONFIG = "AA-CONFIG-001"
RULE_CONFIG_LIVE = "AA-CONFIG-002"
MINER_CONFIG_KEYS = {"donate-level", "donate-over-proxy", "pool_list", "randomx", "nicehash", "rig-id",
                     "tls-fingerprint", "1gb-pages", "wrmsr"}


def signals(ctx: Context) -> list[Signal]:
    found: list[Signal] = []
    for scan in ctx.snapshot.binaries:
        found.extend(binary_signals(scan, ctx))
    for config in ctx.snapshot.configs:
        found.extend(config_signals(config, ctx))
    return found


def subjects(pids: list[int], ctx: Context, fallback_path: str) -> list[tuple[str, Subject]]:
    """The process subjects of `pids`; a file subject when none of them is known any more."""
    known = [(process_key(pid), process_subject(ctx.by_pid[pid])) for pid in pids if pid in ctx.by_pid]
    return known or [(f"file:{fallback_path}", Subject(kind="file", path=cap(fallback_path, 1024)))]


def binary_signals(scan: BinaryScan, ctx: Context) -> list[Signal]:
    found: list[Signal] = []
    if not scan.matched_strings:
        return found
    plain = {s for s in scan.matched_strings if not s.startswith("yara:")}
    hits = ctx.rules.match_strings(plain, scan.path)
    yara_rules = [s[len("yara:"):] for s in scan.matched_strings if s.startswith("yara:")]
    shown = f"{scan.path} (sha256 {scan.sha256[:16]})" if scan.sha256 else scan.path
    for key, subject in subjects(scan.pids, ctx, scan.path):
        for hit in hits:
            found.append(signal_from_hit(hit, key, subject, field_name="binary", value=shown))
        for name in yara_rules:
            found.append(Signal(
                subject_key=key, subject=subject, rule_id=RULE_YARA, title="Executable matches a YARA miner rule",
                category="miner", severity=Severity.HIGH, confidence=0.8,
                reason=f"The running executable {cap(scan.path, 300)!r} matches the YARA rule {cap(name, 100)!r}.",
                evidence=Evidence(field="binary", value=cap(shown, 300), matched=f"yara:{cap(name, 100)}",
                                  rule_id=RULE_YARA),
                action="Preserve the executable as evidence, stop the process, and find who started it.",
                indicator=f"yara:{name}"))
    return found


def config_signals(config: MinerConfig, ctx: Context) -> list[Signal]:
    rules = ctx.rules
    found: list[Signal] = []
    where = f"config {config.path}"
    for key, subject in subjects(config.pids, ctx, config.path):
        for url in config.urls:
            shown = cap(f"{config.path}: {url}", 300)
            found += [signal_from_hit(hit, key, subject, field_name="config", value=shown)
                      for hit in rules.match_domains(url, "config")]
            found += [signal_from_hit(hit, key, subject, field_name="config", value=shown)
                      for hit in rules.match_cmdline(url, "config")]
        found += [signal_from_hit(hit, key, subject, field_name="config", value=cap(f"{config.path}: {hit.value}", 300))
                  for hit in rules.match_wallets(config.users, "config")]
        found += launcher_signals(config, key, subject, ctx)
        shape = config_shape(config)
        if shape is not None:
            severity, confidence, what = shape
            detail = ", ".join(config.urls[:3]) or ", ".join(config.users[:1])
            found.append(Signal(
                subject_key=key, subject=subject, rule_id=RULE_CONFIG, title="Miner configuration file",
                category="miner", severity=severity, confidence=confidence,
                reason=f"The process uses the {where!s} that is shaped like a miner configuration ({what})"
                       + (f": {cap(detail, 200)}." if detail else "."),
                evidence=Evidence(field="config", value=cap(f"{config.path}: {', '.join(config.keys[:12])}", 300),
                                  matched=what, rule_id=RULE_CONFIG),
                action="Preserve the config file as evidence; identify the pool and wallet owner.",
                indicator=what, weak=severity.rank < Severity.HIGH.rank))
        live = live_endpoints(config, key, ctx) if (shape or config.users) else []
        if live:
            found.append(Signal(
                subject_key=key, subject=msgspec.structs.replace(subject, connections=list(live)), rule_id=RULE_CONFIG_LIVE,
                title="Connected to the pool its miner configuration names", category="miner",
                severity=Severity.HIGH, confidence=0.7,
                reason=f"The process is connected to {', '.join(live)}, the pool endpoint named in its "
                       f"miner-shaped {where}: the configuration is in use, whatever the pool's name or TLS.",
                evidence=Evidence(field="config", value=cap(f"{config.path}: {', '.join(live)}", 300),
                                  matched="config endpoint = live connection", rule_id=RULE_CONFIG_LIVE),
                action="Preserve the config file as evidence; identify the pool and wallet owner.",
                indicator="config endpoint live"))
    return found


def launcher_signals(config: MinerConfig, key: str, subject: Subject, ctx: Context) -> list[Signal]:
    """A launcher script's command lines, matched as a process's command line would be."""
    rules = ctx.rules
    found: list[Signal] = []
    for line in config.commands:
        shown = cap(f"{config.path}: {line}", 300)
        argv = line.split()
        found += [signal_from_hit(hit, key, subject, field_name="config", value=shown)
                  for hit in [*rules.match_cmdline(line, "config"), *rules.match_domains(line, "config"),
                              *rules.match_wallets(logins_from_argv(argv), "config")]]
        if argv:
            found += [signal_from_hit(hit, key, subject, field_name="config", value=shown)
                      for hit in rules.match_names("", "", argv[0])]
    return found


def endpoint_of(url: str) -> tuple[str, int] | None:
    """host and port of `stratum+tcp://h:p`, `h:p`, `ssl://[v6]:p`; None without a port."""
    rest = url.strip().split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]").lower(), int(port)


def live_endpoints(config: MinerConfig, key: str, ctx: Context) -> list[str]:
    """The config's pool endpoints (given as addresses) the process is connected to right now."""
    if not key.startswith("pid:"):
        return []
    pid = int(key[4:])
    named = {endpoint for endpoint in map(endpoint_of, config.urls) if endpoint}
    live = []
    for conn in ctx.snapshot.connections:
        if conn.pid == pid and (conn.remote_address.lower(), conn.remote_port) in named:
            live.append(f"{conn.remote_address}:{conn.remote_port}")
    return sorted(set(live))


def config_shape(config: MinerConfig) -> tuple[Severity, float, str] | None:
    """How miner-like the file's structure is, independent of whether its pool or wallet is known."""
    keys = set(config.keys)
    specific = sorted(keys & MINER_CONFIG_KEYS)
    stratum = any(url.lower().startswith("stratum") for url in config.urls)
    if specific and (config.urls or config.users):
        return Severity.HIGH, 0.75, f"miner keys {', '.join(specific[:4])} with a pool or login"
    if stratum and config.users:
        return Severity.HIGH, 0.7, "stratum pool URL with a login"
    if ("pools" in keys or any(k.startswith("pool") for k in keys)) and config.urls and config.users:
        return Severity.MEDIUM, 0.45, "pool list with URL and login"
    if stratum:
        return Severity.MEDIUM, 0.45, "stratum pool URL"
    return None
