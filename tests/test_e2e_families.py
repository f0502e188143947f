"""End to end: stand-ins of Chia, Filecoin, Subspace, Storj and Qubic with real-looking argv, configs where the
software reads them and sparse artefacts, plus a storage-heavy benign host (ceph-osd, MinIO, a dataset of
100 GiB sparse files), all running at once; one real scan of the real host must name each farmer and miner
with its family and farmed capacity, and say nothing about the benign ones.

Every assertion is about the processes and folders this module started and created (the host is shared).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import jsonschema
import pytest

from audit_agent.schemas import published_schema
from tests.conftest import agent_command

pytestmark = pytest.mark.e2e

GIB = 1 << 30
PLOT = "plot-k32-2024-03-01-10-11-{:064x}.plot"
STANDIN_C = Path(__file__).parent / "standin" / "farmer.c"


def sparse(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


class Host:
    """The stand-ins and their files; ended by PID and removed at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[subprocess.Popen] = []
        self.binary = root / "bin" / "farmer-standin"
        self.binary.parent.mkdir(parents=True)
        subprocess.run(["cc", "-O2", "-o", str(self.binary), str(STANDIN_C)], check=True)

    def program(self, name: str, where: Path | None = None) -> Path:
        """The stand-in binary under a real program's name."""
        target = (where or self.root / "bin") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.binary, target)
        return target

    def start(self, exe: Path, argv: list[str], *, env: dict | None = None, cwd: Path | None = None,
              open_files: list[Path] = (), listen: int | None = None) -> subprocess.Popen:
        extra = {"STANDIN_OPEN": ":".join(map(str, open_files))} if open_files else {}
        if listen:
            extra["STANDIN_LISTEN"] = str(listen)
        proc = subprocess.Popen(argv, executable=str(exe), env={**os.environ, **(env or {}), **extra},
                                cwd=cwd or self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True)
        self.started.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def bare_python(self, env: dict, cwd: Path | None = None) -> subprocess.Popen:
        """`python3` with no arguments, kept alive by an open stdin: how a renamed Python farmer looks."""
        proc = subprocess.Popen(["python3"], executable=shutil.which("python3"), env={**os.environ, **env},
                                cwd=cwd or self.root, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def farm():
    # Not under /tmp: an executable in a world-writable folder is a finding of its own (stealth), and the
    # benign stand-ins must be as quiet as the real ceph-osd and MinIO in /usr/bin.
    base = "/var/lib" if os.access("/var/lib", os.W_OK) else None
    host = Host(Path(tempfile.mkdtemp(prefix="aa-farm-", dir=base)))
    os.chmod(host.root, 0o755)
    try:
        yield build(host)
    finally:
        host.stop()


def build(host: Host) -> dict:
    root, pids, dirs = host.root, {}, {}
    # Chia: harvester and farmer, plots in the folder config.yaml names; the same config read by a bare python3.
    home = root / "chia-home"
    plots = root / "disk1" / "plots"
    plot_files = [sparse(plots / PLOT.format(n), 100 * GIB) for n in (1, 2)]
    config = home / ".chia" / "mainnet" / "config" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("selected_network: mainnet\nfarmer:\n  xch_target_address: xch1qyfarmer9q0example\n"
                      "pool:\n  xch_target_address: xch1qyfarmer9q0example\n"
                      f"harvester:\n  farmer_peer:\n    host: 127.0.0.1\n    port: 8447\n  plot_directories:\n"
                      f"  - {plots}\n")
    env = {"HOME": str(home)}
    pids["chia_harvester"] = host.start(host.program("chia_harvester"), ["chia_harvester"], env=env,
                                        open_files=plot_files[:1]).pid
    pids["chia_farmer"] = host.start(host.program("chia_farmer"), ["chia_farmer"], env=env).pid
    pids["chia_python3"] = host.bare_python(env).pid
    dirs["chia"] = plots
    # Filecoin: lotus-miner with its repo in LOTUS_MINER_PATH, storage.json naming the sector store; a worker.
    repo, store = root / "lotusminer", root / "disk2" / "store"
    repo.mkdir()
    (repo / "storage.json").write_text(json.dumps({"StoragePaths": [{"Path": str(store)}]}))
    (store / "sealed").mkdir(parents=True)
    (store / "sectorstore.json").write_text(json.dumps({"ID": "5f3c", "Weight": 10, "CanSeal": True,
                                                        "CanStore": True}))
    for n in (1, 2, 3):
        sparse(store / "sealed" / f"s-t01000-{n}", 32 * GIB)
    pids["lotus-miner"] = host.start(host.program("lotus-miner"), ["lotus-miner", "run"],
                                     env={"LOTUS_MINER_PATH": str(repo)}).pid
    pids["lotus-worker"] = host.start(host.program("lotus-worker"), ["lotus-worker", "run", "--listen",
                                      "127.0.0.1:3456"], env={"FIL_PROOFS_USE_GPU_TREE_BUILDER": "1",
                                                              "MINER_API_INFO": "token:/ip4/127.0.0.1/tcp/2345/http"}).pid
    dirs["filecoin"] = store / "sealed"
    # Subspace: a farmer with its farm given as path=..,size=..
    farm_dir = root / "disk3" / "farm"
    sparse(farm_dir / "plot.bin", 100 * GIB)
    sparse(farm_dir / "piece_cache.bin", 1 * GIB)
    pids["subspace-farmer"] = host.start(host.program("subspace-farmer"), [
        "subspace-farmer", "farm", "--reward-address", "su1x2y3z4exampleaddress", f"path={farm_dir},size=100G"]).pid
    dirs["subspace"] = farm_dir
    # Storj: storagenode run --config-dir, config.yaml with flat dotted keys naming the storage path.
    storj = root / "storj"
    (storj / "config").mkdir(parents=True)
    (storj / "identity").mkdir()
    (storj / "config" / "config.yaml").write_text(
        "operator.wallet: 0x8a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7\nstorage.allocated-disk-space: 2.00 TB\n"
        f"storage.path: {storj / 'storage'}\ncontact.external-address: node.example.org:28967\n")
    hashstore = storj / "storage" / "hashstore" / "121RTSDpyNZVcEU84Ticf2L1ntiuUimbWgfATz21tuvgk3vzoA6" / "s0" / "0a"
    sparse(hashstore / "log-0000000000000001-00000000", 1 * GIB)
    pids["storagenode"] = host.start(host.program("storagenode"), [
        "storagenode", "run", "--config-dir", str(storj / "config"), "--identity-dir", str(storj / "identity")]).pid
    dirs["storj"] = hashstore
    # Qubic: qli-Client with appsettings.json next to it (account token, websocket pool), started with no
    # arguments; the same client renamed to something innocent, reading the file from its working directory.
    qdir = root / "q"
    qdir.mkdir()
    (qdir / "appsettings.json").write_text(json.dumps({"ClientSettings": {
        "accessToken": "eyJhbGciOiJIUzUxMiJ9.eyJJZCI6ImUxIn0.c2lnbmF0dXJlc2VjcmV0", "amountOfThreads": 4,
        "alias": "lab-rig-7", "poolAddress": "wss://wps.qubic.li/ws", "pps": True}}))
    pids["qli-Client"] = host.start(host.program("qli-Client", qdir), ["./qli-Client"], cwd=qdir).pid
    pids["qubic-renamed"] = host.start(host.program("sysmon-helper"), ["sysmon-helper"], cwd=qdir).pid
    # The benign storage-heavy host: ceph-osd and MinIO with 100 GiB sparse files, a dataset of the same size.
    osd = root / "ceph" / "osd-3"
    blocks = [sparse(osd / "block", 100 * GIB), sparse(osd / "block.db", 32 * GIB)]
    pids["ceph-osd"] = host.start(host.program("ceph-osd"), [
        "ceph-osd", "-f", "--cluster", "ceph", "--id", "3", "--setuser", "ceph", "--setgroup", "ceph"],
        open_files=blocks).pid
    minio = root / "minio-data"
    parts = [sparse(minio / "bucket" / "genome.tar" / f"part.{n}", 100 * GIB) for n in (1, 2)]
    sparse(minio / "bucket" / "vm" / "ubuntu-k32-2024.qcow2", 102 * GIB)
    pids["minio"] = host.start(host.program("minio"), ["minio", "server", str(minio), "--console-address", ":0"],
                               open_files=parts[:1]).pid
    dataset = root / "datasets" / "imagenet"
    shards = [sparse(dataset / f"train-{n:05d}-of-01024.tar", 100 * GIB) for n in range(3)]
    sparse(dataset / "sealed" / "s-t-archive-1", 32 * GIB)     # a folder called sealed, a name that is not a sector
    pids["dataset-reader"] = host.start(host.program("python3.11"), [
        "python3.11", "train.py", "--data", str(dataset), "--plot", "loss.png"], open_files=shards[:1]).pid
    pids["pm4py"] = host.start(host.program("python3"), [
        "python3", "-m", "pm4py.discover_process", "--log", str(dataset), "--mine", "inductive"]).pid
    dirs["benign"] = [osd, minio, dataset]
    report = scan(root / "report.json")
    return {"report": report, "pids": pids, "dirs": dirs, "root": root}


def scan(out: Path) -> dict:
    result = subprocess.run([*agent_command(), "scan", "--window", "1", "--json", str(out), "--quiet"],
                            check=False, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(out.read_text())
    jsonschema.validate(report, published_schema("report.schema.json"))
    return report


def about(report: dict, pid: int) -> dict:
    found = [f for f in report["findings"] if f["subject"]["pid"] == pid]
    assert len(found) == 1, f"one finding for pid {pid}, got {len(found)}"
    return found[0]


def test_chia_harvester_farmer_and_renamed_python_are_found_with_capacity(farm):
    report, pids = farm["report"], farm["pids"]
    harvester = about(report, pids["chia_harvester"])
    assert harvester["category"] == "storage_farming" and harvester["severity"] in ("high", "critical")
    assert {"AA-CHIA-NAME", "AA-CHIA-CONFIG", "AA-CHIA-FILE"} <= set(harvester["rule_ids"])
    capacity = next(e for e in harvester["evidence"] if e["rule_id"] == "AA-CHIA-FILE")
    assert str(farm["dirs"]["chia"]) in capacity["value"] and "0.20 TiB" in capacity["matched"]
    assert "xch1qyfarmer9q0example" in json.dumps(harvester), "the payout address is evidence"
    assert "AA-CHIA-NAME" in about(report, pids["chia_farmer"])["rule_ids"]
    renamed = about(report, pids["chia_python3"])
    assert renamed["severity"] in ("high", "critical")
    assert {"AA-CHIA-CONFIG", "AA-CHIA-FILE"} <= set(renamed["rule_ids"]) and "AA-CHIA-NAME" not in renamed["rule_ids"]


def test_filecoin_miner_and_worker_are_found(farm):
    report, pids = farm["report"], farm["pids"]
    miner = about(report, pids["lotus-miner"])
    assert {"AA-FILECOIN-NAME", "AA-FILECOIN-CMD", "AA-FILECOIN-CONFIG", "AA-FILECOIN-FILE"} <= set(miner["rule_ids"])
    sectors = next(e for e in miner["evidence"] if e["rule_id"] == "AA-FILECOIN-FILE")
    assert "3 sector file(s)" in sectors["value"] and "0.09 TiB" in sectors["matched"]
    worker = about(report, pids["lotus-worker"])
    assert {"AA-FILECOIN-NAME", "AA-FILECOIN-ENV"} <= set(worker["rule_ids"])
    assert worker["category"] == "storage_farming"


def test_subspace_farmer_is_found_with_its_farm(farm):
    finding = about(farm["report"], farm["pids"]["subspace-farmer"])
    assert {"AA-SUBSPACE-NAME", "AA-SUBSPACE-CMD", "AA-SUBSPACE-FILE"} <= set(finding["rule_ids"])
    assert str(farm["dirs"]["subspace"]) in json.dumps(finding["evidence"])


def test_storj_node_is_found_through_its_config(farm):
    finding = about(farm["report"], farm["pids"]["storagenode"])
    assert {"AA-STORJ-NAME", "AA-STORJ-CMD", "AA-STORJ-CONFIG", "AA-STORJ-FILE"} <= set(finding["rule_ids"])
    assert "0x8a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7" in json.dumps(finding)


def test_qubic_client_and_its_renamed_copy_are_found_by_config(farm):
    report, pids = farm["report"], farm["pids"]
    client = about(report, pids["qli-Client"])
    assert client["category"] in ("miner", "network") and client["severity"] in ("high", "critical")
    assert {"AA-QUBIC-NAME", "AA-QUBIC-CONFIG"} <= set(client["rule_ids"])
    renamed = about(report, pids["qubic-renamed"])
    assert "AA-QUBIC-CONFIG" in renamed["rule_ids"] and renamed["severity"] in ("high", "critical")
    assert "wss://wps.qubic.li/ws" in json.dumps(renamed), "the websocket pool is named"
    assert "c2lnbmF0dXJlc2VjcmV0" not in json.dumps(report), "the account token never reaches the report"


def test_the_storage_heavy_benign_host_stays_quiet(farm):
    report, pids = farm["report"], farm["pids"]
    for name in ("ceph-osd", "minio", "dataset-reader", "pm4py"):
        assert [f for f in report["findings"] if f["subject"]["pid"] == pids[name]] == [], name
    text = json.dumps(report["findings"])
    for folder in farm["dirs"]["benign"]:
        assert str(folder) not in text
    assert any(c["check"] == "artefacts" for c in report["coverage"])
    assert any(c["check"] == "family_configs" for c in report["coverage"])
