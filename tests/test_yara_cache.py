"""Compiled YARA rules saved in the state folder: reused for the same inputs, never trusted from a file others can write."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from audit_agent.collect import binaries, yara_cache
from audit_agent.rules.yara_files import compile_for_scan, yara_module

yara = yara_module()
pytestmark = pytest.mark.skipif(yara is None, reason="yara-python not installed")
SOURCES = {"yara/t.yar": 'rule Two { strings: $a = "alpha-marker" $b = "beta-marker" condition: 2 of them }'}
STRINGS = ["stratum+tcp://"]
DATA = b"x alpha-marker y beta-marker z stratum+tcp://pool"


def names(rules: Any) -> list[str]:
    return sorted(m.rule for m in rules.match(data=DATA))


def counting_compile(calls: list[int]) -> Any:
    def compile_rules() -> Any:
        calls.append(1)
        return compile_for_scan(SOURCES, STRINGS)
    return compile_rules


def test_a_saved_set_is_loaded_instead_of_compiled(tmp_path: Path) -> None:
    calls: list[int] = []
    first = yara_cache.cached_rules(yara, SOURCES, STRINGS, tmp_path, counting_compile(calls))
    second = yara_cache.cached_rules(yara, SOURCES, STRINGS, tmp_path, counting_compile(calls))
    assert calls == [1], "compiled once, then loaded"
    assert names(first) == names(second) == ["Two", "audit_agent_signature_strings"]
    other = yara_cache.cached_rules(yara, SOURCES, ["other"], tmp_path, lambda: compile_for_scan(SOURCES, ["other"]))
    assert names(other) == ["Two"], "other strings, another key"


@pytest.mark.parametrize("spoil", ["world-writable", "torn"])
def test_a_file_we_cannot_trust_is_compiled_again(tmp_path: Path, spoil: str) -> None:
    yara_cache.cached_rules(yara, SOURCES, STRINGS, tmp_path, counting_compile([]))
    saved, = (tmp_path / yara_cache.FOLDER).glob("*" + yara_cache.SUFFIX)
    if spoil == "world-writable":
        saved.chmod(0o666)
    else:
        saved.write_bytes(saved.read_bytes()[:100])
    calls: list[int] = []
    rules = yara_cache.cached_rules(yara, SOURCES, STRINGS, tmp_path, counting_compile(calls))
    assert calls == [1] and names(rules) == ["Two", "audit_agent_signature_strings"]


def test_the_scanners_use_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_AGENT_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(binaries, "_YARA_CACHE", {})
    compiled = binaries.load_yara_rules(STRINGS, SOURCES)
    assert list((tmp_path / yara_cache.FOLDER).glob("*" + yara_cache.SUFFIX))
    monkeypatch.setattr(binaries, "_YARA_CACHE", {})
    monkeypatch.setattr("audit_agent.rules.yara_files.compile_for_scan", lambda *a: pytest.fail("not loaded"))
    assert names(binaries.load_yara_rules(STRINGS, SOURCES)) == names(compiled)
