"""Executable content signatures: scan each distinct executable of a running process once.

Each executable is opened through /proc/PID/exe, so a binary deleted after it
started is still read, and identified by (device, inode, size, mtime): many
processes sharing one binary cost one scan, and the in-process cache means a
watch-mode cycle rescans nothing that did not change.

Search strategy (measured on this project's dev box, 2 cores, 248 MB of real
ELF files, 55 signature strings; `grep -c -a -F -f` does ~500 MB/s there):
  * one compiled bytes regex of escaped literals        ~70 MB/s
  * the same regex built as a prefix trie               ~99 MB/s
  * `mmap.find` once per string over the whole file     ~72 MB/s (each pass
    runs at 2-6 GB/s in C, but it is one pass per string)
  * `mmap.find` per string over only the sections that can hold text
    (ELF code, relocations, symbol tables and unwind tables skipped)
                                                        ~135 MB/s of file
  * the same, with strings grouped under shared 4-6 byte keys (one pass per
    key, members only where the key occurs)           no gain: short keys
    ("miner", "hash", "main.") occur in big binaries and search slower
With the default pack (92 strings) the chosen way does ~45 MB/s on those
files; that cost is paid once per distinct executable per agent process.
Python's `re` has no multi-literal (Aho-Corasick) search, so it tries every
position; `find` uses memchr/Horspool-style skips in C.  Skipping machine
code is safe for text signatures: string literals live in .rodata/.data, and
names in .dynstr/.strtab; files without a usable section table (packed,
scripts, data) are scanned whole.  With yara-python installed (the `yara`
extra) the same strings go through YARA's Aho-Corasick scan in one pass
instead, together with the shipped rules/yara/*.yar: see bench/exe_scan.py.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import stat
import struct
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

from msgspec import Struct, field

from audit_agent import __version__
from audit_agent.collect import deadline, scan_cache
from audit_agent.collect.coverage import because, coverage, is_root
from audit_agent.collect.proc_facts import ProcFacts, exe_files
from audit_agent.model import BinaryScan, Coverage, CoverageStatus, ProcessInfo, Snapshot
from audit_agent.rules.yara_files import SIGNATURE_RULE, signature_rule, yara_module

CHECK = "binaries"
MAX_SCAN_BYTES = 64 * 1024 * 1024       # per executable: the head and the tail of a bigger file (strings
TAIL_SCAN_BYTES = 16 * 1024 * 1024      # appended after padding past a fixed cut are still seen)
SCAN_TIMEOUT = 30.0                     # seconds for one executable (64 MB through YARA); longer: its mount stalls
HASH_MAX_BYTES = 32 * 1024 * 1024       # sha256 only where cheap (~20 ms at this size)
ON_LINUX = sys.platform.startswith("linux")
MAX_CACHED = 4096                       # scan results kept between watch-mode cycles (least recently used go)
VANISHED = "vanished while being read"

# ELF sections that never hold text signatures: machine code (SHF_EXECINSTR), relocation and
# symbol-entry tables (the names live in .strtab/.dynstr, which are scanned), unwind tables.
SHF_EXECINSTR = 0x4
SKIP_SECTION_TYPES = {2, 4, 8, 9, 11}   # SYMTAB, RELA, NOBITS, REL, DYNSYM
SKIP_SECTION_NAMES = {b".eh_frame", b".eh_frame_hdr", b".gcc_except_table", b".data.rel.ro", b".got", b".got.plt"}


class _Cached(Struct):
    sha256: str
    size: int
    scanned: int
    matched: list[str]
    engine: str
    error: str = ""


class _Target(Struct):
    """One distinct executable and the pids running it."""
    path: str
    open_path: str
    key: tuple[int, int, int, int, int]       # device, inode, size, mtime_ns, ctime_ns
    size: int
    pids: list[int] = field(default_factory=list)


# (dev, inode, size, mtime_ns, signature set id) -> scan result, least recently used first. After each
# collection only the executables seen in it are kept (at most MAX_CACHED), so watch mode on a host that
# runs ever-new binaries (builds, CI) does not grow without bound.
_CACHE: OrderedDict[tuple[Any, ...], _Cached] = OrderedDict()


_CHANGED: set[tuple[Any, ...]] = set()          # entries scanned in this process, not yet saved
_LOADED_FROM: set[str] = set()                   # state folders whose saved entries are already in _CACHE


def clear_cache() -> None:
    _CACHE.clear()
    _CHANGED.clear()
    _LOADED_FROM.clear()


def cache_folder(options: Any) -> Path | None:
    """Where scan results persist between runs: the options' state folder, else the agent's state directory."""
    folder = getattr(options, "state_dir", None)
    if folder is None:
        from audit_agent.rules.active import state_dir
        folder = state_dir()
    return Path(folder) if folder else None


def remember_saved(folder: Path | None) -> None:
    """Bring the results saved by earlier runs into this process's cache, once per folder."""
    if folder is None or str(folder) in _LOADED_FROM:
        return
    _LOADED_FROM.add(str(folder))
    for key, value in scan_cache.load(folder).items():
        parts = key.split(":")
        if len(parts) != 6 or not all(p.isdigit() for p in parts[:5]):
            continue
        cache_key = (*(int(p) for p in parts[:5]), parts[5])
        _CACHE.setdefault(cache_key, _Cached(value["sha256"], value["size"], value["scanned"],
                                             list(value["matched"]), value["engine"]))


def save_cache(folder: Path | None) -> None:
    """Persist what this process scanned (only results keyed by a stable signature digest)."""
    if folder is None or not _CHANGED:
        return
    entries = {scan_cache.entry_key(key[:5], key[5]): {"sha256": r.sha256, "size": r.size, "scanned": r.scanned,
                                                      "matched": r.matched, "engine": r.engine}
               for key, r in _CACHE.items() if len(key) == 6 and isinstance(key[5], str) and not r.error}
    if scan_cache.save(folder, entries):
        _CHANGED.clear()


def prune_cache(seen: set[tuple[Any, ...]]) -> None:
    """Keep only the entries used in the collection that just ran, and at most MAX_CACHED of them."""
    for key in [key for key in _CACHE if key not in seen]:
        del _CACHE[key]
    while len(_CACHE) > MAX_CACHED:
        _CACHE.popitem(last=False)


def collect_binaries(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """scanning executables for miner signatures"""
    strings = list(getattr(options, "signature_strings", []) or [])
    yara_rules = LazyYara(strings, getattr(options, "yara_sources", None) or {})
    if not strings and yara_rules.compiled() is None:
        return [coverage(CHECK, CoverageStatus.SKIPPED, because("no_signatures"))]
    pids = [p.pid for p in snapshot.processes]
    seen: set[tuple[Any, ...]] = set()
    folder = cache_folder(options)
    remember_saved(folder)
    scans, inspected, denied = scan_pids(pids, snapshot, options, strings, yara_rules, seen)
    if getattr(options, "carry", None) is None:     # a fast watch cycle sees only new processes' files
        prune_cache(seen)
    save_cache(folder)
    snapshot.binaries.extend(scans)
    failed = [scan for scan in scans if scan.error and not scan.error.startswith("access denied")
              and scan.error != VANISHED]
    return [binaries_coverage(inspected, denied, failed)]


def binaries_coverage(inspected: int, denied: int, failed: list[BinaryScan] | None = None) -> Coverage:
    """ok, or partial with how many executables were denied or could not be scanned, and why."""
    problems = []
    if denied:
        problems.append(because("executables_denied_root" if is_root() else "executables_denied", n=denied))
    if failed:
        problems.append(because("executables_failed", n=len(failed)))
    if problems:
        return coverage(CHECK, CoverageStatus.PARTIAL, *problems, inspected=inspected, denied=denied,
                        unreadable=[f"{scan.path}: {scan.error}" for scan in failed or []])
    return coverage(CHECK, CoverageStatus.OK, inspected=inspected)


def scan_pids(pids: Iterable[int], snapshot: Snapshot, options: Any, strings: list[str], yara_rules: Any = None,
              seen: set[tuple[Any, ...]] | None = None) -> tuple[list[BinaryScan], int, int]:
    """Scan the executables of `pids` (each distinct file once). Returns (scans, inspected, denied).

    `seen` collects the cache keys used, for prune_cache."""
    proc_root = getattr(options, "proc_root", "/proc")
    by_pid = {p.pid: p for p in snapshot.processes}
    targets: dict[tuple[int, int, int, int, int], _Target] = {}
    denied = 0
    if ON_LINUX:
        targets, denied = group_by_file(list(pids), by_pid, proc_root, getattr(options, "proc_facts", None))
    else:
        for pid in pids:
            proc = by_pid.get(pid)
            target, was_denied = locate(pid, proc.exe if proc else "", proc_root)
            denied += was_denied
            if target is not None:
                targets.setdefault(target.key, target).pids.append(pid)
    signature_id = (yara_rules.digest if isinstance(yara_rules, LazyYara) else
                    (tuple(strings), id(yara_rules) if yara_rules is not None else None))
    encoded = [s.encode("utf-8") for s in strings]
    scans = []
    for target in targets.values():
        if seen is not None:
            seen.add((*target.key, signature_id))
        result = scan_target(target, signature_id, strings, encoded, yara_rules)
        if result.error.startswith("access denied"):
            denied += 1
        scans.append(BinaryScan(path=target.path, pids=sorted(target.pids), sha256=result.sha256,
                                size_bytes=target.size, scanned_bytes=result.scanned,
                                matched_strings=list(result.matched), engine=result.engine, error=result.error))
    return scans, len(targets), denied


def group_by_file(pids: list[int], by_pid: dict[int, ProcessInfo], proc_root: str,
                  facts: ProcFacts | None) -> tuple[dict[tuple[int, int, int, int, int], _Target], int]:
    """The processes grouped by the file each runs (one stat of /proc/PID/exe each, shared with the packing
    check: proc_facts.exe_files), named by the first one's path; and how many were denied. What locate()
    finds for each process, without a path, a target and an exception built for each."""
    exes = exe_files(facts, pids, proc_root)
    targets: dict[tuple[int, int, int, int, int], _Target] = {}
    denied = 0
    for pid in pids:
        proc = by_pid.get(pid)
        path = proc.exe if proc else ""
        if not path:            # not read by the process reader (denied, a kernel thread): its link, as locate()
            try:
                link = os.readlink(os.path.join(proc_root, str(pid), "exe"))
            except PermissionError:
                denied += 1
                continue
            except OSError:
                continue
            path = link[: -len(" (deleted)")] if link.endswith(" (deleted)") else link
        exe = exes.get(pid)
        if exe is None or not exe.regular:
            denied += exe is not None and exe.denied
            continue
        target = targets.get(exe.key)
        if target is None:
            target = targets[exe.key] = _Target(path=path, open_path=os.path.join(proc_root, str(pid), "exe"),
                                                key=exe.key, size=exe.key[2])
        target.pids.append(pid)
    return targets, denied


def locate(pid: int, known_exe: str, proc_root: str) -> tuple[_Target | None, int]:
    """The executable of `pid` and its identity; (None, 1) when access is denied, (None, 0) when there is none."""
    if ON_LINUX:
        open_path = os.path.join(proc_root, str(pid), "exe")
        if known_exe:               # the process reader read the link already: stat() below checks it still holds
            path = known_exe
        else:
            try:
                link = os.readlink(open_path)
            except PermissionError:
                return None, 1
            except OSError:
                return None, 0          # kernel thread (no exe) or the process is gone
            path = link[: -len(" (deleted)")] if link.endswith(" (deleted)") else link
    else:
        if not known_exe:
            return None, 0
        open_path = path = known_exe
    try:
        # follows /proc/PID/exe to the file itself, deleted or not; on a stalled (FUSE) mount it times out
        info = deadline.stat_path(open_path, follow_symlinks=True)
    except PermissionError:
        return None, 1
    except OSError:
        return None, 0
    if not stat.S_ISREG(info.st_mode):
        return None, 0
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    return _Target(path=path or known_exe, open_path=open_path, key=key, size=info.st_size), 0


def scan_target(target: _Target, signature_id: Any, strings: list[str], encoded: list[bytes],
                yara_rules: Any) -> _Cached:
    cache_key = (*target.key, signature_id)
    cached = _CACHE.get(cache_key)
    if cached is not None:
        _CACHE.move_to_end(cache_key)
        return cached
    if isinstance(yara_rules, LazyYara):            # compiled only now that there is something new to scan
        yara_rules = yara_rules.compiled()
    try:
        result = deadline.call(scan_file, target.open_path, strings, encoded, yara_rules, path=target.open_path,
                               timeout=SCAN_TIMEOUT)
    except PermissionError:
        return _Cached("", target.size, 0, [], "builtin", "access denied")
    except (FileNotFoundError, ProcessLookupError):
        return _Cached("", target.size, 0, [], "builtin", VANISHED)
    except OSError as exc:
        # unreadable right now: not cached, the next cycle tries again
        return _Cached("", target.size, 0, [], "builtin", f"unreadable: {exc.strerror or exc}")
    if not result.error:            # a failed YARA scan is tried again next cycle
        _CACHE[cache_key] = result
        _CHANGED.add(cache_key)
    return result


def scan_file(path: str, strings: list[str], encoded: list[bytes], yara_rules: Any = None) -> _Cached:
    """Map the file (bounded) and look for the signature strings; optionally also run YARA."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return _Cached("", size, 0, [], "builtin")
        head = size if size <= MAX_SCAN_BYTES else MAX_SCAN_BYTES - TAIL_SCAN_BYTES
        with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as data:
            error = ""
            matched = None
            if yara_rules is not None:      # one Aho-Corasick pass in C for every string and shipped rule
                # A whole file YARA maps itself; an oversized one is cut to its head and tail (one copy).
                target = {"filepath": path} if size == head else {"data": data[:head] + data[size - TAIL_SCAN_BYTES:]}
                try:
                    matched, engine, scanned = yara_matches(yara_rules, target, strings), "yara", min(size, MAX_SCAN_BYTES)
                except Exception as exc:    # yara.Error, yara.TimeoutError: not "scanned and clean"
                    error = (f"YARA scan failed ({type(exc).__name__}: {str(exc)[:200]}); "
                             "only the built-in string search ran")
            if matched is None:
                ranges = content_ranges(data, head)
                if head < size:
                    ranges.append((size - TAIL_SCAN_BYTES, size))
                matched = scan_ranges(data, ranges, strings, encoded)
                scanned, engine = sum(end - start for start, end in ranges), "builtin"
            # The hash is evidence for what matched; hashing every clean binary would double the cost.
            digest = hashlib.sha256(data).hexdigest() if matched and size <= HASH_MAX_BYTES else ""
    return _Cached(digest, size, scanned, matched, engine, error)


def scan_ranges(data: Any, ranges: list[tuple[int, int]], strings: list[str], encoded: list[bytes]) -> list[str]:
    """Strings (in pack order) found in any of the byte ranges.

    One C-speed `find` per string and range (see the module docstring for the
    measurements behind this choice); a string contained in one already found
    is known present without another pass.
    """
    found: dict[int, None] = {}
    found_bytes: list[bytes] = []
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))    # long first: they imply short ones
    for index in order:
        needle = encoded[index]
        if not needle:
            continue
        if any(needle in hit for hit in found_bytes):
            found[index] = None
            continue
        for start, end in ranges:
            if end - start >= len(needle) and data.find(needle, start, end) != -1:
                found[index] = None
                found_bytes.append(needle)
                break
    return [strings[i] for i in sorted(found)]


def content_ranges(data: Any, limit: int) -> list[tuple[int, int]]:
    """The byte ranges worth scanning: all of [0, limit) minus ELF sections that cannot hold text."""
    skipped = sorted(elf_skip_ranges(data, limit))
    ranges = []
    position = 0
    for start, end in skipped:
        if start > position:
            ranges.append((position, start))
        position = max(position, end)
    if position < limit:
        ranges.append((position, limit))
    return ranges or [(0, limit)]


def elf_skip_ranges(data: Any, limit: int) -> list[tuple[int, int]]:
    """Offsets of code/relocation/symbol/unwind sections of an ELF file; [] for anything else or a bad header."""
    if limit < 64 or data[:4] != b"\x7fELF":
        return []
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    try:
        if is64:
            shoff, = struct.unpack_from(endian + "Q", data, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x3A)
            layout, want = endian + "IIQQQQ", 40
        else:
            shoff, = struct.unpack_from(endian + "I", data, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x2E)
            layout, want = endian + "IIIIII", 24
        if shnum == 0 or shnum > 4096 or shentsize < want or shoff + shnum * shentsize > limit:
            return []
        headers = [struct.unpack_from(layout, data, shoff + i * shentsize) for i in range(shnum)]
        names_offset = headers[shstrndx][4] if shstrndx < shnum else 0
        skip = []
        for name_index, sh_type, flags, _addr, offset, size in headers:
            if size == 0 or offset >= limit:
                continue
            name = section_name(data, names_offset + name_index, limit) if names_offset else b""
            if flags & SHF_EXECINSTR or sh_type in SKIP_SECTION_TYPES or name in SKIP_SECTION_NAMES:
                if sh_type != 8:        # NOBITS occupies no file bytes
                    skip.append((offset, min(offset + size, limit)))
        return skip
    except (struct.error, IndexError, ValueError):
        return []


def section_name(data: Any, offset: int, limit: int) -> bytes:
    if offset >= limit:
        return b""
    end = data.find(b"\0", offset, min(offset + 64, limit))
    return bytes(data[offset:end]) if end != -1 else b""


# ------------------------------------------------------------------ yara-python

_YARA_CACHE: dict[tuple[tuple[str, ...], tuple[tuple[str, int], ...]], Any] = {}


class LazyYara:
    """The YARA rules for a scan, compiled only when a file is not already in the cache.

    `digest` names the signatures (strings and rule sources) stably across runs, so saved
    results are reused only for the same signatures."""

    def __init__(self, strings: list[str], pack_sources: dict[str, str] | None = None) -> None:
        self.strings = strings
        self.pack_sources = pack_sources or {}
        self.sources = yara_sources(strings, self.pack_sources)
        digest = hashlib.sha256()
        for name, text in sorted(self.sources.items()):
            digest.update(name.encode() + b"\0" + text.encode("utf-8", "backslashreplace") + b"\0")
        digest.update("\0".join(strings).encode("utf-8", "backslashreplace"))
        # How files are scanned belongs to the key too: another agent version may read more of a file.
        digest.update(f"\0{__version__}\0{MAX_SCAN_BYTES}".encode())
        self.digest = digest.hexdigest()[:32]
        self._compiled: Any = _UNSET

    def compiled(self) -> Any:
        if self._compiled is _UNSET:
            self._compiled = load_yara_rules(self.strings, self.pack_sources)
        return self._compiled


_UNSET = object()


def yara_sources(strings: list[str], pack_sources: dict[str, str] | None = None) -> dict[str, str]:
    """The YARA sources a scan would compile ({} without yara-python): the active pack's yara/*.yar and
    the signature rule."""
    if yara_module() is None:
        return {}
    sources = dict(pack_sources or {})
    if strings:
        sources["signatures"] = signature_rule(strings)
    return sources


def load_yara_rules(strings: list[str], sources: dict[str, str] | None = None) -> Any:
    """YARA rules when yara-python is importable: the pack's signature strings as one generated rule
    (so matching means exactly what the built-in scanner means) plus the active pack's yara/*.yar
    (`sources`, read and checked by the pack loader). None without yara-python. A set that does not
    compile raises: the pack loader has already refused a broken file, and a silent fall-back would
    hide that the pack's YARA rules are not in use."""
    from audit_agent.collect.yara_cache import KEEP, cached_rules
    from audit_agent.rules.active import state_dir
    from audit_agent.rules.yara_files import compile_for_scan
    yara = yara_module()
    if yara is None:
        return None
    sources = sources or {}
    key = (tuple(strings), tuple((name, hash(text)) for name, text in sources.items()))
    if key not in _YARA_CACHE:
        while len(_YARA_CACHE) >= KEEP:     # the scans' set and persistence's (strings only); a reloaded pack
            del _YARA_CACHE[next(iter(_YARA_CACHE))]       # replaces the old ones
        # Saved compiled between runs: libyara's compiler leaves 7-12 MB of freed heap behind (yara_cache.py).
        _YARA_CACHE[key] = cached_rules(yara, sources, strings, state_dir(),
                                        lambda: compile_for_scan(sources or {}, strings))
    return _YARA_CACHE[key]


def yara_matches(rules: Any, target: dict[str, Any], strings: list[str]) -> list[str]:
    """Signature strings found (in pack order), then `yara:<rule>` for each shipped rule that matched.

    `target` is {"filepath": path} or {"data": bytes}, as yara-python's match() takes them.
    A failed or timed-out scan raises (yara.Error / yara.TimeoutError): the caller records it, since
    an empty answer would read as "scanned and clean"."""
    matches = rules.match(**target, timeout=60, fast=True)
    found: set[int] = set()
    shipped = []
    for match in matches:
        if match.rule != SIGNATURE_RULE:
            shipped.append(f"yara:{match.rule}")
            continue
        for item in match.strings:
            identifier = getattr(item, "identifier", None) or item[1]     # yara-python >= 4.3, else a tuple
            found.add(int(identifier.lstrip("$s")))
    return [strings[i] for i in sorted(found)] + shipped
