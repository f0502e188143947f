"""Research systems end to end: stand-ins with the real programs' names and command lines run on this
host, the real agent collects and judges them (issue 10).

Each stand-in is one compiled program copied under the real name (bitcoind, monerod, geth, lotus,
pool_sv2, xmrig, ...) and started with the command line the software's own documentation gives.
The host is shared, so the verdicts are taken on a snapshot cut down to the processes this test
started (the agent's own `scan --snapshot`); the live scan's findings are checked by PID.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import have_compiler
from tests.standin.pool import free_port_near

pytestmark = pytest.mark.skipif(not have_compiler(), reason="no C compiler (cc/gcc) on this machine")
SOURCE = Path(__file__).resolve().parent / "standin" / "research_node.c"

# name -> (argv after the program, environment): the command lines the projects document
RESEARCH = {
    "bitcoind": (["-regtest", "-datadir={tmp}/btc", "-rpcport=18443", "-fallbackfee=0.0002"], {}),
    "geth": (["--datadir", "{tmp}/pow", "--networkid", "4242", "--mine", "--miner.threads", "1",
              "--miner.etherbase", "0x8ba1f109551bd432803012645ac136ddd64dba72"], {}),
    "monerod": (["--regtest", "--offline", "--fixed-difficulty", "1", "--data-dir", "{tmp}/xmr"], {}),
    "lotus": (["daemon", "--lotus-make-genesis=devgen.car", "--genesis-template=localnet.json", "--bootstrap=false"],
              {}),
    "lotus-miner": (["run", "--nosync"], {"LOTUS_SKIP_GENESIS_CHECK": "_yes_"}),
    "pool_sv2": (["-c", "config-examples/pool-config-local-tp-example.toml"], {"STANDIN_LISTEN": "{port}"}),
    "xmrig": (["--bench=1M", "--threads", "1"], {"STANDIN_BURN": "1"}),
    "randomx-benchmark": (["--mine", "--init", "1", "--threads", "1", "--jit"], {}),
    "subspace-farmer": (["farm", "--reward-address", "st6Vp", "path={tmp}/farm,size=100G", "--chain", "gemini-3h"], {}),
}
EXPECTED_KIND = {"bitcoind": "pow_node", "geth": "pow_node", "monerod": "pow_node", "lotus": "devnet",
                 "lotus-miner": "devnet", "pool_sv2": "pool", "xmrig": "benchmark", "randomx-benchmark": "library",
                 "subspace-farmer": "farming"}
BENIGN = {   # plain blockchain use: context, quiet
    "anvil": ["--port", "18545"],
    "ganache": ["--chain.chainId", "1337"],
    "geth-dev": ["--dev", "--mine", "--http"],
    "electrs": ["--network", "regtest", "--daemon-rpc-addr", "127.0.0.1:18443"],
    "lighthouse": ["bn", "--network", "holesky"],
}


def start(processes, binary: Path, name: str, argv: list[str], env: dict[str, str]):
    program = binary.parent / name
    if not program.exists():
        shutil.copy2(binary, program)
    return processes.start([str(program), *argv], env=env, wait_for_line="ready")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Every research stand-in and every benign one running, one live snapshot of them, and their pids."""
    from tests.conftest import Processes
    # Installed like lab software under a home directory: under /tmp every stand-in would also (rightly)
    # be flagged as an executable in a world-writable directory, which is not what this test is about.
    tmp = Path(tempfile.mkdtemp(prefix="audit-agent-research-", dir=Path.home()))
    os.chmod(tmp, 0o755)
    bindir = tmp / "bin"
    bindir.mkdir()
    binary = bindir / "research-node"
    subprocess.run([have_compiler(), "-O1", "-o", str(binary), str(SOURCE)], check=True, capture_output=True)
    port = free_port_near(34254)            # SRI pool_sv2's documented listen port
    processes = Processes()
    pids: dict[str, int] = {}
    try:
        for name, (args, env) in RESEARCH.items():
            argv = [a.format(tmp=tmp, port=port) for a in args]
            pids[name] = start(processes, binary, name, argv, {k: v.format(port=port) for k, v in env.items()}).pid
        cli = bindir / "bitcoin-cli"
        shutil.copy2(binary, cli)
        loop = (f"while true; do {cli} -regtest -rpcport=18443 generatetoaddress 1 "
                "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080; sleep 2; done")
        generator = processes.start(["/bin/sh", "-c", f"echo ready; {loop}"], env={"STANDIN_SECONDS": "0"},
                                    wait_for_line="ready")
        pids["generator"] = generator.pid
        for name, args in BENIGN.items():
            program = "geth" if name == "geth-dev" else name
            benign = bindir / "benign" / program
            benign.parent.mkdir(exist_ok=True)
            if not benign.exists():
                shutil.copy2(binary, benign)
            pids[f"benign:{name}"] = processes.start([str(benign), *args], wait_for_line="ready").pid
        yield {"tmp": tmp, "pids": pids, "port": port}
    finally:
        processes.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def collect(agent, lab, out: Path) -> Path:
    """A live snapshot, cut down to this test's processes (other engineers' miners share the host)."""
    raw = out / "live.json"
    result = agent("collect", "--window", "2", "-o", str(raw), "-q", timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(raw.read_text())
    ours = set(lab["pids"].values())
    data["processes"] = [p for p in data["processes"] if p["pid"] in ours]
    data["connections"] = [c for c in data["connections"] if c["pid"] in ours]
    for key in ("persistence", "load", "binaries", "configs", "gpus"):
        data[key] = []
    data["stealth"] = {}
    mine = out / "ours.json"
    mine.write_text(json.dumps(data))
    return mine


@pytest.fixture(scope="module")
def snapshot_path(lab, tmp_path_factory):
    from tests.conftest import agent_command
    out = tmp_path_factory.mktemp("snap")

    def agent(*args, timeout=300):
        return subprocess.run([*agent_command(), *args], capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    return collect(agent, lab, out)


def scan(agent, snapshot: Path, out: Path, *extra: str) -> dict:
    report = out / f"report-{time.monotonic_ns()}.json"
    result = agent("scan", "--snapshot", str(snapshot), "--json", str(report), "-q", "--fail-on", "never", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(report.read_text())


def nothing_counted(report: dict) -> bool:
    """Compliant, or incomplete only because this shared host could not be seen in full (never a finding)."""
    counted = [f for f in report["findings"] if f["status"] not in ("registered", "allowlisted")]
    gaps_only = all(reason.startswith("check ") for reason in report["verdict_reasons"])
    return counted == [] and (report["verdict"] == "compliant" or (report["verdict"] == "incomplete" and gaps_only))


def by_pid(report: dict) -> dict[int, dict]:
    return {f["subject"]["pid"]: f for f in report["findings"] if f["subject"].get("pid") is not None}


def test_without_a_filing_each_research_kind_is_an_unfiled_finding(agent, lab, snapshot_path, tmp_path):
    report = scan(agent, snapshot_path, tmp_path)
    findings = by_pid(report)
    for name, kind in EXPECTED_KIND.items():
        finding = findings[lab["pids"][name]]
        assert (finding["category"], finding["status"], finding["severity"]) == ("research", "unfiled", "medium"), name
        system = next(s for s in report["research_systems"] if s["pid"] == lab["pids"][name])
        assert system["kind"] == kind, name
    assert lab["pids"]["generator"] not in findings            # folded into the regtest node's system
    for name in BENIGN:
        assert lab["pids"][f"benign:{name}"] not in findings, name
    assert report["verdict"] == "needs_review"
    bench = next(s for s in report["research_systems"] if s["pid"] == lab["pids"]["xmrig"])
    assert bench["used"]["cpu_cores"] > 0.05                    # the burning benchmark used CPU in the window
    farm = next(s for s in report["research_systems"] if s["pid"] == lab["pids"]["subspace-farmer"])
    assert farm["used"]["storage_tib"] == pytest.approx(100 / 1024, abs=0.001)


def test_policy_raises_unfiled_research_to_high(agent, snapshot_path, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("research_severity: high\n")
    report = scan(agent, snapshot_path, tmp_path, "--config", str(config))
    assert {f["severity"] for f in report["findings"] if f["category"] == "research"} == {"high"}
    assert report["verdict"] == "non_compliant"


def complete(draft: Path, *, valid_until: str = "2099-12-31", cpu_cores: float | None = None) -> dict:
    """Fill a draft as the applicant would; what the agent pre-filled stays."""
    data = yaml.safe_load(draft.read_text())
    entry = data["filings"][0]
    entry.update(number=f"RES-{draft.stem[-12:]}", approved_by="Provincial Department of Education",
                 project="Consensus protocol testbed", discipline="Computer science and technology",
                 responsible="Prof. Li Na", valid_from="2026-01-01", valid_until=valid_until)
    if cpu_cores is not None:
        entry["scale"]["cpu_cores"] = cpu_cores
    return entry


def drafts_registry(agent, snapshot: Path, tmp_path: Path, **fill) -> tuple[Path, list[Path]]:
    drafts = tmp_path / "drafts"
    report_path = tmp_path / "before.json"
    result = agent("scan", "--snapshot", str(snapshot), "--json", str(report_path), "--filing-drafts", str(drafts),
                   "-q", "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    unfiled = [s for s in report["research_systems"] if s["status"] == "unfiled"]
    assert unfiled and all(Path(s["draft"]).is_file() for s in unfiled)    # the report links each draft
    yamls = sorted(drafts.glob("*.yaml"))
    assert len(yamls) == len(unfiled) and len(list(drafts.glob("*.zh-CN.html"))) == len(unfiled)
    registry = tmp_path / "filings.yaml"
    registry.write_text(yaml.safe_dump({"filings": [complete(p, **fill) for p in yamls]}, allow_unicode=True))
    config = tmp_path / "config.yaml"
    config.write_text(f"filings: {registry}\ntimezone: Asia/Shanghai\n")
    return config, yamls


def test_a_draft_is_rejected_until_completed(agent, snapshot_path, tmp_path):
    drafts = tmp_path / "d"
    agent("scan", "--snapshot", str(snapshot_path), "--filing-drafts", str(drafts), "-q", "--fail-on", "never")
    draft = min(drafts.glob("*.yaml"))
    config = tmp_path / "config.yaml"
    config.write_text(f"filings: {draft}\n")
    result = agent("scan", "--snapshot", str(snapshot_path), "--config", str(config), "-q")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{draft}:7: filing needs 'number', 'approved_by'" in result.stderr


def test_completed_drafts_register_the_systems(agent, lab, snapshot_path, tmp_path):
    config, yamls = drafts_registry(agent, snapshot_path, tmp_path)
    report = scan(agent, snapshot_path, tmp_path, "--config", str(config))
    findings = by_pid(report)
    assert {findings[lab["pids"][name]]["status"] for name in EXPECTED_KIND} == {"registered"}
    assert nothing_counted(report) and report["timezone"] == "Asia/Shanghai"
    assert len(report["filings"]) == len(yamls) and {f["status"] for f in report["filings"]} == {"registered"}
    html = (yamls[0].with_suffix("").with_suffix(".zh-CN.html")).read_text()
    assert "备案草稿" in html and "lang=\"zh-CN\"" in html


def test_expired_filings_are_counted(agent, lab, snapshot_path, tmp_path):
    config, _ = drafts_registry(agent, snapshot_path, tmp_path, valid_until="2026-06-30")
    report = scan(agent, snapshot_path, tmp_path, "--config", str(config))
    assert by_pid(report)[lab["pids"]["monerod"]]["status"] == "registration_expired"
    assert report["verdict"] == "needs_review"


def test_use_beyond_the_filed_scale_is_counted(agent, lab, snapshot_path, tmp_path):
    config, _ = drafts_registry(agent, snapshot_path, tmp_path, cpu_cores=0.01)
    report = scan(agent, snapshot_path, tmp_path, "--config", str(config))
    bench = by_pid(report)[lab["pids"]["xmrig"]]
    assert bench["status"] == "outside_registration" and "CPU cores, beyond the 0.01 filed" in bench["status_reason"]
    system = next(s for s in report["research_systems"] if s["pid"] == lab["pids"]["xmrig"])
    assert system["over_scale"] and system["filed"]["cpu_cores"] == 0.01
    assert report["verdict"] == "needs_review"


def test_live_scan_sees_the_research_stand_ins(agent, lab, tmp_path):
    """The real scan of the real host: our stand-ins are research findings (other processes not judged)."""
    report_path = tmp_path / "live.json"
    result = agent("scan", "--window", "1", "--json", str(report_path), "-q", "--fail-on", "never", timeout=300)
    assert result.returncode == 0, result.stderr
    findings = by_pid(json.loads(report_path.read_text()))
    for name in ("bitcoind", "monerod", "xmrig", "pool_sv2"):
        assert findings[lab["pids"][name]]["category"] == "research", name
