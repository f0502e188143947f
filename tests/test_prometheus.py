"""Prometheus textfile: parsed back with prometheus-client's own parser; naming, completeness, escaping, atomicity."""
from __future__ import annotations

import os
import stat

import pytest
from prometheus_client.parser import text_string_to_metric_families

from audit_agent.export.prometheus import FILENAME, Counters, render, write_textfile
from audit_agent.model import Coverage, CoverageStatus, SEVERITY_ORDER, Verdict
from tests.conftest import MONERO_WALLET
from tests.factories import conn, proc, scan, snapshot


@pytest.fixture(scope="module")
def miner_report():
    miner = proc(4242, f"/tmp/.x/xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u {MONERO_WALLET}", cpu=190.0)
    return scan(snapshot([miner, proc(7, "/usr/sbin/sshd -D", user="root")], [conn(4242, "94.130.12.27", 3333)]))


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family) -> dict:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def test_metrics_parse_and_carry_the_verdict_and_every_severity(miner_report):
    text = render(miner_report, 1.25, 1_800_000_000.5, Counters(scans_total=3, spool_dropped_total=2))
    parsed = families(text)
    assert all(name.startswith("audit_agent_") for name in parsed)
    verdicts = samples(parsed["audit_agent_verdict"])
    assert len(verdicts) == len(Verdict) and sum(verdicts.values()) == 1
    assert verdicts[(("verdict", "non_compliant"),)] == 1
    findings = samples(parsed["audit_agent_findings"])
    assert {dict(k)["severity"] for k in findings} == {s.value for s in SEVERITY_ORDER}, "every severity, even 0"
    assert sum(findings.values()) >= 1 and findings[(("severity", "info"),)] == 0
    assert samples(parsed["audit_agent_findings_by_category"])[(("category", "miner"),)] >= 1
    assert samples(parsed["audit_agent_scan_duration_seconds"])[()] == 1.25
    assert samples(parsed["audit_agent_last_run_timestamp_seconds"])[()] == 1_800_000_000.5
    info = parsed["audit_agent_rule_pack_info"].samples[0]
    assert info.labels == {"name": miner_report.rule_pack.name, "version": miner_report.rule_pack.version}
    assert parsed["audit_agent_spool_dropped"].type == "counter"       # the parser strips _total
    assert samples(parsed["audit_agent_spool_dropped"])[()] == 2
    coverage = samples(parsed["audit_agent_coverage"])
    assert coverage[(("check", "processes"), ("status", "ok"))] == 1
    assert coverage[(("check", "processes"), ("status", "partial"))] == 0
    for line in text.splitlines():
        if line.startswith("audit_agent_"):
            assert "pid=" not in line and "user" not in line and "cmdline" not in line
    assert "4242" not in text and MONERO_WALLET not in text and "xmrig" not in text


def test_every_family_has_help_and_type(miner_report):
    text = render(miner_report, 0.5, 1.0)
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for name in names:
        base = name
        assert f"# HELP {base} " in text and f"# TYPE {base} " in text


def test_label_values_are_escaped(miner_report):
    odd = 'we"ird\\check\nname'
    miner_report.coverage.append(Coverage(odd, CoverageStatus.SKIPPED, "test"))
    try:
        parsed = families(render(miner_report, 0.1, 1.0))
    finally:
        miner_report.coverage.pop()
    checks = {s.labels["check"] for s in parsed["audit_agent_coverage"].samples}
    assert odd in checks


def test_write_is_atomic_and_readable_by_node_exporter(tmp_path, miner_report):
    path = write_textfile(tmp_path, render(miner_report, 0.1, 1.0))
    assert path == tmp_path / FILENAME
    assert os.listdir(tmp_path) == [FILENAME], "no temp file left behind"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    families(path.read_text())


def test_write_into_an_impossible_directory_raises_oserror_and_leaves_nothing(tmp_path, miner_report):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        write_textfile(blocker / "sub", render(miner_report, 0.1, 1.0))


def test_counted_statuses_and_categories_are_the_models():
    from audit_agent import fleet, model
    from audit_agent.export import prometheus
    from audit_agent.render import junit
    assert prometheus.CATEGORIES is model.CATEGORIES
    assert prometheus.COUNTED_STATUSES is junit.COUNTED_STATUSES is model.COUNTED_STATUSES
    assert not hasattr(prometheus, "COUNTED") and not hasattr(junit, "COUNTED")
    assert fleet.COUNTED == {status.value for status in model.COUNTED_STATUSES}
