"""The terminal summary's content, without Rich: labelled header, verdict and its reasons, findings (what was
found where, and the action), filing notices, coverage, and a next-steps line.

Each part is a list of segments, (text, style): render/text.py gives them to Rich for a terminal, and
`write_plain` prints their text alone when stdout is a file or a pipe (cron, CI), which spares the
~100 ms of importing Rich. Process data is attacker-controlled: it only enters a segment after
`one_line()`, which makes escapes, control characters and line breaks visible instead of live.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TextIO

from audit_agent.i18n import translator
from audit_agent.model import AuditReport, CoverageStatus, Finding, Severity, Verdict
from audit_agent.redact import cap
from audit_agent.render import view

Segments = list[tuple[str, str]]        # (text, Rich style name or "")
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


def header(report: AuditReport, t: Any) -> Segments:
    """Labelled fields: what was audited, when, how long, how much, with which rules."""
    host = report.host
    segments: Segments = [("audit-agent ", "bold"), (one_line(report.agent_version, 40), "")]
    fields = [(t("header.host"), one_line(host.hostname, 80)),
              (t("header.generated"), t.datetime(report.collected_at or report.generated_at)),
              (t("terminal.window"), t("format.seconds", n=f"{report.window_seconds:g}")),
              (t("inventory.processes_seen"), str(report.process_count)),
              (t("inventory.connections_seen"), str(report.connection_count)),
              (t("header.rule_pack"), t("header.rule_pack_value", name=one_line(report.rule_pack.name, 60),
                                        version=one_line(report.rule_pack.version, 30)))]
    for label, value in fields:
        segments += [("\n", ""), (f"{label}: ", "bold"), (value, "")]
    return segments


def tuning_line(change: Any, t: Any) -> Segments:
    return [(f"  {t('header.tuning')}: {one_line(', '.join(change.rule_ids), 100)} "
             f"{t('tuning_action.' + change.action)} {one_line(change.detail, 100)} - "
             f"{t('tuning_action.reason')}: {one_line(change.reason, 200)} ({one_line(change.origin, 200)})", "")]


def verdict_line(report: AuditReport, t: Any) -> Segments:
    segments: Segments = [(f"{t('verdict.section')}: ", "bold"),
                          (t.enum("verdict", report.verdict).upper(), VERDICT_STYLE[report.verdict])]
    counts = {s: 0 for s in Severity}
    for finding in report.open_findings:
        counts[finding.severity] += 1
    shown = "  ".join(f"{t.enum('severity', s)} {counts[s]}" for s in reversed(list(Severity)) if counts[s])
    if shown:
        segments.append((f"   {shown}", "bold"))
    return segments


def verdict_reasons(report: AuditReport, t: Any) -> list[Segments]:
    return [[(f"  - {one_line(reason, 400)}", "")] for reason in view.verdict_reasons(report, t)]


def filing_notices(report: AuditReport, t: Any) -> list[Segments]:
    """Research systems without a filing (and their drafts), use beyond the filed scale, filings about to
    expire or unused: what the administrator must file or renew."""
    lines: list[Segments] = []
    for system in report.research_systems:
        pid, software = system.get("pid"), one_line(system.get("software", ""), 60)
        if system.get("status") == "unfiled":
            draft = t("terminal.draft", path=one_line(system["draft"], 200)) if system.get("draft") else \
                t("research.no_draft")
            lines.append([(t("terminal.unfiled", pid=pid, software=software, draft=draft), "yellow")])
        for over in system.get("over_scale_facts") or []:
            what = t("decision." + over["code"], **over)
            lines.append([(t("terminal.over_scale", pid=pid, what=one_line(what, 300)), "yellow")])
    for filing in report.filings:
        number = one_line(filing.get("number", ""), 60)
        if filing.get("status") == "unused":
            lines.append([(t("terminal.filing_unused", number=number), "dim")])
        elif filing.get("expiring_soon"):
            lines.append([(t("terminal.filing_expiring", number=number, n=filing.get("expires_in_days"),
                             zone=one_line(filing.get("timezone", ""), 40)), "yellow")])
    return lines


def subject(finding: Finding, t: Any) -> Segments:
    about = finding.subject
    segments: Segments = []
    if about.pid is not None:
        segments.append((f"{t('subject.pid')} {about.pid} ", "bold"))
    if about.gpu_index is not None:
        segments.append((f"{t('subject.gpu')} {about.gpu_index} ", "bold"))
    name = t.known("entry", about.name) if about.kind == "persistence" else about.name
    segments.append((one_line(name or about.path or t.known("kind", about.kind), 60), ""))
    if about.username:
        segments.append((f"\n{t('subject.user')} {one_line(about.username, 40)}", ""))
    if about.exe:
        segments.append((f"\n{one_line(about.exe, 120)}", "dim"))
    for label, value in ((t("subject.container"), about.container_id[:12]), (t("subject.slurm_job"),
                                                                              about.slurm_job_id)):
        if value:
            segments.append((f"\n{label} {one_line(value, 64)}", ""))
    return segments


def story(finding: Finding, report: AuditReport, t: Any, written: Written | None) -> Segments:
    told = view.story(finding, t, report.rule_pack.references)
    segments: Segments = [(one_line(told.title, 200), "bold")]
    for row in told.rows[:ROWS_SHOWN]:
        segments.append((f"\n- {row.where}: {one_line(row.shown.text, 240)}", ""))
    hidden = len(told.rows) - ROWS_SHOWN
    if hidden > 0:
        where = written.html or written.markdown if written else ""
        note = t("terminal.more_in", n=hidden, path=one_line(where, 200)) if where else t("terminal.more", n=hidden)
        segments.append((f"\n  ({note})", "dim"))
    if told.decision:
        segments.append((f"\n{one_line(told.decision, 300)}", "dim"))
    if finding.subject.cmdline:
        segments.append((f"\n$ {one_line(finding.subject.cmdline, 300)}", "dim"))
    segments += [(f"\n{t('findings.action')}: ", "bold"), (one_line(told.action, 400), "")]
    return segments


def coverage_rows(report: AuditReport, t: Any) -> list[tuple[Segments, Segments, Segments]]:
    """(check, status, detail) per coverage entry."""
    rows = []
    for entry in report.coverage:
        detail = view.coverage_detail(entry, t)
        if entry.unreadable:
            detail += f" ({t('checks.unreadable')}: {', '.join(entry.unreadable[:5])})"
        rows.append(([(one_line(t.check(entry.check), 60), "")],
                     [(t.enum("coverage", entry.status), COVERAGE_STYLE[entry.status])],
                     [(one_line(detail, 400), "")]))
    return rows


def next_steps(report: AuditReport, t: Any, written: Written | None) -> Segments:
    """What to open or run next, from what this run really wrote."""
    segments: Segments = [(f"{t('terminal.next')}: ", "bold")]
    if written and (written.html or written.markdown):
        segments.append((t("terminal.open_report", path=one_line(written.html or written.markdown, 300)), ""))
    elif written and written.json:
        segments.append((t("terminal.render_saved", json=one_line(written.json, 300)), ""))
    else:
        segments.append((t("terminal.write_report"), ""))
    if report.verdict != Verdict.COMPLIANT and report.open_findings:
        segments.append((" " + t("terminal.act", n=len(report.open_findings)), ""))
    return segments


def settled_findings(report: AuditReport) -> list[Finding]:
    return report.registered_findings + report.allowlisted_findings


# ------------------------------------------------------------------ plain text (stdout not a terminal)


def plain(segments: Segments, indent: str = "") -> str:
    text = "".join(part for part, _ in segments)
    return text.replace("\n", "\n" + indent) if indent else text


def write_plain(out: TextIO, report: AuditReport, lang: str = "en", written: Written | None = None) -> None:
    """The same summary as lines of text: a finding is a block (severity, confidence, subject, then its story
    indented), a coverage entry one line."""
    t = translator(lang, report.timezone)
    lines = [plain(header(report, t)), *(plain(tuning_line(c, t)) for c in report.tuning),
             plain(verdict_line(report, t)), *(plain(r) for r in verdict_reasons(report, t))]
    for title, findings in ((t("findings.section"), report.open_findings),
                            (t("registered.section"), settled_findings(report))):
        if findings:
            lines += ["", title]
            for finding in findings:
                lines.append(f"* {t.enum('severity', finding.severity)}  "
                             f"{t('format.percent', n=round(finding.confidence * 100))}  "
                             + plain(subject(finding, t), "    "))
                lines.append("    " + plain(story(finding, report, t, written), "    "))
    lines += [plain(notice) for notice in filing_notices(report, t)]
    lines += ["", t("checks.section")]
    lines += [f"  {plain(check)}: {plain(status)}" + (f" - {plain(detail)}" if plain(detail) else "")
              for check, status, detail in coverage_rows(report, t)]
    lines += ["", plain(next_steps(report, t, written))]
    out.write("\n".join(lines) + "\n")
