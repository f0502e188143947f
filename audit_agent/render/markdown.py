"""Markdown report for tickets and e-mail, from reports/templates/report.md.j2.

Every value the template prints goes through `escape` (the environment's
finalize hook): report data can add no Markdown structure, no HTML and no code
span, whatever it contains. Template text itself is written as Markdown.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from audit_agent import __version__
from audit_agent.i18n import translator
from audit_agent.model import AuditReport
from audit_agent.render import view
from audit_agent.render.html import templates_dir

TEMPLATE = "report.md.j2"
# Characters that make structure anywhere in a line in CommonMark/GFM: code spans, emphasis,
# links and images, raw HTML and entities, table cells, strikethrough. A backslash makes each literal.
MD_INLINE = re.compile(r"([\\`*_\[\]<>|&~])")
# Only at the start of a value (list items, headings, quotes, ordered lists, thematic breaks).
MD_LEADING = re.compile(r"^(\s*\d*)([-+#>=.)])")
# GFM turns bare URLs and www. names into links; a backslash keeps them plain text.
MD_AUTOLINK = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*):(?=//)|\b(www)\.")
LINE_BREAKS = re.compile(r"[\r\n\t]+")


def escape(value: Any) -> Any:
    """A value as literal Markdown text on one line (tables and list items stay intact)."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = MD_INLINE.sub(r"\\\1", LINE_BREAKS.sub(" ", view.clean(str(value))))
    text = MD_AUTOLINK.sub(lambda m: f"{m.group(1)}\\:" if m.group(1) else f"{m.group(2)}\\.", text)
    return MD_LEADING.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


@lru_cache(maxsize=1)
def environment() -> Environment:
    # autoescape off: this is Markdown, not HTML; `escape` above does Markdown's escaping for every value.
    return Environment(loader=FileSystemLoader(str(templates_dir())), autoescape=False, undefined=StrictUndefined,
                       finalize=escape, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render(report: AuditReport, options: object = None) -> str:
    t = translator(getattr(options, "lang", "en") or "en", report.timezone)
    return environment().get_template(TEMPLATE).render(
        v=view.build(report, t), r=report, t=t, agent_version=report.agent_version or __version__,
        number=view.number, gib=view.gib, story=view.story, coverage_detail=view.coverage_detail)
