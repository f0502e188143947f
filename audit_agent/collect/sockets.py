"""Socket tables as the kernel prints them (/proc/PID/net/{tcp,tcp6,udp,udp6}) and the processes that own them.

/proc/PID/net shows the tables of PID's network namespace, so one read through
any process inside a namespace gives that namespace's sockets, whichever
namespace the agent runs in. Owners come from /proc/PID/fd: a link reading
`socket:[INODE]` is that process holding that socket. Reads go through
rawsys (system calls), so a preload hider cannot filter the tables or the fd
links of the process it hides.

The agent's own namespace is read from the kernel's sock_diag netlink dump instead where the C half is
there (read_own_tables: the same sockets in binary, what ss reads), with the tables as its fallback.

Format (net/ipv4/tcp_ipv4.c get_tcp4_sock, net/ipv6/tcp_ipv6.c, net/ipv4/udp.c):
`sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`, addresses are
the in-kernel 32-bit words printed in host byte order as hex, ports big hex.
"""
from __future__ import annotations

import os
import re
import socket
import struct
import sys
from functools import lru_cache
from typing import NamedTuple

from audit_agent.collect import native, rawsys

TABLES = ("tcp", "tcp6", "udp", "udp6")
TCP_TABLES = ("tcp", "tcp6")
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}
MAX_TABLE_BYTES = 64 * 1024 * 1024      # ~150 bytes a socket: some 400,000 sockets per table
MAX_FDS_PER_PROCESS = 1 << 20
SEQ_EOF_BELOW = 4096 - 512       # a table line is under 200 bytes: a shorter read than this is the end
WORD = "<I" if sys.byteorder == "little" else ">I"


class RawSocket(NamedTuple):     # tens of thousands on a busy host: a tuple is the cheapest to build
    protocol: str           # tcp, tcp6, udp, udp6
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: str              # TCP state name; "" for UDP
    uid: int
    inode: int              # 0: no file (a connection not yet accepted, or the kernel's own)

    @property
    def has_remote(self) -> bool:
        return self.remote_port != 0 and self.state != "LISTEN"

    @property
    def key(self) -> tuple[str, str, int, str, int]:
        return self.protocol, self.local_address, self.local_port, self.remote_address, self.remote_port


def decode_address(text: str) -> tuple[str, int]:
    """'0100007F:0CEA' -> ('127.0.0.1', 3306); IPv6 as inet_ntop writes it (as psutil shows it)."""
    host, _, port = text.partition(":")
    return decode_host(host), int(port, 16)


@lru_cache(maxsize=4096)
def decode_host(host: str) -> str:
    """Cached: a host's tables repeat a few addresses (its own, loopback) thousands of times."""
    raw = b"".join(struct.pack(WORD, int(host[i:i + 8], 16)) for i in range(0, len(host), 8))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    raise ValueError(f"not an address: {host!r}")


# One table line: `sl: local:port remote:port st tx:rx tr:when retrnsmt uid timeout inode ...`; what a line
# that does not have this shape holds is not a socket. Every socket line follows a newline (the header's
# first): anchored on it, the regex engine skips to the next line at C speed.
TABLE_LINE = re.compile(rb"\n *\d+: ([0-9A-Fa-f]+):([0-9A-Fa-f]+) ([0-9A-Fa-f]+):([0-9A-Fa-f]+) ([0-9A-Fa-f]+) "
                        rb"[^ \n]+ [^ \n]+ [^ \n]+ +(\d+) +[^ \n]+ +(\d+)")
STATE_NAMES = {f"{code:02X}".encode(): name for code, name in TCP_STATES.items()}
STATE_BY_NUMBER = tuple(TCP_STATES.get(code, "") for code in range(max(TCP_STATES) + 1))


def parse_table(text: str | bytes, protocol: str, established_only: bool = False) -> list[RawSocket]:
    """Every well-formed line of one table; malformed lines are skipped (the header among them).

    One regex match per line, taken one at a time: a host with 100,000 sockets has a 15 MB table, which a
    decoded copy and a list of its lines would hold three times over."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    udp = protocol.startswith("udp")
    if native.NATIVE is not None:       # the same lines and values, ~10x cheaper a socket
        found_in_c: list[RawSocket] = native.NATIVE.parse_table(data, RawSocket, protocol, udp, established_only,
                                                                STATE_BY_NUMBER)
        return found_in_c
    host = decode_host_bytes
    found: list[RawSocket] = []
    append = found.append
    for match in TABLE_LINE.finditer(data):
        local, local_port, remote, remote_port, state, uid, inode = match.groups()
        if established_only and state != b"01":
            continue
        try:
            append(RawSocket(protocol, host(local), int(local_port, 16), host(remote), int(remote_port, 16),
                             "" if udp else STATE_NAMES.get(state.upper()) or state_name(state),
                             int(uid), int(inode)))
        except (ValueError, OSError):
            continue
    return found


def state_name(code: bytes) -> str:
    """A state the kernel may add later: its name if known by number, else the hex code as printed."""
    return TCP_STATES.get(int(code, 16), code.decode("ascii"))


@lru_cache(maxsize=4096)
def decode_host_bytes(host: bytes) -> str:
    return decode_host(host.decode("ascii"))


def read_tables(net_dir: str, tables: tuple[str, ...] = TABLES,
                established_only: bool = False) -> tuple[list[RawSocket], list[str]]:
    """All sockets of the namespace behind `net_dir` (/proc/PID/net), and the tables that could not be read.

    A missing tcp6/udp6 (IPv6 disabled) is not a failure. Cost: the kernel walks the whole established
    hash table for each TCP table (measured ~5.5 ms of CPU per read on the 23 GiB dev box, almost empty
    tables; it grows with memory, not with sockets); the UDP tables are ~40x cheaper."""
    sockets: list[RawSocket] = []
    unreadable: list[str] = []
    for table in tables:
        try:
            text = rawsys.read_any(os.path.join(net_dir, table), MAX_TABLE_BYTES, eof_below=SEQ_EOF_BELOW)
        except FileNotFoundError:
            if table in ("tcp", "udp"):
                unreadable.append(table)
            continue
        except OSError:
            unreadable.append(table)
            continue
        sockets.extend(parse_table(text, table, established_only))
    return sockets, unreadable


DIAG_KINDS = {"tcp": (socket.AF_INET, socket.IPPROTO_TCP), "tcp6": (socket.AF_INET6, socket.IPPROTO_TCP),
              "udp": (socket.AF_INET, socket.IPPROTO_UDP), "udp6": (socket.AF_INET6, socket.IPPROTO_UDP)}


def read_own_tables(proc_root: str, tables: tuple[str, ...] = TABLES, established_only: bool = False,
                    net_dir: str = "") -> tuple[list[RawSocket], list[str]]:
    """The sockets of the agent's own network namespace, as read_tables() gives those of `net_dir` (PROC/net).

    On a live /proc with the C half, from the kernel's sock_diag dump (what ss reads) through the raw
    syscall(2) wrapper: the same sockets in binary, where each read of /proc/net/tcp formats one page of
    text and walks the hash table to where the last one stopped (~50 ms of kernel time at 10,000 sockets
    against ~20). A table whose dump fails (IPv6 off, netlink refused in a sandbox) is read from its file."""
    from audit_agent.collect.processes import is_live_procfs
    net_dir = net_dir or os.path.join(proc_root, "net")
    address = rawsys.syscall_address() if native.NATIVE is not None and is_live_procfs(proc_root) else 0
    if not address:
        return read_tables(net_dir, tables, established_only)
    found: list[RawSocket] = []
    unreadable: list[str] = []
    for table in tables:
        family, protocol = DIAG_KINDS[table]
        try:
            found.extend(native.NATIVE.diag_table(address, family, protocol, RawSocket, table, table.startswith("udp"),
                                                  established_only, STATE_BY_NUMBER))
        except OSError:
            more, missing = read_tables(net_dir, (table,), established_only)
            found.extend(more)
            unreadable.extend(missing)
    return found, unreadable


def socket_inodes(proc_root: str, pid: int) -> set[int]:
    """Inodes of the sockets a process holds open (its fd links); raises OSError when its fds cannot be listed."""
    fd_dir = os.path.join(proc_root, str(pid), "fd")
    held = set()
    for name in rawsys.list_any(fd_dir, MAX_FDS_PER_PROCESS):
        try:
            target = rawsys.readlink_any(os.path.join(fd_dir, name))
        except OSError:
            continue        # closed since the listing
        if target.startswith("socket:["):
            held.add(int(target[8:-1]))
    return held


def find_owners(proc_root: str, pids: list[int], wanted: set[int]) -> tuple[dict[int, int], int]:
    """{inode: pid} for the wanted socket inodes among these processes' fds (stops once all are found), and
    how many processes' fds could not be read."""
    owners: dict[int, int] = {}
    denied = 0
    for pid in pids:
        if len(owners) >= len(wanted):
            break
        try:
            held = socket_inodes(proc_root, pid)
        except PermissionError:
            denied += 1
            continue
        except OSError:
            continue        # exited
        for inode in held & wanted:
            owners.setdefault(inode, pid)
    return owners, denied
