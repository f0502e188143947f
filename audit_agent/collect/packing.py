"""Is a running executable packed? UPX's marks, the entropy of its code, its section and import tables.

Cryptojacking droppers ship miners packed, most often with UPX and then with
its marks scrubbed (`UPX!` overwritten) so that `upx -d` and naive scanners
give up. What packing cannot hide is its shape: the loadable code is
compressed or encrypted (about 8 bits of entropy per byte, where compiled
code has 5.5 to 6.5: Lyda & Hamrock, "Using entropy analysis to find
encrypted and packed malware", IEEE S&P 2007), the file has no section
table (UPX output has none; the loader needs only program headers), and a
packed dynamic program imports almost nothing (the stub resolves the rest).

Only executables outside package-managed paths are examined (and deleted or
memfd ones wherever they were): a package's binary is what its package says.
Each file is read through /proc/PID/exe (so deleted and memfd executables are
read too), in bounded samples: the head, the tail and at most SAMPLE_BYTES
spread over its executable segments.
"""
from __future__ import annotations

import math
import os
import stat
import struct
from collections import Counter
from collections.abc import Container
from pathlib import Path
from typing import Any

from audit_agent.collect import deadline, linux_only, scan_cache
from audit_agent.collect.binaries import cache_folder
from audit_agent.detect.places import PACKAGE_DIRS
from audit_agent.collect.coverage import because, coverage, is_root
from audit_agent.collect.proc_facts import exe_files
from audit_agent.model import Coverage, CoverageStatus, Packing, Snapshot

CHECK = "packing"
EDGE_BYTES = 64 * 1024          # head and tail read for UPX's marks (its l_info and PackHeader sit there)
SAMPLE_BYTES = 256 * 1024      # at most this much of the executable segments is read for the entropy (~25 ms)
SAMPLES = 16
# UPX writes "UPX!" in its l_info/PackHeader and these lines into its stub; UPX0/UPX1 name its sections.
UPX_MARKS = (b"UPX!", b"$Info: This file is packed with the UPX", b"$Id: UPX ", b"UPX0", b"UPX1")
PT_LOAD, PT_DYNAMIC, PF_X, DT_NEEDED = 1, 2, 1, 1


def examine_path(path: str, exe: str, known: Container[tuple[int, int]],
                 kept: Kept | None = None) -> tuple[tuple[int, int], Packing | None] | None:
    """(file key, its Packing) of the executable at `path`; the Packing is None for a file already examined
    (`known`), and the whole answer None for something that is not a regular file. With `kept`, a file an
    earlier run examined (same device, inode, size, mtime and ctime) is not read again."""
    seen = os.stat(path)        # one call where most processes run a file already examined (no open, no close)
    if (seen.st_dev, seen.st_ino) in known and stat.S_ISREG(seen.st_mode):
        return (seen.st_dev, seen.st_ino), None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        if key in known:
            return key, None
        if not stat.S_ISREG(info.st_mode):
            return None
        if kept is None:
            return key, examine(fd, info.st_size, exe)
        return key, kept.examine(fd, info, exe)
    finally:
        os.close(fd)


class Kept:
    """Packing facts of earlier runs (scan_cache.PACKING_FILE), and those of the files this run looked at: a
    file's facts depend on its content alone, which its identity (device, inode, size, mtime_ns, ctime_ns)
    stands for. Files served by FUSE or network file systems are never taken from here (their server says
    what their identity is): collect_packing examines those in a child process without it."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.saved = scan_cache.load(folder, scan_cache.PACKING_FILE, scan_cache.PACKING_VERSION,
                                     scan_cache.valid_packing)
        self.used: dict[str, dict[str, Any]] = {}

    def examine(self, fd: int, info: os.stat_result, shown_path: str) -> Packing:
        key = scan_cache.entry_key((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns),
                                   "packing")
        facts = self.saved.get(key)
        if facts is None:
            packing = examine(fd, info.st_size, shown_path)
            facts = {"marks": packing.marks, "section_table": packing.section_table, "imports": packing.imports,
                     "sampled_bytes": packing.sampled_bytes, "entropy": packing.entropy}
        else:
            packing = Packing(path=shown_path, marks=list(facts["marks"]), section_table=facts["section_table"],
                              imports=facts["imports"], sampled_bytes=facts["sampled_bytes"],
                              entropy=facts["entropy"])
        self.used[key] = facts
        return packing

    def save(self) -> None:
        """Keep the facts of the files this run examined (those no longer running are dropped)."""
        if self.used.keys() != self.saved.keys():
            scan_cache.save(self.folder, self.used, scan_cache.PACKING_FILE, scan_cache.PACKING_VERSION)


def collect_packing(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """checking running executables for packing"""
    not_linux = linux_only(CHECK)
    if not_linux:
        return [not_linux]
    proc_root = getattr(options, "proc_root", "/proc")
    by_file: dict[tuple[int, int], Packing] = {}
    denied = 0
    kept = Kept(cache_folder(options))
    wanted = [proc for proc in snapshot.processes if proc.exe and out_of_package(proc.exe, proc.exe_deleted)]
    # the file each runs, as the executable scan asked it (one stat a process, for both steps)
    exes = exe_files(getattr(options, "proc_facts", None), [proc.pid for proc in wanted], proc_root)
    for proc in wanted:
        exe = exes.get(proc.pid)
        if exe is None:
            continue        # gone, a kernel thread, or a file system that did not answer
        if exe.denied:
            denied += 1
            continue
        known = by_file.get(exe.file) if exe.regular else None
        if known is not None:       # a file examined already: what examine_path's first look would say
            known.pids.append(proc.pid)
            continue
        path = os.path.join(proc_root, str(proc.pid), "exe")
        try:
            # an executable served by a user's FUSE server is read in a child process under the call
            # timeout (deadline.call forks for such mounts): a server that stalls cannot stall the scan
            if deadline.remote_mount_of(path):
                found = deadline.call(examine_path, path, proc.exe, by_file, path=path, what=path)
            else:       # a local disk answers: no hand-off per process (2,000 of them cost ~0.4 s)
                found = examine_path(path, proc.exe, by_file, kept)
        except PermissionError:
            denied += 1
            continue
        except (OSError, deadline.TimedOut):
            continue        # gone, a kernel thread, or a file system that did not answer
        if found is None:
            continue
        key, packing = found
        known = by_file.get(key)
        if known is not None:
            known.pids.append(proc.pid)
            continue
        if packing is not None:
            packing.pids.append(proc.pid)
            by_file[key] = packing
    snapshot.packing.extend(by_file.values())
    kept.save()
    if denied:
        return [coverage(CHECK, CoverageStatus.PARTIAL,
                         because("executables_denied_root" if is_root() else "executables_denied", n=denied),
                         inspected=len(by_file), denied=denied)]
    return [Coverage(CHECK, CoverageStatus.OK, inspected=len(by_file))]


def out_of_package(exe: str, deleted: bool) -> bool:
    return deleted or exe.startswith("/memfd:") or not exe.startswith(PACKAGE_DIRS)


def examine(fd: int, size: int, shown_path: str) -> Packing:
    """The packing facts of one open executable, read in bounded samples."""
    head = os.pread(fd, min(size, EDGE_BYTES), 0)
    tail = os.pread(fd, min(size, EDGE_BYTES), max(size - EDGE_BYTES, 0)) if size > EDGE_BYTES else b""
    packing = Packing(path=shown_path)
    packing.marks = [mark.decode() for mark in UPX_MARKS if mark in head or mark in tail]
    layout = elf_layout(head)
    if layout is None:      # not an ELF we can read (a script, or a crafted header): sample the whole file
        segments, packing.section_table = [(0, size)], True
    else:
        segments, packing.section_table, dynamic = layout
        packing.imports = count_needed(fd, dynamic, size) if dynamic else None
    sample = read_samples(fd, segments, size)
    packing.sampled_bytes = len(sample)
    packing.entropy = round(entropy(sample), 2) if sample else None
    return packing


def elf_layout(head: bytes) -> tuple[list[tuple[int, int]], bool, tuple[int, int] | None] | None:
    """(executable segments as (offset, size), has a section table, dynamic segment) of a 64-bit
    little-endian ELF; None for anything else or a header that does not fit in `head`."""
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return None
    try:
        phoff, shoff = struct.unpack_from("<QQ", head, 0x20)
        phentsize, phnum, _shentsize, shnum = struct.unpack_from("<HHHH", head, 0x36)
        if phentsize < 56 or phnum > 128 or phoff + phnum * phentsize > len(head):
            return None
        code, dynamic = [], None
        for index in range(phnum):
            p_type, flags, offset, _vaddr, _paddr, filesz = struct.unpack_from("<IIQQQQ", head, phoff + index * phentsize)
            if p_type == PT_LOAD and flags & PF_X and filesz:
                code.append((offset, filesz))
            elif p_type == PT_DYNAMIC and filesz:
                dynamic = (offset, filesz)
        return code, bool(shoff and shnum), dynamic
    except struct.error:
        return None


def count_needed(fd: int, dynamic: tuple[int, int], size: int) -> int | None:
    """DT_NEEDED entries of the dynamic segment (the libraries it imports from)."""
    offset, length = dynamic
    if offset >= size:
        return None
    data = os.pread(fd, min(length, 64 * 1024), offset)
    needed = 0
    for at in range(0, len(data) - 15, 16):
        tag, = struct.unpack_from("<q", data, at)
        if tag == 0:
            break
        needed += tag == DT_NEEDED
    return needed


def read_samples(fd: int, segments: list[tuple[int, int]], size: int) -> bytes:
    """Up to SAMPLE_BYTES of the segments, in SAMPLES evenly spread pieces when they are bigger."""
    segments = [(offset, min(length, size - offset)) for offset, length in segments if offset < size]
    total = sum(length for _, length in segments)
    if total <= SAMPLE_BYTES:
        return b"".join(os.pread(fd, length, offset) for offset, length in segments)
    piece = SAMPLE_BYTES // SAMPLES
    chunks = []
    for index in range(SAMPLES):
        at = index * (total - piece) // (SAMPLES - 1)
        for offset, length in segments:      # map the position in the joined segments to a file offset
            if at < length:
                chunks.append(os.pread(fd, min(piece, length - at), offset + at))
                break
            at -= length
    return b"".join(chunks)


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    counts = Counter(data)
    total = len(data)
    return -sum(n / total * math.log2(n / total) for n in counts.values())
