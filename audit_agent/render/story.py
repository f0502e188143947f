"""One finding, one story, in the report's language: what was found where, why it matters, what to do.

Everything here is phrased from facts the AuditReport carries (rule ids, evidence fields, matched values,
numbers, the filing or allowlist decision) through the language's templates, never from the engine's
English sentences (`Finding.reasons`, `recommended_action`, `status_reason` stay in the JSON for tools).
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from audit_agent.i18n import load_rule_texts
from audit_agent.model import Evidence, Finding, FindingStatus

# Where evidence was seen, most telling first: a finding is titled by the place that says the most.
WHERE_ORDER = ("binary", "cmdline", "config", "login", "persistence", "connection", "memory", "gpu", "load",
               "name", "argv0", "exe", "environ", "maps", "file", "pid", "host", "port", "mountinfo", "sysfs",
               "meminfo", "sysctl", "cpu")


@dataclass
class Shown:
    """A value shown whole, with the part that matched marked: before + marked + after; or, for a check
    that measured something, its facts phrased in the language as (text, is_data) parts."""
    before: str
    marked: str = ""
    after: str = ""
    phrased: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(part for part, _ in self.phrased) if self.phrased else self.before + self.marked + self.after


@dataclass
class Row:
    where: str
    shown: Shown
    meaning: str
    rule_id: str


@dataclass
class Story:
    title: str
    rows: list[Row]
    action: str
    decision: str = ""
    attack: list[str] = field(default_factory=list)
    references: list[tuple[str, str]] = field(default_factory=list)


def lead_rule(finding: Finding) -> str | None:
    """The rule the finding is named after: the one whose English title is the finding's title.

    The engine lists that rule first in `rule_ids` (evaluate.finding_from), so for a current report
    this is rule_ids[0]. Reports written before that kept the order the signals came in, hence the title
    search. None when no known rule has that title (a site's own pack): the engine's title is shown.
    """
    english = load_rule_texts("en")
    for rule_id in finding.rule_ids:
        entry = english.get(rule_id)
        if entry and (entry.get("title") == finding.title or finding.title in (entry.get("title_variants") or {})):
            return rule_id
    return None


def story(finding: Finding, t: Any, references: dict[str, str] | None = None) -> Story:
    lead = lead_rule(finding)
    rows = [row(e, t) for e in finding.evidence]
    return Story(title=title(finding, lead, t), rows=rows, action=action(finding, lead, t),
                 decision=decision(finding, t), attack=[t.known("attack", a) for a in finding.attack],
                 references=[(r, (references or {}).get(r, "")) for r in finding.rule_ids])


def title(finding: Finding, lead: str | None, t: Any) -> str:
    """What was found, and where it was seen (the places of the lead rule's evidence)."""
    what = t.rule(lead, "title", finding.title)
    fields = [e.field for e in finding.evidence if e.rule_id == (lead or e.rule_id)] or \
             [e.field for e in finding.evidence]
    ordered = sorted(dict.fromkeys(fields), key=lambda f: WHERE_ORDER.index(f) if f in WHERE_ORDER else 99)
    if not ordered:
        return str(what)
    return str(t("story.title", what=what, where=t("story.where_join").join(t.known("field", f) for f in ordered[:2])))


def row(evidence: Evidence, t: Any) -> Row:
    return Row(where=t.known("field", evidence.field), shown=shown(evidence, t),
               meaning=t.rule(evidence.rule_id, "meaning"), rule_id=evidence.rule_id)


def shown(evidence: Evidence, t: Any) -> Shown:
    """A coded check's numbers phrased in the language; otherwise the value seen, whole, the match marked."""
    if evidence.facts:
        phrased = phrase_facts(evidence, t)
        if phrased:
            return Shown("", phrased=phrased)
    value, matched = evidence.value, evidence.matched
    at = value.find(matched) if matched else -1
    if at < 0:
        return Shown(value)
    return Shown(value[:at], matched, value[at + len(matched):])


def phrase_facts(evidence: Evidence, t: Any) -> list[tuple[str, bool]]:
    """The first of the rule's `facts` templates whose placeholders the evidence has, as (text, is_data)
    parts: the template's words in the language, the values as data."""
    templates = load_rule_texts(t.lang).get(evidence.rule_id, {}).get("facts") or []
    values = {"value": evidence.value, "matched": evidence.matched, **evidence.facts}
    for template in [templates] if isinstance(templates, str) else templates:
        parsed = list(string.Formatter().parse(template))
        if {name for _, name, _, _ in parsed if name} <= set(values):
            parts: list[tuple[str, bool]] = []
            for text, name, _, _ in parsed:
                if text:
                    parts.append((text, False))
                if name:
                    parts.append((str(values[name]), True))
            return parts
    return []


def action(finding: Finding, lead: str | None, t: Any) -> str:
    """The action follows the status: only an open finding gets its rule's (or its category's) action."""
    if finding.status == FindingStatus.OPEN:
        if lead is None and finding.recommended_action:
            return finding.recommended_action       # a site's own rule: its own words, as the site wrote them
        return str(t.rule(lead, "action", "") or t.messages.get(f"action.category.{finding.category}")
                   or t("action.category.miner"))
    return str(t(f"action.{finding.status.value}", number=finding.filing))


def decision(finding: Finding, t: Any) -> str:
    """The filing or allowlist decision in the language; several when a workload is over more than one limit."""
    facts = dict(finding.decision)
    more = facts.pop("more", None) or []
    phrased = []
    for item in [facts, *more]:
        item = dict(item)
        code = item.pop("code", "")
        if code:
            phrased.append(t(f"decision.{code}", **item))
    return " ".join(phrased)
