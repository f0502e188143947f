"""Who a process belongs to: container id and Slurm job id parsed from its cgroup path."""
from __future__ import annotations

import re
from pathlib import Path

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
