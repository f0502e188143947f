"""Connections in every network namespace, owners that cannot be seen, and how long each connection has lived.

The process-and-connection reader (network.py) sees the agent's own network
namespace only. A miner started with `unshare -n` or `ip netns exec`, or in a
container, talks to its pool from a namespace of its own; this step finds every
namespace that a process is in (/proc/PID/ns/net, the namespace's inode),
reads each one's socket tables through one of its processes (/proc/PID/net/*,
sockets.py) and its owners from its processes' fds. A socket that none of them
holds is looked for in every other process (a process may open a socket inside
a namespace and then switch back out of it).

Each TCP table read walks the kernel's whole connection hash table (all
namespaces share it), so every namespace is read once, when the window starts
(SocketSample); what is seen then is judged at the end:

* age: a socket still held by a process at the end (its fd still names the
  inode) has lived the whole window (held_seconds); in the agent's own
  namespace a connection that network.py lists at the end with the same
  addresses and ports as an established socket of the sample is the same one;
* owners that cannot be seen: an established socket that no process holds at
  the end, although every process's fds could be read (root), is looked for
  once more in its namespace's table; still there, it is marked owner_unseen.
  Before that, the processes the stealth step found hidden are searched (their
  fds read by system call, past a preload hider), so a hidden miner's pool
  connection is tied to it rather than left ownerless.
A namespace that appears during the window is read at the end (its connections
have no age). Connections opened inside another namespace during the window are
seen by the next scan.
"""
from __future__ import annotations

import os
from typing import Any

import msgspec

from audit_agent.collect import linux_only, rawsys
from audit_agent.collect.sockets import TABLES, TCP_TABLES, RawSocket, find_owners, read_own_tables, read_tables
from audit_agent.collect.coverage import because, coverage
from audit_agent.model import Connection, Coverage, CoverageStatus, Snapshot

CHECK = "network-namespaces"
MAX_NAMESPACES = 1024
MAX_TABLE_READ_TRIES = 4        # members tried per namespace before its tables count as unreadable


class SocketSample(msgspec.Struct):
    """What the window-start read saw: each namespace's sockets (None: its tables could not be read)."""
    own: str = ""
    sockets: dict[str, list[RawSocket] | None] = msgspec.field(default_factory=dict)
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


def namespace_members(proc_root: str, pids: list[int], read: dict[int, str | None] | None = None) -> dict[str, list[int]]:
    """{"net:[INODE]": [pid, ...]} for every process whose namespace link can be read; `read`: the links
    the process reader read already (proc_facts.netns), which are not asked again."""
    root = os.fsencode(os.path.join(proc_root, ""))
    known = read or {}
    asked = [pid for pid in pids if pid not in known]
    # One system call a process, nothing else: each process is asked, since any one may be in a namespace
    # of its own (the link's target is what the kernel says, one string for each namespace).
    links = dict(zip(asked, rawsys.readlink_each_any([b"%s%d/ns/net" % (root, pid) for pid in asked])))
    members: dict[str, list[int]] = {}
    for pid in pids:
        namespace = known[pid] if pid in known else links[pid]
        if namespace is not None:
            members.setdefault(namespace, []).append(pid)
    return members


def namespace_sockets(proc_root: str, namespace: str, own: str, members: list[int],
                      tables: tuple[str, ...] = TABLES, established_only: bool = False) -> list[RawSocket] | None:
    """The namespace's sockets through its first member whose tables can be read; None when none can."""
    if namespace == own:
        sockets, unreadable = read_own_tables(proc_root, tables, established_only, os.path.join(proc_root, "self/net"))
        return None if unreadable else sockets
    for pid in members[:MAX_TABLE_READ_TRIES]:
        sockets, unreadable = read_tables(os.path.join(proc_root, str(pid), "net"), tables, established_only)
        if not unreadable:
            return sockets
    return None


def sample_sockets(proc_root: str = "/proc") -> SocketSample:
    """The window-start read: every other namespace's tables, and the TCP tables of the agent's own."""
    if linux_only(CHECK):
        return SocketSample()
    own = own_namespace(proc_root)
    if not own:
        return SocketSample()
    members = namespace_members(proc_root, all_pids(proc_root))
    sample = SocketSample(own=own, taken=True)
    sample.sockets[own] = namespace_sockets(proc_root, own, own, [], TCP_TABLES, established_only=True)
    for namespace in [ns for ns in members if ns != own][:MAX_NAMESPACES]:
        sample.sockets[namespace] = namespace_sockets(proc_root, namespace, own, members[namespace])
    return sample


def collect_namespaces(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """reading the connections of every network namespace"""
    not_linux = linux_only(CHECK)
    if not_linux:
        return [not_linux]
    proc_root = getattr(options, "proc_root", "/proc")
    sample: SocketSample = getattr(options, "socket_sample", None) or SocketSample()
    own = sample.own or own_namespace(proc_root)
    pids = sorted(set(all_pids(proc_root)) | {p.pid for p in snapshot.processes})
    facts = getattr(options, "proc_facts", None)
    members = namespace_members(proc_root, pids, facts.netns if facts is not None else None)
    could_read_all = os.geteuid() == 0
    window = snapshot.window_seconds
    read, unreadable, denied = 0, 0, 0
    for namespace in [ns for ns in {*sample.sockets, *members} if ns != own][:MAX_NAMESPACES]:
        sampled = namespace in sample.sockets
        sockets = sample.sockets[namespace] if sampled else \
            namespace_sockets(proc_root, namespace, own, members.get(namespace, []))
        if sockets is None:
            unreadable += 1
            continue
        read += 1
        remote = [s for s in sockets if s.has_remote]
        owners, missed = owners_of(proc_root, remote, members.get(namespace, []), pids)
        denied += missed
        still = still_there(proc_root, namespace, own, members.get(namespace, []), remote, owners) if sampled else {}
        for sock in remote:
            pid = owners.get(sock.inode)
            if sampled and pid is None and sock.inode not in still:
                continue            # closed during the window
            lived = window if sampled and (pid is not None or sock.inode in still) and sock.inode else None
            snapshot.connections.append(Connection(
                pid=pid, protocol=sock.protocol, local_address=sock.local_address, local_port=sock.local_port,
                remote_address=sock.remote_address, remote_port=sock.remote_port, state=sock.state,
                namespace=namespace, held_seconds=lived,
                owner_unseen=unseen(sock, pid, lived, could_read_all and not missed)))
    age_and_owners_here(snapshot, proc_root, sample, window, could_read_all)
    return [namespaces_coverage(read, unreadable, denied)]


def owners_of(proc_root: str, remote: list[RawSocket], members: list[int],
              pids: list[int]) -> tuple[dict[int, int], int]:
    """{inode: pid}: the namespace's own processes first, every other process only for what they left."""
    wanted = {s.inode for s in remote if s.inode}
    owners, denied = find_owners(proc_root, members, wanted)
    if wanted - set(owners):
        inside = set(members)
        more, more_denied = find_owners(proc_root, [p for p in pids if p not in inside], wanted - set(owners))
        owners.update(more)
        denied += more_denied
    return owners, denied


def still_there(proc_root: str, namespace: str, own: str, members: list[int], remote: list[RawSocket],
                owners: dict[int, int]) -> set[int]:
    """Inodes of the sampled established sockets nobody holds that are still established now (one more read
    of the namespace's TCP tables, only when there are such sockets)."""
    orphans = {s.inode for s in remote if s.inode and s.inode not in owners and s.state == "ESTABLISHED"}
    if not orphans:
        return set()
    now = namespace_sockets(proc_root, namespace, own, members, TCP_TABLES, established_only=True) or []
    return {s.inode for s in now if s.inode in orphans and s.state == "ESTABLISHED"}


def unseen(sock: RawSocket, pid: int | None, lived: float | None, could_read_all: bool) -> bool:
    """Established for the whole window, a real socket file (inode), and nobody holds it though we could see."""
    return pid is None and bool(lived) and bool(sock.inode) and sock.state == "ESTABLISHED" and could_read_all


def age_and_owners_here(snapshot: Snapshot, proc_root: str, sample: SocketSample, window: float,
                        could_read_all: bool) -> None:
    """The agent's own namespace (connections network.py read at the end): age from the sample's addresses,
    and owners among the hidden processes for those nobody listed."""
    sockets = sample.sockets.get(sample.own) or []
    by_key = {s.key: s for s in sockets if s.state == "ESTABLISHED"}
    ownerless: list[tuple[Connection, RawSocket]] = []
    for conn in snapshot.connections:
        sock = None if conn.namespace or conn.state != "ESTABLISHED" else by_key.get(
            (conn.protocol, conn.local_address, conn.local_port, conn.remote_address, conn.remote_port))
        if sock is None:
            continue
        conn.held_seconds = window          # the same four-tuple, established at both looks: the same connection
        if conn.pid is None and sock.inode:
            ownerless.append((conn, sock))
    if not ownerless:
        return
    hidden = [h.pid for h in snapshot.stealth.hidden_pids]
    owners, denied = find_owners(proc_root, hidden, {sock.inode for _, sock in ownerless})
    for conn, sock in ownerless:
        conn.pid = owners.get(sock.inode)
        conn.owner_unseen = unseen(sock, conn.pid, conn.held_seconds, could_read_all and not denied)


def namespaces_coverage(read: int, unreadable: int, denied: int) -> Coverage:
    if unreadable or denied:
        why = []
        if unreadable:
            why.append(because("netns_unreadable", n=unreadable))
        if denied:
            why.append(because("netns_owners_denied", n=denied))
        return coverage(CHECK, CoverageStatus.PARTIAL, *why, inspected=read, denied=unreadable + denied)
    return coverage(CHECK, CoverageStatus.OK, because("netns_read", n=read), inspected=read)
