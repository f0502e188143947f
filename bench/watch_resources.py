"""The watch loop's own memory (RSS) and open file handles over many cycles (default 1,000).

Runs the real in-process loop (Watcher.run_forever) with --window 0 and a tiny
interval, writing state, the JSON report and Prometheus metrics every cycle,
and prints RSS and open file descriptors at cycles 1, 100, 500 and 1000 - a
leak shows as growth between the later readings.

    .venv/bin/python bench/watch_resources.py --cycles 1000
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audit_agent.watch import Watcher, WatchOptions  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    args = parser.parse_args()
    marks = sorted({1, 100, 500, args.cycles} & set(range(1, args.cycles + 1)))
    me = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="watch-resources-") as tmp:
        options = WatchOptions(interval=0.001, once=False, state_path=Path(tmp) / "state.json", rules=None,
                               config=None, window=0.0, textfile_dir=tmp, json_path=str(Path(tmp) / "report.json"))
        stop = threading.Event()
        watcher = Watcher(options, stop, out=io.StringIO(), err=sys.stderr)
        real_cycle = watcher.cycle
        done = 0
        started = time.monotonic()
        print(f"{'cycle':>6} {'RSS MiB':>8} {'FDs':>4} {'s/cycle':>8}")

        def counted_cycle():  # type: ignore[no-untyped-def]
            nonlocal done
            report = real_cycle()
            done += 1
            if done in marks:
                watcher.out.seek(0)
                watcher.out.truncate()          # events would otherwise accumulate in this StringIO
                print(f"{done:>6} {me.memory_info().rss / 2**20:>8.1f} {me.num_fds():>4} "
                      f"{(time.monotonic() - started) / done:>8.3f}", flush=True)
            if done >= args.cycles:
                stop.set()
            return report
        watcher.cycle = counted_cycle  # type: ignore[method-assign]
        watcher.run_forever()
    print(f"{args.cycles} cycles in {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
