"""The process reader's C half (audit_agent/collect/_procread.c) against its Python half.

The extension is built here from its source with the host's C compiler (the checkout the tests run from
holds no build of it), then both halves read the same folders: live processes of every shape the reader
meets, and fake /proc folders whose stat, status and descriptors are made up, hostile ones included. Where
the C half gives anything else than the Python half, the test fails: the Python half is the reference.
"""
from __future__ import annotations

import errno
import importlib.util
import os
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_agent.collect import native as native_module
from audit_agent.collect import processes as processes_module
from audit_agent.collect import rawsys
from audit_agent.collect import sockets as sockets_module
from audit_agent.collect.proc_facts import MAX_DIR_FDS, MAX_SOCKET_FDS, ProcFacts, exe_shape, stat_exes
from audit_agent.collect.processes import MAX_PROC_FILE, FirstReading, ProcReader, read_processes
from tests.conftest import have_compiler

SOURCE = Path(processes_module.__file__).with_name("_procread.c")
SLEEP = "import time; time.sleep(60)"

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the C reader reads a Linux /proc"),
    pytest.mark.skipif(have_compiler() is None, reason="needs a C compiler"),
]


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """_procread built from the checkout's source, warnings as errors."""
    out = tmp_path_factory.mktemp("native") / f"_procread{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run([have_compiler(), "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    f"-I{sysconfig.get_paths()['include']}", str(SOURCE), "-o", str(out)], check=True)
    spec = importlib.util.spec_from_file_location("audit_agent.collect._procread", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_reading(base: bytes, want_fds: bool = True):
    reader = ProcReader("/proc", ProcFacts() if want_fds else None, native=False)
    return reader.gather(base)


def c_reading(native, base: bytes, want_fds: bool = True):
    """As the reader asks: with shared facts (want_fds) also the ns/net link and the stat of exe."""
    return native.read(base, MAX_PROC_FILE, MAX_SOCKET_FDS, MAX_DIR_FDS, want_fds,
                       rawsys.syscall_address() if want_fds else 0)


def both(native, base: bytes, want_fds: bool = True):
    """Both readings, or ("ValueError", "ValueError") when both refuse the contents."""
    outcomes = []
    for read in (lambda: python_reading(base, want_fds), lambda: c_reading(native, base, want_fds)):
        try:
            outcomes.append(read())
        except ValueError:
            outcomes.append("ValueError")
    return outcomes


@pytest.fixture
def shapes(tmp_path):
    """Live processes the reader meets: a long command line and environment (past one read(2)), a name with
    spaces and parentheses, sockets and open files, a deleted open file, one CPU allowed, a zombie, and a
    process in a PID namespace of its own (NSpid of two)."""
    started: list[subprocess.Popen] = []
    folder = tmp_path / "work place"
    folder.mkdir()
    odd = tmp_path / "a) (b c"
    odd.symlink_to(sys.executable)
    holder = (
        "import os, socket, sys, time\n"
        "server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()\n"
        "client = socket.create_connection(server.getsockname()); peer, _ = server.accept()\n"
        f"kept = open({str(folder / 'data.bin')!r}, 'wb')\n"
        f"gone = open({str(folder / 'gone.bin')!r}, 'wb'); os.unlink(gone.name)\n"
        "os.sched_setaffinity(0, {0})\n"
        "print('ready', flush=True); time.sleep(60)\n")
    try:
        env = {**os.environ, "PADDING": "x" * 40_000, "LD_PRELOAD": "", "SLURM_JOB_ID": "77"}
        started.append(subprocess.Popen([sys.executable, "-c", SLEEP, *(["y" * 3000] * 10)], env=env))
        started.append(subprocess.Popen([str(odd), "-c", SLEEP], executable=str(odd)))
        started.append(subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True))
        assert started[-1].stdout.readline().strip() == "ready"
        zombie = subprocess.Popen([sys.executable, "-c", "pass"])
        started.append(zombie)
        if os.geteuid() == 0 and os.path.exists("/usr/bin/unshare"):
            started.append(subprocess.Popen(["unshare", "--pid", "--fork", sys.executable, "-c", SLEEP]))
        deadline = time.monotonic() + 10
        while not zombie_state(zombie.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)     # exec done and the interpreters asleep
        yield started
    finally:
        for child in started:
            if child.poll() is None:
                child.kill()
            child.wait()


def zombie_state(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def family(pids: list[int]) -> list[int]:
    """The pids and their children (unshare's child is the process in the new namespace)."""
    out = list(pids)
    for pid in pids:
        try:
            out += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            pass
    return out


def test_both_halves_read_every_shape_of_live_process_alike(native, shapes):
    pids = family([child.pid for child in shapes])
    readings = {pid: both(native, b"/proc/%d/" % pid) for pid in pids}
    for pid, (python, c) in readings.items():
        assert isinstance(python, tuple), (pid, python)
        assert c == python, pid
    by_pid = {child.pid: readings[child.pid][0] for child in shapes}
    long, odd, holder, zombie = (by_pid[child.pid] for child in shapes[:4])
    assert len(long[2]) > 30_000 and len(long[6]) > 40_000        # past one read(2) of 16 KiB
    assert odd[0][0] == b"a) (b c"
    assert holder[1][1] == 1                                      # one CPU allowed
    sockets, targets = holder[7]
    assert len(sockets) >= 3 and any(target.endswith(b"/work place/data.bin") for target in targets)
    assert not any(b"gone.bin" in target for target in targets)  # deleted: no folder to look in
    assert zombie[0][1] == b"Z" and isinstance(zombie[3], int)    # no exe: the errno
    if len(shapes) > 4:
        inner = [pid for pid in pids if pid not in by_pid]
        assert any(len(readings[pid][0][1][2]) == 2 for pid in inner)    # NSpid: host pid, then 1
    kthreadd = both(native, b"/proc/2/", want_fds=False)
    assert kthreadd[0] == kthreadd[1] and kthreadd[0][7] is None


def test_both_halves_read_this_whole_host_alike(native):
    """Every process of the host, read twice in a row; what a running process changes between two readings
    (its state, CPU times, memory, descriptors) is left out."""
    compared = 0
    for entry in os.listdir(b"/proc"):
        if not entry.isdigit():
            continue
        python, c = both(native, b"/proc/" + entry + b"/")
        if not isinstance(python, tuple) or not isinstance(c, tuple):
            continue        # ended between the two readings
        steady = lambda reading: (reading[0][0], reading[0][2], reading[0][3], reading[0][10], *reading[1:7])  # noqa: E731
        if steady(python) != steady(c) and int(entry) in (os.getpid(), os.getppid()):
            continue
        assert steady(c) == steady(python), entry
        compared += 1
    assert compared > 10


def test_a_gone_process_and_a_refused_one_are_errnos(native, tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    base = b"/proc/%d/" % child.pid
    assert python_reading(base) == c_reading(native, base) == 2      # ENOENT: gone
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "stat").write_bytes(STAT)
    (locked / "stat").chmod(0)
    if os.geteuid() == 0:
        pytest.skip("root reads a file of mode 0")
    assert python_reading(bytes(locked) + b"/") == c_reading(native, bytes(locked) + b"/") == 13


STAT = (b"4242 (xmrig) S 1 4242 4242 34816 4242 4194560 2100 0 0 0 155 42 7 3 20 0 4 0 123456 "
        b"2430976 1280 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n")
STATUS = (b"Name:\txmrig\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1000\t1000\t1000\n"
          b"NSpid:\t4242\t7\nCpus_allowed_list:\t0-3,8,10-11\n")


def fake_proc(folder: Path, stat: bytes, status: bytes, fds: dict[str, str] | None = None,
              cmdline: bytes = b"xmrig\0-o\0pool:3333\0", environ: bytes = b"A=1\0") -> bytes:
    """A folder laid out like /proc/PID: files, the exe and cwd links, fd/ of symlinks."""
    folder.mkdir()
    (folder / "stat").write_bytes(stat)
    (folder / "status").write_bytes(status)
    (folder / "cmdline").write_bytes(cmdline)
    (folder / "cgroup").write_bytes(b"0::/user.slice/user-1000.slice/session-3.scope\n")
    (folder / "environ").write_bytes(environ)
    (folder / "exe").symlink_to("/opt/x/xmrig (deleted)")
    (folder / "cwd").symlink_to("/home/alice")
    (folder / "fd").mkdir()
    for name, target in (fds or {}).items():
        (folder / "fd" / name).symlink_to(target)
    (folder / "ns").mkdir()
    (folder / "ns" / "net").symlink_to("net:[4026531999]")
    return bytes(folder) + b"/"


def test_both_halves_read_a_made_up_process_alike(native, tmp_path):
    fds = {"0": "/dev/null", "1": "socket:[991]", "2": "pipe:[5]", "3": "/srv/data/a.bin", "4": "/tmp/x (deleted)",
           "5": "socket:[992]", "6": "/proc/1/stat", "7": "socket:[bad]", "8": "socket:[12"}
    base = fake_proc(tmp_path / "p", STAT, STATUS, fds)
    python, c = both(native, base)
    assert c == python
    stat, status, cmdline, exe, cwd, cgroup, environ, held, netns, exe_file = c
    assert stat == (b"xmrig", b"S", 1, 34816, 155, 42, 7, 3, 0, 4, 123456, 1280)
    assert status == (1000, 7, [4242, 7])       # 0-3, 8, 10-11
    assert exe == b"/opt/x/xmrig (deleted)" and cwd == b"/home/alice"
    assert sorted(held[0]) == [991, 992] and held[1] == [b"/srv/data/a.bin"]
    assert netns == b"net:[4026531999]" and exe_file == errno.ENOENT       # the link leads nowhere here
    assert both(native, base, want_fds=False)[1][7:] == (None, None, None)
    without = (ProcReader("/proc", ProcFacts(), native=False).gather(base, want_cgroup=False),
               native.read(base, MAX_PROC_FILE, MAX_SOCKET_FDS, MAX_DIR_FDS, True, rawsys.syscall_address(), False))
    assert without[0] == without[1] and without[1][5] is None      # a cgroup the walk knows is not read
    assert without[1][:5] + without[1][6:] == c[:5] + c[6:]


def test_both_halves_stat_the_executable_and_read_the_namespace_alike(native, tmp_path):
    base = fake_proc(tmp_path / "p", STAT, STATUS)
    (tmp_path / "p" / "exe").unlink()
    (tmp_path / "p" / "exe").symlink_to(sys.executable)
    (tmp_path / "p" / "ns" / "net").unlink()
    python, c = both(native, base)
    assert c == python
    info = os.stat(sys.executable)
    assert c[9] == (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, True)
    assert c[8] == errno.ENOENT
    (tmp_path / "p" / "exe").unlink()
    (tmp_path / "p" / "exe").symlink_to(tmp_path)       # a folder: looked at, not a regular file
    python, c = both(native, base)
    assert c == python and c[9][5] is False


def test_the_c_half_keeps_the_python_bounds_on_descriptors_and_file_size(native, tmp_path):
    """At most fd_limit descriptors looked at, folders of the first dir_limit only, files cut at the limit."""
    folders = fake_proc(tmp_path / "folders", STAT, STATUS, {str(n): f"/srv/d{n}/f" for n in range(40)},
                        cmdline=b"a\0" * 50_000)
    sockets = fake_proc(tmp_path / "sockets", STAT, STATUS, {str(n): f"socket:[{1000 + n}]" for n in range(40)})
    full = native.read(folders, MAX_PROC_FILE, MAX_SOCKET_FDS, MAX_DIR_FDS, True)
    cut = native.read(folders, 70_000, 30, 10, True)
    names = os.listdir(folders + b"fd")
    assert full[7][1] == [os.readlink(folders + b"fd/" + name) for name in names]
    assert cut[7][1] == [os.readlink(folders + b"fd/" + name) for name in names[:10]]
    assert len(full[2]) == 100_000 and len(cut[2]) == 70_000
    names = os.listdir(sockets + b"fd")
    assert native.read(sockets, MAX_PROC_FILE, 30, 10, True)[7][0] == [1000 + int(name) for name in names[:30]]
    assert native.read(sockets, MAX_PROC_FILE, MAX_SOCKET_FDS, 10, True)[7][0] == [1000 + int(n) for n in names]


@pytest.mark.parametrize("cpus", [b"0-3,8,10-11", b"0", b"0,", b"3-1", b"0-4194303", b"0-4194304", b"+1-2", b"1--2",
                                  b"a-b", b"x", b"-1", b"0-99999999999999999999", b"5-5", b"", b"0-3,3-1"])
def test_both_halves_count_any_cpu_list_alike(native, tmp_path, cpus):
    base = fake_proc(tmp_path / "p", STAT, b"Name:\tx\nCpus_allowed_list:\t" + cpus + b"\n")
    python, c = both(native, base)
    assert c == python


NUMBER = st.one_of(st.integers(-(2 ** 63), 2 ** 63 - 1).map(lambda n: str(n).encode()),
                   st.sampled_from([b"", b"x", b"-", b"+7", b"12\x00", b"9" * 30, b"0x10", b"1e3"]))
COMM = st.binary(max_size=40).filter(lambda b: b"\0" not in b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(comm=COMM, fields=st.lists(NUMBER, min_size=0, max_size=30),
       separator=st.sampled_from([b" ", b"  ", b"\t", b" \n "]), tail=st.sampled_from([b"", b"\n", b")"]),
       closed=st.booleans(), status=st.sampled_from([STATUS, b"Name:\tx\nUid:\t0-3\n"]))
def test_both_halves_split_any_stat_alike(native, tmp_path_factory, comm, fields, separator, tail, closed, status):
    """A comm may hold spaces, parentheses and newlines (prctl sets any 15 bytes); a field may be no number;
    a stat with no closing parenthesis is no stat, whatever status holds."""
    stat = b"4242 (" + comm + (b") " if closed else b" ") + separator.join(fields) + tail
    base = fake_proc(tmp_path_factory.mktemp("stat") / "p", stat, status)
    python, c = both(native, base)
    assert c == python


STATUS_VALUE = st.one_of(st.sampled_from([b"0-3,8", b"0", b"0,", b"3-1", b"a-b", b"x", b"", b"0-1,4-5,7",
                                          b"1000\t1000", b"\t", b"4242\t1\t-", b"99999999999999999999999"]),
                         NUMBER)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.tuples(st.sampled_from([b"Uid", b"NSpid", b"Cpus_allowed_list", b"Name", b"Uid2",
                                                 b"uid"]),
                                st.sampled_from([b":\t", b":", b": ", b" :"]), STATUS_VALUE), max_size=8),
       first=st.booleans())
def test_both_halves_pick_any_status_alike(native, tmp_path_factory, lines, first):
    """The first line of a key wins; a key at the file's very start is not one (as status_field reads it)."""
    status = (b"" if first else b"Name:\tx\n") + b"".join(key + colon + value + b"\n" for key, colon, value in lines)
    base = fake_proc(tmp_path_factory.mktemp("status") / "p", STAT, status)
    python, c = both(native, base)
    assert c == python


BLOCKED_READ = """
import importlib.util, sys, threading, time
spec = importlib.util.spec_from_file_location("audit_agent.collect._procread", sys.argv[1])
native = importlib.util.module_from_spec(spec)
spec.loader.exec_module(native)
result = []
reader = threading.Thread(target=lambda: result.append(native.read(sys.argv[2].encode(), 1 << 20, 8, 8, True)),
                          daemon=True)
reader.start()
ticks, deadline = 0, time.monotonic() + 1.0
while time.monotonic() < deadline:
    ticks += 1
print("ticks", ticks, "blocked", reader.is_alive(), flush=True)
with open(sys.argv[3], "wb") as writer:
    writer.write(b"miner\\0")
reader.join(10)
print("read", result[0][2] if result else None, flush=True)
"""


def test_a_blocked_read_does_not_hold_the_other_threads(native, tmp_path):
    """A /proc read can block (a process stuck in the kernel holds its memory lock): the C half waits without
    the GIL, so the scan's deadlines, in another thread, still run. A FIFO with no writer blocks the same. In
    a child process of its own: were the GIL held, it would hang, and the timeout says so."""
    base = fake_proc(tmp_path / "p", STAT, STATUS)
    fifo = tmp_path / "p" / "cmdline"
    fifo.unlink()
    os.mkfifo(fifo)
    try:
        run = subprocess.run([sys.executable, "-c", BLOCKED_READ, native.__file__, str(base, "ascii"), str(fifo)],
                             capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the blocked read held every other thread of the process")
    ticks, blocked = run.stdout.splitlines()[0].split()[1::2]
    assert int(ticks) > 1000 and blocked == "True", run.stdout + run.stderr
    assert run.stdout.splitlines()[1] == "read b'miner\\x00'", run.stdout + run.stderr


def test_the_reader_gives_the_same_processes_with_either_half(native, shapes, monkeypatch):
    """read_processes() itself: every field of every stand-in alike, whichever half read it."""
    first = FirstReading(time.monotonic() - 1, {})
    pids = set(family([child.pid for child in shapes]))
    monkeypatch.setattr(processes_module, "NATIVE", None)
    python = {p.pid: p for p in read_processes(first, "/proc", ProcFacts())[0] if p.pid in pids}
    monkeypatch.setattr(processes_module, "NATIVE", native)
    c = {p.pid: p for p in read_processes(first, "/proc", ProcFacts())[0] if p.pid in pids}
    assert set(c) == set(python) and {child.pid for child in shapes} <= set(c)
    for pid, info in python.items():
        other = c[pid]
        for name in info.__slots__:
            if name in ("cpu_percent", "cpu_seconds", "lifetime_cpu_seconds", "status", "rss_bytes"):
                continue
            assert getattr(other, name) == getattr(info, name), (pid, name)


def test_the_c_half_refuses_a_path_with_a_nul(native):
    with pytest.raises(ValueError):
        native.read(b"/proc/1\0/", MAX_PROC_FILE, 1, 1, False)


# ---- the PID probe and the namespace readlink (rawsys.py): the same answers from the C loop

def python_rawsys(monkeypatch):
    """rawsys with its ctypes loops: the C half switched off."""
    monkeypatch.setattr(native_module, "NATIVE", None)
    return rawsys


def syscall_address() -> int:
    return rawsys._address(rawsys._syscall())


@pytest.mark.skipif(not rawsys.available(), reason="raw system calls are Linux on a known architecture")
def test_both_probes_find_our_processes_and_not_a_reaped_one(native, monkeypatch):
    sleepers = [subprocess.Popen([sys.executable, "-c", SLEEP]) for _ in range(3)]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        limit = int(Path("/proc/sys/kernel/pid_max").read_text())
        by_c = set(native.alive_pids(syscall_address(), limit))
        by_python = set(python_rawsys(monkeypatch).alive_pids(limit))
        for probed in (by_c, by_python):
            assert {s.pid for s in sleepers} | {1, os.getpid()} <= probed
            assert gone.pid not in probed or os.path.exists(f"/proc/{gone.pid}")   # unless reused since
            assert all(0 < pid <= limit for pid in probed)
        assert native.alive_pids(syscall_address(), 0) == []
        assert native.alive_pids(syscall_address(), 1) == [1]
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()


def test_the_probe_refuses_a_limit_past_the_kernel_and_no_address(native):
    for limit in (-1, (1 << 22) + 1):
        with pytest.raises(ValueError):
            native.alive_pids(syscall_address() if rawsys.available() else 1, limit)
    with pytest.raises(ValueError):
        native.alive_pids(0, 10)
    with pytest.raises(ValueError):
        native.readlink_each(0, [b"/proc/self/exe"])


@pytest.mark.skipif(not rawsys.available(), reason="raw system calls are Linux on a known architecture")
def test_both_readlinks_give_each_target_alike(native, monkeypatch, tmp_path):
    """Targets shared and not (the C half decodes a run of one target once), one of every length up to the
    kernel's, bytes that are no UTF-8, a missing path and a file that is no link: as os.readlink says."""
    odd = tmp_path / "odd"
    os.symlink(b"/tmp/\xff\xfe-not-utf8", bytes(odd))
    longest = tmp_path / "longest"
    os.symlink("/" + "x" * 4094, longest)
    plain = tmp_path / "plain"
    plain.write_text("no link")
    links = []
    for size in (1, 2, 3, 17, 255):
        link = tmp_path / f"l{size}"
        os.symlink("y" * size, link)
        links.append(bytes(link))
    for twin in ("za", "zb"):         # one length, two targets
        os.symlink(twin, tmp_path / twin)
    net = f"/proc/{os.getpid()}/ns/net".encode()
    paths = [net, net, links[0], net, links[1], links[1], bytes(tmp_path / "za"), bytes(tmp_path / "zb"), bytes(odd), bytes(tmp_path / "missing"),
             bytes(plain), bytes(longest), *links, b"/proc/self/exe", net]
    expected = []
    for path in paths:
        try:
            expected.append(os.fsdecode(os.readlink(path)))
        except OSError:
            expected.append(None)
    assert native.readlink_each(syscall_address(), paths) == expected
    assert python_rawsys(monkeypatch).readlink_each(paths) == expected
    assert native.readlink_each(syscall_address(), []) == []
    assert native.readlink_each(syscall_address(), tuple(paths[:2])) == expected[:2]


def test_the_readlink_refuses_what_is_no_path(native):
    address = syscall_address() if rawsys.available() else 1
    with pytest.raises(ValueError):
        native.readlink_each(address, [b"/proc/self\0/exe"])
    with pytest.raises(TypeError):
        native.readlink_each(address, ["/proc/self/exe"])
    with pytest.raises(TypeError):
        native.readlink_each(address, 5)


def test_the_scan_steps_use_the_c_loops_when_it_is_there(native, monkeypatch):
    """rawsys hands its two loops to the C half when one is loaded, with libc's own syscall(2) wrapper."""
    calls = []

    class Spy:
        def alive_pids(self, address, limit):
            calls.append(("alive_pids", address))
            return native.alive_pids(address, limit)

        def readlink_each(self, address, paths):
            calls.append(("readlink_each", address))
            return native.readlink_each(address, paths)

    monkeypatch.setattr(native_module, "NATIVE", Spy())
    if not rawsys.available():
        pytest.skip("raw system calls are Linux on a known architecture")
    assert os.getpid() in rawsys.alive_pids(os.getpid())
    assert rawsys.readlink_each([b"/proc/self/cwd"]) == [os.getcwd()]
    assert calls == [("alive_pids", syscall_address()), ("readlink_each", syscall_address())]


# ---- a folder's names by getdents64 (rawsys.list_fd)

def listed(read, path, limit=rawsys.MAX_ENTRIES):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return read(fd, limit)
    finally:
        os.close(fd)


@pytest.mark.skipif(not rawsys.available(), reason="raw system calls are Linux on a known architecture")
def test_both_halves_list_a_folder_alike(native, monkeypatch, tmp_path):
    """More names than one getdents64 buffer holds, names of every length and bytes that are no UTF-8, and
    the limit: the same names in the same order, cut at the same place."""
    many = tmp_path / "many"
    many.mkdir()
    for n in range(3000):
        (many / (f"{n}-" + "n" * (n % 200))).touch()
    os.close(os.open(bytes(many) + b"/\xff\xfe-odd", os.O_CREAT | os.O_WRONLY, 0o600))
    c_list = lambda fd, limit: native.list_fd(syscall_address(), fd, limit)     # noqa: E731
    python_list = python_rawsys(monkeypatch).list_fd
    for path in ("/proc", str(many), str(tmp_path), f"/proc/{os.getpid()}/task"):
        for limit in (rawsys.MAX_ENTRIES, 1, 0, 2999):
            assert listed(c_list, path, limit) == listed(python_list, path, limit), (path, limit)
    names = listed(c_list, str(many))
    assert len(names) == 3001 and "0-" in names and os.fsdecode(b"\xff\xfe-odd") in names
    assert "." not in names and ".." not in names


@pytest.mark.skipif(not rawsys.available(), reason="raw system calls are Linux on a known architecture")
def test_the_listing_fails_as_getdents_fails(native, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    fd = os.open(plain, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as error:
            native.list_fd(syscall_address(), fd, 10)
        assert error.value.errno == errno.ENOTDIR
    finally:
        os.close(fd)
    with pytest.raises(OSError) as error:
        native.list_fd(syscall_address(), 1 << 20, 10)
    assert error.value.errno == errno.EBADF
    with pytest.raises(ValueError):
        native.list_fd(syscall_address(), 0, -1)


# ---- the stat of every executable (proc_facts.stat_exes): the same shapes from the C loop

def test_both_halves_stat_each_path_alike(native, tmp_path):
    """A file, a folder, links to each, a dangling link, a FIFO, a missing path and a process's exe: the
    tuple proc_facts.exe_shape makes of os.stat, or the same errno."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"x" * 1234)
    os.utime(plain, ns=(1_700_000_000_123_456_789, 1_700_000_000_987_654_321))
    (tmp_path / "to-plain").symlink_to(plain)
    (tmp_path / "to-nothing").symlink_to(tmp_path / "nothing")
    os.mkfifo(tmp_path / "fifo")
    paths = [bytes(plain), bytes(tmp_path), bytes(tmp_path / "to-plain"), bytes(tmp_path / "to-nothing"),
             bytes(tmp_path / "fifo"), bytes(tmp_path / "missing"), bytes(plain / "below"), b"/proc/self/exe",
             f"/proc/{os.getpid()}/exe".encode(), b"/proc/1/exe"]
    assert native.stat_each(paths) == [exe_shape(os.stat, path) for path in paths]
    assert native.stat_each(paths)[0][3] == 1_700_000_000_987_654_321     # mtime to the nanosecond
    assert native.stat_each(()) == []
    with pytest.raises(ValueError):
        native.stat_each([b"/tmp\0/x"])
    with pytest.raises(TypeError):
        native.stat_each(["/tmp"])


def test_the_executables_of_this_host_are_the_same_files_with_either_half(native, monkeypatch):
    sleeper = subprocess.Popen([sys.executable, "-c", SLEEP])
    try:
        pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit()) + [sleeper.pid, 1 << 22]
        monkeypatch.setattr(native_module, "NATIVE", None)
        python = stat_exes(pids, "/proc")
        monkeypatch.setattr(native_module, "NATIVE", native)
        c = stat_exes(pids, "/proc")
        alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
        assert {pid: c[pid] for pid in alive} == {pid: python[pid] for pid in alive}
        assert c[sleeper.pid] is not None and c[sleeper.pid].regular and c[1 << 22] is None
    finally:
        sleeper.kill()
        sleeper.wait()


# ---- the socket tables (sockets.parse_table): the same sockets from the C loop

def both_tables(native, monkeypatch, data: bytes, protocol: str, established_only: bool = False):
    monkeypatch.setattr(native_module, "NATIVE", None)
    python = sockets_module.parse_table(data, protocol, established_only)
    monkeypatch.setattr(native_module, "NATIVE", native)
    c = sockets_module.parse_table(data, protocol, established_only)
    return python, c


def test_both_halves_split_this_hosts_socket_tables_alike(native, monkeypatch):
    """Live tables with listeners and connections of both families (IPv6 where the host has it)."""
    held = held_sockets()
    try:
        for protocol in ("tcp", "tcp6", "udp", "udp6"):
            try:
                data = Path(f"/proc/self/net/{protocol}").read_bytes()
            except FileNotFoundError:
                continue
            for established_only in (False, True):
                python, c = both_tables(native, monkeypatch, data, protocol, established_only)
                assert c == python and all(type(sock) is type(python[0]) for sock in c)
                if protocol == "tcp" and not established_only:
                    ports = {sock.local_port for sock in c}
                    assert held[0].getsockname()[1] in ports
    finally:
        for sock in held:
            sock.close()


def held_sockets() -> list[socket.socket]:
    """Listeners, connections (both ends) and a connected and a bound UDP socket, on 127.0.0.1 and ::1 (where the
    host has IPv6), a port of each kind in TIME_WAIT too."""
    held = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            server = socket.socket(family)
            server.bind((host, 0))
        except OSError:
            continue
        server.listen()
        client = socket.create_connection(server.getsockname()[:2])
        accepted = server.accept()[0]
        closing = socket.create_connection(server.getsockname()[:2])
        server.accept()[0].close()
        closing.close()                 # the server closed first: the client's end goes through TIME_WAIT
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.connect((host, 9))
        bound = socket.socket(family, socket.SOCK_DGRAM)
        bound.bind((host, 0))
        held += [server, client, accepted, udp, bound]
    return held


def ours(found, held) -> set:
    ports = {sock.getsockname()[1] for sock in held}
    return {sock for sock in found if sock.local_port in ports or sock.remote_port in ports}


def test_the_sock_diag_dump_gives_the_sockets_the_tables_list(native):
    """Two kernel interfaces, one set of sockets: the netlink dump (what ss reads) and /proc/net/* split by
    parse_table give the same rows for the sockets this test holds, in every state it can make."""
    held = held_sockets()
    address = rawsys.syscall_address()
    try:
        for table, (family, protocol) in sockets_module.DIAG_KINDS.items():
            try:
                text = Path(f"/proc/self/net/{table}").read_bytes()
            except FileNotFoundError:
                continue
            for established_only in (False, True):
                dumped = native.diag_table(address, family, protocol, sockets_module.RawSocket, table,
                                           table.startswith("udp"), established_only, sockets_module.STATE_BY_NUMBER)
                listed = sockets_module.parse_table(text, table, established_only)
                assert all(type(sock) is sockets_module.RawSocket for sock in dumped)
                assert ours(dumped, held) == ours(listed, held)
                if table == "tcp" and not established_only:
                    states = {sock.state for sock in ours(dumped, held)}
                    assert {"LISTEN", "ESTABLISHED", "TIME_WAIT"} <= states
                if table == "udp":
                    assert {sock.state for sock in ours(dumped, held)} == {""}
    finally:
        for sock in held:
            sock.close()


def test_the_dump_refuses_what_it_cannot_ask(native):
    row, names = sockets_module.RawSocket, sockets_module.STATE_BY_NUMBER
    with pytest.raises(ValueError):
        native.diag_table(0, socket.AF_INET, socket.IPPROTO_TCP, row, "tcp", False, False, names)
    with pytest.raises(ValueError):
        native.diag_table(rawsys.syscall_address(), socket.AF_UNIX, 0, row, "unix", False, False, names)
    with pytest.raises(TypeError):
        native.diag_table(rawsys.syscall_address(), socket.AF_INET, socket.IPPROTO_TCP, int, "tcp", False, False, names)
    assert native.diag_table(rawsys.syscall_address(), socket.AF_INET, 200, row, "x", False, False, names) == []


NO_DESCRIPTORS = """
import importlib.util, os, resource, socket, sys
spec = importlib.util.spec_from_file_location("audit_agent.collect._procread", sys.argv[1])
native = importlib.util.module_from_spec(spec)
spec.loader.exec_module(native)
from audit_agent.collect import rawsys, sockets
address = rawsys.syscall_address()
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) - 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    native.diag_table(address, socket.AF_INET, socket.IPPROTO_TCP, sockets.RawSocket, "tcp", False, False, ())
except OSError as error:
    print(error.errno)
"""


def test_a_dump_that_cannot_be_had_is_the_errno(native):
    """No descriptor left for the netlink socket: OSError(EMFILE), which read_own_tables answers with the file."""
    done = subprocess.run([sys.executable, "-c", NO_DESCRIPTORS, native.__file__], capture_output=True, text=True,
                          check=True, cwd=Path(processes_module.__file__).parents[2])
    assert done.stdout.split() == [str(errno.EMFILE)], done.stderr


def test_the_own_namespace_is_read_from_the_dump_or_else_from_the_files(native, monkeypatch):
    held = held_sockets()
    try:
        monkeypatch.setattr(native_module, "NATIVE", native)
        dumped, unreadable = sockets_module.read_own_tables("/proc")
        assert not unreadable

        class Refused:                  # netlink refused (a sandbox): each table from its file instead
            def __getattr__(self, name):
                return getattr(native, name)

            def diag_table(self, *args):
                raise PermissionError(errno.EACCES, "refused")
        monkeypatch.setattr(native_module, "NATIVE", Refused())
        from_files, unreadable = sockets_module.read_own_tables("/proc")
        assert not unreadable
        assert ours(dumped, held) == ours(from_files, held) == ours(sockets_module.read_tables("/proc/net")[0], held)
        monkeypatch.setattr(native_module, "NATIVE", None)
        assert ours(sockets_module.read_own_tables("/proc")[0], held) == ours(dumped, held)
    finally:
        for sock in held:
            sock.close()


TABLE_HEADER = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
hex_run = st.text("0123456789abcdefABCDEF", min_size=0, max_size=34)
token = st.text("abc:01 \t\r\x00-", min_size=0, max_size=6)


@st.composite
def table_lines(draw):
    """Lines near the kernel's shape: every field may be empty, too long, of the wrong class or spaced wrong."""
    def pick(good, odd):
        return draw(st.one_of(st.just(good), odd))
    local = pick("0100007F", hex_run) + pick(":", st.sampled_from([":", "", "::"])) + pick("1F90", hex_run)
    remote = pick("0200007F", hex_run) + ":" + pick("C350", hex_run)
    state = pick("01", st.one_of(hex_run, st.sampled_from(["0A", "0a", "1", "0001", "0C", "0D", "00", "FFFFFFFFF", "000000000A", "0000000000000"])))
    uid = pick("1000", st.text("0123456789a", max_size=5))
    inode = pick("123456", st.one_of(st.text("0123456789x", max_size=8), st.just("9" * 5000)))
    gap = pick(" ", st.sampled_from(["", "  ", "\t"]))
    line = (draw(st.sampled_from(["", "   ", " 12"])) + pick("0:", st.sampled_from(["x:", ":", "0"])) + " " + local + " "
            + remote + " " + state + " " + pick("00000000:00000000", token) + gap + "00:00000000 "
            + pick("00000000", token) + "  " + uid + "        0 " + inode + draw(st.sampled_from(["", " 1 0000 100 0 0 10 0", "x"])))
    return line.encode("latin-1")


@given(lines=st.lists(table_lines(), max_size=6), protocol=st.sampled_from(["tcp", "tcp6", "udp"]),
       established_only=st.booleans(), header=st.booleans(), tail=st.sampled_from([b"", b"\n", b"\n\n"]))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_both_halves_split_any_table_alike(native, monkeypatch, lines, protocol, established_only, header, tail):
    data = (TABLE_HEADER if header else b"") + b"\n".join(lines) + tail
    python, c = both_tables(native, monkeypatch, data, protocol, established_only)
    assert c == python


def test_both_halves_decode_every_address_length_alike(native, monkeypatch):
    """1-8 hex digits are one word (IPv4), 25-32 four (IPv6), any other length no address."""
    lines = [b"   0: %s:0050 %s:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 4242"
             % (b"A" * size, b"0" * 32) for size in range(1, 40)]
    python, c = both_tables(native, monkeypatch, TABLE_HEADER + b"\n".join(lines), "tcp")
    assert c == python and len(c) == 8 + 8


def test_both_halves_name_every_state_alike(native, monkeypatch):
    """Known states by number however many leading zeros, others as printed; UDP has none."""
    states = [b"01", b"0A", b"0a", b"1", b"0001", b"000000000A", b"0000000000000", b"00", b"0D", b"FF", b"1" * 12, b"0C"]
    lines = [b"   0: 0100007F:0050 0100007F:01BB %s 00000000:00000000 00:00000000 00000000  1000        0 4242" % state
             for state in states]
    for protocol in ("tcp", "udp"):
        for established_only in (False, True):
            python, c = both_tables(native, monkeypatch, TABLE_HEADER + b"\n".join(lines), protocol, established_only)
            assert c == python and len(c) == (1 if established_only else len(states))


def test_the_table_split_refuses_what_is_no_table(native):
    from audit_agent.collect.sockets import STATE_BY_NUMBER, RawSocket
    with pytest.raises(TypeError):
        native.parse_table("text", RawSocket, "tcp", False, False, STATE_BY_NUMBER)
    with pytest.raises(TypeError):
        native.parse_table(b"", dict, "tcp", False, False, STATE_BY_NUMBER)


def test_sockets_held_are_found_by_either_half(native):
    """The holder of a loopback connection is its owner whichever half walked its descriptors."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        inode = os.fstat(server.fileno()).st_ino
        for half in (None, native):
            facts = ProcFacts()
            reader = ProcReader("/proc", facts)
            reader.native = half
            assert reader.read(os.getpid(), str(os.getpid()).encode(), FirstReading(time.monotonic(), {}), 1.0)
            assert facts.owners.get(inode) == os.getpid()
    finally:
        server.close()


SANITIZED = """
import importlib.util, os, random, sys, tempfile
spec = importlib.util.spec_from_file_location("audit_agent.collect._procread", sys.argv[1])
native = importlib.util.module_from_spec(spec)
spec.loader.exec_module(native)
import ctypes
syscall = ctypes.cast(ctypes.CDLL("libc.so.6").syscall, ctypes.c_void_p).value
for entry in os.listdir(b"/proc"):
    if entry.isdigit():
        native.read(b"/proc/" + entry + b"/", 4 << 20, 1 << 20, 1024, True, syscall)
pick = random.Random(int(sys.argv[2])).choice
targets = ["socket:[123]", "socket:[", "socket:[]", "socket:[99999999999999999999]", "/a/b", "/dev/x", "/y (deleted)",
           "/" + "z" * 4000, "pipe:[1]"]
for n in range(300):
    folder = tempfile.mkdtemp(dir=sys.argv[3])
    os.mkdir(folder + "/fd")
    for name, size in (("stat", 300), ("status", 300), ("cmdline", 40000), ("cgroup", 20), ("environ", 16384)):
        with open(folder + "/" + name, "wb") as out:
            out.write(bytes(pick(b"0123456789 -+()\\n\\t:,xUidNSpCus_aowel\\0\\xff") for _ in range(pick([0, 1, size]))))
    os.symlink(pick(["/x" * pick([1, 2040]), sys.executable, folder]), folder + "/exe")
    if pick([True, False]):
        os.mkdir(folder + "/ns")
        os.symlink(pick(["net:[1]", "n" * 4000]), folder + "/ns/net")
    for fd in range(pick([0, 3, 40])):
        os.symlink(pick(targets), folder + "/fd/" + str(fd))
    try:
        native.read(folder.encode() + b"/", pick([1, 16384, 4 << 20]), pick([0, 5, 1 << 20]), pick([0, 2, 1024]), True,
                    pick([0, syscall]))
    except ValueError:
        pass
native.alive_pids(syscall, int(open("/proc/sys/kernel/pid_max").read()))
links = []
for n in range(300):
    links.append(os.path.join(sys.argv[3], "link%d" % n).encode())
    os.symlink("/" + "w" * pick([0, 1, 7, 4094]), links[-1])
native.readlink_each(syscall, [pick(links + [b"/proc/self/ns/net", b"/missing"]) for _ in range(3000)])
from collections import namedtuple
import socket
Row = namedtuple("Row", "a b c d e f g h")
names = ("", "ESTABLISHED", "SYN_SENT")
line = b"   0: 0100007F:1F90 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000  1000        0 4242"
for table in ("tcp", "tcp6", "udp", "udp6"):
    try:
        native.parse_table(open("/proc/self/net/" + table, "rb").read(), Row, table, table.startswith("udp"), False, names)
    except FileNotFoundError:
        pass
for n in range(3000):
    cut = bytearray(line)
    for _ in range(pick([0, 1, 3])):
        cut[pick(range(len(cut)))] = pick(b"0aF: \\n\\x00x9")
    native.parse_table(b"h\\n" + bytes(cut[:pick([len(cut), 5, 40, 90])]), Row, "tcp", False, pick([True, False]), names)
held = [socket.create_connection(server.getsockname()) for server in [socket.create_server(("127.0.0.1", 0))]]
for family in (socket.AF_INET, socket.AF_INET6):
    for protocol in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        for established_only in (False, True):
            try:
                native.diag_table(syscall, family, protocol, Row, "t", protocol == socket.IPPROTO_UDP, established_only,
                                  names + ("",) * 10)
            except OSError:
                pass
native.stat_each([pick(links + [b"/proc/self/exe", b"/missing", b"/proc/1/exe"]) for _ in range(3000)])
for folder in ("/proc", sys.argv[3], "/proc/self/fd"):
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    native.list_fd(syscall, fd, pick([1, 5, 1 << 22]))
    os.close(fd)
print("clean")
"""


def test_the_c_half_is_clean_under_the_address_and_undefined_behaviour_sanitizers(tmp_path):
    """Every live process and 300 made-up /proc folders of random bytes, read by a build with ASan and UBSan,
    then the PID probe, 3,000 readlinks of targets of every length and 3,000 cut or garbled socket table
    lines: no overflow, use after free or
    undefined behaviour on any content a process can put in its files."""
    runtime = [subprocess.run([have_compiler(), f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
               for name in ("libasan.so", "libubsan.so")]
    if not all(os.path.isabs(path) and os.path.exists(path) for path in runtime):
        pytest.skip("the compiler has no sanitizer runtimes")
    built = tmp_path / f"_procread{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run([have_compiler(), "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-fno-omit-frame-pointer", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", str(SOURCE),
                    "-o", str(built)], check=True)
    env = {**os.environ, "LD_PRELOAD": " ".join(runtime), "ASAN_OPTIONS": "detect_leaks=0:exitcode=99",
           "PYTHONMALLOC": "malloc",        # every bytes object the C half reads is an allocation ASan sees
           "UBSAN_OPTIONS": "print_stacktrace=1"}
    run = subprocess.run([sys.executable, "-c", SANITIZED, str(built), "7", str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "clean", run.stderr[-3000:]
    assert "runtime error" not in run.stderr and "AddressSanitizer" not in run.stderr
