"""Kept so that `from audit_agent.filings import ...` keeps working: the code lives in audit_agent/filing/."""
from __future__ import annotations

from audit_agent.filing import Filing, apply_filings, judge, load_registry, parse_filing, workload_matches

__all__ = ["Filing", "apply_filings", "judge", "load_registry", "parse_filing", "workload_matches"]
