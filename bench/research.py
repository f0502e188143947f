"""Research-system benchmark: replay bench/corpus/research/cases.yaml through the evaluator.

Prints, per expectation (research / miner / quiet), how many entries the engine judged as expected,
and every miss by id and source, separately for entries written before the rules (designed) and
after, from other sources (`designed: false`). Exit status 0 always: it prints figures.

    .venv/bin/python bench/research.py [--corpus FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml

from audit_agent.evaluate import evaluate
from audit_agent.model import (
    Coverage,
    CoverageStatus,
    HostInfo,
    ProcessInfo,
    Severity,
    Snapshot,
)
from audit_agent.pipeline import load_inputs

PID = 4242
AT = 1_750_000_000.0


def snapshot_of(entry: dict) -> Snapshot:
    def process(pid: int, argv: list) -> ProcessInfo:
        argv = [str(a) for a in argv]
        first = argv[0]
        return ProcessInfo(pid=pid, ppid=1, name=first.rsplit("/", 1)[-1][:15],
                           exe=first if first.startswith("/") else f"/usr/local/bin/{first.rsplit('/', 1)[-1]}",
                           cmdline=argv, username="lab", cpu_percent=50.0, allowed_cpus=8,
                           environ={str(k): str(v) for k, v in (entry.get("environ") or {}).items()} if pid == PID else {})
    procs = [process(PID, entry["cmdline"])] + [process(PID + 1 + i, argv) for i, argv in enumerate(entry.get("with") or [])]
    return Snapshot(collected_at=AT, window_seconds=60.0, host=HostInfo(hostname="lab-node", os="Linux", cpu_threads=8),
                    processes=procs, coverage=[Coverage("processes", CoverageStatus.OK), Coverage("network", CoverageStatus.OK)])


def judged(entry: dict, inputs) -> str:  # type: ignore[no-untyped-def]
    report = evaluate(snapshot_of(entry), inputs.rules, inputs.policy, [], now=AT)
    about = [f for f in report.findings if f.subject.pid == PID]
    if any(f.category == "research" for f in about):
        return "research"
    if any(f.severity.rank >= Severity.HIGH.rank for f in about):
        return "miner"
    if any(f.severity.rank >= Severity.LOW.rank for f in about):
        return "flagged"
    return "quiet"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(REPO / "bench" / "corpus" / "research" / "cases.yaml"))
    args = parser.parse_args()
    entries = yaml.safe_load(Path(args.corpus).read_text(encoding="utf-8"))["entries"]
    inputs = load_inputs()
    rows: dict[tuple[str, bool], list[int]] = {}
    misses = []
    for entry in entries:
        got = judged(entry, inputs)
        designed = entry.get("designed", True)
        key = (entry["expect"], designed)
        rows.setdefault(key, [0, 0])
        rows[key][1] += 1
        if got == entry["expect"]:
            rows[key][0] += 1
        else:
            misses.append(f"  {entry['id']} expect {entry['expect']}, got {got}: {' '.join(map(str, entry['cmdline']))[:90]}"
                          f"  ({entry['source']})")
    print(f"research benchmark: {len(entries)} entries, rule pack {inputs.rules.pack.name} {inputs.rules.pack.version}")
    print(f"{'expect':<9} {'entries':<22} {'as expected':>11}")
    for (expect, designed), (ok, total) in sorted(rows.items()):
        label = "designed for" if designed else "not designed for"
        print(f"{expect:<9} {label:<22} {ok:>5}/{total:<5}")
    print(f"\nmisses ({len(misses)}):")
    print("\n".join(misses) or "  none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
