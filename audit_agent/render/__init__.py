"""Renderers: one module per output format, each `render(report, options) -> str | bytes`.

Renderers never write files (the CLI does, atomically, after rendering succeeds)
and take only an AuditReport. Modules are imported on first use so that
`audit-agent --version` does not pay for Jinja2.
"""
from __future__ import annotations

import importlib

import msgspec

from audit_agent.model import AuditReport

FORMATS = {
    "text": "audit_agent.render.text",
    "json": "audit_agent.render.json_report",
    "html": "audit_agent.render.html",
    "markdown": "audit_agent.render.markdown",
    "junit": "audit_agent.render.junit",
    "sarif": "audit_agent.render.sarif",
}


class RenderOptions(msgspec.Struct):
    lang: str = "en"
    color: bool = False
    width: int = 100


def render(fmt: str, report: AuditReport, options: RenderOptions | None = None) -> str | bytes:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    module = importlib.import_module(FORMATS[fmt])
    rendered: str | bytes = module.render(report, options or RenderOptions())
    return rendered
