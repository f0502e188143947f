"""Judging what a persistence entry starts: content, configs, packing, who may replace it, ownership, age, names;
and research workloads that must stay quiet."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from audit_agent.collect import persistence as collector
from audit_agent.detect.persistence_judge import random_name
from audit_agent.evaluate import evaluate
from audit_agent.model import (
    MinerConfig,
    PersistenceBaseline,
    PersistenceEntry,
    Severity,
    Snapshot,
    StartedProgram,
)
from tests.factories import write_file as write

OLD = time.time() - 400 * 86400         # the host's packages were last changed more than a year ago
NOW = time.time()
BASELINE = PersistenceBaseline(package_db_mtime=OLD, install_time=OLD - 86400)


def entry(text: str, *, kind: str = "systemd", user: str = "root", trigger: str = "timer", owner_uid: int = 0,
          ctime: float = OLD, programs: list[StartedProgram] | None = None,
          path: str = "/etc/systemd/system/x.service") -> PersistenceEntry:
    return PersistenceEntry(path=path, kind=kind, line=2, text=text, user=user, trigger=trigger,
                            owner="root" if owner_uid == 0 else f"u{owner_uid}", owner_uid=owner_uid, mtime=ctime,
                            ctime=ctime, programs=programs or [])


def program(path: str, **facts) -> StartedProgram:
    values = {"exists": True, "uid": 0, "mode": 0o100755, "mtime": OLD, "ctime": OLD}
    values.update(facts)
    return StartedProgram(path=path, **values)


def findings(entries, rules):
    return evaluate(Snapshot(persistence=entries, persistence_baseline=BASELINE), rules).findings


def test_a_system_timer_starting_a_new_user_writable_program_is_a_signal_on_its_own(compiled_rules):
    started = program("/srv/shared/tools/sync", uid=1000, ctime=NOW, writable_by="alice")
    [finding] = findings([entry("ExecStart=/srv/shared/tools/sync", programs=[started])], compiled_rules)
    assert "AA-PERSIST-008" in finding.rule_ids and finding.severity == Severity.HIGH
    assert any("alice can replace that file" in reason for reason in finding.reasons)


def test_an_old_root_owned_program_started_by_a_timer_is_quiet(compiled_rules):
    started = program("/usr/local/sbin/backup")
    assert findings([entry("ExecStart=/usr/local/sbin/backup", programs=[started])], compiled_rules) == []


def test_a_user_owned_file_whose_lines_run_as_root_is_high(compiled_rules):
    line = entry("ExecStart=/usr/local/bin/agent", owner_uid=1001, trigger="boot")
    [finding] = findings([line], compiled_rules)
    assert finding.rule_ids[0] == "AA-PERSIST-009" and finding.severity == Severity.HIGH


def test_a_user_crontab_owned_by_its_user_is_normal(compiled_rules):
    line = entry("@reboot /home/alice/bin/backup.sh", kind="cron", user="alice", trigger="schedule",
                 owner_uid=1000, path="/var/spool/cron/crontabs/alice")
    assert findings([line], compiled_rules) == []


def test_recent_and_random_alone_are_context_not_findings(compiled_rules):
    started = program("/usr/local/bin/x7Gk2pQ9")
    line = entry("ExecStart=/usr/local/bin/x7Gk2pQ9", programs=[started])
    assert findings([line], compiled_rules) == []           # random, but as old as the packages
    started = program("/usr/local/bin/backupd", ctime=NOW)
    assert findings([entry("ExecStart=/usr/local/bin/backupd", ctime=NOW, programs=[started])], compiled_rules) == []


def test_a_new_random_named_root_timer_is_a_finding(compiled_rules):
    """The issue's random-named system timer and service in /etc/systemd/system: nothing on the line itself."""
    started = program("/usr/local/bin/x7Gk2pQ9", ctime=NOW)
    line = entry("ExecStart=/usr/local/bin/x7Gk2pQ9", ctime=NOW, programs=[started],
                 path="/etc/systemd/system/x7Gk2pQ9.service")
    [finding] = findings([line], compiled_rules)
    assert finding.severity == Severity.MEDIUM and "AA-PERSIST-011" in finding.rule_ids
    user_login = entry("ExecStart=/usr/local/bin/x7Gk2pQ9", ctime=NOW, programs=[started], trigger="login",
                       user="alice")
    assert findings([user_login], compiled_rules) == []
    hidden = program("/opt/.cache/x7Gk2pQ9", ctime=NOW, hidden_dir=".cache")
    [finding] = findings([entry("ExecStart=/opt/.cache/x7Gk2pQ9", ctime=NOW, programs=[hidden])], compiled_rules)
    assert {"AA-PERSIST-010", "AA-PERSIST-011", "AA-PERSIST-003"} <= set(finding.rule_ids)


@pytest.mark.parametrize("name, expected", [
    ("x7Gk2pQ9", True), ("a3f9c2e1d0b4", True), ("qwzxkvbnm", True),
    ("kworker", False), ("python3.11", False), ("sshd", False), ("node_exporter", False), ("jupyter", False),
    ("systemd-journald", False), ("nvidia-smi", False), ("backup2024", False), ("rsync", False),
])
def test_random_names(name: str, expected: bool):
    assert random_name(name) is expected


def test_a_packed_program_is_medium(compiled_rules):
    started = program("/usr/local/bin/helper", packer="upx")
    [finding] = findings([entry("ExecStart=/usr/local/bin/helper", programs=[started])], compiled_rules)
    assert "AA-PERSIST-007" in finding.rule_ids and finding.severity == Severity.MEDIUM


def test_miner_strings_in_a_program_that_is_not_running_condemn_the_entry(compiled_rules):
    rule = next(r for r in compiled_rules.string_rules if r.id == "AA-BIN-001")
    strings = [str(s) for s in rule.params["strings"][:3]]
    started = program("/usr/lib/x86_64-linux-gnu/dbus-sync", matched_strings=strings, sha256="ab" * 32)
    [finding] = findings([entry("ExecStart=/usr/lib/x86_64-linux-gnu/dbus-sync", programs=[started])],
                         compiled_rules)
    assert "AA-BIN-001" in finding.rule_ids and finding.severity == Severity.CRITICAL
    assert finding.subject.exe == "/usr/lib/x86_64-linux-gnu/dbus-sync"
    assert any("starts" in reason for reason in finding.reasons)


def test_a_miner_config_next_to_the_program(compiled_rules):
    config = MinerConfig(path="/opt/app/config.json", urls=["stratum+tcp://10.1.2.3:3333"],
                         users=["4" + "A" * 94], keys=["pools", "donate-level", "randomx"])
    started = program("/opt/app/app", configs=[config])
    [finding] = findings([entry("ExecStart=/opt/app/app", programs=[started])], compiled_rules)
    assert "AA-CONFIG-001" in finding.rule_ids and finding.severity.rank >= Severity.HIGH.rank


def test_research_entries_stay_quiet(compiled_rules):
    entries = [
        entry("ExecStart=/home/dave/.local/bin/jupyter lab --no-browser", user="dave", trigger="login",
              owner_uid=1000, path="/home/dave/.config/systemd/user/jupyter.service",
              programs=[program("/home/dave/.local/bin/jupyter", uid=1000, writable_by="dave", ctime=NOW)]),
        entry("0 1 * * * cd /home/dave/proj && /opt/conda/envs/ml/bin/python train.py", kind="cron", user="dave",
              trigger="schedule", owner_uid=1000, path="/var/spool/cron/crontabs/dave",
              programs=[program("/opt/conda/envs/ml/bin/python", uid=1000, writable_by="dave", ctime=NOW)]),
        entry("ExecStart=/usr/bin/slurmd -D", trigger="boot", programs=[program("/usr/bin/slurmd")]),
    ]
    assert findings(entries, compiled_rules) == []


# ---------------------------------------------------------------- the collector feeds these facts

def test_the_collector_scans_a_program_that_is_not_running(tmp_path: Path, compiled_rules):
    root = tmp_path / "root"
    rule = next(r for r in compiled_rules.string_rules if r.id == "AA-BIN-001")
    body = "\0".join(str(s) for s in rule.params["strings"][:3])
    write(root / "usr/lib/x86_64-linux-gnu/dbus-sync", "\x7fELF\0" + body, 0o755)
    write(root / "usr/lib/x86_64-linux-gnu/config.json", json.dumps(
        {"pools": [{"url": "stratum+tcp://10.1.2.3:3333", "user": "4" + "A" * 94}], "donate-level": 1}))
    write(root / "etc/systemd/system/dbus-sync.timer", "[Timer]\nOnBootSec=1min\n")
    write(root / "etc/systemd/system/dbus-sync.service", "[Service]\nExecStart=/usr/lib/x86_64-linux-gnu/dbus-sync\n")
    out = collector.read_persistence(root / "etc", scan_strings=compiled_rules.signature_strings())
    [line] = [e for e in out.entries if e.path.endswith("dbus-sync.service")]
    [started] = line.programs
    assert line.trigger == "timer"
    assert set(started.matched_strings) >= {str(s) for s in rule.params["strings"][:3]}
    assert [c.path for c in started.configs] == ["/usr/lib/x86_64-linux-gnu/config.json"]
    findings_found = evaluate(Snapshot(persistence=out.entries), compiled_rules).findings
    assert any("AA-BIN-001" in f.rule_ids for f in findings_found)
