"""Processes, with CPU use measured over the sampling window.

Two readings a known interval apart: `first_reading()` before the window,
`read_processes()` after it. Access denied is data (the attribute is listed in
`denied` and counted for coverage); a process that vanishes is simply gone.

On Linux both readings go straight to /proc (stat, status, cmdline, environ,
cgroup and two readlinks per process, each file read once with os.read) instead
of psutil's per-attribute reads: the same fields, about 5x less CPU on a host
with thousands of processes (see docs/performance.md). psutil remains the
reader elsewhere, and for a proc_root that is not a live procfs. A full read
takes each process's cgroup from one walk of the cgroup v2 tree where that walk
answers as /proc/PID/cgroup would (cgroups.unified_members), and reads the
file only for the processes it cannot place.

The reads of one process, and the splitting of its stat and status, have two
halves that give the same tuple (ProcReader.gather): _procread.c, built at
install where a C compiler is, and Python, the reference and the fallback.
Everything after that, what the contents mean, is Python (ProcReader.build).
"""
from __future__ import annotations

import errno
import glob
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import pwd
except ImportError:     # not on Windows
    pwd = None  # type: ignore[assignment]

from msgspec import Struct, field

from audit_agent.collect import bounds
from audit_agent.collect.procfs import boot_time
from audit_agent.collect.native import NATIVE
from audit_agent.collect.cgroups import (
    MAX_CGROUPS,
    Members,
    cgroup_path,
    container_id,
    read_cgroup,
    slurm_job_id,
    unified_members,
)
from audit_agent.collect.coverage import because, coverage, is_root
from audit_agent.collect.proc_facts import (
    MAX_DIR_FDS,
    MAX_SOCKET_FDS,
    ExeShape,
    errno_of,
    exe_shape,
    fd_links,
    held_of,
)
from audit_agent.model import Coverage, CoverageStatus, ProcessInfo
from audit_agent.redact import cap, redact_text

if TYPE_CHECKING:
    import psutil

    from audit_agent.collect.proc_facts import ProcFacts

# What one process's reading gives (ProcReader.gather, _procread.read): an errno, None, or the raw contents.
StatValues = tuple[bytes, bytes, int, int, int, int, int, int, int, int, int, int]
StatusValues = tuple[int | None, int | None, list[int]]
Gathered = int | None | tuple[StatValues, StatusValues, bytes | int, bytes | int, bytes | int, bytes | int | None,
                              bytes | int,
                              int | tuple[list[int], list[bytes]] | None, bytes | int | None, ExeShape | int | None]

ATTRS = ["pid", "ppid", "name", "exe", "cmdline", "username", "cwd", "create_time", "status", "nice",
         "num_threads", "memory_info", "cpu_times", "terminal", "uids"]
ENV_KEYS = ("LD_PRELOAD", "LD_AOUT_PRELOAD", "LD_ELF_PRELOAD", "LD_LIBRARY_PATH", "SLURM_JOB_ID",
            "SLURM_JOB_USER", "CUDA_VISIBLE_DEVICES", "KUBERNETES_SERVICE_HOST", "container",
            # a Filecoin local devnet (Lotus docs: export LOTUS_SKIP_GENESIS_CHECK=_yes_), a Chia testnet root
            "LOTUS_SKIP_GENESIS_CHECK", "CHIA_ROOT")
# A command line is bounded by bytes, never by a fixed count an attacker can pad past: the head AND the tail
# are kept (a pool URL hidden after 300 padding arguments, or after 100 kB of padding inside one argument,
# is still seen) and ProcessInfo.cmdline_bytes says how long it really was.
MAX_CMDLINE_CHARS = 65536   # whole command line kept: 3/4 from the head, 1/4 from the tail
MAX_ARG_CHARS = 8192        # one argument: its head and its tail
MAX_EXTRA_ENVIRON_BYTES = 256 * 1024    # where the further keys (ProcFacts.env_keys) are looked for
EXTRA_VALUE_CHARS = 300
ON_LINUX = sys.platform.startswith("linux")


class FirstReading(Struct):
    started: float
    cpu_seconds: dict[int, float]
    children_seconds: dict[int, float] = field(default_factory=dict)    # reaped children (cutime + cstime)


def first_reading(proc_root: str = "/proc") -> FirstReading:
    """CPU seconds of every visible process at the start of the window."""
    if is_live_procfs(proc_root):
        own, children = stat_cpu_seconds(proc_root)
        return FirstReading(time.monotonic(), own, children)
    import psutil
    seconds = {}
    for proc in psutil.process_iter(["cpu_times"], ad_value=None):
        times = proc.info.get("cpu_times")
        if times is not None:
            seconds[proc.pid] = times.user + times.system
    return FirstReading(time.monotonic(), seconds)


def read_processes(first: FirstReading, proc_root: str = "/proc",
                   facts: ProcFacts | None = None) -> tuple[list[ProcessInfo], Coverage]:
    """Every visible process, with CPU % over the window since `first`; with `facts` (a live procfs only),
    each process's open descriptors and further environment keys are read in the same pass."""
    elapsed = max(time.monotonic() - first.started, 1e-6)
    if is_live_procfs(proc_root):
        reader = ProcReader(proc_root, facts)
        processes = [info for info in reader.read_all(first, elapsed) if info is not None]
        denied = sum(1 for info in processes if info.denied) + reader.unreadable
        return processes, process_coverage(len(processes) + reader.unreadable, denied, processes)
    import psutil
    processes = []
    denied_processes = 0
    for proc in psutil.process_iter(ATTRS, ad_value=_DENIED):
        try:
            info = build_process(proc.info, first, elapsed, proc_root, proc)
        except psutil.Error:
            continue    # vanished between listing and reading
        if info is None:
            continue
        if info.denied:
            denied_processes += 1
        processes.append(info)
    return processes, process_coverage(len(processes), denied_processes, processes)


def process_coverage(total: int, denied: int, processes: list[ProcessInfo] | None = None) -> Coverage:
    """ok, or partial naming the processes that could not be read, with advice that would help: root when
    not root; when root was denied too, the container or security module (LSM) that denied it."""
    if total == 0:
        return coverage("processes", CoverageStatus.SKIPPED, because("no_processes"))
    if denied:
        code = "processes_denied_root" if is_root() else "processes_denied"
        return coverage("processes", CoverageStatus.PARTIAL, because(code, n=denied, total=total),
                        inspected=total - denied, denied=denied,
                        unreadable=[unreadable_label(p) for p in processes or [] if p.denied])
    return coverage("processes", CoverageStatus.OK, inspected=total)


def unreadable_label(proc: ProcessInfo) -> str:
    """"pid 1 systemd (/usr/lib/systemd/systemd): exe, cmdline": who, and what of it could not be read."""
    who = f"pid {proc.pid} {proc.name}".strip()
    if proc.exe:
        who += f" ({proc.exe})"
    return f"{who}: {', '.join(proc.denied)}" if proc.denied else who


class _Denied:
    """Placeholder psutil puts where access was denied."""

    def __repr__(self) -> str:
        return "<denied>"


_DENIED = _Denied()


def build_process(raw: dict[str, Any], first: FirstReading, elapsed: float, proc_root: str = "/proc",
                  proc: psutil.Process | None = None) -> ProcessInfo | None:
    denied = sorted(key for key, value in raw.items() if value is _DENIED and key not in ("terminal",))
    value = {key: (None if v is _DENIED else v) for key, v in raw.items()}
    pid = value["pid"]
    if pid is None:
        return None
    memory = value.get("memory_info")
    times = value.get("cpu_times")
    uids = value.get("uids")
    info = ProcessInfo(
        pid=pid,
        ppid=value.get("ppid"),
        name=clean_text(value.get("name") or ""),
        exe=clean_text(value.get("exe") or ""),
        cmdline=cap_cmdline([clean_text(arg) for arg in value.get("cmdline") or []]),
        cmdline_bytes=cmdline_length(value.get("cmdline") or []),
        username=clean_text(value.get("username") or ""),
        uid=uids.real if uids is not None else None,
        cwd=clean_text(value.get("cwd") or ""),
        create_time=value.get("create_time"),
        status=value.get("status") or "",
        nice=value.get("nice"),
        num_threads=value.get("num_threads"),
        rss_bytes=memory.rss if memory else None,
        terminal=value.get("terminal") or "",
        denied=denied,
    )
    if times is not None:
        info.lifetime_cpu_seconds = round(times.user + times.system, 3)
        set_cpu_use(info, times.user + times.system, first, elapsed,
                    getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0))
    info.allowed_cpus = allowed_cpus(proc)
    if ON_LINUX:
        add_linux_details(info, proc_root, proc)
    return info


def set_cpu_use(info: ProcessInfo, now_seconds: float, first: FirstReading, elapsed: float,
                children_now: float = 0.0) -> None:
    """CPU seconds and % over the window (or over its life, for a process born during the window),
    and the CPU seconds of children it reaped during the window."""
    children_before = first.children_seconds.get(info.pid)
    info.children_cpu_seconds = rounded(max(children_now - children_before, 0.0) if children_before is not None
                                        else children_now, 3)
    started_before = first.cpu_seconds.get(info.pid)
    if started_before is None:      # born during the window: measure from its start
        now = time.time()
        age = max(now - (info.create_time or now), 1e-3)
        window = min(age, elapsed)
        used = now_seconds if age <= elapsed else now_seconds * (elapsed / age)
    else:
        window, used = elapsed, max(now_seconds - started_before, 0.0)
    info.cpu_seconds = rounded(used, 3)
    info.cpu_percent = rounded(100.0 * used / window, 1)


def rounded(value: float, digits: int) -> float:
    """round(value, digits), which formats the float's decimal digits to do it (~0.5 us): an idle process's
    0.0, the common case on a host of sleepers, needs none of that."""
    return round(value, digits) if value else 0.0


def clean_text(text: str) -> str:
    """Text that always encodes as UTF-8: undecodable bytes (surrogate escapes) shown as \\xNN."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


def cap_cmdline(argv: list[str]) -> list[str]:
    """Bound what one hostile command line can cost us by characters, keeping its head and its tail; once the
    scan has kept its share of command lines (collect/bounds.py), each further one keeps less."""
    limit = min(MAX_CMDLINE_CHARS, bounds.allowance())
    args = [cap_arg(arg, min(MAX_ARG_CHARS, limit // 2)) for arg in argv]
    total = sum(len(arg) + 1 for arg in args)
    if total <= limit:
        bounds.spend(total)
        return args
    head, used = 0, 0
    while head < len(args) and used + len(args[head]) + 1 <= limit * 3 // 4:
        used += len(args[head]) + 1
        head += 1
    tail, used_tail = len(args), 0
    while tail > head and used_tail + len(args[tail - 1]) + 1 <= limit // 4:
        tail -= 1
        used_tail += len(args[tail]) + 1
    bounds.spend(used + used_tail)
    return [*args[:head], f"…[{tail - head} arguments cut]…", *args[tail:]]


def cap_arg(arg: str, limit: int = MAX_ARG_CHARS) -> str:
    if len(arg) <= limit:
        return arg
    keep = limit // 2
    return f"{arg[:keep]}…[{len(arg) - 2 * keep} characters cut]…{arg[-keep:]}"


def cmdline_length(argv: list[str]) -> int | None:
    """The whole command line's length when cap_cmdline had to cut it, else None."""
    total = sum(len(arg) + 1 for arg in argv)
    return total if total > MAX_CMDLINE_CHARS or any(len(arg) > MAX_ARG_CHARS for arg in argv) else None


def allowed_cpus(proc: psutil.Process | None) -> int | None:
    import psutil
    if proc is None or not hasattr(proc, "cpu_affinity"):
        return psutil.cpu_count() or None
    try:
        return len(proc.cpu_affinity()) or None
    except (psutil.Error, OSError):
        return psutil.cpu_count() or None


def add_linux_details(info: ProcessInfo, proc_root: str, proc: psutil.Process | None) -> None:
    """Linux-only facts read straight from /proc: cgroup, deleted exe, NSpid, selected environment."""
    info.cgroup = read_cgroup(info.pid, proc_root)
    info.container_id = container_id(info.cgroup)
    info.slurm_job_id = slurm_job_id(info.cgroup)
    link = exe_link(info.pid, proc_root)
    if link.endswith(" (deleted)"):
        info.exe_deleted = True
        info.exe = info.exe or link[: -len(" (deleted)")]
    info.ns_pids = ns_pids(info.pid, proc_root)
    info.environ = selected_environ(info.pid, proc_root)
    if not info.slurm_job_id:
        info.slurm_job_id = info.environ.get("SLURM_JOB_ID", "")


def exe_link(pid: int, proc_root: str = "/proc") -> str:
    try:
        return os.readlink(Path(proc_root) / str(pid) / "exe")
    except OSError:
        return ""


def ns_pids(pid: int, proc_root: str = "/proc") -> list[int]:
    """NSpid from /proc/PID/status: the pid in each nested pid namespace, host first."""
    try:
        with open(Path(proc_root) / str(pid) / "status", encoding="utf-8", errors="replace") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return [int(part) for part in line.split()[1:] if part.isdigit()]
    except OSError:
        pass
    return []


def selected_environ(pid: int, proc_root: str = "/proc") -> dict[str, str]:
    """Only the environment keys that matter for the audit; values capped."""
    try:
        raw = (Path(proc_root) / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    found = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key.decode("utf-8", "replace") in ENV_KEYS:
            found[key.decode()] = value.decode("utf-8", "replace")[:1024]
    return found


# ---------------------------------------------------------------- Linux: straight from /proc

# psutil's names for the state letter in /proc/PID/stat
PROC_STATES = {"R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop",
               "Z": "zombie", "X": "dead", "x": "dead", "K": "wake-kill", "W": "waking", "I": "idle",
               "P": "parked"}
# Bounds of the reader's memo of parsed contents (ProcReader.cmdline, environ, cgroup): at most this many
# distinct contents each, of at most this many bytes: ~2 MB each at worst, whatever a host runs.
MAX_PARSED_BYTES = 8192
MAX_PARSED_ENTRIES = 256
READ_CHUNK = 16384          # below glibc's mmap threshold; /proc files longer than this are read in a loop
# A process's folder, opened once for all its files (O_PATH): a PID that ends and is reused while the reader
# is at it cannot lend the new process's files to the old one's reading; they fail (ENOENT) and the process
# is dropped as gone. It costs no more than opening each file by path (bench/scan_cost.py, same run).
PROC_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC


MAX_CPU = 1 << 22           # no kernel numbers a CPU past this (NR_CPUS at most 8192)
MAX_PROC_FILE = 4 << 20     # read_proc_file's bound: a process's cmdline and environ are its to inflate
DENIED_ERRNOS = (errno.EACCES, errno.EPERM)


def more_address() -> int:
    """The address of libc's syscall(2) for the reader's extra reads (rawsys); 0 where they are not made."""
    from audit_agent.collect import deadline, rawsys
    return 0 if deadline.remote_mount_points() else rawsys.syscall_address()


def is_live_procfs(proc_root: str) -> bool:
    """True for a mounted Linux procfs (the direct reader's home); fake trees and other OSes use psutil."""
    return ON_LINUX and os.path.isfile(os.path.join(proc_root, "self", "stat"))


def read_proc_file(path: bytes, limit: int = MAX_PROC_FILE, dir_fd: int | None = None) -> bytes:
    """The file (at most `limit` bytes: a process's cmdline and environ are its to inflate) in as few
    read(2) calls as possible (a short read is the end of a /proc file); `path` relative to `dir_fd` if given."""
    fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    try:
        data = os.read(fd, min(READ_CHUNK, limit))
        if len(data) < READ_CHUNK:
            return data
        chunks = [data]
        size = len(data)
        while size < limit:
            data = os.read(fd, min(1 << 20, limit - size))
            if not data:
                break
            chunks.append(data)
            size += len(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def split_stat(data: bytes) -> tuple[bytes, list[bytes]]:
    """(comm, the fields after it) of /proc/PID/stat; comm may hold spaces and parentheses."""
    close = data.rfind(b")")
    return data[data.find(b"(") + 1:close], data[close + 2:].split()


def stat_values(data: bytes) -> StatValues | None:
    """(comm, state, ppid, tty_nr, utime, stime, cutime, cstime, nice, num_threads, starttime, rss pages) of
    /proc/PID/stat, as _procread.c gives them; None when it has fewer fields than that."""
    if b")" not in data:
        return None
    comm, fields = split_stat(data)
    if len(fields) < 22:
        return None
    return (comm, fields[0], int(fields[1]), int(fields[4]), int(fields[11]), int(fields[12]), int(fields[13]),
            int(fields[14]), int(fields[16]), int(fields[17]), int(fields[19]), int(fields[21]))


def status_values(data: bytes) -> StatusValues:
    """(real uid, allowed CPUs, NSpid) of /proc/PID/status, as _procread.c gives them; None for a field that
    is absent (or, for the CPUs, not a CPU list)."""
    uids = status_field(data, b"Uid")
    cpus = status_field(data, b"Cpus_allowed_list")
    try:
        allowed = count_cpu_list(cpus[0]) if cpus else None
    except ValueError:
        allowed = None
    return (int(uids[0]) if uids else None, allowed,
            [int(part) for part in status_field(data, b"NSpid") if part.isdigit()])


def read_or_errno(name: bytes, where: int | None) -> bytes | int:
    try:
        return read_proc_file(name, dir_fd=where)
    except OSError as error:
        return errno_of(error)


def link_or_errno(name: bytes, where: int) -> bytes | int:
    try:
        return os.readlink(name, dir_fd=where)
    except OSError as error:
        return errno_of(error)


def stat_cpu_seconds(proc_root: str) -> tuple[dict[int, float], dict[int, float]]:
    """utime + stime, and cutime + cstime (reaped children), of every process, from /proc/PID/stat alone."""
    ticks = CLOCK_TICKS
    root = os.fsencode(proc_root) + b"/"
    seconds, children = {}, {}
    for entry in os.listdir(root):
        if not entry.isdigit():
            continue
        try:
            _, fields = split_stat(read_proc_file(root + entry + b"/stat"))
            pid = int(entry)
            seconds[pid] = (int(fields[11]) + int(fields[12])) / ticks
            children[pid] = (int(fields[13]) + int(fields[14])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return seconds, children


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
ENV_KEYS_BYTES = tuple(key.encode() for key in ENV_KEYS)


def decode(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def split_cmdline(data: bytes) -> list[str]:
    """psutil's rules: NUL-separated, or space-separated for processes that rewrote their title."""
    if not data:
        return []
    sep = b"\0" if data.endswith(b"\0") else b" "
    if data.endswith(sep):
        data = data[:-1]
    args = data.split(sep)
    if sep == b"\0" and len(args) == 1 and b" " in data:
        args = data.split(b" ")
    return [decode(arg) for arg in args]


def status_field(status: bytes, key: bytes) -> list[bytes]:
    """The values of one `Key:\\tv1\\tv2` line of /proc/PID/status ([] when absent)."""
    start = status.find(b"\n" + key + b":")
    if start == -1:
        return []
    start += len(key) + 2
    end = status.find(b"\n", start)
    return status[start:end if end != -1 else len(status)].split()


def count_cpu_list(text: bytes) -> int:
    """Number of CPUs in a list like `0-3,8,10-11`; ValueError when a range is not one."""
    total = 0
    for part in text.split(b","):
        low, dash, high = part.partition(b"-")
        if dash:
            first, last = cpu_index(low), cpu_index(high)
            if last < first:
                raise ValueError(f"not a CPU range: {part!r}")
            total += last - first + 1
        else:
            total += 1
    return total


def cpu_index(text: bytes) -> int:
    if not text.lstrip(b"+").isdigit() or text.startswith(b"++"):
        raise ValueError(f"not a CPU: {text!r}")
    index = int(text)
    if index >= MAX_CPU:
        raise ValueError(f"not a CPU: {text!r}")
    return index


def environ_subset(data: bytes, extra: re.Pattern[bytes] | None = None) -> dict[str, str]:
    """The ENV_KEYS entries of an environ block (a few C-speed finds instead of splitting it all), then the
    entries of the `extra` keys (extra_keys_pattern) not among them from its first MAX_EXTRA_ENVIRON_BYTES,
    values capped and redacted (as the family step reads them: ProcFacts.env_keys)."""
    found = {}
    block = b"\0" + data
    for key in ENV_KEYS_BYTES:
        start = block.find(b"\0" + key + b"=")
        if start == -1:
            continue
        start += len(key) + 2
        end = block.find(b"\0", start)
        found[key.decode()] = block[start:end if end != -1 else len(block)].decode("utf-8", "replace")[:1024]
    if extra is not None:
        for key, value in extra.findall(block, 0, MAX_EXTRA_ENVIRON_BYTES + 1):
            found.setdefault(key.decode("utf-8", "replace"),
                             cap(redact_text(value.decode("utf-8", "replace")), EXTRA_VALUE_CHARS))
    return found


def extra_keys_pattern(keys: Iterable[str]) -> re.Pattern[bytes] | None:
    """One pass over an environ block for many keys (~40 family keys: a find each cost 5x more)."""
    wanted = sorted(key.encode() for key in keys)
    if not wanted:
        return None
    return re.compile(b"\0(" + b"|".join(re.escape(key) for key in wanted) + b")=([^\0]*)")


def link_text(link: bytes) -> str:
    """psutil's readlink: ' (deleted)' dropped only if the path without it does not exist."""
    if link.endswith(b" (deleted)") and not os.path.lexists(link):
        link = link[:-10]
    return decode(link)


class ProcReader:
    """Reads every process's fields straight from a live /proc, each file once."""

    def __init__(self, proc_root: str = "/proc", facts: ProcFacts | None = None, native: bool = True) -> None:
        self.native = NATIVE if native else None
        self.root = os.fsencode(proc_root) + b"/"
        self.proc_root = proc_root
        self.facts = facts
        # With shared facts, the ns/net link and the stat() of exe are read here too, where the process's
        # folder is open, for the namespace and executable steps: not where a mount could stall the stat
        # (proc_facts.stat_exes puts it under the deadline) or raw system calls cannot be made.
        self.more_address = more_address() if facts is not None else 0
        self.extra_env = extra_keys_pattern(facts.env_keys - set(ENV_KEYS) if facts is not None else ())
        self.boot_time = boot_time()
        self.users: dict[int, str] = {}
        self.terminals: dict[int, str] | None = None
        self.host_cpus = os.cpu_count() or None
        self.unreadable = 0             # listed, but stat/status denied (hidepid): counted, not dropped silently
        # One copy of each text many processes share (the executable, folder, arguments and cgroup of a
        # pool of workers): at 8,000 processes these were ~2.5 MB of equal strings.
        self.shared: dict[str, str] = {}
        # What the raw bytes of a file many processes share parse to (the workers of a pool have one command
        # line, one environment, one cgroup): parsed once, per distinct content, within the bounds below.
        self.parsed_cmdlines: dict[bytes, tuple[list[str], int | None]] = {}
        self.parsed_environs: dict[bytes, dict[str, str]] = {}
        self.parsed_cgroups: dict[bytes, tuple[str, str, str]] = {}
        self.members: Members | None = None     # every process's cgroup from one walk (walk_cgroups)

    def read_all(self, first: FirstReading, elapsed: float) -> list[ProcessInfo | None]:
        entries = [entry for entry in os.listdir(self.root) if entry.isdigit()]
        self.walk_cgroups(len(entries))
        return [self.read(int(entry), entry, first, elapsed) for entry in entries]

    def walk_cgroups(self, processes: int) -> None:
        """Before reading every process: their cgroups from the cgroup tree, one file per cgroup instead of
        one per process (cgroups.unified_members; None where it cannot answer as /proc/PID/cgroup would).
        A cgroup costs the walk about what two processes' own files cost: a host with more cgroups than
        half its processes is read process by process, as before, without walking."""
        self.members = unified_members(self.proc_root, CLOCK_TICKS, limit=min(MAX_CGROUPS, processes // 2))

    def read(self, pid: int, entry: bytes, first: FirstReading, elapsed: float) -> ProcessInfo | None:
        """One process, or None if it vanished while being read."""
        base = self.root + entry + b"/"
        try:
            want_cgroup = self.members is None or pid not in self.members.paths
            if self.native is not None:
                raw = self.native.read(base, MAX_PROC_FILE, MAX_SOCKET_FDS, MAX_DIR_FDS, self.facts is not None,
                                       self.more_address, want_cgroup)
            else:
                raw = self.gather(base, want_cgroup)
        except ValueError:      # a stat field that is not a number: nothing of it can be trusted
            return None
        return self.build(pid, base, raw, first, elapsed)

    def read_from(self, pid: int, base: bytes, where: int, first: FirstReading, elapsed: float) -> ProcessInfo | None:
        """read(), in Python, with `where` the process's /proc folder open."""
        try:
            raw = self.gather_at(base, where)
        except ValueError:
            return None
        return self.build(pid, base, raw, first, elapsed)

    def gather(self, base: bytes, want_cgroup: bool = True) -> Gathered:
        """What _procread.read() gives, read in Python: the errno when the process's folder, stat or status
        cannot be read; None when stat is cut short; else the raw contents (ProcReader.build)."""
        try:
            where = os.open(base, PROC_DIR_FLAGS)
        except OSError as error:
            return errno_of(error)
        try:
            return self.gather_at(base, where, want_cgroup)
        finally:
            os.close(where)

    def gather_at(self, base: bytes, where: int, want_cgroup: bool = True) -> Gathered:
        try:
            stat_data = read_proc_file(b"stat", dir_fd=where)
            status_data = read_proc_file(b"status", dir_fd=where)
        except OSError as error:
            return errno_of(error)
        stat = stat_values(stat_data)
        if stat is None:
            return None
        more = bool(self.more_address)
        return (stat, status_values(status_data), read_or_errno(b"cmdline", where), link_or_errno(b"exe", where),
                link_or_errno(b"cwd", where), read_or_errno(b"cgroup", where) if want_cgroup else None,
                read_or_errno(b"environ", where),
                fd_links(base + b"fd/") if self.facts is not None else None,
                link_or_errno(b"ns/net", where) if more else None,
                exe_shape(lambda name: os.stat(name, dir_fd=where), b"exe") if more else None)

    def build(self, pid: int, base: bytes, raw: Gathered, first: FirstReading, elapsed: float) -> ProcessInfo | None:
        """The ProcessInfo of one process's raw contents (gather); None when it is gone."""
        if raw is None:
            return None
        if isinstance(raw, int):
            if raw in DENIED_ERRNOS:
                self.unreadable += 1    # /proc mounted with hidepid=1: the process exists, we may not look
            return None
        stat, status, cmdline_raw, exe_raw, cwd_raw, cgroup_raw, environ_raw, fds, netns, exe_file = raw
        comm, state_raw, ppid, tty_nr, utime, stime, cutime, cstime, nice, threads, start, rss = stat
        denied: list[str] = []
        state = state_raw.decode("ascii", "replace")
        zombie = state in ("Z", "X", "x")
        cmdline: list[str] = []
        kept_cmdline: list[str] = []
        cmdline_bytes = None
        if isinstance(cmdline_raw, bytes):
            cmdline, kept_cmdline, cmdline_bytes = self.cmdline(cmdline_raw)
        elif cmdline_raw in DENIED_ERRNOS:
            denied.append("cmdline")
        exe = self.link(base, exe_raw, "exe", denied, zombie)
        cwd = self.link(base, cwd_raw, "cwd", denied, zombie)
        if exe is None or cwd is None:
            return None
        name = decode(comm)
        if len(name) >= 15 and cmdline:         # comm is cut at 15 bytes: psutil takes the longer argv[0] name
            extended = os.path.basename(cmdline[0])
            if extended.startswith(name):
                name = extended
        uid, cpus, ns_pids = status
        share = self.shared.setdefault
        info = ProcessInfo(
            pid=pid, ppid=ppid, name=share(name, name), exe=share(exe, exe),
            cmdline=kept_cmdline, cmdline_bytes=cmdline_bytes,
            username=self.username(uid) if uid is not None else "", uid=uid, cwd=share(cwd, cwd),
            create_time=start / CLOCK_TICKS + self.boot_time,
            status=PROC_STATES.get(state, "?"), nice=nice, num_threads=threads,
            rss_bytes=rss * PAGE_SIZE,   # = statm's resident (get_mm_rss), one read fewer
            terminal=self.terminal(tty_nr),
            denied=sorted(denied))
        info.lifetime_cpu_seconds = (utime + stime) / CLOCK_TICKS
        set_cpu_use(info, info.lifetime_cpu_seconds, first, elapsed, (cutime + cstime) / CLOCK_TICKS)
        info.allowed_cpus = cpus if cpus is not None else self.host_cpus
        info.ns_pids = ns_pids
        exe_link = exe_raw.split(b"\0")[0] if isinstance(exe_raw, bytes) else b""
        if cgroup_raw is None:      # not read: the walk knows it, unless the PID may be another's by now
            known = self.members.line(pid, start) if self.members is not None else None
            cgroup_raw = known if known is not None else read_or_errno(base + b"cgroup", None)
        self.linux_details(info, exe_link, cgroup_raw, environ_raw)
        if self.facts is not None and fds is not None:
            held = held_of(fds)
            if held is not None:
                self.facts.record(pid, held)
        if self.facts is not None and netns is not None and exe_file is not None:
            self.facts.record_more(pid, netns, exe_file)
        return info

    def cmdline(self, raw: bytes) -> tuple[list[str], list[str], int | None]:
        """(the arguments, the arguments as kept (capped, shared strings), the true length when cut)."""
        known = self.parsed_cmdlines.get(raw)
        if known is not None:
            argv, length = known
            return argv, list(argv), length     # a list per process: ProcessInfo.cmdline is its own
        argv = split_cmdline(raw)
        share = self.shared.setdefault
        kept = [share(arg, arg) for arg in cap_cmdline(argv)]
        length = cmdline_length(argv)
        if len(raw) <= MAX_PARSED_BYTES and len(self.parsed_cmdlines) < MAX_PARSED_ENTRIES and kept == argv:
            # only one kept whole: a cut depends on what the scan has kept so far (bounds.allowance)
            self.parsed_cmdlines[raw] = (kept, length)
        return argv, list(kept), length

    def link(self, base: bytes, raw: bytes | int, name: str, denied: list[str], zombie: bool) -> str | None:
        """A /proc symlink's target (raw: its bytes or the errno of reading it); '' for none (kernel thread,
        zombie); None if the process is gone."""
        if isinstance(raw, bytes):
            return link_text(raw.split(b"\0")[0])
        if raw in DENIED_ERRNOS:
            denied.append(name)
            return ""
        if raw in (errno.ENOENT, errno.ESRCH):
            if zombie or os.path.lexists(base.rstrip(b"/")):
                return ""
            return None
        return ""

    def linux_details(self, info: ProcessInfo, exe_link: bytes, cgroup: bytes | int, environ: bytes | int) -> None:
        info.cgroup, info.container_id, info.slurm_job_id = self.cgroup(cgroup if isinstance(cgroup, bytes) else b"")
        if exe_link.endswith(b" (deleted)"):
            info.exe_deleted = True
            info.exe = info.exe or decode(exe_link[:-10])
        info.environ = self.environ(environ) if isinstance(environ, bytes) else {}
        if not info.slurm_job_id:
            info.slurm_job_id = info.environ.get("SLURM_JOB_ID", "")

    def cgroup(self, raw: bytes) -> tuple[str, str, str]:
        """(cgroup path, container id, Slurm job id) of a /proc/PID/cgroup content."""
        known = self.parsed_cgroups.get(raw)
        if known is None:
            path = cgroup_path(raw.decode("utf-8", "replace"))
            path = self.shared.setdefault(path, path)
            known = (path, container_id(path), slurm_job_id(path))
            if len(raw) <= MAX_PARSED_BYTES and len(self.parsed_cgroups) < MAX_PARSED_ENTRIES:
                self.parsed_cgroups[raw] = known
        return known

    def environ(self, raw: bytes) -> dict[str, str]:
        """The audit's keys of an environ block, a dict per process (the family step may add to it)."""
        known = self.parsed_environs.get(raw)
        if known is None:
            known = environ_subset(raw, self.extra_env)
            if len(raw) <= MAX_PARSED_BYTES and len(self.parsed_environs) < MAX_PARSED_ENTRIES:
                self.parsed_environs[raw] = known
        return dict(known)

    def username(self, uid: int) -> str:
        name = self.users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except (KeyError, OverflowError):
                name = str(uid)
            self.users[uid] = name
        return name

    def terminal(self, tty_nr: int) -> str:
        if not tty_nr:
            return ""
        if self.terminals is None:      # psutil's map, built once per scan instead of once per process
            self.terminals = {}
            for path in glob.glob("/dev/tty*") + glob.glob("/dev/pts/*"):
                try:
                    self.terminals[os.stat(path).st_rdev] = path
                except OSError:
                    pass
        return self.terminals.get(tty_nr, "")
