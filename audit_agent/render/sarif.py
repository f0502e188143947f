"""SARIF 2.1.0: one run per report, rules listed once in tool.driver.rules.

Severity maps to a SARIF level in `level()` only, and to GitHub's security-severity score
in SECURITY_SEVERITY. Each rule carries help (what it means, what to do) in text and
Markdown and its reference URL; automationDetails.id gives each host its own category. partialFingerprints carry the
finding's fingerprint (rule + executable + user + indicator, no PID), so code
scanning dashboards track a finding across scans. A finding about a file (an
executable, a cron file) points at its file:// URI; anything else (a GPU, the
host) gets a logical location. Registered and allowlisted findings are
reported with an accepted external suppression instead of being dropped.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from urllib.parse import quote

from audit_agent.i18n import load_rule_texts
from audit_agent.model import AuditReport, Finding, FindingStatus, Severity
from audit_agent.render.view import clean

SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT_KEY = "auditAgentFinding/v1"
DELETED_SUFFIX = " (deleted)"


# GitHub code scanning reads rules[].properties["security-severity"] (a CVSS-like score as a string):
# over 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low.
SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5", Severity.LOW: "3.0",
                     Severity.INFO: "1.0"}
ATTACK_URI = "https://attack.mitre.org/techniques/T1496/"


def level(severity: Severity) -> str:
    """The one place severity becomes a SARIF level."""
    if severity.rank >= Severity.HIGH.rank:
        return "error"
    if severity == Severity.MEDIUM:
        return "warning"
    return "note"


def render(report: AuditReport, options: object = None) -> str:
    rules, index = rule_descriptors(report.findings, report.rule_pack.references)
    run: dict[str, Any] = {
        # One category per host: code scanning keeps each host's alerts apart in one repository.
        "automationDetails": {"id": clean(f"audit-agent/{report.host.hostname or 'unknown-host'}/"
                                          f"{utc(report.collected_at or report.generated_at)}")},
        "tool": {"driver": {"name": "audit-agent", "version": clean(report.agent_version) or "0",
                            "semanticVersion": clean(report.agent_version) or "0.0.0",
                            "rules": rules,
                            "properties": {"rulePack": clean(report.rule_pack.name),
                                           "rulePackVersion": clean(report.rule_pack.version),
                                           "rulePackSha256": clean(report.rule_pack.sha256)}}},
        "invocations": [invocation(report)],
        "results": [result(finding, index, report.host.hostname) for finding in report.findings],
        "properties": {"hostname": clean(report.host.hostname), "verdict": report.verdict.value,
                       "verdictReasons": [clean(r) for r in report.verdict_reasons],
                       "coverage": [{"check": clean(c.check), "status": c.status.value, "reason": clean(c.reason),
                                     "inspected": c.inspected, "denied": c.denied} for c in report.coverage]},
    }
    return json.dumps({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}, indent=1, ensure_ascii=False) + "\n"


def rule_descriptors(findings: list[Finding],
                     references: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Each rule once: its title where it led a finding (else the indicator it matched), its worst level,
    help (what it means and what to do, in Markdown) and its reference URL."""
    texts = load_rule_texts("en")
    references = references or {}
    titles: dict[str, str] = {}
    worst: dict[str, Severity] = {}
    categories: dict[str, str] = {}
    for finding in findings:
        for position, rule_id in enumerate(finding.rule_ids):
            if position == 0:
                titles[rule_id] = finding.title
            elif rule_id not in titles:
                matched = next((e.matched for e in finding.evidence if e.rule_id == rule_id), "")
                titles.setdefault(rule_id, f"{rule_id}: {matched}" if matched else rule_id)
            if rule_id not in worst or finding.severity.rank > worst[rule_id].rank:
                worst[rule_id] = finding.severity
            categories.setdefault(rule_id, finding.category)
    rules, index = [], {}
    for position, rule_id in enumerate(sorted(worst)):
        index[rule_id] = position
        text = texts.get(rule_id, {})
        title = clean(titles[rule_id]) or clean(rule_id)
        uri = references.get(rule_id) or ATTACK_URI
        rules.append({"id": clean(rule_id), "name": clean(rule_id.replace("-", "")),
                      "shortDescription": {"text": title},
                      "fullDescription": {"text": clean(str(text.get("meaning") or title))},
                      "help": help_text(title, str(text.get("meaning", "")), str(text.get("action", "")), uri),
                      "helpUri": clean(uri),
                      "defaultConfiguration": {"level": level(worst[rule_id])},
                      "properties": {"category": clean(categories[rule_id]),
                                     "security-severity": SECURITY_SEVERITY[worst[rule_id]],
                                     "tags": ["security", "cryptomining", "T1496"]}})
    return rules, index


def help_text(title: str, meaning: str, action: str, uri: str) -> dict[str, str]:
    """Plain text and Markdown help; every piece goes through clean() (redacted, no controls, capped)."""
    parts = [clean(meaning), f"Action: {clean(action)}" if action else "", f"Reference: {clean(uri)}"]
    plain = "\n\n".join(p for p in [title, *parts] if p)
    markdown = "\n\n".join(p for p in [f"**{markdown_escape(title)}**", markdown_escape(clean(meaning)),
                                          f"**Action:** {markdown_escape(clean(action))}" if action else "",
                                          f"[Reference]({quote(clean(uri), safe=':/?&=#%~.-_')})"] if p)
    return {"text": plain, "markdown": markdown}


def markdown_escape(text: str) -> str:
    """No Markdown structure from data: backslash-escape the characters that make links, emphasis or HTML."""
    escaped = re.sub(r"([\\`*_{}\[\]()#+!|])", r"\\\1", text)
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")   # no tag, even escaped


def invocation(report: AuditReport) -> dict[str, Any]:
    start = report.collected_at or report.generated_at
    notifications = [{"level": "error" if c.status.value == "error" else "warning",
                      "message": {"text": clean(f"check {c.check} is {c.status.value}: {c.reason}")},
                      "descriptor": {"id": clean(c.check)}}
                     for c in report.coverage if c.status.value in ("partial", "error")]
    entry: dict[str, Any] = {"executionSuccessful": True, "startTimeUtc": utc(start),
                             "endTimeUtc": utc(start + report.window_seconds)}
    if notifications:
        entry["toolExecutionNotifications"] = notifications
    return entry


def result(finding: Finding, index: dict[str, int], hostname: str) -> dict[str, Any]:
    rule_id = finding.rule_ids[0] if finding.rule_ids else "AA-UNKNOWN"
    reasons = " ".join(finding.reasons[:3])
    entry: dict[str, Any] = {
        "ruleId": clean(rule_id), "level": level(finding.severity), "kind": "fail",
        "message": {"text": clean(f"{finding.title}. {reasons}".strip())},
        "locations": [location(finding, hostname)],
        "partialFingerprints": {FINGERPRINT_KEY: clean(finding.fingerprint)},
        "properties": {"severity": finding.severity.value, "confidence": finding.confidence,
                       "status": finding.status.value, "category": clean(finding.category),
                       "ruleIds": [clean(r) for r in finding.rule_ids], "attack": [clean(a) for a in finding.attack],
                       "reasons": [clean(r) for r in finding.reasons],
                       "evidence": [{"field": clean(e.field), "value": clean(e.value), "matched": clean(e.matched),
                                     "ruleId": clean(e.rule_id)} for e in finding.evidence],
                       "recommendedAction": clean(finding.recommended_action), "subject": subject(finding)},
    }
    if rule_id in index:
        entry["ruleIndex"] = index[rule_id]
    if finding.status in (FindingStatus.REGISTERED, FindingStatus.ALLOWLISTED):
        entry["suppressions"] = [{"kind": "external", "status": "accepted",
                                  "justification": clean(finding.status_reason or finding.status.value)}]
    return entry


def location(finding: Finding, hostname: str) -> dict[str, Any]:
    s = finding.subject
    path = s.exe or s.path
    if path.endswith(DELETED_SUFFIX):
        path = path[: -len(DELETED_SUFFIX)]
    logical = {"name": clean(s.name or s.kind), "kind": "process" if s.pid is not None else "module",
               "fullyQualifiedName": clean(f"{hostname}/{s.kind}/{s.pid if s.pid is not None else s.gpu_index if s.gpu_index is not None else s.name or s.path}")}
    entry: dict[str, Any] = {"logicalLocations": [logical]}
    if path.startswith("/"):
        entry["physicalLocation"] = {"artifactLocation": {"uri": file_uri(path)}}
    return entry


def file_uri(path: str) -> str:
    """file:// URI of an absolute path; every unusual character percent-encoded, so data cannot alter the URI."""
    return "file://" + quote(clean(path), safe="/-._~")


def subject(finding: Finding) -> dict[str, Any]:
    s = finding.subject
    data = {"kind": s.kind, "pid": s.pid, "name": s.name, "exe": s.exe, "cmdline": s.cmdline, "user": s.username,
            "cgroup": s.cgroup, "container": s.container_id, "slurmJob": s.slurm_job_id, "terminal": s.terminal,
            "connections": s.connections, "gpu": s.gpu_index, "path": s.path}
    return {key: ([clean(v) for v in value] if isinstance(value, list) else clean(value))
            for key, value in data.items() if value not in (None, "", [])}


def utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
