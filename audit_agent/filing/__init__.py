"""Filings: the registry of approved, filed research systems (registry), how it judges a host's
findings and the filings' lifecycle (judge), the scale a system used against what it filed
(scale), the research systems of a report (systems), and pre-filled filing drafts (draft)."""
from __future__ import annotations

from audit_agent.filing.judge import apply_filings, judge, workload_matches
from audit_agent.filing.registry import Filing, load_registry, parse_filing

__all__ = ["Filing", "apply_filings", "judge", "load_registry", "parse_filing", "workload_matches"]
