"""What the HTML and Markdown templates show, computed once from an AuditReport.

Templates stay declarative: grouping, ordering, counting, unit formatting and
chart geometry happen here. Strings from the report stay raw here; the
templates' environments neutralise them on output (see `clean`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from audit_agent.i18n import coverage_text
from audit_agent.model import AuditReport, Coverage, Finding, LoadSample, Severity, SEVERITY_ORDER
from audit_agent.redact import cap, redact_text
from audit_agent.render.story import lead_rule, story

__all__ = ["lead_rule", "story"]

# Longest string any template prints from the report; the upstream caps are smaller, this one
# holds even for a hand-made or hostile report JSON.
MAX_FIELD = 4000
SEVERITIES_DESC = list(reversed(SEVERITY_ORDER))
CHART_W, CHART_H = 640, 170
PLOT_L, PLOT_R, PLOT_T, PLOT_B = 40, 12, 10, 26
GPU_COLOURS = ("#7c3aed", "#0e7490", "#b45309", "#be185d", "#15803d", "#1d4ed8", "#a16207", "#9f1239")


def clean(value: Any) -> Any:
    """Every string a template prints: secrets redacted, control and bidi characters made visible, capped."""
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return cap(redact_text(value), MAX_FIELD)
    return value


def clean_line(value: Any) -> Any:
    """`clean` for a page that shows data on one line (the fleet's tables): newlines and tabs made visible too."""
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return clean(value.replace("\n", "\\x0a").replace("\t", "\\x09"))
    return value


def gib(size: int | None) -> str:
    if not size:
        return ""
    value = size / 1024 ** 3
    return f"{value:.0f} GiB" if value >= 10 else f"{value:.1f} GiB"


@dataclass
class Series:
    label: str
    colour: str
    points: str             # SVG polyline points in the chart's coordinates
    mean: float
    peak: float


@dataclass
class Chart:
    title: str
    series: list[Series]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    width: int = CHART_W
    height: int = CHART_H
    plot_left: int = PLOT_L
    plot_right: int = CHART_W - PLOT_R
    plot_top: int = PLOT_T
    plot_bottom: int = CHART_H - PLOT_B


@dataclass
class ReportView:
    report: AuditReport
    counted: list[Finding]
    registered: list[Finding]
    allowlisted: list[Finding]
    counts: list[tuple[Severity, int]]
    window_end: float
    charts: list[Chart] = field(default_factory=list)
    filings: list[dict[str, Any]] = field(default_factory=list)
    verdict_reasons: list[str] = field(default_factory=list)
    references: list[tuple[str, str, str]] = field(default_factory=list)    # rule id, title, source
    report_id: str = ""


def report_id(report: AuditReport) -> str:
    """A short hash of the report's content, printed on every page so a paper copy names its JSON."""
    canonical = json.dumps(report.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "backslashreplace")).hexdigest()[:12]


def css_string(text: str) -> str:
    """A CSS string literal that is inert in HTML too: every character but [A-Za-z0-9 .,:/_-] as a \\HEX escape."""
    safe = "".join(ch if (ch.isascii() and (ch.isalnum() or ch in " .,:/_-")) else f"\\{ord(ch):06x}" for ch in text)
    return f'"{safe}"'


def build(report: AuditReport, t: Any) -> ReportView:
    def order(findings: list[Finding]) -> list[Finding]:
        return sorted(findings, key=lambda f: (-f.severity.rank, -f.confidence, f.subject.pid or 0, f.fingerprint))

    counted = order(report.open_findings)
    counts = [(severity, sum(1 for f in counted if f.severity == severity)) for severity in SEVERITIES_DESC]
    return ReportView(report=report, counted=counted, registered=order(report.registered_findings),
                      allowlisted=order(report.allowlisted_findings), counts=counts,
                      window_end=report.collected_at + report.window_seconds,
                      charts=charts(report.load, report.window_seconds, t), filings=filings(report),
                      verdict_reasons=verdict_reasons(report, t), references=references(report, t),
                      report_id=report_id(report))


@dataclass
class Paper:
    header: str         # CSS content of the running header: host and report id
    pages: str          # CSS content of "page n of m", counters included


def paper(report: AuditReport, view: ReportView, t: Any) -> Paper:
    header = t("report.running_header", host=cap(report.host.hostname, 60), id=view.report_id)
    pages = " ".join(css_string(text) if not is_data else f"counter({text})"
                     for text, is_data in t.parts("report.page_of", page="page", pages="pages"))
    return Paper(header=css_string(header), pages=pages)


def references(report: AuditReport, t: Any) -> list[tuple[str, str, str]]:
    """Every rule a finding of this report cites, with its title in the report's language and its source."""
    cited = sorted({rule_id for finding in report.findings for rule_id in finding.rule_ids})
    return [(rule_id, t.rule(rule_id, "title", rule_id), report.rule_pack.references.get(rule_id, ""))
            for rule_id in cited]


def verdict_reasons(report: AuditReport, t: Any) -> list[str]:
    """The verdict's reasons in the report's language, from the facts the engine judged on (they travel
    in the report: a renderer never re-runs the evaluation). A report without them keeps its English."""
    if not report.verdict_facts:
        return list(report.verdict_reasons)
    by_check = {c.check: c for c in report.coverage}
    phrased = []
    for fact in report.verdict_facts:
        key, values = fact.get("key", ""), dict(fact.get("values") or {})
        if key == "gap":
            entry = by_check.get(values.get("check", ""))
            values = {**values, "check": t.check(values.get("check", "")),
                      "status": t.enum("coverage", values["status"]),
                      "detail": coverage_detail(entry, t) if entry else values.get("detail", "")}
        elif key == "accepted":
            values = {**values, "check": t.check(values.get("check", ""))}
        phrased.append(t(f"verdict_reason.{key}", **values))
    return phrased


def coverage_detail(entry: Coverage, t: Any) -> str:
    """Why a check could not see everything, phrased from its codes; a report without codes keeps its text."""
    if entry.details:
        return coverage_text(entry.details, t.lang, t("format.list_join"))
    return entry.reason


def filings(report: AuditReport) -> list[dict[str, Any]]:
    """The matched filings with plain strings the templates can print as they are."""
    shown = []
    for item in report.filings:
        entry = {key: item.get(key) for key in ("number", "approved_by", "project", "discipline", "responsible",
                                                "contact", "valid_from", "valid_until", "status", "expiring_soon",
                                                "expires_in_days", "timezone", "gpu_memory_gib", "storage_tib",
                                                "used_gpu_memory_gib", "used_storage_tib")}
        entry["hosts"] = ", ".join(str(h) for h in item.get("hosts") or [])
        entry["users"] = ", ".join(str(u) for u in item.get("users") or [])
        entry["used_cpu_cores"], entry["cpu_cores"] = item.get("used_cpu_cores"), item.get("cpu_cores")
        entry["used_gpus"], entry["gpus"] = item.get("used_gpus"), item.get("gpus")
        shown.append(entry)
    return shown


def number(value: Any) -> str:
    if value is None or value == "":
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def charts(samples: list[LoadSample], window: float, t: Any) -> list[Chart]:
    if not samples:
        return []
    span = max(window, max(s.t for s in samples), 1e-6)
    found = [Chart(t("load.cpu"), [series(t("load.cpu"), "#1d4ed8", [(s.t, s.cpu_percent) for s in samples], span)],
                   x_ticks(span, t), y_ticks())]
    gpu_count = max((len(s.gpu_percent) for s in samples), default=0)
    if gpu_count:
        lines = [series(t("load.gpu", index=i), GPU_COLOURS[i % len(GPU_COLOURS)],
                        [(s.t, s.gpu_percent[i]) for s in samples if i < len(s.gpu_percent)], span)
                 for i in range(gpu_count)]
        found.append(Chart(t("load.gpu", index="0–" + str(gpu_count - 1)) if gpu_count > 1 else lines[0].label,
                           lines, x_ticks(span, t), y_ticks()))
    return found


def series(label: str, colour: str, values: list[tuple[float, float]], span: float) -> Series:
    width = CHART_W - PLOT_L - PLOT_R
    height = CHART_H - PLOT_T - PLOT_B
    points = " ".join(f"{PLOT_L + width * min(max(x / span, 0.0), 1.0):.1f},"
                      f"{PLOT_T + height * (1 - min(max(y, 0.0), 100.0) / 100):.1f}" for x, y in values)
    ys = [min(max(y, 0.0), 100.0) for _, y in values] or [0.0]
    return Series(label, colour, points, round(sum(ys) / len(ys), 1), round(max(ys), 1))


def x_ticks(span: float, t: Any) -> list[tuple[float, str]]:
    """Five ticks; the last carries the unit ("60 s", "60 秒") so no separate label can collide with it."""
    width = CHART_W - PLOT_L - PLOT_R
    ticks = [(PLOT_L + width * i / 4, f"{span * i / 4:.0f}") for i in range(4)]
    return ticks + [(PLOT_L + width, t("format.seconds", n=f"{span:.0f}"))]


def y_ticks() -> list[tuple[float, str]]:
    height = CHART_H - PLOT_T - PLOT_B
    return [(PLOT_T + height * (1 - v / 100), str(v)) for v in (0, 25, 50, 75, 100)]
