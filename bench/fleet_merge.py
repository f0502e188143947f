"""Time `audit-agent fleet` over N realistic host reports (default 2,000).

Reports are made by the real pipeline from synthetic snapshots (a clean host, a
host with a hidden xmrig-style miner, a GPU host with registered research and a
host with partial coverage), then varied per host: name, time (5% stale),
hardware (10% GPU nodes), load samples. Prints the merge time, the HTML/JSON
render time and the input size.

    .venv/bin/python bench/fleet_merge.py --hosts 2000
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audit_agent.fleet import merge  # noqa: E402
from audit_agent.fleet_html import render_html  # noqa: E402
from audit_agent.model import Coverage, CoverageStatus, FindingStatus, LoadSample  # noqa: E402
from tests.factories import conn, proc, scan, snapshot  # noqa: E402

WALLET = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
GPU_MODELS = ["NVIDIA A100-SXM4-80GB", "NVIDIA V100-PCIE-32GB", "NVIDIA GeForce RTX 3090", "NVIDIA H100 80GB HBM3"]


def templates() -> dict[str, dict]:
    """A few realistic reports from the real evaluate(), as JSON dicts."""
    busy = [proc(100 + i, f"/usr/bin/python3 train_{i}.py --epochs 90", cpu=80.0) for i in range(3)]
    load = [LoadSample(t=0.5 * i, cpu_percent=40.0 + i) for i in range(1, 11)]
    clean = scan(snapshot(busy + [proc(2, "/usr/sbin/sshd -D", user="root")], load=load))
    miner = scan(snapshot(busy + [proc(4242, f"/tmp/.x/kworker -o stratum+tcp://pool.supportxmr.com:3333 -u {WALLET} "
                                            "-p x --donate-level 1", name="kworker/0:1", cpu=195.0)],
                          [conn(4242, "94.130.12.27", 3333)], load=load))
    gaps = scan(snapshot(busy, load=load, coverage=[
        Coverage("processes", CoverageStatus.PARTIAL, "12 of 300 processes could not be read", 288, 12),
        Coverage("network", CoverageStatus.OK)]))
    out = {name: report.to_dict() for name, report in (("clean", clean), ("miner", miner), ("gaps", gaps))}
    registered = copy.deepcopy(out["miner"])
    for finding in registered["findings"]:
        finding["status"] = FindingStatus.REGISTERED.value
        finding["filing"] = "RS-2026-017"
    registered["verdict"] = "compliant"
    registered["filings"] = [{"number": "RS-2026-017", "approved_by": "Provincial Development and Reform Commission",
                              "project": "Blockchain consensus research", "discipline": "Computer science",
                              "responsible": "Prof. Li", "contact": "li@example.edu", "hosts": ["gpu-*"],
                              "users": ["alice"], "workloads": ["xmrig"], "cpu_cores": 16, "gpus": 2,
                              "valid_from": "2026-01-01", "valid_until": "2027-12-31"}]
    out["registered"] = registered
    return out


def generate(directory: Path, hosts: int, seed: int = 7) -> int:
    """Write `hosts` report files; return the bytes written."""
    rng = random.Random(seed)
    base = templates()
    now = time.time()
    total = 0
    for i in range(hosts):
        kind = rng.choices(["clean", "miner", "gaps", "registered"], weights=[80, 4, 12, 4])[0]
        report = copy.deepcopy(base[kind])
        gpu_node = kind == "registered" or rng.random() < 0.1
        name = f"{'gpu' if gpu_node else 'node'}-{i:04d}.hpc.example.edu"
        report["host"]["hostname"] = name
        age = rng.uniform(40, 90) * 86400 if rng.random() < 0.05 else rng.uniform(0, 25) * 86400
        report["collected_at"] = report["generated_at"] = now - age
        cores = rng.choice([16, 32, 64, 128])
        report["host"].update(cpu_model="AMD EPYC 7763", cpu_cores=cores, cpu_threads=cores * 2,
                              memory_total_bytes=cores * 8 << 30, os_release="Ubuntu 22.04.4 LTS")
        if gpu_node:
            model = rng.choice(GPU_MODELS)
            report["host"]["gpus"] = [{"index": g, "name": model, "uuid": f"GPU-{i:04d}-{g}", "vendor": "nvidia",
                                       "driver": "550.54.15", "memory_total_bytes": 80 << 30,
                                       "memory_used_bytes": 10 << 30, "utilization_percent": 55.0,
                                       "utilization_samples": [55.0] * 10, "processes": []} for g in range(rng.choice([2, 4, 8]))]
        report["profile"] = {"institution": "Example University", "department": rng.choice(["Physics", "CS", "Biology"])}
        data = json.dumps(report, indent=1).encode()
        (directory / f"{name}.json").write_bytes(data)
        total += len(data)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="merges to time; the best and median are printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        size = generate(Path(tmp), args.hosts)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            fleet = merge([tmp], stale_days=31)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        html = render_html(fleet, "en")
        html_time = time.perf_counter() - start
        start = time.perf_counter()
        text = json.dumps(fleet.to_dict(), indent=1)
        json_time = time.perf_counter() - start
    times.sort()
    print(f"{args.hosts} host reports, {size / 2**20:.1f} MiB of JSON ({size / args.hosts / 1024:.1f} KiB each)")
    print(f"merge: best {times[0]:.3f} s, median {times[len(times) // 2]:.3f} s over {args.repeat} runs "
          f"({len(fleet.hosts)} hosts, {len(fleet.stale_hosts)} stale, {len(fleet.errors)} errors, "
          f"{len(fleet.registered_systems)} registered systems)")
    print(f"render: HTML {html_time:.3f} s ({len(html) / 2**20:.1f} MiB), JSON {json_time:.3f} s ({len(text) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
