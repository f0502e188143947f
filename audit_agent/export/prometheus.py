"""node_exporter textfile-collector metrics from an AuditReport.

Conventions (node_exporter textfile collector, Prometheus naming): every name has
the `audit_agent_` prefix and base units; every verdict, severity and category is
emitted even at 0 so alerts and dashboards never see a series vanish; labels are
low-cardinality only (never PID, user or command line: those belong in the
report, and would explode the time-series count across a fleet).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from audit_agent import __version__
from audit_agent.model import (CATEGORIES, COUNTED_STATUSES, SEVERITY_ORDER, AuditReport, CoverageStatus, FindingStatus,
                               Verdict)

FILENAME = "audit_agent.prom"


@dataclass
class Counters:
    """Monotonic counts kept across runs in the watch state file (so they survive timer runs)."""
    scans_total: int = 0
    scan_errors_total: int = 0
    write_errors_total: int = 0
    push_failures_total: int = 0
    spool_dropped_total: int = 0
    spool_pending: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def escape_label(value: str) -> str:
    """Label values per the exposition format: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


class _Metrics:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        full = f"audit_agent_{name}"
        self.lines.append(f"# HELP {full} {help_text}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            text = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels.items())
            self.lines.append(f"{full}{{{text}}} {format_value(value)}" if text else f"{full} {format_value(value)}")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(report: AuditReport, duration_seconds: float, finished_at: float, counters: Counters | None = None) -> str:
    """The whole .prom file as text."""
    counters = counters or Counters()
    counted = [f for f in report.findings if f.status in COUNTED_STATUSES]
    by_severity = Counter(f.severity.value for f in counted)
    by_category = Counter(f.category for f in counted)
    by_status = Counter(f.status.value for f in report.findings)
    categories = list(CATEGORIES) + sorted(set(by_category) - set(CATEGORIES))

    m = _Metrics()
    m.family("verdict", "gauge", "1 for the verdict of the last audit, 0 for the others.",
             [({"verdict": v.value}, 1 if report.verdict == v else 0) for v in Verdict])
    m.family("findings", "gauge", "Counted findings (open, expired or outside registration) by severity.",
             [({"severity": s.value}, by_severity.get(s.value, 0)) for s in SEVERITY_ORDER])
    m.family("findings_by_category", "gauge", "Counted findings by category.",
             [({"category": c}, by_category.get(c, 0)) for c in categories])
    m.family("findings_by_status", "gauge", "All findings by status (registered and allowlisted are not counted).",
             [({"status": s.value}, by_status.get(s.value, 0)) for s in FindingStatus])
    m.family("coverage", "gauge", "1 for each check's coverage status in the last audit, 0 for the others.",
             [({"check": c.check, "status": s.value}, 1 if c.status == s else 0)
              for c in report.coverage for s in CoverageStatus])
    m.family("processes_inspected", "gauge", "Processes seen by the last audit.", [({}, report.process_count)])
    m.family("scan_duration_seconds", "gauge", "Wall time of the last audit (collect + evaluate).",
             [({}, round(duration_seconds, 3))])
    m.family("last_run_timestamp_seconds", "gauge", "Unix time the last audit finished; alert when it is stale.",
             [({}, round(finished_at, 3))])
    m.family("rule_pack_info", "gauge", "The rule pack the last audit used.",
             [({"name": report.rule_pack.name, "version": report.rule_pack.version}, 1)])
    m.family("build_info", "gauge", "The audit-agent version that wrote these metrics.", [({"version": __version__}, 1)])
    m.family("scans_total", "counter", "Audits run by this agent (watch state).", [({}, counters.scans_total)])
    m.family("scan_errors_total", "counter", "Audit cycles that failed (collector or rule errors).",
             [({}, counters.scan_errors_total)])
    m.family("write_errors_total", "counter", "Failed writes of state, metrics or reports (e.g. a full disk).",
             [({}, counters.write_errors_total)])
    m.family("push_failures_total", "counter", "Reports that could not be pushed and were spooled.",
             [({}, counters.push_failures_total)])
    m.family("spool_dropped_total", "counter", "Spooled reports dropped because the spool was full.",
             [({}, counters.spool_dropped_total)])
    m.family("spool_reports", "gauge", "Reports waiting in the push spool.", [({}, counters.spool_pending)])
    return "\n".join(m.lines) + "\n"


def write_textfile(directory: str | Path, text: str) -> Path:
    """Atomically (temp file in the same directory + rename) so node_exporter never reads half a file.

    The temp name starts with '.', which the textfile collector ignores (it reads only *.prom).
    Mode 0644: node_exporter usually runs as its own user and must read it.
    """
    from audit_agent.output import write_atomic
    path = Path(directory) / FILENAME
    write_atomic(path, text, mode=0o644)
    return path
