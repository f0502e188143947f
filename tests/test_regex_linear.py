"""No regex the agent runs on attacker text takes super-linear time (issue 13 item 3).

Hypothesis builds texts from each pattern's own words and punctuation (a prefix,
a repeated piece, a suffix) at two sizes 8× apart; the time may grow about 8×,
not 64× (quadratic). Timings are best-of-5 and the least of 3 tries, so a busy
machine (which only adds time) cannot fail it; the bound (3× linear) is generous.
No timing is asserted in absolute terms.
"""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.regex_inventory import all_regexes, code_regexes, growth_ratio, tokens

SMALL = 2000
FACTOR = 8
BOUND = FACTOR * 3          # linear: ~8; quadratic: ~64
FLOOR = 0.002               # seconds at the big size under which there is nothing to worry about

REGEXES = all_regexes()
# The code's own regexes run here on every change. The rule pack's ~150 patterns take far longer at these
# sizes; bench/regex_linear.py runs the same check over them and prints the offenders.
CODE_REGEXES = list(code_regexes())


def pieces(pattern: re.Pattern[str]) -> st.SearchStrategy[str]:
    parts = tokens(pattern.pattern)
    return st.lists(st.sampled_from(parts), min_size=1, max_size=4).map("".join)


@pytest.mark.parametrize("where,pattern", CODE_REGEXES, ids=[w for w, _ in CODE_REGEXES])
def test_regex_time_grows_linearly(where, pattern):
    @settings(max_examples=4, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(prefix=st.one_of(st.just(""), pieces(pattern)), seed=pieces(pattern),
           suffix=st.one_of(st.just(""), pieces(pattern)))
    def check(prefix: str, seed: str, suffix: str) -> None:
        ratio, small, big = growth_ratio(pattern, prefix, seed, suffix, SMALL, FACTOR)
        if big < FLOOR:
            return
        assert ratio < BOUND, (f"{where}: {big * 1000:.1f} ms at {SMALL * FACTOR} chars vs {small * 1000:.2f} ms at "
                               f"{SMALL} (x{ratio:.0f}) for prefix={prefix!r} seed={seed!r} suffix={suffix!r}")
    check()


KNOWN_QUADRATIC_SHAPES = [
    ("audit_agent.redact.SECRET_ASSIGN", "", "a", ""),                  # one long word, no '='
    ("audit_agent.redact.SECRET_ASSIGN", "", "password", ""),
    ("audit_agent.collect.persistence.shell.FETCH_SAVE", "", "wget ", ""),
    ("audit_agent.redact.URL_CREDENTIALS", "", "a.", ""),
    ("audit_agent.detect.research.ENDPOINT", "", "Za", ""),                 # one long word, no colon
    ("audit_agent.detect.research.ENDPOINT", "", "a:", ""),
    ("AA-SIA-CMD.patterns[1]", "9 ", "siad -", ""),                      # `siad\s.*-M`: every start scans on
]


@pytest.mark.parametrize("where,prefix,seed,suffix", KNOWN_QUADRATIC_SHAPES)
def test_shapes_that_were_quadratic_stay_linear(where, prefix, seed, suffix):
    """The crafted texts that made scans take minutes (issue 13): pinned, so a rewrite cannot bring them back."""
    pattern = dict(REGEXES).get(where)
    if pattern is None:
        pytest.skip(f"{where} is no longer a module-level regex")
    ratio, small, big = growth_ratio(pattern, prefix, seed, suffix, SMALL, FACTOR)
    assert big < FLOOR or ratio < BOUND, f"{where}: x{ratio:.0f} ({small * 1000:.2f} ms -> {big * 1000:.1f} ms)"


LOOKAROUND = ("(?=", "(?!", "(?<=", "(?<!")


def test_pack_patterns_run_on_the_linear_engine_unless_they_need_lookaround():
    """Every pack regex RE2 can express runs on RE2 (linear by construction); only lookaround patterns stay
    on `re`, and bench/regex_linear.py measures those. A silent fallback (a flag RE2 was not given, a
    missing google-re2) would show here."""
    from audit_agent.linear_regex import engine_of
    from tests.regex_inventory import pack_regexes
    on_re = [where for where, pattern in pack_regexes()
             if engine_of(pattern) == "re" and not any(mark in pattern.pattern for mark in LOOKAROUND)]
    assert on_re == []


def test_the_linear_engine_matches_like_re_on_the_rule_examples():
    """RE2 and `re` differ at the edges (Unicode classes, `$` before a final newline): every pack example
    still matches or not as its rule says (rules validate runs them through the compiled pack)."""
    from audit_agent.rules.examples import check_examples
    from audit_agent.rules.loader import load_pack
    assert check_examples(load_pack()) == []
