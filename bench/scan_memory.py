"""Peak memory of a whole scan on a host with many processes that have huge command lines (issue 13).

    PYTHONPATH=. python bench/scan_memory.py [--processes 550] [--mib 1.0] [--window 0]

Starts N copies of a tiny C program (compiled into a temporary folder) whose command lines are MIB MiB
each (arguments of 128 KiB, the kernel's per-argument maximum), runs `audit-agent scan` on the live host,
and prints the agent's peak RSS (wait4's ru_maxrss), its wall time, and the report's size. Every process
it started is ended by PID. Target: under 200 MiB for 550 processes of 1 MiB.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARG = 128 * 1024 - 1            # MAX_ARG_STRLEN is 32 pages including the NUL


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=550)
    parser.add_argument("--mib", type=float, default=1.0)
    parser.add_argument("--window", default="0")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="audit-membench-"))
    started: list[subprocess.Popen] = []
    try:
        source = work / "idle.c"
        source.write_text("#include <unistd.h>\nint main(void) { for (;;) pause(); }\n")
        subprocess.run([shutil.which("cc") or "gcc", "-O2", "-o", str(work / "idle"), str(source)], check=True)
        count = max(1, int(args.mib * 1024 * 1024 / (ARG + 1)))
        argv = [str(work / "idle"), *[chr(ord("a") + i % 26) * ARG for i in range(count)]]
        for _ in range(args.processes):
            started.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        time.sleep(1)
        out = work / "report.json"
        command = [sys.executable, "-m", "audit_agent", "scan", "--window", args.window, "--quiet",
                   "--fail-on", "never", "--json", str(out)]
        begin = time.monotonic()
        agent = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(agent.pid, 0)
        wall = time.monotonic() - begin
        stderr = agent.stderr.read().decode(errors="replace") if agent.stderr else ""
        print(f"processes started: {args.processes} x {count * (ARG + 1) / 1048576:.2f} MiB command lines")
        print(f"agent exit status: {os.waitstatus_to_exitcode(status)}{' ' + stderr.strip()[:300] if stderr else ''}")
        print(f"agent peak RSS: {usage.ru_maxrss / 1024:.1f} MiB")
        print(f"agent wall time: {wall:.1f} s (user {usage.ru_utime:.1f} s, system {usage.ru_stime:.1f} s)")
        if out.exists():
            print(f"report size: {out.stat().st_size / 1048576:.2f} MiB")
    finally:
        for proc in started:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
