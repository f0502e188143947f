"""Stealth readers on fake /proc, /sys and /etc trees, the hidden-process search, and the stealth/content signals."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import sys

from audit_agent.i18n import coverage_phrase as phrase
from audit_agent.collect import stealth
from audit_agent.collect.stealth import HiddenSearch
from audit_agent.model import BinaryScan, CoverageStatus, MinerConfig, ProcessInfo, Snapshot, StealthState
from tests.conftest import MONERO_WALLET
from tests.factories import proc, scan, snapshot


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------ readers


def test_ld_so_preload_entries_comments_and_missing_file(tmp_path):
    assert stealth.read_ld_so_preload(str(tmp_path)) == []
    write(tmp_path / "ld.so.preload", "# installed by ops\n/usr/local/lib/libhide.so  /lib/x.so\n\n")
    assert stealth.read_ld_so_preload(str(tmp_path)) == ["/usr/local/lib/libhide.so", "/lib/x.so"]


def test_self_preloaded_libraries_come_from_maps(tmp_path):
    write(tmp_path / "self/maps",
          "7f00-7f01 r-xp 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
          "7f02-7f03 r-xp 00000000 08:01 13 /tmp/libprocesshider.so (deleted)\n"
          "7f04-7f05 rw-p 00000000 00:00 0 [heap]\n")
    assert stealth.self_preloaded_libraries(str(tmp_path), [], environ=[]) == []
    found = stealth.self_preloaded_libraries(str(tmp_path), [], environ=["/tmp/libprocesshider.so"])
    assert found == ["/tmp/libprocesshider.so (deleted)"]
    assert stealth.self_preloaded_libraries(str(tmp_path), ["/etc/libprocesshider.so"], environ=[]) == \
        ["/tmp/libprocesshider.so (deleted)"]          # same library name, even from another path


def test_mountinfo_bind_mounts_over_proc_pid_and_hidepid(tmp_path):
    write(tmp_path / "self/mountinfo",
          "22 1 0:21 / /proc rw,nosuid - proc proc rw,hidepid=2\n"
          "40 22 8:1 /empty /proc/4242 rw,relatime - ext4 /dev/sda1 rw\n"
          "41 1 8:1 / /srv/proc\\0401 rw - ext4 /dev/sda1 rw\n"
          "garbage\n")
    binds, hidepid = stealth.proc_mounts(str(tmp_path))
    assert binds == ["/proc/4242 (from /empty)"]
    assert hidepid == "2"
    assert stealth.proc_mounts(str(tmp_path / "none")) == ([], "")


def test_hugepages_msr_and_nmi(tmp_path):
    proc_root, sys_root = tmp_path / "proc", tmp_path / "sys"
    write(proc_root / "meminfo", "MemTotal: 100 kB\nHugePages_Total:    1280\nHugepagesize:       2048 kB\n")
    write(sys_root / "kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "3\n")
    write(sys_root / "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "1280\n")
    assert stealth.hugepages(str(proc_root), str(sys_root)) == (3, 1048576)
    write(sys_root / "module/msr/parameters/allow_writes", "on\n")
    assert stealth.msr_state(str(sys_root)) == (True, "on")
    assert stealth.msr_state(str(tmp_path / "nosys")) == (None, "")
    (sys_root / "module/msr/parameters/allow_writes").unlink()
    (sys_root / "module/msr/parameters").rmdir()
    (sys_root / "module/msr").rmdir()
    assert stealth.msr_state(str(sys_root)) == (False, "")
    write(proc_root / "sys/kernel/nmi_watchdog", "0\n")
    assert stealth.read_int(str(proc_root / "sys/kernel/nmi_watchdog")) == 0
    write(proc_root / "sys/kernel/bad", "zero\n")
    assert stealth.read_int(str(proc_root / "sys/kernel/bad")) is None


def test_cpu_accounting_percentages_and_malformed_stat(tmp_path):
    state = StealthState()
    stealth.fill_cpu_accounting(state, system_ticks=stealth.USER_HZ * 4, visible_ticks=stealth.USER_HZ, elapsed=2.0)
    assert (state.system_cpu_percent, state.visible_cpu_percent, state.unexplained_cpu_percent) == (200.0, 50.0, 150.0)
    write(tmp_path / "stat", "intr 1 2 3\n")
    assert stealth.system_busy_ticks(str(tmp_path)) is None
    write(tmp_path / "stat", "cpu  100 5 50 9999 1 2 3 0 0 0\n")
    assert stealth.system_busy_ticks(str(tmp_path)) == 155


def test_smaps_rollup_is_read_only_for_busy_or_big_processes(tmp_path):
    write(tmp_path / "10/smaps_rollup", "Rss: 10 kB\nAnonHugePages:  2097152 kB\nPrivate_Hugetlb: 0 kB\n")
    write(tmp_path / "11/smaps_rollup", "AnonHugePages:  2048 kB\n")
    busy, idle = ProcessInfo(pid=10, cpu_percent=190.0), ProcessInfo(pid=11, cpu_percent=0.5, rss_bytes=10 << 20)
    stealth.add_hugepage_usage([busy, idle], str(tmp_path))
    assert busy.anon_hugepages_bytes == 2 << 30
    assert idle.anon_hugepages_bytes is None


# ------------------------------------------------------------------ hidden processes


def fake_proc_tree(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    write(root / "sys/kernel/pid_max", "32768\n")
    write(root / "loadavg", "0.1 0.1 0.1 1/80 4300\n")
    for pid, tgid, name in [(1, 1, "systemd"), (100, 100, "bash"), (101, 100, "bash"), (4242, 4242, "kworker_helper"),
                            (4243, 4242, "kworker_helper"), (5000, 5000, "shortlived")]:
        write(root / str(pid) / "status", f"Name:\t{name}\nTgid:\t{tgid}\nPPid:\t1\nUid:\t1000 1000 1000 1000\n")
        write(root / str(pid) / "cmdline", f"{name}\0--quiet\0")
    write(root / "100/task/100/children", "")
    write(root / "100/task/101/children", "")
    write(root / "1/task/1/children", "100 4242")
    return root


def test_hidden_process_is_found_threads_are_not_and_transients_are_dropped(tmp_path):
    root = fake_proc_tree(tmp_path)
    alive = {1, 100, 101, 4242, 4243, 5000}
    listing = {1, 100}                  # 4242 is hidden; 5000 is hidden too but exits before the re-check
    calls = {"n": 0}

    def probe(pid: int) -> bool:
        calls["n"] += 1
        return pid in alive

    def list_pids() -> set[int]:
        if calls["n"]:
            alive.discard(5000)         # after the first pass: the short-lived process is gone
        return set(listing)

    search = HiddenSearch(proc_root=str(root), list_pids=list_pids, probe=probe,
                          probe_all=lambda limit: sorted(p for p in alive if p <= limit), delay=0.01)
    hidden, how = stealth.find_hidden(search)
    assert hidden == {4242: "probe"}
    assert "32768" in phrase(how)


def test_thread_of_a_hidden_process_points_to_its_process(tmp_path):
    root = fake_proc_tree(tmp_path)
    search = HiddenSearch(proc_root=str(root), list_pids=lambda: {1, 100}, probe=lambda pid: pid in {4242, 4243},
                          probe_all=lambda limit: [4243], delay=0)
    hidden, _ = stealth.find_hidden(search)
    assert set(hidden) == {4242}       # found through its thread and through init's children list


def test_collect_stealth_adds_hidden_processes_to_the_snapshot(tmp_path):
    root = fake_proc_tree(tmp_path)
    write(tmp_path / "etc/ld.so.preload", "/usr/local/lib/libhide.so\n")
    search = HiddenSearch(proc_root=str(root), list_pids=lambda: {1, 100}, probe=lambda pid: pid in {1, 100, 4242},
                          probe_all=lambda limit: [1, 100, 4242], delay=0)
    options = SimpleNamespace(proc_root=str(root), sys_root=str(tmp_path / "sys"), etc_root=str(tmp_path / "etc"),
                              hidden_search=search, scan_binaries=False)
    snap = Snapshot(processes=[ProcessInfo(pid=1, name="systemd"), ProcessInfo(pid=100, name="bash", ppid=1)])
    coverage = stealth.collect_stealth(snap, options)
    assert {c.check for c in coverage} == {"stealth", "hidden-processes"}
    added = [p for p in snap.processes if p.pid == 4242]
    assert added and added[0].hidden and added[0].name == "kworker_helper"
    assert added[0].cmdline == ["kworker_helper", "--quiet"]
    assert [h.pid for h in snap.stealth.hidden_pids] == [4242]
    assert snap.stealth.ld_so_preload == ["/usr/local/lib/libhide.so"]


# ------------------------------------------------------------------ signals


def rules_of(report, pid=None, kind="process"):
    found = [f for f in report.findings if f.subject.kind == kind and (pid is None or f.subject.pid == pid)]
    return found[0] if found else None


def test_hidden_process_is_critical():
    snap = snapshot([proc(4242, "kworker_helper --quiet", exe="/tmp/.x/kworker_helper", hidden=True)])
    finding = rules_of(scan(snap), 4242)
    assert finding.severity.value == "critical"
    assert "AA-STEALTH-007" in finding.rule_ids
    assert "AA-STEALTH-002" in finding.rule_ids and "AA-STEALTH-004" in finding.rule_ids


def test_deleted_exe_after_package_upgrade_is_info_only_but_in_tmp_it_is_medium():
    upgraded = proc(10, "/usr/sbin/nginx -g daemon off;", exe="/usr/sbin/nginx", exe_deleted=True)
    dropped = proc(11, "./x", exe="/tmp/x", exe_deleted=True)
    report = scan(snapshot([upgraded, dropped]))
    first = rules_of(report, 10)
    assert first is None or first.severity.value == "info"
    assert rules_of(report, 11).severity.value == "medium"


@pytest.mark.parametrize("name, argv, exe, ppid, flagged", [
    ("kworker/0:1", [], "", 2, False),                                      # a real kernel thread
    ("sleep", ["[kworker/0:1]", "60"], "/usr/bin/sleep", 1, True),            # exec -a "[kworker/0:1]"
    ("kthreadd", ["kthreadd"], "/dev/shm/kthreadd", 1, True),
    ("[migration/3]", ["[migration/3]"], "", 1, True),                        # exe denied, but userland
    ("watchdogd", ["/usr/sbin/watchdog"], "/usr/sbin/watchdog", 1, False),
])
def test_kernel_thread_imitation(name, argv, exe, ppid, flagged):
    process = ProcessInfo(pid=77, ppid=ppid, name=name, exe=exe, cmdline=argv, username="root")
    finding = rules_of(scan(snapshot([process])), 77)
    assert (finding is not None and "AA-STEALTH-005" in finding.rule_ids) == flagged
    if flagged:
        assert finding.severity.value == "high"


def test_ld_preload_profilers_are_quiet_unknown_libraries_are_not():
    darshan = proc(20, "python3 sim.py", environ={"LD_PRELOAD": "/opt/darshan/lib/libdarshan.so"})
    odd = proc(21, "python3 sim.py", environ={"LD_PRELOAD": "/home/u/.cache/libx.so"})
    report = scan(snapshot([darshan, odd]))
    assert rules_of(report, 20) is None
    assert "AA-STEALTH-006" in rules_of(report, 21).rule_ids


def test_heavy_legitimate_training_job_in_conda_stays_quiet():
    job = proc(30, "/home/alice/.conda/envs/torch/bin/python train.py --epochs 90", cpu=790.0,
               anon_hugepages_bytes=512 << 20)
    report = scan(snapshot([job]))
    finding = rules_of(report, 30)
    assert finding is None or finding.severity.rank < 3   # never high


def test_host_level_signals():
    state = StealthState(ld_so_preload=["/usr/local/lib/libhide.so"], self_preloaded_libraries=["/tmp/libhide.so"],
                         proc_bind_mounts=["/proc/4242 (from /empty)"], proc_hidepid="2", msr_loaded=True,
                         msr_allow_writes="on", nmi_watchdog=0, hugepages_total=1280, hugepage_size_kb=2048,
                         system_cpu_percent=180.0, visible_cpu_percent=10.0, unexplained_cpu_percent=170.0)
    report = scan(snapshot([proc(40, "busy", cpu=195.0)], stealth=state))
    host = rules_of(report, kind="host")
    for rule in ("AA-STEALTH-010", "AA-STEALTH-011", "AA-STEALTH-012", "AA-STEALTH-013", "AA-STEALTH-014",
                 "AA-TUNE-001", "AA-TUNE-002", "AA-TUNE-003"):
        assert rule in host.rule_ids, rule
    assert host.severity.value == "high"
    assert all(r for r in host.reasons)


def test_quiet_host_has_no_host_finding():
    state = StealthState(nmi_watchdog=0, hugepages_total=0, msr_loaded=False, system_cpu_percent=20.0,
                         visible_cpu_percent=19.0, unexplained_cpu_percent=1.0)
    assert rules_of(scan(snapshot([proc(41, "idle")], stealth=state)), kind="host") is None


def test_content_and_config_signals_are_tied_to_every_pid(compiled_rules):
    strings = compiled_rules.signature_strings()
    binary = BinaryScan(path="/tmp/dbus-daemon-helper", pids=[50, 51], sha256="ab" * 32, matched_strings=strings[:6])
    config = MinerConfig(path="/srv/w/config.json", pids=[52], urls=["stratum+tcp://pool.supportxmr.com:3333"],
                         users=[MONERO_WALLET], keys=["pools", "donate-level"])
    procs = [proc(p, "dbus-daemon-helper --session", exe="/tmp/dbus-daemon-helper") for p in (50, 51)]
    procs.append(proc(52, "backup-sync", exe="/usr/local/bin/backup-sync"))
    report = scan(snapshot(procs, binaries=[binary], configs=[config]))
    for pid in (50, 51):
        finding = rules_of(report, pid)
        assert finding.severity.rank >= 3
        assert any(e.field == "binary" for e in finding.evidence)
    finding = rules_of(report, 52)
    assert finding.severity.rank >= 3
    fields = {e.field for e in finding.evidence}
    assert fields == {"config"}
    assert "AA-CONFIG-001" in finding.rule_ids
    assert any(MONERO_WALLET in e.value for e in finding.evidence)


def test_cpu_that_no_listed_process_explains_is_measured(tmp_path, monkeypatch):
    """CPU that /proc/stat counts but no listed process accounts for is 'unexplained': driven by a fake
    /proc/stat and a fake clock, so a busy machine cannot move the figures."""
    hz = stealth.USER_HZ
    clock = iter([100.0, 104.0])                     # a 4-second window
    monkeypatch.setattr(stealth.time, "monotonic", lambda: next(clock))
    write(tmp_path / "stat", f"cpu  {10 * hz} 0 {2 * hz} 999999 0 0 0 0 0 0\ncpu0 1 0 1 1\n")
    account = stealth.CpuAccount.start(str(tmp_path))
    # 4 s later: 6 more CPU-seconds of user+system (1.5 cores); idle and iowait do not count.
    write(tmp_path / "stat", f"cpu  {15 * hz} {0} {3 * hz} 1999999 777 0 0 0 0 0\ncpu0 1 0 1 1\n")
    listed = [proc(10, "make -j8", cpu_seconds=1.0, children_cpu_seconds=1.0),
              proc(11, "kworker/0:1", cpu_seconds=2.0, hidden=True)]     # a hidden process explains nothing
    shown = Snapshot(processes=listed)
    account.finish(shown)
    assert shown.stealth.system_cpu_percent == 150.0
    assert shown.stealth.visible_cpu_percent == 50.0
    assert shown.stealth.unexplained_cpu_percent == 100.0


def test_cpu_accounting_never_goes_negative_and_unreadable_stat_measures_nothing(tmp_path, monkeypatch):
    hz = stealth.USER_HZ
    clock = iter([0.0, 2.0])
    monkeypatch.setattr(stealth.time, "monotonic", lambda: next(clock))
    write(tmp_path / "stat", f"cpu  {hz} 0 0 0\n")
    account = stealth.CpuAccount.start(str(tmp_path))
    write(tmp_path / "stat", f"cpu  {2 * hz} 0 0 0\n")
    busy = Snapshot(processes=[proc(10, "python3 train.py", cpu_seconds=3.0)])      # more than the host: rounding, races
    account.finish(busy)
    assert (busy.stealth.system_cpu_percent, busy.stealth.unexplained_cpu_percent) == (50.0, 0.0)
    write(tmp_path / "stat", "garbage\n")
    assert stealth.system_busy_ticks(str(tmp_path)) is None
    assert stealth.system_busy_ticks(str(tmp_path / "missing")) is None


@pytest.fixture
def cpu_load():
    """Load this test creates and ends by PID: stress-ng on every CPU (busy Python loops where stress-ng is
    missing), so the measurement below is checked on a machine with no free core."""
    import shutil
    import subprocess

    def start() -> list[subprocess.Popen]:
        cpus = os.cpu_count() or 2
        if shutil.which("stress-ng"):
            command = [["stress-ng", "--cpu", str(cpus), "--timeout", "300s", "--quiet"]]
        else:
            command = [[sys.executable, "-c", "while True: pass"]] * cpus
        started.extend(subprocess.Popen(c, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True) for c in command)
        return started
    started: list[subprocess.Popen] = []
    yield start
    for process in started:
        try:
            os.killpg(process.pid, 15)          # stress-ng's workers are in its own session
        except ProcessLookupError:
            pass
        process.wait(timeout=30)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
@pytest.mark.parametrize("loaded", [False, True], ids=["idle", "under-stress-ng"])
def test_a_real_busy_child_left_out_of_the_list_is_unexplained_cpu(cpu_load, loaded):
    """A real busy child, left out of the process list as a hider would. Written to hold on a loaded
    machine (and run once under load the test creates): it waits until the child has really run,
    however slowly, and compares the two accounts with the child's own CPU time instead of a fixed
    share of a core."""
    import subprocess
    import time as clock

    from audit_agent.collect.processes import first_reading, read_processes

    if loaded:
        cpu_load()
    account = stealth.CpuAccount.start()
    first = first_reading()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
    try:
        deadline = clock.monotonic() + 120
        while child_cpu_seconds(busy.pid) < 0.3 and clock.monotonic() < deadline:
            clock.sleep(0.1)
        processes, _ = read_processes(first)
    finally:
        busy.kill()
        busy.wait()
    child = next(p for p in processes if p.pid == busy.pid)
    assert child.cpu_seconds is not None and child.cpu_seconds > 0
    shown = Snapshot(processes=processes)
    account.finish(shown)
    hidden = Snapshot(processes=[p for p in processes if p.pid != busy.pid])
    account.finish(hidden)
    child_percent = 100.0 * child.cpu_seconds / max(clock.monotonic() - account.started, 1e-6)
    # /proc/stat counted the child's work: the machine was at least as busy as the child alone.
    assert shown.stealth.system_cpu_percent >= child_percent * 0.5
    # Leaving the child out of the list moves exactly its share from "visible" to "unexplained".
    moved = shown.stealth.visible_cpu_percent - hidden.stealth.visible_cpu_percent
    assert moved > 0
    assert hidden.stealth.unexplained_cpu_percent >= shown.stealth.unexplained_cpu_percent


def child_cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat (fields 14 and 15, after the comm's ')')."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / stealth.USER_HZ


@pytest.mark.parametrize("list_pids, reason", [
    (lambda: set(), "listing is empty"),
    (lambda: (_ for _ in ()).throw(PermissionError(13, "Permission denied")), "cannot list"),
])
def test_hidden_process_check_that_could_not_list_proc_is_an_error_not_ok(tmp_path, list_pids, reason):
    """An empty or unreadable /proc listing means the check could not look: never reported as clean."""
    root = fake_proc_tree(tmp_path)
    search = HiddenSearch(proc_root=str(root), list_pids=list_pids, probe=lambda pid: True,
                          probe_all=lambda limit: [1, 100, 4242], delay=0)
    options = SimpleNamespace(proc_root=str(root), sys_root=str(tmp_path / "sys"), etc_root=str(tmp_path / "etc"),
                              hidden_search=search)
    coverage = {c.check: c for c in stealth.collect_stealth(Snapshot(processes=[]), options)}
    assert coverage["hidden-processes"].status == CoverageStatus.ERROR
    assert reason in coverage["hidden-processes"].reason


def every_candidate(search: HiddenSearch, ppids: set[int]) -> dict[int, str]:
    """find_hidden's candidates as they were: every probed PID, listed or not, put in and then passed over."""
    listed = search.listing()
    limit, _ = stealth.probe_limit(search.proc_root, listed)
    candidates: dict[int, str] = {}
    for pid in sorted(search.kernel_listing() - listed):
        candidates[pid] = "getdents64"
    for pid in search.brute(limit):
        candidates.setdefault(pid, "probe")
    for pid in ppids:
        candidates.setdefault(pid, "parent-of-visible")
    newest = stealth.last_pid(search.proc_root)
    if newest:
        candidates.setdefault(newest, "last-pid")
    return stealth.resolve_candidates(search, candidates, listed, set())


def test_thousands_of_listed_processes_are_not_candidates_and_nothing_else_changes(tmp_path):
    """Listed PIDs are left out before the candidates are resolved, not after: the hidden processes and how
    each was found must be what resolving every probed PID gives."""
    root = fake_proc_tree(tmp_path)
    listing = {1, 100, *range(200, 3000)}
    alive = listing | {101, 4242, 4243, 5000}
    search = HiddenSearch(proc_root=str(root), list_pids=lambda: set(listing), probe=lambda pid: pid in alive,
                          probe_all=lambda limit: sorted(p for p in alive if p <= limit),
                          kernel_list_pids=lambda: listing | {5000}, delay=0)
    ppids = {1, 100, 250, 4242}
    hidden, _ = stealth.find_hidden(search, ppids)
    assert hidden == every_candidate(search, ppids) == {4242: "probe", 5000: "getdents64"}


THREADS = """
import threading, time
stop = threading.Event()
for _ in range({n}):
    threading.Thread(target=stop.wait, daemon=True).start()
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def threaded_process():
    """A real process with 300 threads, ended by its PID."""
    import subprocess
    child = subprocess.Popen([sys.executable, "-c", THREADS.format(n=300)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and "ready" in child.stdout.readline()
    yield child.pid
    child.kill()
    child.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads probed on the real /proc")
def test_threads_of_a_listed_process_are_known_from_its_task_folder(threaded_process, monkeypatch):
    """kill(2) answers for every thread and /proc lists none: the threads of a listed process with threads are
    known from its task folder, not read one status file each; a thread of a process left out of the listing
    still leads to that process."""
    tids = {int(t) for t in os.listdir(f"/proc/{threaded_process}/task")}
    assert len(tids) > 300
    real_tgid = stealth.read_tgid
    asked: list[int] = []

    def counting_tgid(proc_root: str, pid: int) -> int | None:
        asked.append(pid)
        return real_tgid(proc_root, pid)

    monkeypatch.setattr(stealth, "read_tgid", counting_tgid)
    search = HiddenSearch(proc_root="/proc", probe_all=lambda limit: sorted(tids), delay=0)
    hidden, _ = stealth.find_hidden(search, (), [threaded_process])
    assert hidden == {} and not set(asked) & tids

    asked.clear()               # without the reader's word on threads: each thread is asked, the answer is the same
    hidden, _ = stealth.find_hidden(search, ())
    assert hidden == {} and tids - {threaded_process} <= set(asked)

    listing = stealth.listed_pids("/proc") - {threaded_process}     # as a preload hider would list /proc
    search = HiddenSearch(proc_root="/proc", list_pids=lambda: set(listing), probe_all=lambda limit: sorted(tids),
                          delay=0)
    hidden, _ = stealth.find_hidden(search, (), [threaded_process])
    assert set(hidden) == {threaded_process}

    # A readdir hook that names the hidden process's threads as threads of a listed process (this one)
    # does not hide it: the task folders are listed with getdents64, past libc.
    if stealth.rawsys.available():
        real_listdir = os.listdir
        own_task = f"/proc/{os.getpid()}/task"

        def lying_listdir(path=".", *args, **kwargs):
            names = real_listdir(path, *args, **kwargs)
            return [*names, *map(str, tids)] if os.fsdecode(path) == own_task else names

        with monkeypatch.context() as patch:
            patch.setattr(os, "listdir", lying_listdir)
            hidden, _ = stealth.find_hidden(search, (), [threaded_process, os.getpid()])
        assert set(hidden) == {threaded_process}
