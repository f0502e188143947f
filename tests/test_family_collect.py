"""Family configs where the software reads them, the bounded artefact search, and how both become findings."""
from __future__ import annotations

import os
import time
from types import SimpleNamespace

import msgspec
import pytest

from audit_agent.collect import artefacts
from audit_agent.collect.families import Found, read_configs, resolve
from audit_agent.evaluate import evaluate
from audit_agent.model import (
    ArtefactGroup,
    ConfigReader,
    CoverageStatus,
    FamilyConfig,
    ProcessInfo,
    Snapshot,
)
from audit_agent.rules.compiler import CompiledRules
from audit_agent.rules.loader import load_pack

GIB = 1 << 30
PLOT = "plot-k32-2024-03-01-10-11-" + "ab" * 32 + ".plot"
CHIA_CONFIG = "farmer:\n  xch_target_address: xch1qq\nharvester:\n  plot_directories:\n  - {plots}\n"


@pytest.fixture(scope="module")
def pack():
    return load_pack()


@pytest.fixture(scope="module")
def rules(pack):
    return CompiledRules(pack)


def sparse(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)


def search(tmp_path, pack, roots, **options):
    snapshot = Snapshot()
    coverage = artefacts.search_artefacts(snapshot, pack.families, Found(),
                                          SimpleNamespace(mount_roots=[str(r) for r in roots], **options))
    return snapshot, coverage


def me(**fields) -> ProcessInfo:
    return ProcessInfo(pid=os.getpid(), name="python3", exe="/usr/bin/python3", cmdline=["python3"], uid=0, **fields)


# ------------------------------------------------------------------ artefact search


def test_plots_are_found_by_name_and_size_and_counted(tmp_path, pack):
    sparse(tmp_path / "disk" / "plots" / PLOT, 100 * GIB)
    sparse(tmp_path / "disk" / "plots" / PLOT.replace("ab", "cd"), 100 * GIB)
    sparse(tmp_path / "disk" / "plots" / "vm-k32.qcow2", 100 * GIB)        # a big image with another name
    (tmp_path / "disk" / "plots" / PLOT.replace("ab", "ef")).write_text("tiny")   # the name, not the size
    os.symlink(tmp_path / "disk" / "plots" / PLOT, tmp_path / "disk" / "link.plot")
    snapshot, coverage = search(tmp_path, pack, [tmp_path / "disk"])
    [group] = snapshot.artefacts
    assert (group.family, group.kind, group.count) == ("CHIA", "plot", 2)
    assert group.total_bytes == 200 * GIB and group.allocated_bytes < GIB      # sparse: apparent size counts
    assert group.directory == str(tmp_path / "disk" / "plots") and group.found_via == "mount"
    assert coverage.status == CoverageStatus.OK and coverage.inspected >= 2
    assert "farmed: CHIA plot 0.20 TiB in 1 folder(s)" in coverage.reason


def test_a_crowded_folder_is_cut_and_said(tmp_path, pack, monkeypatch):
    monkeypatch.setattr(artefacts, "MAX_DIR_ENTRIES", 10)
    for n in range(30):
        (tmp_path / f"f{n}").write_text("")
    _, coverage = search(tmp_path, pack, [tmp_path])
    assert coverage.status == CoverageStatus.PARTIAL and "more than 10 entries" in coverage.reason


def test_a_hung_file_system_costs_only_the_time_budget(tmp_path, pack, monkeypatch):
    real = os.scandir

    def hang(path):
        if str(path).endswith("nfs"):
            time.sleep(30)
        return real(path)
    monkeypatch.setattr(artefacts.os, "scandir", hang)
    (tmp_path / "nfs").mkdir()
    _, coverage = search(tmp_path, pack, [tmp_path / "nfs"], artefact_seconds=0.2)
    assert coverage.status == CoverageStatus.PARTIAL and "time budget" in coverage.reason


def test_an_unreadable_mount_point_is_partial_coverage(tmp_path, pack, monkeypatch):
    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(artefacts.os, "scandir", denied)
    _, coverage = search(tmp_path, pack, [tmp_path])
    assert coverage.status == CoverageStatus.PARTIAL and "unreadable" in coverage.reason and coverage.denied == 1


def test_the_entry_limit_stops_the_search(tmp_path, pack, monkeypatch):
    monkeypatch.setattr(artefacts, "MAX_ENTRIES", 5)
    for n in range(3):
        (tmp_path / f"d{n}").mkdir()
        for m in range(4):
            (tmp_path / f"d{n}" / f"f{m}").write_text("")
    _, coverage = search(tmp_path, pack, [tmp_path])
    assert coverage.status == CoverageStatus.PARTIAL and "limit of 5 entries" in coverage.reason


def test_mount_points_are_data_disks_not_the_system(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                    "23 22 8:2 / /boot rw - ext4 /dev/sda2 rw\n"
                    "24 22 8:17 / /mnt/disk\\0401 rw - xfs /dev/sdb1 rw\n"
                    "25 22 0:50 / /tank rw - zfs tank rw\n"
                    "26 22 0:5 / /proc rw - proc proc rw\n"
                    "27 22 0:51 / /var/lib/docker/overlay2/x rw - ext4 /dev/sdc rw\n"
                    "garbage line\n")
    assert artefacts.local_mount_points(str(info)) == ["/mnt/disk 1", "/tank"]
    assert artefacts.local_mount_points(str(tmp_path / "missing")) == []


# ------------------------------------------------------------------ configs where the software reads them


def test_config_paths_resolve_as_the_process_sees_them():
    proc = ProcessInfo(pid=1, exe="/q/qli-Client", cwd="/work", environ={"HOME": "/home/a", "CHIA_ROOT": "/srv/c"},
                       cmdline=["storagenode", "run", "--config-dir", "cfg"])
    assert resolve("~/.chia/mainnet/config/config.yaml", proc) == ("/home/a/.chia/mainnet/config/config.yaml", "home")
    assert resolve("{exe_dir}/appsettings.json", proc) == ("/q/appsettings.json", "exe_dir")
    assert resolve("{cwd}/bee.yaml", proc) == ("/work/bee.yaml", "cwd")
    assert resolve("$CHIA_ROOT/config/config.yaml", proc) == ("/srv/c/config/config.yaml", "env")
    assert resolve("$LOTUS_MINER_PATH/storage.json", proc) is None
    assert resolve("{arg:--config-dir}/config.yaml", proc) == ("/work/cfg/config.yaml", "arg")
    assert resolve("{arg:--identity-dir}/x", proc) is None


def test_a_home_config_is_read_once_and_lists_its_readers(tmp_path, pack):
    plots = tmp_path / "plots"
    config = tmp_path / ".chia" / "mainnet" / "config" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(CHIA_CONFIG.format(plots=plots))
    (tmp_path / "appsettings.json").write_text('{"Logging": {"LogLevel": {"Default": "Information"}}}')
    found = Found()
    configs = read_configs([me(environ={"HOME": str(tmp_path)}, cwd=str(tmp_path))], pack.families, "/proc", found)
    [chia] = configs
    assert chia.family == "CHIA" and chia.dirs == [str(plots)] and chia.logins == ["xch1qq"]
    assert [(r.pid, r.via) for r in chia.readers] == [(os.getpid(), "home")]
    assert str(plots) in found.access


def test_a_config_the_process_could_not_read_is_not_read(tmp_path, pack):
    config = tmp_path / ".chia" / "mainnet" / "config" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(CHIA_CONFIG.format(plots="/p"))
    config.chmod(0o600)
    user_process = me(environ={"HOME": str(tmp_path)})
    user_process.uid = 4242
    assert read_configs([user_process], pack.families, "/proc", Found()) == []


# ------------------------------------------------------------------ findings


def chia_config(readers):
    return FamilyConfig(path="/home/a/.chia/mainnet/config/config.yaml", family="CHIA", owner="a",
                        readers=readers, keys=["farmer.xch_target_address"], logins=["xch1qq"], dirs=["/mnt/plots"])


def test_a_home_config_is_tied_to_a_bare_interpreter_not_to_a_shell(rules):
    python = ProcessInfo(pid=10, name="python3", exe="/usr/bin/python3", cmdline=["python3"], username="a")
    shell = ProcessInfo(pid=11, name="bash", exe="/usr/bin/bash", cmdline=["-bash"], username="a", terminal="pts/0")
    group = ArtefactGroup(family="CHIA", kind="plot", directory="/mnt/plots", count=10, total_bytes=10 * 101 * GIB,
                          examples=[PLOT], found_via="config")
    snapshot = Snapshot(processes=[python, shell], artefacts=[group],
                        family_configs=[chia_config([ConfigReader(10, "home"), ConfigReader(11, "home")])])
    report = evaluate(snapshot, rules, now=0)
    [finding] = report.findings
    assert finding.subject.pid == 10 and finding.severity.value == "high"
    assert {"AA-CHIA-CONFIG", "AA-CHIA-FILE"} <= set(finding.rule_ids)
    assert any("0.99 TiB" in e.value and "/mnt/plots" in e.value for e in finding.evidence)


def test_a_config_and_plots_nobody_runs_are_findings_about_the_files(rules):
    shell = ProcessInfo(pid=11, name="bash", exe="/usr/bin/bash", cmdline=["-bash"], username="a", terminal="pts/0")
    group = ArtefactGroup(family="CHIA", kind="plot", directory="/mnt/plots", count=1, total_bytes=101 * GIB,
                          found_via="mount")
    snapshot = Snapshot(processes=[shell], artefacts=[group], family_configs=[chia_config([ConfigReader(11, "home")])])
    report = evaluate(snapshot, rules, now=0)
    kinds = sorted((f.subject.kind, f.severity.value) for f in report.findings)
    assert kinds == [("file", "medium"), ("storage", "medium")]
    assert report.verdict.value == "needs_review"


def test_a_family_variable_is_the_process_that_sets_it_not_its_children(rules):
    parent = ProcessInfo(pid=20, ppid=1, name="lotus-worker-wrapper", cmdline=["sh", "run.sh"],
                         environ={"FIL_PROOFS_USE_GPU_TREE_BUILDER": "1"})
    child = ProcessInfo(pid=21, ppid=20, name="sleep", cmdline=["sleep", "9"],
                        environ={"FIL_PROOFS_USE_GPU_TREE_BUILDER": "1"})
    report = evaluate(Snapshot(processes=[parent, child]), rules, now=0)
    assert [(f.subject.pid, f.rule_ids) for f in report.findings] == [(20, ["AA-FILECOIN-ENV"])]


def test_a_default_port_alone_is_no_finding(rules):
    from audit_agent.model import Listener
    web = ProcessInfo(pid=30, name="node", exe="/usr/bin/node", cmdline=["node", "server.js"])
    report = evaluate(Snapshot(processes=[web], listeners=[Listener(30, "tcp", "0.0.0.0", 8444)]), rules, now=0)
    assert report.findings == []


def test_gpu_sharing_and_a_plot_folder_need_the_same_filing_as_a_miner(rules, tmp_path):
    from audit_agent.filing import load_registry
    from audit_agent.model import FindingStatus
    sharing = ProcessInfo(pid=40, name="io_net_launch_b", exe="/opt/gpu-lab/io_net_launch_binary_linux",
                          cmdline=["/opt/gpu-lab/io_net_launch_binary_linux", "--device_id=1", "--user_id=2"])
    plots = ArtefactGroup(family="CHIA", kind="plot", directory="/data/pos-study/plots", count=2,
                          total_bytes=2 * 101 * GIB, found_via="mount")
    snapshot = Snapshot(processes=[sharing], artefacts=[plots], collected_at=1_795_000_000)
    report = evaluate(snapshot, rules, now=snapshot.collected_at)
    assert {f.category for f in report.findings} == {"resource_sharing", "storage_farming"}
    assert all(f.status == FindingStatus.OPEN for f in report.findings)
    (tmp_path / "filings.yaml").write_text(
        "filings:\n  - number: T-2026-9\n    approved_by: test\n    project: PoS storage study\n"
        "    discipline: CS\n    responsible: Prof. Li\n    hosts: ['*']\n"
        "    workloads: ['^/data/pos-study/', '^/opt/gpu-lab/']\n"
        "    valid_from: 2026-01-01\n    valid_until: 2027-12-31\n")
    filed = evaluate(snapshot, rules, filings=load_registry(tmp_path / "filings.yaml"), now=snapshot.collected_at)
    assert [f.status for f in filed.findings] == [FindingStatus.REGISTERED] * 2


def test_listeners_on_family_ports_are_tied_to_their_process():
    import socket

    from audit_agent.collect.families import listeners, note_open_dirs
    with socket.socket() as server, socket.socket(socket.AF_INET6) as server6, socket.socket() as other:
        server.bind(("127.0.0.1", 0))
        server6.bind(("::1", 0))
        other.bind(("127.0.0.1", 0))
        for sock in (server, server6, other):
            sock.listen()
        ports = {server.getsockname()[1], server6.getsockname()[1]}
        found = Found()
        note_open_dirs(me(), "/proc", found)
        seen = {(item.address, item.port, item.pid) for item in listeners(ports, found.sockets)}
        expected = {("127.0.0.1", server.getsockname()[1], os.getpid()), ("::1", server6.getsockname()[1], os.getpid())}
    assert seen == expected


def test_listeners_from_the_connection_steps_tables_are_those_of_a_second_reading():
    """The family step takes its listeners from the tables the connections step read: the same listeners,
    owners and addresses as its own reading of /proc/net, for a TCP listener, a bound UDP socket, a connected
    UDP socket and an established TCP connection on the family ports (only the first two listen)."""
    import socket

    from audit_agent.collect.families import listeners, note_open_dirs
    from audit_agent.collect.network import proc_connections
    from audit_agent.collect.proc_facts import ProcFacts
    with socket.socket() as server, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as bound6, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as connected, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        bound6.bind(("::1", 0))
        connected.connect(("127.0.0.1", 9))
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        with accepted:
            ports = {sock.getsockname()[1] for sock in (server, bound6, connected, client)}
            found = Found()
            note_open_dirs(me(), "/proc", found)
            facts = ProcFacts()
            proc_connections("/proc", facts)
            assert facts.sockets is not None
            shared = {(item.protocol, item.address, item.port, item.pid)
                      for item in listeners(ports, found.sockets, "/proc", facts.sockets)}
            second = {(item.protocol, item.address, item.port, item.pid) for item in listeners(ports, found.sockets)}
            expected = {("tcp", "127.0.0.1", server.getsockname()[1], os.getpid()),
                        ("udp", "::1", bound6.getsockname()[1], os.getpid())}
    assert shared == second == expected


def test_a_config_read_stuck_in_a_hung_file_system_costs_only_its_budget(tmp_path, pack, monkeypatch):
    from audit_agent.collect import families as collector
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "appsettings.json").write_text('{"Settings": {"accessToken": "x", "amountOfThreads": 2}}')

    def hung(path, *args, **kwargs):
        if "appsettings" in str(path):
            time.sleep(30)
        raise FileNotFoundError(path)
    monkeypatch.setattr(collector, "read_regular", hung)
    snapshot = Snapshot(processes=[me(cwd=str(tmp_path / "q"))])
    configs, _ = collector.collect_families(snapshot, SimpleNamespace(families=pack.families, config_seconds=0.3,
                                                                      mount_roots=[], artefact_seconds=0.3))
    assert configs.status == CoverageStatus.PARTIAL and "a file system did not answer" in configs.reason


# ------------------------------------------------------------------ storage layouts of Sia, Swarm, Storj, Arweave

MIB = 1 << 20
SATELLITE = "ukfu6bhbboxilvt7jrwlqk7y2tapb5d2r2tsmj2sjxvw5qaaaaaa"        # base32 of a 32-byte node id: 52 chars


def test_storage_network_layouts_are_found_by_their_own_names_and_sizes(tmp_path, pack):
    disk = tmp_path / "disk"
    # Storj's piece store before the hashstore: blobs/<satellite>/<2 chars>/<50 chars>[.sj1], v1 and v0 pieces
    for prefix in ("2e", "ab", "zz"):
        sparse(disk / "storj" / "blobs" / SATELLITE / prefix / ("4bn2ig5mxvhbjfmpbzvgdaucdxpnoh4wojz3qbuaafcjrc7qca" + ".sj1"),
               2 * MIB)
    sparse(disk / "storj" / "blobs" / SATELLITE / "ab" / "pkrtdwcxifrqbzpqfyjdxzdm5obk2xmgt4jjmfxwjfx3xlgtja", MIB)
    sparse(disk / "storj" / "blobs" / SATELLITE / "ab" / "notes.txt", MIB)
    # Swarm bee's chunk store: localstore/sharky/shard_NNN (and its free_NNN maps, which are no data)
    for index in range(3):
        sparse(disk / "bee" / "localstore" / "sharky" / f"shard_{index:03d}", 540 * MIB)
        sparse(disk / "bee" / "localstore" / "sharky" / f"free_{index:03d}", 540 * MIB)
    # Arweave: storage_modules/<id>/chunk_storage/<start offset>
    sparse(disk / "ar" / "storage_modules" / "storage_module_3_unpacked" / "chunk_storage" / "6291456000", 2097176000)
    # the legacy siad host's storage folder
    sparse(disk / "sia" / "siahostdata.dat", 64 * GIB)
    # searched from where each software's configuration or command line points (the mount search goes 3 deep)
    roots = [disk / "storj", disk / "bee", disk / "ar" / "storage_modules", disk / "sia"]
    snapshot, _ = search(tmp_path, pack, roots, artefact_seconds=20)
    found = {(g.family, g.kind): g for g in snapshot.artefacts}
    pieces = found["STORJ", "piece (v1)"]
    assert pieces.count == 3 and pieces.directory == str(disk / "storj" / "blobs" / SATELLITE)   # one store, not 3
    assert found["STORJ", "piece (v0)"].count == 1
    assert found["SWARM", "chunk store shard"].count == 3
    assert found["ARWEAVE", "chunk storage"].total_bytes == 2097176000
    assert found["SIA", "storage folder (siad)"].count == 1
    assert len(snapshot.artefacts) == 5


def test_a_hostd_volume_counts_only_where_a_hostd_process_has_it_open(tmp_path, pack, rules):
    volume = tmp_path / "disk" / "hostd" / "data.dat"
    sparse(volume, 256 * 4 * MIB)                         # 1 GiB: 256 sectors of 4 MiB
    sparse(tmp_path / "disk" / "sap" / "datavolume_0000.dat", GIB)       # another program's .dat of the same size
    snapshot, _ = search(tmp_path, pack, [tmp_path / "disk"])
    assert snapshot.artefacts == []                      # a .dat on a data disk alone is nobody's volume
    hostd = ProcessInfo(pid=4100, name="hostd", exe="/usr/bin/hostd", cmdline=["hostd", "--dir", "/var/lib/hostd"])
    other = ProcessInfo(pid=4200, name="hdbindexserver", exe="/usr/sap/hdbindexserver", cmdline=["hdbindexserver"])
    found = Found(open_dirs={str(volume.parent): {4100}, str(tmp_path / "disk" / "sap"): {4200}})
    snapshot = Snapshot(processes=[hostd, other])
    artefacts.search_artefacts(snapshot, pack.families, found, SimpleNamespace(mount_roots=[]))
    [group] = snapshot.artefacts
    assert (group.family, group.kind, group.pids) == ("SIA", "volume", [4100])
    sparse(volume, 256 * 4 * MIB + 1)                    # not whole 4 MiB sectors: not a hostd volume
    snapshot = Snapshot(processes=[hostd, other])
    artefacts.search_artefacts(snapshot, pack.families, found, SimpleNamespace(mount_roots=[]))
    assert snapshot.artefacts == []


def test_a_hostd_volume_is_on_the_hostd_finding_and_never_alone(rules):
    hostd = ProcessInfo(pid=4100, name="hostd", exe="/usr/bin/hostd", cmdline=["hostd", "--dir", "/var/lib/hostd"],
                        username="sia")
    group = ArtefactGroup(family="SIA", kind="volume", directory="/mnt/hdd1", count=1, total_bytes=4 << 40,
                          examples=["data.dat"], pids=[4100], found_via="open")
    report = evaluate(Snapshot(processes=[hostd], artefacts=[group]), rules, now=time.time())
    [finding] = report.findings
    assert "AA-SIA-FILE" in finding.rule_ids and finding.subject.pid == 4100
    stranger = ArtefactGroup(family="SIA", kind="volume", directory="/srv/sap", count=1, total_bytes=1 << 40,
                             examples=["datavolume_0000.dat"], pids=[4200], found_via="open")
    other = ProcessInfo(pid=4200, name="hdbindexserver", exe="/usr/sap/hdbindexserver", cmdline=["hdbindexserver"])
    assert evaluate(Snapshot(processes=[other], artefacts=[stranger]), rules, now=time.time()).findings == []


def read_configs_each_alone(processes, families, proc_root, found):
    """read_configs as it was: every candidate of every process looked up in the results."""
    from audit_agent.collect.families import MAX_FILES, MAX_READERS, read_config, resolved_candidates
    results: dict = {}
    resolved: dict = {}
    for proc in processes:
        if not (proc.exe or proc.cmdline):
            continue
        for family, spec, path, via in resolved_candidates(proc, families, resolved):
            key = (family.id, path)
            if key not in results:
                if found.files_read >= MAX_FILES:
                    found.limit_hit = True
                    continue
                results[key] = read_config(family, spec, path, proc, proc_root, found)
            config = results[key]
            if config is not None and len(config.readers) < MAX_READERS \
                    and all(r.pid != proc.pid for r in config.readers):
                config.readers.append(ConfigReader(pid=proc.pid, via=via))
    return [config for config in results.values() if config is not None]


@pytest.mark.parametrize("max_files", [2048, 1])
def test_processes_that_share_their_candidates_get_what_each_would_alone(tmp_path, pack, processes, monkeypatch,
                                                                        max_files):
    """A candidate list whose every path has its answer is settled: the processes sharing it only join the
    configs among them. Configs, readers (capped at 64), the files read and the limit must be what looking
    up every candidate of every process gives (real processes: the files are read through /proc/PID/root)."""
    import subprocess
    from audit_agent.collect import families
    monkeypatch.setattr(families, "MAX_FILES", max_files)
    homes = []
    for index in range(3):
        home = tmp_path / f"home{index}"
        if index < 2:
            config = home / ".chia" / "mainnet" / "config" / "config.yaml"
            config.parent.mkdir(parents=True)
            config.write_text(CHIA_CONFIG.format(plots=home / "plots"))
        else:
            home.mkdir()
        homes.append(home)
    pids = [processes.start(["sleep", "60"]).pid for _ in range(80)]
    gone = subprocess.Popen(["true"])
    gone.wait()
    infos = [ProcessInfo(pid=pid, name="python3", exe="/usr/bin/python3", cmdline=["python3"], uid=0,
                         cwd=str(tmp_path), environ={"HOME": str(homes[0 if i < 70 else i % 3])})
             for i, pid in enumerate([*pids, gone.pid])]
    found, expected_found = Found(), Found()
    configs = read_configs(infos, pack.families, "/proc", found)
    expected = read_configs_each_alone(infos, pack.families, "/proc", expected_found)
    assert [msgspec.structs.asdict(c) for c in configs] == [msgspec.structs.asdict(c) for c in expected]
    assert found == expected_found
    if max_files > 1:
        assert [len(c.readers) for c in configs] == [64, 4]


# ------------------------------------------------------------------ the walk's name test


NAMES = [PLOT, PLOT.upper().replace(".PLOT", ".plot"), PLOT + ".2.tmp", PLOT + ".tmp.x", "12345", "1" * 21, "s-t01234-7",
         "sc-02-data-tree-r-last-3.dat", "siahostdata.dat", "siahostmetadata.dat", "volume01.dat", ".dat",
         "postdata_7.bin", "postdata_.bin", "log-0123456789abcdef-01234567", "a" * 50, "a" * 50 + ".sj1",
         "a" * 49, "plot.bin", "piece_cache.bin", "shard_001", "shard_1", "notes.txt", "", "x|y", "plot.bin\n"]


def test_the_walks_name_test_is_any_pattern_matching_the_whole_name(rules):
    matchers = rules.families
    assert matchers.any_name is not None and matchers.other_names      # both halves are in use with the shipped pack
    for name in NAMES:
        expected = any(p.name.fullmatch(name) for p in matchers.artefacts)
        assert matchers.file_name_may_match(name) == bool(expected), name
    assert matchers.file_name_may_match(PLOT) and not matchers.file_name_may_match("notes.txt")


def test_one_alternation_is_anchored_as_a_whole():
    from audit_agent.linear_regex import compile_linear
    from audit_agent.rules.family_match import any_of
    import re
    parts = [compile_linear(p, re.IGNORECASE) for p in (r"ab", r"cd\d", r"(?!x)[a-z]+\.dat")]
    joined, rest = any_of(parts)
    assert [p.pattern for p in rest] == [r"(?!x)[a-z]+\.dat"]      # lookahead: RE2 cannot, so `re` runs it alone
    for name in ("ab", "AB", "cd7", "abcd7", "ab cd7", "xab", "cd", "abab"):
        assert bool(joined.fullmatch(name)) == any(p.fullmatch(name) for p in parts[:2]), name
    assert any_of([parts[2]]) == (None, [parts[2]])
