"""Mining-related research systems (issue 10): recognised by software and mode, judged by the registry.

Unfiled: a finding of its own kind (status unfiled, medium, needs_review). Filed and valid: registered
(compliant). Expired or beyond the filed scale: counted. Main-network mining stays a miner whatever
it calls itself; plain blockchain use (wallets, RPC clients, PoS validators, instant-seal dev chains)
stays quiet.
"""
from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from audit_agent.evaluate import evaluate
from audit_agent.filing import load_registry
from audit_agent.model import FindingStatus, Severity, Verdict
from audit_agent.policy import Policy
from audit_agent.yamlfile import ConfigError
from tests.factories import conn, default_inputs, proc, snapshot

WALLET = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
# 2026-11-24 18:00 UTC is already 2026-11-25 in Beijing.
EVENING_UTC = dt.datetime(2026, 11, 24, 18, 0, tzinfo=dt.timezone.utc).timestamp()

RESEARCH = {   # pid: (argv, expected rule, expected system kind)
    100: ("/opt/bitcoin-27.0/bin/bitcoind -regtest -datadir=/srv/btc -rpcport=18443", "AA-RES-001", "pow_node"),
    200: ("monerod --regtest --offline --fixed-difficulty 1 --data-dir /srv/xmr", "AA-RES-003", "pow_node"),
    300: ("geth --datadir /srv/pow --networkid 4242 --mine --miner.threads 2", "AA-RES-006", "pow_node"),
    400: ("lotus daemon --lotus-make-genesis=devgen.car --genesis-template=localnet.json --bootstrap=false",
          "AA-RES-007", "devnet"),
    500: ("/opt/sri/target/release/pool_sv2 -c pool-config-local-tp-example.toml", "AA-RES-008", "pool"),
    600: ("/opt/xmrig-6.21.0/xmrig --bench=1M --threads 4", "AA-RES-010", "benchmark"),
    700: ("t-rex -a kawpow --benchmark", "AA-RES-011", "benchmark"),
    800: ("./randomx-benchmark --mine --init 4 --threads 4 --jit", "AA-RES-012", "library"),
    900: ("subspace-farmer farm path=/srv/farm,size=200G --chain gemini-3h", "AA-RES-013", "farming"),
}
GENERATOR = proc(101, ["/bin/sh", "-c", "while true; do bitcoin-cli -regtest generatetoaddress 1 bcrt1qxyz; sleep 30; done"],
                 cpu=0.1)


def research_snapshot(**extra):
    procs = [proc(pid, argv, cpu=150.0 if pid == 600 else 5.0) for pid, (argv, _, _) in RESEARCH.items()]
    return snapshot([*procs, GENERATOR], **extra)


def run(snap, policy: Policy | None = None, filings=None, now=None):
    inputs = default_inputs()
    return evaluate(snap, inputs.rules, policy or inputs.policy, filings or [], now=now)


def test_each_research_kind_is_a_finding_of_its_own_kind_without_a_filing():
    report = run(research_snapshot())
    by_pid = {f.subject.pid: f for f in report.findings}
    for pid, (_, rule_id, kind) in RESEARCH.items():
        finding = by_pid[pid]
        assert (finding.category, finding.status, finding.severity) == ("research", FindingStatus.UNFILED,
                                                                         Severity.MEDIUM), pid
        assert finding.rule_ids[0] == rule_id
        system = next(s for s in report.research_systems if s["pid"] == pid)
        assert system["kind"] == kind and system["status"] == "unfiled" and system["filing"] == ""
    assert 101 not in by_pid            # the generator belongs to the regtest node's system
    assert any("pid 101" in reason for reason in by_pid[100].reasons)
    assert report.verdict == Verdict.NEEDS_REVIEW


def test_scale_in_the_window_is_reported_per_system():
    report = run(research_snapshot())
    bench = next(s for s in report.research_systems if s["pid"] == 600)
    assert bench["used"]["cpu_cores"] == 1.5 and bench["version"] == "6.21.0"
    farm = next(s for s in report.research_systems if s["pid"] == 900)
    assert farm["used"]["storage_tib"] == pytest.approx(200 / 1024, abs=0.001)


def test_policy_can_raise_unfiled_research_to_high():
    report = run(research_snapshot(), Policy(research_severity=Severity.HIGH))
    assert {f.severity for f in report.findings if f.category == "research"} == {Severity.HIGH}
    assert report.verdict == Verdict.NON_COMPLIANT


@pytest.mark.parametrize("argv", [
    "bitcoind -regtest -datadir=/srv/btc",                 # a regtest node nobody asks for blocks
    "bitcoin-cli -regtest getblockchaininfo",
    "electrs --network regtest --daemon-rpc-addr 127.0.0.1:18443",
    "monerod --testnet --data-dir /srv/xmr-testnet",
    "monero-wallet-rpc --testnet --rpc-bind-port 28088 --wallet-dir /srv/w",
    "geth --dev --mine --http",
    "geth --sepolia --http --authrpc.jwtsecret /srv/jwt.hex",
    "anvil --port 8545 --block-time 1",
    "node /srv/dapp/node_modules/.bin/hardhat node",
    "ganache --chain.chainId 1337 --wallet.totalAccounts 10",
    "lighthouse bn --network holesky --execution-endpoint http://127.0.0.1:8551",
    "solana-test-validator --ledger /srv/ledger",
    "lotus daemon",
])
def test_plain_blockchain_use_stays_quiet(argv):
    report = run(snapshot([proc(4242, argv, cpu=20.0)]))
    assert [f for f in report.findings if f.subject.pid == 4242] == []
    assert report.verdict == Verdict.COMPLIANT


@pytest.mark.parametrize("argv, connections", [
    (f"/opt/xmrig/xmrig --bench=1M -o pool.supportxmr.com:443 -u {WALLET}", []),
    (f"monerod --detach --start-mining {WALLET} --mining-threads 8", []),
    ("/tmp/.x/kworker --bench 1M", [conn(31, "203.0.113.50", 3333)]),
])
def test_a_main_network_miner_stays_a_miner_even_when_it_claims_research(argv, connections):
    report = run(snapshot([proc(31, argv, cpu=400.0)], connections))
    finding = next(f for f in report.findings if f.subject.pid == 31)
    assert finding.category == "miner" and finding.severity.rank >= Severity.HIGH.rank
    assert finding.status == FindingStatus.OPEN
    assert report.verdict == Verdict.NON_COMPLIANT
    assert report.research_systems == []


def test_a_benchmark_against_a_loopback_pool_stays_research():
    report = run(snapshot([proc(32, "/opt/xmrig/xmrig --bench=1M", cpu=100.0)], [conn(32, "127.0.0.1", 3333)]))
    assert next(f for f in report.findings if f.subject.pid == 32).category == "research"


# ---------------------------------------------------------------- the registry decides


def write_registry(tmp_path: Path, *, valid_until: str = "2027-06-30", cpu_cores: float = 8, extra: str = "") -> Path:
    path = tmp_path / "filings.yaml"
    path.write_text(textwrap.dedent(f"""\
        filings:
          - number: RES-2026-010
            approved_by: Provincial Department of Education (test)
            project: Consensus protocol testbed
            discipline: Computer science and technology
            responsible: Prof. Li Na
            hosts: [node01]
            users: [alice]
            workloads: ['^/opt/bitcoin-27\\.0/bin/bitcoind$', '^/opt/xmrig-6\\.21\\.0/xmrig$']
            scale: {{cpu_cores: {cpu_cores}, gpus: 0, gpu_memory_gib: 0}}
            valid_from: 2026-01-01
            valid_until: {valid_until}
        """) + extra, encoding="utf-8")
    return path


def filed_snapshot(cpu: float = 150.0):
    return snapshot([proc(100, RESEARCH[100][0], cpu=5.0), GENERATOR, proc(600, RESEARCH[600][0], cpu=cpu)],
                    collected_at=EVENING_UTC)


def test_a_valid_filing_registers_the_research_system(tmp_path):
    report = run(filed_snapshot(), filings=load_registry(write_registry(tmp_path)), now=EVENING_UTC)
    assert {f.subject.pid: f.status for f in report.findings} == {100: FindingStatus.REGISTERED,
                                                                  600: FindingStatus.REGISTERED}
    assert report.verdict == Verdict.COMPLIANT
    system = next(s for s in report.research_systems if s["pid"] == 600)
    assert system["filing"] == "RES-2026-010" and system["filed"]["cpu_cores"] == 8 and system["over_scale"] == []


def test_an_expired_filing_is_counted(tmp_path):
    report = run(filed_snapshot(), filings=load_registry(write_registry(tmp_path, valid_until="2026-10-31")),
                 now=EVENING_UTC)
    assert {f.status for f in report.findings} == {FindingStatus.REGISTRATION_EXPIRED}
    assert report.verdict == Verdict.NEEDS_REVIEW


def test_use_beyond_the_filed_scale_is_counted_and_shown(tmp_path):
    report = run(filed_snapshot(cpu=1200.0), filings=load_registry(write_registry(tmp_path, cpu_cores=4)),
                 now=EVENING_UTC)
    bench = next(f for f in report.findings if f.subject.pid == 600)
    assert bench.status == FindingStatus.OUTSIDE_REGISTRATION and "beyond the 4" in bench.status_reason
    assert report.filings[0]["over_scale"] and report.filings[0]["used_cpu_cores"] == pytest.approx(12.05)
    system = next(s for s in report.research_systems if s["pid"] == 600)
    assert system["over_scale"] == ["uses 12.0 CPU cores, beyond the 4 filed under RES-2026-010"]
    assert report.verdict == Verdict.NEEDS_REVIEW


def test_validity_is_judged_in_the_institutions_time_zone(tmp_path):
    filings = load_registry(write_registry(tmp_path, valid_until="2026-11-24"))
    in_utc = run(filed_snapshot(), Policy(timezone="UTC"), filings, now=EVENING_UTC)
    in_beijing = run(filed_snapshot(), Policy(timezone="Asia/Shanghai"), filings, now=EVENING_UTC)
    assert {f.status for f in in_utc.findings} == {FindingStatus.REGISTERED}
    assert {f.status for f in in_beijing.findings} == {FindingStatus.REGISTRATION_EXPIRED}
    assert in_beijing.timezone == "Asia/Shanghai" and in_beijing.filings[0]["judged_on"] == "2026-11-25"
    assert in_utc.filings[0]["expiring_soon"] is True and in_utc.filings[0]["expires_in_days"] == 0


def test_a_filing_whose_workload_no_longer_runs_is_reported_unused(tmp_path):
    extra = textwrap.indent(textwrap.dedent("""\
        - number: RES-2026-011
          approved_by: Provincial Department of Education (test)
          project: Filecoin devnet
          discipline: Computer science and technology
          responsible: Prof. Li Na
          hosts: [node01]
          workloads: ['lotus-miner']
          valid_from: 2026-01-01
          valid_until: 2027-12-31
        """), "  ")
    filings = load_registry(write_registry(tmp_path, extra=extra))
    report = run(filed_snapshot(), Policy(timezone="UTC"), filings, now=EVENING_UTC)
    unused = next(f for f in report.filings if f["number"] == "RES-2026-011")
    assert unused["status"] == "unused" and unused["findings"] == [] and unused["expiring_soon"] is False
    assert report.verdict == Verdict.COMPLIANT


@pytest.mark.parametrize("bad, where", [("valid_until: 2026-02-30", 12), ("valid_until: '2026-13-01'", 12)])
def test_an_impossible_date_is_a_file_line_error(tmp_path, bad, where, agent):
    path = write_registry(tmp_path)
    path.write_text(path.read_text().replace("valid_until: 2027-06-30", bad))
    with pytest.raises(ConfigError, match=rf"filings.yaml:{where}: .*(not a real date)"):
        load_registry(path)
    config = tmp_path / "config.yaml"
    config.write_text(f"filings: {path}\n")
    snap = tmp_path / "s.json"
    snap.write_text('{"schema_version": "1.0"}')
    result = agent("scan", "--snapshot", str(snap), "--config", str(config), "-q")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"filings.yaml:{where}:" in result.stderr and "not a real date" in result.stderr


def test_an_unknown_time_zone_is_a_config_error(tmp_path):
    from audit_agent.policy import load_policy
    config = tmp_path / "config.yaml"
    config.write_text("timezone: Mars/Olympus_Mons\n")
    with pytest.raises(ConfigError, match=r"config.yaml:1: unknown time zone 'Mars/Olympus_Mons'"):
        load_policy(config)


def test_terminal_summary_names_unfiled_systems_and_filing_lifecycle(tmp_path):
    from audit_agent.render import RenderOptions, render
    unfiled = render("text", run(research_snapshot()), RenderOptions(width=300))
    assert "Research system without a filing: PID 600 XMRig (benchmark); no draft written (audit-agent scan --filing-drafts DIR)" in unfiled
    filings = load_registry(write_registry(tmp_path, valid_until="2026-12-10"))
    text = render("text", run(filed_snapshot(), Policy(timezone="UTC"), filings, now=EVENING_UTC),
                  RenderOptions(width=300))
    assert "Filing RES-2026-010 expires in 16 day(s) (judged in UTC)" in text
    assert "Research system without a filing" not in text
