"""The AuditReport as JSON: the contract for fleet merges, CI and pushes."""
from __future__ import annotations

import json
import re
from typing import Any

from audit_agent.model import AuditReport

# Characters that are valid in JSON strings but can spoof or drive a terminal or editor showing the file:
# DEL and C1 controls, zero-width and bidi overrides, line/paragraph separators, lone surrogates.
# json.dumps already escapes C0 controls; these are escaped too (\uXXXX), so the parsed data is unchanged.
UNSAFE = re.compile("[\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def dumps(data: Any, indent: int | None = 2) -> str:
    """JSON text, readable UTF-8, with every invisible or direction-changing character escaped."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, sort_keys=False)
    return UNSAFE.sub(lambda found: f"\\u{ord(found.group(0)):04x}", text)


def render(report: AuditReport, options: object = None) -> str:
    return dumps(report.to_dict()) + "\n"
