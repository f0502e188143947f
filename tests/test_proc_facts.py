"""The process reader's one walk per process (collect/proc_facts.py) gathers what the steps read themselves.

Each comparison runs on processes this test starts: one with a family's environment key and HOME set,
a file open in a folder of its own and a connection to a loopback listener the test runs."""
from __future__ import annotations

import os
import socket
import sys
import time

import pytest

from audit_agent.collect import deadline
from audit_agent.collect.families import Found, add_environ, family_env_keys, note_open_dirs
from audit_agent.collect.network import proc_connections
from audit_agent.collect.proc_facts import ProcFacts
from audit_agent.collect.processes import FirstReading, read_processes
from audit_agent.rules.loader import load_pack

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

HOLDER = """
import socket, sys, time
held = open(sys.argv[1], "w")
conn = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture(autouse=True)
def fresh_clock():
    """add_environ reads through the deadline layer: a clock of its own, not one an earlier test's scan left
    (its ceiling may have passed in a long session)."""
    deadline.start_scan(None)


@pytest.fixture(scope="module")
def families():
    return load_pack().families


@pytest.fixture
def holder(processes, tmp_path):
    """A process holding a file in tmp_path/plots and a connection to a listener of this test."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    (tmp_path / "plots").mkdir()
    proc = processes.start([sys.executable, "-c", HOLDER, str(tmp_path / "plots" / "plot-1.plot"),
                            str(server.getsockname()[1])],
                           env={"CHIA_ROOT": "/srv/chia", "HOME": str(tmp_path)}, wait_for_line="ready")
    accepted, _ = server.accept()
    yield proc, server.getsockname()[1]
    accepted.close()
    server.close()


def read(facts: ProcFacts | None = None):
    return {p.pid: p for p in read_processes(FirstReading(time.monotonic(), {}), "/proc", facts)[0]}


def test_the_readers_environ_has_the_family_keys_the_family_step_read_itself(holder, families, tmp_path):
    proc, _ = holder
    keys = family_env_keys(families)
    shared = read(ProcFacts(env_keys=keys))[proc.pid]
    alone = read()[proc.pid]
    add_environ(alone, set(keys), "/proc")
    assert shared.environ == alone.environ
    assert shared.environ["CHIA_ROOT"] == "/srv/chia" and shared.environ["HOME"] == str(tmp_path)


def test_the_shared_walk_gives_the_families_the_same_folders_and_sockets(holder, tmp_path):
    proc, _ = holder
    facts = ProcFacts()
    info = read(facts)[proc.pid]
    shared, alone = Found(), Found()
    note_open_dirs(info, "/proc", shared, facts.held.get(proc.pid))
    note_open_dirs(info, "/proc", alone)
    assert (shared.open_dirs, shared.named_dirs, shared.sockets, shared.access) == \
        (alone.open_dirs, alone.named_dirs, alone.sockets, alone.access)
    assert shared.open_dirs[str(tmp_path / "plots")] == {proc.pid}
    assert proc.pid in shared.sockets.values()


def test_connection_owners_from_the_shared_walk_match_a_walk_of_their_own(holder):
    proc, port = holder
    facts = ProcFacts()
    read(facts)

    def ours(connections):
        return sorted((c.pid, c.local_port, c.remote_port) for c in connections
                      if port in (c.local_port, c.remote_port) and c.state == "ESTABLISHED")
    shared = ours(proc_connections("/proc", facts)[0])
    alone = ours(proc_connections("/proc")[0])
    assert shared == alone
    assert proc.pid in {c[0] for c in shared} and os.getpid() in {c[0] for c in shared}


def test_a_socket_opened_after_the_walk_still_gets_its_owner():
    facts = ProcFacts()
    read(facts)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname()) as client:
            accepted, _ = server.accept()
            with accepted:
                port = client.getsockname()[1]
                owners = {c.pid for c in proc_connections("/proc", facts)[0]
                          if port in (c.local_port, c.remote_port) and c.state == "ESTABLISHED"}
    assert owners == {os.getpid()}


def test_further_environment_keys_are_read_like_the_family_step_reads_them():
    from audit_agent.collect.processes import MAX_EXTRA_ENVIRON_BYTES, environ_subset, extra_keys_pattern
    keys = extra_keys_pattern(["CHIA", "CHIA_ROOT", "HOME", "LATE"])
    block = (b"CHIA_ROOT=/srv/chia\0CHIA=1\0XCHIA=no\0CHIA=second\0LD_PRELOAD=/x.so\0HOME=/home/u\0"
             + b"PAD=" + b"p" * MAX_EXTRA_ENVIRON_BYTES + b"\0LATE=past-the-bound\0")
    found = environ_subset(block, keys)
    assert found == {"CHIA_ROOT": "/srv/chia", "CHIA": "1", "HOME": "/home/u", "LD_PRELOAD": "/x.so"}
    assert environ_subset(block) == {"CHIA_ROOT": "/srv/chia", "LD_PRELOAD": "/x.so"}     # its own keys, whole


def test_the_readers_executable_stats_are_what_the_executable_step_would_stat(holder, monkeypatch):
    """The reader stats /proc/PID/exe where the process's folder is open; the executable and packing steps take
    those answers (one ExeFile per distinct file) and stat only processes the reader did not read."""
    from audit_agent.collect import proc_facts
    held_by = holder[0].pid
    facts = ProcFacts()
    processes, _ = read_processes(FirstReading(time.monotonic(), {}), "/proc", facts)
    pids = [p.pid for p in processes]
    assert set(pids) <= set(facts.exes)
    assert {pid: facts.exes[pid] for pid in (os.getpid(), held_by)} == proc_facts.stat_exes([os.getpid(), held_by], "/proc")
    assert facts.exes[os.getpid()] is facts.exes[held_by]        # one python: one file, one object
    stated: list[int] = []
    real = proc_facts.stat_exes
    monkeypatch.setattr(proc_facts, "stat_exes", lambda given, root: stated.extend(given) or real(given, root))
    assert proc_facts.exe_files(facts, [*pids, 999_999_999], "/proc")[os.getpid()] == facts.exes[os.getpid()]
    assert stated == [999_999_999]


def test_with_a_mount_that_can_stall_the_reader_leaves_the_stats_to_the_deadline(monkeypatch):
    monkeypatch.setattr(deadline, "remote_mount_points", lambda: ["/mnt/fuse"])
    facts = ProcFacts()
    read_processes(FirstReading(time.monotonic(), {}), "/proc", facts)
    assert facts.exes == {} and facts.netns == {} and facts.held
