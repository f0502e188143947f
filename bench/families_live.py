"""Live figures for the storage-farming and new-coin families: start the end-to-end stand-ins (Chia, Filecoin,
Subspace, Storj, Qubic and the benign ceph-osd / MinIO / dataset host, with 100 GiB sparse artefacts), run one
real scan of this host, and print what was found for each stand-in, the farmed capacity, the coverage of the
family checks and the scan's wall time. Everything it starts is ended by PID and its files are removed.

    PYTHONPATH=$PWD .venv/bin/python bench/families_live.py
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.test_e2e_families import Host, build  # noqa: E402


def main() -> int:
    base = "/var/lib" if os.access("/var/lib", os.W_OK) else None
    host = Host(Path(tempfile.mkdtemp(prefix="aa-farm-bench-", dir=base)))
    os.chmod(host.root, 0o755)
    try:
        started = time.monotonic()
        farm = build(host)
        elapsed = time.monotonic() - started
    finally:
        host.stop()
    report = farm["report"]
    print(f"one scan with {len(farm['pids'])} stand-ins running (setup + scan {elapsed:.1f} s); "
          f"{report['process_count']} processes on the host, verdict {report['verdict']}")
    print(f"\n{'stand-in':<16} {'pid':>7}  {'category':<16} {'severity':<8} conf  rules")
    for name, pid in farm["pids"].items():
        found = [f for f in report["findings"] if f["subject"]["pid"] == pid]
        if not found:
            print(f"{name:<16} {pid:>7}  {'-':<16} {'quiet':<8}")
            continue
        finding = found[0]
        print(f"{name:<16} {pid:>7}  {finding['category']:<16} {finding['severity']:<8} {finding['confidence']:.2f}  "
              f"{', '.join(finding['rule_ids'])}")
    print("\nfarmed capacity found (evidence of the -FILE rules):")
    seen = set()
    for finding in report["findings"]:
        for evidence in finding["evidence"]:
            if evidence["rule_id"].endswith("-FILE") and evidence["value"] not in seen:
                seen.add(evidence["value"])
                print(f"  {evidence['matched']}: {evidence['value'][:160]}")
    print("\ncoverage of the family checks:")
    for coverage in report["coverage"]:
        if coverage["check"] in ("family_configs", "artefacts"):
            print(f"  {coverage['check']}: {coverage['status']} (inspected {coverage['inspected']}) {coverage['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
