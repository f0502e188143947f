"""Socket tables and owners on fake /proc trees (every namespace, ownerless sockets, hidden owners, age), and the
network signals: relayed mining, connections nobody holds, long-lived TLS sessions of unknown programs."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from audit_agent.collect import netns, sockets
from audit_agent.model import Connection, CoverageStatus, HiddenPid, ProcessInfo, Snapshot
from tests.factories import proc, scan, snapshot
from tests.test_stealth import write

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc formats")
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def tcp_line(n: int, local: str, remote: str, state: str, inode: int, uid: int = 1000) -> str:
    return f"   {n}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000  {uid}        0 {inode} 1 0 20 4\n"


def test_tables_decode_ipv4_ipv6_states_and_skip_garbage():
    text = (HEADER + tcp_line(0, "0100007F:A0B1", "0100007F:0D05", "01", 777)
            + tcp_line(1, "00000000:0016", "00000000:0000", "0A", 12) + "   2: garbage line\n"
            + tcp_line(3, "0100007F:ZZZZ", "0100007F:0D05", "01", 5))
    parsed = sockets.parse_table(text, "tcp")
    assert [(s.local_address, s.local_port, s.remote_address, s.remote_port, s.state, s.inode) for s in parsed] == [
        ("127.0.0.1", 0xA0B1, "127.0.0.1", 3333, "ESTABLISHED", 777), ("0.0.0.0", 22, "0.0.0.0", 0, "LISTEN", 12)]
    assert parsed[0].has_remote and not parsed[1].has_remote and parsed[0].uid == 1000
    six = sockets.parse_table(HEADER + tcp_line(0, "00000000000000000000000001000000:1F90",
                                                "0000000000000000FFFF00000100007F:01BB", "01", 9), "tcp6")
    assert (six[0].local_address, six[0].remote_address, six[0].remote_port) == ("::1", "::ffff:127.0.0.1", 443)
    udp = sockets.parse_table(HEADER + tcp_line(0, "0100007F:9C40", "08080808:0035", "01", 10), "udp")
    assert udp[0].state == "" and udp[0].remote_port == 53


def test_tables_keep_a_state_not_yet_named_and_a_last_line_without_newline_and_skip_a_cut_one():
    whole = tcp_line(0, "0100007F:A0B1", "0100007F:0D05", "0D", 42).rstrip("\n")
    cut = tcp_line(1, "0100007F:A0B2", "0100007F:0D05", "01", 43)[:40]
    parsed = sockets.parse_table((HEADER + cut + "\n" + whole).encode(), "tcp")
    assert [(s.local_port, s.state, s.inode) for s in parsed] == [(0xA0B1, "0D", 42)]
    assert sockets.parse_table(HEADER, "tcp") == [] and sockets.parse_table("", "tcp") == []


# ------------------------------------------------------------------ a fake /proc with namespaces


def link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def fake_proc(tmp_path: Path) -> Path:
    """Host namespace net:[1] (the agent, pid 1, pid 50 hidden); namespace net:[2] with a miner (pid 200),
    its pool (pid 201), a socket of net:[2] held by pid 300 from the host namespace, one nobody holds, one
    that closes during the window."""
    root = tmp_path / "proc"
    link(root / "self/ns/net", "net:[1]")
    write(root / "self/net/tcp", HEADER + tcp_line(0, "0500000A:9C41", "09646333:0D05", "01", 5000))
    write(root / "self/net/tcp6", HEADER)
    for pid, ns in ((1, 1), (50, 1), (200, 2), (201, 2), (300, 1)):
        link(root / str(pid) / "ns/net", f"net:[{ns}]")
    write(root / "200/net/tcp", HEADER + NS2_KEPT + tcp_line(4, "0100007F:9C46", "0100007F:0D05", "01", 104))
    for table in ("tcp6", "udp", "udp6"):
        write(root / "200/net" / table, HEADER)
    link(root / "200/fd/3", "socket:[100]")
    link(root / "200/fd/4", "/dev/null")
    link(root / "201/fd/5", "socket:[101]")
    link(root / "300/fd/7", "socket:[102]")
    link(root / "50/fd/9", "socket:[5000]")
    return root


NS2_KEPT = (tcp_line(0, "0100007F:9C40", "0100007F:0D05", "01", 100)       # miner -> pool, pid 200
            + tcp_line(1, "0100007F:0D05", "0100007F:9C40", "01", 101)     # pool's side, pid 201
            + tcp_line(2, "0100007F:9C42", "0100007F:0D05", "01", 102)     # held by pid 300 (host namespace)
            + tcp_line(3, "0100007F:9C44", "0100007F:0D05", "01", 103)     # nobody holds it
            + tcp_line(5, "00000000:0D05", "00000000:0000", "0A", 105))    # listening: no remote


def during_the_window(root: Path) -> None:
    """The socket nobody held closes; namespace net:[3] appears with pid 400 and one connection."""
    write(root / "200/net/tcp", HEADER + NS2_KEPT)
    link(root / "400/ns/net", "net:[3]")
    write(root / "400/net/tcp", HEADER + tcp_line(0, "0100007F:9C48", "0100007F:01BB", "01", 400))
    for table in ("tcp6", "udp", "udp6"):
        write(root / "400/net" / table, HEADER)
    link(root / "400/fd/3", "socket:[400]")


def test_every_namespace_is_read_and_owners_found_wherever_they_are(tmp_path):
    root = fake_proc(tmp_path)
    sample = netns.sample_sockets(str(root))
    during_the_window(root)
    host_conn = Connection(pid=None, protocol="tcp", local_address="10.0.0.5", local_port=40001,
                           remote_address="51.99.100.9", remote_port=3333, state="ESTABLISHED")
    snap = Snapshot(window_seconds=5.0, processes=[ProcessInfo(pid=1, name="systemd")], connections=[host_conn])
    snap.stealth.hidden_pids.append(HiddenPid(pid=50, name="hidden"))
    coverage = netns.collect_namespaces(snap, SimpleNamespace(proc_root=str(root), socket_sample=sample))
    assert [(c.check, c.status, c.inspected) for c in coverage] == [("network-namespaces", CoverageStatus.OK, 2)]
    inside = {c.local_port: c for c in snap.connections if c.namespace == "net:[2]"}
    assert set(inside) == {0x9C40, 3333, 0x9C42, 0x9C44}         # no listener; the closed one is gone
    assert inside[0x9C40].pid == 200 and inside[3333].pid == 201
    assert inside[0x9C42].pid == 300, "a process outside the namespace can hold one of its sockets"
    assert inside[0x9C40].held_seconds == 5.0
    assert inside[0x9C44].pid is None and inside[0x9C44].owner_unseen == (os.geteuid() == 0)
    [new] = [c for c in snap.connections if c.namespace == "net:[3]"]
    assert new.pid == 400 and new.held_seconds is None, "a namespace born in the window is read, without age"
    assert host_conn.pid == 50, "the hidden process owns the host-namespace connection nobody listed"
    assert host_conn.held_seconds == 5.0 and not host_conn.owner_unseen


def test_namespace_whose_tables_cannot_be_read_is_partial_coverage(tmp_path):
    root = fake_proc(tmp_path)
    (root / "200/net/tcp").unlink()
    (root / "201/net").mkdir(parents=True)
    sample = netns.sample_sockets(str(root))
    snap = Snapshot(window_seconds=5.0)
    [coverage] = netns.collect_namespaces(snap, SimpleNamespace(proc_root=str(root), socket_sample=sample))
    assert coverage.status == CoverageStatus.PARTIAL and "could not be read" in coverage.reason
    assert not [c for c in snap.connections if c.namespace]


def test_no_sample_means_no_age_and_no_ownerless_judgement(tmp_path):
    root = fake_proc(tmp_path)
    snap = Snapshot(window_seconds=5.0)
    netns.collect_namespaces(snap, SimpleNamespace(proc_root=str(root), socket_sample=None))
    assert snap.connections and not any(c.held_seconds or c.owner_unseen for c in snap.connections)


def test_live_sample_sees_this_process_socket():
    import socket
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname())
        try:
            sample = netns.sample_sockets("/proc")
            inode = os.stat(f"/proc/self/fd/{client.fileno()}").st_ino
            assert sample.taken and inode in {sock.inode for sock in sample.sockets[sample.own] or []}
        finally:
            client.close()


def each_link(pids: list[int]) -> dict[str, list[int]]:
    """What namespace_members must say: every process's own link, read one by one."""
    expected: dict[str, list[int]] = {}
    for pid in pids:
        try:
            expected.setdefault(os.readlink(f"/proc/{pid}/ns/net"), []).append(pid)
        except OSError:
            continue
    return expected


def test_namespace_members_asks_every_process_even_copies_of_one_program(processes, monkeypatch):
    """One system call a process with one buffer gives what a readlink of each process gives: copies of one
    program share a namespace, one started with `unshare --net` (root) is in its own, a gone PID is nobody."""
    import shutil
    import subprocess
    import time
    pids = [processes.start(["sleep", "60"]).pid for _ in range(6)]
    alone = None
    if os.geteuid() == 0 and shutil.which("unshare"):
        alone = processes.start(["unshare", "--net", "sleep", "60"]).pid      # unshare execs sleep: same PID
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.readlink(f"/proc/{alone}/ns/net") == os.readlink("/proc/self/ns/net"):
            time.sleep(0.05)
        pids.append(alone)
    gone = subprocess.Popen(["true"])
    gone.wait()
    pids += [os.getpid(), gone.pid]
    members = netns.namespace_members("/proc", pids)
    assert members == each_link(pids)
    assert gone.pid not in {pid for found in members.values() for pid in found}
    if alone is not None and os.readlink(f"/proc/{alone}/ns/net") != os.readlink("/proc/self/ns/net"):
        assert members[os.readlink(f"/proc/{alone}/ns/net")] == [alone]
    monkeypatch.setattr(netns.rawsys, "available", lambda: False)      # the fallback (os.readlink) says the same
    assert netns.namespace_members("/proc", pids) == members
    monkeypatch.undo()

    # What the process reader read already (proc_facts.netns, the same links) is taken, the rest is asked.
    from audit_agent.collect.processes import FirstReading, read_processes
    from audit_agent.collect.proc_facts import ProcFacts
    facts = ProcFacts()
    read_processes(FirstReading(time.monotonic(), {}), "/proc", facts)
    assert facts.netns[os.getpid()] == os.readlink("/proc/self/ns/net")
    if alone is not None:
        assert facts.netns[alone] == os.readlink(f"/proc/{alone}/ns/net")
    asked: list[bytes] = []
    real = netns.rawsys.readlink_each_any
    monkeypatch.setattr(netns.rawsys, "readlink_each_any", lambda paths: asked.extend(paths) or real(paths))
    newcomer = processes.start(["sleep", "60"]).pid
    assert netns.namespace_members("/proc", [*pids, newcomer], facts.netns) == each_link([*pids, newcomer])
    assert asked == [f"/proc/{pid}/ns/net".encode() for pid in [*pids, newcomer] if pid not in facts.netns]
    assert f"/proc/{newcomer}/ns/net".encode() in asked


# ------------------------------------------------------------------ signals


def c(pid, local, lport, remote, rport, **extra) -> Connection:
    return Connection(pid=pid, protocol="tcp", local_address=local, local_port=lport, remote_address=remote,
                      remote_port=rport, state="ESTABLISHED", **extra)


def relay_snapshot(client_cpu: float, upstream_port: int = 3333, clients: int = 1):
    procs = [proc(20, "/usr/bin/microsocks -p 1080", cpu=1.0)]
    conns = [c(20, "10.0.0.5", 40999, "198.51.100.9", upstream_port)]
    for i in range(clients):
        pid = 100 + i
        procs.append(proc(pid, f"/opt/app/worker{i}", cpu=client_cpu if i == 0 else 1.0, allowed_cpus=1))
        conns += [c(pid, "127.0.0.1", 41000 + i, "127.0.0.1", 1080), c(20, "127.0.0.1", 1080, "127.0.0.1", 41000 + i)]
    return snapshot(procs, conns)


def by_pid(report, pid):
    return next((f for f in report.findings if f.subject.pid == pid and f.subject.kind == "process"), None)


def test_client_of_a_proxy_holding_a_pool_connection_gets_the_mining():
    report = scan(relay_snapshot(client_cpu=99.0))
    client = by_pid(report, 100)
    assert client is not None and "AA-NET-001" in client.rule_ids and client.severity.value == "high"
    assert any("proxy" in r and "198.51.100.9:3333" in r for r in client.reasons)
    proxy = by_pid(report, 20)
    assert proxy is None or "AA-NET-001" not in proxy.rule_ids
    idle = by_pid(scan(relay_snapshot(client_cpu=1.0)), 100)
    assert idle is not None and "AA-NET-001" in idle.rule_ids and idle.severity.rank < 3


def test_proxy_to_an_ordinary_port_or_many_idle_clients_names_nobody():
    # an ordinary service port (a database): nothing relayed to a pool or a TLS port (443 is judged in
    # test_e2e_network: a busy unknown client behind a proxy to a TLS port is flagged)
    ordinary = by_pid(scan(relay_snapshot(client_cpu=99.0, upstream_port=5432)), 100)
    assert ordinary is not None and "AA-NET-001" not in ordinary.rule_ids      # busy, but nothing relayed
    crowded = scan(relay_snapshot(client_cpu=99.0, clients=6))
    assert "AA-NET-001" in by_pid(crowded, 100).rule_ids                 # the busy one
    assert all(by_pid(crowded, pid) is None or "AA-NET-001" not in by_pid(crowded, pid).rule_ids
               for pid in range(101, 106))


def connection_findings(report):
    return [f for f in report.findings if f.subject.kind == "connection"]


def test_ownerless_connection_to_a_pool_port_is_high_kernel_clients_are_quiet():
    pool = c(None, "10.0.0.5", 40100, "198.51.100.9", 3333, held_seconds=5.0, owner_unseen=True)
    found = connection_findings(scan(snapshot([proc(1, "/sbin/init")], [pool])))
    assert len(found) == 1 and {"AA-NET-002", "AA-PORT-001"} <= set(found[0].rule_ids)
    assert found[0].severity.value == "high"
    nfs = c(None, "10.0.0.5", 901, "10.0.0.2", 2049, held_seconds=5.0, owner_unseen=True)
    assert connection_findings(scan(snapshot([proc(1, "/sbin/init")], [nfs]))) == []
    web = c(None, "10.0.0.5", 40200, "203.0.113.7", 443, held_seconds=5.0, owner_unseen=True)
    [finding] = connection_findings(scan(snapshot([proc(1, "/sbin/init")], [web])))
    assert finding.severity.value == "medium" and finding.rule_ids == ["AA-NET-002"]
    unjudged = c(None, "10.0.0.5", 40300, "198.51.100.9", 3333, held_seconds=5.0, owner_unseen=False)
    assert "AA-NET-002" not in connection_findings(scan(snapshot([proc(1, "/sbin/init")], [unjudged])))[0].rule_ids


@pytest.mark.parametrize("cmdline, exe, cpu, held, flagged", [
    ("/opt/sync/agentd", "/opt/sync/agentd", 60.0, 5.0, True),          # unknown program, steady CPU, held
    ("/opt/sync/agentd", "/opt/sync/agentd", 60.0, None, False),        # not seen at the window's start
    ("/opt/sync/agentd", "/opt/sync/agentd", 2.0, 5.0, False),          # idle: context only, no finding
    ("/usr/lib/chromium/chromium --type=utility", "/usr/lib/chromium/chromium", 80.0, 5.0, False),
    ("/usr/lib/apt/methods/https", "/usr/lib/apt/methods/https", 40.0, 5.0, False),
    ("curl -O https://mirror/x.iso", "/tmp/.cache/curl", 60.0, 5.0, True),   # a "client" from a hidden place
    ("python3 fetch.py", "/usr/bin/python3.11", 60.0, 5.0, False),     # research code: a generic runtime
])
def test_long_lived_tls_session_from_an_unknown_program(cmdline, exe, cpu, held, flagged):
    report = scan(snapshot([proc(70, cmdline, exe=exe, cpu=cpu)],
                           [c(70, "10.0.0.5", 45000, "203.0.113.7", 443, held_seconds=held)]))
    finding = by_pid(report, 70)
    assert (finding is not None and "AA-NET-003" in finding.rule_ids) == flagged
    if flagged:
        assert finding.severity.rank <= 2, "a weak signal: never more than a review"
