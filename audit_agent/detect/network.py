"""Signals from how a process talks, not what it says: mining relayed through a local proxy, connections no
visible process holds, and long-lived TLS sessions on generic ports held by programs that are not known clients.

Relayed mining: a miner pointed at a local SOCKS or HTTP proxy (127.0.0.1:1080)
shows no pool connection of its own; the proxy holds it. The two ends of a
local TCP connection are both in the tables (the client's socket and the
proxy's accepted one, local and remote swapped, same namespace), so the client
is found from the proxy, and the proxy's pool connection is attributed to it.

A proxy whose upstream is on a generic TLS port (443 and the other HTTPS ports of
rules/clients.yaml) relays a pool behind TLS just as well; there the client must
be busy and be neither a known TLS client nor a known research workload, since
browsers and package managers reach 443 through local proxies all day
(its CPU: at least tls_session_min_cpu_percent over the window, as AA-NET-003).

Ownerless connections: see collect/netns.py. Kernel clients (NFS, SMB, iSCSI,
Ceph, DRBD) hold sockets without any process; their ports are rule data (the
`ownerless` rule in rules/network.yaml), which institutions tune.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from audit_agent.detect import Context, Signal, process_key, process_subject
from audit_agent.detect.load import cpu_saturated, known_workload, suspicious_exe
from audit_agent.model import Connection, Evidence, ProcessInfo, Severity, Subject
from audit_agent.redact import cap

RULE_RELAYED = "AA-NET-001"
RULE_OWNERLESS = "AA-NET-002"
MAX_PROXY_CLIENTS_ALL_FLAGGED = 4   # a proxy with more local clients: only its busy clients are named
EPHEMERAL_FROM = 32768


def signals(ctx: Context) -> list[Signal]:
    return [*relay_signals(ctx), *ownerless_signals(ctx), *long_lived_tls_signals(ctx)]


def endpoint(conn: Connection) -> str:
    where = f" in {conn.namespace}" if conn.namespace else ""
    return f"{conn.remote_address}:{conn.remote_port}{where}"


@lru_cache(maxsize=4096)         # thousands of connections share a few addresses: each is parsed once
def is_local(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(parsed, "ipv4_mapped", None)
    return (mapped or parsed).is_loopback


def established(conn: Connection) -> bool:
    return conn.protocol.startswith("tcp") and conn.state == "ESTABLISHED"


def dialled(conn: Connection) -> bool:
    """This end opened the connection (an ephemeral local port), rather than accepted it."""
    return conn.local_port >= EPHEMERAL_FROM or conn.local_port > conn.remote_port


# ---------------------------------------------------------------- the client behind a local proxy


def relay_signals(ctx: Context) -> list[Signal]:
    """Clients of a local proxy that itself holds a connection to a mining-pool port."""
    conns = [c for c in ctx.snapshot.connections if established(c)]
    pool_links: dict[int, list[Connection]] = {}
    tls_ports = ctx.rules.client_ports
    for conn in conns:
        if conn.pid is not None and conn.local_port != conn.remote_port and (
                ctx.rules.pool_port_rule(conn.remote_port) or (conn.remote_port in tls_ports and dialled(conn))):
            pool_links.setdefault(conn.pid, []).append(conn)
    if not pool_links:
        return []
    by_local = {(c.namespace, c.local_address, c.local_port, c.remote_address, c.remote_port): c for c in conns}
    clients: dict[int, list[tuple[Connection, Connection]]] = {}    # proxy pid -> [(client conn, its pool conn)]
    for conn in conns:
        if conn.pid is None or not is_local(conn.remote_address):
            continue
        peer = by_local.get((conn.namespace, conn.remote_address, conn.remote_port, conn.local_address,
                             conn.local_port))
        if peer is None or peer.pid is None or peer.pid == conn.pid or peer.pid not in pool_links:
            continue
        upstreams = sorted((p for p in pool_links[peer.pid] if p is not peer),
                           key=lambda p: ctx.rules.pool_port_rule(p.remote_port) is None)     # pool ports first
        if dialled(conn) and upstreams:
            clients.setdefault(peer.pid, []).append((conn, upstreams[0]))
    found = []
    thresholds, host_cpus = ctx.policy.thresholds, ctx.snapshot.host.cpu_threads
    for proxy_pid, served in clients.items():
        proxy = ctx.by_pid.get(proxy_pid)
        distinct = {conn.pid for conn, _ in served}
        for conn, upstream in served:
            client = ctx.by_pid.get(conn.pid) if conn.pid is not None else None
            if client is None:
                continue
            busy = cpu_saturated(client, thresholds, host_cpus)
            if len(distinct) > MAX_PROXY_CLIENTS_ALL_FLAGGED and not busy:
                continue
            pool_port = ctx.rules.pool_port_rule(upstream.remote_port) is not None
            hashing = (client.cpu_percent or 0.0) >= thresholds.tls_session_min_cpu_percent
            if not pool_port and (not hashing or is_known(client, ctx)):
                continue        # a TLS upstream: only a client that burns CPU and is no known client or workload
            found.append(relay_signal(client, conn, upstream, proxy, proxy_pid, busy if pool_port else hashing, pool_port))
    return found


def relay_signal(client: ProcessInfo, conn: Connection, upstream: Connection, proxy: ProcessInfo | None,
                 proxy_pid: int, busy: bool, pool_port: bool = True) -> Signal:
    proxy_name = f"{cap(proxy.name, 60)!r} (PID {proxy_pid})" if proxy else f"PID {proxy_pid}"
    subject = process_subject(client)
    subject.connections = [f"{conn.remote_address}:{conn.remote_port}", endpoint(upstream)]
    load = (f"; it keeps {client.cpu_percent:.0f}% CPU busy" if busy and client.cpu_percent is not None else "")
    return Signal(
        subject_key=process_key(client.pid), subject=subject, rule_id=RULE_RELAYED,
        title="Mining traffic relayed through a local proxy", category="network",
        severity=Severity.HIGH if busy and pool_port else Severity.MEDIUM, confidence=0.6 if busy and pool_port else 0.45,
        reason=cap(f"It is connected to the local proxy {proxy_name} at {conn.remote_address}:{conn.remote_port}, "
                   f"and that proxy holds a connection to {endpoint(upstream)}, "
                   + ("a mining-pool port: the pool session is this process's, relayed" if pool_port else
                      "a TLS port where pools hide, while this process is no known client and keeps the CPU busy: "
                      "the session is likely this process's, relayed")
                   + f"{load}.", 800),
        evidence=Evidence(field="connection", value=cap(f"{conn.local_address}:{conn.local_port} -> "
                                                        f"{conn.remote_address}:{conn.remote_port} -> proxy "
                                                        f"{proxy_pid} -> {endpoint(upstream)}", 300),
                          matched=f"proxy to {'pool' if pool_port else 'TLS'} port {upstream.remote_port}",
                          rule_id=RULE_RELAYED),
        action="Stop the client and the proxy, and find who configured the client to use the proxy.",
        indicator=f"relayed to {'pool' if pool_port else 'TLS'} port {upstream.remote_port}", weak=not busy)


# ---------------------------------------------------------------- connections nobody holds


def ownerless_signals(ctx: Context) -> list[Signal]:
    found = []
    for conn in ctx.snapshot.connections:
        kernel_ports = ctx.rules.kernel_client_ports
        if not conn.owner_unseen or conn.remote_port in kernel_ports or conn.local_port in kernel_ports:
            continue
        pool_rule = ctx.rules.pool_port_rule(conn.remote_port)
        where = endpoint(conn)
        found.append(Signal(
            subject_key=f"conn:{conn.remote_address}:{conn.remote_port}",     # folds with its pool-port signal
            subject=Subject(kind="connection", connections=[where]),
            rule_id=RULE_OWNERLESS, title="Connection that no visible process holds", category="stealth",
            severity=Severity.HIGH if pool_rule else Severity.MEDIUM, confidence=0.7 if pool_rule else 0.4,
            reason=cap(f"The connection {conn.local_address}:{conn.local_port} -> {where} stayed established for "
                       f"the whole window, but no process holds it open, although every process's open files "
                       f"were read: its owner is hidden (a rootkit, a socket parked in flight between processes, "
                       f"an io_uring fixed file)"
                       + (f"; port {conn.remote_port} is a mining-pool port." if pool_rule else "."), 800),
            evidence=Evidence(field="connection", value=cap(f"{conn.local_address}:{conn.local_port} -> {where}", 300),
                              matched="established, no owner", rule_id=RULE_OWNERLESS),
            action="Find the process behind it from trusted media (ss -tanpe, the socket's inode); check for a rootkit.",
            indicator="connection without owner", weak=not pool_rule))
    return found


# ---------------------------------------------------------------- long-lived TLS on generic ports


def long_lived_tls_signals(ctx: Context) -> list[Signal]:
    rule = ctx.rules.client_rule
    if rule is None or ctx.snapshot.window_seconds < ctx.policy.thresholds.min_window_seconds:
        return []
    ports, loopback = ctx.rules.client_ports, bool(ctx.policy.thresholds.stratum_count_loopback)
    sessions: dict[int, list[Connection]] = {}
    for conn in ctx.snapshot.connections:
        if (conn.pid is not None and established(conn) and conn.held_seconds and conn.remote_port in ports
                and dialled(conn) and (loopback or not is_local(conn.remote_address))):
            sessions.setdefault(conn.pid, []).append(conn)
    found = []
    for pid, held in sessions.items():
        proc = ctx.by_pid.get(pid)
        if proc is None or is_known(proc, ctx):
            continue
        cpu = proc.cpu_percent or 0.0
        noted = cpu >= ctx.policy.thresholds.tls_session_min_cpu_percent or bool(suspicious_exe(proc))
        shown = ", ".join(sorted({endpoint(c) for c in held}))
        subject = process_subject(proc)
        subject.connections = sorted({endpoint(c) for c in held})
        found.append(Signal(
            subject_key=process_key(pid), subject=subject, rule_id=rule.id, title=rule.title, category=rule.category,
            severity=Severity.LOW if noted else Severity.INFO, confidence=rule.confidence if noted else 0.1,
            reason=cap(f"It kept {shown} open for the whole {ctx.snapshot.window_seconds:.0f} s window while using "
                       f"{cpu:.0f}% CPU, and it is not a browser, package manager, known client or service: "
                       "a pool behind TLS on an HTTPS port looks like this.", 800),
            evidence=Evidence(field="connection", value=cap(shown, 300),
                              matched=f"TLS port held >= {held[0].held_seconds:.0f} s", rule_id=rule.id),
            action=rule.action, indicator="long-lived TLS session, unknown program", weak=True))
    return found


def is_known(proc: ProcessInfo, ctx: Context) -> bool:
    """A known client in its ordinary place, or a known research workload (which load.py leaves alone too)."""
    if suspicious_exe(proc):
        return False
    return ctx.rules.known_client(proc.name, proc.exe) is not None or known_workload(proc, ctx)
