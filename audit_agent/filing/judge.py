"""How the registry judges a host's findings, and the lifecycle of its filings.

A finding whose workload matches a valid filing, on a filed host, by a filed user, within the
filed scale, is `registered`: listed, not counted. A matching filing that has expired, or a
workload outside its hosts, users or scale, is counted with the reason. A research system no
filing matches is `unfiled` (counted); any other finding no filing matches stays open.

Validity is judged on the calendar day of the institution's time zone (audit_agent/timezone.py).
A filing expiring within `warn_days` is flagged; a filing for this host that matched nothing is
reported as unused (its workload no longer runs here).
"""
from __future__ import annotations

import datetime as dt
import fnmatch
from typing import Any

from audit_agent.filing import scale
from audit_agent.filing.decision import decide, decide_all, english
from audit_agent.filing.registry import Filing
from audit_agent.model import Finding, FindingStatus, Snapshot
from audit_agent.timezone import local_day, zone_label

WARN_DAYS = 30
RESEARCH = "research"


def workload_matches(filing: Filing, finding: Finding) -> bool:
    texts = [finding.subject.exe, finding.subject.cmdline, finding.subject.name, finding.subject.path]   # path: a plot folder
    return any(pattern.search(text) for pattern in filing.workloads for text in texts if text)


def host_matches(filing: Filing, hostname: str) -> bool:
    return any(fnmatch.fnmatchcase(hostname, pattern) for pattern in filing.hosts)


def apply_filings(findings: list[Finding], filings: list[Filing], snapshot: Snapshot, at: float,
                  zone: dt.tzinfo = dt.timezone.utc, warn_days: int = WARN_DAYS) -> list[dict[str, Any]]:
    """Set each finding's status from the registry; return the filings that matter on this host.

    Those are the filings that matched a finding (with their usage and scale), and the valid
    filings for this host that matched nothing (status `unused`).
    """
    day = local_day(at or 0, zone)
    by_pid = {p.pid: p for p in snapshot.processes}
    hostname = snapshot.host.hostname
    matched: dict[str, tuple[Filing, list[Finding]]] = {}
    for finding in findings:
        if finding.status == FindingStatus.ALLOWLISTED:
            continue
        filing = next((f for f in filings if workload_matches(f, finding)), None)
        if filing is None:
            if finding.category == RESEARCH:
                finding.status = FindingStatus.UNFILED
                decide(finding, "unfiled", {})
            continue
        matched.setdefault(filing.number, (filing, []))[1].append(finding)
        finding.filing = filing.number
        finding.status, code, facts = judgement(filing, finding, hostname, day)
        decide(finding, code, facts)
    summaries = []
    for filing, covered in matched.values():
        used = scale.observed(scale.finding_pids(covered), by_pid, snapshot,
                              {f.subject.gpu_index for f in covered if f.subject.gpu_index is not None})
        over_facts = scale.excess_facts(filing.describe(), used, filing.number)
        over = [english(code, facts) for code, facts in over_facts]
        if over:
            for finding in covered:
                if finding.status == FindingStatus.REGISTERED:
                    finding.status = FindingStatus.OUTSIDE_REGISTRATION
                    decide_all(finding, over_facts)
        summary = filing.describe()
        summary.update(used_cpu_cores=used["cpu_cores"], used_gpus=used["gpus"],
                       used_gpu_memory_gib=used["gpu_memory_gib"], used_storage_tib=used["storage_tib"],
                       over_scale=over, findings=[f.fingerprint for f in covered], status=_filing_status(covered))
        summary.update(lifecycle(filing, day, zone, warn_days))
        summaries.append(summary)
    for filing in filings:
        if filing.number in matched or not host_matches(filing, hostname):
            continue
        if filing.valid_from <= day <= filing.valid_until:
            summary = filing.describe()
            summary.update(used_cpu_cores=0.0, used_gpus=0, used_gpu_memory_gib=0.0, used_storage_tib=None,
                           over_scale=[], findings=[], status="unused",
                           status_reason=f"no workload of filing {filing.number} runs on {hostname}")
            summary.update(lifecycle(filing, day, zone, warn_days))
            summaries.append(summary)
    return summaries


def lifecycle(filing: Filing, day: dt.date, zone: dt.tzinfo, warn_days: int) -> dict[str, Any]:
    left = (filing.valid_until - day).days
    return {"judged_on": day.isoformat(), "timezone": zone_label(zone), "expires_in_days": left,
            "expiring_soon": 0 <= left <= warn_days and filing.valid_from <= day}


def judge(filing: Filing, finding: Finding, hostname: str, day: dt.date) -> tuple[FindingStatus, str]:
    status, code, facts = judgement(filing, finding, hostname, day)
    return status, english(code, facts)


def judgement(filing: Filing, finding: Finding, hostname: str,
              day: dt.date) -> tuple[FindingStatus, str, dict[str, Any]]:
    """The status, and the decision as a code and its facts (audit_agent/filing/decision.py)."""
    number = filing.number
    if not filing.valid_from <= day <= filing.valid_until:
        return (FindingStatus.REGISTRATION_EXPIRED, "filing_expired",
                {"number": number, "valid_from": str(filing.valid_from), "valid_until": str(filing.valid_until),
                 "day": str(day)})
    if not host_matches(filing, hostname):
        return FindingStatus.OUTSIDE_REGISTRATION, "filing_host", {"number": number, "host": hostname}
    if filing.users and finding.subject.username not in filing.users:
        return FindingStatus.OUTSIDE_REGISTRATION, "filing_user", {"number": number,
                                                                    "user": finding.subject.username or "(unknown)"}
    return (FindingStatus.REGISTERED, "filing_valid",
            {"number": number, "project": filing.project, "approved_by": filing.approved_by})


def _filing_status(findings: list[Finding]) -> str:
    statuses = {f.status for f in findings}
    for status in (FindingStatus.REGISTRATION_EXPIRED, FindingStatus.OUTSIDE_REGISTRATION):
        if status in statuses:
            return str(status.value)
    return str(FindingStatus.REGISTERED.value)
