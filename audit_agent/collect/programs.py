"""Which program a process's name stands for, and whether its executable is that program.

A process that calls itself python3, sshd, nginx or systemd (detect/identity.py's
families) is checked against two facts of the host:
  * the file the name resolves to on the system PATH (SYSTEM_PATH, fixed: the
    agent's own PATH, or the process's, says nothing about what the system
    installed); the executable is that file when it has the same device and inode;
  * the package database: the executable is listed by a package. dpkg's lists
    (/var/lib/dpkg/info/*.list) are read once per scan, lazily, only when some
    claimant's executable is not the PATH one, and only the lines naming such an
    executable are kept; bounded in files, bytes and time (a cut read is "not
    read", never "listed by none"). An rpm database is noted and not read (its
    formats need rpm itself); the reason then says so.
Paths are compared with /bin, /sbin and /lib* folded into /usr (merged-/usr
hosts list /bin/bash and run /usr/bin/bash). Cost: a few stats per distinct
claimed name; the dpkg read (878 lists, 7.6 MB here: 35-70 ms on a loaded
2-core host, each list searched for the wanted paths as bytes before any line
is split) only when some claimant is not its PATH program; and not even then when an earlier scan asked
the same about the same lists (collect/package_cache.py: the lists are only stat'ed, ~7 ms).
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

from audit_agent.collect import deadline, linux_only, package_cache
from audit_agent.collect.binaries import cache_folder
from audit_agent.collect.coverage import because, coverage
from audit_agent.detect.identity import claimed_family
from audit_agent.model import Coverage, CoverageStatus, ProgramIdentity, Snapshot

CHECK = "identity"
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
DPKG_INFO = "/var/lib/dpkg/info"
RPM_DB = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
MAX_LIST_FILES = 20000
MAX_LIST_BYTES = 256 << 20
MAX_LIST_SECONDS = 5.0
USR_MERGED = ("/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")
ENV_MARKERS = ("pyvenv.cfg", "conda-meta")


def canonical(path: str) -> str:
    path = path.removesuffix(" (deleted)")
    return "/usr" + path if path.startswith(USR_MERGED) else path


def collect_programs(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """checking that processes named like system programs run those programs"""
    not_linux = linux_only(CHECK)
    if not_linux:
        return [not_linux]
    proc_root = getattr(options, "proc_root", "/proc")
    dpkg_info = getattr(options, "dpkg_info", DPKG_INFO)
    resolved: dict[str, tuple[str, tuple[int, int] | None]] = {}
    found: list[ProgramIdentity] = []
    for proc in snapshot.processes:
        claimed = claimed_family(proc) if proc.exe and not proc.hidden else None
        if claimed is None:
            continue
        name = claimed[1]
        if name not in resolved:
            resolved[name] = on_system_path(name)
        on_path, path_id = resolved[name]
        facts = ProgramIdentity(pid=proc.pid, claimed=name, exe=proc.exe, on_path=on_path)
        try:
            # on a FUSE or network mount the stat runs in a child under the call timeout
            info = deadline.stat_path(os.path.join(proc_root, str(proc.pid), "exe"), follow_symlinks=True)
            facts.same_as_path = path_id is not None and (info.st_dev, info.st_ino) == path_id
        except (OSError, deadline.TimedOut):
            facts.same_as_path = None       # gone, or denied: judged on the package database alone
        found.append(facts)
    wanted = {canonical(f.exe) for f in found if not f.same_as_path}
    database, owners, complete = read_package_lists(dpkg_info, wanted, cache_folder(options)) if wanted \
        else ("", {}, True)
    for facts in found:
        if facts.same_as_path:
            continue
        facts.package_db = database
        if database == "dpkg" and complete:
            facts.package = owners.get(canonical(facts.exe), "")
        elif database == "dpkg":
            facts.package = owners.get(canonical(facts.exe))     # listed, or not known (the read was cut)
        if not facts.package:
            facts.env_marker = env_marker(facts.exe)
    snapshot.identities = found
    if wanted and database == "dpkg" and not complete:
        return [coverage(CHECK, CoverageStatus.PARTIAL, because("identity_dpkg_cut", n=len(found)),
                         inspected=len(found))]
    if wanted and database != "dpkg":
        return [coverage(CHECK, CoverageStatus.PARTIAL,
                         because("identity_no_dpkg", n=len(found), database=database or "none"), inspected=len(found))]
    return [coverage(CHECK, CoverageStatus.OK, because("identity_checked", n=len(found), outside=len(wanted)),
                     inspected=len(found))]


def on_system_path(name: str) -> tuple[str, tuple[int, int] | None]:
    """(real path, (device, inode)) of what `name` runs from the system PATH; ("", None) when nothing."""
    if "/" in name or not name:
        return "", None
    for folder in SYSTEM_PATH:
        candidate = os.path.join(folder, name)
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return os.path.realpath(candidate), (info.st_dev, info.st_ino)
    return "", None


def read_package_lists(dpkg_info: str, wanted: set[str],
                       state: Path | None = None) -> tuple[str, dict[str, str], bool]:
    """(database, {wanted path: package}, whether every list was read). Only the wanted paths are kept.

    With a state folder, the answers of a complete read are kept there (package_cache.py) under the
    lists' names and identities (inode, size, mtime, ctime): the next scan that wants the same
    executables, with no list changed, stats the lists instead of reading them."""
    if not os.path.isdir(dpkg_info):
        rpm = next((path for path in RPM_DB if os.path.isdir(path)), "")
        return ("rpm (not read)" if rpm else ""), {}, False
    lists = list_files(dpkg_info)
    stamp = package_cache.stamp(dpkg_info, lists) if state is not None else None
    known = package_cache.load(state, stamp) if state is not None and stamp else {}
    owners = {path: known[path] for path in wanted & known.keys() if known[path]}
    missing = wanted - known.keys()
    if not missing:
        return "dpkg", owners, True
    found, complete = search_lists(lists, missing)
    if complete and state is not None and stamp:
        package_cache.save(state, stamp, {**known, **{path: found.get(path, "") for path in missing}})
    return "dpkg", {**owners, **found}, complete


def list_files(dpkg_info: str) -> list[str]:
    """The *.list files of the dpkg database, sorted (bounded by MAX_LIST_FILES + 1: more is a cut read)."""
    try:        # what glob("*.list") finds (no dot files), without matching every name of the folder (3,400 here)
        with os.scandir(dpkg_info) as entries:
            return sorted(entry.path for entry in entries if entry.name.endswith(".list")
                          and not entry.name.startswith("."))
    except OSError:
        return []


def search_lists(lists: list[str], wanted: set[str]) -> tuple[dict[str, str], bool]:
    """({wanted path: package}, whether every list was read), bounded in files, bytes and time."""
    owners: dict[str, str] = {}
    started, total = time.monotonic(), 0
    needles = {("\n" + form + "\n").encode("utf-8", "surrogateescape")
               for path in wanted for form in (path, path.removeprefix("/usr") if uncanonical(path) else path)}
    complete = len(lists) <= MAX_LIST_FILES
    for path in lists[:MAX_LIST_FILES]:
        if total >= MAX_LIST_BYTES or time.monotonic() - started >= MAX_LIST_SECONDS:
            return owners, False
        try:       # root's own files on the root file system: no other user controls them
            data = read_list(path)
        except OSError:
            complete = False
            continue
        total += len(data)
        if not any(needle in data or data.startswith(needle[1:]) for needle in needles):
            continue                # a substring search in C: most lists name none of the wanted paths
        package = os.path.basename(path)[:-len(".list")].split(":", 1)[0]
        for raw in io.BytesIO(data):        # a line at a time: some lists run to megabytes (SDKs, icon themes)
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line and canonical(line) in wanted:
                owners.setdefault(canonical(line), package)
    return owners, complete


def uncanonical(path: str) -> bool:
    """A /usr path that a merged-/usr host may list without its /usr (/usr/bin/bash as /bin/bash)."""
    return path.startswith(tuple("/usr" + top for top in USR_MERGED))


def read_list(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        return os.read(fd, min(os.fstat(fd).st_size + 1, MAX_LIST_BYTES))
    finally:
        os.close(fd)


def env_marker(exe: str) -> str:
    """pyvenv.cfg or conda-meta in the folder above the executable's bin/ folder ("" when neither)."""
    prefix = os.path.dirname(os.path.dirname(exe.removesuffix(" (deleted)")))
    for marker in ENV_MARKERS:
        try:
            if deadline.call(os.path.lexists, os.path.join(prefix, marker), path=prefix):
                return marker
        except deadline.TimedOut:
            return ""
    return ""
