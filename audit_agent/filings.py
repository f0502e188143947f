"""The registry of filed (approved and registered) research systems, and how it judges findings.

A finding whose workload matches a valid filing, on a filed host, by a filed
user, within the filed scale, is `registered`: listed, not counted. A matching
filing that has expired, or a workload outside its hosts, users or scale, is
counted against the host with the reason. A finding no filing matches stays open.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_agent.model import Finding, FindingStatus, ProcessInfo, Snapshot
from audit_agent.yamlfile import ConfigError, line_of, load_yaml

FILING_KEYS = {"number", "approved_by", "project", "discipline", "responsible", "contact", "hosts", "users",
               "workloads", "scale", "valid_from", "valid_until", "notes"}


@dataclass
class Filing:
    number: str
    approved_by: str
    project: str
    discipline: str
    responsible: str
    hosts: list[str]
    users: list[str]
    workloads: list[re.Pattern[str]]
    valid_from: dt.date
    valid_until: dt.date
    cpu_cores: float | None = None
    gpus: int | None = None
    contact: str = ""
    origin: str = ""
    workload_texts: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"number": self.number, "approved_by": self.approved_by, "project": self.project,
                "discipline": self.discipline, "responsible": self.responsible, "contact": self.contact,
                "hosts": self.hosts, "users": self.users, "workloads": self.workload_texts,
                "cpu_cores": self.cpu_cores, "gpus": self.gpus,
                "valid_from": self.valid_from.isoformat(), "valid_until": self.valid_until.isoformat()}


def load_registry(path: str | Path) -> list[Filing]:
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("filings"), list):
        raise ConfigError(f"{path}:{line_of(data, 1)}: the registry must be a mapping with a 'filings' list")
    filings = [parse_filing(item, path) for item in data["filings"]]
    seen: dict[str, str] = {}
    for filing in filings:
        if filing.number in seen:
            raise ConfigError(f"{filing.origin}: duplicate filing number {filing.number} (first at {seen[filing.number]})")
        seen[filing.number] = filing.origin
    return filings


def parse_filing(item: Any, path: Path) -> Filing:
    where = f"{path}:{line_of(item)}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: each filing must be a mapping")
    unknown = set(item) - FILING_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown filing key(s) {', '.join(sorted(map(str, unknown)))}")
    for key in ("number", "approved_by", "project", "discipline", "responsible"):
        if not isinstance(item.get(key), (str, int)) or not str(item.get(key)).strip():
            raise ConfigError(f"{where}: filing needs {key!r}")
    hosts, users, workloads = (_strings(item, key, where) for key in ("hosts", "users", "workloads"))
    if not hosts:
        raise ConfigError(f"{where}: filing {item['number']} must list the hosts it covers")
    if not workloads:
        raise ConfigError(f"{where}: filing {item['number']} must list workload patterns (regex on exe or command line)")
    patterns = []
    for text in workloads:
        try:
            patterns.append(re.compile(text, re.IGNORECASE))
        except re.error as exc:
            raise ConfigError(f"{where}: bad workload regex {text!r}: {exc}") from None
    scale = item.get("scale") or {}
    if not isinstance(scale, dict) or set(scale) - {"cpu_cores", "gpus"}:
        raise ConfigError(f"{where}: scale must be a mapping with cpu_cores and/or gpus")
    for key, value in scale.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}: scale.{key} must be a non-negative number")
    valid_from, valid_until = _date(item, "valid_from", where), _date(item, "valid_until", where)
    if valid_until < valid_from:
        raise ConfigError(f"{where}: valid_until is before valid_from")
    return Filing(number=str(item["number"]), approved_by=str(item["approved_by"]), project=str(item["project"]),
                  discipline=str(item["discipline"]), responsible=str(item["responsible"]),
                  contact=str(item.get("contact", "")), hosts=hosts, users=users, workloads=patterns,
                  workload_texts=workloads, valid_from=valid_from, valid_until=valid_until,
                  cpu_cores=float(scale["cpu_cores"]) if "cpu_cores" in scale else None,
                  gpus=int(scale["gpus"]) if "gpus" in scale else None, origin=where)


def _strings(item: dict, key: str, where: str) -> list[str]:
    value = item.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return value


def _date(item: dict, key: str, where: str) -> dt.date:
    value = item.get(key)
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: {key} must be a date (YYYY-MM-DD)")


def workload_matches(filing: Filing, finding: Finding) -> bool:
    texts = [finding.subject.exe, finding.subject.cmdline, finding.subject.name]
    return any(pattern.search(text) for pattern in filing.workloads for text in texts if text)


def apply_filings(findings: list[Finding], filings: list[Filing], snapshot: Snapshot, at: float) -> list[dict[str, Any]]:
    """Set each finding's status from the registry; return the filings that matched, with their usage."""
    if not filings:
        return []
    day = dt.datetime.fromtimestamp(at or 0, tz=dt.timezone.utc).date()
    by_pid = {p.pid: p for p in snapshot.processes}
    hostname = snapshot.host.hostname
    matched: dict[str, tuple[Filing, list[Finding]]] = {}
    for finding in findings:
        if finding.status == FindingStatus.ALLOWLISTED:
            continue
        filing = next((f for f in filings if workload_matches(f, finding)), None)
        if filing is None:
            continue
        matched.setdefault(filing.number, (filing, []))[1].append(finding)
        finding.filing = filing.number
        finding.status, finding.status_reason = judge(filing, finding, hostname, day)
    summaries = []
    for filing, covered in matched.values():
        cores, gpus = usage(covered, by_pid, snapshot)
        over = scale_excess(filing, cores, gpus)
        if over:
            for finding in covered:
                if finding.status == FindingStatus.REGISTERED:
                    finding.status, finding.status_reason = FindingStatus.OUTSIDE_REGISTRATION, over
        summary = filing.describe()
        summary.update(used_cpu_cores=round(cores, 2), used_gpus=gpus, findings=[f.fingerprint for f in covered],
                       status=_filing_status(covered))
        summaries.append(summary)
    return summaries


def judge(filing: Filing, finding: Finding, hostname: str, day: dt.date) -> tuple[FindingStatus, str]:
    if not filing.valid_from <= day <= filing.valid_until:
        return (FindingStatus.REGISTRATION_EXPIRED,
                f"filing {filing.number} is valid {filing.valid_from} to {filing.valid_until}, not on {day}")
    if not any(fnmatch.fnmatchcase(hostname, pattern) for pattern in filing.hosts):
        return FindingStatus.OUTSIDE_REGISTRATION, f"host {hostname} is not among the hosts of filing {filing.number}"
    if filing.users and finding.subject.username not in filing.users:
        return (FindingStatus.OUTSIDE_REGISTRATION,
                f"user {finding.subject.username or '(unknown)'} is not among the users of filing {filing.number}")
    return FindingStatus.REGISTERED, f"covered by filing {filing.number} ({filing.project}, approved by {filing.approved_by})"


def usage(findings: list[Finding], by_pid: dict[int, ProcessInfo], snapshot: Snapshot) -> tuple[float, int]:
    """CPU cores (sum of the workload's CPU %, /100) and distinct GPUs the filed workload used."""
    pids = {f.subject.pid for f in findings if f.subject.pid is not None}
    cores = sum((by_pid[pid].cpu_percent or 0.0) for pid in pids if pid in by_pid) / 100.0
    gpus = {device.index for device in snapshot.gpus for proc in device.processes if proc.pid in pids}
    gpus |= {f.subject.gpu_index for f in findings if f.subject.gpu_index is not None}
    return cores, len(gpus)


def scale_excess(filing: Filing, cores: float, gpus: int) -> str:
    if filing.cpu_cores is not None and cores > filing.cpu_cores * 1.05:
        return f"uses {cores:.1f} CPU cores, beyond the {filing.cpu_cores:g} filed under {filing.number}"
    if filing.gpus is not None and gpus > filing.gpus:
        return f"uses {gpus} GPUs, beyond the {filing.gpus} filed under {filing.number}"
    return ""


def _filing_status(findings: list[Finding]) -> str:
    statuses = {f.status for f in findings}
    for status in (FindingStatus.REGISTRATION_EXPIRED, FindingStatus.OUTSIDE_REGISTRATION):
        if status in statuses:
            return status.value
    return FindingStatus.REGISTERED.value
