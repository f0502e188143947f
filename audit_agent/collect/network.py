"""Connections with a remote end (outbound or established), tied to their owning process."""
from __future__ import annotations

import psutil

from audit_agent.model import Connection, Coverage, CoverageStatus

# Sockets the kernel keeps after their process closed them have no owner by nature, not by denial.
ORPHAN_STATES = {"TIME_WAIT", "FIN_WAIT2", "CLOSE", "LAST_ACK", "CLOSING"}
PROTOCOLS = {
    (2, 1): "tcp", (10, 1): "tcp6", (2, 2): "udp", (10, 2): "udp6",
}


def collect_connections() -> tuple[list[Connection], Coverage]:
    try:
        raw = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return [], Coverage("network", CoverageStatus.SKIPPED,
                            "access denied listing sockets (on macOS this needs root)")
    except (OSError, psutil.Error) as exc:
        return [], Coverage("network", CoverageStatus.ERROR, f"cannot list sockets: {exc}")
    connections = []
    unowned = 0
    for conn in raw:
        if not conn.raddr:
            continue
        if conn.pid is None and conn.status not in ORPHAN_STATES:
            unowned += 1
        connections.append(Connection(
            pid=conn.pid,
            protocol=PROTOCOLS.get((int(conn.family), int(conn.type)), "other"),
            local_address=conn.laddr.ip if conn.laddr else "",
            local_port=conn.laddr.port if conn.laddr else 0,
            remote_address=conn.raddr.ip,
            remote_port=conn.raddr.port,
            state=conn.status if conn.status != psutil.CONN_NONE else "",
        ))
    if unowned:
        coverage = Coverage("network", CoverageStatus.PARTIAL,
                            f"{unowned} of {len(connections)} connections have no visible owner process (access denied)",
                            inspected=len(connections) - unowned, denied=unowned)
    else:
        coverage = Coverage("network", CoverageStatus.OK, inspected=len(connections))
    return connections, coverage
