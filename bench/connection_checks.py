"""Benchmark: the CPU of the checks issue 11 items 5 and 8 add to a scan, each measured alone, in this process.

  socket sample       the window-start read of every network namespace's TCP tables (connection age)
  namespaces step     every other namespace's tables, socket owners, age; the host tables re-read once
  interposition       which libc functions resolve outside libc in the agent (hooked by a preload library)
  kernel listing      /proc read with getdents64 as a system call (compared with libc's listing)
  PID probe           kill(2) as a system call for every PID up to pid_max

With --namespaces N it first starts N idle network namespaces (`unshare --net sleep`, ended by PID) to
show how the cost grows per namespace. Root is needed for that and to read every process's fds.

    python bench/connection_checks.py [--repeat 7] [--namespaces 0,10]
"""
from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from audit_agent.collect import netns, rawsys, stealth  # noqa: E402
from audit_agent.model import Connection, Snapshot  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(function, repeat: int) -> tuple[float, float]:
    """Median CPU and wall milliseconds of `function` over `repeat` runs."""
    cpus, walls = [], []
    for _ in range(repeat):
        started_cpu, started = cpu(), time.perf_counter()
        function()
        cpus.append(cpu() - started_cpu)
        walls.append(time.perf_counter() - started)
    return statistics.median(cpus) * 1e3, statistics.median(walls) * 1e3


def step(sample: netns.SocketSample) -> None:
    # One outbound host connection, so the host tables are re-read as in a real scan.
    snapshot = Snapshot(window_seconds=5.0, connections=[Connection(
        pid=1, protocol="tcp", local_address="127.0.0.1", local_port=50000, remote_address="127.0.0.1",
        remote_port=443, state="ESTABLISHED")])
    netns.collect_namespaces(snapshot, SimpleNamespace(proc_root="/proc", socket_sample=sample))


def report(repeat: int) -> None:
    pids = netns.all_pids("/proc")
    spaces = netns.namespace_members("/proc", pids)
    print(f"{len(pids)} processes, {len(spaces)} network namespaces")
    sample = netns.sample_sockets("/proc")
    pid_max = stealth.pid_max_of("/proc")
    rows = [("socket sample (window start)", lambda: netns.sample_sockets("/proc")),
            ("namespaces step", lambda: step(sample)),
            ("libc interposition check", rawsys.interposed_functions),
            ("kernel /proc listing (getdents64)", lambda: stealth.kernel_listed_pids("/proc")),
            (f"PID probe by kill(2), 1..{pid_max}", lambda: rawsys.alive_pids(pid_max))]
    for label, function in rows:
        cpu_ms, wall_ms = timed(function, repeat)
        print(f"  {label:38s} CPU {cpu_ms:7.1f} ms   wall {wall_ms:7.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--namespaces", default="0", help="comma-separated counts of extra idle namespaces")
    args = parser.parse_args()
    if not rawsys.available():
        print("needs Linux on a known architecture")
        return 2
    started: list[subprocess.Popen] = []
    try:
        for count in [int(n) for n in args.namespaces.split(",")]:
            while len(started) < count:
                started.append(subprocess.Popen(["unshare", "--net", "sleep", "600"]))
            time.sleep(0.5)
            print(f"extra idle namespaces: {count}")
            report(args.repeat)
    finally:
        for proc in started:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
