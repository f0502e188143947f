"""The filing-style HTML report: one self-contained file from reports/templates/report.html.j2.

Autoescape is on for every expression, and `view.clean` (the environment's
finalize hook) neutralises control characters and caps length before escaping,
so nothing from the report can become markup, script or a terminal escape.
The inline script is our own static file; the Content-Security-Policy allows
exactly that script (by hash) and no network access at all.
"""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from audit_agent import __version__
from audit_agent.i18n import translator
from audit_agent.model import AuditReport
from audit_agent.paths import data_dir
from audit_agent.render import view

TEMPLATE = "report.html.j2"
SCRIPT = "report.js"
STYLE = "report.css"


def templates_dir() -> Path:
    return data_dir("reports") / "templates"


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(templates_dir())),
                       autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
                       undefined=StrictUndefined, finalize=view.clean, trim_blocks=True, lstrip_blocks=True)


def csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
            "img-src 'none'; base-uri 'none'; form-action 'none'")


def render(report: AuditReport, options: object = None) -> str:
    lang = getattr(options, "lang", "en") or "en"
    t = translator(lang, report.timezone)
    directory = templates_dir()
    script = (directory / SCRIPT).read_text(encoding="utf-8")
    style = (directory / STYLE).read_text(encoding="utf-8")
    # Markup: our own static files, inserted verbatim (escaping would break them); no report data in them.
    built = view.build(report, t)
    sheet = view.paper(report, built, t)
    return environment().get_template(TEMPLATE).render(
        v=built, r=report, paper={"header": Markup(sheet.header), "pages": Markup(sheet.pages)}, t=t, lang=lang, agent_version=report.agent_version or __version__,
        script=Markup(script), style=Markup(style), csp=csp(script), number=view.number, gib=view.gib,
        story=view.story, coverage_detail=view.coverage_detail)
