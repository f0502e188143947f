"""Events for SIEMs: one JSON object per finding (scan) or per change (watch), with Elastic Common Schema
field names (https://www.elastic.co/guide/en/ecs/current/ecs-field-reference.html), written as JSON lines
(`--events FILE`) and optionally sent to syslog (export/syslog.py).

ECS fields used: @timestamp, message, ecs.version, event.{kind,category,type,action,dataset,module,
severity,risk_score,id,reason,outcome}, host.{name,hostname}, process.{pid,name,executable,command_line},
user.name, rule.{id,name,ruleset,version,reference,category}, threat.{framework,technique.id,
technique.name,technique.reference}, observer.{product,vendor,version,type}, labels. What ECS has no
field for (confidence, status, evidence, verdict) goes under the custom `audit_agent` object.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from audit_agent.model import AuditReport, Finding, Severity

ECS_VERSION = "8.11.0"
# event.severity / event.risk_score: the 0-100 scale of Elastic's detection rules.
SEVERITY_SCORE = {Severity.INFO: 21, Severity.LOW: 21, Severity.MEDIUM: 47, Severity.HIGH: 73, Severity.CRITICAL: 99}
CATEGORY = {"network": ["network"], "persistence": ["configuration"], "gpu": ["host"], "load": ["host"],
            "stealth": ["process", "malware"], "miner": ["process", "malware"]}
MAX_LINE = 64 * 1024


def timestamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def base(report: AuditReport, when: float) -> dict[str, Any]:
    return {"@timestamp": timestamp(when), "ecs": {"version": ECS_VERSION},
            "host": {"name": report.host.hostname, "hostname": report.host.hostname},
            "observer": {"product": "audit-agent", "vendor": "audit-agent", "version": report.agent_version,
                         "type": "compliance-audit"}}


def finding_event(report: AuditReport, finding: Finding, action: str = "finding-reported",
                  when: float | None = None) -> dict[str, Any]:
    subject = finding.subject
    lead = finding.rule_ids[0] if finding.rule_ids else ""
    event = base(report, when if when is not None else report.generated_at)
    event["message"] = f"{finding.title}: {' '.join(finding.reasons[:3])}".strip()
    event["event"] = {"kind": "alert", "category": CATEGORY.get(finding.category, ["host"]), "type": ["info"],
                      "action": action, "dataset": "audit_agent.finding", "module": "audit_agent",
                      "id": finding.fingerprint, "severity": SEVERITY_SCORE[finding.severity],
                      "risk_score": round(SEVERITY_SCORE[finding.severity] * finding.confidence, 1),
                      "reason": finding.reasons[0] if finding.reasons else finding.title}
    if subject.pid is not None or subject.exe:
        event["process"] = {key: value for key, value in (("pid", subject.pid), ("name", subject.name),
                                                          ("executable", subject.exe),
                                                          ("command_line", subject.cmdline)) if value not in (None, "")}
    if subject.username:
        event["user"] = {"name": subject.username}
    event["rule"] = {"id": lead, "name": finding.title, "category": finding.category,
                     "ruleset": report.rule_pack.name, "version": report.rule_pack.version}
    if lead in report.rule_pack.references:
        event["rule"]["reference"] = report.rule_pack.references[lead]
    event["threat"] = {"framework": "MITRE ATT&CK",
                       "technique": {"id": list(finding.attack), "name": ["Resource Hijacking"],
                                     "reference": ["https://attack.mitre.org/techniques/T1496/"]}}
    event["labels"] = {"status": finding.status.value, "severity": finding.severity.value}
    event["audit_agent"] = {"fingerprint": finding.fingerprint, "status": finding.status.value,
                            "status_reason": finding.status_reason, "confidence": finding.confidence,
                            "rule_ids": list(finding.rule_ids), "reasons": list(finding.reasons),
                            "evidence": [{"field": e.field, "value": e.value, "matched": e.matched,
                                          "rule_id": e.rule_id} for e in finding.evidence],
                            "path": subject.path, "subject_kind": subject.kind, "filing": finding.filing}
    return event


def scan_events(report: AuditReport) -> list[dict[str, Any]]:
    """`scan --events`: one event per finding, every status (an allowlisted one says so in its labels)."""
    return [finding_event(report, finding) for finding in report.findings]


def change_events(report: AuditReport, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`watch`: one event per change the cycle found (watch.diff items), verdict changes included."""
    by_fingerprint = {f.fingerprint: f for f in report.findings}
    events = []
    for item in changes:
        kind, when = str(item.get("event", "")), float(item.get("time") or report.generated_at)
        finding = by_fingerprint.get(str(item.get("fingerprint", "")))
        if finding is not None:
            events.append(finding_event(report, finding, action=f"finding-{kind.replace('_', '-')}", when=when))
        elif kind == "verdict_changed":
            event = base(report, when)
            event["message"] = f"verdict {item.get('previous_verdict') or '(none)'} -> {item.get('verdict')}"
            event["event"] = {"kind": "event", "category": ["host"], "type": ["change"], "action": "verdict-changed",
                              "dataset": "audit_agent.verdict", "module": "audit_agent",
                              "reason": "; ".join(item.get("reasons") or [])}
            event["audit_agent"] = {"verdict": item.get("verdict"), "previous_verdict": item.get("previous_verdict")}
            events.append(event)
        elif kind == "resolved":
            event = base(report, when)
            event["message"] = f"resolved: {item.get('title', '')}"
            event["event"] = {"kind": "event", "category": ["host"], "type": ["end"], "action": "finding-resolved",
                              "dataset": "audit_agent.finding", "module": "audit_agent",
                              "id": item.get("fingerprint")}
            event["audit_agent"] = {"fingerprint": item.get("fingerprint"), "rule_ids": item.get("rule_ids", [])}
            events.append(event)
    return events


def line(event: dict[str, Any]) -> str:
    """One JSON line; every control character escaped (ensure_ascii), so data cannot break the framing."""
    text = json.dumps(event, ensure_ascii=True, separators=(",", ":"))
    if len(text) > MAX_LINE:                       # evidence is capped upstream; this is the last guard
        event = {**event, "audit_agent": {"truncated": True, "fingerprint": event.get("event", {}).get("id")}}
        text = json.dumps(event, ensure_ascii=True, separators=(",", ":"))[:MAX_LINE]
    return text


def append_events(path: str | Path, events: list[dict[str, Any]]) -> None:
    """Append whole lines to a file we create 0640 or that exists as a regular file (never through a link)."""
    if not events:
        return
    payload = "".join(line(event) + "\n" for event in events).encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
