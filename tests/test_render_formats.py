"""Markdown, JUnit XML and SARIF from the same AuditReport: valid, complete, and inert against hostile data."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from markdown_it import MarkdownIt

from audit_agent.model import CoverageStatus, FindingStatus, Severity
from audit_agent.render import FORMATS, RenderOptions, render
from audit_agent.render.sarif import level
from tests.conftest import MONERO_WALLET, SECRETS

SARIF_SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
COUNTED = (FindingStatus.OPEN, FindingStatus.REGISTRATION_EXPIRED, FindingStatus.OUTSIDE_REGISTRATION)
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def reports(demo_reports, hostile_report):
    return {**demo_reports, "hostile": hostile_report}


# ---------------------------------------------------------------- JUnit


def junit_structure(xml_text: str, report) -> None:
    """Strict structure: the shape CI servers (Jenkins, GitLab) read."""
    assert not XML_ILLEGAL.search(xml_text)
    root = ET.fromstring(xml_text.encode("utf-8"))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1 and suites[0].get("hostname")
    suite = suites[0]
    for attr in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp"):
        assert suite.get(attr) is not None, attr
    cases = suite.findall("testcase")
    assert len(cases) == len(report.coverage) + len(report.findings) == int(suite.get("tests"))
    allowed = {"failure", "error", "skipped", "system-out", "system-err"}
    for case in cases:
        assert case.get("name") and case.get("classname")
        children = [child.tag for child in case]
        assert set(children) <= allowed
        assert sum(children.count(tag) for tag in ("failure", "error", "skipped")) <= 1   # one outcome per case
    assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
    assert int(suite.get("errors")) == sum(1 for c in cases if c.find("error") is not None)
    assert int(suite.get("skipped")) == sum(1 for c in cases if c.find("skipped") is not None)


@pytest.mark.parametrize("name", ["gpu-lab-03", "login-02", "cn-117", "hostile"])
def test_junit_parses_and_has_one_case_per_check_and_finding(tmp_path, demo_reports, hostile_report, name):
    report = reports(demo_reports, hostile_report)[name]
    text = render("junit", report, RenderOptions())
    junit_structure(text, report)
    path = tmp_path / "junit.xml"
    path.write_text(text, encoding="utf-8")
    suites = list(JUnitXml.fromfile(str(path)))
    assert len(suites) == 1
    outcomes = [type(case.result[0]) if case.result else None for case in suites[0]]
    assert outcomes.count(Failure) == sum(1 for f in report.findings if f.status in COUNTED)
    assert outcomes.count(Error) == sum(1 for c in report.coverage if c.status == CoverageStatus.ERROR)
    assert outcomes.count(Skipped) == sum(1 for c in report.coverage
                                          if c.status in (CoverageStatus.SKIPPED, CoverageStatus.NOT_APPLICABLE))


def test_junit_registered_findings_pass_with_a_note(demo_reports):
    text = render("junit", demo_reports["cn-117"], RenderOptions())
    root = ET.fromstring(text)
    finding_cases = [c for c in root.iter("testcase") if ".findings." in c.get("classname")]
    assert finding_cases and all(c.find("failure") is None for c in finding_cases)
    assert all(c.find("system-out").text.startswith(("registered", "allowlisted")) for c in finding_cases)


def test_junit_hostile_text_is_escaped(hostile_report):
    text = render("junit", hostile_report, RenderOptions())
    root = ET.fromstring(text.encode("utf-8"))
    failure_text = "".join(root.find(".//failure").itertext())
    assert "<script>alert(1)</script>" in failure_text              # as text, after parsing
    assert "]]>" not in text.replace("]]&gt;", "")                  # never raw in the document
    assert "\x1b" not in text and "\x00" not in text


# ---------------------------------------------------------------- SARIF


@pytest.mark.parametrize("name", ["gpu-lab-03", "login-02", "cn-117", "hostile"])
def test_sarif_validates_against_the_2_1_0_schema(demo_reports, hostile_report, name):
    report = reports(demo_reports, hostile_report)[name]
    log = json.loads(render("sarif", report, RenderOptions()))
    validator = jsonschema.Draft4Validator(SARIF_SCHEMA, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    run = log["runs"][0]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert len(rules) == len(set(rules))                          # each rule listed once
    assert set(rules) == {r for f in report.findings for r in f.rule_ids}
    assert len(run["results"]) == len(report.findings)
    for result, finding in zip(run["results"], report.findings, strict=True):
        assert result["level"] == level(finding.severity)
        assert rules[result["ruleIndex"]] == result["ruleId"]
        assert result["partialFingerprints"]["auditAgentFinding/v1"] == finding.fingerprint
        assert result["locations"][0]["logicalLocations"] or result["locations"][0]["physicalLocation"]


def test_sarif_locations_and_suppressions(demo_reports):
    log = json.loads(render("sarif", demo_reports["login-02"], RenderOptions()))
    uris = [r["locations"][0].get("physicalLocation", {}).get("artifactLocation", {}).get("uri")
            for r in log["runs"][0]["results"]]
    assert "file:///dev/shm/.x/kworker" in uris                          # the executable, "(deleted)" dropped
    assert "file:///var/spool/cron/crontabs/wangfang" in uris
    registered = json.loads(render("sarif", demo_reports["cn-117"], RenderOptions()))["runs"][0]["results"]
    assert all(r["suppressions"][0]["status"] == "accepted" for r in registered)


def test_sarif_fingerprints_are_stable_across_scans(demo_reports):
    first = json.loads(render("sarif", demo_reports["gpu-lab-03"], RenderOptions()))
    second = json.loads(render("sarif", demo_reports["gpu-lab-03"], RenderOptions()))
    assert first == second


def test_sarif_has_what_github_code_scanning_reads(demo_reports, hostile_report):
    """security-severity on every rule, help in text and Markdown, a reference URL, a category per host."""
    report = demo_reports["login-02"]
    run = json.loads(render("sarif", report, RenderOptions()))["runs"][0]
    assert run["automationDetails"]["id"].startswith(f"audit-agent/{report.host.hostname}/")
    scores = {"critical": 9.0, "high": 7.0, "medium": 4.0, "low": 0.1}
    for rule in run["tool"]["driver"]["rules"]:
        score = float(rule["properties"]["security-severity"])
        worst = max((f.severity for f in report.findings if rule["id"] in f.rule_ids), key=lambda s: s.rank)
        assert score >= scores.get(worst.value, 0.0)
        assert rule["helpUri"].startswith("https://")
        assert rule["help"]["text"] and rule["help"]["markdown"].startswith("**")
    xmrig = next(r for r in run["tool"]["driver"]["rules"] if r["id"] == "AA-BIN-001")
    assert "**Action:**" in xmrig["help"]["markdown"] and xmrig["helpUri"] != "https://attack.mitre.org/techniques/T1496/"
    other = json.loads(render("sarif", demo_reports["gpu-lab-03"], RenderOptions()))["runs"][0]
    assert other["automationDetails"]["id"].split("/")[1] != run["automationDetails"]["id"].split("/")[1]
    hostile = json.loads(render("sarif", hostile_report, RenderOptions()))["runs"][0]
    for rule in hostile["tool"]["driver"]["rules"]:
        assert "<script" not in rule["help"]["markdown"].lower()


def test_junit_names_carry_the_fingerprint_not_the_pid(demo_reports):
    report = demo_reports["login-02"]
    root = ET.fromstring(render("junit", report, RenderOptions()).encode("utf-8"))
    names = [case.get("name") for case in root.iter("testcase") if ".findings." in case.get("classname")]
    assert len(names) == len(report.findings)
    for finding in report.findings:
        [name] = [n for n in names if f"[{finding.fingerprint}]" in n]
        if finding.subject.pid is not None:
            assert f"pid {finding.subject.pid}" not in name and not re.search(rf"\b{finding.subject.pid}\b", name)


def test_severity_levels_in_one_function():
    assert [level(s) for s in (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO)] == \
        ["error", "error", "warning", "note", "note"]


# ---------------------------------------------------------------- Markdown


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_markdown_from_hostile_data_has_no_html_or_links(hostile_report, lang):
    text = render("markdown", hostile_report, RenderOptions(lang=lang))
    parser = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    tokens = parser.parse(text)
    inline = [child for token in tokens for child in (token.children or [])]
    assert not [t for t in tokens + inline if t.type in ("html_block", "html_inline")]
    assert not [t for t in inline if t.type in ("link_open", "image", "code_inline")]
    rendered = parser.render(text)
    assert "<script" not in rendered and "<img" not in rendered and "<b>" not in rendered
    assert "\x1b" not in text and "\x00" not in text
    assert not re.search(r"(?<!\\)://|(?<!\\)www\.", text)    # no GFM autolinks to a pool or dropper


def test_markdown_tables_keep_their_columns(demo_reports, hostile_report):
    for report in (demo_reports["login-02"], hostile_report):
        text = render("markdown", report, RenderOptions())
        for block in re.findall(r"((?:^\|.*\|\n)+)", text, re.M):
            widths = {len(re.findall(r"(?<!\\)\|", line)) for line in block.splitlines()}
            assert len(widths) == 1, block[:300]


def test_markdown_in_chinese_names_findings_and_actions_in_chinese(demo_reports):
    from audit_agent.i18n import load_rule_texts
    zh = load_rule_texts("zh-CN")
    text = render("markdown", demo_reports["login-02"], RenderOptions(lang="zh-CN"))
    assert "### 1. [严重] XMRig 系列挖矿程序（程序文件内容）\n" in text
    assert f"处置建议: {zh['AA-BIN-001']['action']}" in text
    assert "| 发现位置 | 所见内容 | 含义 |" in text
    assert f"| {zh['AA-WALLET-001']['meaning']} (AA-WALLET-001) |" in text
    assert not [r for f in demo_reports["login-02"].findings for r in f.reasons if r in text]
    registered = render("markdown", demo_reports["cn-117"], RenderOptions(lang="zh-CN"))
    assert "] Stratum 矿池地址（命令行）:" in registered          # registered workloads too
    assert "无需处置" in registered and "Stop the process" not in registered
    english = render("markdown", demo_reports["login-02"], RenderOptions(lang="en"))
    finding = demo_reports["login-02"].open_findings[0]
    assert f"] {finding.title} — executable content\n" in english and f"Recommended action: {finding.recommended_action}" in english


# ---------------------------------------------------------------- every format


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_secrets_redacted_and_wallet_kept_in_every_format(hostile_report, fmt):
    output = render(fmt, hostile_report, RenderOptions())
    text = output.decode("utf-8") if isinstance(output, bytes) else output
    assert not [secret for secret in SECRETS if secret in text], fmt
    if fmt != "text":       # the terminal table wraps a 95-character wallet over lines
        assert MONERO_WALLET in text, fmt


def test_text_renderer_prints_no_escape_byte(hostile_report):
    text = render("text", hostile_report, RenderOptions(color=False))
    assert "\x1b" not in text and "\x07" not in text and "\x00" not in text


def test_sarif_and_junit_name_each_finding_by_its_lead_rule(demo_reports):
    from audit_agent.render.view import lead_rule
    for report in demo_reports.values():
        sarif = json.loads(render("sarif", report, RenderOptions()))
        rule_ids = [r["ruleId"] for r in sarif["runs"][0]["results"]]
        names = [c.get("name") for c in ET.fromstring(render("junit", report, RenderOptions())).iter("testcase")
                 if ".findings." in c.get("classname")]
        for finding in report.findings:
            lead = lead_rule(finding)
            if lead is None:
                continue
            assert lead in rule_ids, (finding.title, rule_ids)
            assert any(name.startswith(f"{lead} {finding.title}") for name in names), (finding.title, names)
        descriptors = {r["id"]: r["shortDescription"]["text"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]}
        for finding in report.findings:
            if lead_rule(finding):
                assert descriptors[lead_rule(finding)] == finding.title
