"""A bounded search for farming artefacts: plots, sectors, PoST data, piece caches, by name and size.

Where: the folders processes have files open in, the folders they or the
family configs name, and the usual mount points (/mnt, /media, /srv, /data...
and every local disk file system mounted outside the system tree). Bounded in
entries per folder, entries in all, depth and wall time: the walk runs in a
worker thread, so a hung network file system or a folder of millions of files
costs at most the time budget, and the coverage says `partial` and why.
Nothing is followed through a symlink; only names and sizes are read.
"""
from __future__ import annotations

import os
import re
import stat
import threading
import time
from typing import Any

import msgspec

from audit_agent.collect import deadline
from audit_agent.collect.families import Found
from audit_agent.collect.coverage import because, coverage
from audit_agent.model import ArtefactGroup, Coverage, CoverageStatus, Snapshot
from audit_agent.redact import cap
from audit_agent.rules.families import Family, family_rules
from audit_agent.rules.family_match import FamilyMatchers
from audit_agent.rules.loader import RulePack

SEARCH_SECONDS = 8.0
MAX_ENTRIES = 300_000           # directory entries looked at in all
MAX_DIR_ENTRIES = 50_000        # entries of one folder (a piece store of millions of files stops here)
MAX_FOLDERS = 4000
MOUNT_ROOTS = ("/mnt", "/media", "/srv", "/data", "/plots", "/farm", "/storage", "/chia", "/disks")
LOCAL_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "ntfs", "ntfs3", "exfat", "vfat", "fuseblk",
            "jfs", "reiserfs", "bcachefs", "nfs", "nfs4", "cifs", "smb3"}
SYSTEM_MOUNTS = ("/", "/boot", "/usr", "/var", "/etc", "/opt", "/snap", "/run", "/proc", "/sys", "/dev", "/tmp",
                 "/home", "/root")
SKIP_TREES = ("/proc", "/sys", "/dev", "/run")
EXAMPLES = 3
# depth below a root that is searched, by how the root was found
DEPTH = {"open": 0, "cmdline": 2, "config": 5, "mount": 3}


class Walk(msgspec.Struct):
    roots: list[tuple[str, str, str]]                 # (shown, access, via)
    matchers: FamilyMatchers
    deadline: float
    entries: int = 0
    folders: int = 0
    denied: int = 0
    crowded: list[str] = msgspec.field(default_factory=list)  # folders cut at MAX_DIR_ENTRIES
    groups: dict[tuple[str, str, str], ArtefactGroup] = msgspec.field(default_factory=dict)
    stopped: str = ""                                 # why the walk ended early
    done: bool = False
    seen: set[tuple[int, int]] = msgspec.field(default_factory=set)
    inside: str = ""                                  # the remote mount this (child) walk was started on

    def run(self) -> None:
        try:
            for shown, access, via in self.roots:
                if self.stopped:
                    break
                self.walk(shown, access, via, DEPTH[via])
        finally:
            self.done = True

    def walk(self, shown: str, access: str, via: str, depth: int) -> None:
        if self.stopped or shown.startswith(SKIP_TREES):
            return
        if time.monotonic() > self.deadline:
            self.stopped = f"time budget of {SEARCH_SECONDS:g} s used up"
            return
        if self.entries >= MAX_ENTRIES or self.folders >= MAX_FOLDERS:
            self.stopped = f"limit of {MAX_ENTRIES} entries / {MAX_FOLDERS} folders reached"
            return
        remote = deadline.remote_mount_of(access)
        if remote and remote != self.inside:
            self.walk_remote(shown, access, via, depth, remote)
            return
        try:
            info = os.stat(access, follow_symlinks=False)
        except PermissionError:
            self.denied += 1
            return
        except OSError:
            return
        if not stat.S_ISDIR(info.st_mode) or (info.st_dev, info.st_ino) in self.seen:
            return
        self.seen.add((info.st_dev, info.st_ino))
        self.folders += 1
        subfolders = []
        try:
            with os.scandir(access) as entries:
                for count, entry in enumerate(entries):
                    if count >= MAX_DIR_ENTRIES:
                        self.crowded.append(shown)
                        break
                    self.entries += 1
                    if entry.is_dir(follow_symlinks=False):
                        if depth > 0:
                            subfolders.append(entry.name)
                    elif entry.is_file(follow_symlinks=False) and self.matchers.file_name_may_match(entry.name):
                        self.consider(entry, shown, via)
        except PermissionError:
            self.denied += 1
            return
        except OSError:
            return
        for name in subfolders:
            self.walk(os.path.join(shown, name), os.path.join(access, name), via, depth - 1)

    def walk_remote(self, shown: str, access: str, via: str, depth: int, mount: str) -> None:
        """A folder on a FUSE or network mount is walked in a child process (deadline.call forks for such
        paths): a server that stops answering, as a local user's FUSE server can at will, stalls the child,
        never this process (a thread stuck in a FUSE request would keep the agent from exiting at all)."""
        child = Walk(roots=[], matchers=self.matchers, deadline=self.deadline, seen=set(self.seen), inside=mount)
        left = max(0.0, self.deadline - time.monotonic())
        try:
            child = deadline.call(_walked, child, shown, access, via, depth, path=access, timeout=left,
                                  what=f"artefact search in {shown}")
        except deadline.TimedOut:
            self.stopped = self.stopped or f"{cap(mount, 200)} did not answer"
            return
        except OSError:
            return
        self.entries += child.entries
        self.folders += child.folders
        self.denied += child.denied
        self.crowded += child.crowded
        self.seen |= child.seen
        self.stopped = self.stopped or child.stopped
        for key, group in child.groups.items():
            mine = self.groups.setdefault(key, ArtefactGroup(family=group.family, kind=group.kind,
                                                             directory=group.directory, found_via=group.found_via))
            mine.count += group.count
            mine.total_bytes += group.total_bytes
            mine.allocated_bytes += group.allocated_bytes
            mine.examples = (mine.examples + group.examples)[:EXAMPLES]

    def consider(self, entry: os.DirEntry[str], folder: str, via: str) -> None:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            return
        pattern = self.matchers.match_file(entry.name, os.path.basename(folder), info.st_size)
        if pattern is None:
            return
        for _ in range(pattern.spec.group_up):       # one piece store, not its 1024 two-letter prefix folders
            folder = os.path.dirname(folder) or folder
        key = (pattern.family, pattern.spec.kind, folder)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = ArtefactGroup(family=pattern.family, kind=pattern.spec.kind,
                                                     directory=cap(folder, 1024), found_via=via)
        group.count += 1
        group.total_bytes += info.st_size
        group.allocated_bytes += getattr(info, "st_blocks", 0) * 512
        if len(group.examples) < EXAMPLES:
            group.examples.append(cap(entry.name, 200))


def _walked(walk: Walk, shown: str, access: str, via: str, depth: int) -> Walk:
    """Run in the child: the subtree walked; the Walk (without its matchers) comes back pickled."""
    walk.walk(shown, access, via, depth)
    walk.done = True
    walk.matchers = None  # type: ignore[assignment]
    return walk


def search_artefacts(snapshot: Snapshot, families: list[Family], found: Found, options: Any) -> Coverage:
    rules = [rule for family in families for rule in family_rules(family)]
    matchers = FamilyMatchers(RulePack("families", "", "", "", [], rules, families))
    if not matchers.artefacts:
        return coverage("artefacts", CoverageStatus.NOT_APPLICABLE, because("no_artefact_families"))
    seconds = float(getattr(options, "artefact_seconds", SEARCH_SECONDS))
    walk = Walk(roots=search_roots(snapshot, found, getattr(options, "mount_roots", None)), matchers=matchers,
                deadline=time.monotonic() + seconds)
    worker = threading.Thread(target=walk.run, name="artefact-search", daemon=True)
    worker.start()
    worker.join(seconds + 1.0)
    if not walk.done and not walk.stopped:
        walk.stopped = f"time budget of {seconds:g} s used up (a file system did not answer)"
    groups = list(walk.groups.values())      # a worker still stuck in a hung file system adds nothing later
    link_pids(groups, found, matchers)
    groups = [g for g in groups if owned(g, matchers, snapshot)]
    snapshot.artefacts.extend(groups)
    problems = []
    if walk.stopped:
        problems.append(because("search_stopped", why=walk.stopped))
    if walk.crowded:
        problems.append(because("folders_crowded", n=len(walk.crowded), limit=MAX_DIR_ENTRIES,
                                example=cap(walk.crowded[0], 200)))
    if walk.denied:
        problems.append(because("folders_denied", n=walk.denied))
    status = CoverageStatus.PARTIAL if problems else CoverageStatus.OK
    details = problems + [because("folders_searched", folders=walk.folders, entries=walk.entries)]
    details += [because("capacity", text=text) for text in capacity(groups)]
    return coverage("artefacts", status, *details, inspected=walk.folders, denied=walk.denied)


def capacity(groups: list[ArtefactGroup]) -> list[str]:
    """`farmed: CHIA plot 0.20 TiB in 1 folder(s)` per family and kind, largest first."""
    totals: dict[tuple[str, str], list[int]] = {}
    for group in groups:
        entry = totals.setdefault((group.family, group.kind), [0, 0])
        entry[0] += group.total_bytes
        entry[1] += 1
    parts = [f"{family} {kind} {size / (1 << 40):.2f} TiB in {folders} folder(s)"
             for (family, kind), (size, folders) in sorted(totals.items(), key=lambda item: -item[1][0])]
    return [f"farmed: {', '.join(parts)}"] if parts else []


def search_roots(snapshot: Snapshot, found: Found, mount_roots: Any = None) -> list[tuple[str, str, str]]:
    """(shown, access, via) for every folder to search, most telling first, each once."""
    roots: dict[str, tuple[str, str, str]] = {}

    def add(folder: str, via: str) -> None:
        folder = os.path.normpath(folder)
        if folder.startswith("/") and folder not in roots:
            roots[folder] = (folder, found.access.get(folder, folder), via)

    for folder in found.open_dirs:
        add(folder, "open")
    for config in snapshot.family_configs:
        for folder in config.dirs:
            add(folder, "config")
    for folder in found.named_dirs:
        add(folder, "cmdline")
    for cwd in dict.fromkeys(proc.cwd for proc in snapshot.processes):     # each folder once, in order
        if cwd.startswith("/") and cwd != "/":
            add(cwd, "open")
    for folder in (MOUNT_ROOTS if mount_roots is None else mount_roots):
        add(folder, "mount")
    if mount_roots is None:
        for folder in local_mount_points():
            add(folder, "mount")
    return list(roots.values())


def local_mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points of disk and network file systems outside the system tree (data disks, ZFS pools, NFS)."""
    points = []
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as handle:
            lines = handle.read(1 << 20).splitlines()
    except OSError:
        return []
    for line in lines[:5000]:
        fields, _, rest = line.partition(" - ")
        parts, fstype = fields.split(), rest.split(" ", 1)[0]
        if len(parts) < 5 or fstype not in LOCAL_FS:
            continue
        point = parts[4].replace("\\040", " ")
        if point in SYSTEM_MOUNTS or point.startswith(("/boot/", "/snap/", "/run/", "/proc/", "/sys/", "/dev/",
                                                       "/var/lib/docker", "/var/lib/containers")):
            continue
        points.append(point)
    return points


def owned(group: ArtefactGroup, matchers: FamilyMatchers, snapshot: Snapshot) -> bool:
    """A `tied` artefact (a name other software uses too) counts only in a folder that a process of its family
    has open or names, or that the family's configuration names; the detector checks the process again."""
    spec = matchers.spec(group.family, group.kind)
    if spec is None or not spec.tied:
        return True
    family = matchers.families.get(group.family)
    if family is None:
        return False
    for config in snapshot.family_configs:
        if config.family == group.family and any(group.directory == d.rstrip("/") or
                                                 group.directory.startswith(d.rstrip("/") + "/") for d in config.dirs):
            return True
    names = set(family.names) | set(family.node_names)
    cmdline = [re.compile(p, re.IGNORECASE) for p in family.cmdline]
    by_pid = {p.pid: p for p in snapshot.processes}
    for pid in group.pids:
        proc = by_pid.get(pid)
        if proc is None:
            continue
        seen = {os.path.basename(v).lower() for v in (proc.name, proc.exe, proc.cmdline[0] if proc.cmdline else "") if v}
        text = " ".join(proc.cmdline)
        if seen & names or any(r.search(text) for r in cmdline):
            return True
    return False


def link_pids(groups: list[ArtefactGroup], found: Found, matchers: FamilyMatchers | None = None) -> None:
    """The processes that have an artefact folder open, or name it (or a folder above it) on their command line.
    A group reported some levels above its files (group_up) counts the folders below it down to that depth."""
    for group in groups:
        spec = matchers.spec(group.family, group.kind) if matchers else None
        span = spec.group_up if spec else 0
        pids = set(found.open_dirs.get(group.directory, set()))
        if span:
            prefix = group.directory.rstrip("/") + "/"
            for folder, opened in found.open_dirs.items():
                if folder.startswith(prefix) and folder[len(prefix):].count("/") < span:
                    pids |= opened
        for folder, named in found.named_dirs.items():
            if group.directory == folder or group.directory.startswith(folder.rstrip("/") + "/"):
                pids |= named
        group.pids = sorted(pids)
