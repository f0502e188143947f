"""A paired before/after of one full scan: two checkouts alternate beside the same load, many times.

scan_cost.py gives medians of 7 runs per configuration; on a busy 2-core host one configuration's median
moves by 10% between runs of the bench, as much as a round's work. Here each pair runs both trees back
to back (the order swapped every pair), ps + ss runs in the same loop, and the paired difference is
reported with its quartiles: what a change is worth, less what the host did meanwhile.

Each tree runs as `python -m audit_agent scan --window 0 --quiet --json OUT` from its own checkout
(byte-compiled, its C half built as an installation builds it) with its own warmed state directory, as
on a host where the agent runs on a schedule. Load: COUNT extra sleepers and 5,000 loopback connections.

    python bench/scan_ab.py BEFORE_TREE AFTER_TREE [--processes 2000] [--pairs 15] [--connections 5000]
"""
from __future__ import annotations

import argparse
import compileall
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import Load, build_native, measure, median  # noqa: E402

PS = ["ps", "-eo", "pid,ppid,user,pcpu,rss,nlwp,lstart,args"]
SS = ["ss", "-tanp"]


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that runs `tree`'s agent: its package first on the path, a state folder of its own."""
    compileall.compile_dir(str(tree / "audit_agent"), quiet=1)
    build_native(tree)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(NO_COLOR="1", PYTHONPATH=str(tree), AUDIT_AGENT_STATE_DIR=tempfile.mkdtemp(prefix="audit-ab-state-"))
    return env


def quartiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 4], median(ordered), ordered[(3 * len(ordered)) // 4]


def run(before: Path, after: Path, processes: int, pairs: int, connections: int) -> int:
    out = Path(tempfile.mkdtemp(prefix="audit-ab-out-"))
    scan = [sys.executable, "-m", "audit_agent", "scan", "--window", "0", "--quiet", "--fail-on", "never",
            "--json", str(out / "report.json")]
    trees = {"before": tree_env(before), "after": tree_env(after)}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    shell: list[float] = []
    try:
        with Load() as load:
            load.connections(connections)
            load.sleepers(processes)
            for env in trees.values():          # warm each state folder and the page cache
                measure(scan, env, cwd=str(out))
            for pair in range(pairs):
                order = list(trees.items()) if pair % 2 == 0 else list(trees.items())[::-1]
                for name, env in order:
                    cost = measure(scan, env, cwd=str(out))
                    if cost.returncode not in (0, 1):
                        print(f"the {name} tree's scan failed with exit code {cost.returncode}", file=sys.stderr)
                        return 2
                    cpu[name].append(cost.cpu)
                shell.append(measure(PS, capture=True).cpu + measure(SS, capture=True).cpu)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        for env in trees.values():
            shutil.rmtree(env["AUDIT_AGENT_STATE_DIR"], ignore_errors=True)
    shell_cpu = median(shell)
    print(f"{processes} extra processes, {connections} loopback connections, {pairs} pairs; "
          f"ps+ss median {shell_cpu * 1000:.0f} ms")
    for name, tree in (("before", before), ("after", after)):
        low, mid, high = quartiles(cpu[name])
        print(f"{name:>6} {tree}: median {mid * 1000:.0f} ms ({mid / shell_cpu:.2f}x ps+ss), "
              f"quartiles {low * 1000:.0f} / {high * 1000:.0f} ms")
    low, mid, high = quartiles([b - a for a, b in zip(cpu["before"], cpu["after"])])
    print(f"after - before, paired: median {mid * 1000:+.0f} ms, quartiles {low * 1000:+.0f} / {high * 1000:+.0f} ms")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--connections", type=int, default=5000)
    args = parser.parse_args()
    for tree in (args.before, args.after):
        if not (tree / "audit_agent" / "__init__.py").is_file():
            print(f"scan_ab: {tree}: not a checkout of audit-agent (no audit_agent/__init__.py)", file=sys.stderr)
            return 2
    if args.pairs < 1 or args.processes < 0:
        print("scan_ab: --pairs must be at least 1 and --processes not negative", file=sys.stderr)
        return 2
    return run(args.before.resolve(), args.after.resolve(), args.processes, args.pairs, args.connections)


if __name__ == "__main__":
    sys.exit(main())
