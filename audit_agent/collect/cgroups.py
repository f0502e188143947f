"""Who a process belongs to: container id and Slurm job id parsed from its cgroup path."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import msgspec

from audit_agent.collect.safe_read import read_fd

# docker-<id>.scope, /docker/<id>, cri-containerd-<id>.scope, ...:cri-containerd:<id>, crio-<id>, libpod-<id>,
# kubepods/.../<id>: the runtime names vary, the 64-hex container id does not.
CONTAINER_RUNTIME = re.compile(r"docker|containerd|crio|libpod|kubepods|lxc|podman")
CONTAINER_ID = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")
# cgroup v1: /slurm/uid_1000/job_42/step_0; cgroup v2 (Slurm >= 22.05): /system.slice/slurmstepd.scope/job_42/step_0
SLURM_JOB = re.compile(r"/slurm[^/]*/uid_\d+/job_(\d+)|/slurmstepd\.scope/job_(\d+)")


def read_cgroup(pid: int, proc_root: str = "/proc") -> str:
    """The process's cgroup path (v2 unified line, else the first v1 line); '' if unreadable."""
    try:
        text = (Path(proc_root) / str(pid) / "cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return cgroup_path(text)


def cgroup_path(text: str) -> str:
    """The path from the text of /proc/PID/cgroup: the v2 unified line, else the first v1 cpu/pids line."""
    lines = [line.split(":", 2) for line in text.splitlines() if line.count(":") >= 2]
    for hierarchy, _, path in lines:
        if hierarchy == "0":
            return path
    for _, controllers, path in lines:
        if "cpu" in controllers.split(",") or "pids" in controllers.split(","):
            return path
    return lines[0][2] if lines else ""


def container_id(cgroup: str) -> str:
    if not CONTAINER_RUNTIME.search(cgroup):
        return ""
    found = CONTAINER_ID.search(cgroup)
    return found.group(1)[:12] if found else ""


def slurm_job_id(cgroup: str) -> str:
    found = SLURM_JOB.search(cgroup)
    return (found.group(1) or found.group(2)) if found else ""


# ------------------------------------------------------------------ every process's cgroup in one walk

MAX_CGROUPS = 4096              # folders walked; a host with more reads each process's own file instead
MAX_PROCS_BYTES = 1 << 20       # one cgroup.procs (PIDs of up to ~150,000 processes)
MOUNT_ESCAPE = re.compile(rb"\\([0-7]{3})")   # mountinfo writes space, tab, newline and backslash as \ooo


class Members(msgspec.Struct):
    """The cgroup v2 path (bytes, as /proc shows it) of every process the walk of the unified hierarchy
    listed: what the `0::` line of its /proc/PID/cgroup says, the line cgroup_path() prefers. `started` is
    when the walk began, in clock ticks since boot as /proc/PID/stat counts a process's start: a process
    started after that may have a PID the walk listed for another (recycled), so its own file is read."""
    paths: dict[int, bytes]
    started: int

    def line(self, pid: int, start_ticks: int) -> bytes | None:
        """The process's /proc/PID/cgroup line for the unified hierarchy; None to read its own file."""
        if start_ticks >= self.started - 1:     # -1: the two clocks are rounded to a tick each
            return None
        path = self.paths.get(pid)
        return b"0::" + path + b"\n" if path is not None else None


def unified_members(proc_root: str = "/proc", clock_ticks: int = 100, limit: int = MAX_CGROUPS) -> Members | None:
    """Every process's unified-hierarchy cgroup from one walk of the cgroup2 mount: one cgroup.procs per
    cgroup instead of one /proc/PID/cgroup per process (the kernel builds that file's every line, one per
    hierarchy, for each process: ~14 us a process on a hybrid v1/v2 host).

    None (each process's own file is read, as before) when the answer could differ from that file's or the
    walk would cost more than it saves: no cgroup2 mount of the hierarchy's root, more than `limit` cgroups
    (it stops at the first one over, and cgroups are found as it goes), a folder or file that cannot be
    read, or our own process not found where /proc/self/cgroup puts it (a cgroup namespace or a mount that
    does not show the paths /proc shows). A PID listed twice (threaded cgroups) is left to its own file."""
    own = own_unified_path(proc_root)
    mount = unified_mount(proc_root)
    if own is None or mount is None or limit < 1:
        return None
    started = int(time.clock_gettime(time.CLOCK_BOOTTIME) * clock_ticks)
    paths: dict[int, bytes] = {}
    twice: set[int] = set()
    folders = [(b"", mount)]
    walked = 0
    try:
        while folders:
            if walked == limit:
                return None     # more cgroups than the walk is worth
            walked += 1
            relative, folder = folders.pop()
            for pid in pids_of(folder + b"/cgroup.procs"):
                if pid in paths:
                    twice.add(pid)
                paths[pid] = relative or b"/"
            with os.scandir(folder) as entries:
                folders.extend((relative + b"/" + entry.name, entry.path) for entry in entries
                               if entry.is_dir(follow_symlinks=False))
    except (OSError, ValueError):
        return None
    for pid in twice:
        del paths[pid]
    if paths.get(os.getpid()) != own:
        return None
    return Members(paths, started)


def own_unified_path(proc_root: str) -> bytes | None:
    """The `0::` path of /proc/self/cgroup; None on a host without the unified hierarchy."""
    try:
        text = (Path(proc_root) / "self" / "cgroup").read_bytes()
    except OSError:
        return None
    return next((line[3:] for line in text.splitlines() if line.startswith(b"0::")), None)


def unified_mount(proc_root: str) -> bytes | None:
    """Where the cgroup2 hierarchy is mounted from its root (mountinfo: root `/`, type cgroup2)."""
    try:
        text = (Path(proc_root) / "self" / "mountinfo").read_bytes()
    except OSError:
        return None
    for line in text.splitlines():
        fields, _, after = line.partition(b" - ")
        mounted, kind = fields.split(), after.split()
        if len(mounted) >= 5 and kind and kind[0] == b"cgroup2" and mounted[3] == b"/":
            return MOUNT_ESCAPE.sub(lambda found: bytes([int(found.group(1), 8)]), mounted[4])
    return None


def pids_of(path: bytes) -> list[int]:
    """The PIDs a cgroup.procs lists; ValueError when it is over MAX_PROCS_BYTES (never a partial list)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = read_fd(fd, MAX_PROCS_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PROCS_BYTES:
        raise ValueError("cgroup.procs over the bound")
    return [int(pid) for pid in data.split()]
