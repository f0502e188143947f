"""Local tuning without forking the pack: an overlay folder (default /etc/audit-agent/rules.d/) of YAML
files that disable a rule, change its severity, allow a workload for named rules only, or add rules.

Every change carries a reason, is validated like the pack (errors name file:line), and is listed in the
report as "tuning in effect", so an auditor sees what the institution changed and why. As in Lynis'
skip-test, OpenSCAP tailoring and Falco's local rules, the pack itself stays untouched.

    # /etc/audit-agent/rules.d/10-hpc.yaml
    tuning:
      - disable: AA-LOAD-001
        reason: "HPC nodes run saturating batch jobs all day; load alone is noise (IT-1234)"
      - rule: AA-POOL-010
        severity: low
        reason: "..."
      - allow: [AA-NAME-003]
        exe: /opt/lab/bin/cpuminer-bench
        user: alice
        reason: "filed benchmark study, ticket IT-2001"
      - add:
          id: AA-LOCAL-001
          ...                       # a full rule, with examples, exactly as in the pack
        reason: "campaign seen in our network in 2026"
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct, field

from audit_agent.model import Severity, TuningChange
from audit_agent.policy import AllowEntry, _allow_entry
from audit_agent.rules.loader import RULE_ID, Rule, RulePack, parse_rule, read_rule_file
from audit_agent.yamlfile import ConfigError, LineDict, line_of

DEFAULT_TUNING_DIR = "/etc/audit-agent/rules.d"
ACTIONS = ("disable", "rule", "allow", "add")


class ScopedAllow(Struct):
    rule_ids: set[str]
    entry: AllowEntry


class Tuning(Struct):
    disabled: set[str] = field(default_factory=set)
    severity: dict[str, Severity] = field(default_factory=dict)
    allows: list[ScopedAllow] = field(default_factory=list)
    added: list[Rule] = field(default_factory=list)
    changes: list[TuningChange] = field(default_factory=list)


def load_tuning(folder: str | Path | None, pack: RulePack, known_ids: set[str]) -> Tuning:
    """Read <folder>/*.yaml in name order. A missing folder is no tuning; anything wrong is a ConfigError."""
    tuning = Tuning()
    if folder is None:
        return tuning
    root = Path(folder)
    if not root.is_dir():
        if root.exists():
            raise ConfigError(f"{root}: the tuning folder is not a directory")
        return tuning
    known = set(known_ids) | {rule.id for rule in pack.rules}
    for path in sorted(p for p in root.glob("*.yaml") if p.is_file()):
        data = read_rule_file(path, _NoDigest())
        if data is None:
            continue
        if not isinstance(data, dict) or set(data) != {"tuning"} or not isinstance(data["tuning"], list):
            raise ConfigError(f"{path}:{line_of(data, 1)}: a tuning file holds one key, 'tuning:', a list of changes")
        for item in data["tuning"]:
            _apply_item(tuning, item, path, known, pack.renamed)
    return tuning


def _apply_item(tuning: Tuning, item: Any, path: Path, known: set[str], renamed: dict[str, str]) -> None:
    where = f"{path}:{line_of(item)}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: each tuning change must be a mapping")
    actions = [key for key in ACTIONS if key in item]
    if len(actions) != 1:
        raise ConfigError(f"{where}: each change needs exactly one of disable, rule (with severity), allow, add")
    reason = item.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError(f"{where}: every tuning change needs a reason (who decided it and why)")
    action = actions[0]
    if action == "disable":
        _only(item, {"disable", "reason"}, where)
        rule_id = _known_id(item["disable"], known, where, renamed)
        tuning.disabled.add(rule_id)
        tuning.changes.append(TuningChange("disable", [rule_id], "", reason, where))
    elif action == "rule":
        _only(item, {"rule", "severity", "reason"}, where)
        rule_id = _known_id(item["rule"], known, where, renamed)
        try:
            severity = Severity(item.get("severity"))
        except ValueError:
            raise ConfigError(f"{where}: {rule_id}: severity must be one of "
                              f"{', '.join(s.value for s in Severity)}") from None
        tuning.severity[rule_id] = severity
        tuning.changes.append(TuningChange("severity", [rule_id], severity.value, reason, where))
    elif action == "allow":
        ids = item["allow"] if isinstance(item["allow"], list) else [item["allow"]]
        if not ids:
            raise ConfigError(f"{where}: allow names the rule id(s) it applies to")
        rule_ids = [_known_id(value, known, where, renamed) for value in ids]
        fields = LineDict((k, v) for k, v in item.items() if k != "allow")
        fields.line, fields.key_lines = line_of(item), getattr(item, "key_lines", None)
        entry = _allow_entry(fields, path, scoped=True)
        tuning.allows.append(ScopedAllow(set(rule_ids), entry))
        scope = ", ".join(f"{key}={getattr(entry, key)}" for key in ("exe", "user", "cmdline", "host")
                          if getattr(entry, key))
        tuning.changes.append(TuningChange("allow", rule_ids, scope, reason, where))
    else:
        _only(item, {"add", "reason"}, where)
        rule = parse_rule(item["add"], path)
        if rule.id in known:
            raise ConfigError(f"{rule.origin}: rule id {rule.id} already exists; use a new id for a local rule")
        known.add(rule.id)
        tuning.added.append(rule)
        tuning.changes.append(TuningChange("add", [rule.id], rule.title, reason, where))


def _only(item: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(item) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} for this change")


def _known_id(value: Any, known: set[str], where: str, renamed: dict[str, str]) -> str:
    if not isinstance(value, str) or not RULE_ID.match(value):
        raise ConfigError(f"{where}: {value!r} is not a rule id")
    rule_id: str = value
    if rule_id in renamed and rule_id not in known:
        # an overlay written for an older pack keeps working, and says what to write now
        print(f"audit-agent: warning: {where}: {rule_id} is now {renamed[rule_id]}", file=sys.stderr)
        rule_id = renamed[rule_id]
    if rule_id not in known:
        raise ConfigError(f"{where}: no rule {rule_id} in the pack or the built-in checks")
    return rule_id


def tuned_pack(pack: RulePack, tuning: Tuning) -> RulePack:
    """The pack with disabled rules left out, severities changed and local rules added (examples and all)."""
    rules = [msgspec.structs.replace(rule, severity=tuning.severity.get(rule.id, rule.severity))
             for rule in pack.rules if rule.id not in tuning.disabled]
    return msgspec.structs.replace(pack, rules=rules + tuning.added)


class _NoDigest:
    """Tuning files are not part of the pack's hash: the report lists them as changes instead."""

    def update(self, data: bytes) -> None:
        pass
