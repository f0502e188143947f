"""Connections in every network namespace, owners that cannot be seen, and how long each connection has lived.

The process-and-connection reader (network.py) sees the agent's own network
namespace only. A miner started with `unshare -n` or `ip netns exec`, or in a
container, talks to its pool from a namespace of its own; this step finds every
namespace that a process is in (/proc/PID/ns/net, the namespace's inode),
reads each one's socket tables once through one of its processes
(/proc/PID/net/*, sockets.py) and its owners from its processes' fds. A socket
that none of them holds is looked for in every other process (a process may
open a socket inside a namespace and then switch back out of it).

Age: the established TCP sockets of every namespace are sampled when the
window starts (SocketSample); a connection whose socket (same namespace, same
inode) is still there at the end has lived at least the window (held_seconds).

Owners that cannot be seen: an established, held connection whose socket no
process holds, although the agent could read every process's fds (root), is
marked owner_unseen. Before that, the processes the stealth step found hidden
are searched (their fds read by system call, past a preload hider), so a
hidden miner's pool connection is tied to it rather than left ownerless.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from audit_agent.collect import linux_only, rawsys
from audit_agent.collect.sockets import TABLES, TCP_TABLES, RawSocket, find_owners, read_tables
from audit_agent.model import Connection, Coverage, CoverageStatus, Snapshot

CHECK = "network-namespaces"
MAX_NAMESPACES = 1024
MAX_TABLE_READ_TRIES = 4        # members tried per namespace before its tables count as unreadable


@dataclass
class SocketSample:
    """Established TCP sockets, as (namespace, inode), when the window started."""
    inodes: set[tuple[str, int]] = field(default_factory=set)
    taken: bool = False


def own_namespace(proc_root: str) -> str:
    try:
        return rawsys.readlink_any(os.path.join(proc_root, "self/ns/net"))
    except OSError:
        return ""


def all_pids(proc_root: str) -> list[int]:
    """Every PID in the kernel's /proc listing (system calls: a readdir hook hides nothing here)."""
    try:
        return sorted(int(name) for name in rawsys.list_any(proc_root) if name.isdigit())
    except OSError:
        return []


def namespace_members(proc_root: str, pids: list[int]) -> dict[str, list[int]]:
    """{"net:[INODE]": [pid, ...]} for every process whose namespace link can be read."""
    members: dict[str, list[int]] = {}
    for pid in pids:
        try:
            members.setdefault(rawsys.readlink_any(os.path.join(proc_root, str(pid), "ns/net")), []).append(pid)
        except OSError:
            continue
    return members


def namespace_sockets(proc_root: str, namespace: str, own: str, members: list[int],
                      tables: tuple[str, ...] = TABLES) -> list[RawSocket] | None:
    """The namespace's sockets through its first member whose tables can be read; None when none can."""
    if namespace == own:
        sockets, unreadable = read_tables(os.path.join(proc_root, "self/net"), tables)
        return None if unreadable else sockets
    for pid in members[:MAX_TABLE_READ_TRIES]:
        sockets, unreadable = read_tables(os.path.join(proc_root, str(pid), "net"), tables)
        if not unreadable:
            return sockets
    return None


def sample_sockets(proc_root: str = "/proc") -> SocketSample:
    """The window-start sample; an empty one (not taken) when /proc cannot be read."""
    if linux_only(CHECK):
        return SocketSample()
    own = own_namespace(proc_root)
    members = namespace_members(proc_root, all_pids(proc_root))
    members.setdefault(own, [])
    sample = SocketSample(taken=bool(own))
    for namespace in list(members)[:MAX_NAMESPACES]:
        for sock in namespace_sockets(proc_root, namespace, own, members[namespace], TCP_TABLES) or []:
            if sock.state == "ESTABLISHED" and sock.inode:
                sample.inodes.add((namespace, sock.inode))
    return sample


def collect_namespaces(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """reading the connections of every network namespace"""
    not_linux = linux_only(CHECK)
    if not_linux:
        return [not_linux]
    proc_root = getattr(options, "proc_root", "/proc")
    sample: SocketSample = getattr(options, "socket_sample", None) or SocketSample()
    own = own_namespace(proc_root)
    pids = sorted(set(all_pids(proc_root)) | {p.pid for p in snapshot.processes})
    members = namespace_members(proc_root, pids)
    root = os.geteuid() == 0
    held = snapshot.window_seconds if sample.taken else None
    read, unreadable, denied = 0, 0, 0
    for namespace in [ns for ns in members if ns != own][:MAX_NAMESPACES]:
        sockets = namespace_sockets(proc_root, namespace, own, members[namespace])
        if sockets is None:
            unreadable += 1
            continue
        read += 1
        remote = [s for s in sockets if s.has_remote]
        owners, missed = owners_of(proc_root, remote, members[namespace], pids)
        denied += missed
        for sock in remote:
            lived = held if (namespace, sock.inode) in sample.inodes else None
            pid = owners.get(sock.inode)
            snapshot.connections.append(Connection(
                pid=pid, protocol=sock.protocol, local_address=sock.local_address, local_port=sock.local_port,
                remote_address=sock.remote_address, remote_port=sock.remote_port, state=sock.state,
                namespace=namespace, held_seconds=lived,
                owner_unseen=unseen(sock, pid, lived, root and not missed)))
    age_and_owners_here(snapshot, proc_root, own, sample, held, root)
    return [namespaces_coverage(read, unreadable, denied)]


def owners_of(proc_root: str, remote: list[RawSocket], members: list[int], pids: list[int]) -> tuple[dict[int, int], int]:
    """{inode: pid}: the namespace's own processes first, every other process only for what they left."""
    wanted = {s.inode for s in remote if s.inode}
    owners, denied = find_owners(proc_root, members, wanted)
    if wanted - set(owners):
        inside = set(members)
        more, more_denied = find_owners(proc_root, [p for p in pids if p not in inside], wanted - set(owners))
        owners.update(more)
        denied += more_denied
    return owners, denied


def unseen(sock: RawSocket, pid: int | None, lived: float | None, could_read_all: bool) -> bool:
    """Established for the whole window, a real socket file (inode), and nobody holds it though we could see."""
    return pid is None and bool(lived) and bool(sock.inode) and sock.state == "ESTABLISHED" and could_read_all


def age_and_owners_here(snapshot: Snapshot, proc_root: str, own: str, sample: SocketSample, held: float | None,
                        root: bool) -> None:
    """The agent's own namespace (connections read by network.py): age, and owners among the hidden processes.

    Its TCP tables are read again only when a connection needs it: one without an owner, or one on a port
    whose age a check uses (the HTTPS-like ports of the long-lived TLS check, or a pool port)."""
    if not own or not any(needs_age_or_owner(conn) for conn in snapshot.connections if not conn.namespace):
        return
    sockets = namespace_sockets(proc_root, own, own, [], TCP_TABLES)
    if not sockets:
        return
    by_key = {s.key: s for s in sockets}
    ownerless: list[tuple[Connection, RawSocket]] = []
    for conn in snapshot.connections:
        if conn.namespace:
            continue
        sock = by_key.get((conn.protocol, conn.local_address, conn.local_port, conn.remote_address,
                           conn.remote_port))
        if sock is None:
            continue
        if sock.inode and (own, sock.inode) in sample.inodes:
            conn.held_seconds = held
        if conn.pid is None and sock.inode and sock.state == "ESTABLISHED":
            ownerless.append((conn, sock))
    if not ownerless:
        return
    hidden = [h.pid for h in snapshot.stealth.hidden_pids]
    owners, denied = find_owners(proc_root, hidden, {sock.inode for _, sock in ownerless})
    for conn, sock in ownerless:
        conn.pid = owners.get(sock.inode)
        conn.owner_unseen = unseen(sock, conn.pid, conn.held_seconds, root and not denied)


def needs_age_or_owner(conn: Connection) -> bool:
    if not conn.protocol.startswith("tcp") or conn.state != "ESTABLISHED":
        return False
    return conn.pid is None or conn.remote_port < conn.local_port     # ownerless, or an outbound session


def namespaces_coverage(read: int, unreadable: int, denied: int) -> Coverage:
    if unreadable or denied:
        why = []
        if unreadable:
            why.append(f"{unreadable} network namespace(s) whose socket tables could not be read")
        if denied:
            why.append(f"{denied} process(es) whose open files could not be read (socket owners unknown)")
        return Coverage(CHECK, CoverageStatus.PARTIAL, "; ".join(why), inspected=read, denied=unreadable + denied)
    return Coverage(CHECK, CoverageStatus.OK, f"{read} other network namespace(s) read", inspected=read)
