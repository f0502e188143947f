"""Terminal summary with Rich, in the report's language: the content of render/summary.py laid out as
styled lines and tables (findings, coverage) for a terminal.

Process data is attacker-controlled: it only ever enters Rich as `Text` (never markup) and after
`summary.one_line()`, which makes ANSI/OSC escapes, control characters and line breaks visible instead of
live, so a newline in a process name cannot start a line of its own.
"""
from __future__ import annotations

import io
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from audit_agent.i18n import translator
from audit_agent.model import AuditReport, Finding
from audit_agent.render import summary
from audit_agent.render.summary import Segments, Written, one_line

__all__ = ["Written", "one_line", "render", "write"]


def styled(segments: Segments) -> Text:
    text = Text()
    for part, style in segments:
        text.append(part, style=style or None)
    return text


def render(report: AuditReport, options: object = None) -> str:
    color = bool(getattr(options, "color", False))
    buffer = io.StringIO()
    console = Console(file=buffer, width=getattr(options, "width", 100), color_system="standard" if color else None,
                      force_terminal=color, no_color=not color, highlight=False, emoji=False)
    write(console, report, getattr(options, "lang", "en") or "en")
    return buffer.getvalue()


def write(console: Console, report: AuditReport, lang: str = "en", written: Written | None = None) -> None:
    t = translator(lang, report.timezone)       # times in the institution's zone, with the UTC offset
    console.print(styled(summary.header(report, t)))
    for change in report.tuning:                 # an auditor must see what the institution changed
        console.print(styled(summary.tuning_line(change, t)))
    console.print(styled(summary.verdict_line(report, t)))
    for reason in summary.verdict_reasons(report, t):
        console.print(styled(reason))
    if report.open_findings:
        console.print(findings_table(t("findings.section"), report.open_findings, report, t, written))
    settled = summary.settled_findings(report)
    if settled:
        console.print(findings_table(t("registered.section"), settled, report, t, written))
    for line in summary.filing_notices(report, t):
        console.print(styled(line))
    console.print(coverage_table(report, t))
    console.print(styled(summary.next_steps(report, t, written)))


def findings_table(title: str, findings: list[Finding], report: AuditReport, t: Any,
                   written: Written | None) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAVY, show_lines=True, expand=True, title_justify="left")
    table.add_column(t("severity.label"), no_wrap=True)
    table.add_column(t("findings.confidence"), justify="right", no_wrap=True)
    table.add_column(t("findings.subject"), ratio=2, overflow="fold")
    table.add_column(t("story.why"), ratio=5, overflow="fold")
    for finding in findings:
        table.add_row(Text(t.enum("severity", finding.severity),
                           style=summary.SEVERITY_STYLE[finding.severity]),
                      Text(t("format.percent", n=round(finding.confidence * 100))),
                      styled(summary.subject(finding, t)), styled(summary.story(finding, report, t, written)))
    return table


def coverage_table(report: AuditReport, t: Any) -> Table:
    table = Table(title=t("checks.section"), box=box.SIMPLE, expand=True, title_justify="left")
    table.add_column(t("checks.check"), no_wrap=True)
    table.add_column(t("checks.status"), no_wrap=True)
    table.add_column(t("checks.detail"), ratio=1, overflow="fold")
    for check, status, detail in summary.coverage_rows(report, t):
        table.add_row(styled(check), styled(status), styled(detail))
    return table
