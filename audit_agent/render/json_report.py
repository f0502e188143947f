"""The AuditReport as JSON: the contract for fleet merges, CI and pushes."""
from __future__ import annotations

import json

from audit_agent.model import AuditReport


def render(report: AuditReport, options: object = None) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
