"""Behaviour signals (issue 11) on small inputs: command lines cut by bytes, packing, identity, algorithm-shaped
memory, CPU over a whole life, memory scanning of a real process (this one), suspect selection."""
from __future__ import annotations

import os
import sys

import pytest

from audit_agent.collect import memscan
from audit_agent.collect.packing import examine
from audit_agent.collect.processes import MAX_CMDLINE_CHARS, cap_cmdline, cmdline_length
from audit_agent.collect.suspects import find_suspects, suspect_reasons
from audit_agent.detect import Context, behaviour, identity
from audit_agent.model import (
    HostInfo,
    MemoryRegion,
    MemoryScan,
    Packing,
    ProcessInfo,
    Snapshot,
)
from audit_agent.policy import Policy
from tests.conftest import MONERO_WALLET, have_compiler

POOL = "stratum+tcp://pool.example.net:3333"
NOW = 1_800_000_000.0


def context(snapshot: Snapshot, compiled_rules, policy: Policy | None = None) -> Context:
    return Context.build(snapshot, compiled_rules, policy or Policy())


# ---------------------------------------------------------------- item 6: command lines by bytes, head and tail

def test_pool_after_hundreds_of_padding_arguments_is_kept():
    argv = ["./x", *(["--pad=" + "a" * 40] * 3000), "-o", POOL]
    capped = cap_cmdline(argv)
    assert capped[-2:] == ["-o", POOL], "the tail survives the cut"
    assert capped[0] == "./x"
    assert any("arguments cut]" in arg for arg in capped)
    assert sum(len(arg) + 1 for arg in capped) <= MAX_CMDLINE_CHARS + 100
    assert cmdline_length(argv) == sum(len(arg) + 1 for arg in argv)


def test_pool_at_the_end_of_one_huge_argument_is_kept():
    argv = ["./x", "--url=" + "A" * 200_000 + POOL]
    capped = cap_cmdline(argv)
    assert capped[1].endswith(POOL) and capped[1].startswith("--url=AAA")
    assert "characters cut]" in capped[1] and len(capped[1]) < 9000
    assert cmdline_length(argv) > 200_000


def test_ordinary_command_line_is_untouched():
    argv = ["python3", "train.py", "--epochs", "10"] + [f"--opt{i}" for i in range(300)]
    assert cap_cmdline(argv) == argv, "300 short arguments are no reason to cut (the old cap was 256)"
    assert cmdline_length(argv) is None


def test_long_command_line_is_context_only(compiled_rules):
    proc = ProcessInfo(pid=10, name="make", exe="/usr/bin/make", cmdline=["make"], cmdline_bytes=300_000)
    found = behaviour.signals(context(Snapshot(processes=[proc]), compiled_rules))
    assert [(s.rule_id, s.weak, s.severity.value) for s in found] == [("AA-LONG-001", True, "info")]


# ---------------------------------------------------------------- item 7: packing

@pytest.mark.skipif(not have_compiler(), reason="no C compiler")
@pytest.mark.parametrize("pack, packed, marks", [(None, False, []), ("scrubbed", True, []),
                                                 ("upx-marks", True, ["UPX!", "$Info: This file is packed with the UPX",
                                                                     "$Id: UPX "])])
def test_packing_of_the_stand_in(tmp_path, pack, packed, marks):
    from tests.standin.cbuild import build_cminer
    exe = build_cminer(tmp_path, port=4444, pack=pack)
    fd = os.open(exe, os.O_RDONLY)
    try:
        result = examine(fd, os.fstat(fd).st_size, str(exe))
    finally:
        os.close(fd)
    assert identity.is_packed(result) == packed, result
    assert result.marks == marks
    assert result.section_table == (pack is None)


@pytest.mark.skipif(not have_compiler(), reason="no C compiler")
def test_packing_facts_are_kept_between_runs_until_the_file_changes(tmp_path, monkeypatch):
    """A scheduled scan does not read an unchanged executable again for its packing facts: the facts an earlier
    run kept (keyed by device, inode, size, mtime and ctime) come back the same; a file that changed is read
    again; a kept file of the wrong shape, or one others may write, is not believed."""
    import json

    from audit_agent.collect import packing, scan_cache
    from tests.standin.cbuild import build_cminer
    exe = str(build_cminer(tmp_path, port=4444, pack="scrubbed"))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    examined: list[str] = []
    real_examine = packing.examine

    def counting(fd, size, shown):
        examined.append(shown)
        return real_examine(fd, size, shown)
    monkeypatch.setattr(packing, "examine", counting)

    def run() -> Packing:
        kept = packing.Kept(state)
        found = packing.examine_path(exe, exe, {}, kept)
        kept.save()
        assert found is not None and found[1] is not None
        return found[1]
    first = run()
    assert identity.is_packed(first) and examined == [exe]
    assert run() == first and examined == [exe], "an unchanged file is not read again"
    with open(exe, "ab") as grown:
        grown.write(b"\0" * 4096)
    run()
    assert examined == [exe, exe], "a changed file is read again"
    saved = state / scan_cache.PACKING_FILE
    data = json.loads(saved.read_text())
    for entry in data["entries"].values():
        entry["entropy"] = "low"                # the wrong shape: not an answer
    saved.write_text(json.dumps(data))
    run()
    assert len(examined) == 3
    data = json.loads(saved.read_text())
    for entry in data["entries"].values():
        entry.update(marks=[], entropy=1.0, section_table=True)     # "clean", written where others may write
    saved.write_text(json.dumps(data))
    os.chmod(saved, 0o666)
    assert identity.is_packed(run()) and len(examined) == 4


@pytest.mark.parametrize("path", [sys.executable, "/usr/bin/gcc", "/usr/bin/ls", "/usr/lib/chromium/chromium"])
def test_ordinary_binaries_are_not_packed(path):
    real = os.path.realpath(path)
    if not os.path.isfile(real):
        pytest.skip(f"{path} not installed")
    fd = os.open(real, os.O_RDONLY)
    try:
        result = examine(fd, os.fstat(fd).st_size, real)
    finally:
        os.close(fd)
    assert not identity.is_packed(result), result
    assert result.sampled_bytes > 0


def test_garbage_file_is_judged_on_its_bytes(tmp_path):
    noise = tmp_path / "noise"
    noise.write_bytes(os.urandom(100_000))
    text = tmp_path / "script.sh"
    text.write_bytes(b"#!/bin/sh\necho hello\n" * 500)
    for path, packed in ((noise, True), (text, False)):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert identity.is_packed(examine(fd, os.fstat(fd).st_size, str(path))) == packed
        finally:
            os.close(fd)


def test_packed_signal_severity_follows_the_place(compiled_rules):
    procs = [ProcessInfo(pid=1, name="a", exe="/tmp/.x/a"), ProcessInfo(pid=2, name="b", exe="/home/u/bin/b")]
    packing = [Packing(path="/tmp/.x/a", pids=[1], entropy=7.9, section_table=False),
               Packing(path="/home/u/bin/b", pids=[2], marks=["UPX!"]),
               Packing(path="/home/u/bin/c", pids=[3], entropy=6.1)]
    found = behaviour.signals(context(Snapshot(processes=procs, packing=packing), compiled_rules))
    packed = {s.subject.pid: s.severity.value for s in found if s.rule_id == "AA-PACK-001"}
    assert packed == {1: "high", 2: "medium"}


# ---------------------------------------------------------------- item 3: identity

@pytest.mark.parametrize("name, argv0, exe, lie", [
    ("python3", "python3", "/tmp/x/cminer", True),
    ("python3", "python3", "/usr/bin/python3.11", False),
    ("python3", "/home/u/miniconda3/bin/python3", "/home/u/miniconda3/bin/python3.12", False),
    ("cminer", "python3", "/tmp/cminer", True),                 # argv[0] rewritten with exec -a
    ("sshd", "sshd: root@pts/0", "/usr/sbin/sshd", False),
    ("sshd", "sshd", "/tmp/.ssh/sshd", True),                   # right name, not the packaged binary
    ("sshd-session", "sshd-session: u", "/usr/lib/openssh/sshd-session", False),
    ("nginx", "nginx: worker process", "/usr/sbin/nginx", False),
    ("nginx", "nginx: master process", "/tmp/nginx", True),
    ("systemd-journal", "/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald", False),
    ("java", "java", "/home/u/jdk-21/bin/java", False),         # downloaded JDKs are normal
    ("java", "java", "/var/tmp/j", True),
    ("top", "top", "/usr/bin/top", False),
    ("python3", "python3", "", False),                          # no executable to contradict (kernel side)
])
def test_identity_claims(name, argv0, exe, lie):
    proc = ProcessInfo(pid=5, name=name, exe=exe, cmdline=[argv0])
    assert (identity.identity_claim(proc) is not None) == lie


def test_daemon_whose_packaged_binary_was_upgraded_is_not_a_lie():
    upgraded = ProcessInfo(pid=5, name="nginx", exe="/usr/sbin/nginx", cmdline=["nginx: worker process"],
                           exe_deleted=True)
    assert identity.identity_claim(upgraded) is None


def test_embedding_runtime_is_not_a_lie(compiled_rules):
    embedded = ProcessInfo(pid=5, name="python3", exe="/usr/bin/uwsgi-core", cmdline=["python3"],
                           libraries=["libc.so.6", "libpython3.11.so.1.0"])
    impostor = ProcessInfo(pid=6, name="python3", exe="/tmp/m", cmdline=["python3"], libraries=["libc.so.6"])
    found = identity.signals(context(Snapshot(processes=[embedded, impostor]), compiled_rules))
    assert [(s.subject.pid, s.rule_id, s.severity.value) for s in found] == [(6, "AA-IDENT-001", "high")]
    assert "maps no libpython" in found[0].reason


# ---------------------------------------------------------------- item 2: algorithm-shaped memory

def smaps_entry(size: int, flags: str = "rd wr mr mw me ac sd", path: str = "", page_kb: int = 4) -> str:
    start = 0x7F0000000000 + smaps_entry.offset
    smaps_entry.offset += size + 0x1000000
    return (f"{start:x}-{start + size:x} rw-p 00000000 00:00 0 {path}\nSize: {size // 1024} kB\n"
            f"KernelPageSize: {page_kb} kB\nAnonHugePages: 0 kB\nVmFlags: {flags}\n")


smaps_entry.offset = 0  # type: ignore[attr-defined]
MiB = 1 << 20


@pytest.mark.parametrize("sizes, flags, shapes", [
    ([256 * MiB], "rd wr mr mw me ac hg", ["randomx-cache"]),
    ([256 * MiB + 4 * MiB], "rd wr mr mw me ac hg", ["randomx-cache"]),          # merged with two scratchpads
    ([256 * MiB + 4096], "rd wr mr mw me ac", ["randomx-cache"]),                # malloc'd, no huge pages
    ([2080 * MiB], "rd wr mr mw me ac ht", ["randomx-dataset"]),
    ([2 * MiB, 4 * MiB], "rd wr mr mw me ac hg", ["scratchpad", "scratchpad"]),
    ([2 * MiB], "rd wr mr mw me ac", []),                                        # no huge pages: anything
    ([8 * MiB], "rd wr mr mw me ac gd hg", []),                                  # a thread stack
    ([300 * MiB, 64 * MiB, 255 * MiB], "rd wr mr mw me ac hg", []),
])
def test_algorithm_regions(sizes, flags, shapes):
    text = "".join(smaps_entry(size, flags) for size in sizes).encode()
    regions = memscan.algorithm_regions(memscan.parse_smaps(text), threads=2)
    assert [r.shape for r in regions] == shapes


def test_randomx_shape_needs_more_than_a_big_array(compiled_rules):
    miner = ProcessInfo(pid=7, name="kworker", exe="/dev/shm/k")
    numpy_job = ProcessInfo(pid=8, name="python3", exe="/usr/bin/python3.11",
                            libraries=["libpython3.11.so.1.0", "_multiarray_umath.cpython-311.so"])
    scans = [MemoryScan(pid=7, regions=[MemoryRegion(256 * MiB, "randomx-cache", True),
                                        MemoryRegion(4 * MiB, "scratchpad", True)], busy_threads=2, lockstep=True),
             MemoryScan(pid=8, regions=[MemoryRegion(256 * MiB, "randomx-cache", True)], busy_threads=1)]
    found = behaviour.signals(context(Snapshot(processes=[miner, numpy_job], memory=scans), compiled_rules))
    shaped = {s.subject.pid: (s.severity.value, s.weak) for s in found if s.rule_id == "AA-MEM-002"}
    assert shaped == {7: ("medium", False), 8: ("info", True)}
    assert "2 scratchpad-sized" in next(s.reason for s in found if s.subject.pid == 7)


# ---------------------------------------------------------------- item 4: CPU over a whole life

def life(pid: int, lifetime: float, window: float, age: float = 3600, exe: str = "/opt/x/worker") -> ProcessInfo:
    return ProcessInfo(pid=pid, name=f"w{pid}", exe=exe, cmdline=[exe], create_time=NOW - age,
                       lifetime_cpu_seconds=lifetime * age / 100, cpu_percent=window, allowed_cpus=4)


def test_paused_and_throttled_processes_still_show(compiled_rules):
    snapshot = Snapshot(collected_at=NOW, window_seconds=5, host=HostInfo(cpu_threads=4), processes=[
        life(1, lifetime=95, window=0.0),           # busy all its life, idle while we watched
        life(2, lifetime=40, window=38, exe="/tmp/w"),   # throttled to 40% of a core
        life(3, lifetime=3, window=1),              # an idle daemon
        life(4, lifetime=90, window=2, age=20),     # too young to judge
        life(5, lifetime=60, window=55, exe="/usr/bin/python3.11"),     # a generic runtime: the load checks' call
    ])
    found = {(s.subject.pid, s.rule_id): s for s in behaviour.signals(context(snapshot, compiled_rules))}
    assert set(found) == {(1, "AA-CPU-002"), (2, "AA-CPU-001")}
    assert found[(1, "AA-CPU-002")].severity.value == "medium" and found[(1, "AA-CPU-002")].weak
    assert found[(2, "AA-CPU-001")].severity.value == "low", "out of place: raised from info"
    assert "world-writable" in found[(2, "AA-CPU-001")].reason


def test_lifetime_thresholds_come_from_the_policy(compiled_rules):
    policy = Policy()
    policy.thresholds.lifetime_min_seconds = 7200
    snapshot = Snapshot(collected_at=NOW, window_seconds=5, processes=[life(1, lifetime=95, window=0.0)])
    assert behaviour.signals(context(snapshot, compiled_rules, policy)) == []


# ---------------------------------------------------------------- item 1: memory strings and suspects

def test_memory_of_a_real_process_is_scanned_within_bounds(processes, monkeypatch):
    """A child decodes a string only in memory (its argv holds it XOR-ed); the scan finds it, within bounds."""
    secret = "stratum+ssl://10.9.8.7:443/decoded-only-in-memory"
    hidden = bytes(b ^ 0x5A for b in secret.encode()).hex()
    code = ("import sys,time; s = bytes(b ^ 0x5A for b in bytes.fromhex(sys.argv[1])).decode(); "
            "print('ready', flush=True); time.sleep(120)")
    child = processes.start([sys.executable, "-c", code, hidden], wait_for_line="ready")
    monkeypatch.setattr(memscan, "PROCESS_SECONDS", 60.0)     # a busy host: the byte bound is what is tested
    strings = [secret, "never-present-" + "x" * 20]
    result = memscan.scan_process(child.pid, ["busy"], "/proc", 64 << 20, sys.executable, strings,
                                  [s.encode() for s in strings], None)
    assert result.record.matched_strings == [secret]
    assert 0 < result.record.scanned_bytes <= 64 << 20
    assert any(lib.startswith("libc") for lib in result.libraries or [])
    small = memscan.scan_process(child.pid, ["busy"], "/proc", 4096, sys.executable, strings,
                                 [s.encode() for s in strings], None)
    assert small.record.cut.startswith("byte bound") and small.record.scanned_bytes <= 4096 + 1
    monkeypatch.setattr(memscan, "PROCESS_SECONDS", 0.0)
    bounded = memscan.scan_process(child.pid, ["busy"], "/proc", 64 << 20, sys.executable, strings,
                                   [s.encode() for s in strings], None)
    assert bounded.record.cut.startswith("time bound")


def test_the_agent_never_scans_its_own_memory(processes):
    """Its memory holds the whole rule pack; a child of the same program, as busy-looking, is scanned."""
    from types import SimpleNamespace
    child = processes.start([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                            wait_for_line="ready")

    def looks_suspect(pid: int) -> ProcessInfo:
        return ProcessInfo(pid=pid, name="python3", exe="/tmp/.x/python3", cpu_percent=100.0,
                           lifetime_cpu_seconds=100.0, create_time=NOW - 1000)
    snapshot = Snapshot(processes=[looks_suspect(os.getpid()), looks_suspect(child.pid)])
    memscan.collect_memory(snapshot, SimpleNamespace(proc_root="/proc", signature_strings=["stratum+tcp://"]))
    assert [record.pid for record in snapshot.memory] == [child.pid]


def test_memory_of_a_vanished_process_is_an_error_not_a_crash():
    result = memscan.scan_process(2 ** 22 + 12345, ["busy"], "/proc", 1 << 20, "", [], [], None)
    assert result.record.error and result.record.scanned_bytes == 0


def test_signature_lists_in_memory_are_not_miners(compiled_rules):
    proc = ProcessInfo(pid=9, name="python3", exe="/usr/bin/python3.11")
    everything = [s for s in compiled_rules.signature_strings()]
    miner = MemoryScan(pid=9, matched_strings=["stratum+ssl://", "rx/0", "cn/r"], scanned_bytes=MiB)
    scanner = MemoryScan(pid=9, matched_strings=everything, scanned_bytes=MiB)
    found = behaviour.signals(context(Snapshot(processes=[proc], memory=[miner]), compiled_rules))
    assert any(s.rule_id == "AA-MEM-001" and s.severity.value == "high" and not s.weak for s in found)
    found = behaviour.signals(context(Snapshot(processes=[proc], memory=[scanner]), compiled_rules))
    assert [(s.rule_id, s.severity.value, s.weak) for s in found] == [("AA-MEM-001", "info", True)]


def test_one_family_found_by_both_engines_is_one_family(compiled_rules):
    """Measured on a real xmrig 6.26 (UPX-packed, marks scrubbed): its memory matches the pack's xmrig and
    Stratum-client strings and the YARA rules written for the same two rules. That is two families, a miner,
    not four and a signature list."""
    proc = ProcessInfo(pid=9, name="python3", exe="/var/tmp/.cache/.x/python3")
    xmrig = MemoryScan(pid=9, scanned_bytes=8 * MiB,
                       matched_strings=["XMRig ", "xmrig.com", "stratum+tcp://", "stratum+ssl://", "mining.subscribe",
                                        "yara:AA_BIN_001_XMRig_Family", "yara:AA_BIN_002_Stratum_Miner_Client"])
    found = behaviour.signals(context(Snapshot(processes=[proc], memory=[xmrig]), compiled_rules))
    strong = [s for s in found if s.rule_id == "AA-MEM-001" and not s.weak]
    assert strong and max(s.severity.rank for s in strong) >= behaviour.Severity.HIGH.rank
    assert not any(s.weak for s in found if s.rule_id == "AA-MEM-001")


def test_suspects_are_chosen_and_ordered():
    procs = [ProcessInfo(pid=1, name="sshd", exe="/usr/sbin/sshd", create_time=NOW - 999, lifetime_cpu_seconds=1),
             ProcessInfo(pid=2, name="x", exe="/memfd: (deleted)", create_time=NOW - 999, cpu_percent=99),
             ProcessInfo(pid=3, name="tool", exe="/home/u/bin/tool", create_time=NOW - 999, lifetime_cpu_seconds=0),
             ProcessInfo(pid=4, name="w", exe="/home/u/bin/w", create_time=NOW - 100, lifetime_cpu_seconds=50),
             ProcessInfo(pid=5, name="kworker/0:1", exe="", cmdline=[])]
    found = [(proc.pid, why) for proc, why in find_suspects(Snapshot(processes=procs), now=NOW)]
    assert found == [(2, ["busy", "memfd executable"]), (4, ["busy over its life", "unknown binary"])]
    assert suspect_reasons(procs[2], Packing(path="x", marks=["UPX!"]), NOW) == ["unknown binary", "packed executable"]


def reasons_each_alone(proc: ProcessInfo, packing: Packing | None, now: float) -> list[str]:
    """suspect_reasons as it was, everything about the executable's path worked out for each process."""
    from audit_agent.collect.suspects import BUSY_PERCENT, lifetime_cpu_percent
    from audit_agent.detect.identity import identity_claim, is_packed
    from audit_agent.detect.places import PACKAGE_DIRS, WORLD_WRITABLE_DIRS, hidden_component
    why = []
    lifetime = lifetime_cpu_percent(proc, now)
    if (proc.cpu_percent or 0.0) >= BUSY_PERCENT:
        why.append("busy")
    elif lifetime is not None and lifetime >= BUSY_PERCENT:
        why.append("busy over its life")
    exe = proc.exe
    if exe.startswith("/memfd:"):
        why.append("memfd executable")
    elif proc.exe_deleted:
        why.append("deleted executable")
    if exe.startswith(WORLD_WRITABLE_DIRS) or (exe and hidden_component(exe)):
        why.append("odd location")
    elif exe and not exe.startswith(("/memfd:", *PACKAGE_DIRS)):
        why.append("unknown binary")
    if packing is not None and is_packed(packing):
        why.append("packed executable")
    if identity_claim(proc) is not None:
        why.append("name its executable contradicts")
    return why


def test_reasons_worked_out_once_per_executable_are_each_process_own():
    """The path's reasons are remembered per (executable, deleted): copies of one program and one path
    running a deleted file, a memfd, a hidden folder or a renamed python each get their own."""
    exes = ["/usr/bin/python3", "/tmp/.x/xmrig", "/memfd:w", "/home/u/.cache/w", "/home/u/bin/w", "/usr/sbin/sshd",
            "/opt/app/bin/app", ""]
    procs = []
    for index in range(400):
        exe = exes[index % len(exes)]
        procs.append(ProcessInfo(pid=1000 + index, name=["python3", "w", "sshd"][index % 3], exe=exe,
                                 cmdline=[exe or "w"], exe_deleted=index % 5 == 0, create_time=NOW - 999,
                                 cpu_percent=[0.0, 30.0][index % 7 == 0], lifetime_cpu_seconds=index % 11))
    packed = Packing(path="/home/u/bin/w", marks=["UPX!"], pids=[p.pid for p in procs if p.exe == "/home/u/bin/w"][:3])
    found = find_suspects(Snapshot(processes=procs, packing=[packed]), now=NOW)
    packing_of = {pid: packed for pid in packed.pids}
    expected = [(proc, reasons_each_alone(proc, packing_of.get(proc.pid), NOW)) for proc in procs]
    expected = sorted([(p, why) for p, why in expected if why and why != ["unknown binary"]], key=lambda i: -len(i[1]))
    assert [(p.pid, why) for p, why in found] == [(p.pid, why) for p, why in expected]
    assert len({tuple(why) for _, why in found}) > 5


# ---------------------------------------------------------------- item 7: launcher scripts read like configs

@pytest.mark.parametrize("argv, script", [
    (["bash", "/tmp/.x/run.sh"], ["/tmp/.x/run.sh"]),
    (["python3", "-u", "start.py", "--fast"], ["start.py"]),
    (["perl", "-W", "x.pl"], ["x.pl"]),
    (["sh", "-c", "./x -o pool:1"], []),            # code on the command line is matched there already
    (["python3", "-m", "http.server"], []),
    (["/usr/bin/make", "all"], []),
    (["bash", "run.sh; rm -rf /"], []),             # shell code, not a file name
])
def test_launcher_script_of_an_interpreter(argv, script):
    from audit_agent.collect.configs import launcher_script
    assert launcher_script(argv) == script


def test_launcher_script_lines_are_matched_like_a_command_line(compiled_rules):
    from audit_agent.collect.configs import parse_config
    from audit_agent.detect.content import config_signals
    text = ("#!/bin/sh\n# keep it running\ncd /tmp/.x\nwhile :; do\n  ./kthreaddi -o 1.2.3.4:443 -u "
            f"{MONERO_WALLET} -p s3cretPoolPass --donate-level 1\n  sleep 30\ndone\ngcc -O2 -c x.c\n")
    config = parse_config(text, "/tmp/.x/run.sh")
    assert len(config.commands) == 1 and "s3cretPoolPass" not in config.commands[0], "pool passwords redacted"
    config.pids = [5]
    proc = ProcessInfo(pid=5, name="sh", exe="/usr/bin/dash", cmdline=["sh", "/tmp/.x/run.sh"])
    found = config_signals(config, context(Snapshot(processes=[proc], configs=[config]), compiled_rules))
    assert {"AA-CMD-002", "AA-WALLET-001"} <= {s.rule_id for s in found}
    assert all(s.evidence.field == "config" for s in found)


def test_build_script_keeps_no_command_lines():
    from audit_agent.collect.configs import parse_config
    text = "#!/bin/sh\nset -e\ngcc -O2 -Wall -c main.c -o main.o\nmake -j4 all\npython3 -m pytest -q\n"
    assert parse_config(text, "/home/u/build.sh") is None
