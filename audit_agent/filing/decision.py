"""The registry's decision on a finding as a code and its facts (Finding.decision), and in English.

The English sentence goes to `Finding.status_reason` (the JSON, tools); the reports phrase the same
code and facts in their own language (reports/i18n/<lang>.yaml, decision.<code>).
"""
from __future__ import annotations

from typing import Any

from audit_agent.model import Finding

DECISION_TEXT = {
    "filing_valid": "covered by filing {number} ({project}, approved by {approved_by})",
    "filing_expired": "filing {number} is valid {valid_from} to {valid_until}, not on {day}",
    "filing_host": "host {host} is not among the hosts of filing {number}",
    "filing_user": "user {user} is not among the users of filing {number}",
    "filing_cpu": "uses {used} CPU cores, beyond the {filed} filed under {number}",
    "filing_gpu": "uses {used} GPUs, beyond the {filed} filed under {number}",
    "filing_gpu_memory": "uses {used} GiB of GPU memory, beyond the {filed} GiB filed under {number}",
    "filing_storage": "farms {used} TiB, beyond the {filed} TiB filed under {number}",
    "unfiled": "no filing in the registry covers this mining-related research system",
}


def english(code: str, facts: dict[str, Any]) -> str:
    return DECISION_TEXT[code].format(**facts)


def decide(finding: Finding, code: str, facts: dict[str, Any]) -> None:
    finding.decision = {"code": code, **facts}
    finding.status_reason = english(code, facts)


def decide_all(finding: Finding, decisions: list[tuple[str, dict[str, Any]]]) -> None:
    """Several decisions at once (a workload over its filed scale in more than one resource)."""
    finding.decision = {"code": decisions[0][0], **decisions[0][1],
                        "more": [{"code": code, **facts} for code, facts in decisions[1:]]} if decisions else {}
    finding.status_reason = "; ".join(english(code, facts) for code, facts in decisions)
