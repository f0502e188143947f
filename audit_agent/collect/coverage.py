"""Coverage entries built from reason codes, so every language phrases the same facts.

A collector says *why* it could not see something with a code and its values
(`because("denied_processes", denied=3, total=412)`); the English sentence kept
in `Coverage.reason` comes from reports/i18n/coverage.en.yaml, and the reports
phrase the same code from coverage.<lang>.yaml. A new reason is a new code in both
files (tests/test_i18n_nodes.py fails on a code either language lacks).
"""
from __future__ import annotations

import os
from typing import Any

from audit_agent.i18n import coverage_reasons, coverage_text
from audit_agent.model import Coverage, CoverageDetail, CoverageStatus

MAX_UNREADABLE = 20     # names of unreadable processes or files kept per check


def because(code: str, **facts: Any) -> CoverageDetail:
    if code not in coverage_reasons("en"):
        raise KeyError(f"coverage reason code {code!r} is missing from reports/i18n/coverage.en.yaml")
    return CoverageDetail(code, facts)


def coverage(check: str, status: CoverageStatus, *details: CoverageDetail, inspected: int = 0, denied: int = 0,
             unreadable: list[str] | None = None) -> Coverage:
    """A Coverage whose English `reason` is phrased from its details."""
    shown = list(unreadable or [])
    if len(shown) > MAX_UNREADABLE:
        shown = shown[:MAX_UNREADABLE] + [f"… (+{len(shown) - MAX_UNREADABLE})"]
    return Coverage(check, status, coverage_text(list(details)), inspected=inspected, denied=denied,
                    details=list(details), unreadable=shown)


def is_root() -> bool:
    """Advice depends on it: "run as root" helps only someone who is not."""
    return hasattr(os, "geteuid") and os.geteuid() == 0
