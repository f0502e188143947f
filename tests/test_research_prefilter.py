"""The research matcher looks for each pattern's literals before its regex (rules/research.py): the hits must be
those of running every regex, on every example of the pack, on those examples changed, and on made-up text."""
from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_agent.rules.research import ResearchHit, ResearchMatcher, example_names_and_text


def every_regex(matcher: ResearchMatcher, names: tuple[str, ...], text: str) -> list[ResearchHit]:
    """The matcher's rule, each regex run: no literal looked for first."""
    bases = {matcher._basename(n) for n in names if n}
    hits = []
    for item in matcher.rules:
        program = next(iter(sorted(bases & item.programs)), "")
        if item.programs and not program:
            continue
        found = next((m.group(0) for m in (p.regex.search(text) for p in item.patterns) if m), None)
        if item.patterns and found is None:
            continue
        if not all(p.regex.search(text) for p in item.requires) or any(p.regex.search(text) for p in item.unless):
            continue
        hits.append(ResearchHit(item.rule, (found or program).strip(), text))
    return hits


def research_texts(compiled_rules) -> list[tuple[tuple[str, ...], str]]:
    texts = []
    for rule in compiled_rules.pack.by_kind("research"):
        for example in rule.examples_match + rule.examples_no_match:
            names, text = example_names_and_text(example)
            texts += [(names, text), (names, text.upper()), (names, text.replace("-", "--")),
                      (names, text + " é"), (names, re.sub(r"\s+", "  ", text))]
    return texts


def test_the_literals_first_give_the_hits_of_every_regex_on_the_packs_examples(compiled_rules):
    matcher = compiled_rules.research
    texts = research_texts(compiled_rules)
    assert len(texts) > 100
    matched = 0
    for names, text in texts:
        expected = every_regex(matcher, names, text)
        assert matcher._match(names, text) == expected, text
        matched += bool(expected)
    assert matched > 20         # the examples do match: the comparison is not between two empty lists
    assert any(p.literals for item in matcher.rules for p in item.patterns)    # and literals are looked for


words = st.sampled_from(["--testnet", "-regtest", "generatetoaddress", "bitcoin-cli", "-generate", "lotus", "daemon",
                         "--network", "calibnet", "chia", "testnet10", "plots", "geth", "--dev", "anvil", "hardhat",
                         "node", "miner", "python", "train.py", "ÄÖ", "ſ", "K", "=", "/opt/x", " "])


@given(st.lists(words, max_size=10), st.sampled_from(["bitcoind", "lotus", "chia", "geth", "python3", ""]))
@settings(max_examples=300, deadline=None)
def test_the_literals_first_give_the_hits_of_every_regex_on_any_text(compiled_rules, parts, program):
    matcher = compiled_rules.research
    text = " ".join([program, *parts]).strip()
    assert matcher._match((program,), text) == every_regex(matcher, (program,), text)
