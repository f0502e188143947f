"""Miner config files: parsing xmrig/nanominer/xmr-stak styles, finding them through /proc/PID/cwd, bounds."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import msgspec
import pytest

from audit_agent.collect import configs
from audit_agent.model import CoverageStatus, ProcessInfo, Snapshot
from tests.conftest import MONERO_WALLET, have_compiler

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc-style trees")

XMRIG = {"autosave": True, "donate-level": 1, "cpu": {"enabled": True}, "randomx": {"1gb-pages": True},
         "pools": [{"algo": "rx/0", "coin": "monero", "url": "stratum+ssl://pool.supportxmr.com:443",
                    "user": MONERO_WALLET, "pass": "hunter2", "tls": True}]}


def test_xmrig_json_keeps_pool_wallet_keys_and_never_the_password():
    config = configs.parse_config(json.dumps(XMRIG), "/home/u/config.json")
    assert config.urls == ["stratum+ssl://pool.supportxmr.com:443"]
    assert config.users == [MONERO_WALLET]
    assert {"pools", "donate-level", "randomx", "cpu"} <= set(config.keys)
    assert "rx/0" in config.algorithms
    assert "hunter2" not in repr(config)


def test_nanominer_ini_section_is_the_algorithm():
    text = f"; nanominer\n[RandomX]\nwallet = {MONERO_WALLET}\npool1 = xmr-eu1.nanopool.org:14433\npassword = hunter2\n"
    config = configs.parse_config(text, "config.ini")
    assert config.urls == ["xmr-eu1.nanopool.org:14433"]
    assert config.users == [MONERO_WALLET]
    assert config.algorithms == ["RandomX"]
    assert "hunter2" not in repr(config)


def test_json_with_comments_and_pools_txt_fragments_fall_back_to_raw_text():
    commented = '{\n  // xmrig allows comments\n  "donate-level": 1,\n  "pools": [{"url": "stratum+tcp://1.2.3.4:3333", "user": "abc123wallet", "pass": "x"}]\n}'
    config = configs.parse_config(commented, "c.json")
    assert "stratum+tcp://1.2.3.4:3333" in config.urls and "abc123wallet" in config.users
    assert "donate-level" in config.keys
    pools_txt = '"pool_list" : [ {"pool_address" : "pool.minexmr.com:4444", "wallet_address" : "48wallet0000", "pool_password" : "hunter2"} ],'
    config = configs.parse_config(pools_txt, "pools.txt")
    assert config.urls == ["pool.minexmr.com:4444"] and config.users == ["48wallet0000"]
    assert "pool_list" in config.keys and "hunter2" not in repr(config)


def test_url_credentials_are_redacted():
    config = configs.parse_config('{"pools": [{"url": "stratum+tcp://me:s3cret@pool.example.org:3333"}]}', "c.json")
    assert config.urls and "s3cret" not in config.urls[0]


def test_ordinary_files_are_not_miner_configs():
    assert configs.parse_config('{"name": "frontend", "version": "1.0.0", "dependencies": {}}', "package.json") is None
    db = configs.parse_config('{"pool": {"max": 10}, "host": "db.internal"}', "db.json")
    assert db is None or not configs.looks_like_miner_config(db)


@pytest.mark.parametrize("argv, expected", [
    (["m", "-c", "conf.json"], ["conf.json"]),
    (["m", "--config=/etc/m.json"], ["/etc/m.json"]),
    (["m", "--config", "a.json", "-C", "b.ini"], ["a.json", "b.ini"]),
    (["m", "-c"], []),
    (["m", "-c", "--other"], []),
])
def test_named_configs(argv, expected):
    assert configs.named_configs(argv) == expected


def fake_process(tmp_path: Path, pid: int, cwd: Path, argv: list[str]) -> tuple[Path, ProcessInfo]:
    root = tmp_path / "proc"
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "cwd").symlink_to(cwd)
    (root / str(pid) / "root").symlink_to("/")
    return root, ProcessInfo(pid=pid, exe="/usr/bin/backup-sync", cmdline=argv, cwd=str(cwd))


@linux
def test_named_config_is_read_through_proc_cwd_and_shared_files_list_every_pid(tmp_path):
    """A named config belongs to the processes that name it; a shared default-named file lists every pid."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "conf.json").write_text(json.dumps(XMRIG))
    root, first = fake_process(tmp_path, 200, work, ["backup-sync", "-c", "conf.json"])
    (root / "201").mkdir()
    (root / "201" / "cwd").symlink_to(work)
    second = ProcessInfo(pid=201, exe="/usr/bin/backup-sync", cmdline=["backup-sync"], cwd=str(work))
    found, budget = configs.scan_processes([first, second], str(root))
    assert len(found) == 1
    assert found[0].path == str(work / "conf.json")
    assert found[0].pids == [200]         # 201 shares the directory but neither names conf.json nor reads a default name
    assert budget.denied == 0


@linux
def test_config_json_in_cwd_is_found_without_being_named(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "config.json").write_text(json.dumps(XMRIG))
    (work / "package.json").write_text('{"name": "x"}')
    root, proc = fake_process(tmp_path, 300, work, ["python3", "loop.py"])
    snapshot = Snapshot(processes=[proc])
    coverage = configs.collect_configs(snapshot, type("O", (), {"proc_root": str(root)})())
    assert coverage[0].status == CoverageStatus.OK
    assert [c.path for c in snapshot.configs] == [str(work / "config.json")]


@linux
def test_devices_fifos_proc_files_and_huge_files_are_not_read(tmp_path, monkeypatch):
    work = tmp_path / "w"
    work.mkdir()
    os.mkfifo(work / "fifo.json")
    (work / "config.json").write_text('{"pools": [{"url": "stratum+tcp://a.b:1", "user": "w1234567"}]}' + " " * 4096
                                      + '"wallet": "late_wallet_beyond_bound"')
    monkeypatch.setattr(configs, "MAX_CONFIG_BYTES", 1024)
    root, proc = fake_process(tmp_path, 400, work, ["m", "-c", "/dev/zero", "--config", "/proc/self/environ",
                                                   "-C", "fifo.json"])
    found, _ = configs.scan_processes([proc], str(root))     # must return, not block on the FIFO
    assert [c.path for c in found] == [str(work / "config.json")]
    assert "late_wallet_beyond_bound" not in repr(found)


@linux
def test_unreadable_cwd_counts_as_denied_and_vanished_processes_are_skipped(tmp_path, mocker):
    root = tmp_path / "proc"
    root.mkdir()
    proc = ProcessInfo(pid=500, exe="/opt/x/bin/x", cmdline=["x"], cwd="/home/someone")
    from audit_agent.i18n import coverage_reasons
    coverage_reasons("en")      # the coverage texts are read before os.stat (os's own, for everyone) is refused
    mocker.patch.object(configs.os, "stat", side_effect=PermissionError(13, "denied"))
    snapshot = Snapshot(processes=[proc, ProcessInfo(pid=501, exe="/bin/y", cmdline=["y", "-c", "c.json"])])
    coverage = configs.collect_configs(snapshot, type("O", (), {"proc_root": str(root)})())[0]
    assert coverage.status == CoverageStatus.PARTIAL and coverage.denied >= 1
    assert snapshot.configs == []


@pytest.mark.parametrize("url", ["127.0.0.1:3391", "10.0.5.17:443", "[fd00::17]:3333"])
def test_pools_given_as_addresses_are_kept(tmp_path, url):
    """Private proxies and IP-only pools skip DNS on purpose; their address:port is the evidence."""
    text = json.dumps({"donate-level": 1, "pools": [{"url": url, "user": "rig1", "pass": "x"}]})
    config = configs.parse_config(text, str(tmp_path / "config.json"))
    assert config is not None and config.urls == [url]
    ini = configs.parse_config(f"[kawpow]\nwallet = rig1\npool1 = {url}\n", str(tmp_path / "config.ini"))
    assert ini is not None and url in ini.urls


@linux
def test_other_json_in_a_shared_working_directory_is_not_a_config(tmp_path):
    """A saved audit report in /tmp quotes a miner's command line: it is nobody's miner configuration."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    (shared / "report.json").write_text(json.dumps({"findings": [{"cmdline": "xmrig -o stratum+tcp://pool.x:3333",
                                                                   "pools": [{"url": "stratum+tcp://pool.x:3333"}]}]}))
    root, proc = fake_process(tmp_path, 600, shared, ["bash"])
    found, _ = configs.scan_processes([proc], str(root))
    assert found == []


# ---------------------------------------------------------------- review fixes


def test_deeply_nested_json_is_treated_as_raw_text_not_a_crash():
    """`[[[[...` 100000 deep makes json.loads raise RecursionError: read the text as raw instead."""
    text = "[" * 100000 + '"stratum+tcp://pool.example.org:3333"' + "]" * 100000
    config = configs.parse_config(text, "/w/config.json")
    assert config is not None and config.urls == ["stratum+tcp://pool.example.org:3333"]


@linux
def test_deeply_nested_config_in_a_cwd_does_not_abort_the_scan(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "config.json").write_text("[" * 100000)
    root, proc = fake_process(tmp_path, 700, work, ["m"])
    coverage = configs.collect_configs(Snapshot(processes=[proc]), type("O", (), {"proc_root": str(root)})())
    assert coverage[0].status == CoverageStatus.OK


def recording_open(mocker):
    """Patch os.open, recording (path, flags) of every call; the real open still runs."""
    calls: list[tuple[str, int]] = []
    real = os.open

    def record(path, flags, *args, **kwargs):
        calls.append((os.fsdecode(path), flags))
        return real(path, flags, *args, **kwargs)

    mocker.patch("os.open", side_effect=record)
    return calls


def opened_for_reading(calls, suffix: str) -> list[int]:
    o_path = getattr(os, "O_PATH", 0)
    return [flags for path, flags in calls if path.endswith(suffix) and not (o_path and flags & o_path)]


@linux
def test_a_device_named_on_a_command_line_is_never_opened_for_reading(tmp_path, mocker):
    """`./x -c /dev/watchdog` must not arm the watchdog (nor rewind a tape): only O_PATH opens of a device."""
    work = tmp_path / "w"
    work.mkdir()
    root, proc = fake_process(tmp_path, 710, work, ["./x", "-c", "/dev/null", "--config", "tape0"])
    if os.geteuid() == 0:
        os.mknod(work / "tape0", 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 3))   # a char device off /dev
    calls = recording_open(mocker)
    found, budget = configs.scan_processes([proc], str(root))
    assert found == [] and budget.denied == 0
    assert opened_for_reading(calls, "/dev/null") == []
    assert opened_for_reading(calls, "tape0") == []


@linux
def test_a_fifo_named_on_a_command_line_is_never_opened(tmp_path, mocker):
    work = tmp_path / "w"
    work.mkdir()
    os.mkfifo(work / "pipe.json")
    root, proc = fake_process(tmp_path, 720, work, ["./x", "-c", "pipe.json"])
    calls = recording_open(mocker)
    assert configs.scan_processes([proc], str(root))[0] == []
    assert opened_for_reading(calls, "pipe.json") == []


@pytest.mark.parametrize("argv, expected", [
    (["sh", "-c", "exec ./run.sh"], []),
    (["/bin/bash", "-c", "conf.json"], []),                 # -c of a shell is code, whatever it looks like
    (["/usr/bin/gcc-12", "-c", "main.c", "-o", "main.o"], []),
    (["python3.11", "-c", "print(1)"], []),
    (["x86_64-linux-gnu-gcc", "-c", "a.c"], []),
    (["cc", "-c", "a.c"], []),
    (["clang", "-c", "a.c"], []),
    (["ld", "-c", "script"], []),
    (["bash", "--config", "m.json"], ["m.json"]),           # only -c is code for them
    (["m", "-c", "a b.json"], []),
    (["m", "-c", "$(cat x)"], []),
    (["m", "--config=x;rm -rf /"], []),
    (["m", "-c", "/opt/m/conf.json"], ["/opt/m/conf.json"]),
])
def test_named_configs_skip_code_and_compiler_arguments(argv, expected):
    assert configs.named_configs(argv) == expected


@linux
def test_reaching_the_file_limit_is_reported_as_partial(tmp_path, monkeypatch):
    monkeypatch.setattr(configs, "MAX_FILES_TOTAL", 1)
    work = tmp_path / "w"
    work.mkdir()
    (work / "a.json").write_text(json.dumps(XMRIG))
    (work / "b.json").write_text(json.dumps(XMRIG).replace("supportxmr", "other"))
    root, first = fake_process(tmp_path, 730, work, ["m", "-c", "a.json"])
    (root / "731").mkdir()
    (root / "731" / "cwd").symlink_to(work)
    second = ProcessInfo(pid=731, exe="/usr/bin/m", cmdline=["m", "-c", "b.json"], cwd=str(work))
    snapshot = Snapshot(processes=[first, second])
    [coverage] = configs.collect_configs(snapshot, type("O", (), {"proc_root": str(root)})())
    assert coverage.status == CoverageStatus.PARTIAL
    assert "limit of 1 config files reached" in coverage.reason and "1 process(es) not examined" in coverage.reason


@linux
def test_a_config_is_read_only_if_its_process_could_read_it():
    """Root reads for the audit, but `-c /root/secret.cnf` from a user's process must not leak that file.
    The file is read with the process user's file-system identity (setfsuid), so the kernel judges it and
    every folder on the way; the tree lives in a folder others may enter, like a real one."""
    import shutil
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="audit-configs-"))
    try:
        os.chmod(base, 0o755)
        work = base / "w"
        work.mkdir()
        secret = work / "private.json"
        secret.write_text(json.dumps(XMRIG))
        os.chmod(secret, 0o600)                       # owned by root (the test runs as root), unreadable to others
        root, proc = fake_process(base, 700, work, ["tool", "-c", str(secret)])
        as_user = msgspec.structs.replace(proc, uid=4321)
        assert configs.scan_processes([as_user], str(root))[0] == []
        assert [c.path for c in configs.scan_processes([msgspec.structs.replace(proc, uid=0)], str(root))[0]] == \
            [str(secret)]
        os.chown(secret, 4321, -1)                    # now the user's own file
        assert [c.path for c in configs.scan_processes([as_user], str(root))[0]] == [str(secret)]
        os.chmod(work, 0o700)                         # ...but in a folder the user cannot enter
        assert configs.scan_processes([as_user], str(root))[0] == [], "the kernel checks the way there too"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def per_process_candidates(proc, proc_root, budget):
    """candidates() as it was: everything worked out again for each process."""
    base = os.path.join(proc_root, str(proc.pid))
    count = 0
    for name in [*configs.named_configs(proc.cmdline), *configs.launcher_script(proc.cmdline)]:
        if count >= configs.MAX_FILES_PER_PROCESS:
            return
        count += 1
        if name.startswith("/"):
            yield name, base + "/root" + name, True
        else:
            shown = os.path.normpath(os.path.join(proc.cwd, name)) if proc.cwd else name
            yield shown, os.path.join(base, "cwd", name), True
    directories = [(proc.cwd, base + "/cwd")]
    exe = proc.exe[: -len(" (deleted)")] if proc.exe.endswith(" (deleted)") else proc.exe
    if exe.startswith("/"):
        parent = os.path.dirname(exe)
        directories.append((parent, base + "/root" + parent))
    for shown_dir, access_dir in directories:
        if not shown_dir or shown_dir == "/":
            continue
        if shown_dir not in budget.seen_dirs:
            budget.seen_dirs[shown_dir] = configs.directory_candidates(access_dir, budget)
        for name in budget.seen_dirs[shown_dir]:
            if count >= configs.MAX_FILES_PER_PROCESS:
                return
            count += 1
            yield os.path.join(shown_dir, name), os.path.join(access_dir, name), False


@linux
@pytest.mark.skipif(not have_compiler(), reason="no C compiler (cc/gcc) on this machine")
def test_copies_of_one_program_get_what_each_would_alone(processes, tmp_path, monkeypatch):
    """What a process's command line, folder and executable say is worked out once for all processes that
    share them, and a process with nothing to read is passed over: the configs found, the pids each lists
    and the budget must be what working it all out for each process gives (real processes, read through
    their /proc/PID/cwd and /proc/PID/root)."""
    from tests.test_exe_groups import build, read, running
    tmp_path.chmod(0o755)
    program = build(tmp_path / "bin", "worker", "nothing")
    (tmp_path / "bin2").mkdir()
    renamed = tmp_path / "bin2" / "helper"
    renamed.write_bytes(program.read_bytes())
    renamed.chmod(0o755)
    (tmp_path / "bin2" / "config.json").write_text(json.dumps(XMRIG))       # next to its executable
    for folder in ("work", "empty", "named"):
        (tmp_path / folder).mkdir()
    (tmp_path / "work" / "config.json").write_text(json.dumps(XMRIG))
    (tmp_path / "named" / "mine.json").write_text(json.dumps({**XMRIG, "pools": [{"url": "pool.example.net:3333"}]}))
    started = []

    def start(args, cwd, exe=program):
        started.append(processes.start([str(exe), *args], cwd=cwd).pid)
        running(started[-1], str(exe))
    for _ in range(4):
        start([], tmp_path / "work")
    for _ in range(3):
        start([], tmp_path / "empty")
    start(["-c", "mine.json"], tmp_path / "named")
    start(["--config", str(tmp_path / "named" / "mine.json")], tmp_path / "empty")
    start([], tmp_path / "empty", renamed)
    start([], tmp_path / "empty", renamed)
    infos = read(started)
    assert len(infos) == len(started)

    found, budget = configs.scan_processes(infos)
    with monkeypatch.context() as patched:
        patched.setattr(configs, "candidates", per_process_candidates)
        patched.setattr(configs._Budget, "nothing_for", lambda self, plan: False)
        expected, expected_budget = configs.scan_processes(infos)
    assert [msgspec.structs.asdict(c) for c in found] == [msgspec.structs.asdict(c) for c in expected]
    for field in ("files", "denied", "not_examined", "seen_dirs"):
        assert getattr(budget, field) == getattr(expected_budget, field), field
    listed = {c.path: c.pids for c in found}
    assert listed[str(tmp_path / "work" / "config.json")] == started[:4]
    assert listed[str(tmp_path / "named" / "mine.json")] == started[7:9]
    assert listed[str(tmp_path / "bin2" / "config.json")] == started[9:]
