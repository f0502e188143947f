"""Collectors: vanished processes, access denied, fake /proc trees, other operating systems."""
from __future__ import annotations

import os
import subprocess
from collections import namedtuple
import sys
from types import SimpleNamespace

import psutil
import pytest

from audit_agent.collect import linux_only, processes as processes_module
from audit_agent.collect.cgroups import container_id, read_cgroup, slurm_job_id
from audit_agent.collect.host import cpu_model_and_sockets, os_release
from audit_agent.collect.network import collect_connections
from audit_agent.collect.processes import FirstReading, build_process, ns_pids, read_processes, selected_environ
from audit_agent.model import CoverageStatus


def fake_proc(pid: int, info: dict):
    proc = SimpleNamespace(pid=pid, info=info)
    proc.cpu_affinity = lambda: [0, 1]
    return proc


def raw_info(pid: int, **overrides) -> dict:
    info = {"pid": pid, "ppid": 1, "name": "worker", "exe": "/usr/bin/worker", "cmdline": ["worker", "-v"],
            "username": "alice", "cwd": "/home/alice", "create_time": 1.0, "status": "running", "nice": 0,
            "num_threads": 4, "memory_info": SimpleNamespace(rss=1 << 20), "terminal": None,
            "cpu_times": SimpleNamespace(user=12.0, system=3.0), "uids": SimpleNamespace(real=1000)}
    info.update(overrides)
    return info


def test_cpu_percent_is_measured_over_the_window():
    first = FirstReading(started=0.0, cpu_seconds={7: 10.0})
    info = build_process(raw_info(7), first, elapsed=2.5, proc_root="/nonexistent")
    assert info.cpu_seconds == 5.0
    assert info.cpu_percent == 200.0


def test_access_denied_is_counted_not_raised(mocker):
    denied = processes_module._DENIED
    listing = [fake_proc(1, raw_info(1)), fake_proc(2, raw_info(2, exe=denied, cmdline=denied, cwd=denied))]
    mocker.patch.object(psutil, "process_iter", return_value=listing)
    found, coverage = read_processes(FirstReading(0.0, {}), proc_root="/nonexistent")
    assert [p.pid for p in found] == [1, 2]
    assert found[1].denied == ["cmdline", "cwd", "exe"] and found[1].exe == ""
    assert coverage.status == CoverageStatus.PARTIAL
    assert coverage.denied == 1 and coverage.inspected == 1
    assert "1 of 2" in coverage.reason


def test_processes_that_vanish_mid_scan_are_skipped(mocker):
    class Vanishing:
        pid = 3

        @property
        def info(self):
            raise psutil.NoSuchProcess(3)

    mocker.patch.object(psutil, "process_iter", return_value=[fake_proc(1, raw_info(1)), Vanishing()])
    mocker.patch.object(processes_module, "build_process", side_effect=[
        processes_module.build_process(raw_info(1), FirstReading(0.0, {}), 1.0, "/nonexistent"),
        psutil.NoSuchProcess(3)])
    found, coverage = read_processes(FirstReading(0.0, {}), proc_root="/nonexistent")
    assert [p.pid for p in found] == [1]
    assert coverage.status == CoverageStatus.OK


def test_no_process_listed_is_skipped_coverage(mocker):
    mocker.patch.object(psutil, "process_iter", return_value=[])     # the psutil reader (not a live /proc)
    _, coverage = read_processes(FirstReading(0.0, {}), proc_root="/nonexistent")
    assert coverage.status == CoverageStatus.SKIPPED


def test_huge_command_lines_are_capped_by_characters_keeping_the_tail():
    info = build_process(raw_info(9, cmdline=["x" * 100_000] + ["a"] * 1000 + ["-o", "pool:3333"]),
                         FirstReading(0.0, {}), 1.0, "/nonexistent")
    assert len(info.cmdline) == 1003, "1,000 short arguments are no reason to cut (no count cap to pad past)"
    assert len(info.cmdline[0]) < 9000 and "characters cut]" in info.cmdline[0]
    assert info.cmdline[-2:] == ["-o", "pool:3333"]
    assert info.cmdline_bytes == 100_001 + 2 * 1000 + 3 + 10
    padded = build_process(raw_info(9, cmdline=["y" * 1000] * 200 + ["-o", "pool:3333"]), FirstReading(0.0, {}), 1.0,
                           "/nonexistent")
    assert padded.cmdline[-2:] == ["-o", "pool:3333"] and any("arguments cut]" in a for a in padded.cmdline)


@pytest.fixture
def fake_proc_root(tmp_path):
    pid_dir = tmp_path / "4242"
    pid_dir.mkdir()
    (pid_dir / "cgroup").write_text(
        "0::/system.slice/slurmstepd.scope/job_998877/step_0/user/task_0\n"
        if False else "0::/slurm/uid_1000/job_998877/step_batch/task_0\n")
    (pid_dir / "status").write_text("Name:\tpython3\nTgid:\t4242\nNSpid:\t4242\t17\n")
    (pid_dir / "environ").write_bytes(b"HOME=/home/a\0LD_PRELOAD=/tmp/.l/libx.so\0SLURM_JOB_ID=998877\0\xff\xfe=bad\0")
    os.symlink("/tmp/.x/miner (deleted)", pid_dir / "exe")
    docker = tmp_path / "5353"
    docker.mkdir()
    (docker / "cgroup").write_text(
        "12:pids:/docker/" + "a" * 64 + "\n11:cpu,cpuacct:/docker/" + "a" * 64 + "\n")
    unreadable = tmp_path / "6464"
    unreadable.mkdir()
    return tmp_path


def test_linux_details_from_a_fake_proc_tree(fake_proc_root):
    root = str(fake_proc_root)
    assert slurm_job_id(read_cgroup(4242, root)) == "998877"
    assert container_id(read_cgroup(5353, root)) == "a" * 12
    assert read_cgroup(6464, root) == "" and read_cgroup(1, root) == ""
    assert ns_pids(4242, root) == [4242, 17]
    assert selected_environ(4242, root) == {"LD_PRELOAD": "/tmp/.l/libx.so", "SLURM_JOB_ID": "998877"}
    assert selected_environ(6464, root) == {}
    info = build_process(raw_info(4242, exe=""), FirstReading(0.0, {}), 1.0, proc_root=root)
    if sys.platform.startswith("linux"):
        assert info.exe_deleted and info.exe == "/tmp/.x/miner"
        assert info.slurm_job_id == "998877"


@pytest.mark.parametrize("cgroup, expected", [
    ("/kubepods/burstable/pod1234/" + "b" * 64, "b" * 12),
    ("/system.slice/docker-" + "c" * 64 + ".scope", "c" * 12),
    ("/system.slice/containerd.service/kubepods-besteffort-pod1.slice:cri-containerd:" + "d" * 64, "d" * 12),
    ("/machine.slice/libpod-" + "e" * 64 + ".scope/container", "e" * 12),
    ("/user.slice/user-1000.slice/session-3.scope", ""),
])
def test_container_ids_from_cgroup_paths(cgroup, expected):
    assert container_id(cgroup) == expected


def test_host_facts_from_fake_files(tmp_path):
    (tmp_path / "cpuinfo").write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nphysical id\t: 0\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nphysical id\t: 1\n")
    (tmp_path / "os-release").write_text('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert cpu_model_and_sockets(str(tmp_path)) == ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 2)
    assert os_release(str(tmp_path)) == "Debian GNU/Linux 12 (bookworm)"
    assert cpu_model_and_sockets(str(tmp_path / "missing")) == ("", None)


def test_connections_access_denied_is_skipped_not_a_crash(mocker):
    mocker.patch.object(psutil, "net_connections", side_effect=psutil.AccessDenied())
    connections, coverage = collect_connections("/not-a-live-procfs")        # psutil's reading
    assert connections == [] and coverage.status == CoverageStatus.SKIPPED


def test_connections_without_owner_are_partial(mocker):
    addr = namedtuple("addr", "ip port")
    sconn = namedtuple("sconn", "fd family type laddr raddr status pid")
    mocker.patch.object(psutil, "net_connections", return_value=[
        sconn(3, 2, 1, addr("10.0.0.5", 40000), addr("192.0.2.7", 3333), "ESTABLISHED", None),
        sconn(4, 2, 1, addr("10.0.0.5", 40001), addr("192.0.2.8", 443), "ESTABLISHED", 77),
        sconn(5, 2, 1, addr("0.0.0.0", 22), (), "LISTEN", 1),
    ])
    connections, coverage = collect_connections("/not-a-live-procfs")
    assert [(c.pid, c.remote_port, c.protocol) for c in connections] == [(None, 3333, "tcp"), (77, 443, "tcp")]
    assert coverage.status == CoverageStatus.PARTIAL and coverage.denied == 1


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_linux_only_checks_are_not_applicable_elsewhere(mocker, platform):
    mocker.patch.object(sys, "platform", platform)
    coverage = linux_only("stealth")
    assert coverage.status == CoverageStatus.NOT_APPLICABLE and platform in coverage.reason


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_process_collector_runs_without_linux_details_elsewhere(mocker, platform):
    mocker.patch.object(processes_module, "ON_LINUX", False)
    mocker.patch.object(sys, "platform", platform)
    info = build_process(raw_info(11, exe="C:\\Users\\x\\xmrig.exe"), FirstReading(0.0, {}), 1.0, "/nonexistent")
    assert info.cgroup == "" and info.environ == {} and info.exe == "C:\\Users\\x\\xmrig.exe"


# ---------------------------------------------------------------- collect_snapshot: steps and roots

class _NoGpu:
    def start(self) -> None:
        pass

    def sample(self):
        return None

    def finish(self):
        from audit_agent.model import Coverage
        return [], Coverage("gpu", CoverageStatus.SKIPPED, "test: no GPU")


def test_a_step_that_raises_becomes_error_coverage_and_the_scan_goes_on(mocker):
    import audit_agent.collect as collect
    from audit_agent.collect import configs
    from audit_agent.model import Coverage

    def broken(snapshot, options):
        raise RecursionError("maximum recursion depth exceeded " + "x" * 2000)
    broken.__module__ = configs.__name__        # a step of the configs module: its check is named

    def fine(snapshot, options):
        return [Coverage("after", CoverageStatus.OK)]

    mocker.patch.object(collect, "extra_steps", return_value=[broken, fine])
    snapshot = collect.collect_snapshot(collect.CollectOptions(window=0, gpu_sampler=_NoGpu(), check_stealth=False))
    by_check = {c.check: c for c in snapshot.coverage}
    assert by_check["configs"].status == CoverageStatus.ERROR
    assert by_check["configs"].reason.startswith("RecursionError: maximum recursion depth exceeded")
    assert len(by_check["configs"].reason) < 400
    assert by_check["after"].status == CoverageStatus.OK          # the later step still ran


def test_stealth_step_failure_marks_both_of_its_checks():
    from audit_agent.collect import run_step, stealth

    def broken(snapshot, options):
        raise ValueError("bad")
    broken.__module__ = stealth.__name__
    coverage = run_step(broken, None, None)
    assert [(c.check, c.status, c.reason) for c in coverage] == [
        ("stealth", CoverageStatus.ERROR, "ValueError: bad"),
        ("hidden-processes", CoverageStatus.ERROR, "ValueError: bad")]


def test_first_reading_uses_the_configured_proc_root(mocker, tmp_path):
    import audit_agent.collect as collect
    seen = []
    real = collect.first_reading
    mocker.patch.object(collect, "first_reading", side_effect=lambda *a, **k: seen.append((a, k)) or real(*a, **k))
    mocker.patch.object(collect, "extra_steps", return_value=[])
    collect.collect_snapshot(collect.CollectOptions(window=0.01, gpu_sampler=_NoGpu(), check_stealth=False,
                                                    proc_root=str(tmp_path)))
    assert seen and (seen[0][0][:1] == (str(tmp_path),) or seen[0][1].get("proc_root") == str(tmp_path))


def test_without_a_window_cpu_is_the_lifetime_average_so_a_paused_process_still_shows(mocker, processes):
    """--window 0 takes no first reading; a process that burned CPU and then went quiet is not 0 %."""
    import sys

    import audit_agent.collect as collect
    first = mocker.spy(collect, "first_reading")
    burner = processes.start([sys.executable, "-c", "import time\nwhile time.process_time() < 1.0: pass\n"
                              "print('ready', flush=True); time.sleep(60)"], wait_for_line="ready", timeout=60)
    snapshot = collect.collect_snapshot(collect.CollectOptions(window=0, gpu_sampler=_NoGpu(), check_stealth=False,
                                                               scan_binaries=False, check_persistence=False))
    assert first.call_count == 0
    quiet_now = next(p for p in snapshot.processes if p.pid == burner.pid)
    assert quiet_now.cpu_percent is not None and quiet_now.cpu_percent > 2.0


def test_the_direct_proc_reader_gathers_the_same_evidence_as_psutil(processes, tmp_path):
    """The fast reader (one read per /proc file) against psutil's, field by field, for processes we start."""
    import sys

    import psutil

    from audit_agent.collect.processes import ATTRS, _DENIED, FirstReading, build_process, read_processes
    code = "import sys, time; print('ready', flush=True); time.sleep(60)"
    started = [
        processes.start([sys.executable, "-c", code, "--pool", "stratum+tcp://127.0.0.1:3333", "x" * 300],
                        env={"LD_PRELOAD": "", "CUDA_VISIBLE_DEVICES": "0,1"}, cwd=tmp_path, wait_for_line="ready"),
        processes.start([sys.executable, "-c", code], env={"SLURM_JOB_ID": "4242"}, wait_for_line="ready"),
    ]
    # a twin of the first (same command line, environment, folder, cgroup): the reader parses those contents
    # once, and the twin must still come out whole and with lists and dicts of its own
    started.append(processes.start([sys.executable, "-c", code, "--pool", "stratum+tcp://127.0.0.1:3333", "x" * 300],
                                   env={"LD_PRELOAD": "", "CUDA_VISIBLE_DEVICES": "0,1"}, cwd=tmp_path,
                                   wait_for_line="ready"))
    # one on a pseudo-terminal, as a process started from an interactive shell is (its terminal is evidence)
    leader, follower = os.openpty()
    tty_path = os.ttyname(follower)
    # a session leader that opens a terminal gets it as its controlling terminal (what /proc/PID/stat names)
    on_tty_code = "import os, sys; os.open(sys.argv[1], os.O_RDWR); " + code.replace("import sys, time", "import time")
    try:
        on_tty = subprocess.Popen([sys.executable, "-c", on_tty_code, tty_path], stdout=subprocess.PIPE,
                                  text=True, start_new_session=True)
    finally:
        os.close(follower)
    processes.started.append(on_tty)
    assert on_tty.stdout is not None and "ready" in on_tty.stdout.readline()
    started.append(on_tty)
    first = FirstReading(0.0, {})
    fast = {p.pid: p for p in read_processes(first)[0]}
    assert fast[on_tty.pid].terminal == tty_path, "the terminal a process runs on is read"
    # psutil keeps its device map for the life of the process (memoized): a terminal opened after its first
    # use is unknown to it, so the terminal is compared with the device itself, not with psutil.
    moving = {"cpu_percent", "cpu_seconds", "children_cpu_seconds", "rss_bytes", "create_time", "terminal"}
    for proc in started:
        reference = build_process(psutil.Process(proc.pid).as_dict(ATTRS, ad_value=_DENIED), first, 1.0,
                                  "/proc", psutil.Process(proc.pid))
        mine = fast[proc.pid]
        for name in type(mine).__struct_fields__:
            if name not in moving:
                assert getattr(mine, name) == getattr(reference, name), name
        assert abs(mine.rss_bytes - reference.rss_bytes) <= 1 << 20
        assert abs(mine.create_time - reference.create_time) < 0.05
    twin, first_one = fast[started[2].pid], fast[started[0].pid]
    assert twin.cmdline == first_one.cmdline and twin.cmdline is not first_one.cmdline
    assert twin.environ == first_one.environ and twin.environ is not first_one.environ
    os.close(leader)        # hangs up the terminal's session: after the comparison


def test_connections_from_proc_net_match_psutils_for_sockets_the_test_holds():
    """The direct /proc/net reader against psutil's, for connections this test opens (the host is busy: only
    our own four-tuples are compared)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    clients = [socket.create_connection(server.getsockname()) for _ in range(3)]
    accepted = [server.accept()[0] for _ in clients]
    six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        six.connect(("::1", 9))
    except OSError:
        six.close()
        six = None
    try:
        def mine(connections):
            # Four-tuples, not local ports: on a busy host the kernel reuses an ephemeral port for another peer.
            ours = {(s.getsockname()[1], s.getpeername()[1]) for s in clients + accepted + ([six] if six else [])}
            return sorted((c.pid, c.protocol, c.local_address, c.local_port, c.remote_address, c.remote_port, c.state)
                          for c in connections if (c.local_port, c.remote_port) in ours)
        direct, coverage = collect_connections("/proc")
        reference, _ = collect_connections("/not-a-live-procfs")
        assert mine(direct) == mine(reference)
        assert len(mine(direct)) == 6 + (1 if six else 0)
        assert {c[0] for c in mine(direct)} == {os.getpid()}
    finally:
        for sock in clients + accepted + [server] + ([six] if six else []):
            sock.close()


def test_socket_owners_name_the_holder_and_stop_once_every_socket_is_found(mocker):
    import socket

    from audit_agent.collect import network
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        inode = os.fstat(held.fileno()).st_ino
        listed = mocker.spy(os, "listdir")
        assert network.socket_owners("/proc", {inode}) == {inode: os.getpid()}
        walked = [call.args[0] for call in listed.call_args_list if call.args[0].endswith(b"/fd/")]
        assert walked[-1] == f"/proc/{os.getpid()}/fd/".encode()       # nothing read after the owner
        listed.reset_mock()
        assert network.socket_owners("/proc", set()) == {} and listed.call_count == 0


def test_a_finished_scans_ceiling_does_not_outlive_it():
    """A long-lived process (watch, a test session) makes guarded calls after a scan: the scan's ceiling, which
    may pass minutes later, must not make them fail."""
    from audit_agent.collect import CollectOptions, collect_snapshot, deadline
    collect_snapshot(CollectOptions(window=0, timeout=30, scan_binaries=False, check_stealth=False,
                                    check_persistence=False, check_families=False))
    assert deadline.current().left() is None
    assert deadline.call(len, "abc") == 3


def test_a_command_line_the_scan_budget_cut_is_not_reused_for_its_twins(monkeypatch):
    """The reader parses a content once per scan, but a command line cut because the scan had kept its share
    (collect/bounds.py) is cut again, not handed whole to the next process with the same line, and a whole one
    is handed out as a list of each process's own."""
    from audit_agent.collect import bounds
    from audit_agent.collect.processes import ProcReader
    raw = b"miner\0" + b"-o\0" + b"p" * 3000 + b"\0"
    reader = ProcReader()
    bounds.new_scan()
    monkeypatch.setattr(bounds, "PER_SCAN", 0)      # the scan's share is spent: each line keeps LEAN characters
    argv, kept, length = reader.cmdline(raw)
    assert argv == ["miner", "-o", "p" * 3000] and kept != argv and "characters cut" in kept[-1]
    again = reader.cmdline(raw)[1]
    assert again == kept and again is not kept
    bounds.new_scan()
    monkeypatch.setattr(bounds, "PER_SCAN", 8 * 1024 * 1024)
    whole = [reader.cmdline(raw)[1] for _ in range(2)]
    assert whole[0] == whole[1] == argv and whole[0] is not whole[1]


def test_cpu_use_rounds_as_round_does_and_keeps_an_idle_process_at_zero():
    from audit_agent.collect.processes import FirstReading, rounded, set_cpu_use
    from audit_agent.model import ProcessInfo
    for value in (0.0, 0.0004, 0.0005, 0.0015, 1.23456, 2.5e-9, 1e6 + 0.12345):
        for digits in (1, 3):
            assert rounded(value, digits) == round(value, digits)
    first = FirstReading(0.0, {7: 1.0}, {7: 0.5})
    info = ProcessInfo(pid=7, create_time=1.0)
    set_cpu_use(info, 3.0, first, 4.0, children_now=0.75)
    assert (info.cpu_seconds, info.cpu_percent, info.children_cpu_seconds) == (2.0, 50.0, 0.25)
    idle = ProcessInfo(pid=8, create_time=1.0)
    set_cpu_use(idle, 0.0, first, 4.0)
    assert (idle.cpu_seconds, idle.cpu_percent, idle.children_cpu_seconds) == (0.0, 0.0, 0.0)
