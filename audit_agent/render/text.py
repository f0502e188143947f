"""Terminal summary with Rich: verdict, findings table, coverage.

Process data is attacker-controlled: it only ever enters Rich as `Text` (never
markup) and after `cap()`, which makes ANSI/OSC escapes and control characters
visible instead of live.
"""
from __future__ import annotations

import datetime as dt
import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from audit_agent.model import AuditReport, CoverageStatus, Finding, Severity, Verdict
from audit_agent.redact import cap

VERDICT_STYLE = {Verdict.COMPLIANT: "bold green", Verdict.NEEDS_REVIEW: "bold yellow",
                 Verdict.NON_COMPLIANT: "bold red", Verdict.INCOMPLETE: "bold magenta"}
SEVERITY_STYLE = {Severity.CRITICAL: "bold red", Severity.HIGH: "red", Severity.MEDIUM: "yellow",
                  Severity.LOW: "cyan", Severity.INFO: "dim"}
COVERAGE_STYLE = {CoverageStatus.OK: "green", CoverageStatus.PARTIAL: "yellow", CoverageStatus.SKIPPED: "dim",
                  CoverageStatus.NOT_APPLICABLE: "dim", CoverageStatus.ERROR: "red"}


def render(report: AuditReport, options: object = None) -> str:
    color = bool(getattr(options, "color", False))
    buffer = io.StringIO()
    console = Console(file=buffer, width=getattr(options, "width", 100), color_system="standard" if color else None,
                      force_terminal=color, no_color=not color, highlight=False, emoji=False)
    write(console, report)
    return buffer.getvalue()


def shown_time(timestamp: float, zone_name: str) -> str:
    """The time in the institution's zone (the report's `timezone`) with its UTC offset; UTC if unknown."""
    from audit_agent.timezone import format_with_offset, zone_by_name
    try:
        zone = zone_by_name(zone_name) if zone_name else dt.timezone.utc
    except ValueError:
        zone = dt.timezone.utc
    return format_with_offset(timestamp, zone)


def write(console: Console, report: AuditReport) -> None:
    host = report.host
    when = shown_time(report.collected_at or report.generated_at, report.timezone)
    header = Text()
    header.append("audit-agent ", style="bold")
    header.append(f"{cap(report.agent_version, 40)}  ")
    header.append(cap(host.hostname, 80), style="bold")
    header.append(f"  {when}  window {report.window_seconds:g}s  {report.process_count} processes, "
                  f"{report.connection_count} connections  rules {cap(report.rule_pack.name, 60)} "
                  f"{cap(report.rule_pack.version, 30)}")
    console.print(header)
    for change in report.tuning:                 # an auditor must see what the institution changed
        console.print(Text(f"  tuning: {cap(change.action, 20)} {cap(', '.join(change.rule_ids), 100)} "
                           f"{cap(change.detail, 100)} - {cap(change.reason, 200)} ({cap(change.origin, 200)})"))
    console.print(verdict_line(report))
    for reason in report.verdict_reasons:
        console.print(Text(f"  - {cap(reason, 300)}"))
    open_findings = report.open_findings
    if open_findings:
        console.print(findings_table("Findings", open_findings))
    if report.registered_findings or report.allowlisted_findings:
        console.print(findings_table("Registered research and allowlisted workloads",
                                     report.registered_findings + report.allowlisted_findings))
    for line in filing_notices(report):
        console.print(line)
    console.print(coverage_table(report))


def filing_notices(report: AuditReport) -> list[Text]:
    """Research systems without a filing (and their drafts), filings about to expire or unused."""
    lines = []
    for system in report.research_systems:
        if system.get("status") == "unfiled":
            draft = f"; draft {cap(str(system['draft']), 200)}" if system.get("draft") else \
                "; draft one with --filing-drafts DIR"
            lines.append(Text(f"Research system without a filing: pid {system.get('pid')} "
                              f"{cap(str(system.get('software', '')), 60)}{draft}", style="yellow"))
        for over in system.get("over_scale") or []:
            lines.append(Text(f"Beyond the filed scale: pid {system.get('pid')} {cap(str(over), 200)}", style="yellow"))
    for filing in report.filings:
        number = cap(str(filing.get("number", "")), 60)
        if filing.get("status") == "unused":
            lines.append(Text(f"Filing {number}: valid, but no workload of it runs on this host (unused)", style="dim"))
        elif filing.get("expiring_soon"):
            lines.append(Text(f"Filing {number} expires in {filing.get('expires_in_days')} day(s) "
                              f"(judged in {cap(str(filing.get('timezone', '')), 40)})", style="yellow"))
    return lines


def verdict_line(report: AuditReport) -> Text:
    line = Text("Verdict: ", style="bold")
    line.append(report.verdict.value.upper().replace("_", " "), style=VERDICT_STYLE[report.verdict])
    counts = {s: 0 for s in Severity}
    for finding in report.open_findings:
        counts[finding.severity] += 1
    line.append("   " + "  ".join(f"{s.value} {counts[s]}" for s in reversed(list(Severity)) if counts[s]))
    return line


def findings_table(title: str, findings: list[Finding]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAVY, show_lines=True, expand=True, title_justify="left")
    table.add_column("Severity", no_wrap=True)
    table.add_column("Conf.", justify="right", no_wrap=True)
    table.add_column("Subject", ratio=2)
    table.add_column("Why", ratio=5)
    for finding in findings:
        table.add_row(Text(finding.severity.value, style=SEVERITY_STYLE[finding.severity]),
                      Text(f"{finding.confidence:.0%}"), subject_text(finding), reasons_text(finding))
    return table


def subject_text(finding: Finding) -> Text:
    subject = finding.subject
    text = Text()
    if subject.pid is not None:
        text.append(f"pid {subject.pid} ", style="bold")
    if subject.gpu_index is not None:
        text.append(f"GPU {subject.gpu_index} ", style="bold")
    text.append(cap(subject.name or subject.path or subject.kind, 60))
    if subject.username:
        text.append(f"\nuser {cap(subject.username, 40)}")
    if subject.exe:
        text.append(f"\n{cap(subject.exe, 120)}", style="dim")
    for label, value in (("container", subject.container_id), ("slurm job", subject.slurm_job_id)):
        if value:
            text.append(f"\n{label} {cap(value, 64)}")
    return text


def reasons_text(finding: Finding) -> Text:
    text = Text()
    for index, reason in enumerate(finding.reasons[:6]):
        if index:
            text.append("\n")
        text.append(f"- {cap(reason, 400)}")
    if len(finding.reasons) > 6:
        text.append(f"\n  (+{len(finding.reasons) - 6} more reasons in the full report)", style="dim")
    if finding.status_reason:
        text.append(f"\n[{finding.status.value}] {cap(finding.status_reason, 300)}", style="dim")
    if finding.subject.cmdline:
        text.append(f"\n$ {cap(finding.subject.cmdline, 300)}", style="dim")
    return text


def coverage_table(report: AuditReport) -> Table:
    table = Table(title="Checks performed", box=box.SIMPLE, expand=True, title_justify="left")
    table.add_column("Check", no_wrap=True)
    table.add_column("Coverage", no_wrap=True)
    table.add_column("Detail", ratio=1)
    for entry in report.coverage:
        detail = entry.reason or (f"{entry.inspected} inspected" if entry.inspected else "")
        if entry.accepted:
            detail += "".join(f"; {a.item}: accepted by policy: {a.reason}" for a in entry.accepted[:5])
        table.add_row(Text(cap(entry.check, 60)), Text(entry.status.value, style=COVERAGE_STYLE[entry.status]),
                      Text(cap(detail, 300)))
    return table
