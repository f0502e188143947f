"""Terminal summary with Rich, in the report's language: labelled header, verdict and its reasons,
findings (what was found where, and the action), coverage, and a next-steps line.

Process data is attacker-controlled: it only ever enters Rich as `Text` (never markup) and after
`one_line()`, which makes ANSI/OSC escapes, control characters and line breaks visible instead of
live, so a newline in a process name cannot start a line of its own.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from audit_agent.i18n import translator
from audit_agent.model import AuditReport, CoverageStatus, Finding, Severity, Verdict
from audit_agent.redact import cap
from audit_agent.render import view

VERDICT_STYLE = {Verdict.COMPLIANT: "bold green", Verdict.NEEDS_REVIEW: "bold yellow",
                 Verdict.NON_COMPLIANT: "bold red", Verdict.INCOMPLETE: "bold magenta"}
SEVERITY_STYLE = {Severity.CRITICAL: "bold red", Severity.HIGH: "red", Severity.MEDIUM: "yellow",
                  Severity.LOW: "cyan", Severity.INFO: "dim"}
COVERAGE_STYLE = {CoverageStatus.OK: "green", CoverageStatus.PARTIAL: "yellow", CoverageStatus.SKIPPED: "dim",
                  CoverageStatus.NOT_APPLICABLE: "dim", CoverageStatus.ERROR: "red"}
ROWS_SHOWN = 4          # evidence rows per finding in the terminal; the written report has them all


@dataclass
class Written:
    """What this run wrote, so the summary can say where to look, and never claims a report it did not write."""
    json: str = ""
    html: str = ""
    markdown: str = ""
    others: list[str] = field(default_factory=list)


def one_line(text: Any, limit: int) -> str:
    """Data for one terminal line: controls visible (cap), and line breaks and tabs as \\n, \\r, \\t."""
    value = str(text or "").replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return cap(value, limit)


def render(report: AuditReport, options: object = None) -> str:
    color = bool(getattr(options, "color", False))
    buffer = io.StringIO()
    console = Console(file=buffer, width=getattr(options, "width", 100), color_system="standard" if color else None,
                      force_terminal=color, no_color=not color, highlight=False, emoji=False)
    write(console, report, getattr(options, "lang", "en") or "en")
    return buffer.getvalue()


def write(console: Console, report: AuditReport, lang: str = "en", written: Written | None = None) -> None:
    t = translator(lang, report.timezone)       # times in the institution's zone, with the UTC offset
    console.print(header(report, t))
    for change in report.tuning:                 # an auditor must see what the institution changed
        console.print(tuning_line(change, t))
    console.print(verdict_line(report, t))
    for reason in view.verdict_reasons(report, t):
        console.print(Text(f"  - {one_line(reason, 400)}"))
    if report.open_findings:
        console.print(findings_table(t("findings.section"), report.open_findings, report, t, written))
    settled = report.registered_findings + report.allowlisted_findings
    if settled:
        console.print(findings_table(t("registered.section"), settled, report, t, written))
    for line in filing_notices(report, t):
        console.print(line)
    console.print(coverage_table(report, t))
    console.print(next_steps(report, t, written))


def tuning_line(change: Any, t: Any) -> Text:
    return Text(f"  {t('header.tuning')}: {one_line(', '.join(change.rule_ids), 100)} "
                f"{t('tuning_action.' + change.action)} {one_line(change.detail, 100)} - "
                f"{t('tuning_action.reason')}: {one_line(change.reason, 200)} ({one_line(change.origin, 200)})")


def filing_notices(report: AuditReport, t: Any) -> list[Text]:
    """Research systems without a filing (and their drafts), use beyond the filed scale, filings about to
    expire or unused: what the administrator must file or renew."""
    lines = []
    for system in report.research_systems:
        pid, software = system.get("pid"), one_line(system.get("software", ""), 60)
        if system.get("status") == "unfiled":
            draft = t("terminal.draft", path=one_line(system["draft"], 200)) if system.get("draft") else \
                t("research.no_draft")
            lines.append(Text(t("terminal.unfiled", pid=pid, software=software, draft=draft), style="yellow"))
        for over in system.get("over_scale_facts") or []:
            what = t("decision." + over["code"], **over)
            lines.append(Text(t("terminal.over_scale", pid=pid, what=one_line(what, 300)), style="yellow"))
    for filing in report.filings:
        number = one_line(filing.get("number", ""), 60)
        if filing.get("status") == "unused":
            lines.append(Text(t("terminal.filing_unused", number=number), style="dim"))
        elif filing.get("expiring_soon"):
            lines.append(Text(t("terminal.filing_expiring", number=number, n=filing.get("expires_in_days"),
                                                zone=one_line(filing.get("timezone", ""), 40)),
                              style="yellow"))
    return lines


def header(report: AuditReport, t: Any) -> Text:
    """Labelled fields: what was audited, when, how long, how much, with which rules."""
    host = report.host
    text = Text()
    text.append("audit-agent ", style="bold")
    text.append(one_line(report.agent_version, 40))
    fields = [(t("header.host"), one_line(host.hostname, 80)),
              (t("header.generated"), t.datetime(report.collected_at or report.generated_at)),
              (t("terminal.window"), t("format.seconds", n=f"{report.window_seconds:g}")),
              (t("inventory.processes_seen"), str(report.process_count)),
              (t("inventory.connections_seen"), str(report.connection_count)),
              (t("header.rule_pack"), t("header.rule_pack_value", name=one_line(report.rule_pack.name, 60),
                                        version=one_line(report.rule_pack.version, 30)))]
    for label, value in fields:
        text.append("\n")
        text.append(f"{label}: ", style="bold")
        text.append(value)
    return text


def verdict_line(report: AuditReport, t: Any) -> Text:
    line = Text(f"{t('verdict.section')}: ", style="bold")
    line.append(t.enum("verdict", report.verdict).upper(), style=VERDICT_STYLE[report.verdict])
    counts = {s: 0 for s in Severity}
    for finding in report.open_findings:
        counts[finding.severity] += 1
    shown = "  ".join(f"{t.enum('severity', s)} {counts[s]}" for s in reversed(list(Severity)) if counts[s])
    if shown:
        line.append(f"   {shown}")
    return line


def findings_table(title: str, findings: list[Finding], report: AuditReport, t: Any,
                   written: Written | None) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAVY, show_lines=True, expand=True, title_justify="left")
    table.add_column(t("severity.label"), no_wrap=True)
    table.add_column(t("findings.confidence"), justify="right", no_wrap=True)
    table.add_column(t("findings.subject"), ratio=2, overflow="fold")
    table.add_column(t("story.why"), ratio=5, overflow="fold")
    for finding in findings:
        table.add_row(Text(t.enum("severity", finding.severity), style=SEVERITY_STYLE[finding.severity]),
                      Text(t("format.percent", n=round(finding.confidence * 100))), subject_text(finding, t),
                      story_text(finding, report, t, written))
    return table


def subject_text(finding: Finding, t: Any) -> Text:
    subject = finding.subject
    text = Text()
    if subject.pid is not None:
        text.append(f"{t('subject.pid')} {subject.pid} ", style="bold")
    if subject.gpu_index is not None:
        text.append(f"{t('subject.gpu')} {subject.gpu_index} ", style="bold")
    name = t.known("entry", subject.name) if subject.kind == "persistence" else subject.name
    text.append(one_line(name or subject.path or t.known("kind", subject.kind), 60))
    if subject.username:
        text.append(f"\n{t('subject.user')} {one_line(subject.username, 40)}")
    if subject.exe:
        text.append(f"\n{one_line(subject.exe, 120)}", style="dim")
    for label, value in ((t("subject.container"), subject.container_id[:12]), (t("subject.slurm_job"),
                                                                                subject.slurm_job_id)):
        if value:
            text.append(f"\n{label} {one_line(value, 64)}")
    return text


def story_text(finding: Finding, report: AuditReport, t: Any, written: Written | None) -> Text:
    story = view.story(finding, t, report.rule_pack.references)
    text = Text()
    text.append(one_line(story.title, 200), style="bold")
    for row in story.rows[:ROWS_SHOWN]:
        text.append(f"\n- {row.where}: {one_line(row.shown.text, 240)}")
    hidden = len(story.rows) - ROWS_SHOWN
    if hidden > 0:
        where = written.html or written.markdown if written else ""
        note = t("terminal.more_in", n=hidden, path=one_line(where, 200)) if where else t("terminal.more", n=hidden)
        text.append(f"\n  ({note})", style="dim")
    if story.decision:
        text.append(f"\n{one_line(story.decision, 300)}", style="dim")
    if finding.subject.cmdline:
        text.append(f"\n$ {one_line(finding.subject.cmdline, 300)}", style="dim")
    text.append(f"\n{t('findings.action')}: ", style="bold")
    text.append(one_line(story.action, 400))
    return text


def coverage_table(report: AuditReport, t: Any) -> Table:
    table = Table(title=t("checks.section"), box=box.SIMPLE, expand=True, title_justify="left")
    table.add_column(t("checks.check"), no_wrap=True)
    table.add_column(t("checks.status"), no_wrap=True)
    table.add_column(t("checks.detail"), ratio=1, overflow="fold")
    for entry in report.coverage:
        detail = view.coverage_detail(entry, t)
        if entry.unreadable:
            detail += f" ({t('checks.unreadable')}: {', '.join(entry.unreadable[:5])})"
        table.add_row(Text(one_line(t.check(entry.check), 60)),
                      Text(t.enum("coverage", entry.status), style=COVERAGE_STYLE[entry.status]),
                      Text(one_line(detail, 400)))
    return table


def next_steps(report: AuditReport, t: Any, written: Written | None) -> Text:
    """What to open or run next, from what this run really wrote."""
    line = Text(f"{t('terminal.next')}: ", style="bold")
    if written and (written.html or written.markdown):
        line.append(t("terminal.open_report", path=one_line(written.html or written.markdown, 300)))
    elif written and written.json:
        line.append(t("terminal.render_saved", json=one_line(written.json, 300)))
    else:
        line.append(t("terminal.write_report"))
    if report.verdict != Verdict.COMPLIANT and report.open_findings:
        line.append(" " + t("terminal.act", n=len(report.open_findings)))
    return line
