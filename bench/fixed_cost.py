"""Benchmark: the fixed cost of a one-shot scan, part by part (issue 16), each in a fresh process.

A quiet host's scan is mostly fixed cost: starting up (imports, the shipped data files, the rule
pack from the pack cache), the persistence check (reading every place, resolving what each line
starts, then judging the lines), the dpkg lookup of the identity check and the hidden-process
search. This runs each part in-process, in fresh processes, and prints the CPU time of each (the
minimum over --repeat runs: the machine is noisy, a part cannot take less than it needs).
The state directory is a temporary folder warmed by the first run, as on a host where the agent
runs on a schedule.

    python bench/fixed_cost.py [--repeat 7] [--trees PATH,PATH]   (several trees: compared, interleaved)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARTS = ("imports", "data files", "rule pack", "persistence read", "persistence judged", "dpkg lookup",
         "hidden processes")
CHILD = r"""
import json, os, sys, time
from pathlib import Path
clock = time.process_time
marks = [clock()]
import audit_agent.cli, audit_agent.evaluate, audit_agent.pipeline, audit_agent.render.json_report
import audit_agent.collect.persistence, audit_agent.collect.programs, audit_agent.collect.stealth
import audit_agent.collect.processes, audit_agent.collect.network, audit_agent.collect.binaries
marks.append(clock())
from audit_agent.detect import coded_checks
from audit_agent.i18n import coverage_reasons
coverage_reasons("en"); coded_checks()
marks.append(clock())
from audit_agent.pipeline import load_inputs
rules = load_inputs().rules
marks.append(clock())
from audit_agent.collect import deadline
from audit_agent.collect.persistence import read_persistence
from audit_agent.collect.persistence.baseline import read_baseline
deadline.start_scan(None)
out = read_persistence(Path("/etc"), scan_strings=rules.signature_strings())
marks.append(clock())
from audit_agent.detect import Context
from audit_agent.detect import persistence as judged
from audit_agent.model import Snapshot
from audit_agent.policy import Policy
snapshot = Snapshot(persistence=out.entries, persistence_baseline=read_baseline(out.root))
judged.signals(Context.build(snapshot, rules, Policy()))
marks.append(clock())
from audit_agent.collect import programs
wanted = {"/usr/local/bin/python3", "/opt/app/bin/java"}      # executables no package lists
try:
    programs.read_package_lists(programs.DPKG_INFO, wanted, Path(os.environ["AUDIT_AGENT_STATE_DIR"]))
except TypeError:       # a tree without the kept answers
    programs.read_package_lists(programs.DPKG_INFO, wanted)
marks.append(clock())
from audit_agent.collect.stealth import HiddenSearch, find_hidden
find_hidden(HiddenSearch(delay=0))
marks.append(clock())
print(json.dumps({"marks": marks, "entries": len(out.entries)}))
"""


def run(tree: Path, state: str) -> dict[str, float]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(tree), AUDIT_AGENT_STATE_DIR=state)
    result = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, cwd="/",
                            check=True)
    marks = json.loads(result.stdout.strip().splitlines()[-1])["marks"]
    parts = {name: marks[i + 1] - marks[i] for i, name in enumerate(PARTS)}
    parts["start (before imports)"] = marks[0]
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--trees", default=str(REPO), help="comma-separated source trees to compare")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    states = {tree: tempfile.mkdtemp(prefix="audit-bench-fixed-") for tree in trees}
    runs: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
    for tree in trees:
        run(tree, states[tree])            # warms the pack cache, the data cache and the page cache
    for _ in range(args.repeat):
        for tree in trees:
            runs[tree].append(run(tree, states[tree]))
    names = ["start (before imports)", *PARTS]
    print(f"{'CPU ms, min of ' + str(args.repeat):<24}" + "".join(f"{tree.name[-14:]:>16}" for tree in trees))
    for name in [*names, "total"]:
        cells = []
        for tree in trees:
            values = [sum(r.values()) if name == "total" else r[name] for r in runs[tree]]
            cells.append(f"{min(values) * 1000:16.1f}")
        print(f"{name:<24}" + "".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
