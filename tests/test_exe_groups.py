"""The executable scan and the packing check group processes by the file each runs (one stat of /proc/PID/exe
a process, shared by both steps): every process must get what asking it alone gives.

Real processes: several copies of one program, a copy of it under another name, a hard link to it, two
processes of the same path whose files were each deleted after they started, two memfd executables of one
name, and (as root, with unshare) a process in a mount namespace of its own that runs a different file under
the very path the copies run from. Each step's output is compared, field by field, with the straightforward
per-process computation (locate() for each process; the packing loop as it was, an examine_path() each).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from audit_agent.collect import binaries, deadline, packing
from audit_agent.collect.proc_facts import ProcFacts
from audit_agent.collect.processes import FirstReading, ProcReader
from audit_agent.model import Packing, ProcessInfo, Snapshot
from tests.conftest import have_compiler

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
              pytest.mark.skipif(not have_compiler(), reason="no C compiler (cc/gcc) on this machine")]

PROGRAM = r"""
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) { if (argc > 9) puts("%s"); for (;;) pause(); return 0; }
"""
STRINGS = ["mining.subscribe", "donate.v2.xmrig.com"]
MEMFD = ("import os, sys\nfd = os.memfd_create('worker', 0)\nos.write(fd, open(sys.argv[1], 'rb').read())\n"
         "os.execv(f'/proc/self/fd/{fd}', ['worker'])\n")


def build(folder: Path, name: str, marker: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{name}.c"
    source.write_text(PROGRAM % marker)
    out = folder / name
    subprocess.run([have_compiler(), "-O1", "-o", str(out), str(source)], check=True, capture_output=True)
    return out


def running(pid: int, wanted: str, timeout: float = 10) -> None:
    """Until /proc/PID/exe names `wanted` (the process has exec'd it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if os.readlink(f"/proc/{pid}/exe").startswith(wanted):
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"{pid} never ran {wanted}")


@pytest.fixture
def runners(processes, tmp_path):
    """pid -> what it is, for the processes described in the module docstring."""
    tmp_path.chmod(0o755)
    program = build(tmp_path / "bin", "prog", STRINGS[0])
    started: dict[int, str] = {}

    def start(path: Path | str, what: str, args: list[str] | None = None, exe: str | None = None) -> int:
        pid = processes.start(args or [str(path)]).pid
        running(pid, exe or str(path))
        started[pid] = what
        return pid

    for _ in range(4):
        start(program, "copy")
    renamed = tmp_path / "bin" / "renamed"
    shutil.copy2(program, renamed)
    start(renamed, "renamed copy")
    linked = tmp_path / "bin" / "linked"
    os.link(program, linked)
    start(linked, "hard link")
    for _ in range(2):          # the same path, a different file each time, deleted under its process
        doomed = tmp_path / "bin" / "doomed"
        shutil.copy2(program, doomed)
        with open(doomed, "ab") as grow:
            grow.write(os.urandom(16))
        start(doomed, "deleted")
        doomed.unlink()
    for _ in range(2):
        start(sys.executable, "memfd", [sys.executable, "-c", MEMFD, str(program)], exe="/memfd:worker")
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("mount"):
        other = build(tmp_path / "other", "prog", STRINGS[1])
        script = f"mount --bind {other.parent} {program.parent} && exec {program}"
        pid = processes.start(["unshare", "--mount", "--propagation", "private", "sh", "-c", script]).pid
        end = time.monotonic() + 10
        while time.monotonic() < end and not same_file(pid, other):
            time.sleep(0.02)
        if same_file(pid, other):
            started[pid] = "other mount namespace"
    return started


def same_file(pid: int, path: Path) -> bool:
    try:
        seen, there = os.stat(f"/proc/{pid}/exe"), os.stat(path)
    except OSError:
        return False
    return (seen.st_dev, seen.st_ino) == (there.st_dev, there.st_ino)


def read(pids) -> list[ProcessInfo]:
    reader = ProcReader("/proc")
    first = FirstReading(time.monotonic(), {})
    found = [reader.read(pid, str(pid).encode(), first, 1.0) for pid in pids]
    return [info for info in found if info is not None]


def per_process_targets(snapshot: Snapshot, proc_root: str = "/proc"):
    """The executable scan's grouping as it was: locate() for each process."""
    targets: dict = {}
    denied = 0
    for proc in snapshot.processes:
        target, was_denied = binaries.locate(proc.pid, proc.exe, proc_root)
        denied += was_denied
        if target is not None:
            targets.setdefault(target.key, target).pids.append(proc.pid)
    return targets, denied


def per_process_packing(snapshot: Snapshot, proc_root: str = "/proc") -> list[Packing]:
    """The packing loop as it was: an examine_path() for each process."""
    by_file: dict = {}
    for proc in snapshot.processes:
        if not proc.exe or not packing.out_of_package(proc.exe, proc.exe_deleted):
            continue
        try:
            found = packing.examine_path(os.path.join(proc_root, str(proc.pid), "exe"), proc.exe, by_file)
        except OSError:
            continue
        if found is None:
            continue
        key, result = found
        if key in by_file:
            by_file[key].pids.append(proc.pid)
        elif result is not None:
            result.pids.append(proc.pid)
            by_file[key] = result
    return list(by_file.values())


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("AUDIT_AGENT_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    monkeypatch.setattr(binaries, "load_yara_rules", lambda strings, sources=None: None)
    binaries.clear_cache()
    deadline.start_scan(None)
    yield
    binaries.clear_cache()


def test_grouped_steps_give_each_process_what_asking_it_alone_gives(runners):
    gone = subprocess.Popen(["true"])
    gone.wait()
    snapshot = Snapshot(processes=[*read(runners), ProcessInfo(pid=gone.pid, exe="/bin/true")])
    facts = ProcFacts()
    options = SimpleNamespace(proc_root="/proc", signature_strings=STRINGS, proc_facts=facts)

    expected_targets, expected_denied = per_process_targets(snapshot)
    targets, denied = binaries.group_by_file([p.pid for p in snapshot.processes],
                                             {p.pid: p for p in snapshot.processes}, "/proc", ProcFacts())
    assert denied == expected_denied
    assert {key: (t.path, t.open_path, t.size, t.pids) for key, t in targets.items()} == \
        {key: (t.path, t.open_path, t.size, t.pids) for key, t in expected_targets.items()}

    binaries.collect_binaries(snapshot, options)
    by_pid = {pid: scan for scan in snapshot.binaries for pid in scan.pids}
    assert set(by_pid) == set(runners)
    for pid, what in runners.items():       # each process's evidence, against its own file's
        alone = binaries.scan_file(f"/proc/{pid}/exe", STRINGS, [s.encode() for s in STRINGS])
        assert by_pid[pid].matched_strings == alone.matched, what
        assert by_pid[pid].size_bytes == os.stat(f"/proc/{pid}/exe").st_size, what
    kinds = {what: {id(by_pid[pid]) for pid, w in runners.items() if w == what} for what in set(runners.values())}
    assert len(kinds["copy"] | kinds["hard link"]) == 1, "one file, one scan, whatever the path"
    assert len(kinds["deleted"]) == 2 and len(kinds["memfd"]) == 2, "the same path or name, two files"
    assert not kinds["renamed copy"] & kinds["copy"]
    if "other mount namespace" in kinds:
        [pid] = [pid for pid, what in runners.items() if what == "other mount namespace"]
        copy = next(pid for pid, what in runners.items() if what == "copy")
        # the kernel may name it by the very path the copies have: it is still a file of its own
        assert by_pid[pid] is not by_pid[copy] and by_pid[pid].matched_strings == [STRINGS[1]]
    assert by_pid[next(pid for pid, what in runners.items() if what == "copy")].matched_strings == [STRINGS[0]]

    assert set(facts.exes) >= set(runners), "the packing check takes these stats instead of asking again"
    expected_packing = [msgspec.structs.asdict(p) for p in per_process_packing(snapshot)]
    packing.collect_packing(snapshot, options)
    assert [msgspec.structs.asdict(p) for p in snapshot.packing] == expected_packing
    assert {pid for p in snapshot.packing for pid in p.pids} == set(runners)


def test_with_a_fuse_or_network_mount_each_stat_goes_through_the_guard(runners, monkeypatch):
    """On a host with a FUSE or network mount each stat is deadline.stat_path's (a stalled server cannot stop
    the step); the answers are the same files."""
    from audit_agent.collect import proc_facts
    plain = proc_facts.stat_exes(list(runners), "/proc")
    asked: list[str] = []
    real = deadline.stat_path

    def guarded(path, follow_symlinks=False):
        asked.append(path)
        return real(path, follow_symlinks=follow_symlinks)
    monkeypatch.setattr(deadline, "remote_mount_points", lambda: frozenset({"/mnt/elsewhere"}))
    monkeypatch.setattr(deadline, "stat_path", guarded)
    assert proc_facts.stat_exes(list(runners), "/proc") == plain
    assert sorted(asked) == sorted(f"/proc/{pid}/exe" for pid in runners)
