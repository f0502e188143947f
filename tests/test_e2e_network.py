"""End to end on the real host: connections the agent's own namespace does not show, and mining that is not
where its connection is.

* the C stand-in miner (strings encrypted, nothing in its command line) with its pool inside a network
  namespace of its own, plain Stratum on a pool port and Stratum over TLS on 443;
* a miner behind a local SOCKS5 proxy (its own process) that holds the pool connection;
* a pool connection parked in flight (SCM_RIGHTS) so that no process holds it.
Benign controls: a Python TLS client and curl holding sessions to the same kind of server, a namespace whose
process does nothing suspicious, a client of a proxy whose upstream is not a pool.
Namespaced processes run under `unshare --pid --fork --kill-child`: ending the unshare process by its PID
ends everything inside (the pid namespace dies with its init).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from audit_agent.collect.sockets import read_tables, socket_inodes
from tests.conftest import MONERO_WALLET, REPO, have_compiler, start_miner
from tests.standin.cbuild import build_cminer

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="network namespaces are Linux")]
needs_netns = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not have_compiler(),
                                 reason="needs root (network namespaces), unshare and a C compiler")
IN_NAMESPACE = r"""
ip link set lo up || exit 3
"$PYTHON" -m tests.standin.pool --port "$POOL_PORT" $POOL_TLS &
for i in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$POOL_PORT) 2>/dev/null && break; sleep 0.1; done
exec "$@"
"""


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def in_namespace(processes, command: list[str], pool_port: int, tls_dir: Path | None = None) -> int:
    """Run `command` in a new network (and pid) namespace next to a pool on 127.0.0.1:pool_port; its host PID."""
    env = {"PYTHON": sys.executable, "PYTHONPATH": str(REPO), "POOL_PORT": str(pool_port),
           "POOL_TLS": f"--tls {tls_dir}" if tls_dir else ""}
    outer = processes.start(["unshare", "--net", "--pid", "--fork", "--kill-child", "bash", "-c", IN_NAMESPACE,
                             "bash", *command], env=env, cwd=REPO, wait_for_line="ready", timeout=60)
    [inner] = children(outer.pid)
    return inner


def wait_connected(pid: int, port: int, timeout: float = 60) -> None:
    """Until `pid` holds an established TCP connection to remote `port` (read in its own namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            held = socket_inodes("/proc", pid)
        except OSError:
            held = set()
        tables, _ = read_tables(f"/proc/{pid}/net")
        if any(s.inode in held and s.remote_port == port and s.state == "ESTABLISHED" for s in tables):
            return
        time.sleep(0.2)
    raise AssertionError(f"{pid} did not connect to port {port}")


def scan_json(agent, tmp_path: Path, window: str = "3") -> dict:
    out = tmp_path / "report.json"
    result = agent("scan", "--window", window, "--json", str(out), "--quiet", timeout=300)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(out.read_text())


def finding(report: dict, pid: int) -> dict | None:
    return next((f for f in report["findings"] if f["subject"]["pid"] == pid and f["subject"]["kind"] == "process"),
                None)


def rules_of(report: dict, pid: int) -> set[str]:
    found = finding(report, pid)
    return set(found["rule_ids"]) if found else set()


@needs_netns
def test_miner_with_its_pool_in_its_own_network_namespace(tmp_path, processes, agent):
    exe = build_cminer(tmp_path / "build", port=3333)
    miner = in_namespace(processes, [str(exe), "--name", "kswapd-helper", "--seconds", "240"], 3333)
    quiet = in_namespace(processes, ["bash", "-c", "echo ready; exec sleep 240"], 3334)   # a namespace doing nothing
    report = scan_json(agent, tmp_path)
    mine = finding(report, miner)
    assert mine is not None and "AA-PORT-001" in mine["rule_ids"], report["findings"]
    assert any("network namespace net:[" in reason for reason in mine["reasons"])
    namespaces = [c for c in report["coverage"] if c["check"] == "network-namespaces"]
    assert namespaces and namespaces[0]["status"] in ("ok", "partial") and namespaces[0]["inspected"] >= 2
    assert finding(report, quiet) is None


@needs_netns
def test_tls_session_on_443_in_a_namespace_from_an_unknown_program(tmp_path, processes, agent):
    exe = build_cminer(tmp_path / "build", port=443)
    miner = in_namespace(processes, [str(exe), "--tls", "--name", "dbus-broker-lnch", "--seconds", "240"], 443,
                         tls_dir=tmp_path / "cert")
    client = ("import socket, ssl, time\n"
              "context = ssl.create_default_context(); context.check_hostname = False\n"
              "context.verify_mode = ssl.CERT_NONE\n"
              "s = context.wrap_socket(socket.create_connection(('127.0.0.1', 443)))\n"
              "print('ready', flush=True); time.sleep(240)\n")
    python_client = in_namespace(processes, [sys.executable, "-c", client], 443, tls_dir=tmp_path / "cert")
    curl = in_namespace(processes, ["bash", "-c", "echo ready; exec curl -ks https://127.0.0.1:443/ -o /dev/null "
                                    "--max-time 240"], 443, tls_dir=tmp_path / "cert")
    wait_connected(curl, 443)           # connected before the window starts, so the control means something
    report = scan_json(agent, tmp_path)
    assert "AA-NET-003" in rules_of(report, miner), finding(report, miner)
    assert "AA-NET-003" not in rules_of(report, python_client)
    assert "AA-NET-003" not in rules_of(report, curl)


def test_miner_behind_a_local_socks_proxy_gets_the_pool_connection(listed_pool, processes, agent, tmp_path):
    proxy = start_socks(processes)
    proxy_port = proxy_listening_port(proxy.pid)
    miner = start_miner(processes, ["backup-sync", "-x", f"127.0.0.1:{proxy_port}", "-o",
                                    f"127.0.0.1:{listed_pool.port}", "-u", MONERO_WALLET], seconds=240)
    other_proxy = start_socks(processes)
    browser_like = start_proxy_client(processes, other_proxy)
    report = scan_json(agent, tmp_path)
    assert "AA-NET-001" in rules_of(report, miner.pid), finding(report, miner.pid)
    reason = next(r for r in finding(report, miner.pid)["reasons"] if "proxy" in r)
    assert f"PID {proxy.pid}" in reason and f":{listed_pool.port}" in reason
    assert "AA-NET-001" not in rules_of(report, proxy.pid)
    assert "AA-PORT-001" in rules_of(report, proxy.pid), "the proxy itself holds the pool connection"
    assert "AA-NET-001" not in rules_of(report, browser_like.pid)



def start_socks(processes):
    """The SOCKS5 proxy stand-in, relaying to whatever a client asks for."""
    return processes.start([sys.executable, "-m", "tests.standin.socks"], cwd=REPO,
                           env={"PYTHONPATH": str(REPO)}, wait_for_line="ready")


def start_proxy_client(processes, proxy, port: int | None = None):
    """An idle client holding a connection through `proxy` to 127.0.0.1:port (by default to a listener of
    its own, as a browser's tab to a local page)."""
    target = str(port) if port is not None else "server.getsockname()[1]"
    return processes.start([sys.executable, "-c", (
        "import socket, time\nfrom tests.standin.socks import connect_via\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        f"s = connect_via('127.0.0.1:{proxy_listening_port(proxy.pid)}', '127.0.0.1', {target})\n"
        "print('ready', flush=True); time.sleep(240)\n")], cwd=REPO, env={"PYTHONPATH": str(REPO)},
        wait_for_line="ready")

@pytest.fixture
def tls_port_pool(compiled_rules):
    """A pool on 127.0.0.1 on a generic TLS port of the pack (8443, 9443, ..., 443): what firewalls let out."""
    from tests.conftest import pool_on_first_free
    yield from pool_on_first_free(sorted(compiled_rules.client_ports, key=lambda p: (p == 443, p)),
                                  "TLS port of the pack")


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system python3 to run the stand-in from /tmp")
def test_miner_behind_a_local_proxy_to_a_tls_port(tls_port_pool, processes, agent, tmp_path):
    """Item 5: the proxy's upstream is on an HTTPS port, not a pool port; the busy client is still named."""
    proxy = start_socks(processes)
    proxy_port = proxy_listening_port(proxy.pid)
    dropped = tmp_path / "backup-sync"          # an interpreter copied out of its place, as droppers do
    shutil.copy2(os.path.realpath("/usr/bin/python3"), dropped)
    miner = processes.start([str(dropped), str(REPO / "tests" / "standin" / "miner.py"), "-x",
                             f"127.0.0.1:{proxy_port}", "-o", f"127.0.0.1:{tls_port_pool.port}", "-u", MONERO_WALLET],
                            env={"PYTHONPATH": str(REPO), "STANDIN_SECONDS": "240"}, wait_for_line="ready")
    other_proxy = start_socks(processes)
    idle_client = start_proxy_client(processes, other_proxy, tls_port_pool.port)
    report = scan_json(agent, tmp_path)
    assert "AA-NET-001" in rules_of(report, miner.pid), finding(report, miner.pid)
    reason = next(r for r in finding(report, miner.pid)["reasons"] if "proxy" in r)
    assert f"PID {proxy.pid}" in reason and f":{tls_port_pool.port}" in reason and "TLS port" in reason
    assert "AA-NET-001" not in rules_of(report, idle_client.pid), "an idle client of a proxy to 443 is left alone"
    assert "AA-NET-001" not in rules_of(report, proxy.pid)


def proxy_listening_port(pid: int) -> int:
    """The port a stand-in proxy listens on (it printed it; read back from its socket table entry instead)."""
    import psutil
    for conn in psutil.Process(pid).net_connections(kind="tcp"):
        if conn.status == "LISTEN":
            return conn.laddr.port
    raise AssertionError(f"proxy {pid} listens nowhere")


PARK = """
import socket, sys, time
pool = ('127.0.0.1', int(sys.argv[1]))
mailbox, _keep = socket.socketpair()
conn = socket.create_connection(pool)
socket.send_fds(mailbox, [b"x"], [conn.fileno()])    # the socket now lives only in the message queue
print(conn.getsockname()[1], flush=True)
conn.close()
print("ready", flush=True)
time.sleep(240)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can read every process's open files")
def test_pool_connection_that_no_process_holds(listed_pool, processes, agent, tmp_path):
    parked = processes.start([sys.executable, "-c", PARK, str(listed_pool.port)])
    local_port = int(parked.stdout.readline())
    assert parked.stdout.readline().strip() == "ready"
    report = scan_json(agent, tmp_path, window="2")
    ownerless = [f for f in report["findings"] if f["subject"]["kind"] == "connection"
                 and any(f"127.0.0.1:{local_port} ->" in e["value"] for e in f["evidence"])]
    assert ownerless, [f["subject"] for f in report["findings"] if f["subject"]["kind"] == "connection"]
    assert "AA-NET-002" in ownerless[0]["rule_ids"] and ownerless[0]["severity"] == "high"
