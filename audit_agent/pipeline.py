"""The scan as one function: load rules, policy and filings once, then evaluate a snapshot.

Shared by `scan`, `watch` and the tests, so a live scan is exactly collect + evaluate.
"""
from __future__ import annotations

import os
from pathlib import Path

import msgspec
from msgspec import Struct, field

from audit_agent.filing import Filing, load_registry
from audit_agent.model import AuditReport, Severity, Snapshot
from audit_agent.policy import Policy, load_policy
from audit_agent.rules.compiler import CompiledRules
from audit_agent.rules.loader import load_pack
from audit_agent.rules.tuning import DEFAULT_TUNING_DIR, load_tuning
from audit_agent.yamlfile import ConfigError


class Inputs(Struct):
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
    return Inputs(rules=load_tuned_rules(rules_path, tuning_dir(policy)), policy=policy, filings=filings)


def tuning_dir(policy: Policy) -> str:
    """The rules.d overlay: the config's tuning_dir, else $AUDIT_AGENT_TUNING_DIR, else /etc/audit-agent/rules.d."""
    return policy.tuning_dir or os.environ.get("AUDIT_AGENT_TUNING_DIR") or DEFAULT_TUNING_DIR


def load_tuned_rules(path: str | None, overlay: str | None) -> CompiledRules:
    """The active pack with the local overlay applied, cached like load_rules (keyed by the pack's and the
    overlay's files)."""
    from audit_agent.rules.active import active_rules_path, state_dir
    from audit_agent.rules.loader import default_rules_dir
    from audit_agent.rules.pack_cache import cached
    root = active_rules_path(path) or default_rules_dir()
    roots = [Path(root)] + ([Path(overlay)] if overlay else [])
    return cached(roots, state_dir(), lambda: build_tuned_rules(root, overlay))


def build_tuned_rules(root: str | Path, overlay: str | None) -> CompiledRules:
    """Load the pack and the overlay; the overlay's own rules must pass their examples."""
    from audit_agent.i18n import load_rule_texts
    pack = load_pack(root)
    tuning = load_tuning(overlay, pack, set(load_rule_texts("en")))
    if tuning.added:
        from audit_agent.rules.examples import check_examples
        problems = check_examples(msgspec.structs.replace(pack, rules=tuning.added))
        if problems:
            raise ConfigError(f"tuning: {len(problems)} rule example(s) fail, first: {problems[0]}")
    return CompiledRules(pack, tuning)


def run_scan(snapshot: Snapshot, inputs: Inputs, fail_on: Severity | None = Severity.HIGH) -> AuditReport:
    """evaluate(), with the conclusions of earlier runs on unchanged persistence lines (detect/memo.py)."""
    from audit_agent.detect.memo import load_memo, memo_key, save_memo
    from audit_agent.evaluate import evaluate
    from audit_agent.rules.active import state_dir
    folder = state_dir()
    memo = load_memo(folder, memo_key(inputs.rules.fingerprint))
    report = evaluate(snapshot, inputs.rules, inputs.policy, inputs.filings, fail_on=fail_on, memo=memo)
    save_memo(folder, memo)
    return report
