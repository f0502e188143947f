"""The fleet report as one self-contained HTML file (CSS and a small sort script inline, no external links),
printable.

Labels come from the host report's translations (reports/i18n/<lang>.yaml, via
audit_agent.i18n) plus the fleet's own keys in reports/i18n/fleet.<lang>.yaml.
Jinja2 autoescape is on, and every expression passes `view.clean_line` first (the host report's
sanitiser, plus newlines made visible): host names, paths, titles and filing texts are untrusted data,
so no control character, terminal escape or bidi override reaches the page. The script is our own
static file (reports/templates/fleet.js), allowed by hash in the page's Content-Security-Policy; the
host table is already in its default order (worst verdict first) without it.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from audit_agent.fleet import SEVERITIES, VERDICT_ORDER, FleetReport, HostRow
from audit_agent.i18n import Translator, flatten, i18n_dir, load_messages
from audit_agent.model import Evidence, Finding, Severity, Subject
from audit_agent.paths import data_dir
from audit_agent.render import view
from audit_agent.render.html import csp
from audit_agent.render.story import lead_rule, title

SCRIPT = "fleet.js"


@lru_cache(maxsize=None)
def fleet_messages(lang: str) -> dict[str, str]:
    with (i18n_dir() / f"fleet.{lang}.yaml").open(encoding="utf-8") as handle:
        return {**load_messages(lang), **flatten(yaml.safe_load(handle))}


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(data_dir("reports") / "templates")),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       undefined=StrictUndefined, finalize=view.clean_line, trim_blocks=True, lstrip_blocks=True)


def human_bytes(value: int | None) -> str:
    if not value:
        return "0"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def top_title(row: HostRow, t: Translator) -> str:
    """The host's top finding titled as its own report titles it (story.title), in the page's language."""
    top = row.top_finding
    if top is None:
        return ""
    finding = Finding(fingerprint="", subject=Subject(kind=""), title=top.title, category="",
                      severity=Severity(top.severity), confidence=0.0, rule_ids=list(top.rule_ids),
                      evidence=[Evidence(field=f, value="", matched="", rule_id=r) for f, r in top.evidence])
    return title(finding, lead_rule(finding), t)


def gaps_text(row: HostRow, t: Translator) -> str:
    """The host's coverage gaps ("processes: partial") with the check and its status in the page's language."""
    phrased = []
    for gap in row.coverage_gaps:
        check, _, status = gap.partition(": ")
        phrased.append(t("fleet.gap", check=t.check(check), status=t.known("coverage", status)))
    return t("format.list_join").join(phrased)


def report_link(row: HostRow, base: Path | None) -> str:
    """A relative URL of the host's report (its HTML when there is one, else its JSON) from the page's folder.
    Every character but letters, digits and /._-~ is percent-encoded: a file name cannot become a scheme."""
    target = row.html_report or row.path
    if base is not None:
        try:
            target = os.path.relpath(Path(target).resolve(), Path(base).resolve())
        except ValueError:          # another drive (Windows): keep the path as it was given
            pass
    return quote(target.replace(os.sep, "/"), safe="/")


def render_html(fleet: FleetReport, lang: str = "en", base: Path | None = None) -> str:
    """The page; `base` is the folder it is written to (links to host reports are relative to it)."""
    t = Translator(lang, fleet_messages(lang))
    attention = [h for h in fleet.hosts if h.verdict in ("non_compliant", "needs_review") or sum(h.findings.values()) > 0]
    stale = [h for h in fleet.hosts if h.stale]
    script = (data_dir("reports") / "templates" / SCRIPT).read_text(encoding="utf-8")
    return environment().get_template("fleet.html.j2").render(
        t=t, fleet=fleet, severities=SEVERITIES, verdicts=VERDICT_ORDER, attention=attention, stale=stale,
        memory=human_bytes(fleet.compute["memory_total_bytes"]), html_lang=t("meta.html_lang"),
        top=lambda h: top_title(h, t), link=lambda h: report_link(h, base), gaps=lambda h: gaps_text(h, t),
        rank={v: i for i, v in enumerate(VERDICT_ORDER)}, script=Markup(script), csp=csp(script))
