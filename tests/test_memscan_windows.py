"""The memory scan matches in bounded windows: what it finds and counts is what one whole buffer would give."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from audit_agent.collect import memscan
from audit_agent.collect.binaries import load_yara_rules, scan_ranges
from audit_agent.rules.yara_files import yara_module

WINDOW = 64         # tiny windows, so a few hundred bytes of "memory" cross several edges
NEEDLE = "stratum+ssl://pool.example:443"
OTHER = "never-present-anywhere"


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memscan, "WINDOW", WINDOW)
    monkeypatch.setattr(memscan, "OVERLAP", 8)      # less than NEEDLE: the matcher must widen it itself
    monkeypatch.setattr(memscan, "PROCESS_SECONDS", 60.0)


def fake_process(tmp_path: Path, content: bytes) -> str:
    """A folder whose `mem` is a plain file: read_memory preads it like /proc/PID/mem."""
    (tmp_path / "mem").write_bytes(content)
    return str(tmp_path)


def scan(base: str, spans: list[tuple[int, int]], strings: list[str], yara_rules: object = None,
         limit: int = 1 << 20) -> tuple[int, str, list[str]]:
    matcher = memscan.WindowMatcher(strings, [s.encode() for s in strings], yara_rules)
    read, cut = memscan.read_memory(base, spans, limit, time.monotonic(), matcher)
    return read, cut, matcher.result()


@pytest.mark.usefixtures("small_windows")
@pytest.mark.parametrize("offset", range(WINDOW - len(NEEDLE) - 2, WINDOW + 3))
def test_a_string_across_a_window_edge_is_found(tmp_path: Path, offset: int) -> None:
    content = bytearray(b"." * 300)
    content[offset:offset + len(NEEDLE)] = NEEDLE.encode()
    read, cut, found = scan(fake_process(tmp_path, bytes(content)), [(0, 300)], [NEEDLE, OTHER])
    assert found == [NEEDLE]
    assert (read, cut) == (301, ""), "bytes read count the NUL after each span, as before"


@pytest.mark.usefixtures("small_windows")
def test_windows_find_what_one_buffer_finds(tmp_path: Path) -> None:
    strings = [NEEDLE, "xmrig", "donate-level", OTHER]
    content = b"a" * 50 + b"xmr" + b"ig" + b"b" * 70 + NEEDLE.encode() + b"c" * 100 + b"--donate-level=1" + b"d" * 40
    spans = [(0, 120), (120, len(content))]
    whole = b"".join(content[start:end] + b"\0" for start, end in spans)
    read, cut, found = scan(fake_process(tmp_path, content), spans, strings)
    encoded = [s.encode() for s in strings]
    assert found == scan_ranges(whole, [(0, len(whole))], strings, encoded) == strings[:3]
    assert read == len(whole) and cut == ""


@pytest.mark.usefixtures("small_windows")
def test_the_byte_bound_counts_as_before(tmp_path: Path) -> None:
    base = fake_process(tmp_path, b"x" * 1000)
    read, cut, _ = scan(base, [(0, 1000)], [OTHER], limit=200)
    assert read == 200 and cut.startswith("byte bound")


@pytest.mark.usefixtures("small_windows")
@pytest.mark.skipif(yara_module() is None, reason="yara-python not installed")
def test_a_yara_rule_split_across_windows_still_matches(tmp_path: Path) -> None:
    """`2 of them` with one string in the first window and the other far later: matched as over one buffer."""
    rule = 'rule Two_Far_Apart { strings: $a = "first-marker-aa" $b = "second-marker-bb" condition: 2 of them }'
    rules = load_yara_rules([NEEDLE, OTHER], {"yara/test.yar": rule})
    content = b"first-marker-aa" + b"." * 400 + b"second-marker-bb" + b"." * 20
    content = content[:WINDOW - 5] + NEEDLE.encode() + content[WINDOW - 5:]     # across the first edge
    _, _, found = scan(fake_process(tmp_path, content), [(0, len(content))], [NEEDLE, OTHER], rules)
    assert found == [NEEDLE, "yara:Two_Far_Apart"]
    lone = b"first-marker-aa" + b"." * 400
    _, _, found = scan(fake_process(tmp_path, lone), [(0, len(lone))], [NEEDLE, OTHER], rules)
    assert found == []
