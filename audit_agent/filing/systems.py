"""The research systems of a report: per system, what it is, what it used, and what its filing allows.

One entry per research finding (any status), carried in the AuditReport so the renderers and
`audit-agent filing draft` need nothing but the report.
"""
from __future__ import annotations

import re
from typing import Any

from audit_agent.filing import scale
from audit_agent.filing.registry import Filing
from audit_agent.model import Connection, Finding, FindingStatus, Snapshot
from audit_agent.redact import cap
from audit_agent.rules.loader import Rule

RESEARCH = "research"
VERSION_IN_PATH = re.compile(r"(?:[-_/]v?|^v?)(\d+\.\d+(?:\.\d+)?(?:[-+.][0-9A-Za-z]+)?)(?=/|$)")
MAX_ENDPOINTS = 20


def research_systems(findings: list[Finding], snapshot: Snapshot, rules_by_id: dict[str, Rule],
                     filings: list[Filing]) -> list[dict[str, Any]]:
    by_pid = {p.pid: p for p in snapshot.processes}
    by_number = {f.number: f for f in filings}
    systems = []
    for finding in findings:
        rule = next((rules_by_id[r] for r in finding.rule_ids if r in rules_by_id and rules_by_id[r].kind == RESEARCH),
                    None)
        if finding.category != RESEARCH or rule is None:
            continue
        pid = finding.subject.pid
        proc = by_pid.get(pid) if pid is not None else None
        used = scale.observed({pid} if pid is not None else set(), by_pid, snapshot)
        filing = by_number.get(finding.filing)
        filed = ({k: v for k, v in filing.describe().items() if k in ("cpu_cores", "gpus", "gpu_memory_gib",
                                                                        "storage_tib")} if filing else {})
        systems.append({
            "fingerprint": finding.fingerprint, "rule_id": rule.id, "title": finding.title,
            "kind": rule.params.get("system", ""), "software": rule.params.get("software", ""),
            "version": software_version(finding.subject.exe), "pid": pid, "user": finding.subject.username,
            "exe": finding.subject.exe, "command": finding.subject.cmdline,
            "started_at": proc.create_time if proc else None, "container": finding.subject.container_id,
            "used": used, "filed": filed, "over_scale": scale.excess(filed, used, finding.filing) if filing else [],
            # the same as facts, for each report language to phrase
            "over_scale_facts": [{"code": code, **facts} for code, facts in scale.excess_facts(filed, used,
                                                                                             finding.filing)]
            if filing else [],
            "endpoints": endpoints(pid, snapshot.connections), "filing": finding.filing,
            "status": finding.status.value if isinstance(finding.status, FindingStatus) else str(finding.status),
            "draft": ""})
    return systems


def software_version(exe: str) -> str:
    """The version a release path carries (/opt/bitcoin-27.0/bin/bitcoind -> 27.0); "" when none does."""
    for part in reversed(exe.split("/")[:-1]):
        found = VERSION_IN_PATH.search(part)
        if found:
            return cap(found.group(1), 40)
    return ""


def endpoints(pid: int | None, connections: list[Connection]) -> list[str]:
    """The process's listening sockets and live connections, as a filing declares network use."""
    if pid is None:
        return []
    found = []
    for conn in connections:
        if conn.pid != pid:
            continue
        if conn.state == "LISTEN" or not conn.remote_port:
            found.append(f"listen {conn.protocol} {conn.local_address}:{conn.local_port}")
        else:
            found.append(f"{conn.protocol} {conn.local_address}:{conn.local_port} -> "
                         f"{conn.remote_address}:{conn.remote_port} {conn.state}".strip())
    return sorted(set(found))[:MAX_ENDPOINTS]
