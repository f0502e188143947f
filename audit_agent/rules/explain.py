"""`audit-agent rules list` and `rules show ID`: every rule id the engine can emit, explained.

The ids are those of the rule pack (data) and of the coded checks (audit_agent/detect/checks.yaml);
titles, meanings and actions come from reports/i18n/rules.<lang>.yaml, so both languages explain the
same rules. Each rule shows the source it rests on and the ATT&CK technique every finding maps to.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from audit_agent.detect import coded_checks
from audit_agent.i18n import translator
from audit_agent.redact import cap
from audit_agent.rules.loader import RulePack

ATTACK = "T1496"


@dataclass
class Explained:
    rule_id: str
    family: str             # the id namespace: AA-CMD, AA-STEALTH, ...
    kind: str               # a pack rule's match kind, or "coded" for a check in code
    category: str
    severity: str
    title: str
    meaning: str = ""
    action: str = ""
    reference: str = ""
    examples: list[str] = field(default_factory=list)
    counter_examples: list[str] = field(default_factory=list)


def family(rule_id: str) -> str:
    return rule_id.rsplit("-", 1)[0]


def explain_all(pack: RulePack, lang: str = "en") -> list[Explained]:
    t = translator(lang)
    found = [Explained(rule.id, family(rule.id), rule.kind, rule.category, rule.severity.value,
                       t.rule(rule.id, "title", rule.title), t.rule(rule.id, "meaning"),
                       t.rule(rule.id, "action", rule.action), rule.reference,
                       list(rule.examples_match), list(rule.examples_no_match)) for rule in pack.rules]
    known = {item.rule_id for item in found}
    for rule_id, entry in coded_checks().items():
        if rule_id not in known:
            found.append(Explained(rule_id, family(rule_id), "coded", entry.get("category", ""), "",
                                   t.rule(rule_id, "title", rule_id), t.rule(rule_id, "meaning"),
                                   t.rule(rule_id, "action"), entry.get("reference", "")))
    return sorted(found, key=lambda item: (item.family, item.rule_id))


def list_lines(pack: RulePack, lang: str = "en") -> list[str]:
    t = translator(lang)
    lines = [f"{pack.name} {pack.version} sha256:{pack.sha256[:16]}"]
    for item in explain_all(pack, lang):
        lines.append(f"{item.rule_id:<16} {item.severity or '-':<8} {item.kind:<11} "
                     f"{t.known('category', item.category):<12} {cap(item.title, 120)}")
    return lines


def show_lines(pack: RulePack, rule_id: str, lang: str = "en") -> list[str] | None:
    t = translator(lang)
    item = next((i for i in explain_all(pack, lang) if i.rule_id.lower() == rule_id.lower()), None)
    if item is None:
        return None
    lines = [f"{item.rule_id}: {item.title}",
             f"  {t('explain.family')}: {item.family}    {t('explain.kind')}: {item.kind}    "
             f"{t('findings.category')}: {t.known('category', item.category)}"
             + (f"    {t('severity.label')}: {t.enum('severity', item.severity)}" if item.severity else ""),
             f"  {t('explain.meaning')}: {item.meaning}",
             f"  {t('findings.action')}: {item.action}",
             f"  {t('references.source')}: {item.reference or t('format.none')}",
             f"  {t('findings.attack')}: {t.known('attack', ATTACK)}"]
    for label, examples in ((t("explain.matches"), item.examples), (t("explain.does_not_match"),
                                                                    item.counter_examples)):
        if examples:
            lines.append(f"  {label}:")
            lines += [f"    {cap(example, 200)}" for example in examples[:5]]
    return lines
