"""Churn: processes that come and go during the scan, hostile command lines, unreadable /proc entries.

The end-to-end test runs the installed agent while a background loop spawns
thousands of short-lived `true` processes; the in-process tests make single
/proc reads (or psutil calls) fail mid-iteration. Nothing may crash; what could
not be read is counted in coverage.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from audit_agent.collect import processes as processes_module
from audit_agent.collect.processes import FirstReading, first_reading, read_processes
from audit_agent.model import CoverageStatus

ON_LINUX = sys.platform.startswith("linux")
LONG_ARG = "L" * 100_000
SLEEP = "import time; time.sleep(120)"
EMPTY_NAME = textwrap.dedent("""
    import ctypes, time
    ctypes.CDLL(None).prctl(15, b"", 0, 0, 0)   # PR_SET_NAME to the empty string
    print("ready", flush=True)
    time.sleep(120)
""")
SPAWNER = textwrap.dedent("""
    import os, subprocess, sys, time
    deadline = time.monotonic() + float(sys.argv[1])
    count = 0
    print("ready", flush=True)
    while time.monotonic() < deadline:
        subprocess.run(["true"])
        count += 1
    print(f"spawned {count}", flush=True)
""")


@pytest.mark.e2e
@pytest.mark.skipif(not ON_LINUX, reason="real /proc churn is a Linux test")
def test_scan_survives_churn_and_hostile_command_lines(agent, processes, tmp_path):
    long_cmd = processes.start([sys.executable, "-c", SLEEP, LONG_ARG])
    bad_utf8 = subprocess.Popen([os.fsencode(sys.executable), b"-c", SLEEP.encode(), b"caf\xe9\xff-\x80arg"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    processes.started.append(bad_utf8)
    empty_argv0 = subprocess.Popen(["", "-c", SLEEP], executable=sys.executable, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL)
    processes.started.append(empty_argv0)
    empty_name = processes.start([sys.executable, "-c", EMPTY_NAME], wait_for_line="ready")
    spawner = processes.start([sys.executable, "-c", SPAWNER, "30"], wait_for_line="ready")
    time.sleep(0.3)

    snapshot_path = tmp_path / "snap.json"
    result = agent("collect", "--window", "1", "-o", str(snapshot_path), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report_path = tmp_path / "report.json"
    live = agent("scan", "--window", "1", "--json", str(report_path), "--fail-on", "never")
    assert live.returncode == 0, live.stderr
    assert "Traceback" not in live.stderr + live.stdout
    assert json.loads(report_path.read_text())["process_count"] > 0
    processes.stop(spawner)

    snapshot = json.loads(snapshot_path.read_text(encoding="utf-8"))      # strict UTF-8: no surrogates written
    by_pid = {p["pid"]: p for p in snapshot["processes"]}
    long_proc = by_pid[long_cmd.pid]
    assert max(len(arg) for arg in long_proc["cmdline"]) < 9000, "a 100 kB argument is capped"
    assert any("characters cut]…" in arg for arg in long_proc["cmdline"]), "head and tail kept, the cut marked"
    assert long_proc["cmdline_bytes"] > 100_000, "the evidence says how long it really was"
    assert "caf\\xe9\\xff-\\x80arg" in by_pid[bad_utf8.pid]["cmdline"], "undecodable bytes are shown, not dropped"
    assert by_pid[empty_argv0.pid]["cmdline"][0] == ""
    assert by_pid[empty_name.pid]["name"] == ""
    processes_coverage = next(c for c in snapshot["coverage"] if c["check"] == "processes")
    assert processes_coverage["inspected"] + processes_coverage["denied"] == len(snapshot["processes"])

    replay = agent("scan", "--snapshot", str(snapshot_path), "--json", str(report_path), "--fail-on", "never")
    assert replay.returncode == 0, replay.stderr
    assert "Traceback" not in replay.stderr


# ---------------------------------------------------------------- in-process: reads that fail mid-iteration


@pytest.fixture
def sleepers(processes):
    started = [processes.start([sys.executable, "-c", SLEEP]) for _ in range(3)]
    time.sleep(0.2)
    return [p.pid for p in started]


def meant_path(path: bytes, dir_fd: int | None) -> bytes:
    """The /proc path the reader means: it opens each process's folder once and names its files from there."""
    if dir_fd is None:
        return path
    return os.fsencode(os.readlink(f"/proc/self/fd/{dir_fd}")) + b"/" + path


@pytest.mark.skipif(not ON_LINUX, reason="the direct /proc reader is Linux-only")
def test_direct_reader_counts_denied_and_skips_vanished(mocker, sleepers):
    denied_pid, vanished_pid, gone_late_pid = sleepers
    mocker.patch.object(processes_module, "NATIVE", None)   # the Python half, whose reads are faked here
    real_read, real_readlink = processes_module.read_proc_file, os.readlink

    def read(path: bytes, limit: int = 4 << 20, dir_fd: int | None = None) -> bytes:
        meant = meant_path(path, dir_fd)
        if meant.endswith(f"/{vanished_pid}/stat".encode()):
            raise FileNotFoundError(2, "No such file or directory")
        if meant.endswith(f"/{gone_late_pid}/status".encode()):
            raise ProcessLookupError(3, "No such process")
        if meant.endswith(f"/{denied_pid}/cmdline".encode()) or meant.endswith(f"/{denied_pid}/environ".encode()):
            raise PermissionError(13, "Permission denied")
        return real_read(path, limit, dir_fd=dir_fd)

    def readlink(path, *args, **kwargs):
        if isinstance(path, bytes) and meant_path(path, kwargs.get("dir_fd")).endswith(f"/{denied_pid}/exe".encode()):
            raise PermissionError(13, "Permission denied")
        return real_readlink(path, *args, **kwargs)

    mocker.patch.object(processes_module, "read_proc_file", side_effect=read)
    mocker.patch.object(processes_module.os, "readlink", side_effect=readlink)
    found, coverage = read_processes(first_reading())
    by_pid = {p.pid: p for p in found}
    assert vanished_pid not in by_pid and gone_late_pid not in by_pid
    assert by_pid[denied_pid].denied == ["cmdline", "exe"]
    assert by_pid[denied_pid].exe == "" and by_pid[denied_pid].cmdline == []
    assert coverage.status == CoverageStatus.PARTIAL
    assert coverage.denied >= 1 and coverage.inspected + coverage.denied == len(found)


def test_psutil_reader_survives_access_denied_zombie_and_vanished(mocker, sleepers):
    """The portable reader (other OSes, fake roots): psutil raising for some pids mid-iteration."""
    denied_pid, zombie_pid, vanished_pid = sleepers
    impl = psutil.Process(os.getpid())._proc.__class__
    real_cwd, real_cmdline, real_name = impl.cwd, impl.cmdline, impl.name

    def cwd(self):
        if self.pid == denied_pid:
            raise psutil.AccessDenied(self.pid)
        return real_cwd(self)

    def cmdline(self):
        if self.pid == zombie_pid:
            raise psutil.ZombieProcess(self.pid)
        return real_cmdline(self)

    def name(self):
        if self.pid == vanished_pid:
            raise psutil.NoSuchProcess(self.pid)
        return real_name(self)

    mocker.patch.object(impl, "cwd", cwd)
    mocker.patch.object(impl, "cmdline", cmdline)
    mocker.patch.object(impl, "name", name)
    found, coverage = read_processes(FirstReading(time.monotonic() - 1, {}), proc_root="/nonexistent")
    by_pid = {p.pid: p for p in found}
    assert vanished_pid not in by_pid
    assert "cwd" in by_pid[denied_pid].denied
    assert "cmdline" in by_pid[zombie_pid].denied
    assert coverage.status == CoverageStatus.PARTIAL and coverage.denied >= 2
    assert coverage.inspected + coverage.denied == len(found)


@pytest.mark.skipif(not ON_LINUX, reason="the direct /proc reader is Linux-only")
def test_direct_reader_matches_psutil_on_this_host(sleepers):
    """Same fields from /proc as psutil gives, for processes that sit still."""
    first = FirstReading(time.monotonic() - 1, {})
    direct = {p.pid: p for p in read_processes(first)[0]}
    portable = {p.pid: p for p in read_processes(first, proc_root="/nonexistent")[0]}
    for pid in sleepers:
        a, b = direct[pid], portable[pid]
        for field in ("ppid", "name", "exe", "cmdline", "username", "uid", "cwd", "status", "nice", "num_threads",
                      "terminal", "allowed_cpus", "denied"):     # (cgroup, environ, NSpid come from proc_root)
            assert getattr(a, field) == getattr(b, field), field
        assert abs(a.create_time - b.create_time) < 0.05



@pytest.mark.skipif(not ON_LINUX, reason="the direct /proc reader is Linux-only")
def test_direct_reader_counts_processes_whose_stat_is_denied(mocker, sleepers):
    """/proc mounted hidepid=1: a listed process whose stat/status is denied is counted, not dropped silently."""
    stat_denied, status_denied, _ = sleepers
    mocker.patch.object(processes_module, "NATIVE", None)   # the Python half, whose reads are faked here
    real_read = processes_module.read_proc_file

    def read(path: bytes, limit: int = 4 << 20, dir_fd: int | None = None) -> bytes:
        meant = meant_path(path, dir_fd)
        if meant.endswith(f"/{stat_denied}/stat".encode()) or meant.endswith(f"/{status_denied}/status".encode()):
            raise PermissionError(13, "Permission denied")
        return real_read(path, limit, dir_fd=dir_fd)

    mocker.patch.object(processes_module, "read_proc_file", side_effect=read)
    found, coverage = read_processes(first_reading())
    pids = {p.pid for p in found}
    assert stat_denied not in pids and status_denied not in pids
    assert coverage.status == CoverageStatus.PARTIAL
    assert coverage.denied >= 2 and coverage.inspected + coverage.denied == len(found) + 2
    assert f"of {len(found) + 2} processes" in coverage.reason


@pytest.mark.skipif(not ON_LINUX, reason="the direct /proc reader is Linux-only")
def test_reader_reads_each_process_through_its_own_folder_and_not_past_its_end():
    """The reader opens a process's /proc folder once and reads its files from there: while the process
    lives that is the same reading as by path; once it has ended (and its PID could be another process's)
    the folder yields nothing, so the reading is dropped instead of mixing two processes."""
    child = subprocess.Popen([sys.executable, "-c", SLEEP])
    reader = processes_module.ProcReader("/proc")
    first = first_reading()
    base = b"/proc/%d/" % child.pid
    where = os.open(base, processes_module.PROC_DIR_FLAGS)
    try:
        time.sleep(0.2)
        alive = reader.read_from(child.pid, base, where, first, 1.0)
        assert alive is not None and alive.pid == child.pid
        assert alive.cmdline == [sys.executable, "-c", SLEEP]
        assert alive.exe == os.path.realpath(sys.executable)
        child.kill()
        child.wait()
        assert reader.read_from(child.pid, base, where, first, 1.0) is None
    finally:
        os.close(where)
        if child.poll() is None:
            child.kill()
            child.wait()
