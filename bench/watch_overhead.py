"""CPU overhead of `audit-agent watch`: percent of one core, measured from the process's own CPU time.

Runs the installed agent as a subprocess (default: 60 s interval, the default
5 s window, Prometheus textfile and state written every cycle) for --duration
seconds and prints the percent of one core, over the whole run and in steady
state (after the first cycle, so start-up imports and the first binary scans
are not averaged in).

    .venv/bin/python bench/watch_overhead.py --duration 600
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system + getattr(times, "children_user", 0) + getattr(times, "children_system", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to measure (default 600)")
    parser.add_argument("--interval", type=float, default=60.0, help="watch interval (default 60)")
    parser.add_argument("--window", type=float, default=5.0, help="sampling window (default 5, the CLI default)")
    args = parser.parse_args()
    agent = Path(sys.executable).parent / "audit-agent"
    command = [str(agent)] if agent.exists() else [sys.executable, "-m", "audit_agent"]
    with tempfile.TemporaryDirectory(prefix="watch-overhead-") as tmp:
        state = Path(tmp) / "state.json"
        proc = subprocess.Popen([*command, "watch", "--interval", str(args.interval), "--window", str(args.window),
                                 "--state", str(state), "--textfile-dir", tmp, "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        try:
            ps = psutil.Process(proc.pid)
            start_wall = time.monotonic()
            while not state.exists() and time.monotonic() - start_wall < 120:
                time.sleep(0.2)
            steady_wall, steady_cpu = time.monotonic(), cpu_seconds(ps)
            first_cycle = steady_cpu
            time.sleep(max(0.0, args.duration - (steady_wall - start_wall)))
            end_wall, end_cpu = time.monotonic(), cpu_seconds(ps)
            rss = ps.memory_info().rss
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
    total = end_cpu / (end_wall - start_wall) * 100
    steady = (end_cpu - steady_cpu) / (end_wall - steady_wall) * 100
    print(f"watch --interval {args.interval:g} --window {args.window:g} for {end_wall - start_wall:.0f} s "
          f"on {os.cpu_count()} CPUs")
    print(f"start-up + first cycle: {first_cycle:.2f} s CPU")
    print(f"CPU overhead, whole run:    {total:.3f} % of one core ({end_cpu:.2f} s CPU)")
    print(f"CPU overhead, steady state: {steady:.3f} % of one core ({end_cpu - steady_cpu:.2f} s CPU "
          f"over {end_wall - steady_wall:.0f} s)")
    print(f"RSS at the end: {rss / 2**20:.1f} MiB; exit code after SIGTERM: {proc.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
