"""End to end: a systemd user unit and a user crontab (in a temporary root, not the real system) start the
stand-in miner, which really runs and talks Stratum to a pool on 127.0.0.1; the real agent finds both entries,
resolves them to the program on disk, and ties them to the running process."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import MINER_SCRIPT, MONERO_WALLET
from tests.factories import write_file as write

HOME_PROGRAM = "/home/alice/.local/share/.cache/dbus-sync"     # innocently named, in a hidden folder



@pytest.mark.e2e
def test_user_unit_and_crontab_start_the_running_miner(tmp_path: Path, agent, pool, processes):
    root = tmp_path / "root"
    write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n")
    program = write(root / HOME_PROGRAM.lstrip("/"), f"#!{sys.executable}\n" + MINER_SCRIPT.read_text())
    program.chmod(0o755)
    args = f"-o 127.0.0.1:{pool.port} -u {MONERO_WALLET} -p x"
    units = root / "home/alice/.config/systemd/user"
    unit = write(units / "dbus-sync.service", f"[Unit]\nDescription=D-Bus session sync\n[Service]\n"
                                              f"ExecStart={HOME_PROGRAM} {args}\nRestart=always\n"
                                              "[Install]\nWantedBy=default.target\n")
    (units / "default.target.wants").mkdir()
    os.symlink(unit, units / "default.target.wants/dbus-sync.service")
    crontab = write(root / "var/spool/cron/crontabs/alice", f"@reboot {HOME_PROGRAM} {args} >/dev/null 2>&1\n")

    # The process runs the program where it lies in the temporary root, as it would from the real home.
    miner = processes.start([sys.executable, str(program), *args.split()], wait_for_line="ready",
                            env={"STANDIN_SECONDS": "600"}, timeout=90)   # a busy host starts slowly
    out = tmp_path / "report.json"
    result = agent("scan", "--window", "1", "--etc-root", str(root / "etc"), "--json", str(out), "--quiet",
                   timeout=500)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(out.read_text())

    by_path = {f["subject"]["path"]: f for f in report["findings"] if f["subject"]["kind"] == "persistence"}
    for place in (unit, crontab):
        finding = by_path[str(place)]
        assert finding["subject"]["exe"] == HOME_PROGRAM          # resolved to the program it starts
        assert finding["subject"]["username"] == "alice"
        assert finding["severity"] in ("high", "critical")

    [process] = [f for f in report["findings"] if f["subject"].get("pid") == miner.pid]
    assert "AA-PERSIST-005" in process["rule_ids"]
    tied = " ".join(process["reasons"])
    assert f"{unit}:" in tied and f"{crontab}:1" in tied
    assert any(e["matched"] == str(program) for e in process["evidence"] if e["rule_id"] == "AA-PERSIST-005")
    coverage = next(c for c in report["coverage"] if c["check"] == "persistence")
    assert coverage["status"] in ("ok", "partial")
