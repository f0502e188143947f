"""The scan as one function: load rules, policy and filings once, then evaluate a snapshot.

Shared by `scan`, `watch` and the tests, so a live scan is exactly collect + evaluate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from audit_agent.filing import Filing, load_registry
from audit_agent.model import AuditReport, Severity, Snapshot
from audit_agent.policy import Policy, load_policy
from audit_agent.rules.compiler import CompiledRules
from audit_agent.rules.loader import load_pack


@dataclass
class Inputs:
    rules: CompiledRules
    policy: Policy
    filings: list[Filing] = field(default_factory=list)


def load_rules(path: str | None = None) -> CompiledRules:
    """The pack at `path`, else an installed (updated) pack, else the shipped default; built once per change
    of its files and then loaded from the state directory (rules/pack_cache.py)."""
    from audit_agent.rules.active import active_rules_path, state_dir
    from audit_agent.rules.loader import default_rules_dir
    from audit_agent.rules.pack_cache import cached
    root = active_rules_path(path) or default_rules_dir()
    return cached([Path(root)], state_dir(), lambda: CompiledRules(load_pack(root)))


def load_inputs(rules_path: str | None = None, config_path: str | None = None) -> Inputs:
    policy = load_policy(config_path)
    filings = load_registry(policy.filings_path) if policy.filings_path else []
    return Inputs(rules=load_rules(rules_path), policy=policy, filings=filings)


def run_scan(snapshot: Snapshot, inputs: Inputs, fail_on: Severity | None = Severity.HIGH) -> AuditReport:
    from audit_agent.evaluate import evaluate
    return evaluate(snapshot, inputs.rules, inputs.policy, inputs.filings, fail_on=fail_on)
