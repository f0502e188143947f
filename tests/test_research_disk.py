"""Research systems judged from what they really run (issue 10, missing items): the plots a research farmer
farms measured on disk against its filing, a Chia farmer whose config selects a testnet, and Stratum V2
pool configs that tell a test pool from one serving main-network miners.

Real processes (a Python interpreter under the research program's name) and real files in tmp dirs; the
collector reads them through /proc as it does on a host.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from audit_agent.collect.families import collect_families
from audit_agent.evaluate import evaluate
from audit_agent.filing import load_registry
from audit_agent.model import FindingStatus, ProcessInfo, Verdict
from tests.factories import default_inputs, snapshot

GIB = 1 << 30
PLOT = "plot-k32-2024-03-01-10-11-{}.plot"


def sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)


@pytest.fixture
def spawn():
    started: list[subprocess.Popen[bytes]] = []

    def run(argv0: str, args: list[str], env: dict[str, str], cwd: Path) -> ProcessInfo:
        script = cwd / "sleeper.py"
        script.write_text("import time\ntime.sleep(120)\n", encoding="utf-8")
        argv = [argv0, str(script), *args]
        child = subprocess.Popen(argv, executable=sys.executable, env=env, cwd=cwd)
        started.append(child)
        for _ in range(200):      # until the child has exec'd (its environ is the one given)
            try:
                if b"HOME=" in Path(f"/proc/{child.pid}/environ").read_bytes():
                    break
            except OSError:
                pass
            time.sleep(0.01)
        return ProcessInfo(pid=child.pid, ppid=os.getpid(), name=argv0[:15], exe=sys.executable,
                           cmdline=argv, uid=os.getuid(),
                           username="alice", cpu_percent=5.0, allowed_cpus=8, cwd=str(cwd))
    yield run
    for child in started:
        child.kill()
        child.wait()


def collected(procs: list[ProcessInfo]):
    snap = snapshot(procs)
    inputs = default_inputs()
    collect_families(snap, SimpleNamespace(families=inputs.rules.pack.families, mount_roots=[]))
    return snap


def scan(snap, filings=None):
    inputs = default_inputs()
    return evaluate(snap, inputs.rules, inputs.policy, filings or [])


def chia_home(tmp_path: Path, network: str, plots: Path) -> Path:
    home = tmp_path / "home"
    config = home / ".chia" / "mainnet" / "config" / "config.yaml"     # the root stays mainnet on a testnet
    config.parent.mkdir(parents=True)
    config.write_text(textwrap.dedent(f"""\
        selected_network: {network}
        farmer:
          selected_network: {network}
          xch_target_address: txch1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq
        harvester:
          selected_network: {network}
          plot_directories:
          - {plots}
        """), encoding="utf-8")
    return home


def registry(tmp_path: Path, storage_tib: float) -> Path:
    path = tmp_path / "filings.yaml"
    path.write_text(textwrap.dedent(f"""\
        filings:
          - number: RES-2026-013
            approved_by: Provincial Department of Education (test)
            project: Proof-of-space testbed
            discipline: Computer science and technology
            responsible: Prof. Li Na
            hosts: [node01]
            users: [alice]
            workloads: ['^chia_harvester$']
            scale: {{cpu_cores: 2, gpus: 0, gpu_memory_gib: 0, storage_tib: {storage_tib}}}
            valid_from: 2020-01-01
            valid_until: 2099-12-31
        """), encoding="utf-8")
    return path


def test_a_chia_farmer_whose_config_selects_a_testnet_is_research_with_its_plots_measured(tmp_path, spawn):
    plots = tmp_path / "disk" / "plots"
    for n in range(3):
        sparse(plots / PLOT.format(f"{n:02d}" * 32), 100 * GIB)
    home = chia_home(tmp_path, "testnet11", plots)
    harvester = spawn("chia_harvester", [], {"HOME": str(home), "PATH": "/usr/bin:/bin"}, tmp_path)
    report = scan(collected([harvester]))
    finding = next(f for f in report.findings if f.subject.pid == harvester.pid)
    assert (finding.category, finding.status) == ("research", FindingStatus.UNFILED)
    assert "AA-RES-013" in finding.rule_ids
    system = next(s for s in report.research_systems if s["pid"] == harvester.pid)
    assert system["used"]["storage_tib"] == pytest.approx(300 / 1024, abs=0.001)
    assert system["used"]["storage_source"] == "disk"
    assert report.verdict == Verdict.NEEDS_REVIEW


def test_the_same_farmer_on_mainnet_stays_a_farming_violation(tmp_path, spawn):
    plots = tmp_path / "disk" / "plots"
    sparse(plots / PLOT.format("ab" * 32), 100 * GIB)
    home = chia_home(tmp_path, "mainnet", plots)
    # CHIA_ROOT says "testnet", but the config it reads selects mainnet: that is what it farms
    root = home / ".chia" / "testnet11"
    (root / "config").mkdir(parents=True)
    (root / "config" / "config.yaml").write_text(
        (home / ".chia" / "mainnet" / "config" / "config.yaml").read_text(), encoding="utf-8")
    harvester = spawn("chia_harvester", [], {"HOME": str(home), "CHIA_ROOT": str(root), "PATH": "/usr/bin"},
                      tmp_path)
    report = scan(collected([harvester]))
    finding = next(f for f in report.findings if f.subject.pid == harvester.pid)
    assert finding.category != "research" and finding.status == FindingStatus.OPEN
    assert report.research_systems == []


def test_plots_on_disk_beyond_the_filed_storage_are_counted(tmp_path, spawn):
    plots = tmp_path / "disk" / "plots"
    for n in range(3):          # 300 GiB farmed; the command line declares nothing
        sparse(plots / PLOT.format(f"{n:02d}" * 32), 100 * GIB)
    home = chia_home(tmp_path, "testnet11", plots)
    harvester = spawn("chia_harvester", [], {"HOME": str(home), "PATH": "/usr/bin"}, tmp_path)
    snap = collected([harvester])
    within = scan(snap, load_registry(registry(tmp_path, 0.5)))
    assert next(f for f in within.findings if f.subject.pid == harvester.pid).status == FindingStatus.REGISTERED
    beyond = scan(snap, load_registry(registry(tmp_path, 0.1)))
    finding = next(f for f in beyond.findings if f.subject.pid == harvester.pid)
    assert finding.status == FindingStatus.OUTSIDE_REGISTRATION
    system = next(s for s in beyond.research_systems if s["pid"] == harvester.pid)
    assert [fact["code"] for fact in system["over_scale_facts"]] == ["filing_storage"]
    assert beyond.filings[0]["used_storage_tib"] == pytest.approx(0.293, abs=0.001)


def test_storage_found_on_disk_outweighs_what_the_command_line_declares(tmp_path, spawn):
    farm = tmp_path / "farm"
    sparse(farm / "plot.bin", 100 * GIB)        # subspace-farmer's plot, in the folder its command line names
    farmer = spawn("subspace-farmer", ["farm", f"path={farm},size=10G", "--chain", "gemini-3h"],
                   {"HOME": str(tmp_path), "PATH": "/usr/bin"}, tmp_path)
    report = scan(collected([farmer]))
    system = next(s for s in report.research_systems if s["pid"] == farmer.pid)
    assert system["used"]["storage_tib"] == pytest.approx(100 / 1024, abs=0.001)
    assert system["used"]["declared_storage_tib"] == pytest.approx(10 / 1024, abs=0.001)


# ---------------------------------------------------------------- Stratum V2 role configs

POOL_TOML = """\
authority_public_key = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72"
cert_validity_sec = 3600
listen_address = "0.0.0.0:34254"
coinbase_reward_script = "addr({address})"
pool_signature = "lab pool"

[template_provider_type.Sv2Tp]
address = "127.0.0.1:8442"
"""
TPROXY_TOML = """\
downstream_address = "0.0.0.0"
downstream_port = 34255
max_supported_version = 2
min_supported_version = 2

[[upstreams]]
address = "{host}"
port = 34254
authority_pubkey = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72"
"""


def sv2_role(tmp_path, spawn, program: str, text: str) -> ProcessInfo:
    (tmp_path / "role.toml").write_text(text, encoding="utf-8")
    return spawn(program, ["-c", "role.toml"], {"HOME": str(tmp_path), "PATH": "/usr/bin"}, tmp_path)


@pytest.mark.parametrize("program, text, research", [
    ("pool_sv2", POOL_TOML.format(address="tb1qa0sm0hxzj0x25rh8gw5xlzwlsfvvyz8u96w3p8"), True),
    ("pool_sv2", POOL_TOML.format(address="bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"), True),
    ("pool_sv2", POOL_TOML.format(address="bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"), False),
    ("translator_sv2", TPROXY_TOML.format(host="127.0.0.1"), True),
    ("translator_sv2", TPROXY_TOML.format(host="18.196.32.109"), False),
])
def test_a_stratum_v2_config_tells_a_test_pool_from_a_main_network_one(tmp_path, spawn, program, text, research):
    role = sv2_role(tmp_path, spawn, program, text)
    snap = collected([role])
    [config] = [c for c in snap.family_configs if c.family == "SV2"]
    assert [r.pid for r in config.readers] == [role.pid] and config.path == str(tmp_path / "role.toml")
    report = scan(snap)
    finding = next(f for f in report.findings if f.subject.pid == role.pid)
    if research:
        assert (finding.category, finding.status) == ("research", FindingStatus.UNFILED)
        assert [s["pid"] for s in report.research_systems] == [role.pid]
    else:
        assert finding.category == "miner" and "AA-RES-021" in finding.rule_ids
        assert finding.severity.rank >= 3 and report.verdict == Verdict.NON_COMPLIANT
        assert report.research_systems == []


@pytest.mark.parametrize("provider_argv, research", [
    ("/opt/bitcoin/bin/bitcoind -testnet4 -sv2 -sv2port=8442", True),
    ("/opt/bitcoin/bin/bitcoind -sv2 -sv2port=8442", False),
])
def test_a_pool_on_a_local_template_provider_serves_that_providers_chain(tmp_path, spawn, provider_argv, research):
    from audit_agent.model import Connection
    from tests.factories import proc
    # the config names neither a network nor an address: only the template provider tells
    text = POOL_TOML.replace('coinbase_reward_script = "addr({address})"\n', "")
    role = sv2_role(tmp_path, spawn, "pool_sv2", text)
    provider = proc(4100, provider_argv, cpu=3.0)
    snap = collected([role, provider])
    snap.connections.append(Connection(pid=4100, protocol="tcp", local_address="127.0.0.1", local_port=8442,
                                       remote_address="", remote_port=0, state="LISTEN"))
    report = scan(snap)
    finding = next(f for f in report.findings if f.subject.pid == role.pid)
    assert (finding.category == "research") is research


def test_a_config_the_role_cannot_read_is_not_read(tmp_path, spawn):
    role = sv2_role(tmp_path, spawn, "pool_sv2", POOL_TOML.format(address="bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"))
    role.uid = 65534                      # nobody: the file is 0600 and not theirs
    os.chmod(tmp_path / "role.toml", 0o600)
    snap = collected([role])
    assert [c for c in snap.family_configs if c.family == "SV2"] == []
