"""End to end (issue 11): miners that carry no known string are found by what mining is, and heavy benign
work stays quiet. The C stand-in (tests/standin/cminer.c) keeps its strings encrypted on disk, talks Stratum
over TLS to a pool on 127.0.0.1, and is packed, renamed, run from memfd, throttled or paused as the test asks.
Every process started here is ended by its PID; assertions are about those PIDs only."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import MONERO_WALLET, have_compiler, start_miner
from tests.standin.cbuild import build_cminer
from tests.standin.pool import StratumPool

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux") or not have_compiler(),
                                 reason="needs Linux /proc and a C compiler")]
NEW_RULES = {"AA-MEM-001", "AA-MEM-002", "AA-MEM-003", "AA-PACK-001", "AA-CPU-001", "AA-CPU-002", "AA-LONG-001",
             "AA-IDENT-001"}


@pytest.fixture
def tls_pool(tmp_path):
    with StratumPool(0, tls=tmp_path / "cert") as running:
        yield running


def scan(agent, tmp_path: Path, *extra: str, thresholds: dict | None = None) -> dict:
    out = tmp_path / "report.json"
    args = ["scan", "--window", "2", "--json", str(out), "--quiet", "--fail-on", "never", *extra]
    if thresholds:
        config = tmp_path / "config.yaml"
        config.write_text("thresholds:\n" + "".join(f"  {k}: {v}\n" for k, v in thresholds.items()))
        args += ["--config", str(config)]
    result = agent(*args, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(out.read_text())


def finding(report: dict, pid: int) -> dict:
    mine = [f for f in report["findings"] if f["subject"]["pid"] == pid]
    assert len(mine) == 1, f"expected one finding for pid {pid}, got {mine}"
    return mine[0]


def start_cminer(processes, exe: Path, *options: str):
    return processes.start([str(exe), *options, "--seconds", "240"], wait_for_line="ready")


def test_packed_renamed_tls_miner_is_found_in_memory(agent, tls_pool, processes, tmp_path):
    """Items 1, 3, 7: nothing on disk or in argv says miner; memory, packing and the name lie do."""
    exe = build_cminer(tmp_path / "bin", port=tls_pool.port, pack="scrubbed")
    assert b"stratum" not in exe.read_bytes()
    miner = start_cminer(processes, exe, "--tls", "--name", "python3", "--blank-argv", "--threads", "2")
    report = scan(agent, tmp_path)
    found = finding(report, miner.pid)
    assert {"AA-MEM-001", "AA-PACK-001", "AA-IDENT-001"} <= set(found["rule_ids"])
    assert found["severity"] in ("high", "critical")
    memory = [e for e in found["evidence"] if e["field"] == "memory"]
    assert any("stratum+ssl://" in e["value"] for e in memory), "the decoded pool scheme was read from memory"
    coverage = next(c for c in report["coverage"] if c["check"] == "memory")
    assert "MiB in" in coverage["reason"], "time and bytes spent are reported"
    assert tls_pool.logins and tls_pool.logins[0]["login"] == MONERO_WALLET


def test_memfd_randomx_miner_named_like_a_kernel_thread(agent, tls_pool, processes, tmp_path):
    """Item 2: the RandomX memory shape, from a miner that runs from memory with UPX's marks on its file."""
    exe = build_cminer(tmp_path / "bin", port=tls_pool.port, pack="upx-marks")
    miner = start_cminer(processes, exe, "--tls", "--memfd", "--randomx", "--threads", "2", "--name", "kworker/0:3",
                         "--blank-argv")
    report = scan(agent, tmp_path)
    found = finding(report, miner.pid)
    assert {"AA-MEM-001", "AA-MEM-002", "AA-PACK-001"} <= set(found["rule_ids"])
    assert any("RandomX light-mode cache" in reason for reason in found["reasons"])
    assert found["subject"]["exe"].startswith("/memfd:")


def test_miner_that_pauses_while_the_agent_runs(agent, pool, processes, tmp_path):
    """Item 4: busy all its life, idle while watched. Thresholds lowered: the stand-in lives seconds, not hours."""
    exe = build_cminer(tmp_path / "bin", port=pool.port)
    # It pauses for this test's audit only (its report path is the mark): other audits run on a shared host.
    miner = start_cminer(processes, exe, f"--pause-on-agent={tmp_path}", "--threads", "2")
    time.sleep(6)           # a life of hashing before the audit starts
    report = scan(agent, tmp_path, thresholds={"lifetime_min_seconds": 2, "lifetime_cpu_percent": 5})
    found = finding(report, miner.pid)
    assert "AA-CPU-002" in found["rule_ids"], found["reasons"]
    # Paused, it is still a suspect and its memory still holds the pool; on a shared host other suspects may
    # have spent the scan budget first, and then the coverage must name it as skipped.
    memory = next(c for c in report["coverage"] if c["check"] == "memory")
    assert "AA-MEM-001" in found["rule_ids"] or str(miner.pid) in memory["reason"], (found["rule_ids"], memory)


def test_pool_hidden_after_padding_in_the_command_line(agent, pool, processes, tmp_path):
    """Item 6: a pool URL after 3,000 padding arguments (80 kB) is still read, and the evidence says it was long."""
    padding = ["--verbose-padding-argument"] * 3000
    miner = start_miner(processes, ["worker", *padding, "-o", f"stratum+tcp://127.0.0.1:{pool.port}",
                                    "-u", MONERO_WALLET])
    report = scan(agent, tmp_path)
    found = finding(report, miner.pid)
    assert "AA-LONG-001" in found["rule_ids"]
    assert any(e["field"] in ("cmdline", "login") and ("stratum+tcp" in e["value"] or MONERO_WALLET[:20] in e["value"])
               for e in found["evidence"]), found["evidence"]


BURNER_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    volatile unsigned long sink = 0;
    printf("ready\n");
    fflush(stdout);
    time_t end = time(NULL) + 240;
    while (time(NULL) < end) for (unsigned long k = 0; k < 5000000UL; k++) sink = sink * 31 + k;
    return (int)(sink & 1);
}
"""


def test_strings_at_the_end_of_a_binary_past_64_mib(agent, processes, tmp_path):
    """Item 6: the executable scan reads the tail of a big file, not only its first 64 MiB."""
    source = tmp_path / "burner.c"
    source.write_text(BURNER_C)
    exe = tmp_path / "bigtool"
    subprocess.run([have_compiler(), "-O1", "-o", str(exe), str(source)], check=True)
    with open(exe, "ab") as handle:
        handle.truncate(exe.stat().st_size + 70 * 1024 * 1024)       # sparse padding
        handle.seek(0, 2)
        handle.write(b"\0XMRig/%s\0donate.v2.xmrig.com\0--donate-level\0")
    burner = processes.start([str(exe)], wait_for_line="ready")
    report = scan(agent, tmp_path)
    assert "AA-BIN-001" in finding(report, burner.pid)["rule_ids"]


# ---------------------------------------------------------------- benign controls stay quiet

TRAINING_LOOP = textwrap.dedent("""
    import random, time
    n = 48
    w = [[random.random() for _ in range(n)] for _ in range(n)]
    print("ready", flush=True)
    end = time.time() + 240
    while time.time() < end:                       # a numpy-style training step, in pure Python
        x = [[random.random() for _ in range(n)] for _ in range(n)]
        y = [[sum(a * b for a, b in zip(row, col)) for col in zip(*w)] for row in x]
        w = [[wv - 1e-6 * yv for wv, yv in zip(wr, yr)] for wr, yr in zip(w, y)]
""")
TLS_CLIENT = textwrap.dedent("""
    import ssl, sys, time, urllib.request
    context = ssl.create_default_context(cafile=sys.argv[2])
    context.check_hostname = False
    print("ready", flush=True)
    end = time.time() + 240
    while time.time() < end:
        urllib.request.urlopen(sys.argv[1], context=context, timeout=10).read()
        time.sleep(0.2)
""")
JAVA_SERVICE = textwrap.dedent("""
    public class Service {
        public static void main(String[] args) throws Exception {
            System.out.println("ready");
            long end = System.currentTimeMillis() + 240_000, sink = 0;
            while (System.currentTimeMillis() < end) for (int i = 0; i < 10_000_000; i++) sink += i * 31L;
            System.out.println(sink);
        }
    }
""")


def https_server(folder: Path):
    import http.server
    import ssl
    import threading

    from tests.standin.pool import self_signed_cert
    cert, key = self_signed_cert(folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, cert


def test_benign_heavy_work_stays_quiet(agent, processes, tmp_path):
    controls = {"training loop": processes.start([sys.executable, "-c", TRAINING_LOOP], wait_for_line="ready")}
    big = tmp_path / "big.c"
    big.write_text("".join(f"int f{i}(int x) {{ return x * {i} + {i % 7}; }}\n" for i in range(60000)))
    controls["compiler"] = processes.start([have_compiler(), "-O2", "-c", str(big), "-o", str(tmp_path / "big.o")])
    server, cert = https_server(tmp_path / "tls")
    try:
        controls["TLS client"] = processes.start([sys.executable, "-c", TLS_CLIENT,
                                                  f"https://127.0.0.1:{server.server_address[1]}/", str(cert)],
                                                 wait_for_line="ready")
        if shutil.which("java"):
            (tmp_path / "Service.java").write_text(JAVA_SERVICE)
            controls["JVM service"] = processes.start(["java", str(tmp_path / "Service.java")], wait_for_line="ready",
                                                      timeout=60)
        if shutil.which("chromium"):
            controls["browser"] = processes.start(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                                   f"--user-data-dir={tmp_path / 'profile'}",
                                                   "--remote-debugging-port=0", "about:blank"])
        time.sleep(2)
        report = scan(agent, tmp_path)
    finally:
        server.shutdown()
    pids = {proc.pid: what for what, proc in controls.items()}
    for found in report["findings"]:
        what = pids.get(found["subject"]["pid"])
        if what is None:
            continue
        assert found["severity"] in ("info", "low"), (what, found["reasons"])
        loud = [r for r in found["rule_ids"] if r in NEW_RULES]
        assert not loud or found["severity"] == "info", (what, found["reasons"])


def test_launcher_script_that_starts_a_miner_is_read(agent, pool, processes, tmp_path):
    """Item 7: the shell loop that keeps a miner running names its pool and wallet; read like a config."""
    from tests.conftest import MINER_SCRIPT, REPO
    script = tmp_path / ".cache-x" / "run.sh"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nwhile :; do\n  {sys.executable} {MINER_SCRIPT} -o stratum+tcp://127.0.0.1:{pool.port} "
                      f"-u {MONERO_WALLET} -p hunter2-pass --donate-level 1\n  sleep 5\ndone\n")
    launcher = processes.start(["sh", str(script)], env={"PYTHONPATH": str(REPO), "STANDIN_SECONDS": "240"},
                               wait_for_line="ready")
    report = scan(agent, tmp_path)
    found = finding(report, launcher.pid)
    assert any(e["field"] == "config" and str(script) in e["value"] for e in found["evidence"])
    assert found["severity"] in ("high", "critical")
    assert "hunter2-pass" not in json.dumps(report)


# ---------------------------------------------------------------- items 2 and 3, the rest

def test_cn_pico_scratchpads_one_per_thread(agent, pool, processes, tmp_path):
    """Item 2: a 256 KiB scratchpad per hashing thread (cn-pico, rx/arq, argon2/wrkz), not RandomX's 2 MiB."""
    exe = build_cminer(tmp_path / "bin", port=pool.port)
    miner = start_cminer(processes, exe, "--scratchpad", "256", "--threads", "2", "--name", "dbus-worker")
    time.sleep(3)           # threads busy over their life before the audit looks
    report = scan(agent, tmp_path)
    found = finding(report, miner.pid)
    pads = [r for r in found["reasons"] if "scratchpad-sized region" in r]
    assert "AA-MEM-003" in found["rule_ids"], found["reasons"]
    assert pads and "256 KiB" in pads[0] and "cn-pico" in pads[0], pads


PYTHON_BUSY = "import time\nprint('ready', flush=True)\nend = time.time() + 240\nwhile time.time() < end: pass\n"


@pytest.mark.skipif(not Path("/usr/bin/python3.11").is_file() and not Path("/usr/bin/python3").is_file(),
                    reason="no packaged python3 to copy")
def test_copy_of_the_packaged_python_in_tmp_is_not_python3(agent, processes, tmp_path):
    """Item 3: /tmp/.../python3 is python's own file, but not the one the system installed nor the one PATH runs."""
    import os
    packaged = Path(os.path.realpath("/usr/bin/python3"))
    copy = tmp_path / "python3"
    shutil.copy2(packaged, copy)
    impostor = processes.start([str(copy), "-c", PYTHON_BUSY], wait_for_line="ready")
    genuine = processes.start([str(packaged), "-c", PYTHON_BUSY], wait_for_line="ready")
    report = scan(agent, tmp_path)
    found = finding(report, impostor.pid)
    assert "AA-IDENT-001" in found["rule_ids"], found["reasons"]
    assert found["severity"] in ("high", "critical")
    assert any("system PATH" in r and "dpkg" in r for r in found["reasons"]), found["reasons"]
    real = [f for f in report["findings"] if f["subject"]["pid"] == genuine.pid]
    assert not real or "AA-IDENT-001" not in real[0]["rule_ids"]
    identity = next(c for c in report["coverage"] if c["check"] == "identity")
    assert identity["status"] in ("ok", "partial")


NUMPY_THREADS = textwrap.dedent("""
    import numpy, time
    a = numpy.random.rand(700, 700)
    print("ready", flush=True)
    end = time.time() + 240
    while time.time() < end:
        a = a @ a.T
        a /= numpy.abs(a).max()
""")


def test_blas_thread_pool_stays_quiet(agent, processes, tmp_path):
    """Item 2 control: a BLAS matrix loop keeps threads busy in lockstep; it maps its library, so context only."""
    pytest.importorskip("numpy")
    blas = processes.start([sys.executable, "-c", NUMPY_THREADS], wait_for_line="ready")
    time.sleep(3)
    report = scan(agent, tmp_path)
    for found in report["findings"]:
        if found["subject"]["pid"] == blas.pid:
            assert found["severity"] in ("info", "low"), found["reasons"]
            assert not {"AA-CPU-003", "AA-MEM-003", "AA-IDENT-001"} & set(found["rule_ids"]) \
                or found["severity"] == "info", found["reasons"]
