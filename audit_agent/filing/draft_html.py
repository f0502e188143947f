"""The printable filing draft page (reports/templates/filing-draft.html.j2), in English or Chinese."""
from __future__ import annotations

from typing import Any

from audit_agent.filing.draft import observed_record
from audit_agent.filing.scale import rounded_up
from audit_agent.i18n import translator
from audit_agent.model import AuditReport

TEMPLATE = "filing-draft.html.j2"


def render_draft(report: AuditReport, system: dict[str, Any], lang: str) -> str:
    from audit_agent.render.html import environment, templates_dir
    t = translator(lang)
    style = (templates_dir() / "report.css").read_text(encoding="utf-8")
    from markupsafe import Markup
    used = system.get("used") or {"cpu_cores": 0, "gpus": 0, "gpu_memory_gib": 0}
    return environment().get_template(TEMPLATE).render(
        t=t, lang=lang, r=report, s=system, o=observed_record(report, system), proposed=rounded_up(used),
        style=Markup(style))
