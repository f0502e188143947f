"""End to end: a real stand-in miner talks Stratum to a pool on 127.0.0.1 and burns CPU;
the installed agent scans the real host and must name it, then be clean of it once it stops."""
from __future__ import annotations

import json
import uuid

import jsonschema
import pytest

from audit_agent.schemas import published_schema
from tests.conftest import MONERO_WALLET, start_miner

pytestmark = pytest.mark.e2e


def findings_for(report: dict, pid: int) -> list[dict]:
    return [f for f in report["findings"] if f["subject"]["pid"] == pid]


def scan(agent, tmp_path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "report.json"
    result = agent("scan", "--window", "2", "--json", str(out), "--quiet", *extra)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(out.read_text())
    jsonschema.validate(report, published_schema("report.schema.json"))
    return result.returncode, report


def test_xmrig_style_miner_is_found_then_gone(agent, pool, processes, tmp_path):
    url = f"stratum+tcp://127.0.0.1:{pool.port}"
    login = f"{MONERO_WALLET}.{uuid.uuid4().hex[:10]}"     # this test's own worker name: other runs may mine too
    miner = start_miner(processes, ["xmrig", "-o", url, "-u", login, "-p", "rig01secret",
                                    "--donate-level", "1", "-a", "rx/0"])
    code, report = scan(agent, tmp_path)

    assert code == 1
    assert report["verdict"] == "non_compliant"
    mine = findings_for(report, miner.pid)
    assert len(mine) == 1, "one finding per subject"
    finding = mine[0]
    assert finding["severity"] in ("high", "critical")
    assert finding["confidence"] >= 0.9
    fields = {e["field"] for e in finding["evidence"]}
    assert {"argv0", "cmdline", "login", "connection"} <= fields
    assert f"127.0.0.1:{pool.port}" in finding["subject"]["connections"]
    assert any("xmrig" in r for r in finding["reasons"])
    assert login in json.dumps(finding), "wallets are evidence and stay"
    assert "rig01secret" not in json.dumps(report), "pool passwords are redacted"
    assert finding["attack"] == ["T1496"]
    assert "login" in pool.methods and pool.logins, "the stand-in really spoke Stratum"

    processes.stop(miner)
    code, report = scan(agent, tmp_path)
    assert findings_for(report, miner.pid) == []
    assert not any(login in json.dumps(f) for f in report["findings"])
    # Nothing of ours is left; on a shared machine other high findings may exist, and the code must say so.
    others = [f for f in report["findings"] if f["status"] == "open" and f["severity"] in ("high", "critical")]
    assert code == (1 if others else 0)


def test_fail_on_never_and_critical_change_the_exit_code(agent, pool, processes, tmp_path):
    start_miner(processes, ["xmrig", "-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET])
    code, report = scan(agent, tmp_path, "--fail-on", "never")
    assert code == 0
    assert report["verdict"] == "non_compliant"


def test_scan_of_saved_snapshot_matches_live_evidence(agent, pool, processes, tmp_path):
    miner = start_miner(processes, ["xmrig", "-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET])
    snapshot = tmp_path / "snap.json"
    result = agent("collect", "--window", "1", "-o", str(snapshot), "--quiet")
    assert result.returncode == 0, result.stderr
    jsonschema.validate(json.loads(snapshot.read_text()), published_schema("snapshot.schema.json"))
    processes.stop(miner)           # the offline scan must not look at the host
    code, report = scan(agent, tmp_path, "--snapshot", str(snapshot))
    assert code == 1
    assert findings_for(report, miner.pid)
