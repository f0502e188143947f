"""The executable content scanner: bounded, ELF-aware search, dedupe by file identity, cache, coverage."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from audit_agent.collect import binaries
from audit_agent.model import CoverageStatus, ProcessInfo, Snapshot
from tests.conftest import have_compiler

STRINGS = ["XMRig/%s", "donate.v2.xmrig.com", "mining.subscribe", "cn/r"]
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def yara_available() -> bool:
    try:
        import yara  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(autouse=True, params=["builtin", "yara"])
def engine(request, monkeypatch, tmp_path_factory):
    """Every collector test runs with the built-in scanner and, where yara-python is installed, with YARA
    (given only the pack's strings, so both must find exactly the same). Each with a state folder of its
    own: results another test (or engine) saved must not answer for this one."""
    monkeypatch.setenv("AUDIT_AGENT_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    if request.param == "yara":
        if not yara_available():
            pytest.skip("yara-python is not installed (the `yara` extra)")
    else:
        monkeypatch.setattr(binaries, "load_yara_rules", lambda strings, sources=None: None)
    binaries.clear_cache()
    binaries._YARA_CACHE.clear()
    yield request.param
    binaries.clear_cache()


def scan(path: Path, strings=STRINGS):
    return binaries.scan_file(str(path), strings, [s.encode() for s in strings])


def options(proc_root="/proc", strings=STRINGS):
    return SimpleNamespace(proc_root=proc_root, signature_strings=list(strings))


def test_finds_strings_in_a_plain_file_and_reports_what_it_read(tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(b"\0" * 1000 + b"XMRig/%s libuv" + b"\x01" * 50 + b"mining.subscribe" + b"\0" * 10)
    result = scan(blob)
    assert result.matched == ["XMRig/%s", "mining.subscribe"]      # pack order, not file order
    assert result.scanned == blob.stat().st_size
    assert len(result.sha256) == 64


def test_empty_file_and_missing_strings(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert scan(empty).matched == []
    other = tmp_path / "other"
    other.write_bytes(b"nothing to see here" * 100)
    assert scan(other).matched == []


def test_reading_is_bounded_to_the_head_and_the_tail(tmp_path, monkeypatch):
    """A file padded past the bound still has its end read: strings appended after padding are seen."""
    monkeypatch.setattr(binaries, "MAX_SCAN_BYTES", 4096)
    monkeypatch.setattr(binaries, "TAIL_SCAN_BYTES", 1024)
    big = tmp_path / "big"
    big.write_bytes(b"mining.subscribe" + b"\0" * 8192 + b"XMRig/%s" + b"\0" * 8192 + b"donate.v2.xmrig.com")
    result = scan(big)
    assert result.matched == ["donate.v2.xmrig.com", "mining.subscribe"], "head and tail read, the middle not"
    assert result.scanned <= 4096


def test_malformed_elf_header_is_scanned_whole(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x7fELF\x02\x01" + b"\xff" * 60 + b"XMRig/%s")
    assert binaries.elf_skip_ranges(bad.read_bytes(), len(bad.read_bytes())) == []
    assert scan(bad).matched == ["XMRig/%s"]


@pytest.mark.skipif(not have_compiler(), reason="no C compiler on this machine")
def test_elf_code_sections_are_skipped_but_rodata_is_read(tmp_path):
    source = tmp_path / "prog.c"
    source.write_text('#include <stdio.h>\nint main(void){puts("donate.v2.xmrig.com mining.subscribe");return 0;}\n')
    program = tmp_path / "prog"
    subprocess.run([have_compiler(), "-O1", "-o", str(program), str(source)], check=True)
    data = program.read_bytes()
    skipped = binaries.elf_skip_ranges(data, len(data))
    assert skipped, "the .text section is left out"
    result = scan(program)
    assert result.matched == ["donate.v2.xmrig.com", "mining.subscribe"]
    assert result.scanned < len(data)


@linux
def test_processes_sharing_one_executable_are_scanned_once(tmp_path):
    sleepers = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:
        snapshot = Snapshot(processes=[ProcessInfo(pid=p.pid) for p in sleepers])
        coverage = binaries.collect_binaries(snapshot, options(strings=["no such string in sleep"]))
        assert coverage[0].status == CoverageStatus.OK
        assert len(snapshot.binaries) == 1
        assert snapshot.binaries[0].pids == sorted(p.pid for p in sleepers)
        assert snapshot.binaries[0].path.endswith("sleep")
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()


@linux
def test_cache_means_a_second_cycle_reads_nothing(monkeypatch):
    snapshot = Snapshot(processes=[ProcessInfo(pid=os.getpid())])
    calls = []
    real = binaries.scan_file
    monkeypatch.setattr(binaries, "scan_file", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    binaries.collect_binaries(snapshot, options())
    binaries.collect_binaries(Snapshot(processes=[ProcessInfo(pid=os.getpid())]), options())
    assert len(calls) == 1


def fake_proc(tmp_path: Path, pid: int, target: Path | None) -> Path:
    root = tmp_path / "proc"
    (root / str(pid)).mkdir(parents=True)
    if target is not None:
        (root / str(pid) / "exe").symlink_to(target)
    return root


@linux
def test_fake_tree_denied_vanished_and_kernel_threads(tmp_path, mocker, engine):
    exe = tmp_path / "kworker_helper"
    exe.write_bytes(b"\x00XMRig/%s\x00donate.v2.xmrig.com\x00")
    root = fake_proc(tmp_path, 100, exe)
    fake_proc(tmp_path, 101, None)                   # kernel thread: no exe link
    (root / "102").mkdir()
    (root / "102" / "exe").symlink_to(tmp_path / "denied")
    real_readlink = os.readlink

    def readlink(path, *args, **kwargs):
        if str(path).endswith("102/exe"):
            raise PermissionError(13, "Permission denied")
        return real_readlink(path, *args, **kwargs)

    mocker.patch.object(binaries.os, "readlink", side_effect=readlink)
    snapshot = Snapshot(processes=[ProcessInfo(pid=p) for p in (100, 101, 102, 103)])    # 103 vanished
    coverage = binaries.collect_binaries(snapshot, options(str(root)))[0]
    assert coverage.status == CoverageStatus.PARTIAL
    assert coverage.denied == 1 and "access denied" in coverage.reason
    assert [b.pids for b in snapshot.binaries] == [[100]]
    assert snapshot.binaries[0].matched_strings == ["XMRig/%s", "donate.v2.xmrig.com"]
    assert snapshot.binaries[0].engine == engine


def test_no_signature_strings_means_skipped(monkeypatch):
    monkeypatch.setattr(binaries, "load_yara_rules", lambda strings, sources=None: None)     # no YARA rules either
    coverage = binaries.collect_binaries(Snapshot(), options(strings=[]))
    assert coverage[0].status == CoverageStatus.SKIPPED


@linux
def test_cache_keeps_only_executables_of_the_last_cycle_and_is_capped(tmp_path, monkeypatch):
    """Watch mode on a host running ever-new binaries: the cache must not grow without bound."""
    first, second, third = (tmp_path / name for name in ("a", "b", "c"))
    for index, path in enumerate((first, second, third)):
        path.write_bytes(b"\x00" * (100 + index) + b"mining.subscribe")
    root = fake_proc(tmp_path, 1, first)
    fake_proc(tmp_path, 2, second)
    fake_proc(tmp_path, 3, third)
    binaries.collect_binaries(Snapshot(processes=[ProcessInfo(pid=1)]), options(str(root)))
    assert len(binaries._CACHE) == 1
    binaries.collect_binaries(Snapshot(processes=[ProcessInfo(pid=2)]), options(str(root)))
    assert len(binaries._CACHE) == 1                     # a's result went with a's process
    monkeypatch.setattr(binaries, "MAX_CACHED", 2)
    binaries.collect_binaries(Snapshot(processes=[ProcessInfo(pid=p) for p in (1, 2, 3)]), options(str(root)))
    assert len(binaries._CACHE) == 2


def run_in_a_new_process(snapshot: Snapshot, opts: SimpleNamespace) -> None:
    """collect_binaries as the next scheduled run would: nothing in memory, only what was saved."""
    binaries.clear_cache()
    binaries.collect_binaries(snapshot, opts)


@linux
def test_results_persist_between_runs_and_a_changed_file_is_scanned_again(tmp_path, monkeypatch):
    exe = tmp_path / "worker"
    exe.write_bytes(b"\x00" * 100 + b"mining.subscribe")
    root = fake_proc(tmp_path, 7, exe)
    state = tmp_path / "state"
    opts = SimpleNamespace(proc_root=str(root), signature_strings=list(STRINGS), state_dir=str(state))
    calls = []
    real = binaries.scan_file
    monkeypatch.setattr(binaries, "scan_file", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    first = Snapshot(processes=[ProcessInfo(pid=7)])
    run_in_a_new_process(first, opts)
    assert len(calls) == 1 and (state / "binary-scans.json").stat().st_mode & 0o777 == 0o600
    again = Snapshot(processes=[ProcessInfo(pid=7)])
    run_in_a_new_process(again, opts)
    assert len(calls) == 1                                       # the saved result, not a second read
    assert again.binaries[0].matched_strings == first.binaries[0].matched_strings == ["mining.subscribe"]
    exe.write_bytes(b"\x00" * 100 + b"XMRig/%s")                  # same size and name, new content
    changed = Snapshot(processes=[ProcessInfo(pid=7)])
    run_in_a_new_process(changed, opts)
    assert len(calls) == 2 and changed.binaries[0].matched_strings == ["XMRig/%s"]
    other_pack = SimpleNamespace(proc_root=str(root), signature_strings=["XMRig/%s", "cn/r"], state_dir=str(state))
    run_in_a_new_process(Snapshot(processes=[ProcessInfo(pid=7)]), other_pack)
    assert len(calls) == 3                                       # other signatures: scanned for them


@linux
@pytest.mark.parametrize("tamper", ["world-writable", "malformed", "wrong-version", "symlink"])
def test_a_saved_result_that_cannot_be_trusted_is_ignored(tmp_path, monkeypatch, tamper):
    exe = tmp_path / "worker"
    exe.write_bytes(b"\x00" * 100 + b"mining.subscribe")
    root = fake_proc(tmp_path, 7, exe)
    state = tmp_path / "state"
    opts = SimpleNamespace(proc_root=str(root), signature_strings=list(STRINGS), state_dir=str(state))
    run_in_a_new_process(Snapshot(processes=[ProcessInfo(pid=7)]), opts)
    saved = state / "binary-scans.json"
    # What an attacker wants: the miner's entry saying it is clean.
    data = __import__("json").loads(saved.read_text())
    for entry in data["entries"].values():
        entry["matched"] = []
    if tamper == "world-writable":
        saved.write_text(__import__("json").dumps(data))
        saved.chmod(0o666)
    elif tamper == "malformed":
        saved.write_text('{"version": 1, "entries": {"1:2:3": [')
    elif tamper == "wrong-version":
        saved.write_text(__import__("json").dumps({**data, "version": 99}))
    else:
        elsewhere = tmp_path / "planted.json"
        elsewhere.write_text(__import__("json").dumps(data))
        saved.unlink()
        saved.symlink_to(elsewhere)
    result = Snapshot(processes=[ProcessInfo(pid=7)])
    run_in_a_new_process(result, opts)
    assert result.binaries[0].matched_strings == ["mining.subscribe"]


class FailingRules:
    """yara-python rules whose match() times out."""

    def match(self, **kwargs):
        raise TimeoutError("scan timed out")


@linux
def test_a_failed_yara_scan_is_an_error_not_a_clean_file(tmp_path, monkeypatch):
    exe = tmp_path / "miner"
    exe.write_bytes(b"\x00" * 64 + b"donate.v2.xmrig.com\x00")
    root = fake_proc(tmp_path, 100, exe)
    monkeypatch.setattr(binaries, "load_yara_rules", lambda strings, sources=None: FailingRules())
    snapshot = Snapshot(processes=[ProcessInfo(pid=100)])
    [coverage] = binaries.collect_binaries(snapshot, options(str(root)))
    [result] = snapshot.binaries
    assert "TimeoutError" in result.error and "scan timed out" in result.error
    assert result.matched_strings == ["donate.v2.xmrig.com"]     # the built-in search still ran
    assert coverage.status == CoverageStatus.PARTIAL and "not fully scanned" in coverage.reason
    assert binaries._CACHE == {}                                  # tried again next cycle
