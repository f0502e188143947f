"""The shipped YARA rules compile and add their own matches next to the pack's signature strings."""
from __future__ import annotations

from audit_agent.collect import binaries
from audit_agent.pipeline import load_rules


def test_shipped_yara_rules_add_their_own_matches():
    binaries._YARA_CACHE.clear()
    strings = load_rules().signature_strings()
    rules = binaries.load_yara_rules(strings)
    assert rules is not None, "yara-python is a dependency and the shipped rules/yara/*.yar must compile"
    blob = b"\x7fELF" + b"\x00" * 64 + b"\x00".join(s.encode() for s in strings[:12])
    found = binaries.yara_matches(rules, {"data": blob}, strings)
    assert set(strings[:12]) <= set(found)
    assert any(item.startswith("yara:") for item in found)
    clean = binaries.yara_matches(rules, {"data": b"\x7fELF" + b"\x00" * 4096 + b"GNU C Library"}, strings)
    assert clean == []
