"""Shared helpers for the benchmarks: the agent command, child CPU/RSS accounting, load we start and end by PID.

Everything a benchmark starts is recorded here and ended by its PID; only 127.0.0.1 is ever used.
"""
from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def agent_command() -> list[str]:
    """The installed `audit-agent` next to this Python, else `python -m audit_agent`."""
    script = Path(sys.executable).parent / "audit-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "audit_agent"]


def build_native(tree: Path) -> bool:
    """Build a checkout's process reader C half in place, as `pip install` builds it for an installation, so
    a benchmark that runs the checkout measures what an installation runs. True when it is there afterwards
    (a tree from before it has no source, and without a compiler there is none)."""
    source = tree / "audit_agent" / "collect" / "_procread.c"
    compiler = shutil.which("cc") or shutil.which("gcc")
    if source.exists() and compiler:
        target = source.with_name("_procread" + sysconfig.get_config_var("EXT_SUFFIX"))
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", str(source),
                        "-o", str(target)], check=False)
    return any(source.parent.glob("_procread*.so"))


@dataclass
class Cost:
    wall: float        # seconds
    cpu: float         # user + system seconds of the child (and its waited-for children)
    max_rss_kb: int    # peak resident set of the child, kB
    returncode: int
    stdout: bytes = b""
    system: float = 0.0    # of `cpu`, the seconds spent in the kernel (its /proc and socket-table reads)


def measure(args: list[str], env: dict | None = None, capture: bool = False, cwd: str | None = None) -> Cost:
    """Run `args` to completion and return its own CPU time and peak RSS (os.wait4: this child only)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    out = b""
    if capture:
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Cost(wall=time.perf_counter() - start, cpu=usage.ru_utime + usage.ru_stime,
                max_rss_kb=usage.ru_maxrss, returncode=proc.returncode, stdout=out, system=usage.ru_stime)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


SLEEPER_C = "#include <unistd.h>\nint main(void) { for (;;) pause(); return 0; }\n"
# One process with many idle threads (a JVM, a data loader's pool): argv[1] threads of 64 KiB stacks.
THREADED_C = """#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
static void *idle(void *arg) { (void)arg; for (;;) pause(); return NULL; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1;
    pthread_attr_t attr; pthread_attr_init(&attr); pthread_attr_setstacksize(&attr, 65536);
    for (int i = 0; i < n; i++) { pthread_t t; if (pthread_create(&t, &attr, idle, NULL)) break; }
    for (;;) pause();
}
"""


class Load:
    """Sleeping processes and loopback connections, every one ended by PID on exit."""

    def __init__(self) -> None:
        # not under /tmp: an executable in a world-writable directory is itself a finding (AA-STEALTH-002)
        (REPO / "bench" / "out").mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="load-", dir=REPO / "bench" / "out"))
        self.tmp.chmod(0o755)
        self.pids: list[int] = []
        self.sleeper = self._build_sleeper()

    def _build_sleeper(self) -> list[str]:
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler:
            source = self.tmp / "sleeper.c"
            source.write_text(SLEEPER_C)
            binary = self.tmp / "bench-sleeper"
            if subprocess.run([compiler, "-O2", "-o", str(binary), str(source)]).returncode == 0:
                return [str(binary)]
        return [shutil.which("sleep") or "/bin/sleep", "100000"]

    def sleepers(self, count: int) -> None:
        for _ in range(count):
            proc = subprocess.Popen(self.sleeper, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            self.pids.append(proc.pid)

    def threads(self, count: int) -> None:
        """One process holding `count` idle threads (needs a C compiler)."""
        compiler = shutil.which("cc") or shutil.which("gcc")
        if not count or compiler is None:
            return
        source = self.tmp / "threaded.c"
        source.write_text(THREADED_C)
        binary = self.tmp / "bench-threaded"
        if subprocess.run([compiler, "-O2", "-pthread", "-o", str(binary), str(source)]).returncode != 0:
            raise RuntimeError("the threaded helper did not build")
        proc = subprocess.Popen([str(binary), str(count)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.pids.append(proc.pid)
        deadline = time.monotonic() + 30
        while len(os.listdir(f"/proc/{proc.pid}/task")) < count + 1 and time.monotonic() < deadline:
            time.sleep(0.05)

    def connections(self, count: int) -> None:
        """A helper process holding `count` established client connections to its own server on 127.0.0.1."""
        script = textwrap.dedent(f"""
            import resource, socket, sys, time
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, {count} * 2 + 64)), hard))
            server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen({count} + 16)
            clients, accepted = [], []
            for _ in range({count}):
                c = socket.create_connection(server.getsockname()); clients.append(c)
                accepted.append(server.accept()[0])
            print("ready", flush=True)
            time.sleep(100000)
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True)
        self.pids.append(proc.pid)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.stdout.close()
        if "ready" not in line:
            raise RuntimeError("the loopback connection helper did not start")

    def close(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.pids.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Load":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def visible_processes() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())

