"""Evaluation: one finding per subject with every reason, confidence that rises, verdicts, allowlist, exit codes."""
from __future__ import annotations

import pytest

from audit_agent.evaluate import exit_code
from audit_agent.model import Coverage, CoverageStatus, FindingStatus, Severity, Verdict
from tests.conftest import MONERO_WALLET
from tests.factories import conn, gpu, proc, scan, snapshot

XMRIG = f"/opt/x/xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u {MONERO_WALLET} -p x --donate-level 1"


def test_signals_about_one_process_fold_into_one_finding():
    report = scan(snapshot([proc(10, XMRIG, cpu=780.0)], [conn(10, "198.51.100.7", 3333)]))
    assert len(report.findings) == 1
    finding = report.findings[0]
    assert finding.subject.pid == 10
    assert finding.severity.rank >= Severity.HIGH.rank
    assert len(finding.reasons) >= 4 and len(set(finding.reasons)) == len(finding.reasons)
    assert {"name", "cmdline", "login", "connection"} <= {e.field for e in finding.evidence}
    assert "198.51.100.7:3333" in finding.subject.connections
    assert finding.attack == ["T1496"]
    assert report.verdict == Verdict.NON_COMPLIANT


def test_confidence_rises_as_independent_signals_agree():
    alone = scan(snapshot([proc(10, "/opt/tools/helper -o 198.51.100.7:3333 -u worker1", cpu=50.0)])).findings
    joined = scan(snapshot([proc(10, f"/opt/tools/helper -o 198.51.100.7:3333 -u {MONERO_WALLET}", cpu=50.0)],
                           [conn(10, "198.51.100.7", 3333)])).findings
    assert alone and joined
    assert joined[0].confidence > alone[0].confidence


def test_fingerprint_leaves_out_pid_and_start_time():
    first = scan(snapshot([proc(10, XMRIG, create_time=1.0)])).findings[0]
    second = scan(snapshot([proc(99, XMRIG, create_time=5000.0)])).findings[0]
    assert first.fingerprint == second.fingerprint
    other_user = scan(snapshot([proc(10, XMRIG, user="bob")])).findings[0]
    assert other_user.fingerprint != first.fingerprint


def test_pool_port_alone_is_only_review():
    report = scan(snapshot([proc(10, "/usr/bin/python3 client.py", cpu=3.0)], [conn(10, "198.51.100.9", 3333)]))
    assert len(report.findings) == 1
    assert report.findings[0].severity.rank < Severity.HIGH.rank
    assert report.verdict == Verdict.NEEDS_REVIEW


def test_unowned_pool_connection_is_a_connection_subject():
    report = scan(snapshot([], [conn(None, "198.51.100.9", 14444)]))
    assert report.findings[0].subject.kind == "connection"
    assert report.findings[0].severity.rank < Severity.HIGH.rank


def test_busy_gpu_with_unknown_process_is_low_confidence_review_never_high():
    job = proc(30, "/home/bob/bin/render_worker --scene s1", user="bob", cpu=100.0)
    report = scan(snapshot([job], gpus=[gpu(0, 99.0, [30])]))
    assert len(report.findings) == 1
    finding = report.findings[0]
    assert finding.severity.rank < Severity.HIGH.rank and finding.confidence <= 0.5
    assert finding.subject.gpu_index == 0
    assert report.verdict == Verdict.NEEDS_REVIEW


def test_busy_gpu_with_no_process_asks_for_review():
    report = scan(snapshot([], gpus=[gpu(1, 97.0, [])]))
    assert report.findings[0].subject.kind == "gpu"
    assert report.verdict == Verdict.NEEDS_REVIEW


def test_partial_core_coverage_is_never_compliant():
    report = scan(snapshot([proc(1, "/sbin/init")], coverage=[
        Coverage("processes", CoverageStatus.PARTIAL, "37 of 300 processes denied", inspected=263, denied=37),
        Coverage("network", CoverageStatus.OK)]))
    assert report.verdict == Verdict.INCOMPLETE
    assert any("37 of 300" in reason for reason in report.verdict_reasons)
    assert exit_code(report, Severity.HIGH) == 0
    assert exit_code(report, Severity.HIGH, fail_on_incomplete=True) == 3


def test_clean_host_is_compliant():
    report = scan(snapshot([proc(1, "/sbin/init"), proc(2, "/usr/sbin/sshd -D", user="root")]))
    assert report.verdict == Verdict.COMPLIANT and report.findings == []
    assert exit_code(report, Severity.HIGH) == 0


@pytest.mark.parametrize("fail_on, expected", [(Severity.HIGH, 1), (Severity.CRITICAL, 0), (None, 0)])
def test_exit_code_follows_fail_on(fail_on, expected):
    report = scan(snapshot([proc(10, "/opt/x/helper -o 198.51.100.7:3333 -u worker1")]))
    assert max(f.severity.rank for f in report.findings) == Severity.HIGH.rank
    assert exit_code(report, fail_on) == expected


def write_config(tmp_path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_allowlist_by_exe_user_cmdline_and_host(tmp_path):
    config = write_config(tmp_path, """
allowlist:
  - exe: /opt/x/*
    user: alice
    cmdline: 'supportxmr'
    host: node0?
    reason: Approved benchmark of mining software for course CS-7001
""")
    report = scan(snapshot([proc(10, XMRIG)]), config)
    assert report.findings[0].status == FindingStatus.ALLOWLISTED
    assert "CS-7001" in report.findings[0].status_reason
    assert report.verdict == Verdict.COMPLIANT
    other_host = scan(snapshot([proc(10, XMRIG)], hostname="login1"), config)
    assert other_host.findings[0].status == FindingStatus.OPEN
    other_user = scan(snapshot([proc(10, XMRIG, user="mallory")]), config)
    assert other_user.verdict == Verdict.NON_COMPLIANT


def test_closed_socket_history_is_not_activity():
    report = scan(snapshot([], [conn(None, "198.51.100.9", 3333, state="TIME_WAIT")]))
    assert report.findings == []


@pytest.mark.parametrize("login, coin", [
    (f"{MONERO_WALLET}.rig01", "Monero"),
    (f"{MONERO_WALLET}+50000", "Monero"),
    (f"{MONERO_WALLET}:worker", "Monero"),
    (f"XMR:{MONERO_WALLET}.w1#ref-123", "Monero"),
    ("0x52bc44d5378309ee2abf1539bf71de1b7d7be3b5.rig", "Ethereum"),
])
def test_wallets_are_found_inside_pool_login_syntaxes(login, coin):
    from tests.factories import default_inputs
    hits = default_inputs().rules.match_wallets([login])
    assert hits and coin.lower() in hits[0].matched.lower()


@pytest.mark.parametrize("login", ["alice", "worker1", "x", "admin@example.edu", "12345"])
def test_ordinary_user_names_are_not_wallets(login):
    from tests.factories import default_inputs
    assert default_inputs().rules.match_wallets([login]) == []


def test_connection_to_the_endpoint_its_miner_config_names_is_high():
    from audit_agent.model import MinerConfig
    disguised = proc(50, ["/opt/conda/bin/python3"], name="python3", exe="/var/tmp/.conda/python3",
                     cpu=3100.0, allowed_cpus=32, terminal="")
    config = MinerConfig(path="/var/tmp/.conda/config.json", pids=[50], urls=["10.0.5.17:3333"], users=["rig1"])
    live = scan(snapshot([disguised], [conn(50, "10.0.5.17", 3333)], configs=[config]))
    assert live.findings[0].severity.rank >= Severity.HIGH.rank
    assert "AA-CONFIG-002" in live.findings[0].rule_ids
    assert live.findings[0].subject.connections == ["10.0.5.17:3333"]
    elsewhere = scan(snapshot([disguised], [conn(50, "10.9.9.9", 443)], configs=[config]))
    assert all("AA-CONFIG-002" not in f.rule_ids for f in elsewhere.findings)


def test_every_reason_names_what_matched():
    """Rules written as lookaheads match the empty string; the reason must still show the matched text."""
    report = scan(snapshot([proc(10, "/opt/x/helper -o 198.51.100.7:3333 -u worker1 -k", cpu=50.0)]))
    for evidence in report.findings[0].evidence:
        assert evidence.matched.strip(), evidence
    assert not any("()" in reason for reason in report.findings[0].reasons)


@pytest.mark.parametrize("argv", [
    ["/opt/x/helper", "-o", "198.51.100.7:3333", "-u", "worker1", "-p", "hunter2secret", "-k"],
    ["/opt/x/xmrig", "-o", "pool.supportxmr.com:3333", "-O", f"{MONERO_WALLET}:hunter2secret"],
    ["/opt/x/PhoenixMiner", "-pool", "ssl://eu1.ethermine.org:5555", "-wal", "0x52bc44d5378309ee2abf1539bf71de1b7d7be3b5",
     "-epsw", "hunter2secret"],
])
def test_no_pool_password_reaches_any_reason_or_evidence(argv):
    import json
    report = scan(snapshot([proc(10, argv, cpu=50.0)]))
    assert report.findings
    assert "hunter2secret" not in json.dumps(report.to_dict())


def test_no_pool_password_in_persistence_evidence():
    import json
    from audit_agent.model import PersistenceEntry
    entry = PersistenceEntry(path="/etc/crontab", kind="cron", line=7, user="root",
                             text="@reboot root /tmp/.x/xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u w -p hunter2secret")
    report = scan(snapshot([], persistence=[entry]))
    assert report.findings and "hunter2secret" not in json.dumps(report.to_dict())


def test_identical_processes_are_each_their_own_finding_though_matched_once():
    """2,000 workers of one command line: the text is matched once, yet every process gets its own finding."""
    workers = [proc(100 + n, XMRIG, cpu=90.0) for n in range(50)]
    report = scan(snapshot(workers, []))
    assert sorted(f.subject.pid for f in report.findings) == [100 + n for n in range(50)]
    assert len({tuple(f.rule_ids) for f in report.findings}) == 1


def test_a_remembered_match_is_not_changed_by_what_a_caller_does_with_it():
    from audit_agent.pipeline import load_rules
    rules = load_rules()
    first = rules.match_cmdline(XMRIG)
    assert first
    first.clear()
    assert rules.match_cmdline(XMRIG) and rules.match_domains(XMRIG, "cmdline")
    rules.match_domains(XMRIG, "cmdline").clear()
    assert rules.match_domains(XMRIG, "cmdline")


# ---------------------------------------------------------------- accept_unreadable

ACCEPT = """
accept_unreadable:
  - exe: /usr/lib/systemd/systemd
    reason: PID 1 runs under the container's AppArmor profile; audited on the node, ticket OPS-4411
  - name: conmon
    reason: Podman monitor, confined by SELinux (OPS-4412)
"""


def denied_host(*denied_procs):
    """A host where some processes could not be read, with the coverage the process collector gives it."""
    from audit_agent.collect.processes import process_coverage
    processes = [proc(10, "/usr/bin/sleep 100"), *denied_procs]
    denied = sum(1 for p in processes if p.denied)
    return snapshot(processes, coverage=[process_coverage(len(processes), denied, processes),
                                         Coverage("network", CoverageStatus.OK)])


def sandboxed_init():
    return proc(1, ["/sbin/init"], name="systemd", exe="/usr/lib/systemd/systemd", user="root",
                denied=["cmdline", "environ"])


def unknown_denied(pid=4242):
    return proc(pid, [], name="sandboxd", exe="", user="root", denied=["exe", "cmdline", "environ"])


def test_an_accepted_unreadable_process_no_longer_keeps_the_host_from_compliant(tmp_path):
    config = write_config(tmp_path, ACCEPT)
    without = scan(denied_host(sandboxed_init()))
    assert without.verdict == Verdict.INCOMPLETE
    report = scan(denied_host(sandboxed_init()), config)
    assert report.verdict == Verdict.COMPLIANT
    processes = next(c for c in report.coverage if c.check == "processes")
    assert processes.status == CoverageStatus.PARTIAL           # still said: it could not be read
    assert [(a.item, a.source) for a in processes.accepted] == [
        ("pid 1 systemd (/usr/lib/systemd/systemd): cmdline, environ", "config.yaml:3")]
    assert "OPS-4411" in processes.accepted[0].reason
    assert [f["key"] for f in report.verdict_facts] == ["clean_accepted", "accepted"]


def test_by_name_when_the_executable_itself_is_unreadable(tmp_path):
    conmon = proc(77, [], name="conmon", exe="", user="root", denied=["exe", "cmdline"])
    report = scan(denied_host(conmon), write_config(tmp_path, ACCEPT))
    assert report.verdict == Verdict.COMPLIANT


def test_an_unmatched_unreadable_process_keeps_coverage_partial(tmp_path):
    config = write_config(tmp_path, ACCEPT)
    report = scan(denied_host(sandboxed_init(), unknown_denied()), config)
    assert report.verdict == Verdict.INCOMPLETE
    processes = next(c for c in report.coverage if c.check == "processes")
    assert len(processes.accepted) == 1 and processes.denied == 2
    assert any(f["key"] == "gap" and f["values"]["check"] == "processes" for f in report.verdict_facts)
    # an exe entry does not match a process whose exe could not be read, even with the same name
    init_no_exe = proc(1, [], name="systemd", exe="", user="root", denied=["exe"])
    assert scan(denied_host(init_no_exe), config).verdict == Verdict.INCOMPLETE


def test_a_process_only_counted_as_unreadable_is_never_accepted(tmp_path):
    """hidepid: the process is listed but nothing of it could be read, so nothing can match it."""
    from audit_agent.collect.processes import process_coverage
    processes = [proc(10, "/usr/bin/sleep 100"), sandboxed_init()]
    snap = snapshot(processes, coverage=[process_coverage(3, 2, processes), Coverage("network", CoverageStatus.OK)])
    assert scan(snap, write_config(tmp_path, ACCEPT)).verdict == Verdict.INCOMPLETE


def test_accepting_a_gap_does_not_hide_findings(tmp_path):
    miner = proc(20, XMRIG, cpu=780.0)
    report = scan(denied_host(sandboxed_init(), miner), write_config(tmp_path, ACCEPT))
    assert report.verdict == Verdict.NON_COMPLIANT
    assert any(f["key"] == "accepted" for f in report.verdict_facts)


def test_accepted_gap_through_the_cli_in_every_report(agent, tmp_path):
    import json
    snap = tmp_path / "s.json"
    snap.write_text(json.dumps(denied_host(sandboxed_init()).to_dict()))
    config = write_config(tmp_path, ACCEPT)
    out = {lang: tmp_path / lang for lang in ("en", "zh-CN")}
    for lang, folder in out.items():
        folder.mkdir()
        result = agent("scan", "--snapshot", str(snap), "--config", config, "--json", str(folder / "r.json"),
                       "--html", str(folder / "r.html"), "--markdown", str(folder / "r.md"), "--lang", lang,
                       "--fail-on-incomplete")
        assert result.returncode == 0, result.stderr
    report = json.loads((out["en"] / "r.json").read_text())
    assert report["verdict"] == "compliant"
    accepted = next(c for c in report["coverage"] if c["check"] == "processes")["accepted"]
    assert accepted[0]["reason"].endswith("ticket OPS-4411") and accepted[0]["source"] == "config.yaml:3"
    html, md = (out["en"] / "r.html").read_text(), (out["en"] / "r.md").read_text()
    assert "Accepted by policy" in html and "OPS-4411" in html
    assert "Accepted by policy: PID 1 runs under" in md
    zh = (out["zh-CN"] / "r.html").read_text()
    assert "已按策略接受" in zh and "OPS-4411" in zh
    # without the entry the same scan is incomplete: exit 3 with --fail-on-incomplete
    result = agent("scan", "--snapshot", str(snap), "--fail-on-incomplete", "-q")
    assert result.returncode == 3
