"""Every process's cgroup from one walk of the cgroup v2 tree (cgroups.unified_members): the same answer as each
process's /proc/PID/cgroup, or no answer at all (each process's own file is then read, as before)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from audit_agent.collect import cgroups
from audit_agent.collect.cgroups import Members, cgroup_path, unified_members
from audit_agent.collect.processes import CLOCK_TICKS, FirstReading, ProcReader, read_processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups are Linux")

ME = os.getpid()


def fake_host(tmp_path: Path, tree: dict[str, str], own: str = "/user.slice/me.scope", mount_root: str = "/",
              kind: str = "cgroup2", mount_name: str = "cg") -> str:
    """A proc root whose self/ names a cgroup2 mount at tmp_path/<mount_name> holding `tree`
    (relative folder -> cgroup.procs text); returns the proc root."""
    mount = tmp_path / mount_name
    for folder, procs in tree.items():
        where = mount / folder.strip("/") if folder != "/" else mount
        where.mkdir(parents=True, exist_ok=True)
        (where / "cgroup.procs").write_text(procs)
    for folder in [mount, *mount.rglob("*")]:
        if folder.is_dir() and not (folder / "cgroup.procs").exists():
            (folder / "cgroup.procs").write_text("")        # every cgroup has one
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text(f"1:cpu:/elsewhere\n0::{own}\n")
    escaped = str(mount).replace(" ", "\\040")
    (proc / "mountinfo").write_text(f"22 1 0:21 / / rw - ext4 /dev/sda1 rw\n"
                                    f"31 22 0:28 {mount_root} {escaped} rw,nosuid - {kind} cgroup2 rw\n")
    return str(tmp_path / "proc")


TREE = {"/": "1\n2\n", "/system.slice": "", "/system.slice/sshd.service": "300\n301\n",
        "/user.slice/me.scope": f"{ME}\n4000\n", "/kubepods/pod1/" + "ab" * 32: "5000\n"}


def test_the_walk_puts_every_listed_process_where_its_own_file_would(tmp_path):
    members = unified_members(fake_host(tmp_path, TREE), CLOCK_TICKS)
    assert members is not None
    assert members.paths == {1: b"/", 2: b"/", 300: b"/system.slice/sshd.service", 301: b"/system.slice/sshd.service",
                             ME: b"/user.slice/me.scope", 4000: b"/user.slice/me.scope",
                             5000: b"/kubepods/pod1/" + b"ab" * 32}
    assert cgroup_path(members.line(300, 0).decode()) == "/system.slice/sshd.service"
    assert members.started == pytest.approx(time.clock_gettime(time.CLOCK_BOOTTIME) * CLOCK_TICKS, abs=CLOCK_TICKS)


def test_a_process_started_since_the_walk_began_is_read_from_its_own_file(tmp_path):
    members = unified_members(fake_host(tmp_path, TREE), CLOCK_TICKS)
    assert members.line(300, members.started - 2) is not None
    assert members.line(300, members.started) is None            # its PID may have been another's
    assert members.line(300, members.started + 500) is None
    assert members.line(999, 0) is None                          # not listed: a newcomer, another namespace


def test_a_mount_point_with_a_space_is_unescaped(tmp_path):
    assert unified_members(fake_host(tmp_path, TREE, mount_name="cg roups"), CLOCK_TICKS) is not None


@pytest.mark.parametrize("change", ["own elsewhere", "own absent", "no unified line", "v1 only", "subtree mount",
                                    "twice is fine", "too many", "not a number", "too long", "folder for file"])
def test_the_walk_answers_only_when_it_can_answer_as_proc_would(tmp_path, monkeypatch, change):
    tree, own, root, kind, limit = dict(TREE), "/user.slice/me.scope", "/", "cgroup2", cgroups.MAX_CGROUPS
    if change == "own elsewhere":
        own = "/system.slice/sshd.service"          # a cgroup namespace, or a mount of another view
    elif change == "own absent":
        tree["/user.slice/me.scope"] = "4000\n"
    elif change == "v1 only":
        kind = "cgroup"
    elif change == "subtree mount":
        root = "/user.slice"
    elif change == "twice is fine":
        tree["/system.slice"] = "301\n"             # threaded cgroups list a process twice: its own file decides
    elif change == "too many":
        limit = 7                                   # the tree has eight
    elif change == "not a number":
        tree["/system.slice"] = "12\nforty\n"
    elif change == "too long":
        monkeypatch.setattr(cgroups, "MAX_PROCS_BYTES", 4)
    proc = fake_host(tmp_path, tree, own=own, mount_root=root, kind=kind)
    if change == "no unified line":
        (Path(proc) / "self" / "cgroup").write_text("1:cpu:/user.slice/me.scope\n")
    if change == "folder for file":
        (tmp_path / "cg" / "system.slice" / "cgroup.procs").unlink()
        (tmp_path / "cg" / "system.slice" / "cgroup.procs").mkdir()
    members = unified_members(proc, CLOCK_TICKS, limit)
    if change == "twice is fine":
        assert members is not None and 301 not in members.paths and 300 in members.paths
    else:
        assert members is None


def test_the_reader_takes_the_walk_and_reads_a_late_comer_itself(monkeypatch):
    """A made-up walk that puts us in a wrong cgroup shows which answer the reader used."""
    first = FirstReading(time.monotonic() - 1, {})
    truth = {p.pid: p.cgroup for p in read_processes(first, "/proc")[0]}
    for started, expected in ((1 << 62, "/planted"), (0, truth[ME])):
        reader = ProcReader("/proc")
        planted = Members({ME: b"/planted"}, started)
        reader.walk_cgroups = lambda _, reader=reader, planted=planted: setattr(reader, "members", planted)
        seen = {p.pid: p.cgroup for p in reader.read_all(first, 1.0) if p is not None}
        assert seen[ME] == expected
        assert all(seen[pid] == truth[pid] for pid in seen if pid != ME and pid in truth)


UNIFIED = cgroups.unified_mount("/proc")


@pytest.fixture
def own_cgroup():
    """A cgroup made for the test under the unified hierarchy, removed after; skipped where we may not."""
    if UNIFIED is None or os.geteuid() != 0:
        pytest.skip("needs a cgroup2 mount and root")
    folder = Path(os.fsdecode(UNIFIED)) / f"audit-agent-test-{uuid.uuid4().hex[:8]}" / "job_42 inner"
    try:
        folder.mkdir(parents=True)
    except OSError as error:
        pytest.skip(f"cannot make a cgroup here: {error}")
    yield folder
    for path in (folder, folder.parent):
        for _ in range(50):
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.05)        # the moved process is still being reaped


def test_processes_moved_into_a_new_cgroup_are_placed_alike_by_the_walk_and_by_proc(own_cgroup):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (own_cgroup / "cgroup.procs").write_text(str(sleeper.pid))
        members = unified_members("/proc", CLOCK_TICKS)
        assert members is not None, "this host's walk should answer (root, unified mount, our own cgroup found)"
        own_file = Path(f"/proc/{sleeper.pid}/cgroup").read_text()
        expected = "/" + str(own_cgroup.relative_to(os.fsdecode(UNIFIED)))
        assert cgroup_path(own_file) == expected
        assert members.paths[sleeper.pid] == os.fsencode(expected)
        first = FirstReading(time.monotonic() - 1, {})
        walked = {p.pid: p for p in read_processes(first, "/proc")[0]}
        reader = ProcReader("/proc")
        reader.walk_cgroups = lambda _: None
        own = {p.pid: p for p in reader.read_all(first, 1.0) if p is not None}
        assert walked[sleeper.pid].cgroup == own[sleeper.pid].cgroup == expected
        for pid in set(walked) & set(own):
            assert (walked[pid].cgroup, walked[pid].container_id, walked[pid].slurm_job_id) == \
                (own[pid].cgroup, own[pid].container_id, own[pid].slurm_job_id), pid
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_walk_stops_where_it_would_cost_more_than_reading_each_process(tmp_path):
    proc = fake_host(tmp_path, TREE)        # eight cgroups: /, system.slice, sshd.service, user.slice, me.scope, ...
    assert unified_members(proc, CLOCK_TICKS, limit=8) is not None      # exactly enough
    assert unified_members(proc, CLOCK_TICKS, limit=7) is None
    assert unified_members(proc, CLOCK_TICKS, limit=0) is None


def test_the_reader_walks_only_when_the_cgroups_are_fewer_than_half_its_processes(monkeypatch):
    asked = []
    monkeypatch.setattr("audit_agent.collect.processes.unified_members",
                        lambda root, ticks, limit: asked.append(limit))
    reader = ProcReader("/proc")
    reader.read = lambda pid, entry, first, elapsed: None     # only how many processes were listed matters here
    listed = len(reader.read_all(FirstReading(time.monotonic() - 1, {}), 1.0))
    assert asked == [min(cgroups.MAX_CGROUPS, listed // 2)] and listed > 2
