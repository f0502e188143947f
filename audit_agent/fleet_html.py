"""The fleet report as one self-contained HTML file (CSS inline, no script, no external links), printable.

Labels come from the host report's translations (reports/i18n/<lang>.yaml, via
audit_agent.i18n) plus the fleet's own keys in reports/i18n/fleet.<lang>.yaml.
Jinja2 autoescape is on: host names, paths and filing texts are untrusted data.
"""
from __future__ import annotations

from functools import lru_cache

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from audit_agent.fleet import SEVERITIES, VERDICT_ORDER, FleetReport
from audit_agent.i18n import Translator, flatten, i18n_dir, load_messages
from audit_agent.paths import data_dir


@lru_cache(maxsize=None)
def fleet_messages(lang: str) -> dict[str, str]:
    with (i18n_dir() / f"fleet.{lang}.yaml").open(encoding="utf-8") as handle:
        return {**load_messages(lang), **flatten(yaml.safe_load(handle))}


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(data_dir("reports") / "templates")),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def human_bytes(value: int | None) -> str:
    if not value:
        return "0"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def render_html(fleet: FleetReport, lang: str = "en") -> str:
    t = Translator(lang, fleet_messages(lang))
    attention = [h for h in fleet.hosts if h.verdict in ("non_compliant", "needs_review") or sum(h.findings.values()) > 0]
    stale = [h for h in fleet.hosts if h.stale]
    return environment().get_template("fleet.html.j2").render(
        t=t, fleet=fleet, severities=SEVERITIES, verdicts=VERDICT_ORDER, attention=attention, stale=stale,
        memory=human_bytes(fleet.compute["memory_total_bytes"]), html_lang=t("meta.html_lang"))
