"""End to end: a process hidden by a preload library that hooks far more than readdir (open*, fopen*, *stat*,
access, readlink*, kill, its own line in /proc/self/maps, and /etc/ld.so.preload itself) is still found by the
real agent, and the library and its hidden ld.so.preload are reported.

Two ways in: LD_PRELOAD on the agent only, and a real /etc/ld.so.preload. The second never touches the host's
/etc: the agent runs in a private mount namespace whose /etc is an overlay over the real one, so the file exists
only for the processes in that namespace and disappears with them (nothing to restore, even if the test dies).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MONERO_WALLET, agent_command, start_miner
from tests.test_e2e_hidden import compile_c, needs_cc

pytestmark = [pytest.mark.e2e, needs_cc,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc are Linux")]
HIDER_SOURCE = Path(__file__).resolve().parent / "standin" / "hider.c"


def libc_view(pid: int, env: dict[str, str], wrapper: list[str] = ()) -> dict:
    """What a program linked against libc sees of `pid` and /etc/ld.so.preload under the hider."""
    code = ("import os, json, sys\npid = int(sys.argv[1])\n"
            "def alive():\n    try:\n        os.kill(pid, 0)\n        return True\n    except OSError:\n        return False\n"
            "def opens():\n    try:\n        open(f'/proc/{pid}/status').close()\n        return True\n"
            "    except OSError:\n        return False\n"
            "print(json.dumps({'listed': str(pid) in os.listdir('/proc'), 'exists': os.path.exists(f'/proc/{pid}'),"
            " 'alive': alive(), 'opens': opens(), 'preload_file': os.path.exists('/etc/ld.so.preload')}))")
    out = subprocess.run([*wrapper, sys.executable, "-c", code, str(pid)], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def hider(tmp_path):
    return compile_c(HIDER_SOURCE.read_text(), tmp_path / "libsystemd-shim.so", "-shared", "-fPIC", "-ldl")


@pytest.fixture
def hidden_miner(tmp_path, listed_pool, processes):
    work = tmp_path / "job"
    work.mkdir()
    (work / "config.json").write_text(json.dumps({"pools": [{"url": f"stratum+tcp://127.0.0.1:{listed_pool.port}",
                                                            "user": MONERO_WALLET, "pass": "x"}]}))
    return start_miner(processes, ["dbus-session-helper"], cwd=work)


def hidden_finding(report: dict, pid: int) -> dict:
    mine = [f for f in report["findings"] if f["subject"]["pid"] == pid and f["subject"]["kind"] == "process"]
    assert mine, "the hidden process is reported"
    return mine[0]


def host_rules(report: dict) -> set[str]:
    return {r for f in report["findings"] if f["subject"]["kind"] == "host" for r in f["rule_ids"]}


def test_hider_hooking_open_stat_kill_does_not_hide_the_process(hider, hidden_miner, agent, tmp_path):
    env = {"LD_PRELOAD": str(hider), "HIDE_PID": str(hidden_miner.pid)}
    seen = libc_view(hidden_miner.pid, env)
    assert seen == {"listed": False, "exists": False, "alive": False, "opens": False, "preload_file": False}, \
        "the hider hides the process from readdir, stat, kill and open"

    out = tmp_path / "report.json"
    result = agent("scan", "--window", "1", "--json", str(out), "--quiet", timeout=240, env=env)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(out.read_text())
    finding = hidden_finding(report, hidden_miner.pid)
    assert "AA-STEALTH-007" in finding["rule_ids"] and finding["severity"] == "critical"
    assert finding["subject"]["cmdline"].startswith("dbus-session-helper"), "its command line is read past the hooks"
    assert "AA-PORT-001" in finding["rule_ids"], "its pool connection, ownerless to psutil, is tied to it"
    hidden = [h for h in report["findings"] if h["subject"]["kind"] == "host"]
    assert {"AA-STEALTH-011", "AA-STEALTH-015"} <= host_rules(report), "the library itself is reported"
    assert any(str(hider) in reason for h in hidden for reason in h["reasons"])
    assert result.returncode == 1


def overlay_etc_wrapper(tmp_path: Path, library: Path) -> list[str]:
    """A command prefix: private mount namespace, /etc overlaid, /etc/ld.so.preload naming `library`."""
    upper, work = tmp_path / "etc-upper", tmp_path / "etc-work"
    upper.mkdir()
    work.mkdir()
    (upper / "ld.so.preload").write_text(f"{library}\n")
    script = (f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc || exit 97; "
              'exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


def can_overlay_etc(tmp_path: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    wrapper = overlay_etc_wrapper(probe, Path("/nonexistent-probe.so"))
    result = subprocess.run([*wrapper, "true"], capture_output=True, timeout=30)
    return result.returncode == 0


def test_real_ld_so_preload_that_hides_itself_is_read_and_reported(hider, hidden_miner, tmp_path):
    if not can_overlay_etc(tmp_path):
        pytest.skip("needs root with mount namespaces and overlayfs (to give the agent its own /etc)")
    wrapper = overlay_etc_wrapper(tmp_path, hider)
    env = {"HIDE_PID": str(hidden_miner.pid), "LD_PRELOAD": ""}
    seen = libc_view(hidden_miner.pid, env, wrapper)
    assert not seen["listed"] and not seen["alive"] and not seen["preload_file"], seen
    assert not Path("/etc/ld.so.preload").exists() or str(hider) not in Path("/etc/ld.so.preload").read_text()

    out = tmp_path / "report.json"
    result = subprocess.run([*wrapper, *agent_command(), "scan", "--window", "1", "--json", str(out), "--quiet"],
                            capture_output=True, text=True, timeout=240, env={**os.environ, **env},
                            stdin=subprocess.DEVNULL)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(out.read_text())
    assert "AA-STEALTH-007" in hidden_finding(report, hidden_miner.pid)["rule_ids"]
    rules = host_rules(report)
    assert {"AA-STEALTH-010", "AA-STEALTH-016", "AA-STEALTH-015"} <= rules, rules
    host = [f for f in report["findings"] if f["subject"]["kind"] == "host"][0]
    assert host["severity"] == "critical"
    assert any(str(hider) in e["value"] for e in host["evidence"]), "the preload entry is named"
