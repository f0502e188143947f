"""Run every rule's examples: each `match` example must hit the rule, each `no_match` must not."""
from __future__ import annotations

import shlex

import msgspec

from audit_agent.rules.compiler import CompiledRules, logins_from_argv
from audit_agent.rules.loader import Rule, RulePack
from audit_agent.rules.research import example_names_and_text


def rule_matches(rule: Rule, example: str) -> bool:
    """Does this one rule, compiled alone, match the example text as its kind reads it?"""
    alone = CompiledRules(msgspec.structs.replace(_EMPTY_PACK, rules=[rule]))
    kind = rule.kind
    if kind == "names":
        return bool(alone.match_names(example, "", ""))
    if kind == "cmdline":
        return bool(alone.match_cmdline(example))
    if kind == "persistence":
        return bool(alone.match_persistence(example))
    if kind == "wallet":
        try:
            argv = shlex.split(example)
        except ValueError:
            argv = example.split()
        return bool(alone.match_wallets(logins_from_argv(argv) or [example]))
    if kind == "domains":
        return bool(alone.match_domains(example, "text"))
    if kind == "ports":
        return example.strip().isdigit() and alone.pool_port_rule(int(example)) is not None
    if kind == "strings":
        found = {s for s in alone.signature_strings() if s in example}
        return bool(alone.match_strings(found, "example"))
    if kind == "research":
        names, text = example_names_and_text(example)
        return bool(alone.research.match(names, text))
    if kind == "frameworks":
        return alone.is_framework(example, "", example)
    if kind == "clients":
        return alone.known_client(example if "/" not in example else "", example if "/" in example else "") is not None
    if kind == "ownerless":     # a remote port: matches when a connection to it without an owner is flagged
        return example.strip().isdigit() and int(example) not in alone.kernel_client_ports
    if kind.startswith("family_"):
        return family_example_matches(rule, example, alone)
    return False


def family_example_matches(rule: Rule, example: str, alone: CompiledRules) -> bool:
    """Family rules: a port number; `KEY=value`; a config file's text; `name size` or `folder/name size`."""
    from audit_agent.rules.families import parse_size
    from audit_agent.rules.family_match import config_facts
    if rule.kind == "family_port":
        port = int(example) if example.strip().isdigit() else -1
        return port in alone.families.listen_ports or port in alone.families.connect_ports
    if rule.kind == "family_env":
        key, _, value = example.partition("=")
        return bool(alone.families.match_env({key.strip(): value}))
    if rule.kind == "family_config":
        return any(config_facts(spec, example) is not None for spec in rule.params["specs"])
    if rule.kind == "family_file":
        path, _, size = example.strip().rpartition(" ")
        parent, _, name = path.rpartition("/")
        try:
            return alone.families.match_file(name, parent.rsplit("/", 1)[-1], parse_size(size, "example")) is not None
        except ValueError:
            return False
    return False


def check_examples(pack: RulePack) -> list[str]:
    """Return one line per failing example, 'file:line: RULE: ...'."""
    problems = []
    for rule in pack.rules:
        for example in rule.examples_match:
            if not rule_matches(rule, example):
                problems.append(f"{rule.origin}: {rule.id}: example should match but does not: {example[:100]!r}")
        for example in rule.examples_no_match:
            if rule_matches(rule, example):
                problems.append(f"{rule.origin}: {rule.id}: example should not match but does: {example[:100]!r}")
    return problems


_EMPTY_PACK = RulePack(name="", version="", description="", sha256="", files=[], rules=[])
