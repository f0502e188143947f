"""Fleet: merge many hosts' JSON AuditReports into one institution-wide view.

Reads the report JSON as plain dicts (no dataclass rebuild per report: at 2,000
hosts that rebuild would dominate), checks only what the fleet view uses, and
turns any unreadable or malformed file into an error line instead of a crash.
Several reports of one host (e.g. a history directory) count once: the newest.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from audit_agent.model import (COUNTED_STATUSES, REPORT_SCHEMA_VERSION, SEVERITY_ORDER, FindingStatus, SchemaError,
                               Verdict, check_schema_version)

FLEET_SCHEMA_VERSION = "1.0"
COUNTED = {status.value for status in COUNTED_STATUSES}
VERDICT_ORDER = [Verdict.NON_COMPLIANT.value, Verdict.NEEDS_REVIEW.value, Verdict.INCOMPLETE.value, Verdict.COMPLIANT.value]
SEVERITIES = [s.value for s in SEVERITY_ORDER]
TEXT_CAP = 300


@dataclass
class HostRow:
    hostname: str
    path: str
    verdict: str
    audited_at: float
    findings: dict[str, int]                 # counted findings by severity, every severity present
    registered: int = 0
    allowlisted: int = 0
    stale: bool = False
    age_days: float = 0.0
    coverage_gaps: list[str] = field(default_factory=list)   # checks not ok ("processes: partial")
    agent_version: str = ""
    rule_pack: str = ""
    os_release: str = ""
    cpu_model: str = ""
    cpu_cores: int | None = None
    cpu_threads: int | None = None
    memory_total_bytes: int | None = None
    gpus: list[str] = field(default_factory=list)
    institution: str = ""
    department: str = ""
    older_reports: int = 0                   # reports of this host superseded by this one


@dataclass
class FileError:
    path: str
    reason: str


@dataclass
class FleetReport:
    generated_at: float
    stale_days: float
    hosts: list[HostRow]
    errors: list[FileError]
    verdicts: dict[str, int]
    findings: dict[str, int]
    stale_hosts: list[str]
    compute: dict[str, Any]
    registered_systems: list[dict[str, Any]]
    schema_version: str = FLEET_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- reading


def report_files(inputs: list[str], exclude: set[Path]) -> tuple[list[Path], list[FileError]]:
    """Every *.json directly in the given directories, plus files named explicitly."""
    files: list[Path] = []
    errors: list[FileError] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.json") if p.is_file() and p.resolve() not in exclude))
        elif path.is_file():
            files.append(path)
        else:
            errors.append(FileError(str(path), "no such file or directory"))
    return files, errors


def read_host(path: Path, now: float, stale_seconds: float) -> tuple[HostRow, list[dict[str, Any]]]:
    """One report file -> its row and the filings it names; ValueError with a one-line reason otherwise."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {exc.lineno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ValueError("not a report: JSON nested too deeply") from None
    try:
        check_schema_version(data, REPORT_SCHEMA_VERSION, "report")
    except SchemaError as exc:
        raise ValueError(str(exc)) from None
    host = _obj(data, "host")
    hostname = host.get("hostname")
    if not isinstance(hostname, str) or not hostname:
        raise ValueError("no host.hostname: not an audit-agent report")
    verdict = data.get("verdict")
    if verdict not in VERDICT_ORDER:
        raise ValueError(f"unknown verdict {str(verdict)[:40]!r}")
    audited = data.get("collected_at") or data.get("generated_at")
    if isinstance(audited, bool) or not isinstance(audited, (int, float)) or not _finite(audited):
        raise ValueError("no collected_at/generated_at time")
    findings = data.get("findings")
    if not isinstance(findings, list):
        raise ValueError("findings must be a list")
    counts = dict.fromkeys(SEVERITIES, 0)
    statuses: Counter[str] = Counter()
    registered: set[str] = set()
    for finding in findings:
        if not isinstance(finding, dict):
            raise ValueError("a finding is not an object")
        status = finding.get("status", "open")
        severity = finding.get("severity", "")
        if not isinstance(status, str) or not isinstance(severity, str):
            raise ValueError("a finding's status and severity must be strings")
        statuses[status] += 1
        if status in COUNTED and severity in counts:
            counts[severity] += 1
        if status == FindingStatus.REGISTERED.value and isinstance(finding.get("fingerprint"), str):
            registered.add(finding["fingerprint"])
    gaps = [f"{c.get('check')}: {c.get('status')}" for c in _list(data, "coverage")
            if isinstance(c, dict) and c.get("status") not in ("ok", "not_applicable")]
    gpus = [_text(g.get("name")) or "unknown GPU" for g in host.get("gpus") or [] if isinstance(g, dict)]
    profile = data.get("profile") if isinstance(data.get("profile"), dict) else {}
    pack = data.get("rule_pack") if isinstance(data.get("rule_pack"), dict) else {}
    age = max(0.0, now - float(audited))
    row = HostRow(hostname=_text(hostname), path=str(path), verdict=verdict, audited_at=float(audited),
                  findings=counts, registered=statuses[FindingStatus.REGISTERED.value],
                  allowlisted=statuses[FindingStatus.ALLOWLISTED.value], stale=age > stale_seconds,
                  age_days=round(age / 86400, 1), coverage_gaps=gaps, agent_version=_text(data.get("agent_version")),
                  rule_pack=_text(f"{pack.get('name', '')} {pack.get('version', '')}".strip()),
                  os_release=_text(host.get("os_release")), cpu_model=_text(host.get("cpu_model")),
                  cpu_cores=_int(host.get("cpu_cores")), cpu_threads=_int(host.get("cpu_threads")),
                  memory_total_bytes=_int(host.get("memory_total_bytes")), gpus=gpus,
                  institution=_text(profile.get("institution")), department=_text(profile.get("department")))
    filings = []
    for filing in _list(data, "filings"):
        if isinstance(filing, dict) and filing.get("number"):
            listed = {fp for fp in _list(filing, "findings") if isinstance(fp, str)}
            filings.append({**filing, "registered_findings": len(listed & registered)})   # this filing's only
    return row, filings


def _obj(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object")
    return value


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return "" if value is None else str(value)[:TEXT_CAP]


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:          # an integer too large for a float
        return False


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- merging


def merge(inputs: list[str], stale_days: float = 31.0, now: float | None = None,
          exclude: set[Path] | None = None) -> FleetReport:
    now = time.time() if now is None else now
    files, errors = report_files(inputs, exclude or set())
    latest: dict[str, tuple[HostRow, list[dict[str, Any]]]] = {}
    superseded: Counter[str] = Counter()
    for path in files:
        try:
            row, filings = read_host(path, now, stale_days * 86400)
        except ValueError as exc:
            errors.append(FileError(str(path), str(exc)[:TEXT_CAP]))
            continue
        known = latest.get(row.hostname)
        if known is None or row.audited_at > known[0].audited_at:
            latest[row.hostname] = (row, filings)
        superseded[row.hostname] += 1 if known else 0
    hosts = []
    for name, (row, _) in latest.items():
        row.older_reports = superseded[name]
        hosts.append(row)
    hosts.sort(key=lambda h: (VERDICT_ORDER.index(h.verdict), -sum(h.findings.values()), h.hostname))
    findings = dict.fromkeys(SEVERITIES, 0)
    for row in hosts:
        for severity, count in row.findings.items():
            findings[severity] += count
    verdicts = {v: 0 for v in VERDICT_ORDER}
    verdicts.update(Counter(h.verdict for h in hosts))
    return FleetReport(generated_at=now, stale_days=stale_days, hosts=hosts, errors=errors, verdicts=verdicts,
                       findings=findings, stale_hosts=sorted(h.hostname for h in hosts if h.stale),
                       compute=compute_totals(hosts), registered_systems=registered_systems(latest.values()))


def compute_totals(hosts: list[HostRow]) -> dict[str, Any]:
    """The institution's declared compute: what the audited hosts report about themselves."""
    gpus: Counter[str] = Counter()
    for row in hosts:
        gpus.update(row.gpus)
    return {"hosts": len(hosts),
            "cpu_cores": sum(h.cpu_cores or 0 for h in hosts),
            "cpu_threads": sum(h.cpu_threads or 0 for h in hosts),
            "memory_total_bytes": sum(h.memory_total_bytes or 0 for h in hosts),
            "hosts_without_cpu_count": sum(1 for h in hosts if h.cpu_cores is None),
            "gpus": sum(gpus.values()),
            "gpus_by_model": dict(sorted(gpus.items(), key=lambda kv: (-kv[1], kv[0]))),
            "hosts_with_gpus": sum(1 for h in hosts if h.gpus)}


def registered_systems(entries: Any) -> list[dict[str, Any]]:
    """Filings that matched a workload somewhere, by filing number, with the hosts they were seen on."""
    systems: dict[str, dict[str, Any]] = {}
    for row, filings in entries:
        for filing in filings:
            number = _text(filing.get("number"))
            entry = systems.setdefault(number, {
                "number": number, **{k: _text(filing.get(k)) for k in
                                     ("project", "discipline", "responsible", "approved_by", "valid_from", "valid_until")},
                "cpu_cores": _number(filing.get("cpu_cores")),
                "gpus": _int(filing.get("gpus")), "seen_on": [], "registered_findings": 0})
            entry["seen_on"].append(row.hostname)
            entry["registered_findings"] += filing["registered_findings"]
    for entry in systems.values():
        entry["seen_on"].sort()
    return sorted(systems.values(), key=lambda e: e["number"])


# ---------------------------------------------------------------- command


def run_fleet(args: argparse.Namespace) -> int:
    from audit_agent.output import write_atomic
    from audit_agent.render.json_report import dumps

    outputs = {Path(p).resolve() for p in (args.json, args.html) if p}
    fleet = merge(args.inputs, stale_days=args.stale_days, exclude=outputs)
    rendered = []
    if args.json:
        rendered.append((args.json, dumps(fleet.to_dict(), indent=1) + "\n"))
    if args.html:
        from audit_agent.fleet_html import render_html
        rendered.append((args.html, render_html(fleet, args.lang)))
    for path, data in rendered:
        write_atomic(path, data)
    for error in fleet.errors:
        print(f"audit-agent fleet: {error.path}: {error.reason}", file=sys.stderr)
    verdicts = ", ".join(f"{count} {name}" for name, count in fleet.verdicts.items() if count)
    print(f"{len(fleet.hosts)} hosts ({verdicts or 'none'}); {len(fleet.stale_hosts)} not audited within "
          f"{args.stale_days:g} days; {len(fleet.errors)} unreadable", file=sys.stderr)
    if not fleet.hosts and fleet.errors:
        return 2
    return 0
