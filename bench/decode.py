"""Time loading a saved snapshot and report (file -> model objects) at fleet scale.

The snapshot is the demo GPU host from seeds/ (302 processes, 31 connections,
8 GPUs: a real collect's shape), its process and connection lists repeated with
fresh PIDs, names and times until it holds --processes processes (default 2,000).
The report is what the real pipeline makes of that snapshot. Each is loaded with
audit_agent.output.read_snapshot / read_report, the functions `scan --snapshot`,
`report` and fleet tools use, best and median of --repeat runs.

Before/after: run the same script against another checkout, e.g.

    git archive OLD_COMMIT | tar x -C /tmp/old
    PYTHONPATH=/tmp/old python bench/decode.py          # the old decoder
    PYTHONPATH=$PWD python bench/decode.py              # this one
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

SEED = Path(__file__).resolve().parent.parent / "seeds" / "gpu-lab-03.snapshot.json"


def scaled_snapshot(processes: int) -> dict:
    data = json.loads(SEED.read_text(encoding="utf-8"))
    base_procs, base_conns = data["processes"], data["connections"]
    procs, conns = [], []
    for i in range(processes):
        item = copy.deepcopy(base_procs[i % len(base_procs)])
        item["pid"] = 1000 + i
        item["create_time"] = float(item.get("create_time") or 0.0) + i
        item["cmdline"] = item["cmdline"] + [f"--job={i}"] if item["cmdline"] else []
        procs.append(item)
        if i < len(base_conns) * (processes // len(base_procs) + 1):
            conn = copy.deepcopy(base_conns[i % len(base_conns)])
            conn["pid"] = 1000 + i
            conns.append(conn)
    data["processes"], data["connections"] = procs, conns
    return data


def timed(load, path: Path, repeat: int) -> list[float]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        load(path)
        runs.append(time.perf_counter() - start)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from audit_agent.model import Severity
    from audit_agent.output import read_report, read_snapshot
    from audit_agent.pipeline import load_inputs, run_scan

    with tempfile.TemporaryDirectory() as tmp:
        snapshot_path = Path(tmp) / "snapshot.json"
        snapshot_path.write_text(json.dumps(scaled_snapshot(args.processes)), encoding="utf-8")
        snapshot = read_snapshot(snapshot_path)
        report = run_scan(snapshot, load_inputs(None, None), Severity.HIGH)
        report_path = Path(tmp) / "report.json"
        report_path.write_text(json.dumps(report.to_dict()), encoding="utf-8")
        print(f"snapshot: {len(snapshot.processes)} processes, {len(snapshot.connections)} connections, "
              f"{snapshot_path.stat().st_size / 1e6:.2f} MB; report: {len(report.findings)} findings, "
              f"{report_path.stat().st_size / 1e3:.0f} kB; Python {sys.version.split()[0]}")
        for what, load, path in (("read_snapshot", read_snapshot, snapshot_path),
                                 ("read_report", read_report, report_path)):
            runs = timed(load, path, args.repeat)
            print(f"{what:<14} best {min(runs) * 1000:8.1f} ms   median {statistics.median(runs) * 1000:8.1f} ms"
                  f"   ({args.repeat} runs)")
        assert read_snapshot(snapshot_path).to_dict() == snapshot.to_dict()
    return 0


if __name__ == "__main__":
    sys.exit(main())
