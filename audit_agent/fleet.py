"""Fleet: merge many hosts' JSON AuditReports into one institution-wide view.

Reads the report JSON as plain dicts (no dataclass rebuild per report: at 2,000
hosts that rebuild would dominate), checks only what the fleet view uses, and
turns any unreadable or malformed file into an error line instead of a crash.

Hosts are keyed by machine id (the one in the report's signature), never by the hostname a report
claims: a report naming another host cannot replace that host's row, and two machines with one
hostname are two rows, flagged. With registered keys (`--keys`, audit_agent.trust) a report must be
signed by its machine's key, or it is refused; without keys the fleet report says its reports were
unverified. A report dated in the future (beyond a few minutes of clock skew) is refused either way.
Several reports of one machine (e.g. a history directory) count once: the newest.
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

from audit_agent.trust.signature import Refused, signer, verify
from audit_agent.model import (COUNTED_STATUSES, REPORT_SCHEMA_VERSION, SEVERITY_ORDER, FindingStatus, SchemaError,
                               Severity, Verdict, check_schema_version)

FLEET_SCHEMA_VERSION = "1.0"
COUNTED = {status.value for status in COUNTED_STATUSES}
VERDICT_ORDER = [Verdict.NON_COMPLIANT.value, Verdict.NEEDS_REVIEW.value, Verdict.INCOMPLETE.value, Verdict.COMPLIANT.value]
SEVERITIES = [s.value for s in SEVERITY_ORDER]
TEXT_CAP = 300
FUTURE_SKEW = 300.0         # seconds a report's times may run ahead of this machine's clock


@dataclass
class TopFinding:
    """A host's most severe counted finding: enough for the fleet page to phrase its title like the host report."""
    title: str                              # the engine's English title (the fallback)
    severity: str
    rule_ids: list[str] = field(default_factory=list)
    evidence: list[list[str]] = field(default_factory=list)   # [field, rule_id] of each evidence row


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
    responsible: str = ""
    machine_id: str = ""                     # from the signature: verified with --keys, claimed without
    verified: bool = False                   # signature checked against the machine's registered key
    duplicate_hostname: bool = False         # another machine's report names the same host
    top_finding: TopFinding | None = None
    html_report: str = ""                    # the host's HTML report next to its JSON, when there is one


@dataclass
class FileError:
    path: str
    reason: str                                  # English, one line (stderr and the JSON)
    code: str = ""                               # a refusal the page phrases per language (fleet.refused.<code>)
    facts: dict[str, str] = field(default_factory=dict)


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
    verified: bool = False                   # every host's signature was checked (fleet --keys)
    keys: str = ""                           # the keys file or directory used
    duplicate_hostnames: list[str] = field(default_factory=list)
    institutions: list[str] = field(default_factory=list)   # from the hosts' profiles, most hosts first
    departments: list[str] = field(default_factory=list)
    responsible: str = ""                    # the hosts' responsible person, when they all name the same one
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


def read_host(path: Path, now: float, stale_seconds: float,
              keys: dict[str, Any] | None = None) -> tuple[HostRow, list[dict[str, Any]]]:
    """One report file -> its row and the filings it names; ValueError with a one-line reason otherwise.
    With `keys` (machine id -> public key) the report must carry a valid signature of its machine."""
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
    machine = verify(data, keys) if keys is not None else getattr(signer(data), "machine_id", "")
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
    for name in ("collected_at", "generated_at"):
        moment = _number(data.get(name))
        if moment is not None and moment > now + FUTURE_SKEW:
            minutes = f"{(moment - now) / 60:.0f}"
            raise Refused("future", f"refused: {name} is {minutes} minutes in the future (more than "
                          f"{FUTURE_SKEW / 60:.0f} minutes ahead of this machine's clock)", minutes=minutes)
    findings = data.get("findings")
    if not isinstance(findings, list):
        raise ValueError("findings must be a list")
    counts = dict.fromkeys(SEVERITIES, 0)
    statuses: Counter[str] = Counter()
    registered: set[str] = set()
    top: tuple[int, float, dict[str, Any]] | None = None
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
            rank = (SEVERITIES.index(severity), _number(finding.get("confidence")) or 0.0, finding)
            top = rank if top is None or rank[:2] > top[:2] else top
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
                  institution=_text(profile.get("institution")), department=_text(profile.get("department")),
                  responsible=_text(profile.get("responsible")), machine_id=_text(machine),
                  verified=keys is not None, top_finding=top_finding(top[2]) if top else None,
                  html_report=_sibling_html(path))
    filings = []
    for filing in _list(data, "filings"):
        if isinstance(filing, dict) and filing.get("number"):
            listed = {fp for fp in _list(filing, "findings") if isinstance(fp, str)}
            filings.append({**filing, "registered_findings": len(listed & registered)})   # this filing's only
    return row, filings


def top_finding(finding: dict[str, Any]) -> TopFinding:
    rule_ids = [_text(r) for r in _list(finding, "rule_ids")[:20] if isinstance(r, str)]
    evidence = [[_text(e.get("field")), _text(e.get("rule_id"))] for e in _list(finding, "evidence")[:50]
                if isinstance(e, dict) and isinstance(e.get("field"), str)]
    return TopFinding(title=_text(finding.get("title")), severity=_text(finding.get("severity")),
                      rule_ids=rule_ids, evidence=evidence)


def _sibling_html(path: Path) -> str:
    """host.json -> host.html when that file is there (the host report a person reads)."""
    html = path.with_suffix(".html")
    try:
        return str(html) if html != path and html.is_file() else ""
    except OSError:
        return ""


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
          exclude: set[Path] | None = None, keys: dict[str, Any] | None = None, keys_source: str = "") -> FleetReport:
    """All hosts' newest reports. `keys` (machine id -> public key, trust.registry): verify every report."""
    now = time.time() if now is None else now
    files, errors = report_files(inputs, exclude or set())
    latest: dict[str, tuple[HostRow, list[dict[str, Any]]]] = {}
    superseded: Counter[str] = Counter()
    for path in files:
        try:
            row, filings = read_host(path, now, stale_days * 86400, keys)
        except Refused as exc:
            errors.append(FileError(str(path), str(exc)[:TEXT_CAP], exc.code, exc.facts))
            continue
        except ValueError as exc:
            errors.append(FileError(str(path), str(exc)[:TEXT_CAP]))
            continue
        # The machine is the host: a report without a machine id (unsigned, no keys) falls back to its name.
        identity = f"machine:{row.machine_id}" if row.machine_id else f"hostname:{row.hostname}"
        known = latest.get(identity)
        if known is None or row.audited_at > known[0].audited_at:
            latest[identity] = (row, filings)
        superseded[identity] += 1 if known else 0
    hosts = []
    for identity, (row, _) in latest.items():
        row.older_reports = superseded[identity]
        hosts.append(row)
    names = Counter(h.hostname for h in hosts)
    for row in hosts:
        row.duplicate_hostname = names[row.hostname] > 1
    hosts.sort(key=lambda h: (VERDICT_ORDER.index(h.verdict), -sum(h.findings.values()), h.hostname, h.machine_id))
    findings = dict.fromkeys(SEVERITIES, 0)
    for row in hosts:
        for severity, count in row.findings.items():
            findings[severity] += count
    verdicts = {v: 0 for v in VERDICT_ORDER}
    verdicts.update(Counter(h.verdict for h in hosts))
    institutions = Counter(h.institution for h in hosts if h.institution)
    responsible = {h.responsible for h in hosts if h.responsible}
    return FleetReport(generated_at=now, stale_days=stale_days, hosts=hosts, errors=errors, verdicts=verdicts,
                       findings=findings, stale_hosts=sorted(h.hostname for h in hosts if h.stale),
                       compute=compute_totals(hosts), registered_systems=registered_systems(latest.values()),
                       verified=keys is not None, keys=keys_source,
                       duplicate_hostnames=sorted(name for name, n in names.items() if n > 1),
                       institutions=[name for name, _ in sorted(institutions.items(), key=lambda kv: (-kv[1], kv[0]))],
                       departments=sorted({h.department for h in hosts if h.department}),
                       responsible=responsible.pop() if len(responsible) == 1 else "")


def exit_status(fleet: FleetReport, fail_on: Severity | None, fail_on_incomplete: bool = False) -> int:
    """What `scan` would exit with over all hosts: 1 when a host has a counted finding at or above fail_on."""
    from audit_agent.evaluate import exit_status as scan_exit_status
    counted = [Severity(severity) for severity, n in fleet.findings.items() if n]
    return scan_exit_status(counted, fleet.verdicts.get(Verdict.INCOMPLETE.value, 0) > 0, fail_on, fail_on_incomplete)


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
    from audit_agent.cli import resolve_fail_on
    from audit_agent.output import write_atomic
    from audit_agent.render.json_report import dumps

    keys = None
    if args.keys:
        from audit_agent.trust.registry import read_keys
        keys = read_keys(args.keys)             # ConfigError (file:line): exit 2 before anything is merged
    fail_on = resolve_fail_on(args.fail_on, Severity.HIGH)
    outputs = {Path(p).resolve() for p in (args.json, args.html) if p}
    fleet = merge(args.inputs, stale_days=args.stale_days, exclude=outputs, keys=keys, keys_source=args.keys or "")
    rendered = []
    if args.json:
        rendered.append((args.json, dumps(fleet.to_dict(), indent=1) + "\n"))
    if args.html:
        from audit_agent.fleet_html import render_html
        rendered.append((args.html, render_html(fleet, args.lang, Path(args.html).parent)))
    for path, data in rendered:
        write_atomic(path, data)
    for error in fleet.errors:
        print(f"audit-agent fleet: {error.path}: {error.reason}", file=sys.stderr)
    for name in fleet.duplicate_hostnames:
        print(f"audit-agent fleet: warning: several machines report the hostname {name!r}; each has its own row",
              file=sys.stderr)
    verdicts = ", ".join(f"{count} {name}" for name, count in fleet.verdicts.items() if count)
    trust = f"signatures verified with {args.keys}" if keys is not None else "UNVERIFIED (no --keys)"
    print(f"{len(fleet.hosts)} hosts ({verdicts or 'none'}); {len(fleet.stale_hosts)} not audited within "
          f"{args.stale_days:g} days; {len(fleet.errors)} unreadable or refused; {trust}", file=sys.stderr)
    if not fleet.hosts and fleet.errors:
        return 2
    return exit_status(fleet, fail_on, args.fail_on_incomplete)
