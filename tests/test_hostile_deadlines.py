"""A hostile host cannot hang the scan (issue 13 item 2).

The hostile piece is a real FUSE server (tests/standin/stallfs.py, fusepy on
libfuse2) mounted with allow_other, which stops answering on demand: over a
user's unit folder, and serving a running program's executable. The test kills
the server at the end, which makes every waiter on the mount fail and return.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit_agent.collect import deadline
from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FUSE is Linux")]
STALLFS = REPO / "tests" / "standin" / "stallfs.py"


class StallMount:
    def __init__(self, mountpoint: Path, program: str | None = None) -> None:
        self.mountpoint = mountpoint
        self.flag = Path(str(mountpoint).rstrip("/") + ".stall")
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.server = subprocess.Popen([sys.executable, str(STALLFS), str(mountpoint), *([program] if program else [])],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       stdin=subprocess.DEVNULL)
        line = self.server.stdout.readline().strip()
        if line != "mounted":
            self.close()
            pytest.skip(f"cannot mount a FUSE file system here: {line or self.server.stdout.read()[-300:]}")

    def stall(self, only: str = "") -> None:
        """Stop answering (only processes whose command line holds `only`, when given)."""
        self.flag.write_text(only)

    def close(self) -> None:
        if self.server.poll() is None:
            os.kill(self.server.pid, signal.SIGKILL)    # the kernel fails every request still waiting
        self.server.wait(timeout=10)
        subprocess.run(["fusermount", "-u", "-z", str(self.mountpoint)], capture_output=True)
        self.flag.unlink(missing_ok=True)


@pytest.fixture
def stall_mount():
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse") or not shutil.which("fusermount"):
        pytest.skip("needs root, /dev/fuse and fusermount")
    pytest.importorskip("fuse")
    mounts: list[StallMount] = []

    def mount(mountpoint: Path, program: str | None = None) -> StallMount:
        mounts.append(StallMount(mountpoint, program))
        return mounts[-1]
    yield mount
    for m in mounts:
        m.close()


def test_a_stalled_call_is_abandoned_and_its_mount_remembered(stall_mount, tmp_path):
    fs = stall_mount(tmp_path / "mnt")
    clock = deadline.Deadlines(call_timeout=1.0)
    assert clock.call(os.stat, str(fs.mountpoint / "unit.service"), path=str(fs.mountpoint / "unit.service")).st_size
    fs.stall()
    started = time.monotonic()
    with pytest.raises(deadline.TimedOut):
        clock.call(os.stat, str(fs.mountpoint / "unit.service"), path=str(fs.mountpoint / "unit.service"))
    with pytest.raises(deadline.TimedOut, match="stopped answering"):
        clock.call(os.listdir, str(fs.mountpoint), path=str(fs.mountpoint))
    assert time.monotonic() - started < 30, "the second call did not wait its own timeout"
    assert len(clock.timed_out) == 1 and "unit.service" in clock.timed_out[0]


def test_a_stalled_step_is_given_up_and_later_calls_of_it_fail_at_once(stall_mount, tmp_path):
    fs = stall_mount(tmp_path / "mnt")
    fs.stall()
    clock = deadline.Deadlines(call_timeout=60)
    seen = []

    def step():
        seen.append(clock.left())
        return os.listdir(fs.mountpoint)       # unguarded: only the step budget can end it
    done, result = clock.run_step(step, budget=1.0)
    assert not done and result is None and clock.abandoned_steps == 1
    assert seen and seen[0] <= 1.0


def fake_root(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    units = root / "home" / "mallory" / ".config" / "systemd" / "user"
    units.parent.mkdir(parents=True)
    return root, units


def run_agent(*args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    from tests.conftest import agent_command
    started = time.monotonic()
    result = subprocess.run([*agent_command(), *args], capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    return result, time.monotonic() - started


def test_a_fuse_mount_on_a_users_unit_folder_cannot_hang_the_scan(stall_mount, tmp_path):
    root, units = fake_root(tmp_path)
    fs = stall_mount(units)
    fs.stall()
    out = tmp_path / "report.json"
    result, _ = run_agent("scan", "--window", "0", "--etc-root", str(root / "etc"), "--call-timeout", "1",
                          "--fail-on", "never", "--quiet", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    coverage = {c["check"]: c for c in report["coverage"]}
    assert coverage["deadline"]["status"] == "error"
    assert str(units) in coverage["deadline"]["reason"]
    assert report["verdict"] == "incomplete" or report["findings"], "what could not be seen is not called clean"
    assert any("deadline" in reason for reason in report["verdict_reasons"])


def test_the_scan_ceiling_always_ends_with_a_report(stall_mount, tmp_path):
    root, units = fake_root(tmp_path)
    fs = stall_mount(units)
    fs.stall()
    out = tmp_path / "report.json"
    # a call may wait 120 s, but the whole scan only 20: the persistence step is given up at the ceiling
    result, _ = run_agent("scan", "--window", "0", "--etc-root", str(root / "etc"), "--call-timeout", "120",
                          "--timeout", "20", "--fail-on", "never", "--quiet", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    persistence = next(c for c in report["coverage"] if c["check"] == "persistence")
    # the stalled call is cut to what is left of the step's budget (never the 120 s asked for), and the
    # check says the folder was not entered because its file system did not answer
    assert persistence["status"] in ("error", "partial"), persistence
    assert "did not answer" in persistence["reason"] or "time limit" in persistence["reason"], persistence
    stalled = next(c for c in report["coverage"] if c["check"] == "deadline")
    assert stalled["status"] == "error" and str(units) in stalled["reason"]
    assert report["verdict"] in ("incomplete", "non_compliant", "needs_review")


def test_a_program_run_from_a_stalled_fuse_mount_cannot_hang_the_scan(stall_mount, tmp_path, processes):
    sleeper = shutil.which("sleep")
    fs = stall_mount(tmp_path / "bin", program=sleeper)
    prog = processes.start([str(fs.mountpoint / "prog"), "300"])
    time.sleep(0.3)
    assert os.readlink(f"/proc/{prog.pid}/exe") == str(fs.mountpoint / "prog")
    out = tmp_path / "report.json"
    fs.stall(only=str(out))         # stall only our agent: other scans on a shared host must not hang
    result, _ = run_agent("scan", "--window", "0", "--call-timeout", "1", "--fail-on", "never", "--quiet",
                          "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    coverage = {c["check"]: c for c in report["coverage"]}
    assert "deadline" in coverage and f"/proc/{prog.pid}/exe" in coverage["deadline"]["reason"]
    assert any(p["pid"] == prog.pid for p in report.get("processes", [])) or report["process_count"] > 0


def test_fuses_control_file_system_is_the_kernels_not_a_server_that_can_stall():
    from audit_agent.collect import deadline
    assert not deadline.is_remote("fusectl")
    assert deadline.is_remote("fuse.sshfs") and deadline.is_remote("fuse") and deadline.is_remote("nfs4")
    assert not deadline.is_remote("ext4")
