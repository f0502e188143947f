"""The memory of suspect processes: miner strings decoded at run time, algorithm-shaped mappings, threads.

A miner that keeps its pool, wallet and algorithm names encrypted on disk has
to decode them to use them: they are in its heap while it runs. Only suspects
(audit_agent.collect.suspects) are read, and every read is bounded:
  * per process: PROCESS_BYTES (8 MiB) of its private readable memory (heap first, then
    anonymous mappings smallest first, then its stack and its own executable's
    mappings), and PROCESS_SECONDS (0.5 s);
  * per scan: TOTAL_BYTES (64 MiB) and TOTAL_SECONDS (3 s) over all suspects; the suspects left
    over are named in the coverage with why they were skipped.
Memory is read from /proc/PID/mem (root, or the same user under ptrace rules),
never with ptrace-stop, so the process is not paused. Strings are matched with
the pack's executable signature strings and, when yara-python is present, the
shipped YARA rules (the same engine as the executable scan).

The algorithm fingerprint needs no string at all: RandomX needs its 256 MiB
cache (light mode) or its 2080 MiB dataset (fast mode), and a 2 MiB scratchpad
per hashing thread (RANDOMX_CACHE_MAX_SIZE 268435456, RANDOMX_DATASET_MAX_SIZE
2181038080, RANDOMX_SCRATCHPAD_L3 2097152 in xmrig/src/crypto/randomx/
configuration.h; tevador/RandomX doc/dataset.md), and every CPU algorithm a
scratchpad per hashing thread whose size the algorithm fixes (detect/hashing.py:
2 MiB cn/0..cn/2 and rx/0, 1 MiB cn-lite, 4 MiB cn-heavy, 256 KiB cn-pico,
512 KiB / 1 MiB / 256 KiB argon2 chukwa / chukwav2 / wrkz, from xmrig's source);
miners ask for huge pages for all of them. Sizes and page use come from
/proc/PID/smaps; the kernel merges neighbouring mappings, so a cache followed by
scratchpads is recognised by size modulo 2 MiB; without huge pages, a scratchpad
size counts only when it repeats (once per thread). Threads come from
/proc/PID/task/*/stat.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any

from audit_agent.collect import linux_only
from audit_agent.collect.binaries import load_yara_rules, scan_ranges
from audit_agent.collect.processes import CLOCK_TICKS, split_stat
from audit_agent.collect.suspects import find_suspects
from audit_agent.collect.coverage import because, coverage, is_root
from audit_agent.detect.hashing import scratchpad_sizes
from audit_agent.rules.yara_files import SIGNATURE_RULE, yara_module
from audit_agent.model import (
    Coverage,
    CoverageStatus,
    MemoryRegion,
    MemoryScan,
    Snapshot,
)

CHECK = "memory"
PROCESS_BYTES = 8 << 20         # heap first: decoded strings sit in the first few MiB
PROCESS_SECONDS = 0.5
TOTAL_BYTES = 64 << 20
TOTAL_SECONDS = 3.0
MAX_SUSPECTS = 64
MAX_SMAPS_BYTES = 8 << 20
MAX_THREADS = 512
CHUNK = 1 << 20
# Memory is matched in windows of this size read straight into one buffer (the scan's peak memory), each
# starting with the last OVERLAP bytes of the one before: more than any pattern, so none is cut in two.
WINDOW = 2 << 20
OVERLAP = 4096
PAGE = 4096                     # zero pages are found a page at a time (a span starts on a page boundary)
ZERO_PAGE = bytes(PAGE)
MiB = 1 << 20
RX_CACHE = 268435456
RX_DATASET = 2181038080
SCRATCHPAD = 2 * MiB
SLACK = 64 * 1024               # allocator headers and alignment around one mapping
THREAD_BUSY_PERCENT = 20.0      # of one core over the thread's life
LOCKSTEP_SPREAD = 0.15          # busy threads within 15% of their mean: one job split N ways


def collect_memory(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """scanning the memory of suspect processes"""
    not_linux = linux_only(CHECK)
    if not_linux:
        return [not_linux]
    proc_root = getattr(options, "proc_root", "/proc")
    strings = list(getattr(options, "signature_strings", []) or [])
    try:        # the same set as the executable scan (the pack's own yara/*.yar too), compiled once for both
        yara_rules = load_yara_rules(strings, getattr(options, "yara_sources", None))
    except Exception:       # noqa: BLE001 - the executable scan reports a broken set; here the built-in search runs
        yara_rules = None
    encoded = [s.encode("utf-8") for s in strings]
    # Never the agent itself: its memory holds every signature by construction, and no miner can be in it.
    suspects = [(proc, why) for proc, why in find_suspects(snapshot) if proc.pid != os.getpid()]
    started = time.monotonic()
    budget = TOTAL_BYTES
    skipped: list[str] = []
    denied = 0
    for index, (proc, why) in enumerate(suspects):
        if index >= MAX_SUSPECTS or budget <= 0 or time.monotonic() - started >= TOTAL_SECONDS:
            skipped.append(str(proc.pid))
            continue
        scan = scan_process(proc.pid, why, proc_root, min(PROCESS_BYTES, budget), proc.exe, strings, encoded,
                            yara_rules)
        if scan.error.startswith("access denied"):
            denied += 1
        if scan.libraries is not None and not proc.libraries:
            proc.libraries = scan.libraries
        budget -= scan.record.scanned_bytes
        snapshot.memory.append(scan.record)
    return [memory_coverage(snapshot.memory, len(suspects), skipped, denied, time.monotonic() - started)]


def memory_coverage(scans: list[MemoryScan], suspects: int, skipped: list[str], denied: int,
                    seconds: float) -> Coverage:
    spent = because("memory_spent", n=len(scans), mib=f"{sum(s.scanned_bytes for s in scans) / MiB:.1f}",
                    seconds=f"{seconds:.2f}")
    cut = [s for s in scans if s.cut]
    problems = []
    if skipped:
        problems.append(because("memory_budget", n=len(skipped), pids=", ".join(skipped[:MAX_SUSPECTS])))
    if denied:
        problems.append(because("memory_denied_root" if is_root() else "memory_denied", n=denied))
    if cut:
        problems.append(because("memory_cut", n=len(cut), pid=cut[0].pid, why=cut[0].cut))
    if problems:
        return coverage(CHECK, CoverageStatus.PARTIAL, spent, *problems, inspected=len(scans) - denied, denied=denied)
    return coverage(CHECK, CoverageStatus.OK, spent if suspects else because("no_suspects"), inspected=len(scans))


class _Result:
    def __init__(self, record: MemoryScan) -> None:
        self.record = record
        self.libraries: list[str] | None = None

    @property
    def error(self) -> str:
        return self.record.error


def scan_process(pid: int, why: list[str], proc_root: str, limit: int, exe: str, strings: list[str],
                 encoded: list[bytes], yara_rules: Any) -> _Result:
    started = time.monotonic()
    result = _Result(MemoryScan(pid=pid, why=list(why)))
    record = result.record
    base = os.path.join(proc_root, str(pid))
    try:
        with open(os.path.join(base, "smaps"), "rb") as handle:
            smaps = handle.read(MAX_SMAPS_BYTES)
    except PermissionError:
        record.error = "access denied (smaps)"
        return result
    except OSError as exc:
        record.error = f"vanished or unreadable: {exc.strerror or exc}"
        return result
    mappings = parse_smaps(smaps)
    result.libraries = mapped_library_names(mappings)
    busy, lockstep = thread_shape(base)
    record.busy_threads, record.lockstep = busy, lockstep
    record.regions = algorithm_regions(mappings, max(busy, 1))
    matcher = WindowMatcher(strings, encoded, yara_rules)
    record.scanned_bytes, record.cut = read_memory(base, scan_order(mappings, exe), limit, started, matcher)
    if record.cut.startswith(("access denied", "unreadable")):
        record.error, record.cut = record.cut, ""
    elif not record.scanned_bytes:
        record.error = "no readable private memory"
    else:
        record.matched_strings = matcher.result()
    record.seconds = round(time.monotonic() - started, 3)
    return result


# What parse_smaps takes from smaps: each mapping's first line and three of its ~20 counters, in one regex
# pass. A process with thousands of threads has thousands of mappings (a stack and a guard each): splitting
# every line in Python cost 0.25 s for 8,000 mappings. A line is what ends at a newline, the only character
# the kernel escapes in a mapped file's name (a \r in a name cannot start a mapping of its own).
SMAPS_FIELDS = re.compile(
    rb"^(?:(?P<start>[0-9A-Fa-f]+)-(?P<end>[0-9A-Fa-f]+)[^\S\n]+(?P<perms>\S+)(?:[^\S\n]+\S+){3}(?P<path>[^\n]*)"
    rb"|KernelPageSize:[^\S\n]+(?P<page>\d+)(?![^\s])"
    rb"|AnonHugePages:[^\S\n]+(?P<huge>\d+)(?![^\s])"
    rb"|VmFlags:(?P<flags>(?![^\s])[^\n]*))",
    re.MULTILINE)


def parse_smaps(text: bytes) -> list[dict[str, Any]]:
    """Each mapping: start, end, perms, path, kernel_page_kb, anon_huge_kb, flags."""
    mappings: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for found in SMAPS_FIELDS.finditer(text):
        start, end, perms, path, page, huge_kb, flags = found.groups()
        if start is not None:
            current = {"start": int(start, 16), "end": int(end, 16), "perms": perms.decode("ascii", "replace"),
                       "path": path.decode("utf-8", "replace").strip(), "kernel_page_kb": 4, "anon_huge_kb": 0,
                       "flags": ""}
            mappings.append(current)
        elif current is None:
            continue
        elif page is not None:
            current["kernel_page_kb"] = int(page)
        elif huge_kb is not None:
            current["anon_huge_kb"] = int(huge_kb)
        else:
            current["flags"] = b" ".join(flags.split()).decode("ascii", "replace")
    return mappings


def mapped_library_names(mappings: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for mapping in mappings:
        path = mapping["path"]
        if ".so" in path:
            names.setdefault(path.rsplit("/", 1)[-1].removesuffix(" (deleted)")[:200], None)
    return list(names)[:300]


def huge(mapping: dict[str, Any]) -> bool:
    """Backed by, or asking for, huge pages: hugetlbfs (ht / 2 MiB kernel pages), THP madvise (hg), or THP in use."""
    flags = mapping["flags"].split()
    return mapping["kernel_page_kb"] >= 2048 or "ht" in flags or "hg" in flags or mapping["anon_huge_kb"] > 0


def algorithm_regions(mappings: list[dict[str, Any]], threads: int) -> list[MemoryRegion]:
    """Anonymous read-write mappings shaped like a RandomX cache or dataset, or hashing scratchpads: whole
    2 MiB multiples asking for huge pages (possibly merged with their neighbours), or mappings of one
    scratchpad size of the table in detect/hashing.py (CryptoNight variants, RandomX variants, Argon2)
    repeated once per hashing thread. Thread stacks (a guard page right below) and malloc arenas (their
    reserved, inaccessible rest right above) are never scratchpads."""
    found = []
    extra_room = SCRATCHPAD * (threads + 1) + SLACK
    table = scratchpad_sizes()
    raw: dict[int, list[bool]] = {}             # size -> huge-page use of each candidate mapping that size
    ordered = sorted(mappings, key=lambda m: m["start"])
    for index, mapping in enumerate(ordered):
        if mapping["path"] not in ("", "[heap]") or not mapping["perms"].startswith("rw"):
            continue
        size = mapping["end"] - mapping["start"]
        for shape, base in (("randomx-dataset", RX_DATASET), ("randomx-cache", RX_CACHE)):
            extra = size - base
            if 0 <= extra <= extra_room and extra % SCRATCHPAD <= SLACK:
                found.append(MemoryRegion(size, shape, huge(mapping)))
                break
        else:
            if mapping["path"] or "gd" in mapping["flags"].split() or guarded(ordered, index):
                continue                # the heap, a thread's stack, a malloc arena: never a scratchpad
            if scratchpad_unit(size, 1, threads, table)[0]:
                raw.setdefault(size, []).append(huge(mapping))
            elif SCRATCHPAD <= size <= extra_room and size % SCRATCHPAD <= SLACK and huge(mapping):
                found.append(MemoryRegion(size, "scratchpad", True))       # neighbours merged by the kernel
    groups: dict[int, list[bool]] = {}          # one scratchpad's size -> huge-page use of each
    separate: dict[int, int] = {}               # ... and how many separate mappings hold them
    for size, pages in raw.items():
        unit, count = scratchpad_unit(size, len(pages), threads, table)
        groups.setdefault(unit, []).extend(pages * count)
        separate[unit] = separate.get(unit, 0) + len(pages)
    for size, pages in groups.items():
        if any(pages) or separate[size] >= 2:   # huge pages asked for, or the same size mapped once per thread
            found.append(MemoryRegion(size, "scratchpad", any(pages), count=len(pages)))
    return found


def scratchpad_unit(size: int, seen: int, threads: int, table: dict[int, list[str]]) -> tuple[int, int]:
    """(one scratchpad's size, how many each mapping holds) when `seen` mappings of `size` are scratchpads,
    or up to threads + 1 of them merged by the kernel into each; (0, 0) when not. One mapping where
    several threads hash is read as all their scratchpads merged when that splits into a known size."""
    if seen == 1 and threads >= 2 and size % threads == 0 and size // threads in table:
        return size // threads, threads
    if size in table:
        return size, 1
    for count in range(2, threads + 2):
        if size % count == 0 and size // count in table:
            return size // count, count
    return 0, 0


def guarded(ordered: list[dict[str, Any]], index: int) -> bool:
    """An inaccessible mapping right below (a thread stack's guard) or a large one right above (the reserved
    rest of a glibc malloc arena or a JVM heap): the mapping is a stack or an arena, not a scratchpad."""
    mapping = ordered[index]
    below = ordered[index - 1] if index > 0 else None
    above = ordered[index + 1] if index + 1 < len(ordered) else None
    if below is not None and below["end"] == mapping["start"] and below["perms"].startswith("---"):
        return True
    return (above is not None and above["start"] == mapping["end"] and above["perms"].startswith("---")
            and above["end"] - above["start"] >= MiB)


def thread_shape(base: str) -> tuple[int, bool]:
    """(threads that used >= THREAD_BUSY_PERCENT of a core over their life, whether they did so in lockstep)."""
    try:
        tasks = os.listdir(os.path.join(base, "task"))[:MAX_THREADS]
        with open("/proc/uptime", "rb") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0, False
    shares = []
    for task in tasks:
        try:
            with open(os.path.join(base, "task", task, "stat"), "rb") as handle:
                _, fields = split_stat(handle.read(4096))
            used = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            age = uptime - int(fields[19]) / CLOCK_TICKS
        except (OSError, ValueError, IndexError):
            continue
        if age >= 1.0:
            share = 100.0 * used / age
            if share >= THREAD_BUSY_PERCENT:
                shares.append(share)
    if len(shares) < 2:
        return len(shares), False
    mean = sum(shares) / len(shares)
    return len(shares), all(abs(share - mean) <= LOCKSTEP_SPREAD * mean for share in shares)


def scan_order(mappings: list[dict[str, Any]], exe: str) -> list[tuple[int, int]]:
    """Readable private mappings worth reading: heap, anonymous (smallest first), stack, its own executable."""
    exe_path = exe.removesuffix(" (deleted)")
    heap, anonymous, rest = [], [], []
    for mapping in mappings:
        perms, path = mapping["perms"], mapping["path"]
        if not perms.startswith("r") or perms[3:4] != "p":
            continue
        span = (mapping["start"], mapping["end"])
        if path == "[heap]":
            heap.append(span)
        elif path == "":
            anonymous.append(span)
        elif path == "[stack]" or (exe_path and path.removesuffix(" (deleted)") == exe_path):
            rest.append(span)
    anonymous.sort(key=lambda span: span[1] - span[0])
    return heap + anonymous + rest


def read_memory(base: str, spans: list[tuple[int, int]], limit: int, started: float,
                matcher: "WindowMatcher") -> tuple[int, str]:
    """Feed up to `limit` bytes of the spans to `matcher`, within PROCESS_SECONDS of reading (matching time
    does not count: it ran after the reading when memory was read whole); (bytes read, why it stopped early
    or ""). The bytes are those of one buffer holding each span's pieces as they are in memory with a NUL
    after each span, fed in windows that overlap so a string across a window's edge is still seen whole."""
    try:
        fd = os.open(os.path.join(base, "mem"), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except PermissionError:
        return 0, "access denied (mem)"
    except OSError as exc:
        return 0, f"unreadable: {exc.strerror or exc}"
    windows = _Windows(matcher)
    try:
        for start, end in spans:
            cut = _read_span(fd, start, end, limit, started, windows)
            if cut:
                return windows.total, cut
            windows.append_nul()
    finally:
        os.close(fd)
        windows.flush()
    return windows.total, ""


def _read_span(fd: int, start: int, end: int, limit: int, started: float, windows: "_Windows") -> str:
    """One span into the windows; why the scan must stop (a bound) or "" to go on with the next span."""
    at = start
    while at < end:
        if windows.total >= limit:
            return f"byte bound {limit / MiB:.0f} MiB reached"
        if time.monotonic() - started - windows.matcher.seconds >= PROCESS_SECONDS:
            return f"time bound {PROCESS_SECONDS} s reached"
        try:
            got = windows.read(fd, min(CHUNK, end - at, limit - windows.total), at)
        except OSError:
            return ""           # unmapped meanwhile, or a guard page: next mapping
        if not got:
            return ""
        at += got
    return ""


class _Windows:
    """A fixed buffer of WINDOW + overlap bytes that /proc/PID/mem is read into directly: full, it is matched
    and its last `overlap` bytes move to the front, so memory stays bounded whatever the byte bound.

    A run of zero pages longer than `overlap` is kept as `overlap` zeros, so YARA is not run over untouched
    memory (a quarter to three quarters of the pages of the suspects on the bench host). A pattern (at most
    `overlap` bytes, the windows' own premise) that matches where such a run begins or ends still sees as
    many zeros as it can hold, and none could span the run either way: the matches are those of the bytes
    as read."""

    def __init__(self, matcher: "WindowMatcher") -> None:
        self.matcher = matcher
        self.overlap = matcher.overlap
        self.buffer = bytearray(WINDOW + self.overlap)
        self.view = memoryview(self.buffer)
        self.filled = 0             # bytes in the buffer
        self.fresh = 0              # of those, not yet matched
        self.total = 0              # bytes read (and NULs between spans) since the start
        self.zeros = 0              # zeros kept of the run of zero blocks read last (at most `overlap`)

    def read(self, fd: int, size: int, at: int) -> int:
        if self.filled == len(self.buffer):
            self._slide()
        start = self.filled
        got = os.preadv(fd, [self.view[start:start + min(size, len(self.buffer) - start)]], at)
        kept = self._squeeze(start, got)
        self.filled += kept
        self.fresh += kept
        self.total += got
        return got

    def _squeeze(self, start: int, got: int) -> int:
        """Keep at most `overlap` zeros of each run of all-zero PAGE blocks in buffer[start:start + got] (blocks
        as read: a span starts on a page); the number of bytes kept, moved down to follow each other."""
        end = start + got
        write = start           # where the next kept byte goes
        kept_from = start       # the bytes not yet moved down: buffer[kept_from:at]
        at = start
        while at < end:
            size = min(PAGE, end - at)
            if not self.buffer.startswith(ZERO_PAGE if size == PAGE else bytes(size), at, at + size):
                self.zeros = 0
                at += size
                continue
            keep = max(0, min(size, self.overlap - self.zeros))
            self.zeros += keep
            write = self._move(kept_from, at + keep, write)
            at += size
            kept_from = at
        return self._move(kept_from, end, write) - start

    def _move(self, begin: int, end: int, write: int) -> int:
        """buffer[begin:end] moved down to `write`; where the next byte goes after it."""
        if write != begin and end > begin:
            self.buffer[write:write + end - begin] = bytes(self.view[begin:end])    # a copy: they may overlap
        return write + max(0, end - begin)

    def append_nul(self) -> None:
        if self.filled == len(self.buffer):
            self._slide()
        self.buffer[self.filled] = 0
        self.filled += 1
        self.fresh += 1
        self.total += 1
        self.zeros = 0

    def _slide(self) -> None:
        self.flush()
        keep = min(self.overlap, self.filled)
        self.buffer[:keep] = self.buffer[self.filled - keep:self.filled]
        self.filled = keep

    def flush(self) -> None:
        """Match what the buffer holds, unless all of it was matched already (only the overlap is left)."""
        if self.fresh:
            self.matcher.feed(self.buffer, self.filled)
            self.fresh = 0


class WindowMatcher:
    """Pack strings (and yara:<rule> names) found in memory fed window by window, as if matched in one piece.

    A string is found when it lies whole in one window: windows overlap by at least the longest pattern. A
    YARA rule whose strings lie in different windows (`2 of them`, one in each) is checked again at the end
    on the strings the windows found for it, so it matches as it would over the whole buffer."""

    def __init__(self, strings: list[str], encoded: list[bytes], yara_rules: Any) -> None:
        self.strings, self.encoded, self.yara_rules = strings, encoded, yara_rules
        self.overlap = max([OVERLAP, *(len(e) for e in encoded)])
        self.found: set[int] = set()            # indices of pack strings
        self.rules: dict[str, bool] = {}        # shipped YARA rule -> matched, in the set's order
        self.partial: dict[bytes, None] = {}    # strings of not (yet) matched rules, as found
        self.windows = 0
        self.seconds = 0.0                      # spent matching

    def feed(self, buffer: bytearray, size: int) -> None:
        began = time.monotonic()
        self.windows += 1
        if self.yara_rules is not None:
            try:
                self._yara(memoryview(buffer)[:size])
            except Exception:       # noqa: BLE001 - a YARA failure falls back to the built-in search from here on
                self.yara_rules = None
        if self.yara_rules is None:
            self._builtin(buffer, size)
        self.seconds += time.monotonic() - began

    def _builtin(self, buffer: bytearray, size: int) -> None:
        left = [i for i in range(len(self.encoded)) if i not in self.found]
        hits = scan_ranges(buffer, [(0, size)], [self.strings[i] for i in left], [self.encoded[i] for i in left])
        self.found.update(left[i] for i in range(len(left)) if self.strings[left[i]] in hits)

    def _yara(self, data: Any) -> None:
        def seen(rule: dict[str, Any]) -> int:
            name = rule["rule"]
            if name == SIGNATURE_RULE:
                self.found.update(int(s.identifier.lstrip("$s")) for s in rule["strings"] if s.instances)
            elif rule["matches"] or not self.rules.get(name, False):
                self.rules[name] = self.rules.get(name, False) or bool(rule["matches"])
                if not self.rules[name]:
                    for item in rule["strings"]:
                        for instance in item.instances:
                            self.partial.setdefault(bytes(instance.matched_data), None)
            return int(yara.CALLBACK_CONTINUE)
        yara = yara_module()
        self.yara_rules.match(data=data, timeout=60, fast=True, callback=seen, which_callbacks=yara.CALLBACK_ALL)

    def result(self) -> list[str]:
        """What was found, pack strings first (in pack order), then the shipped rules that matched."""
        if self.yara_rules is not None and self.windows > 1 and self.partial and not all(self.rules.values()):
            joined = bytearray(b"\0".join(self.partial))      # the strings of rules split across windows
            self.feed(joined, len(joined))
        strings = [self.strings[i] for i in sorted(self.found) if i < len(self.strings)]
        return strings + [f"yara:{name}" for name, matched in self.rules.items() if matched]
