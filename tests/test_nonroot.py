"""Non-root: the installed agent run as an unprivileged user (nobody) completes, reports partial
coverage with counts, and never claims a compliance it could not verify."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import agent_command

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setpriv/uid switching is Linux-only")]
NOBODY = 65534


def as_nobody() -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user (run the suite as root, e.g. in CI)")
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv (util-linux) is not installed")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = subprocess.run([*prefix, *agent_command(), "--version"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
    if probe.returncode != 0:
        pytest.skip(f"the installed agent is not runnable by uid {NOBODY} here: {probe.stderr.strip()[:200]}")
    return prefix


@pytest.fixture
def shared_dir():
    """A directory of nobody's (tmp_path's parents are private to root): only nobody and root write there,
    as the agent requires of an output directory."""
    path = tempfile.mkdtemp(prefix="audit-nonroot-")
    os.chmod(path, 0o755)
    os.chown(path, NOBODY, NOBODY)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(prefix: list[str], *args: str, cwd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": cwd, "NO_COLOR": "1"}
    return subprocess.run([*prefix, *agent_command(), *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def test_unprivileged_scan_completes_with_partial_coverage(processes, shared_dir):
    prefix = as_nobody()
    root_owned = processes.start([sys.executable, "-c", "import time; time.sleep(60)"])   # a process nobody cannot read
    out = os.path.join(shared_dir, "report.json")
    result = run(prefix, "scan", "--window", "1", "--json", out, cwd=shared_dir)

    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    report = json.loads(open(out, encoding="utf-8").read())
    assert report["process_count"] > 0
    coverage = {c["check"]: c for c in report["coverage"]}
    processes_coverage = coverage["processes"]
    assert processes_coverage["status"] == "partial"
    assert processes_coverage["denied"] >= 1 and processes_coverage["inspected"] >= 1
    assert str(processes_coverage["denied"]) in processes_coverage["reason"]
    assert report["verdict"] != "compliant", "an audit that could not look is never reported clean"
    assert any("processes" in reason for reason in report["verdict_reasons"])
    info = os.stat(out)
    assert info.st_uid == NOBODY and stat.S_IMODE(info.st_mode) == 0o640
    assert root_owned.poll() is None


def test_unprivileged_scan_fails_on_incomplete_when_asked(shared_dir):
    prefix = as_nobody()
    out = os.path.join(shared_dir, "report.json")
    result = run(prefix, "scan", "--window", "0", "--quiet", "--fail-on", "never", "--fail-on-incomplete",
                 "--json", out, cwd=shared_dir)
    report = json.loads(open(out, encoding="utf-8").read())
    assert "Traceback" not in result.stderr
    if report["verdict"] == "incomplete":
        assert result.returncode == 3
    else:       # findings outrank incompleteness in the verdict; they are not compliance either
        assert report["verdict"] in ("needs_review", "non_compliant") and result.returncode == 0


def test_unprivileged_collect_then_offline_scan(shared_dir):
    prefix = as_nobody()
    snapshot = os.path.join(shared_dir, "snap.json")
    result = run(prefix, "collect", "--window", "0", "-o", snapshot, "--quiet", cwd=shared_dir)
    assert result.returncode == 0, result.stderr
    data = json.loads(open(snapshot, encoding="utf-8").read())
    denied = [p for p in data["processes"] if p["denied"]]
    assert denied, "as nobody, some processes must be only partly readable"
    assert all(set(p["denied"]) <= {"exe", "cwd", "cmdline", "environ", "username"} for p in denied)
    replay = run(prefix, "scan", "--snapshot", snapshot, "--quiet", "--fail-on", "never",
                 "--json", os.path.join(shared_dir, "r.json"), cwd=shared_dir)
    assert replay.returncode == 0, replay.stderr
    assert json.loads(open(os.path.join(shared_dir, "r.json")).read())["verdict"] != "compliant"
