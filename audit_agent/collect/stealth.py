"""Stealth state of a Linux host: preloaded libraries, hidden processes, unexplained CPU, RandomX tuning, /proc mounts.

Everything here reads current state, not events, so it still shows after logs
are gone. All roots (proc_root, sys_root, etc_root) come from the options so
tests point the readers at small fake trees.

Hidden processes. `os.listdir('/proc')` goes through libc readdir, which an
LD_PRELOAD hider (libprocesshider) or a kernel rootkit filters; stronger
hiders also replace open, stat and kill for /proc/PID and hide
/etc/ld.so.preload. So the listing is compared with the kernel's own
(getdents64 as a system call, rawsys.py), every PID is probed with kill(2) as a
system call, a hidden process and the agent's own maps, environment and
ld.so.preload are read with openat/read system calls, and the libc functions
interposed in the agent are named with the library that interposes them. Every PID up to
pid_max is probed when pid_max is small (measured: ~0.9 us per `os.kill`
probe, so 32768 PIDs take ~30 ms and 4,194,304 take ~3.7 s on the dev box);
above FULL_PROBE_MAX the brute range stops at the highest PID seen plus a
margin, and the cheap sources cover the rest: the children of every visible
thread (/proc/PID/task/TID/children is a file read, not readdir, so every
process whose parent is visible is reached, even after PID wrap-around), the
parents of visible processes, and the last allocated PID in /proc/loadavg.
A candidate is a thread of a visible process (its Tgid is listed) or truly
hidden; hidden ones are probed again after a short delay and reported only if
still alive and still missing from a fresh listing (busy servers create and
reap processes between two reads: YJesus/Unhide#15).
"""
from __future__ import annotations

import os
import re
import sys
import time
from typing import Any, Callable, Iterable

import msgspec

from audit_agent.collect import linux_only, rawsys
from audit_agent.collect.coverage import because, coverage
from audit_agent.model import Coverage, CoverageDetail, CoverageStatus, HiddenPid, ProcessInfo, Snapshot, StealthState
from audit_agent.redact import cap

CHECK = "stealth"
CHECK_HIDDEN = "hidden-processes"
CHECKS = (CHECK, CHECK_HIDDEN)
FULL_PROBE_MAX = 1 << 20           # probe every PID up to pid_max when pid_max is at most this (~0.9 s)
PROBE_MARGIN = 65536               # above it: highest PID seen + this margin
RECHECK_DELAY = 0.3                # seconds before a hidden candidate is probed again
MAX_HIDDEN_REPORTED = 256
BIG_RSS_BYTES = 1 << 30            # smaps_rollup is read only for processes this big ...
BUSY_CPU_PERCENT = 50.0            # ... or this busy (reading it walks the page tables: costly)
MAX_SMAPS_READS = 64
TGID_BYTES = 512                   # /proc/PID/status up to its Tgid line
PROC_PID_MOUNT = re.compile(r"^/proc/\d+(?:/|$)")
PRELOAD_ENV_KEYS = ("LD_PRELOAD", "LD_AOUT_PRELOAD", "LD_ELF_PRELOAD")
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") and "SC_CLK_TCK" in os.sysconf_names else 100


def collect_stealth(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """checking for hidden processes and stealth"""
    not_linux = linux_only(CHECK)
    if not_linux:
        return [not_linux, coverage(CHECK_HIDDEN, CoverageStatus.NOT_APPLICABLE, *not_linux.details)]
    proc_root = getattr(options, "proc_root", "/proc")
    sys_root = getattr(options, "sys_root", "/sys")
    etc_root = getattr(options, "etc_root", "/etc")
    state = snapshot.stealth
    state.ld_so_preload = read_ld_so_preload(etc_root)
    state.ld_so_preload_hidden = bool(state.ld_so_preload) and not os.path.exists(os.path.join(etc_root,
                                                                                              "ld.so.preload"))
    if proc_root == "/proc":
        state.hooked_functions = [f"{name} ({library})" for name, library in rawsys.interposed_functions().items()]
    state.self_preloaded_libraries = self_preloaded_libraries(proc_root, state.ld_so_preload)
    state.proc_bind_mounts, state.proc_hidepid = proc_mounts(proc_root)
    state.hugepages_total, state.hugepage_size_kb = hugepages(proc_root, sys_root)
    state.msr_loaded, state.msr_allow_writes = msr_state(sys_root)
    state.nmi_watchdog = read_int(os.path.join(proc_root, "sys/kernel/nmi_watchdog"))
    add_hugepage_usage(snapshot.processes, proc_root)
    return [coverage(CHECK, CoverageStatus.OK, inspected=1), add_hidden_processes(snapshot, options, proc_root)]


# ------------------------------------------------------------------ preload


def read_ld_so_preload(etc_root: str = "/etc") -> list[str]:
    """Entries of /etc/ld.so.preload (whitespace or newline separated; # comments), read past any libc hook."""
    try:
        text = rawsys.read_any(os.path.join(etc_root, "ld.so.preload"), 64 * 1024).decode("utf-8", "replace")
    except OSError:
        return []
    entries = []
    for line in text.splitlines():
        for token in line.split("#", 1)[0].split():
            entries.append(cap(token, 1024))
    return entries[:64]


def self_preloaded_libraries(proc_root: str, ld_so_preload: list[str],
                             environ: dict[str, str] | None = None) -> list[str]:
    """Libraries mapped into the agent itself that ld.so.preload or LD_PRELOAD put there."""
    wanted = list(ld_so_preload)
    for value in (environ if environ is not None else own_preload_environ(proc_root)):
        wanted.extend(part for part in re.split(r"[:\s]+", value) if part)
    if not wanted:
        return []
    mapped = mapped_files(os.path.join(proc_root, "self/maps"))
    names = {os.path.basename(w) for w in wanted}
    found = []
    for path in mapped:
        clean = path[: -len(" (deleted)")] if path.endswith(" (deleted)") else path
        if clean in wanted or os.path.basename(clean) in names:
            if path not in found:
                found.append(cap(path, 1024))
    return found


def own_preload_environ(proc_root: str) -> list[str]:
    """LD_PRELOAD of the agent: the live environment and the one it was started with (a hider may unset it)."""
    values = [os.environ[key] for key in PRELOAD_ENV_KEYS if os.environ.get(key)]
    try:
        raw = rawsys.read_any(os.path.join(proc_root, "self/environ"), 1024 * 1024)
    except OSError:
        raw = b""
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key.decode("utf-8", "replace") in PRELOAD_ENV_KEYS and value:
            values.append(value.decode("utf-8", "replace"))
    return values


def mapped_files(maps_path: str) -> list[str]:
    """Files mapped in a process, from its maps read by system calls (a hider filters its own line from libc reads)."""
    files: list[str] = []
    try:
        text = rawsys.read_any(maps_path, 16 * 1024 * 1024).decode("utf-8", "replace")
    except OSError:
        return files
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/") and parts[5] not in files:
            files.append(parts[5])
    return files


# ------------------------------------------------------------------ mounts, tuning


def proc_mounts(proc_root: str = "/proc") -> tuple[list[str], str]:
    """Mounts made *on* /proc/<pid> (bind-mount hiding) and the hidepid= option of /proc."""
    binds: list[str] = []
    hidepid = ""
    try:
        with open(os.path.join(proc_root, "self/mountinfo"), encoding="utf-8", errors="replace") as handle:
            lines = handle.read(4 * 1024 * 1024).splitlines()
    except OSError:
        return binds, hidepid
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        mount_point = unescape_mount(fields[4])
        if PROC_PID_MOUNT.match(mount_point):
            source = fields[3] if len(fields) > 3 else ""
            binds.append(cap(f"{mount_point} (from {unescape_mount(source)})", 512))
        if mount_point == "/proc" and " - " in line:
            fstype_and_options = line.split(" - ", 1)[1].split()
            if fstype_and_options and fstype_and_options[0] == "proc" and len(fstype_and_options) >= 3:
                for option in fstype_and_options[2].split(","):
                    if option.startswith("hidepid="):
                        hidepid = option.split("=", 1)[1]
    return binds[:64], hidepid


def unescape_mount(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def hugepages(proc_root: str = "/proc", sys_root: str = "/sys") -> tuple[int | None, int | None]:
    """Reserved huge pages and their size: the default pool in /proc/meminfo, else the largest sysfs pool."""
    total = size_kb = None
    meminfo = read_meminfo(os.path.join(proc_root, "meminfo"))
    if "HugePages_Total" in meminfo:
        total = meminfo["HugePages_Total"]
        size_kb = meminfo.get("Hugepagesize")
    pools_dir = os.path.join(sys_root, "kernel/mm/hugepages")
    try:
        pools = os.listdir(pools_dir)
    except OSError:
        pools = []
    for pool in pools:
        match = re.fullmatch(r"hugepages-(\d+)kB", pool)
        count = read_int(os.path.join(pools_dir, pool, "nr_hugepages")) if match else None
        if match and count and (not total or int(match.group(1)) > (size_kb or 0)):
            total, size_kb = count, int(match.group(1))
    return total, size_kb


def read_meminfo(path: str) -> dict[str, int]:
    values = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    values[key.strip()] = int(parts[0])
    except OSError:
        pass
    return values


def msr_state(sys_root: str = "/sys") -> tuple[bool | None, str]:
    """Whether the msr module is loaded, and its allow_writes parameter (on/off/default)."""
    module = os.path.join(sys_root, "module/msr")
    if not os.path.isdir(os.path.join(sys_root, "module")):
        return None, ""
    if not os.path.isdir(module):
        return False, ""
    try:
        with open(os.path.join(module, "parameters/allow_writes"), encoding="utf-8", errors="replace") as handle:
            return True, handle.read(64).strip()
    except OSError:
        return True, ""


def read_int(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(64).strip()
    except OSError:
        return None
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def add_hugepage_usage(processes: list[ProcessInfo], proc_root: str) -> None:
    """Huge pages each busy or big process holds (AnonHugePages + hugetlbfs), from smaps_rollup."""
    chosen = [p for p in processes if (p.cpu_percent or 0) >= BUSY_CPU_PERCENT or (p.rss_bytes or 0) >= BIG_RSS_BYTES]
    chosen.sort(key=lambda p: -(p.cpu_percent or 0))
    for proc in chosen[:MAX_SMAPS_READS]:
        values = read_meminfo(os.path.join(proc_root, str(proc.pid), "smaps_rollup"))
        if values:
            kb = values.get("AnonHugePages", 0) + values.get("Private_Hugetlb", 0) + values.get("Shared_Hugetlb", 0)
            proc.anon_hugepages_bytes = kb * 1024


# ------------------------------------------------------------------ hidden CPU


class CpuAccount(msgspec.Struct):
    """/proc/stat at the start of the window; `finish` compares the end with what the listed processes used.

    The processes' own share comes from the process reader's two readings
    (ProcessInfo.cpu_seconds), and their reaped children's too
    (children_cpu_seconds): a build that runs thousands of short compiler
    processes is explained by its make/ninja parent reaping them.
    """
    proc_root: str
    started: float
    system_ticks: int | None

    @classmethod
    def start(cls, proc_root: str = "/proc") -> "CpuAccount":
        if not sys.platform.startswith("linux"):
            return cls(proc_root, time.monotonic(), None)
        return cls(proc_root, time.monotonic(), system_busy_ticks(proc_root))

    def finish(self, snapshot: Snapshot) -> None:
        if self.system_ticks is None:
            return
        end_ticks = system_busy_ticks(self.proc_root)
        elapsed = time.monotonic() - self.started
        if end_ticks is None or elapsed <= 0:
            return
        visible_seconds = sum((p.cpu_seconds or 0.0) + (p.children_cpu_seconds or 0.0)
                              for p in snapshot.processes if not p.hidden)
        fill_cpu_accounting(snapshot.stealth, end_ticks - self.system_ticks, round(visible_seconds * USER_HZ),
                            elapsed)


def fill_cpu_accounting(state: StealthState, system_ticks: int, visible_ticks: int, elapsed: float) -> None:
    """Percentages where 100 = one core; unexplained = what the listed processes do not account for."""
    system = 100.0 * system_ticks / USER_HZ / elapsed
    visible = 100.0 * visible_ticks / USER_HZ / elapsed
    state.system_cpu_percent = round(system, 1)
    state.visible_cpu_percent = round(visible, 1)
    state.unexplained_cpu_percent = round(max(system - visible, 0.0), 1)


def system_busy_ticks(proc_root: str = "/proc") -> int | None:
    """user + nice + system ticks of all CPUs (irq/softirq time is not charged to processes, so left out)."""
    try:
        with open(os.path.join(proc_root, "stat"), encoding="ascii", errors="replace") as handle:
            first = handle.readline().split()
    except OSError:
        return None
    if len(first) < 4 or first[0] != "cpu":
        return None
    try:
        return int(first[1]) + int(first[2]) + int(first[3])
    except ValueError:
        return None


# ------------------------------------------------------------------ hidden processes


def listed_pids(proc_root: str = "/proc") -> set[int]:
    """PIDs the /proc directory listing shows (libc readdir: what an LD_PRELOAD hider filters).

    Raises OSError when /proc cannot be listed."""
    return set(map(int, filter(str.isdigit, os.listdir(proc_root))))


class ListingUnavailable(Exception):
    """No /proc listing to compare the probes with: the hidden-process check could not look."""


def kernel_listed_pids(proc_root: str = "/proc") -> set[int]:
    """PIDs in /proc read with getdents64 as a system call: the kernel's listing, past any readdir hook."""
    if not rawsys.available():
        return set()
    try:
        return set(map(int, filter(str.isdigit, rawsys.list_dir(proc_root))))
    except OSError:
        return set()


def pid_exists(pid: int, proc_root: str = "/proc") -> bool:
    """Direct probe that no libc hook sees: kill(pid, 0) as a system call on the real /proc, stat in a fake tree."""
    if proc_root == "/proc":
        if rawsys.available():
            return rawsys.pid_alive(pid)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        except OSError:
            return False
        return True
    return os.path.isdir(os.path.join(proc_root, str(pid)))


def probe_range(limit: int, proc_root: str = "/proc") -> list[int]:
    """Every live PID (or TID) in 1..limit, found by probing each number."""
    alive = []
    if proc_root == "/proc" and rawsys.available():
        return rawsys.alive_pids(limit)     # kill(2) itself: a hider's kill() cannot answer for it
    if proc_root == "/proc":
        kill = os.kill      # tight loop: ~0.9 us a PID
        for pid in range(1, limit + 1):
            try:
                kill(pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            except OSError:
                continue
            alive.append(pid)
        return alive
    try:
        names = os.listdir(proc_root)   # a fake tree: every entry is reachable by name
    except OSError:
        return alive
    return sorted(int(n) for n in names if n.isdigit() and 0 < int(n) <= limit)


def pid_max_of(proc_root: str) -> int:
    return read_int(os.path.join(proc_root, "sys/kernel/pid_max")) or 32768


def probe_limit(proc_root: str, listed: set[int]) -> tuple[int, CoverageDetail]:
    """How far to brute-probe PIDs, and the coverage detail saying why."""
    pid_max = pid_max_of(proc_root)
    if pid_max <= FULL_PROBE_MAX:
        return pid_max, because("pids_probed_all", pid_max=pid_max)
    highest = max([*listed, last_pid(proc_root) or 0, 32768])
    limit = min(pid_max, highest + PROBE_MARGIN)
    return limit, because("pids_probed_to", limit=limit, pid_max=pid_max)


def last_pid(proc_root: str = "/proc") -> int | None:
    try:
        with open(os.path.join(proc_root, "loadavg"), encoding="ascii", errors="replace") as handle:
            parts = handle.read(256).split()
    except OSError:
        return None
    return int(parts[4]) if len(parts) >= 5 and parts[4].isdigit() else None


class HiddenSearch(msgspec.Struct):
    """The inputs of the hidden-process search, replaceable in tests."""
    proc_root: str = "/proc"
    list_pids: Callable[[], set[int]] | None = None
    probe: Callable[[int], bool] | None = None
    probe_all: Callable[[int], list[int]] | None = None
    kernel_list_pids: Callable[[], set[int]] | None = None
    delay: float = RECHECK_DELAY

    def listing(self) -> set[int]:
        return self.list_pids() if self.list_pids else listed_pids(self.proc_root)

    def alive(self, pid: int) -> bool:
        return self.probe(pid) if self.probe else pid_exists(pid, self.proc_root)

    def brute(self, limit: int) -> list[int]:
        return self.probe_all(limit) if self.probe_all else probe_range(limit, self.proc_root)

    def kernel_listing(self) -> set[int]:
        """The kernel's own listing (empty on a fake tree: there the libc listing is the kernel's)."""
        if self.kernel_list_pids:
            return self.kernel_list_pids()
        return kernel_listed_pids(self.proc_root) if self.proc_root == "/proc" else set()


def find_hidden(search: HiddenSearch, known_ppids: Iterable[int] = (),
                threaded: Iterable[int] = ()) -> tuple[dict[int, str], CoverageDetail]:
    """{pid: method} of processes alive by direct probe but absent from the listing, re-checked after a delay.
    `threaded`: processes the reader saw with more than one thread.

    Raises ListingUnavailable when /proc cannot be listed or lists no process."""
    try:
        listed = search.listing()
    except OSError as exc:
        raise ListingUnavailable(because("cannot_list", path=search.proc_root, error=str(exc.strerror or exc))) from exc
    if not listed:
        raise ListingUnavailable(because("empty_listing", path=search.proc_root))
    limit, how = probe_limit(search.proc_root, listed)
    candidates: dict[int, str] = {}
    for pid in sorted(search.kernel_listing() - listed):
        candidates[pid] = "getdents64"      # in the kernel's /proc listing, filtered out of libc's
    # a listed PID is never hidden (resolve_candidates passes over it): only the others are candidates, so a
    # host's thousands of listed processes are not each put in and taken out again
    probed = [pid for pid in search.brute(limit) if pid not in listed]
    for pid in probed:
        candidates.setdefault(pid, "probe")
    tids: set[int] = set()
    if limit < pid_max_of(search.proc_root):
        # The probe stopped short of pid_max: follow every visible thread's children as well. When
        # every PID was probed this adds nothing, and reading each thread's files is the costly part.
        tids, children = tasks_and_children(search.proc_root, listed)
        for pid in [pid for pid in children if pid not in listed]:
            candidates.setdefault(pid, "children-of-visible")
    else:
        # The probe answers for every thread too, and /proc lists none: each was one status read to find
        # it belongs to a listed process (a 4,000-thread job cost a quarter of a second). The task folders
        # of the listed processes that have threads say the same in one listing each; asked only when
        # that is fewer calls. A thread of no listed process is resolved as before.
        with_threads = [pid for pid in threaded if pid in listed]
        if with_threads and len(probed) >= len(with_threads):
            tids = thread_ids(search.proc_root, with_threads)
    for pid in [pid for pid in known_ppids if pid not in listed]:
        candidates.setdefault(pid, "parent-of-visible")
    newest = last_pid(search.proc_root)
    if newest:
        candidates.setdefault(newest, "last-pid")
    hidden = resolve_candidates(search, candidates, listed, tids)
    if hidden and search.delay > 0:
        time.sleep(search.delay)
        try:
            relisted = search.listing()
        except OSError:
            relisted = listed
        hidden = {pid: method for pid, method in hidden.items() if search.alive(pid) and pid not in relisted}
    return hidden, how


def resolve_candidates(search: HiddenSearch, candidates: dict[int, str], listed: set[int],
                       tids: set[int]) -> dict[int, str]:
    """Candidates that are not listed, not a thread of a listed process, and alive; a thread maps to its Tgid."""
    hidden: dict[int, str] = {}
    for pid, method in candidates.items():
        if pid <= 0 or pid in listed or pid in tids:
            continue
        tgid = read_tgid(search.proc_root, pid)
        if tgid is not None and tgid != pid:
            if tgid in listed:
                continue            # a thread of a visible process
            method, pid = f"thread-of-hidden ({method})", tgid
        if pid in hidden or pid in listed or not search.alive(pid):
            continue
        hidden[pid] = method
        if len(hidden) >= MAX_HIDDEN_REPORTED:
            break
    return hidden


def thread_ids(proc_root: str, pids: Iterable[int]) -> set[int]:
    """The TIDs in the task folders of `pids` (a process gone since has none), listed with getdents64 where
    the platform allows: a readdir hook could otherwise name a hidden process as a thread of a listed one."""
    tids: set[int] = set()
    for pid in pids:
        try:
            tids.update(int(t) for t in rawsys.list_any(os.path.join(proc_root, str(pid), "task")) if t.isdigit())
        except OSError:
            continue
    return tids


def tasks_and_children(proc_root: str, listed: set[int]) -> tuple[set[int], set[int]]:
    """TIDs of the listed processes, and the children of each of their threads (read as files, not readdir)."""
    tids: set[int] = set()
    children: set[int] = set()
    for pid in listed:
        task_dir = os.path.join(proc_root, str(pid), "task")
        try:
            threads = [int(t) for t in os.listdir(task_dir) if t.isdigit()]
        except OSError:
            continue
        tids.update(threads)
        for tid in threads:
            try:
                with open(os.path.join(task_dir, str(tid), "children"), "rb") as handle:
                    children.update(int(c) for c in handle.read(1 << 20).split() if c.isdigit())
            except OSError:
                continue
    return tids, children


def read_tgid(proc_root: str, pid: int) -> int | None:
    """The Tgid line of /proc/PID/status, which comes fourth, after a Name of at most 64 escaped characters:
    one short read, not the whole file split into a dict (a probe of every PID asks this of every thread)."""
    try:
        head = rawsys.read_any(os.path.join(proc_root, str(pid), "status"), TGID_BYTES)
    except OSError:
        return None
    start = head.find(b"\nTgid:")
    if start < 0:
        return None
    value = head[start + len(b"\nTgid:"):].split(b"\n", 1)[0].strip()
    return int(value) if value.isdigit() else None


def read_status(proc_root: str, pid: int) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = rawsys.read_any(os.path.join(proc_root, str(pid), "status"), 16384).decode("utf-8", "replace")
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key] = value.strip()
    return values


def add_hidden_processes(snapshot: Snapshot, options: Any, proc_root: str) -> Coverage:
    """Find hidden processes and add them to the snapshot (hidden=True).

    This step runs before the binaries, configs and libraries steps, so a hidden
    process's executable and config are examined like any other's."""
    search = getattr(options, "hidden_search", None) or HiddenSearch(proc_root=proc_root)
    ppids = {p.ppid for p in snapshot.processes if p.ppid}
    threaded = [p.pid for p in snapshot.processes if (p.num_threads or 0) > 1]
    try:
        hidden, how = find_hidden(search, ppids, threaded)
    except ListingUnavailable as exc:
        return coverage(CHECK_HIDDEN, CoverageStatus.ERROR, exc.args[0])
    known = {p.pid: p for p in snapshot.processes}
    for pid, method in sorted(hidden.items()):
        proc = known.get(pid) or read_hidden_process(pid, proc_root, snapshot.window_seconds)
        if proc is None:
            continue
        proc.hidden = True
        if pid not in known:
            snapshot.processes.append(proc)
        snapshot.stealth.hidden_pids.append(HiddenPid(pid=pid, name=proc.name, exe=proc.exe,
                                                      cmdline=list(proc.cmdline), method=method))
    return coverage(CHECK_HIDDEN, CoverageStatus.OK, how, inspected=len(hidden))


def read_hidden_process(pid: int, proc_root: str, window: float) -> ProcessInfo | None:
    """A hidden process read by direct /proc/PID access, with the same detail as a listed one where possible."""
    if proc_root == "/proc":
        try:
            return read_with_psutil(pid, window)
        except Exception:       # psutil errors, or it vanished: fall back to the plain reader
            pass
    status = read_status(proc_root, pid)
    if not status:
        return None
    proc = ProcessInfo(pid=pid, name=cap(status.get("Name", ""), 256))
    ppid = status.get("PPid", "")
    proc.ppid = int(ppid) if ppid.isdigit() else None
    uid = status.get("Uid", "").split()
    proc.uid = int(uid[0]) if uid and uid[0].isdigit() else None
    try:
        link = rawsys.readlink_any(os.path.join(proc_root, str(pid), "exe"))
        proc.exe_deleted = link.endswith(" (deleted)")
        proc.exe = link[: -len(" (deleted)")] if proc.exe_deleted else link
    except PermissionError:
        proc.denied.append("exe")
    except OSError:
        pass
    try:
        raw = rawsys.read_any(os.path.join(proc_root, str(pid), "cmdline"), 256 * 1024)
        proc.cmdline = [cap(a.decode("utf-8", "replace"), 4096) for a in raw.split(b"\0") if a][:256]
    except OSError:
        proc.denied.append("cmdline")
    try:
        proc.cwd = rawsys.readlink_any(os.path.join(proc_root, str(pid), "cwd"))
    except OSError:
        pass
    return proc


def read_with_psutil(pid: int, window: float) -> ProcessInfo | None:
    """psutil.Process(pid) opens /proc/PID directly (no listing), so it reads a hidden process fully."""
    import psutil

    from audit_agent.collect.processes import ATTRS, _DENIED, FirstReading, build_process
    raw = psutil.Process(pid).as_dict(ATTRS, ad_value=_DENIED)
    # Not in the start-of-window reading (the listing hid it): CPU is its lifetime average.
    first = FirstReading(started=time.monotonic() - max(window, 1e-3), cpu_seconds={})
    return build_process(raw, first, max(window, 1e-3), "/proc", psutil.Process(pid))
