"""The registry of filed research systems changes the verdict as issue 4 describes.

Valid filing: registered, not counted (compliant). Expired filing, a host or user
outside the filing, or use beyond the filed scale: counted (non-compliant) with
the reason. No filing at all: mining software makes the host non-compliant.
"""
from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from audit_agent.evaluate import evaluate
from audit_agent.filings import load_registry
from audit_agent.model import (Connection, Coverage, CoverageStatus, FindingStatus, HostInfo, ProcessInfo, Snapshot,
                               Verdict)
from audit_agent.yamlfile import ConfigError

AUDIT_DAY = dt.datetime(2026, 11, 24, 14, 5, tzinfo=dt.timezone.utc).timestamp()
RESEARCH_ARGV = ["/opt/research/pow-energy/bin/cpuminer-opt", "--algo", "sha256d", "--url",
                 "stratum+tcp://10.20.0.5:3333", "--user", "testnet-lab.cn117", "--threads", "16"]


def snapshot(host: str = "cn-117", user: str = "zhaolei", cpu_percent: float = 1540.0) -> Snapshot:
    research = ProcessInfo(pid=5120, ppid=1, name="cpuminer-opt", exe=RESEARCH_ARGV[0], cmdline=list(RESEARCH_ARGV),
                           username=user, cpu_percent=cpu_percent, allowed_cpus=16, slurm_job_id="90122")
    return Snapshot(collected_at=AUDIT_DAY, window_seconds=30.0,
                    host=HostInfo(hostname=host, os="Linux", cpu_cores=64, cpu_threads=64),
                    processes=[ProcessInfo(pid=1, name="systemd", exe="/usr/lib/systemd/systemd",
                                           cmdline=["/sbin/init"], username="root"), research],
                    connections=[Connection(pid=5120, protocol="tcp", local_address="10.20.8.117", local_port=41000,
                                            remote_address="10.20.0.5", remote_port=3333, state="ESTABLISHED")],
                    coverage=[Coverage("processes", CoverageStatus.OK, inspected=2),
                              Coverage("network", CoverageStatus.OK, inspected=1)])


def registry(tmp_path: Path, *, valid_until: str = "2027-02-28", hosts: str = '["cn-117", "cn-118"]',
             users: str = "[zhaolei]", cpu_cores: int = 16) -> list:
    path = tmp_path / "filings.yaml"
    path.write_text(textwrap.dedent(f"""\
        filings:
          - number: TEST-2026-001
            approved_by: Provincial Development and Reform Commission (test)
            project: Energy efficiency of proof-of-work consensus
            discipline: Computer science
            responsible: Prof. Zhao Lei
            hosts: {hosts}
            users: {users}
            workloads: ['/opt/research/pow-energy/bin/']
            scale: {{cpu_cores: {cpu_cores}, gpus: 0}}
            valid_from: 2026-03-01
            valid_until: {valid_until}
        """), encoding="utf-8")
    return load_registry(path)


def research_finding(report):
    return next(f for f in report.findings if f.subject.pid == 5120)


def test_valid_filing_registers_the_workload(tmp_path, compiled_rules):
    report = evaluate(snapshot(), compiled_rules, filings=registry(tmp_path), now=AUDIT_DAY)
    finding = research_finding(report)
    assert finding.status == FindingStatus.REGISTERED
    assert finding.filing == "TEST-2026-001"
    assert report.verdict == Verdict.COMPLIANT
    assert report.filings[0]["status"] == "registered"
    assert report.filings[0]["used_cpu_cores"] == pytest.approx(15.4)


def test_no_filing_makes_mining_software_non_compliant(compiled_rules):
    report = evaluate(snapshot(), compiled_rules, filings=[], now=AUDIT_DAY)
    assert research_finding(report).status == FindingStatus.OPEN
    assert report.verdict == Verdict.NON_COMPLIANT


def test_expired_filing_is_counted(tmp_path, compiled_rules):
    report = evaluate(snapshot(), compiled_rules, filings=registry(tmp_path, valid_until="2026-10-31"), now=AUDIT_DAY)
    finding = research_finding(report)
    assert finding.status == FindingStatus.REGISTRATION_EXPIRED
    assert "2026-10-31" in finding.status_reason
    assert report.verdict == Verdict.NON_COMPLIANT


def test_host_outside_the_filing_is_counted(tmp_path, compiled_rules):
    report = evaluate(snapshot(host="gpu-lab-03"), compiled_rules, filings=registry(tmp_path), now=AUDIT_DAY)
    finding = research_finding(report)
    assert finding.status == FindingStatus.OUTSIDE_REGISTRATION
    assert "gpu-lab-03" in finding.status_reason
    assert report.verdict == Verdict.NON_COMPLIANT


def test_user_outside_the_filing_is_counted(tmp_path, compiled_rules):
    report = evaluate(snapshot(user="chenyu"), compiled_rules, filings=registry(tmp_path), now=AUDIT_DAY)
    finding = research_finding(report)
    assert finding.status == FindingStatus.OUTSIDE_REGISTRATION
    assert "chenyu" in finding.status_reason
    assert report.verdict == Verdict.NON_COMPLIANT


def test_use_beyond_the_filed_scale_is_counted(tmp_path, compiled_rules):
    report = evaluate(snapshot(), compiled_rules, filings=registry(tmp_path, cpu_cores=4), now=AUDIT_DAY)
    finding = research_finding(report)
    assert finding.status == FindingStatus.OUTSIDE_REGISTRATION
    assert "beyond the 4 filed" in finding.status_reason
    assert report.verdict == Verdict.NON_COMPLIANT
    assert report.filings[0]["status"] == "outside_registration"


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_report_shows_the_filing_and_its_status(tmp_path, compiled_rules, lang):
    from audit_agent.i18n import translator
    from audit_agent.render import RenderOptions, render

    report = evaluate(snapshot(), compiled_rules, filings=registry(tmp_path, cpu_cores=4), now=AUDIT_DAY)
    html = render("html", report, RenderOptions(lang=lang))
    t = translator(lang)
    assert "TEST-2026-001" in html
    assert t("status.outside_registration") in html
    assert t("registered.scale_cpu", used="15.4", filed="4") in html


def test_registry_errors_name_the_line(tmp_path):
    path = tmp_path / "filings.yaml"
    path.write_text("filings:\n  - number: X-1\n    approved_by: a\n    project: p\n    discipline: d\n"
                    "    responsible: r\n    hosts: [h]\n    workloads: ['(']\n"
                    "    valid_from: 2026-01-01\n    valid_until: 2026-12-31\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"filings\.yaml:8: bad workload regex"):
        load_registry(path)


def test_demo_registry_loads():
    from audit_agent.paths import data_dir
    numbers = [f.number for f in load_registry(data_dir("seeds") / "filings.yaml")]
    assert numbers == ["DEMO-2026-BC-017", "DEMO-2025-BC-004"]


DEMO_SNAPSHOT = Path(__file__).resolve().parents[1] / "seeds" / "login-02.snapshot.json"


@pytest.mark.parametrize("written, line, message", [
    ("valid_until: 2026-02-30", 12, "'2026-02-30' is not a real date"),       # YAML's own date type
    ("valid_until: 2026-13-01", 12, "'2026-13-01' is not a real date"),
    ("valid_until: '2026-02-30'", 12, "valid_until '2026-02-30' is not a real date"),    # quoted: a string
    ("valid_until: 2026-02-29T10:00:00", 12, "is not a real date"),
    ("valid_until: 2026-01-01 10:00:00 +25:00", 12, "is not a real date"),
    ("valid_until: 2026-02-28", 12, "valid_until 2026-02-28 is before valid_from 2026-03-01"),
    ("valid_until: [2027-01-01]", 12, "valid_until must be a date"),
])
def test_an_impossible_date_in_the_registry_is_one_line_with_file_and_line(agent, tmp_path, written, line, message):
    """Through the real CLI: exit 2, one line naming filings.yaml and the line of the bad key, no traceback,
    and no report written."""
    path = tmp_path / "filings.yaml"
    registry(tmp_path)          # the valid registry, then the date broken
    path.write_text(path.read_text(encoding="utf-8").replace("valid_until: 2027-02-28", written), encoding="utf-8")
    (tmp_path / "config.yaml").write_text("filings: filings.yaml\n", encoding="utf-8")
    out = tmp_path / "report.json"
    result = agent("scan", "--snapshot", str(DEMO_SNAPSHOT), "--config", str(tmp_path / "config.yaml"),
                   "--json", str(out), "--html", str(tmp_path / "report.html"))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert f"filings.yaml:{line}: " in result.stderr and message in result.stderr
    assert not out.exists() and not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("scale, message", [("{cpu_cores: -1}", "scale.cpu_cores must be a non-negative number"),
                                            ("{gpus: .inf}", "scale.gpus must be a non-negative number"),
                                            ("{gpus: many}", "scale.gpus must be a non-negative number")])
def test_a_bad_scale_names_its_line(tmp_path, scale, message):
    path = tmp_path / "filings.yaml"
    registry(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("scale: {cpu_cores: 16, gpus: 0}", f"scale: {scale}"),
                    encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_registry(path)
    assert f"filings.yaml:10: {message}" in str(error.value)
