"""Matchers for `research` rules: mining-related research systems recognised from software and mode.

A rule names the programs it is about (optional: a renamed benchmark is still caught by a
program-specific option), the modes that make it research (`patterns`, any one), what must be
there too (`requires`, all) and what vetoes it (`unless`). The text is the joined command line
followed by the audit-relevant environment as KEY=VALUE (LOTUS_SKIP_GENESIS_CHECK=_yes_).

`provides` and `needs` tie two processes together: a regtest node only produces blocks when
something asks it to (bitcoin-cli generatetoaddress), so a node rule that `needs: bitcoin-blocks`
counts only where a rule that `provides: bitcoin-blocks` matched on the same host.
"""
from __future__ import annotations

import re
import shlex
from typing import Any

from msgspec import Struct

from audit_agent.rules.loader import Rule

ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class ResearchHit(Struct, frozen=True):
    rule: Rule
    matched: str        # the pattern text that matched, or the program name
    value: str          # the text looked at


class _Pattern(Struct, frozen=True):
    regex: re.Pattern[str]
    literals: frozenset[str] | None     # lower-case; any text it matches holds one (None: not known)

    def search(self, text: str, low: str | None) -> re.Match[str] | None:
        """The regex's match; None at once when `low` (the ASCII text, lower-cased) holds none of the literals."""
        if low is not None and self.literals is not None and not any(literal in low for literal in self.literals):
            return None
        return self.regex.search(text)


class _Compiled(Struct):
    rule: Rule
    programs: frozenset[str]
    patterns: list[_Pattern]
    requires: list[_Pattern]
    unless: list[_Pattern]


def _regexes(values: list[Any]) -> list[_Pattern]:
    from audit_agent.rules.compiler import LazyRegex, required_literals
    patterns = []
    for value in values or []:
        literals = required_literals(str(value))
        # compiled when first reached, pickled as source
        patterns.append(_Pattern(LazyRegex(str(value), re.IGNORECASE),  # type: ignore[arg-type]
                                 frozenset(literals) if literals is not None else None))
    return patterns


class ResearchMatcher:
    def __init__(self, rules: list[Rule]) -> None:
        from audit_agent.rules.compiler import basename
        self._basename = basename
        self.rules = [_Compiled(rule, frozenset(basename(str(p)) for p in rule.params.get("programs", [])),
                                _regexes(rule.params.get("patterns", [])), _regexes(rule.params.get("requires", [])),
                                _regexes(rule.params.get("unless", []))) for rule in rules]
        self._memo: dict[tuple[tuple[str, ...], str], tuple[ResearchHit, ...]] = {}

    def match(self, names: tuple[str, ...], text: str) -> list[ResearchHit]:
        """Hits for a process known by `names` (name, exe, argv0) whose command line + environment is `text`;
        identical processes (workers of one job) are matched once."""
        from audit_agent.rules.compiler import MEMO_ENTRIES
        key = (names, text)
        known = self._memo.get(key)
        if known is None:
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()
            known = self._memo[key] = tuple(self._match(names, text))
        return list(known)

    def _match(self, names: tuple[str, ...], text: str) -> list[ResearchHit]:
        bases = {self._basename(n) for n in names if n}
        # Each pattern's literals are looked for first (as the pack's _PatternSet does): a text without any
        # cannot match, and most research rules' patterns are not in most command lines. Non-ASCII text,
        # where Unicode case folding could defeat a lower-case check, goes to every regex.
        low = text.lower() if text.isascii() else None
        hits = []
        for item in self.rules:
            program = next(iter(sorted(bases & item.programs)), "")
            if item.programs and not program:
                continue
            found = next((m.group(0) for m in (p.search(text, low) for p in item.patterns) if m), None)
            if item.patterns and found is None:
                continue
            if not all(p.search(text, low) for p in item.requires) or any(p.search(text, low) for p in item.unless):
                continue
            hits.append(ResearchHit(item.rule, (found or program).strip(), text))
        return hits


def example_names_and_text(example: str) -> tuple[tuple[str, ...], str]:
    """An example command line as the matcher sees a process: leading KEY=VALUE words are its environment."""
    try:
        words = shlex.split(example)
    except ValueError:
        words = example.split()
    lead = 0
    while lead < len(words) and ENV_ASSIGNMENT.match(words[lead]):
        lead += 1
    argv, env = words[lead:] or [""], words[:lead]
    return (argv[0],), " ".join([" ".join(argv), *env]).strip()
