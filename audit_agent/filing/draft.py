"""Pre-filled filing drafts for the research systems of a report that no filing covers.

Per unfiled system: a YAML file the registry reads once the approving body, filing number,
discipline, responsible person and validity are filled in (load_registry names what is still
empty, file:line), and a printable page in English and Chinese. Everything else comes from the
report: the host and its compute inventory, the workload (software, version where known,
command, user, start time), the scale it used in the window, its network endpoints.
"""
from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import yaml

from audit_agent.filing.scale import rounded_up
from audit_agent.model import AuditReport
from audit_agent.output import write_atomic
from audit_agent.timezone import format_with_offset, zone_by_name

LANGS = ("en", "zh-CN")
DRAFT_STATUSES = ("unfiled",)
UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def unfiled_systems(report: AuditReport) -> list[dict[str, Any]]:
    return [s for s in report.research_systems if s.get("status") in DRAFT_STATUSES]


def draft_stem(report: AuditReport, system: dict[str, Any]) -> str:
    """A file name that says what the draft is about and cannot leave the output folder."""
    host = UNSAFE.sub("_", report.host.hostname or "host")[:60].strip("._") or "host"
    kind = UNSAFE.sub("_", str(system.get("kind") or "research"))[:20]
    return f"filing-draft-{host}-{kind}-{UNSAFE.sub('', str(system.get('fingerprint', '')))[:12]}"


def write_drafts(report: AuditReport, out: str | Path) -> list[Path]:
    """Write YAML + en/zh-CN HTML drafts for every unfiled research system; link each from the report."""
    from audit_agent.filing.draft_html import render_draft
    out = Path(out)
    out.mkdir(mode=0o750, parents=True, exist_ok=True)
    if not out.is_dir():
        raise NotADirectoryError(out)
    written = []
    rendered: list[tuple[dict[str, Any] | None, Path, str]] = []    # render all first: no half set on failure
    for system in unfiled_systems(report):
        stem = draft_stem(report, system)
        rendered.append((system, out / f"{stem}.yaml", draft_yaml(report, system)))
        for lang in LANGS:
            rendered.append((None, out / f"{stem}.{lang}.html", render_draft(report, system, lang)))
    for owner, path, text in rendered:
        write_atomic(path, text)
        written.append(path)
        if owner is not None:
            owner["draft"] = os.fspath(path)
    return written


def q(value: Any) -> str:
    """A YAML scalar: JSON strings and numbers are valid YAML flow scalars, quoted and escaped."""
    return json.dumps(value, ensure_ascii=False)


def observed_record(report: AuditReport, system: dict[str, Any]) -> dict[str, Any]:
    zone = _zone(report.timezone)
    host = report.host
    started = system.get("started_at")
    return {
        "host": {"hostname": host.hostname, "os": host.os_release or host.os, "kernel": host.kernel,
                 "arch": host.arch, "cpu_model": host.cpu_model, "cpu_sockets": host.cpu_sockets,
                 "cpu_cores": host.cpu_cores, "cpu_threads": host.cpu_threads,
                 "memory_gib": round(host.memory_total_bytes / 1024 ** 3, 1) if host.memory_total_bytes else None,
                 "gpus": [f"{g.index}: {g.name}" + (f" ({round(g.memory_total_bytes / 1024 ** 3)} GiB)"
                                                    if g.memory_total_bytes else "") for g in host.gpus]},
        "workload": {"software": system.get("software", ""), "version": system.get("version", ""),
                     "kind": system.get("kind", ""), "command": system.get("command", ""),
                     "executable": system.get("exe", ""), "user": system.get("user", ""), "pid": system.get("pid"),
                     "started": format_with_offset(started, zone) if started else "",
                     "container": system.get("container", "")},
        "scale": system.get("used", {}),
        "network": system.get("endpoints", []),
        "audit": {"report_generated": format_with_offset(report.generated_at, zone),
                  "window_seconds": report.window_seconds, "agent_version": report.agent_version,
                  "fingerprint": system.get("fingerprint", ""), "rule": system.get("rule_id", "")},
    }


def draft_yaml(report: AuditReport, system: dict[str, Any]) -> str:
    exe = system.get("exe") or ""
    workload = f"^{re.escape(exe)}$" if exe else re.escape(str(system.get("command", "")).split(" ")[0])
    scale = rounded_up(system.get("used") or {"cpu_cores": 0, "gpus": 0, "gpu_memory_gib": 0})
    observed = observed_record(report, system)
    lines = [
        "# Filing draft written by audit-agent for a mining-related research system found without a filing.",
        "# Fill in the empty fields (number, approved_by, project, discipline, responsible, valid_from,",
        "# valid_until), check hosts, users, workloads and scale, then use this file as the registry",
        "# (config: filings: PATH) or copy the entry under `filings:` of the existing registry.",
        "# `observed` records what the audit saw; the registry keeps it and does not judge on it.",
        "filings:",
        f"  - number: {q('')}              # the filing number the approving body gives",
        f"    approved_by: {q('')}         # approving body",
        f"    project: {q('')}             # research project",
        f"    discipline: {q('')}          # the discipline the research belongs to",
        f"    responsible: {q('')}         # responsible person",
        f"    contact: {q('')}",
        f"    hosts: [{q(report.host.hostname)}]",
        f"    users: [{q(system.get('user', ''))}]" if system.get("user") else "    users: []",
        f"    workloads: [{q(workload)}]",
        "    # the scale observed in the audit window, rounded up; file what the research needs",
        "    scale: {" + ", ".join(f"{key}: {q(value)}" for key, value in scale.items()) + "}",
        "    valid_from:                 # YYYY-MM-DD, the day the approval takes effect",
        "    valid_until:                # YYYY-MM-DD",
        f"    kind: {q(system.get('kind', ''))}",
        f"    software: {q(system.get('software', ''))}",
        f"    draft: {q(system.get('fingerprint', ''))}",
        "    observed:",
        textwrap.indent(yaml.safe_dump(observed, allow_unicode=True, sort_keys=False, width=100), " " * 6).rstrip(),
    ]
    return "\n".join(lines) + "\n"


def _zone(name: str):  # type: ignore[no-untyped-def]
    try:
        return zone_by_name(name) if name else None
    except ValueError:
        return None
