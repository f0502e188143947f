"""System calls past libc (rawsys), the kernel listing in the hidden-process search, and the hook signals."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit_agent.collect import rawsys, stealth
from audit_agent.collect.stealth import HiddenSearch
from audit_agent.model import StealthState
from tests.factories import proc, scan, snapshot
from tests.test_e2e_hidden import compile_c, needs_cc

REPO = Path(__file__).resolve().parent.parent
HIDER_SOURCE = REPO / "tests" / "standin" / "hider.c"
linux_raw = pytest.mark.skipif(not rawsys.available(), reason="raw system calls need Linux on x86_64/arm64/riscv64")


@linux_raw
def test_getdents_listing_equals_os_listdir_across_many_buffers(tmp_path):
    names = {f"entry-{i:05d}-{'x' * 40}" for i in range(3000)}     # ~200 KiB of dirents: several getdents64 calls
    for name in names:
        (tmp_path / name).touch()
    assert set(rawsys.list_dir(str(tmp_path))) == names == set(os.listdir(tmp_path))
    assert len(rawsys.list_dir(str(tmp_path), limit=10)) == 10
    with pytest.raises(FileNotFoundError):
        rawsys.list_dir(str(tmp_path / "missing"))
    with pytest.raises(NotADirectoryError):
        rawsys.list_dir(str(tmp_path / sorted(names)[0]))


@linux_raw
def test_raw_read_is_bounded_and_refuses_a_final_symlink_when_asked(tmp_path):
    data = os.urandom(200_000)
    (tmp_path / "blob").write_bytes(data)
    assert rawsys.read_file(str(tmp_path / "blob"), 1 << 20) == data
    assert rawsys.read_file(str(tmp_path / "blob"), 1000) == data[:1000]
    (tmp_path / "link").symlink_to(tmp_path / "blob")
    assert rawsys.readlink(str(tmp_path / "link")) == str(tmp_path / "blob")
    with pytest.raises(OSError) as refused:
        rawsys.read_file(str(tmp_path / "link"), 10, follow=False)
    assert refused.value.errno == errno.ELOOP
    with pytest.raises(FileNotFoundError):
        rawsys.read_file(str(tmp_path / "none"), 10)


@linux_raw
def test_kill_probe_tells_alive_from_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert rawsys.pid_alive(os.getpid())
    assert not rawsys.pid_alive(child.pid) or os.path.exists(f"/proc/{child.pid}")    # reaped (unless reused)
    alive = rawsys.alive_pids(stealth.pid_max_of("/proc"))
    assert os.getpid() in alive and 1 in alive


@linux_raw
def test_nothing_is_interposed_in_a_clean_process():
    check = subprocess.run([sys.executable, "-c", "from audit_agent.collect import rawsys; "
                            "print(rawsys.interposed_functions())"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO), "LD_PRELOAD": ""}, check=True)
    assert check.stdout.strip() == "{}"


@needs_cc
@linux_raw
def test_interposed_functions_name_the_hiding_library_and_raw_calls_see_past_it(tmp_path):
    hider = compile_c(HIDER_SOURCE.read_text(), tmp_path / "libhider.so", "-shared", "-fPIC", "-ldl")
    victim = subprocess.Popen(["sleep", "60"])
    try:
        code = ("import os, json; from audit_agent.collect import rawsys; pid = %d; "
                "print(json.dumps([rawsys.interposed_functions(), str(pid) in os.listdir('/proc'), "
                "str(pid) in rawsys.list_dir('/proc'), os.path.exists('/proc/%%d' %% pid), rawsys.pid_alive(pid), "
                "rawsys.readlink('/proc/%%d/exe' %% pid)]))") % victim.pid
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(REPO), "LD_PRELOAD": str(hider),
                                  "HIDE_PID": str(victim.pid)})
    finally:
        victim.kill()
        victim.wait()
    import json
    hooked, libc_lists, raw_lists, libc_exists, raw_alive, exe = json.loads(out.stdout)
    assert {"readdir", "open", "stat", "kill", "fopen"} <= set(hooked)
    assert set(hooked.values()) == {str(hider)}
    assert (libc_lists, libc_exists) == (False, False), "the hider hides the pid from libc"
    assert (raw_lists, raw_alive) == (True, True), "system calls still see it"
    assert exe.endswith("sleep")


# ------------------------------------------------------------------ the search and the signals


def test_kernel_listing_finds_what_libc_listing_hides(tmp_path):
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "status").write_text("Name:\tminer\nTgid:\t4242\nPPid:\t1\n")
    search = HiddenSearch(proc_root=str(tmp_path), list_pids=lambda: {1, 100}, kernel_list_pids=lambda: {1, 100, 4242},
                          probe=lambda pid: pid in {1, 100, 4242}, probe_all=lambda limit: [1, 100], delay=0)
    hidden, _ = stealth.find_hidden(search)
    assert hidden == {4242: "getdents64"}
    # gone by the time it is probed: not reported
    search.probe = lambda pid: pid in {1, 100}
    assert stealth.find_hidden(search)[0] == {}


def test_replaced_readdir_or_kill_is_high_even_from_a_benign_name():
    hooked = ["readdir (/usr/lib/libjemalloc.so.2)", "kill (/usr/lib/libjemalloc.so.2)"]
    host = scan(snapshot([proc(40, "idle")], stealth=StealthState(hooked_functions=hooked))).findings
    finding = [f for f in host if f.subject.kind == "host"][0]
    assert "AA-STEALTH-015" in finding.rule_ids and finding.severity.value == "high"
    assert "readdir" in finding.reasons[0] and "libjemalloc" in finding.reasons[0]


def test_a_benign_library_replacing_open_and_stat_is_only_low():
    hooked = ["open (/usr/lib/x86_64-linux-gnu/libfakeroot/libfakeroot-sysv.so)",
              "stat (/usr/lib/x86_64-linux-gnu/libfakeroot/libfakeroot-sysv.so)"]
    findings = scan(snapshot([proc(40, "idle")], stealth=StealthState(hooked_functions=hooked))).findings
    host = [f for f in findings if f.subject.kind == "host"]
    assert host and host[0].severity.value == "low"


def test_ld_so_preload_that_libc_cannot_see_is_critical():
    state = StealthState(ld_so_preload=["/usr/lib/libsystem.so"], ld_so_preload_hidden=True)
    host = [f for f in scan(snapshot([proc(40, "idle")], stealth=state)).findings if f.subject.kind == "host"][0]
    assert host.severity.value == "critical"
    assert {"AA-STEALTH-010", "AA-STEALTH-016"} <= set(host.rule_ids)
    quiet = StealthState(ld_so_preload=[], ld_so_preload_hidden=False)
    assert not [f for f in scan(snapshot([proc(40, "idle")], stealth=quiet)).findings if f.subject.kind == "host"]
