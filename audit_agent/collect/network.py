"""Connections with a remote end (outbound or established), tied to their owning process."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from audit_agent.collect.coverage import because, coverage
from audit_agent.model import Connection, Coverage, CoverageStatus

if TYPE_CHECKING:
    from audit_agent.collect.proc_facts import ProcFacts

# Sockets the kernel keeps after their process closed them have no owner by nature, not by denial.
ORPHAN_STATES = {"TIME_WAIT", "FIN_WAIT2", "CLOSE", "LAST_ACK", "CLOSING"}
PROTOCOLS = {
    (2, 1): "tcp", (10, 1): "tcp6", (2, 2): "udp", (10, 2): "udp6",
}


def collect_connections(proc_root: str = "/proc", facts: ProcFacts | None = None) -> tuple[list[Connection], Coverage]:
    """Every socket with a remote end in the agent's own network namespace, with its owner where visible."""
    from audit_agent.collect.processes import is_live_procfs
    if is_live_procfs(proc_root):
        return proc_connections(proc_root, facts)
    return psutil_connections()


def proc_connections(proc_root: str, facts: ProcFacts | None = None) -> tuple[list[Connection], Coverage]:
    """From /proc/net/{tcp,tcp6,udp,udp6} and the owners the process reader's walk of the descriptors saw
    (`facts`); the owners of sockets opened since, or of all without `facts`, from one walk that stops as
    soon as every socket's owner is known: what `ss -tanp` reads, without psutil's import and per-socket
    objects."""
    from audit_agent.collect.sockets import read_own_tables
    sockets, unreadable = read_own_tables(proc_root)
    if unreadable and not sockets:
        return [], coverage("network", CoverageStatus.ERROR,
                            because("socket_tables_unreadable", tables=", ".join(unreadable), path=f"{proc_root}/net"))
    if facts is not None and not unreadable:
        facts.sockets = sockets
    remote = [sock for sock in sockets if sock.has_remote]
    owners = known_owners(proc_root, {sock.inode for sock in remote if sock.inode}, facts)
    connections = [Connection(pid=owners.get(sock.inode) if sock.inode else None, protocol=sock.protocol,
                              local_address=sock.local_address, local_port=sock.local_port,
                              remote_address=sock.remote_address, remote_port=sock.remote_port, state=sock.state)
                   for sock in remote]
    return connections, connections_coverage(connections)


def known_owners(proc_root: str, wanted: set[int], facts: ProcFacts | None) -> dict[int, int]:
    """{socket inode: pid}: from the shared walk first, a live walk for what it did not see."""
    if facts is None:
        return socket_owners(proc_root, wanted)
    owners = {inode: facts.owners[inode] for inode in wanted if inode in facts.owners}
    if len(owners) < len(wanted):
        owners.update(socket_owners(proc_root, wanted - owners.keys()))
    return owners


def socket_owners(proc_root: str, wanted: set[int]) -> dict[int, int]:
    """{socket inode: pid} for the wanted inodes, from /proc/PID/fd links; the walk ends once all are found
    (a socket two processes share goes to the first one listed, as psutil does)."""
    owners: dict[int, int] = {}
    if not wanted:
        return owners
    root = os.fsencode(proc_root) + b"/"
    readlink, listdir = os.readlink, os.listdir
    for entry in listdir(root):
        if not entry.isdigit():
            continue
        fd_dir = root + entry + b"/fd/"
        try:
            fds = listdir(fd_dir)
        except OSError:             # denied (another user's process) or gone: its sockets stay ownerless
            continue
        pid = int(entry)
        for fd in fds:
            try:
                target = readlink(fd_dir + fd)
            except OSError:
                continue
            if target.startswith(b"socket:["):
                inode = int(target[8:-1])
                if inode in wanted and inode not in owners:
                    owners[inode] = pid
                    if len(owners) == len(wanted):
                        return owners
    return owners


def psutil_connections() -> tuple[list[Connection], Coverage]:
    """psutil's reading: other systems, and /proc trees that are not a live procfs."""
    import psutil
    try:
        raw = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return [], coverage("network", CoverageStatus.SKIPPED, because("sockets_denied"))
    except (OSError, psutil.Error) as exc:
        return [], coverage("network", CoverageStatus.ERROR, because("sockets_failed", error=str(exc)))
    connections = [Connection(pid=conn.pid, protocol=PROTOCOLS.get((int(conn.family), int(conn.type)), "other"),
                              local_address=conn.laddr.ip if conn.laddr else "",
                              local_port=conn.laddr.port if conn.laddr else 0,
                              remote_address=conn.raddr.ip, remote_port=conn.raddr.port,
                              state=conn.status if conn.status != psutil.CONN_NONE else "")
                   for conn in raw if conn.raddr]
    return connections, connections_coverage(connections)


def connections_coverage(connections: list[Connection]) -> Coverage:
    unowned = sum(1 for conn in connections if conn.pid is None and conn.state not in ORPHAN_STATES)
    if unowned:
        return coverage("network", CoverageStatus.PARTIAL,
                        because("connections_unowned", n=unowned, total=len(connections)),
                        inspected=len(connections) - unowned, denied=unowned)
    return coverage("network", CoverageStatus.OK, inspected=len(connections))
