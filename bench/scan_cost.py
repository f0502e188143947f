"""Benchmark 1: the agent's CPU time and peak memory for one full scan vs `ps` + `ss`.

Starts 0, then 2,000, then 8,000 extra sleeping processes (a tiny C program) and
5,000 loopback TCP connections (a helper holding both ends on 127.0.0.1: 10,000
sockets), then, in the same run and alternating, measures:

  agent:  audit-agent scan --window 0 --quiet --json OUT   (the whole scan: start-up,
          rules, processes, sockets, executable scan, evaluation, report; no window sleep)
  shell:  ps -eo pid,ppid,user,pcpu,rss,nlwp,lstart,args  +  ss -tanp

CPU time is user+system of each child from os.wait4; peak RSS is the child's ru_maxrss.
Targets (issue 16): agent CPU <= 8x the shell tools at 0 extra processes, <= 2.0x at 2,000,
<= 1.6x at 8,000; peak RSS < 60 MB at 8,000. The agent's state directory (pack and
executable-scan caches) is a temp folder warmed by the first run, as on a host where the
agent runs on a schedule.

The same run also measures the scan without the behaviour checks (packing and the memory of suspect
processes, issue 11: `--no-behaviour-checks`, a hidden option for this bench) and prints what they add,
with the memory coverage line (how many suspects, MiB, seconds). Target: within 10% on a host with no
suspects; a host that runs busy or out-of-place processes pays for their memory scan, bounded.

With --baseline TREE (another checkout, say the last release), that tree's agent is measured in the same
interleaved loop, with its own warmed state directory: a before/after in one run, never against a figure
from another day.

With --threads N, one more process holds N idle threads (a JVM, a data loader's pool): the probe for hidden
processes answers for every thread, which /proc does not list.

    python bench/scan_cost.py [--repeat 7] [--counts 0,2000,8000] [--connections 5000] [--baseline TREE]
                              [--threads N]
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import REPO, Load, agent_command, build_native, measure, median, visible_processes  # noqa: E402

PS = ["ps", "-eo", "pid,ppid,user,pcpu,rss,nlwp,lstart,args"]
SS = ["ss", "-tanp"]


def run(counts: list[int], connections: int, repeat: int, baseline: Path | None = None, threads: int = 0) -> int:
    out = Path(tempfile.mkdtemp(prefix="audit-bench-out-")) / "report.json"
    scan = [*agent_command(), "scan", "--window", "0", "--quiet", "--fail-on", "never", "--json", str(out)]
    # As installed by pip: byte-compiled. Without this a PYTHONDONTWRITEBYTECODE environment (as on
    # the dev box) recompiles every module on each run, ~50 ms that no real installation pays.
    compileall.compile_dir(str(REPO / "audit_agent"), quiet=1)
    print(f"process reader: {'C half (_procread)' if build_native(REPO) else 'Python half'}")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["NO_COLOR"] = "1"
    env["AUDIT_AGENT_STATE_DIR"] = tempfile.mkdtemp(prefix="audit-bench-state-")
    if agent_command()[0] == sys.executable:     # not installed: this checkout's package, wherever it runs from
        env["PYTHONPATH"] = str(REPO)
    before_scan = [*scan, "--no-behaviour-checks"]
    base_env = None
    if baseline is not None:
        compileall.compile_dir(str(baseline / "audit_agent"), quiet=1)
        print(f"baseline's process reader: {'C half (_procread)' if build_native(baseline) else 'Python half'}")
        base_env = {**env, "PYTHONPATH": str(baseline), "AUDIT_AGENT_STATE_DIR": tempfile.mkdtemp(prefix="audit-bench-base-")}
        # -m puts the working directory first on sys.path: both agents run from a folder holding no checkout
        base_scan = [sys.executable, "-m", "audit_agent", *scan[len(agent_command()):]]
    base_lines = []
    split_lines = []
    worst = 0.0
    behaviour_lines = []
    with Load() as load:
        load.connections(connections)
        load.threads(threads)
        started = 0
        print(f"sleeper: {' '.join(load.sleeper)}; {connections} loopback connections (both ends on this host)"
              + (f"; one process with {threads} threads" if threads else ""))
        print(f"{'extra':>6} {'procs':>6} {'agent cpu':>10} {'ps cpu':>7} {'ss cpu':>7} {'shell':>7} {'ratio':>6} "
              f"{'agent rss':>10} {'ps+ss rss':>10} {'agent wall':>10}")
        for count in counts:
            load.sleepers(count - started)
            started = count
            measure(scan, env, cwd=str(out.parent))     # warm the page cache once
            if base_env is not None:
                measure(base_scan, base_env, cwd=str(out.parent))
            agent, ps, ss, before, base = [], [], [], [], []
            for _ in range(repeat):
                if base_env is not None:
                    base.append(measure(base_scan, base_env, cwd=str(out.parent)))
                before.append(measure(before_scan, env, cwd=str(out.parent)))
                a = measure(scan, env, cwd=str(out.parent))
                if a.returncode not in (0, 1):
                    print(f"agent scan failed with exit code {a.returncode}", file=sys.stderr)
                    return 2
                agent.append(a)
                ps.append(measure(PS, capture=True))
                ss.append(measure(SS, capture=True))
            a_cpu = median([c.cpu for c in agent])
            b_cpu = median([c.cpu for c in before])
            memory = next((c["reason"] for c in json.loads(out.read_text())["coverage"] if c["check"] == "memory"), "")
            behaviour_lines.append(f"{count:>6} extra: without {b_cpu * 1000:.0f}ms, with {a_cpu * 1000:.0f}ms "
                                   f"({(a_cpu / b_cpu - 1) * 100 if b_cpu else 0:+.1f}%); memory: {memory}")
            p_cpu, s_cpu = median([c.cpu for c in ps]), median([c.cpu for c in ss])
            a_sys = median([c.system for c in agent])
            shell_sys = median([c.system for c in ps]) + median([c.system for c in ss])
            split_lines.append(f"{count:>6} extra: agent {a_sys * 1000:.0f}ms in the kernel + {(a_cpu - a_sys) * 1000:.0f}ms "
                               f"in Python; ps+ss {shell_sys * 1000:.0f}ms in the kernel + "
                               f"{(p_cpu + s_cpu - shell_sys) * 1000:.0f}ms in user space")
            shell = p_cpu + s_cpu
            ratio = a_cpu / shell if shell else float("inf")
            if base:
                base_cpu = median([c.cpu for c in base])
                base_lines.append(f"{count:>6} extra: baseline {base_cpu * 1000:.0f}ms ({base_cpu / shell:.2f}x, peak "
                                  f"{max(c.max_rss_kb for c in base) / 1024:.1f} MB), this tree {a_cpu * 1000:.0f}ms "
                                  f"({ratio:.2f}x): {(a_cpu / base_cpu - 1) * 100:+.0f}% CPU")
            worst = max(worst, ratio)
            rss = max(c.max_rss_kb for c in agent) / 1024
            shell_rss = (max(c.max_rss_kb for c in ps) + max(c.max_rss_kb for c in ss)) / 1024
            print(f"{count:>6} {visible_processes():>6} {a_cpu * 1000:>8.0f}ms {p_cpu * 1000:>5.0f}ms "
                  f"{s_cpu * 1000:>5.0f}ms {shell * 1000:>5.0f}ms {ratio:>5.2f}x {rss:>8.1f}MB {shell_rss:>8.1f}MB "
                  f"{median([c.wall for c in agent]) * 1000:>8.0f}ms")
    print(f"medians of {repeat} interleaved runs each; targets: <= 8x at 0 extra, <= 2.0x at 2,000, <= 1.6x at 8,000, "
          f"< 60 MB peak RSS; worst ratio {worst:.2f}x")
    print("where the CPU goes (system vs user time of the same runs, medians):")
    print("\n".join(split_lines))
    print("behaviour checks (packing + memory of suspects), agent CPU without vs with, same run:")
    print("\n".join(behaviour_lines))
    print(no_suspect_cost())
    if base_lines:
        print(f"baseline {baseline}, same run, same load:")
        print("\n".join(base_lines))
        shutil.rmtree(base_env["AUDIT_AGENT_STATE_DIR"] if base_env else "", ignore_errors=True)
    out.unlink(missing_ok=True)
    out.parent.rmdir()
    shutil.rmtree(env["AUDIT_AGENT_STATE_DIR"], ignore_errors=True)
    return 0


def no_suspect_cost() -> str:
    """What the behaviour checks cost when no process is a suspect: packing of the out-of-package executables
    and the suspect selection, measured in this process on this host's processes (the memory scan itself is
    then empty). On a shared host other people's busy processes are suspects, so the with/without figures
    above include their memory scans; this line is the cost a host with no suspects pays."""
    import time

    from audit_agent.collect import CollectOptions
    from audit_agent.collect.packing import collect_packing
    from audit_agent.collect.processes import first_reading, read_processes
    from audit_agent.collect.suspects import find_suspects
    from audit_agent.model import Snapshot
    snapshot = Snapshot()
    snapshot.processes, _ = read_processes(first_reading())
    started = time.process_time()
    collect_packing(snapshot, CollectOptions())
    suspects = find_suspects(snapshot)
    spent = time.process_time() - started
    return (f"no-suspect part (packing of {len(snapshot.packing)} out-of-package executables + choosing suspects "
            f"among {len(snapshot.processes)} processes): {spent * 1000:.0f} ms CPU; suspects here: {len(suspects)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--counts", default="0,2000,8000", help="extra sleeping processes, cumulative steps")
    parser.add_argument("--connections", type=int, default=5000, help="loopback connections (two sockets each)")
    parser.add_argument("--baseline", type=Path, help="another checkout whose agent is measured in the same run")
    parser.add_argument("--threads", type=int, default=0, help="also one process with this many idle threads")
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "audit_agent" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of audit-agent (no audit_agent/__init__.py)")
    return run([int(c) for c in args.counts.split(",")], args.connections, args.repeat,
               args.baseline.resolve() if args.baseline else None, args.threads)


if __name__ == "__main__":
    sys.exit(main())
