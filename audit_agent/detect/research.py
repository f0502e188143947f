"""Signals about mining-related research systems, and how they settle against miner evidence.

A research system (a regtest node that generates blocks, a Filecoin devnet, a Stratum V2 pool
under test, a miner's benchmark mode) is allowed when filed; `settle` makes its finding a research
finding unless the same process also shows main-network mining (a wallet, a public pool, a
connection to a public pool port) or hiding, which keep it a miner whatever it calls itself.
"""
from __future__ import annotations

import ipaddress
import re

import msgspec

from audit_agent.detect import (
    ALONE,
    Context,
    Signal,
    each_process,
    process_key,
    process_subject,
    safe_format,
)
from audit_agent.model import Evidence, FamilyConfig, ProcessInfo, Severity
from audit_agent.redact import cap, redact_cmdline
from audit_agent.rules.research import ResearchHit

CATEGORY = "research"
# host:port or scheme://[user@]host:port in evidence text
# Linear on any text: a match starts only where no host character precedes it, and every part is bounded by
# what the standards allow (a host name is at most 253 characters), so one start costs a bounded amount.
ENDPOINT = re.compile(r"(?<![A-Za-z0-9.+-])(?:[a-z][a-z0-9+.-]{0,31}://)?(?:[^@\s/]{1,256}@)?"
                      r"(\[[0-9a-fA-F:.]{2,45}\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252}):(\d{2,5})\b")
LOCAL_SUFFIXES = (".local", ".lan", ".internal", ".localdomain", ".test", ".home.arpa")
MAIN_NETWORK_KINDS = ("wallet", "domains")
POOL_FAMILY = "SV2"     # Stratum V2 role configs (collect/pool_configs.py)
MAIN_NAMES = {"main", "mainnet", "bitcoin"}
TEST_NAMES = {"regtest", "testnet", "testnet3", "testnet4", "signet"}
# Bitcoin address prefixes (BIP 173 HRPs bc / tb / bcrt; base58 versions 1, 3 main, m, n, 2 test)
ADDRESS_NETWORK = (("bcrt1", "regtest"), ("tb1", "testnet"), ("bc1", "main"), ("1", "main"), ("3", "main"),
                   ("m", "testnet"), ("n", "testnet"), ("2", "testnet"))
CHAIN = re.compile(r"(?:^|\s)--?(?:chain=)?(regtest|testnet4|testnet|signet|stagenet)\b", re.IGNORECASE)


def signals(ctx: Context) -> list[Signal]:
    matcher = ctx.rules.research
    if not matcher.rules:
        return []
    severity = ctx.policy.research_severity
    providers: dict[str, list[tuple[ProcessInfo | None, ResearchHit]]] = {}
    described: dict[int, str] = {}                   # pid -> the config and what it says, as evidence
    selected = config_networks(ctx, described)

    def hits(proc: ProcessInfo) -> list[tuple[ProcessInfo, ResearchHit]]:
        argv0 = proc.cmdline[0] if proc.cmdline else ""
        text = process_text(proc, selected.get(proc.pid, ()))
        return [(proc, hit) for hit in matcher.match((proc.name, proc.exe, argv0), text)] if text else []

    # `hits` reads the process's look (each_process) and, for a process reading a family config, that config:
    # such a process is judged on its own.
    node_hits = each_process(ctx, hits, lambda proc: ALONE if proc.pid in selected else None)
    for proc, hit in node_hits:
        label = hit.rule.params.get("provides")
        if label:
            providers.setdefault(label, []).append((proc, hit))
    for entry in ctx.snapshot.persistence:           # a cron line that generates blocks every minute
        for hit in matcher.match((), entry.text):
            if hit.rule.params.get("provides"):
                providers.setdefault(hit.rule.params["provides"], []).append((None, hit))
    found: list[Signal] = []
    anchors: dict[str, str] = {}                     # label -> subject key of the node it belongs to
    for proc, hit in sorted(node_hits, key=lambda item: item[0].pid):
        label = hit.rule.params.get("needs")
        if not label:
            continue
        chain = chain_of(hit.value)
        asking = [(p, h) for p, h in providers.get(label, []) if chain_of(h.value) in ("", chain)]
        if asking:
            for p, h in asking:
                anchors.setdefault(f"{label}:{p.pid if p else h.value}", process_key(proc.pid))
            by = "; ".join(sorted({_describe(p, h) for p, h in asking}))[:400]
            found.append(_signal(proc, hit, severity, extra=f" Blocks are requested by {by}."))
        else:   # a test-chain node nobody asks for blocks: context only
            found.append(_signal(proc, hit, Severity.INFO, weak=True))
    for proc, hit in node_hits:
        if hit.rule.params.get("needs"):
            continue
        label = hit.rule.params.get("provides")
        key = anchors.get(f"{label}:{proc.pid}", "") if label else ""
        signal = _signal(proc, hit, severity, configs=described)
        if key and key != signal.subject_key:          # the generator is part of the node's system
            node = ctx.by_pid[int(key.split(":", 1)[1])]
            signal = msgspec.structs.replace(signal, subject_key=key, subject=process_subject(node), weak=True)
        found.append(signal)
    return found


def chain_of(text: str) -> str:
    """The test chain a command line names (regtest, testnet, signet, stagenet); "" when it names none."""
    found = CHAIN.search(text)
    return found.group(1).lower().removesuffix("4") if found else ""


def pool_network(config: FamilyConfig, ctx: Context) -> tuple[str, str]:
    """(network, why) a Stratum V2 role serves, from its config: the chain it names, the chain of the address
    its block reward goes to, a public upstream or template provider (the shares of miners go to a pool
    outside), or the chain of the local template provider it takes work from; ("", "") when it says nothing.
    "local" means every endpoint it talks to is on this host or a private network."""
    named = config.network.strip().lower()
    if named in MAIN_NAMES:
        return "main", f"network = {named}"
    if named in TEST_NAMES:
        return named.removesuffix("3").removesuffix("4"), f"network = {named}"
    for address in config.logins:
        for prefix, network in ADDRESS_NETWORK:
            if address.lower().startswith(prefix):
                return network, f"block reward to {cap(address, 80)}"
    talks_to = [e.split(" ", 1)[1] for e in config.urls if e.split(" ", 1)[0] in ("template", "upstream")]
    for endpoint in talks_to:
        found = ENDPOINT.search(endpoint)
        host = found.group(1) if found else endpoint
        if public_host(host):
            return "main", f"upstream {cap(endpoint, 120)} is a public address"
    for endpoint in [e.split(" ", 1)[1] for e in config.urls if e.startswith("template ")]:
        found = ENDPOINT.search(endpoint)
        port = int(found.group(2)) if found else 0
        for conn in ctx.snapshot.connections:
            provider = ctx.by_pid.get(conn.pid) if conn.pid is not None else None
            if provider is None or conn.local_port != port or conn.state not in ("LISTEN", ""):
                continue
            chain = chain_of(process_text(provider))
            if chain:
                return chain, f"template provider pid {provider.pid} runs {chain}"
            if "bitcoin" in provider.name.lower() or "bitcoin" in provider.exe.lower():
                return "main", f"template provider pid {provider.pid} runs the main network"
    if talks_to:
        return "local", "every upstream is on this host or a private network"
    return "", ""


def process_text(proc: ProcessInfo, configs: tuple[str, ...] | list[str] = ()) -> str:
    """What research rules read: the command line, then the selected environment as KEY=VALUE, then the
    network each family config the process reads selects, as `config:FAMILY:network=VALUE`."""
    words = list(proc.cmdline) or ([proc.name] if proc.name else [])
    words += [f"{key}={value}" for key, value in sorted(proc.environ.items())]
    words += list(configs)
    return " ".join(words)


def config_networks(ctx: Context, described: dict[int, str]) -> dict[int, list[str]]:
    """pid -> `config:FAMILY:network=VALUE` for each family config it reads that names a network.

    Chia keeps its root at ~/.chia/mainnet even on a testnet: `chia configure --testnet true` only sets
    `selected_network: testnet11` in config.yaml (Chia wiki, "How to Connect to the Testnet"), so the
    command line and CHIA_ROOT of a testnet farmer look like a mainnet one's. A home config is every
    process's of that user; the research rules name the programs it counts for."""
    found: dict[int, list[str]] = {}
    for config in ctx.snapshot.family_configs:
        network, why = pool_network(config, ctx) if config.family == POOL_FAMILY else (config.network, "")
        network = re.sub(r"[^\w.-]", "", network)[:64]
        if not network:
            continue
        for reader in config.readers:
            words = found.setdefault(reader.pid, [])
            word = f"config:{config.family}:network={network}"
            if word not in words:
                words.append(word)
            described.setdefault(reader.pid, f"{config.path} (network {network}{'; ' + why if why else ''})")
    return found


def _describe(proc: ProcessInfo | None, hit: ResearchHit) -> str:
    if proc is None:
        return f"a scheduled task ({cap(hit.matched, 60)})"
    return f"pid {proc.pid} ({cap(redact_cmdline(proc.cmdline), 120)})"


def _signal(proc: ProcessInfo, hit: ResearchHit, severity: Severity, *, weak: bool = False, extra: str = "",
            configs: dict[int, str] | None = None) -> Signal:
    rule = hit.rule
    shown = redact_cmdline(proc.cmdline, 600) or proc.name
    field, value, category = "command line", shown, CATEGORY
    if hit.matched.startswith("config:"):      # matched on what a config the process reads says
        field, value = "config", (configs or {}).get(proc.pid, "") or hit.matched
    if rule.category == "miner":               # the research software serves a main network: a miner
        category, severity = "miner", rule.severity
    reason = safe_format(rule.reason, field=field, value=cap(value, 300), matched=cap(hit.matched, 200))
    return Signal(subject_key=process_key(proc.pid), subject=process_subject(proc), rule_id=rule.id, title=rule.title,
                  category=category, severity=severity, confidence=rule.confidence, reason=reason + extra,
                  evidence=Evidence(field="cmdline" if field == "command line" else field, value=cap(value, 300),
                                    matched=cap(hit.matched, 200), rule_id=rule.id),
                  action=rule.action, indicator=hit.matched, weak=weak,
                  tags=[f"system:{rule.params['system']}", f"software:{rule.params['software']}"])


# ---------------------------------------------------------------- settling against miner evidence


def settle(group: list[Signal], kind_of: dict[str, str]) -> list[Signal]:
    """A group with research evidence: research-led when nothing shows main-network mining or hiding.

    Research-led: the miner-looking signals (the xmrig name of a benchmark, its binary strings)
    stay as reasons but no longer set the severity. Otherwise the research signals turn into
    miner evidence: "benchmark" with a public pool is mining.
    """
    research = [s for s in group if s.category == CATEGORY and not s.weak]
    if not research:
        return group
    disqualifying = [s for s in group if s.category != CATEGORY and main_network(s, kind_of)]
    if disqualifying:
        note = (" It also shows main-network mining or hiding "
                f"({disqualifying[0].title}), so it is counted as a miner, not as research.")
        return [msgspec.structs.replace(s, category="miner", severity=Severity.HIGH, reason=s.reason + note)
                if s in research else s for s in group]
    ceiling = max((s.severity for s in research), key=lambda s: s.rank)
    return [s if s.category == CATEGORY or s.weak
            else msgspec.structs.replace(s, weak=True, severity=min(s.severity, ceiling, key=lambda v: v.rank))
            for s in group]


def main_network(signal: Signal, kind_of: dict[str, str]) -> bool:
    """Evidence that a process mines on a main network or hides: never research.

    Hiding is the strong stealth evidence (a pid hidden from /proc, a kernel-thread disguise, a pid-file
    executable); a weak hint such as an executable under /tmp stays a reason on the research finding.
    """
    if signal.category == "stealth":
        return not signal.weak
    if kind_of.get(signal.rule_id, "") in MAIN_NETWORK_KINDS:
        return True
    if signal.category in ("miner", "network", "config"):
        return any(public_host(host) for host, _ in ENDPOINT.findall(signal.evidence.value))
    return False


def public_host(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith(LOCAL_SUFFIXES):
            return False
        labels = host.split(".")
        # a dotted name with a letter in its top label is a DNS name; "12.30" or a bare word is not
        return len(labels) >= 2 and any(c.isalpha() for c in labels[-1])
    return address.is_global
