"""Context: findings land on the right person: Slurm job, container, login session (TTY) or its absence."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from audit_agent.collect.cgroups import container_id, slurm_job_id
from audit_agent.collect.processes import FirstReading, build_process
from audit_agent.detect import Context, load
from audit_agent.evaluate import evaluate
from audit_agent.model import Connection, PersistenceEntry, ProcessInfo, Severity, Snapshot
from audit_agent.policy import Policy

ON_LINUX = sys.platform.startswith("linux")


@pytest.mark.parametrize("cgroup, job", [
    ("/slurm/uid_1000/job_998877/step_batch/task_0", "998877"),                         # cgroup v1
    ("/system.slice/slurmstepd.scope/job_4711/step_0/user/task_0", "4711"),             # cgroup v2, Slurm >= 22.05
    ("/system.slice/slurmstepd.scope/job_4711/step_extern/user", "4711"),
    ("/system.slice/slurmd.service", ""),                                               # the daemon, not a job
    ("/user.slice/user-1000.slice/session-3.scope", ""),
    ("/system.slice/jobs_42.service", ""),
])
def test_slurm_job_from_cgroup(cgroup, job):
    assert slurm_job_id(cgroup) == job


def test_container_and_slurm_are_independent():
    cgroup = "/system.slice/docker-" + "f" * 64 + ".scope"
    assert container_id(cgroup) == "f" * 12 and slurm_job_id(cgroup) == ""


def raw(pid: int, terminal: str | None = None) -> dict:
    return {"pid": pid, "ppid": 1, "name": "sim", "exe": "/home/ann/sim", "cmdline": ["/home/ann/sim"],
            "username": "ann", "cwd": "/home/ann", "create_time": 1.0, "status": "running", "nice": 0,
            "num_threads": 8, "memory_info": SimpleNamespace(rss=1 << 20), "terminal": terminal,
            "cpu_times": SimpleNamespace(user=1.0, system=0.0), "uids": SimpleNamespace(real=1000)}


@pytest.mark.skipif(not ON_LINUX, reason="cgroup, environ and NSpid are read only on Linux")
def test_slurm_job_id_from_environ_when_the_cgroup_does_not_name_it(tmp_path: Path):
    plain, cgrouped = tmp_path / "100", tmp_path / "200"
    for directory in (plain, cgrouped):
        directory.mkdir()
    (plain / "cgroup").write_text("0::/user.slice/user-1000.slice/session-3.scope\n")
    (plain / "environ").write_bytes(b"HOME=/home/ann\0SLURM_JOB_ID=5555\0SLURM_JOB_USER=ann\0")
    (cgrouped / "cgroup").write_text("0::/system.slice/slurmstepd.scope/job_6666/step_0/user/task_0\n")
    (cgrouped / "environ").write_bytes(b"SLURM_JOB_ID=1\0")
    (cgrouped / "status").write_text("Name:\tsim\nNSpid:\t200\t7\n")
    first = FirstReading(0.0, {})
    from_environ = build_process(raw(100), first, 1.0, proc_root=str(tmp_path))
    from_cgroup = build_process(raw(200, terminal="/dev/pts/4"), first, 1.0, proc_root=str(tmp_path))
    assert from_environ.slurm_job_id == "5555" and from_environ.environ["SLURM_JOB_USER"] == "ann"
    assert from_cgroup.slurm_job_id == "6666"           # the cgroup the kernel enforces beats the environment
    assert from_cgroup.terminal == "/dev/pts/4" and from_cgroup.ns_pids == [200, 7]


def busy(pid: int, **context) -> ProcessInfo:
    return ProcessInfo(pid=pid, name="sim", exe="/home/ann/bin/sim", cmdline=["/home/ann/bin/sim", "-n", "8"],
                       username="ann", cpu_percent=795.0, allowed_cpus=8, num_threads=8,
                       cgroup=context.pop("cgroup", ""), **context)


def test_findings_carry_job_container_and_terminal(compiled_rules):
    job = busy(1, slurm_job_id="4711", cgroup="/system.slice/slurmstepd.scope/job_4711/step_0")
    boxed = busy(2, container_id="3f4e5d6c7b8a", cgroup="/system.slice/docker-" + "3f4e5d6c7b8a" * 5 + "abcd.scope")
    tty = busy(3, terminal="pts/7")
    # Each also talks to a pool port, so each is a finding (load context alone is no finding).
    to_pool = [Connection(pid=pid, protocol="tcp", local_address="10.0.0.5", local_port=40000 + pid,
                          remote_address="198.51.100.7", remote_port=3333, state="ESTABLISHED") for pid in (1, 2, 3)]
    report = evaluate(Snapshot(window_seconds=30.0, processes=[job, boxed, tty], connections=to_pool), compiled_rules)
    subjects = {f.subject.pid: f.subject for f in report.findings}
    assert subjects[1].slurm_job_id == "4711" and subjects[1].cgroup.startswith("/system.slice/slurmstepd")
    assert subjects[2].container_id == "3f4e5d6c7b8a"
    assert subjects[3].terminal == "pts/7"
    reasons = {f.subject.pid: " ".join(f.reasons) for f in report.findings}
    assert "Slurm job 4711" in reasons[1]
    assert "container 3f4e5d6c7b8a" in reasons[2]
    assert "terminal pts/7" in reasons[3]


def test_no_tty_outside_slurm_is_said_and_asks_review(compiled_rules):
    loose = busy(10)
    in_job = busy(11, slurm_job_id="4711")
    ctx = Context.build(Snapshot(window_seconds=30.0, processes=[loose, in_job]), compiled_rules, Policy())
    signals = {s.subject.pid: s for s in load.signals(ctx)}
    assert "no controlling terminal and is not inside a Slurm job" in signals[10].reason
    assert signals[10].severity == Severity.LOW            # review: nobody's session, no scheduler allocation
    assert "no controlling terminal" not in signals[11].reason
    assert signals[11].severity == Severity.INFO           # the scheduler gave it these CPUs


def test_miner_in_a_container_names_the_container(compiled_rules):
    miner = ProcessInfo(pid=31, name="xmrig", exe="/xmrig/xmrig", cmdline=["/xmrig/xmrig", "-c", "/xmrig/c.json"],
                        username="root", container_id="0123456789ab", ns_pids=[31, 1],
                        cgroup="/kubepods/besteffort/pod1/" + "0123456789ab" * 5 + "cdef")
    report = evaluate(Snapshot(window_seconds=30.0, processes=[miner],
                               connections=[Connection(pid=31, protocol="tcp", local_address="10.1.0.4",
                                                       local_port=51000, remote_address="127.0.0.1",
                                                       remote_port=3333, state="ESTABLISHED")]), compiled_rules)
    [finding] = report.findings
    assert finding.severity.rank >= Severity.HIGH.rank
    assert finding.subject.container_id == "0123456789ab" and finding.subject.cgroup.startswith("/kubepods/")


def test_persistence_finding_names_the_user(compiled_rules):
    entry = PersistenceEntry(path="/var/spool/cron/crontabs/mallory", kind="cron", line=2,
                             text="@reboot /dev/shm/.s/xmrig -B", user="mallory")
    [finding] = evaluate(Snapshot(persistence=[entry]), compiled_rules).findings
    assert finding.subject.username == "mallory" and finding.subject.path.endswith("/mallory")
