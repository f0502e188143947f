"""CPU of one steady `watch` cycle vs `ps` + `ss`, measured in one run, interleaved.

Starts --processes extra sleeping processes and --connections loopback connections,
then a watch loop in a child process (the real Watcher, window 0, interval 0, state,
JSON report and Prometheus textfile written every cycle, as a deployed `watch` does).
The child runs one cycle each time the parent asks and reports that cycle's CPU
(time.process_time of the child: every thread of it); between cycles the parent runs
`ps -eo ...` and `ss -tanp` and measures their CPU with wait4.

Reported: the median cycle (what most cycles cost: events say nothing changed, only
stat is re-read), and the mean over whole periods (every --full-every'th cycle
re-reads every process, every --slow-every'th runs the hidden-process and
persistence checks), both as ratios to ps+ss.

    python bench/watch_cycle.py [--processes 2000] [--connections 500] [--cycles 20]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import REPO, Load, build_native, measure, median, visible_processes  # noqa: E402

PS = ["ps", "-eo", "pid,ppid,user,pcpu,rss,nlwp,lstart,args"]
SS = ["ss", "-tanp"]

CHILD = textwrap.dedent("""
    import argparse, json, sys, threading, time
    from pathlib import Path
    from audit_agent.watch import Watcher, WatchOptions
    tmp = Path(sys.argv[1])
    options = WatchOptions(interval=0, once=False, state_path=tmp / "state.json", rules=None, config=None,
                           window=0.0, textfile_dir=str(tmp), json_path=str(tmp / "report.json"), quiet=True,
                           full_every=int(sys.argv[2]), slow_every=int(sys.argv[3]))
    watcher = Watcher(options, threading.Event(), out=open("/dev/null", "w"))
    for line in sys.stdin:
        before = time.process_time()
        report = watcher.cycle()
        used = time.process_time() - before
        stats = watcher.tracker.last if watcher.tracker else None
        print(json.dumps({"cpu": used, "ok": report is not None, "full": bool(stats and stats.full_scan),
                          "events": watcher.tracker.events is not None if watcher.tracker else False}), flush=True)
""")


def run(processes: int, connections: int, cycles: int, full_every: int, slow_every: int) -> int:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    print(f"process reader: {'C half (_procread)' if build_native(REPO) else 'Python half'}")
    with Load() as load, tempfile.TemporaryDirectory(prefix="watch-cycle-") as tmp:
        load.connections(connections)
        load.sleepers(processes)
        child = subprocess.Popen([sys.executable, "-c", CHILD, tmp, str(full_every), str(slow_every)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd="/")
        assert child.stdin is not None and child.stdout is not None

        def cycle() -> dict:
            child.stdin.write("go\n")
            child.stdin.flush()
            return json.loads(child.stdout.readline())

        try:
            first = cycle()                            # start-up and the first full read: not steady state
            if not first["ok"]:
                print("the first watch cycle failed", file=sys.stderr)
                return 2
            results, ps, ss = [], [], []
            for _ in range(cycles):
                results.append(cycle())
                ps.append(measure(PS, capture=True).cpu)
                ss.append(measure(SS, capture=True).cpu)
        finally:
            child.stdin.close()
            child.wait(timeout=60)
    shell = median(ps) + median(ss)
    cpu = [r["cpu"] for r in results]
    period = min(len(cpu), max(full_every, slow_every))
    mean = sum(cpu[:period]) / period
    print(f"{visible_processes()} processes visible after the run; {processes} extra sleepers, {connections} "
          f"loopback connections; process events {'on' if results[-1]['events'] else 'UNAVAILABLE'}")
    print(f"{'':>24} {'cpu':>8} {'ratio to ps+ss':>15}")
    print(f"{'ps + ss (median)':>24} {shell * 1000:>6.0f}ms {1.0:>14.2f}x   (ps {median(ps) * 1000:.0f} ms, "
          f"ss {median(ss) * 1000:.0f} ms)")
    print(f"{'watch cycle (median)':>24} {median(cpu) * 1000:>6.0f}ms {median(cpu) / shell:>14.2f}x")
    print(f"{'watch cycle (mean of ' + str(period) + ')':>24} {mean * 1000:>6.0f}ms {mean / shell:>14.2f}x   "
          f"(includes one full rescan and one hidden-process/persistence check per period)")
    print(f"{cycles} cycles; full rescans among them: {sum(r['full'] for r in results)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--full-every", type=int, default=10)
    parser.add_argument("--slow-every", type=int, default=10)
    args = parser.parse_args()
    return run(args.processes, args.connections, args.cycles, args.full_every, args.slow_every)


if __name__ == "__main__":
    sys.exit(main())
