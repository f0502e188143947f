"""Issue 11, the rest of items 2, 3 and 5 on small inputs: scratchpad sizes of every CPU hashing family, the
Ethash/KawPow DAG per epoch on GPU processes, threads in lockstep, a system program's name on a file that is
neither the packaged one nor the one on PATH, kernel-client ports as rule data, and a proxy relaying to 443.
Benign controls (BLAS thread pools, PyTorch on a GPU, a conda python, a browser behind a proxy) stay quiet."""
from __future__ import annotations

import os

import pytest

from audit_agent.collect import memscan, programs
from audit_agent.detect import Context, behaviour, gpu, hashing, identity, network
from audit_agent.evaluate import evaluate
from audit_agent.model import (
    Connection,
    GpuDevice,
    GpuProcess,
    HostInfo,
    MemoryRegion,
    MemoryScan,
    ProcessInfo,
    ProgramIdentity,
    Snapshot,
)
from audit_agent.policy import Policy
from audit_agent.rules.loader import ConfigError, kernel_client_ports

KiB, MiB = 1 << 10, 1 << 20


def context(snapshot: Snapshot, compiled_rules) -> Context:
    return Context.build(snapshot, compiled_rules, Policy())


# ---------------------------------------------------------------- the size tables

def test_scratchpad_sizes_are_xmrigs():
    """L3 per algorithm as xmrig's Algorithm.h encodes it (byte 2 of the id, a power of two)."""
    ids = {"cn/0": 0x63150000, "cn/2": 0x63150200, "cn-lite/1": 0x63140100, "cn-heavy/0": 0x63160000,
           "cn-pico": 0x63120200, "rx/0": 0x72151200, "rx/wow": 0x72141177, "rx/arq": 0x72121061,
           "argon2/chukwa": 0x61130000, "argon2/chukwav2": 0x61140000, "argon2/wrkz": 0x61120000}
    for name, algorithm_id in ids.items():
        l3 = 1 << ((algorithm_id >> 16) & 0xFF)
        assert name in hashing.SCRATCHPADS[l3], (name, l3)
    assert hashing.SCRATCHPADS[2 * MiB][:3] == ("cn/0", "cn/1", "cn/2")
    assert "cn-heavy/0" in hashing.SCRATCHPADS[4 * MiB] and "cn-pico" in hashing.SCRATCHPADS[256 * KiB]


def test_what_a_per_thread_region_is():
    assert hashing.algorithms_for_unit(256 * KiB)[0].startswith("cn-pico")
    assert any(a.startswith("cn-pico") for a in hashing.algorithms_for_unit(256 * KiB + 4096)), "malloc's page"
    assert any(a.startswith("cn-lite") for a in hashing.algorithms_for_unit(2 * MiB)), "xmrig rounds 1 MiB up"
    assert any(a.startswith("cn-heavy") for a in hashing.algorithms_for_unit(4 * MiB))
    assert hashing.algorithms_for_unit(128 * KiB) == [] and hashing.algorithms_for_unit(3 * MiB + 1) == []


def test_dag_sizes_follow_the_ethash_spec():
    # The first entries of the Ethash spec's size tables (epoch 0 and 1).
    assert (hashing.dag_dataset_bytes(0), hashing.dag_cache_bytes(0)) == (1073739904, 16776896)
    assert (hashing.dag_dataset_bytes(1), hashing.dag_cache_bytes(1)) == (1082130304, 16907456)
    for epoch in (0, 100, 400, 700):
        dataset, cache = hashing.dag_dataset_bytes(epoch), hashing.dag_cache_bytes(epoch)
        assert dataset % 128 == 0 and cache % 64 == 0
        assert 0 < (1 << 30) + epoch * (1 << 23) - dataset < 128 * 1000
        held = dataset + cache + 400 * MiB
        first, last = hashing.dag_epochs_fitting(held, 768 * MiB, 1024)
        assert first <= epoch <= last
    assert hashing.dag_epochs_fitting(700 * MiB, 768 * MiB, 1024) is None, "below the epoch-0 DAG"


# ---------------------------------------------------------------- scratchpads in smaps

def smaps(*entries: tuple[int, int, str, str]) -> bytes:
    """(start, size, perms, flags) -> smaps text."""
    text = ""
    for start, size, perms, flags in entries:
        text += (f"{start:x}-{start + size:x} {perms} 00000000 00:00 0 \nSize: {size // 1024} kB\n"
                 f"KernelPageSize: 4 kB\nAnonHugePages: 0 kB\nVmFlags: {flags}\n")
    return text.encode()


BASE = 0x7F0000000000
PLAIN = "rd wr mr mw me ac"


def test_a_scratchpad_size_repeated_once_per_thread_is_found():
    text = smaps(*[(BASE + i * 64 * MiB, 256 * KiB + 4096, "rw-p", PLAIN) for i in range(3)])
    [region] = memscan.algorithm_regions(memscan.parse_smaps(text), threads=3)
    assert (region.shape, region.size_bytes, region.count, region.huge_pages) == ("scratchpad", 256 * KiB + 4096, 3,
                                                                                    False)


def test_merged_neighbours_count_as_several():
    text = smaps((BASE, 2 * (256 * KiB), "rw-p", PLAIN + " hg"))
    [region] = memscan.algorithm_regions(memscan.parse_smaps(text), threads=2)
    assert (region.size_bytes, region.count, region.huge_pages) == (256 * KiB, 2, True)


def test_stacks_arenas_and_lone_buffers_are_not_scratchpads():
    stacks = [(BASE + i * 64 * MiB, 4096, "---p", "mr mw me ac") for i in range(3)] + \
             [(BASE + i * 64 * MiB + 4096, 2 * MiB, "rw-p", PLAIN) for i in range(3)]        # guard below each
    arenas = [(BASE + (10 + i) * 64 * MiB, 1 * MiB, "rw-p", PLAIN) for i in range(3)] + \
             [(BASE + (10 + i) * 64 * MiB + MiB, 63 * MiB, "---p", "mr mw me ac") for i in range(3)]
    lone = [(BASE + 40 * 64 * MiB, 1 * MiB + 4096, "rw-p", PLAIN)]
    text = smaps(*sorted(stacks + arenas + lone))
    assert memscan.algorithm_regions(memscan.parse_smaps(text), threads=3) == []


def test_scratchpads_per_busy_thread_are_a_weak_signal(compiled_rules):
    miner = ProcessInfo(pid=7, name="dbus-worker", exe="/opt/x/w", allowed_cpus=8)
    blas = ProcessInfo(pid=8, name="solver", exe="/opt/x/solver", libraries=["libopenblas.so.0"], allowed_cpus=8)
    scans = [MemoryScan(pid=7, regions=[MemoryRegion(MiB + 4096, "scratchpad", False, count=3)], busy_threads=3),
             MemoryScan(pid=8, regions=[MemoryRegion(MiB + 4096, "scratchpad", False, count=3)], busy_threads=3)]
    found = behaviour.signals(context(Snapshot(processes=[miner, blas], memory=scans), compiled_rules))
    pads = [s for s in found if s.rule_id == "AA-MEM-003"]
    assert [(s.subject.pid, s.severity.value, s.weak) for s in pads] == [(7, "low", True)]
    assert "cn-lite" in pads[0].reason and "1 MiB" in pads[0].reason


def test_a_repeated_size_that_does_not_match_the_busy_threads_says_nothing(compiled_rules):
    proc = ProcessInfo(pid=7, name="w", exe="/opt/x/w")
    scan = MemoryScan(pid=7, regions=[MemoryRegion(2 * MiB + 4096, "scratchpad", False, count=12)], busy_threads=2)
    found = behaviour.signals(context(Snapshot(processes=[proc], memory=[scan]), compiled_rules))
    assert not [s for s in found if s.rule_id == "AA-MEM-003"]


# ---------------------------------------------------------------- lockstep threads

@pytest.mark.parametrize("busy, allowed, libraries, expected", [
    (8, 8, [], ("low", True)),                          # one thread per allowed CPU, no numeric library
    (7, 8, [], ("low", True)),
    (8, 8, ["libgomp.so.1"], ("info", True)),           # an OpenMP / BLAS pool: context only
    (8, 8, ["libjvm.so"], ("info", True)),
    (2, 16, [], None),                                  # far fewer threads than CPUs
])
def test_lockstep_threads(compiled_rules, busy, allowed, libraries, expected):
    proc = ProcessInfo(pid=9, name="w", exe="/opt/x/w", allowed_cpus=allowed, libraries=libraries)
    scan = MemoryScan(pid=9, busy_threads=busy, lockstep=True)
    found = [s for s in behaviour.signals(context(Snapshot(processes=[proc], memory=[scan]), compiled_rules))
             if s.rule_id == "AA-CPU-003"]
    assert [(s.severity.value, s.weak) for s in found] == ([expected] if expected else [])


def test_lockstep_alone_never_condemns(compiled_rules):
    proc = ProcessInfo(pid=9, name="w", exe="/opt/x/w", allowed_cpus=4, cmdline=["/opt/x/w"])
    blas = ProcessInfo(pid=10, name="python3", exe="/usr/bin/python3.11", allowed_cpus=4,
                       libraries=["libopenblas.so.0"], cmdline=["python3", "fit.py"])
    snapshot = Snapshot(processes=[proc, blas], host=HostInfo(cpu_threads=4),
                        memory=[MemoryScan(pid=9, busy_threads=4, lockstep=True),
                                MemoryScan(pid=10, busy_threads=4, lockstep=True)])
    report = evaluate(snapshot, compiled_rules)
    by_pid = {f.subject.pid: f for f in report.findings}
    assert 10 not in by_pid, "a BLAS thread pool is context only"
    assert by_pid[9].severity.value == "low"


# ---------------------------------------------------------------- GPU DAG

def gpu_snapshot(used: int, proc: ProcessInfo, util: float = 98.0) -> Snapshot:
    device = GpuDevice(index=0, name="NVIDIA A100", utilization_percent=util,
                       processes=[GpuProcess(pid=proc.pid, used_memory_bytes=used)])
    return Snapshot(processes=[proc], gpus=[device])


def test_gpu_memory_the_size_of_a_dag(compiled_rules):
    used = hashing.dag_dataset_bytes(520) + hashing.dag_cache_bytes(520) + 350 * MiB
    miner = ProcessInfo(pid=11, name="svc", exe="/opt/svc/svc")
    found = [s for s in gpu.signals(context(gpu_snapshot(used, miner), compiled_rules)) if s.rule_id == "AA-GPU-004"]
    assert [(s.severity.value, s.weak) for s in found] == [("low", True)]
    assert "520" in found[0].evidence.matched or "epochs" in found[0].evidence.matched
    idle = [s for s in gpu.signals(context(gpu_snapshot(used, miner, util=0.0), compiled_rules))
            if s.rule_id == "AA-GPU-004"]
    assert [s.severity.value for s in idle] == ["info"]


@pytest.mark.parametrize("proc, used", [
    (ProcessInfo(pid=12, name="python3", exe="/usr/bin/python3.11", cmdline=["python3", "train.py"],
                 libraries=["libtorch_cuda.so", "libcudnn.so.9", "libpython3.11.so"]), 4600 * MiB),
    (ProcessInfo(pid=13, name="svc", exe="/opt/svc/svc"), 600 * MiB),      # smaller than any DAG
])
def test_gpu_controls_are_not_dags(compiled_rules, proc, used):
    assert not [s for s in gpu.signals(context(gpu_snapshot(used, proc), compiled_rules)) if s.rule_id == "AA-GPU-004"]


# ---------------------------------------------------------------- identity: package database and PATH

def facts(pid: int, exe: str, **kw) -> ProgramIdentity:
    base = {"claimed": "python3", "on_path": "/usr/bin/python3.11", "same_as_path": False, "package": "",
            "package_db": "dpkg"}
    return ProgramIdentity(pid=pid, exe=exe, **{**base, **kw})


@pytest.mark.parametrize("name, exe, known, severity", [
    ("python3", "/tmp/x/python3", facts(1, "/tmp/x/python3"), "high"),                  # a copy in /tmp
    ("sshd", "/dev/shm/sshd", None, "high"),                                            # packaged daemon elsewhere
    ("python3", "/tmp/env/bin/python3", facts(1, "/tmp/env/bin/python3", env_marker="pyvenv.cfg"), "medium"),
    ("sshd", "/usr/local/lib/sshd", facts(1, "/usr/local/lib/sshd", claimed="sshd", on_path="/usr/sbin/sshd"),
     "medium"),                                                                         # no package lists it
    ("python3", "/usr/bin/python3.11", facts(1, "/usr/bin/python3.11", same_as_path=True), None),
    ("python3", "/usr/bin/python3.12", facts(1, "/usr/bin/python3.12", package="python3.12-minimal"), None),
    ("python3", "/home/u/miniconda3/bin/python3.12", facts(1, "/home/u/miniconda3/bin/python3.12"), None),
    ("python3", "/tmp/x/python3", facts(1, "/tmp/x/python3", package_db="rpm (not read)", package=None), "high"),
])
def test_identity_against_path_and_packages(compiled_rules, name, exe, known, severity):
    proc = ProcessInfo(pid=1, name=name, exe=exe, cmdline=[name])
    snapshot = Snapshot(processes=[proc], identities=[known] if known else [])
    found = identity.signals(context(snapshot, compiled_rules))
    assert [s.severity.value for s in found] == ([severity] if severity else [])
    if known is not None and severity:
        assert "PATH" in found[0].reason


def test_package_lists_are_read_once_for_the_wanted_paths_only(tmp_path):
    info = tmp_path / "info"
    info.mkdir()
    (info / "python3.11-minimal:amd64.list").write_text("/.\n/usr\n/usr/bin/python3.11\n")
    (info / "bash.list").write_text("/bin/bash\n/usr/share/doc/bash\n")
    database, owners, complete = programs.read_package_lists(str(info), {"/usr/bin/python3.11", "/usr/bin/bash",
                                                                         "/tmp/python3"})
    assert (database, complete) == ("dpkg", True)
    assert owners == {"/usr/bin/python3.11": "python3.11-minimal", "/usr/bin/bash": "bash"}, "merged /usr folded"


def package_info(tmp_path):
    info = tmp_path / "info"
    info.mkdir()
    (info / "python3.11-minimal:amd64.list").write_text("/.\n/usr\n/usr/bin/python3.11\n")
    (info / "bash.list").write_text("/bin/bash\n/usr/share/doc/bash\n")
    return info


def test_package_answers_are_kept_between_scans_until_a_list_changes(tmp_path, monkeypatch):
    info, state = package_info(tmp_path), tmp_path / "state"
    wanted = {"/usr/bin/python3.11", "/usr/bin/bash", "/tmp/python3"}
    first = programs.read_package_lists(str(info), wanted, state)
    reads: list[str] = []
    real_read = programs.read_list
    monkeypatch.setattr(programs, "read_list", lambda path: reads.append(path) or real_read(path))
    assert programs.read_package_lists(str(info), wanted, state) == first
    assert programs.read_package_lists(str(info), {"/tmp/python3"}, state) == ("dpkg", {}, True)
    assert reads == [], "the same question about unchanged lists reads no list"
    assert first == ("dpkg", {"/usr/bin/python3.11": "python3.11-minimal", "/usr/bin/bash": "bash"}, True)
    (info / "impostor.list").write_text("/tmp/python3\n")
    assert programs.read_package_lists(str(info), wanted, state)[1]["/tmp/python3"] == "impostor"
    assert reads, "a new list is read"
    reads.clear()
    assert programs.read_package_lists(str(info), wanted | {"/usr/sbin/sshd"}, state)[1].get("/usr/sbin/sshd") is None
    assert reads, "a path never asked about is looked up"


def test_saved_package_answers_others_could_have_written_are_never_used(tmp_path):
    info, state = package_info(tmp_path), tmp_path / "state"
    programs.read_package_lists(str(info), {"/tmp/python3"}, state)
    saved = state / "package-owners.json"
    saved.write_text(saved.read_text().replace('"/tmp/python3":""', '"/tmp/python3":"forged"'))
    assert programs.read_package_lists(str(info), {"/tmp/python3"}, state)[1] == {"/tmp/python3": "forged"}, \
        "the test's forgery is a valid private file"
    os.chmod(saved, 0o664 | 0o002)
    assert programs.read_package_lists(str(info), {"/tmp/python3"}, state)[1] == {}


def test_no_dpkg_database_is_said_not_guessed(tmp_path, monkeypatch):
    monkeypatch.setattr(programs, "RPM_DB", (str(tmp_path),))
    assert programs.read_package_lists(str(tmp_path / "none"), {"/usr/bin/x"}) == ("rpm (not read)", {}, False)
    monkeypatch.setattr(programs, "RPM_DB", (str(tmp_path / "none"),))
    assert programs.read_package_lists(str(tmp_path / "none"), {"/usr/bin/x"})[0] == ""


def test_name_resolves_on_the_system_path():
    path, key = programs.on_system_path("sh")
    assert path and key == (os.stat(path).st_dev, os.stat(path).st_ino)
    assert programs.on_system_path("no-such-program-here") == ("", None)
    assert programs.on_system_path("../bin/sh") == ("", None)


# ---------------------------------------------------------------- network: rule data, a proxy to 443

def test_kernel_client_ports_are_rule_data(compiled_rules):
    assert {111, 2049, 445, 6800, 7300} <= compiled_rules.kernel_client_ports
    assert 3333 not in compiled_rules.kernel_client_ports and 443 not in compiled_rules.kernel_client_ports
    assert kernel_client_ports({"kernel_clients": [2049, "7000-7002"]}) == {2049, 7000, 7001, 7002}
    for bad in (["7002-7000"], ["x"], [70000], [True]):
        with pytest.raises(ConfigError):
            kernel_client_ports({"kernel_clients": bad}, "rules/network.yaml:1", "AA-NET-002")


def relay_snapshot(client: ProcessInfo, upstream_port: int) -> Snapshot:
    proxy = ProcessInfo(pid=50, name="socksd", exe="/usr/bin/socksd")
    conns = [Connection(pid=client.pid, protocol="tcp", local_address="127.0.0.1", local_port=40001,
                        remote_address="127.0.0.1", remote_port=1080, state="ESTABLISHED"),
             Connection(pid=50, protocol="tcp", local_address="127.0.0.1", local_port=1080,
                        remote_address="127.0.0.1", remote_port=40001, state="ESTABLISHED"),
             Connection(pid=50, protocol="tcp", local_address="10.0.0.5", local_port=40002,
                        remote_address="198.51.100.7", remote_port=upstream_port, state="ESTABLISHED")]
    return Snapshot(processes=[client, proxy], connections=conns, host=HostInfo(cpu_threads=4), window_seconds=5)


@pytest.mark.parametrize("client, port, expected", [
    (ProcessInfo(pid=60, name="w", exe="/tmp/.w/w", cpu_percent=95.0, allowed_cpus=4), 443, "medium"),
    (ProcessInfo(pid=60, name="w", exe="/opt/w/w", cpu_percent=60.0, allowed_cpus=4), 443, "medium"),
    (ProcessInfo(pid=60, name="w", exe="/opt/w/w", cpu_percent=1.0, allowed_cpus=4), 443, None),       # idle
    (ProcessInfo(pid=60, name="chromium", exe="/usr/lib/chromium/chromium", cpu_percent=80.0), 443, None),
    (ProcessInfo(pid=60, name="python3", exe="/usr/bin/python3.11", cmdline=["python3", "train.py"],
                 cpu_percent=99.0), 443, None),                                  # a research job fetching data
    (ProcessInfo(pid=60, name="w", exe="/opt/w/w", cpu_percent=1.0, allowed_cpus=4), 3333, "medium"),
])
def test_relay_through_a_local_proxy_to_a_tls_port(compiled_rules, client, port, expected):
    found = [s for s in network.signals(context(relay_snapshot(client, port), compiled_rules))
             if s.rule_id == "AA-NET-001"]
    assert [s.severity.value for s in found] == ([expected] if expected else [])
    if expected:
        assert f"198.51.100.7:{port}" in found[0].reason
