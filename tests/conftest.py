"""Shared fixtures: the installed agent command, a Stratum pool on 127.0.0.1, processes that get cleaned up."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.standin.pool import StratumPool, free_port_near
from tests.hostile import other_user  # noqa: F401 - a fixture (a second, unprivileged user) for any test

REPO = Path(__file__).resolve().parent.parent
MINER_SCRIPT = REPO / "tests" / "standin" / "miner.py"
# A public example address (the Monero general fund), the kind of wallet a miner logs in with.
MONERO_WALLET = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"


def agent_command() -> list[str]:
    """The installed `audit-agent` next to this Python, else `python -m audit_agent`."""
    script = Path(sys.executable).parent / "audit-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "audit_agent"]


@pytest.fixture
def agent():
    """Run the real agent as a subprocess: agent('scan', '--window', '1') -> CompletedProcess."""
    def run(*args: str, timeout: float = 120, env: dict | None = None, cwd: str | None = None):
        return subprocess.run([*agent_command(), *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, cwd=cwd, stdin=subprocess.DEVNULL)
    return run


@pytest.fixture
def pool():
    """A Stratum pool on 127.0.0.1, on 3333 (a common pool port) or the next free port above it."""
    with StratumPool(free_port_near(3333)) as running:
        yield running


class Processes:
    """Start processes for a test; every one is ended by its PID at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str], *, executable: str | None = None, env: dict | None = None,
              cwd: str | Path | None = None, wait_for_line: str | None = None, timeout: float = 20) -> subprocess.Popen:
        proc = subprocess.Popen(args, executable=executable, env={**os.environ, **(env or {})}, cwd=cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True)
        self.started.append(proc)
        if wait_for_line:
            deadline = time.monotonic() + timeout
            said: list[str] = []
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if wait_for_line in line:
                    break
                said = (said + [line])[-8:]
                if not line and proc.poll() is not None:
                    raise RuntimeError(f"{args[0]} exited with {proc.returncode} before '{wait_for_line}': "
                                       f"{''.join(said).strip()[-800:]}")
            else:
                raise RuntimeError(f"{args[0]} did not print '{wait_for_line}' within {timeout}s")
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()

    def stop_all(self) -> None:
        for proc in self.started:
            self.stop(proc)


@pytest.fixture
def processes():
    running = Processes()
    yield running
    running.stop_all()


def start_miner(processes: Processes, argv: list[str], *, name: str | None = None,
                cwd: str | Path | None = None, seconds: float = 120) -> subprocess.Popen:
    """The stand-in miner with the given argv (argv[0] is what the process calls itself)."""
    env = {"STANDIN_SECONDS": str(seconds), "PYTHONPATH": str(REPO)}
    if name:
        env["STANDIN_NAME"] = name
    return processes.start([argv[0], str(MINER_SCRIPT), *argv[1:]], executable=sys.executable, env=env, cwd=cwd,
                           wait_for_line="ready")


@pytest.fixture(autouse=True)
def keep_working_directory():
    """The CLI chdirs to / before it starts (its own folder is no evidence); a test that calls main() in
    this process must not leave pytest there: a stand-in started with a bare argv[0] ("xmrig") finds its
    Python's prefix relative to the working directory."""
    before = os.getcwd()
    yield
    os.chdir(before)


@pytest.fixture(autouse=True, scope="session")
def private_state_dir(tmp_path_factory):
    """The agent's state (scan cache, watch state, installed packs) in a folder of this test session, for the
    agents the tests start too: never the host's /var/lib/audit-agent."""
    if os.environ.get("AUDIT_AGENT_STATE_DIR"):
        yield
        return
    folder = tmp_path_factory.mktemp("state")
    folder.chmod(0o700)
    os.environ["AUDIT_AGENT_STATE_DIR"] = str(folder)
    yield
    os.environ.pop("AUDIT_AGENT_STATE_DIR", None)


def have_compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


# ---- detection fixtures (persistence, load, GPU, context tests)

@pytest.fixture(scope="session")
def compiled_rules():
    """The default rule pack, compiled once for the session."""
    from audit_agent.rules.compiler import CompiledRules
    from audit_agent.rules.loader import load_pack
    return CompiledRules(load_pack())


# ---------------------------------------------------------------- reports (issue 4)

SECRETS = ("s3cretPoolPass", "hunter2-pass", "tok-9f8e7d6c5b4a", "Pa55w0rd-xyz")


@pytest.fixture(scope="session")
def demo_reports():
    """The AuditReport of every demo seed, by seed name (evaluated once)."""
    from audit_agent.demo import evaluate_seed, seeds
    return {seed.name: evaluate_seed(seed) for seed in seeds()}


@pytest.fixture(scope="session")
def hostile_report(compiled_rules):
    """A report evaluated from a snapshot whose process data attacks every output format."""
    from audit_agent.evaluate import evaluate
    from audit_agent.model import Connection, Coverage, CoverageStatus, HostInfo, LoadSample, ProcessInfo, Snapshot

    hostile_args = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "]]>", "\"quoted\" 'single'",
                    "\x1b[31mred\x1b[0m", "\x1b]0;pwn\x07", "\u202eevil\u202c", "nul\x00byte", "A" * 100_000,
                    "`code` | pipe | [link](javascript:alert(1)) **bold**"]
    miner = ProcessInfo(
        pid=4242, ppid=1, name="<script>alert(1)</script>", exe="/tmp/<img src=x onerror=alert(1)>/x]]>",
        cmdline=["/tmp/xmrig", "-o", "stratum+tcp://pool.supportxmr.com:3333", "-u", MONERO_WALLET,
                 "-p", SECRETS[0], f"--pass={SECRETS[1]}", f"token={SECRETS[2]}", f"password={SECRETS[3]}",
                 *hostile_args],
        username="<b>mallory</b>", cpu_percent=390.0, allowed_cpus=4, cgroup="/user.slice/\x1b[2J",
        container_id="]]><x/>", slurm_job_id="<i>1</i>")
    snapshot = Snapshot(
        agent_version="0.1.0", collected_at=1795522500.0, window_seconds=5.0,
        host=HostInfo(hostname="<svg onload=alert(1)>host", os="Linux", cpu_model="\x1b]0;cpu\x07 Xeon",
                      cpu_cores=4, cpu_threads=8, memory_total_bytes=16 * 1024 ** 3),
        processes=[miner, ProcessInfo(pid=1, name="systemd", exe="/usr/lib/systemd/systemd", cmdline=["/sbin/init"],
                                      username="root")],
        connections=[Connection(pid=4242, protocol="tcp", local_address="10.0.0.5", local_port=40000,
                                remote_address="198.51.100.9", remote_port=3333, state="ESTABLISHED")],
        load=[LoadSample(t=float(i), cpu_percent=50.0 + i) for i in range(6)],
        coverage=[Coverage("processes", CoverageStatus.OK, inspected=2),
                  Coverage("network", CoverageStatus.OK, inspected=1),
                  Coverage("gpu", CoverageStatus.SKIPPED, reason="no GPU <b>driver</b> ]]>"),
                  Coverage("binaries", CoverageStatus.ERROR, reason="scan crashed: \x00\x1b[31m<script>")])
    return evaluate(snapshot, compiled_rules, now=snapshot.collected_at + 5)


@pytest.fixture
def listed_pool(compiled_rules):
    """A Stratum pool on 127.0.0.1, on a free port that the rule pack lists as a mining-pool port."""
    preferred = [3333, 3334, 3335, 3336, 4444, 5555, 7777, 14444, 45700]
    ports = [p for p in [*preferred, *sorted(compiled_rules.pool_ports)] if compiled_rules.pool_port_rule(p)]
    yield from pool_on_first_free(ports, "listed pool port")


def pool_on_first_free(ports: list[int], what: str):
    """A Stratum pool on 127.0.0.1 on the first of `ports` that is free (another test may hold one)."""
    for port in ports:
        try:
            running = StratumPool(port)
        except OSError:
            continue
        with running:
            yield running
        return
    pytest.skip(f"every {what} is taken on 127.0.0.1")
