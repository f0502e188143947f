"""Known false-positive traps and heavy research workloads must produce no high finding."""
from __future__ import annotations

import pytest

from audit_agent.model import Severity, Verdict
from tests.factories import conn, gpu, proc, scan, snapshot

TRAPS = [
    "gcc -O2 -c src/pool.c -o pool.o",
    "cc -o pool src/pool.o src/main.o -lpthread",
    "kubectl get nodepool -o pool.yaml",
    "kubectl get pods -n mining-research -o yaml",
    "curl -sSL -o pool.bin https://example.org/pool.bin",
    "zpool import -c /etc/zfs/zpool.cache -aN",
    "/sbin/zfs mount -a",
    "python -m http.server 8080",
    "java -Xmx8g -jar /opt/app/server.jar --server.port=8888",
]

HEAVY_RESEARCH = [
    ("torchrun", "torchrun --nproc_per_node=8 --nnodes=2 --rdzv_endpoint=10.0.0.1:29500 train.py --epochs 90 --batch-size 256"),
    ("python3", "python3 -m torch.distributed.run --nproc_per_node 4 train_llm.py --algo ppo --lr 3e-4"),
    ("gmx", "gmx mdrun -deffnm md_0_1 -nb gpu -ntomp 8"),
    ("cc1plus", "/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus -quiet -O2 pool_allocator.cpp -o /tmp/ccX.s"),
    ("make", "make -j16 all"),
    ("ffmpeg", "ffmpeg -i input.mkv -c:v libx265 -preset slow -crf 22 -threads 8 out.mkv"),
    ("geth", "geth --dev --http --http.api eth,net,web3 --dev.period 1"),
    ("bitcoind", "bitcoind -regtest -daemon -rpcuser=test -rpcpassword=test -fallbackfee=0.0002"),
    ("hashcat", "hashcat -m 0 -a 0 hashes.txt rockyou.txt --force"),
    ("boinc", "/usr/bin/boinc --dir /var/lib/boinc-client"),
]


@pytest.mark.parametrize("cmdline", TRAPS)
def test_trap_command_lines_stay_quiet(cmdline):
    report = scan(snapshot([proc(100, cmdline, cpu=95.0)]))
    assert report.findings == [], [f.reasons for f in report.findings]


@pytest.mark.parametrize("port", [80, 443, 8080, 8888])
def test_generic_port_alone_is_not_a_finding(port):
    report = scan(snapshot([proc(100, "/usr/bin/python3 crawler.py", cpu=30.0)],
                           [conn(100, "104.18.32.7", port)]))     # a CDN address on a web port
    assert report.findings == []
    assert report.verdict == Verdict.COMPLIANT


@pytest.mark.parametrize("name, cmdline", HEAVY_RESEARCH)
def test_heavy_research_workload_is_not_high(name, cmdline):
    busy = proc(200, cmdline, name=name, cpu=790.0, terminal="", num_threads=16)
    report = scan(snapshot([busy], [conn(200, "10.0.0.1", 29500)], [gpu(0, 99.0, [200])], window=30.0))
    high = [f for f in report.findings if f.severity.rank >= Severity.HIGH.rank]
    assert high == [], [f.reasons for f in high]
    assert report.verdict != Verdict.NON_COMPLIANT
