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


# ---- runs of zero pages: matched as `overlap` zeros, with the same matches as the bytes as read

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EDGE = "\0\0\0\0edge"           # needs four zeros before it: found only if the run's end keeps enough of them
TAIL = "tail\0\0\0\0\0\0"


class Counting(memscan.WindowMatcher):
    """Counts the bytes each window hands to matching (only the part not matched before)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.fed: list[bytes] = []

    def feed(self, buffer: bytearray, size: int) -> None:
        self.fed.append(bytes(buffer[:size]))
        super().feed(buffer, size)


def squeezed_scan(base: str, spans: list[tuple[int, int]], strings: list[str], yara_rules: object = None
                  ) -> tuple[int, list[str], Counting]:
    matcher = Counting(strings, [s.encode() for s in strings], yara_rules)
    read, cut = memscan.read_memory(base, spans, 1 << 30, time.monotonic(), matcher)
    assert cut == ""
    return read, matcher.result(), matcher


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memscan, "WINDOW", 256)
    monkeypatch.setattr(memscan, "OVERLAP", 16)
    monkeypatch.setattr(memscan, "PAGE", 32)
    monkeypatch.setattr(memscan, "ZERO_PAGE", bytes(32))
    monkeypatch.setattr(memscan, "PROCESS_SECONDS", 60.0)


PIECES = st.lists(st.one_of(st.integers(0, 300).map(lambda n: b"\0" * n),
                            st.sampled_from([NEEDLE.encode(), EDGE.encode(), TAIL.encode(), b"xmrig", b"ab\0cd"]),
                            st.binary(max_size=40)), max_size=14)


@pytest.mark.usefixtures("small_pages")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=PIECES, cut=st.integers(0, 400))
def test_squeezed_zero_runs_find_what_the_bytes_as_read_hold(tmp_path: Path, pieces: list[bytes], cut: int) -> None:
    content = b"".join(pieces)
    strings = [NEEDLE, EDGE, TAIL, "xmrig", OTHER]
    spans = [(0, min(cut, len(content))), (min(cut, len(content)), len(content))]
    whole = b"".join(content[start:end] + b"\0" for start, end in spans)
    read, found, _ = squeezed_scan(fake_process(tmp_path, content), spans, strings)
    assert found == scan_ranges(whole, [(0, len(whole))], strings, [s.encode() for s in strings])
    assert read == len(whole)


@pytest.mark.usefixtures("small_pages")
def test_untouched_memory_is_not_matched_byte_for_byte(tmp_path: Path) -> None:
    content = b"\0" * 20000 + EDGE.encode() + b"\0" * 20000 + NEEDLE.encode() + b"\0" * 5000
    read, found, matcher = squeezed_scan(fake_process(tmp_path, content), [(0, len(content))], [NEEDLE, EDGE])
    assert found == [NEEDLE, EDGE] and read == len(content) + 1
    fed = sum(len(window) for window in matcher.fed)
    assert fed < 400, "three runs of zeros kept as 16 zeros each, plus the strings and the windows' overlaps"


@pytest.mark.usefixtures("small_pages")
@pytest.mark.skipif(yara_module() is None, reason="yara-python not installed")
def test_a_yara_pattern_of_zeros_and_text_still_matches_at_a_runs_end(tmp_path: Path) -> None:
    rule = "rule Zeros_Then_Magic { strings: $z = { 00 00 00 00 00 00 00 00 4D 41 47 } condition: $z }"
    rules = load_yara_rules([OTHER], {"yara/test.yar": rule})
    content = b"x" * 100 + b"\0" * 5000 + b"MAG" + b"y" * 50
    _, found, _ = squeezed_scan(fake_process(tmp_path, content), [(0, len(content))], [OTHER], rules)
    assert found == ["yara:Zeros_Then_Magic"]
    content = b"x" * 100 + b"\0" * 5000 + b"MAX" + b"y" * 50
    _, found, _ = squeezed_scan(fake_process(tmp_path, content), [(0, len(content))], [OTHER], rules)
    assert found == []


@pytest.mark.usefixtures("small_pages")
@pytest.mark.parametrize("run", [32 * 5, 32 * 40])
def test_a_string_that_begins_with_zeros_is_found_right_after_a_run_of_zero_pages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: int) -> None:
    monkeypatch.setattr(memscan, "WINDOW", 1 << 16)         # one read: blocks counted from the content's start
    content = b"x" * 32 + b"\0" * run + b"edge" + b"y" * 20  # EDGE's four zeros are the run's last four
    _, found, _ = squeezed_scan(fake_process(tmp_path, content), [(0, len(content))], [EDGE, TAIL])
    assert found == [EDGE]
    content = b"x" * 32 + b"tail" + b"\0" * (28 + run) + b"y" * 20     # TAIL's six zeros begin the run
    _, found, _ = squeezed_scan(fake_process(tmp_path, content), [(0, len(content))], [EDGE, TAIL])
    assert found == [TAIL]
