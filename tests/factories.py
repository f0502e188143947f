"""Small builders for hand-made snapshots, so tests state only what matters to them."""
from __future__ import annotations

import time

from audit_agent.model import (
    Connection,
    Coverage,
    CoverageStatus,
    GpuDevice,
    GpuProcess,
    HostInfo,
    ProcessInfo,
    Snapshot,
)
from audit_agent.pipeline import Inputs, load_inputs, run_scan

_PACK_CACHE: dict[str, Inputs] = {}


def proc(pid: int, cmdline: str | list[str], *, name: str | None = None, exe: str | None = None,
         user: str = "alice", cpu: float = 1.0, **extra) -> ProcessInfo:
    argv = cmdline.split() if isinstance(cmdline, str) else cmdline
    first = argv[0] if argv else ""
    return ProcessInfo(pid=pid, ppid=1, name=name if name is not None else first.rsplit("/", 1)[-1][:15],
                       exe=exe if exe is not None else (first if first.startswith("/") else f"/usr/bin/{first}"),
                       cmdline=argv, username=user, cpu_percent=cpu, allowed_cpus=extra.pop("allowed_cpus", 8),
                       terminal=extra.pop("terminal", "pts/0"), **extra)


def conn(pid: int | None, remote: str, port: int, *, state: str = "ESTABLISHED") -> Connection:
    return Connection(pid=pid, protocol="tcp", local_address="10.0.0.5", local_port=40000 + (pid or 0) % 20000,
                      remote_address=remote, remote_port=port, state=state)


def gpu(index: int, util: float, pids: list[int] = (), name: str = "NVIDIA A100-SXM4-80GB") -> GpuDevice:
    return GpuDevice(index=index, name=name, utilization_percent=util, utilization_samples=[util] * 5,
                     processes=[GpuProcess(pid=p, used_memory_bytes=2 << 30) for p in pids])


def snapshot(processes=(), connections=(), gpus=(), *, hostname: str = "node01", window: float = 10.0,
             coverage: list[Coverage] | None = None, **extra) -> Snapshot:
    return Snapshot(agent_version="test", collected_at=extra.pop("collected_at", time.time()), window_seconds=window,
                    host=HostInfo(hostname=hostname, os="Linux", cpu_threads=8, cpu_cores=8),
                    processes=list(processes), connections=list(connections), gpus=list(gpus),
                    coverage=coverage if coverage is not None else [
                        Coverage("processes", CoverageStatus.OK, inspected=len(processes)),
                        Coverage("network", CoverageStatus.OK)], **extra)


def default_inputs(config: str | None = None) -> Inputs:
    key = config or ""
    if key not in _PACK_CACHE:
        _PACK_CACHE[key] = load_inputs(None, config)
    return _PACK_CACHE[key]


def scan(snap: Snapshot, config: str | None = None):
    return run_scan(snap, default_inputs(config))


def write_file(path, text: str, mode: int | None = None):
    """Write a file in a test's fake root, making its folders; `mode` to chmod it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


# Ways a state file of the agent's (a cache that says "clean") can be one it must not trust, or unreadable.
UNTRUSTED_WAYS = ["world-writable", "folder-writable", "symlink", "foreign-owner", "torn", "garbage"]


def plant_state_file(path, payload: bytes, how: str) -> None:
    """Put `payload` at `path` the way `how` says (one of UNTRUSTED_WAYS); the folder is the state folder."""
    import os

    import pytest
    if how == "foreign-owner" and os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    if path.is_symlink() or path.exists():
        path.unlink()
    if how == "symlink":
        elsewhere = path.parent.parent / f"elsewhere-{path.name}"
        elsewhere.write_bytes(payload)
        path.symlink_to(elsewhere)
        return
    path.write_bytes(payload[:40] if how == "torn" else b"\xc1 not msgpack" if how == "garbage" else payload)
    path.chmod(0o666 if how == "world-writable" else 0o600)
    if how == "folder-writable":
        path.parent.chmod(0o777)
    if how == "foreign-owner":
        os.chown(path, 65534, 65534)
