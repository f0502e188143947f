"""JUnit XML: one <testsuite> per host, one <testcase> per check and one per finding.

CI servers show every check, so a clean run is visible too. A counted finding
is a <failure> (exactly one per case: some servers keep only the first) with
the evidence as text; registered and allowlisted findings pass with a note in
<system-out>; coverage `skipped`/`not_applicable` is <skipped>, `error` is
<error>. Text is built with ElementTree (which escapes &, <, > and quotes, so a
`]]>` in data stays inert) after removing characters XML 1.0 cannot carry.
"""
from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from audit_agent.model import COUNTED_STATUSES, AuditReport, Coverage, CoverageStatus, Finding
from audit_agent.render.view import clean

# Not allowed anywhere in an XML 1.0 document, not even as character references.
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def xml_text(value: object) -> str:
    """Report text made safe for XML 1.0: redacted, control characters visible, capped, illegal ones gone."""
    return XML_ILLEGAL.sub("\ufffd", clean(str(value if value is not None else "")))


def render(report: AuditReport, options: object = None) -> str:
    host = xml_text(report.host.hostname or "unknown-host")
    checks = [check_case(entry, host) for entry in report.coverage]
    findings = [finding_case(finding, host) for finding in report.findings]
    cases = checks + findings
    counts = {kind: sum(1 for case in cases if case.find(kind) is not None) for kind in ("failure", "error", "skipped")}
    stamp = dt.datetime.fromtimestamp(report.collected_at or report.generated_at, tz=dt.timezone.utc)
    attrs = {"name": f"audit-agent {host}", "tests": str(len(cases)), "failures": str(counts["failure"]),
             "errors": str(counts["error"]), "skipped": str(counts["skipped"]), "time": f"{report.window_seconds:.3f}"}
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(root, "testsuite", {**attrs, "hostname": host, "id": "0",
                                              "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S")})
    properties = ET.SubElement(suite, "properties")
    for name, value in (("verdict", report.verdict.value), ("agent_version", report.agent_version),
                        ("rule_pack", f"{report.rule_pack.name} {report.rule_pack.version}"),
                        ("rule_pack_sha256", report.rule_pack.sha256),
                        ("processes", report.process_count), ("connections", report.connection_count)):
        ET.SubElement(properties, "property", {"name": name, "value": xml_text(value)})
    suite.extend(cases)
    out = ET.SubElement(suite, "system-out")
    out.text = xml_text("\n".join([f"verdict: {report.verdict.value}", *report.verdict_reasons]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def check_case(entry: Coverage, host: str) -> ET.Element:
    case = ET.Element("testcase", {"classname": f"audit_agent.{host}.checks", "name": f"check {xml_text(entry.check)}",
                                   "time": "0"})
    detail = xml_text(entry.reason or f"{entry.status.value}: {entry.inspected} inspected, {entry.denied} denied")
    if entry.status in (CoverageStatus.SKIPPED, CoverageStatus.NOT_APPLICABLE):
        ET.SubElement(case, "skipped", {"message": detail})
    elif entry.status == CoverageStatus.ERROR:
        ET.SubElement(case, "error", {"message": detail, "type": "collector-error"}).text = detail
    else:
        accepted = "".join(f"\n{a.item}: accepted by policy: {a.reason} ({a.source})" for a in entry.accepted)
        ET.SubElement(case, "system-out").text = xml_text(
            f"{entry.status.value}: {entry.inspected} inspected, {entry.denied} denied. {entry.reason}".strip() + accepted)
    return case


def finding_case(finding: Finding, host: str) -> ET.Element:
    subject = finding.subject
    # Named from what the fingerprint holds (no PID): CI keeps one history per finding across scans.
    who = subject.exe or subject.path or subject.name or subject.kind
    rule = finding.rule_ids[0] if finding.rule_ids else "finding"
    case = ET.Element("testcase", {"classname": f"audit_agent.{host}.findings.{xml_text(finding.category)}",
                                   "name": xml_text(f"{rule} {finding.title} ({who}) [{finding.fingerprint}]"),
                                   "time": "0"})
    if finding.status in COUNTED_STATUSES:
        failure = ET.SubElement(case, "failure", {"message": xml_text(f"[{finding.severity.value}] {finding.title}"),
                                                  "type": finding.severity.value})
        failure.text = evidence_text(finding)
    else:
        ET.SubElement(case, "system-out").text = xml_text(
            f"{finding.status.value}: {finding.status_reason}\n\n{evidence_text(finding)}")
    return case


def evidence_text(finding: Finding) -> str:
    s = finding.subject
    lines = [f"severity: {finding.severity.value}  confidence: {finding.confidence:.0%}  status: {finding.status.value}",
             f"rules: {', '.join(finding.rule_ids)}  attack: {', '.join(finding.attack)}"]
    for label, value in (("pid", s.pid), ("user", s.username), ("exe", s.exe), ("path", s.path),
                         ("cmdline", s.cmdline), ("container", s.container_id), ("slurm job", s.slurm_job_id),
                         ("connections", ", ".join(s.connections)), ("gpu", s.gpu_index)):
        if value not in (None, ""):
            lines.append(f"{label}: {value}")
    lines += [f"- {reason}" for reason in finding.reasons]
    lines += [f"evidence {e.rule_id} {e.field}: {e.value} (matched {e.matched})" for e in finding.evidence]
    if finding.status_reason:
        lines.append(f"{finding.status.value}: {finding.status_reason}")
    if finding.recommended_action:
        lines.append(f"action: {finding.recommended_action}")
    return xml_text("\n".join(lines))
