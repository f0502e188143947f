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
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if wait_for_line in line:
                    break
                if not line and proc.poll() is not None:
                    raise RuntimeError(f"{args[0]} exited with {proc.returncode} before '{wait_for_line}'")
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


def have_compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


# ---- detection fixtures (persistence, load, GPU, context tests)

@pytest.fixture(scope="session")
def compiled_rules():
    """The default rule pack, compiled once for the session."""
    from audit_agent.rules.compiler import CompiledRules
    from audit_agent.rules.loader import load_pack
    return CompiledRules(load_pack())
