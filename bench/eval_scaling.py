"""Benchmark 2: evaluate() on a synthetic snapshot against the default packs grown to 20,000 pool domains.

Builds, in a temp dir, the default rule pack plus one synthetic YAML file of
realistic-looking (but invented) rules: a domains rule with ~20,000 pool host
names and cmdline rules bringing the pack to 500 command-line patterns. Then
times evaluate() (pure, no I/O) on synthetic snapshots of 2,500 / 5,000 /
10,000 processes with 5 connections per process (12,500 / 25,000 / 50,000),
with the default pack (~50 patterns) and with the grown one (500 patterns).

Target (issue 6): under 1 s for 10,000 processes + 50,000 connections, and
linear in processes + connections (cost per item flat across sizes, and not
10x when the patterns grow 10x).

    .venv/bin/python bench/eval_scaling.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audit_agent.evaluate import evaluate  # noqa: E402
from audit_agent.model import Connection, Coverage, CoverageStatus, HostInfo, ProcessInfo, Snapshot  # noqa: E402
from audit_agent.rules.compiler import CompiledRules  # noqa: E402
from audit_agent.rules.loader import default_rules_dir, load_pack  # noqa: E402

SIZES = (2500, 5000, 10000)
CONNECTIONS_PER_PROCESS = 5
TARGET_PATTERNS = 500
TARGET_DOMAINS = 20000
WORDS = ["alpha", "nova", "hash", "rig", "core", "flux", "zen", "terra", "blue", "rapid", "north", "delta",
         "pico", "mega", "coin", "block", "ore", "vein", "quarry", "lode", "nugget", "forge", "spark", "volt"]
TLDS = ["com", "net", "org", "io", "cc", "pro", "xyz", "ru", "cn", "de", "fr", "co"]


def domain(rng: random.Random, index: int) -> str:
    return f"{rng.choice(WORDS)}{rng.choice(WORDS)}{index}.{rng.choice(TLDS)}"


def synthetic_pack(directory: Path, extra_patterns: int, domains: int, seed: int = 7) -> None:
    """Write synthetic.yaml next to a copy of the default pack."""
    rng = random.Random(seed)
    lines = ["# synthetic rules for bench/eval_scaling.py: invented names, realistic shapes", "rules:"]
    lines += ["  - id: AA-SYN-POOL-001", "    title: Synthetic pool host name", "    category: network",
              "    severity: high", "    confidence: 0.85",
              '    reason: "The {field} names the synthetic pool host {value!r} ({matched})."',
              "    reference: https://example.invalid/synthetic", "    match:", "      kind: domains",
              "      entries:"]
    for i in range(domains):
        lines.append(f"      - {{domain: {domain(rng, i)}, type: pool, status: active, match: suffix}}")
    lines += ["    examples:", "      match: [x]", "      no_match: [y]"]
    shapes = [
        r"(?<![\w-])--{w}-{v}-level\b",
        r"(?:^|\s)--{w}{i}(?:=|\s+)\S+",
        r"(?:^|\s)-{w}{i}\s+\d+",
        r"stratum\+{w}{i}://",
        r"{w}miner-{i}\.\d+\.\d+-linux",
        r"(?<![\w.-]){w}{v}{i}\.(?:sh|bin|elf)\b",
        r"^(?=.*(?:^|\s)--{w}{i}(?:=|\s))(?=.*(?:^|\s)-o\s+\S+:\d{{2,5}})",
        r"/opt/{w}{v}{i}/bin/",
    ]
    per_rule = 10
    for r in range((extra_patterns + per_rule - 1) // per_rule):
        lines += [f"  - id: AA-SYN-CMD-{r + 1:03d}", f"    title: Synthetic miner option family {r + 1}",
                  "    category: miner", "    severity: high", "    confidence: 0.8",
                  '    reason: "The {field} {value!r} carries a synthetic miner option ({matched})."',
                  "    reference: https://example.invalid/synthetic", "    match:", "      kind: cmdline",
                  "      patterns:"]
        for p in range(min(per_rule, extra_patterns - r * per_rule)):
            i = r * per_rule + p
            shape = shapes[i % len(shapes)]
            text = shape.replace("{w}", rng.choice(WORDS)).replace("{v}", rng.choice(WORDS)).replace("{i}", str(i))
            text = text.replace("{{", "{").replace("}}", "}")
            lines.append("        - '" + text.replace("'", "''") + "'")
        lines += ["    examples:", "      match: [x]", "      no_match: [y]"]
    (directory / "synthetic.yaml").write_text("\n".join(lines) + "\n")


COMMANDS = [
    "python3 train.py --config configs/resnet50.yaml --epochs 90 --data /data/imagenet --out /scratch/{u}/run{n}",
    "/usr/bin/python3 -m torch.distributed.run --nproc_per_node 4 finetune.py --model llama-7b --lr 2e-5",
    "/usr/lib/jvm/java-17-openjdk/bin/java -Xmx8g -jar /opt/spark/jars/spark-worker.jar --port 70{n2}",
    "jupyter-lab --no-browser --port 88{n2} --ServerApp.token=abcdef{n}",
    "/usr/sbin/sshd -D -o AuthorizedKeysCommand /usr/bin/sss_ssh_authorizedkeys",
    "bash -c cd /home/{u}/proj && make -j8 all",
    "/opt/conda/envs/md/bin/gmx mdrun -deffnm npt_{n} -ntomp 8 -gpu_id 0",
    "Rscript analysis_{n}.R --input /data/survey.csv --bootstrap 10000",
    "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock",
    "sleep 3600",
    "/usr/lib/systemd/systemd-journald",
    "nginx: worker process",
]
MINERS = [
    "./xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A -p x --donate-level 1",
    "/tmp/.x/kworker -c /tmp/.x/config.json",
    "python3 train.py --epochs 3 --pool gulf.moneroocean.stream:10128 --user 4xyz",
]


def synthetic_snapshot(processes: int, rng: random.Random) -> Snapshot:
    procs = []
    for pid in range(1000, 1000 + processes):
        user = f"user{rng.randrange(200)}"
        if rng.random() < 0.002:
            text = rng.choice(MINERS)
        else:
            text = rng.choice(COMMANDS).format(u=user, n=rng.randrange(10000), n2=rng.randrange(10, 99))
        argv = text.split()
        name = Path(argv[0]).name[:15]
        procs.append(ProcessInfo(pid=pid, ppid=1, name=name, exe=argv[0] if argv[0].startswith("/") else f"/usr/bin/{name}",
                                 cmdline=argv, username=user, uid=1000 + int(user[4:]), cwd=f"/home/{user}",
                                 create_time=1.7e9, status="sleeping", nice=0, num_threads=rng.choice([1, 4, 16]),
                                 rss_bytes=rng.randrange(1 << 20, 1 << 32), cpu_percent=rng.choice([0.0, 0.3, 98.0, 390.0]),
                                 cpu_seconds=1.0, allowed_cpus=64, cgroup=f"/user.slice/user-{1000 + int(user[4:])}.slice"))
    conns = []
    ports = [443, 22, 5432, 6379, 8080, 9092, 27017, 3306, 53, 11211]
    for index in range(processes * CONNECTIONS_PER_PROCESS):
        pid = 1000 + (index % processes)
        port = 3333 if rng.random() < 0.001 else rng.choice(ports)
        conns.append(Connection(pid=pid, protocol="tcp", local_address="10.1.2.3", local_port=30000 + index % 30000,
                                remote_address=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                                remote_port=port, state="ESTABLISHED"))
    return Snapshot(agent_version="bench", collected_at=1.7e9, window_seconds=5.0,
                    host=HostInfo(hostname="bench-host", os="Linux", cpu_threads=64),
                    processes=procs, connections=conns,
                    coverage=[Coverage("processes", CoverageStatus.OK, inspected=processes),
                              Coverage("network", CoverageStatus.OK, inspected=len(conns))])


def count_patterns(rules: CompiledRules) -> int:
    return sum(len(rule.params["patterns"]) for rule in rules.pack.by_kind("cmdline"))


def time_evaluate(snapshot: Snapshot, rules: CompiledRules, repeat: int) -> tuple[float, int]:
    times, findings = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        report = evaluate(snapshot, rules, now=snapshot.collected_at)
        times.append(time.perf_counter() - start)
        findings = len(report.findings)
    return statistics.median(times), findings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-rules-"))
    try:
        default = CompiledRules(load_pack())
        grown_dir = tmp / "grown"
        shutil.copytree(default_rules_dir(), grown_dir, ignore=shutil.ignore_patterns("yara", "*.md"))
        existing = count_patterns(default)
        existing_domains = len(default.domain_suffix) + len(default.domain_exact)
        synthetic_pack(grown_dir, TARGET_PATTERNS - existing, TARGET_DOMAINS - existing_domains)
        start = time.perf_counter()
        grown = CompiledRules(load_pack(grown_dir))
        load_s = time.perf_counter() - start
        print(f"default pack: {count_patterns(default)} cmdline patterns, {existing_domains} domains")
        print(f"grown pack:   {count_patterns(grown)} cmdline patterns, "
              f"{len(grown.domain_suffix) + len(grown.domain_exact)} domains (load + compile {load_s:.2f}s)")
        print(f"{'processes':>9} {'conns':>6} {'patterns':>8} {'evaluate':>9} {'us/item':>8} {'findings':>8}")
        rng = random.Random(42)
        results: dict[tuple[int, int], float] = {}
        for size in SIZES:
            snapshot = synthetic_snapshot(size, rng)
            items = size + len(snapshot.connections)
            for rules in (default, grown):
                seconds, findings = time_evaluate(snapshot, rules, args.repeat)
                results[(size, count_patterns(rules))] = seconds
                print(f"{size:>9} {len(snapshot.connections):>6} {count_patterns(rules):>8} {seconds:>8.3f}s "
                      f"{seconds / items * 1e6:>8.2f} {findings:>8}")
        big = results[(SIZES[-1], count_patterns(grown))]
        small = results[(SIZES[0], count_patterns(grown))]
        ratio_patterns = big / results[(SIZES[-1], count_patterns(default))]
        print(f"10,000 processes + 50,000 connections, 500 patterns, 20,000 domains: {big:.3f}s (target < 1 s)")
        print(f"4x the processes+connections -> {big / small:.2f}x the time (linear = 4x); "
              f"10x the patterns -> {ratio_patterns:.2f}x the time")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
