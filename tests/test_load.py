"""Load heuristics: busy unknown executables and the Stratum shape raise confidence, never condemn alone."""
from __future__ import annotations

import pytest

from audit_agent.detect import Context
from audit_agent.detect import load
from audit_agent.evaluate import evaluate
from audit_agent.model import (Connection, GpuDevice, GpuProcess, ProcessInfo, Severity, Snapshot, Verdict)
from audit_agent.policy import Policy, Thresholds, load_policy

COLLECTED_AT = 1_700_000_000.0
WINDOW = 60.0


def pool_port(rules) -> int:
    ports = sorted(p for p in rules.pool_ports if p not in rules.generic_ports)
    if not ports:
        pytest.skip("the rule pack lists no pool port")
    return 3333 if 3333 in ports else ports[0]


def busy(pid: int = 500, exe: str = "/home/ann/sim/a.out", cpus: int = 8, percent: float | None = None,
         terminal: str = "", **extra) -> ProcessInfo:
    return ProcessInfo(pid=pid, name=exe.rsplit("/", 1)[-1], exe=exe, cmdline=[exe, *extra.pop("args", [])],
                       username="ann", cpu_percent=percent if percent is not None else 99.0 * cpus,
                       allowed_cpus=cpus, num_threads=cpus, terminal=terminal, create_time=COLLECTED_AT - 3600,
                       **extra)


def outbound(pid: int, remote: str = "127.0.0.1", port: int = 3333, local_port: int = 45000, **extra) -> Connection:
    return Connection(pid=pid, protocol="tcp", local_address="10.0.0.5", local_port=local_port,
                      remote_address=remote, remote_port=port, state="ESTABLISHED", **extra)


def snapshot(processes, connections=(), gpus=(), window: float = WINDOW) -> Snapshot:
    return Snapshot(collected_at=COLLECTED_AT, window_seconds=window, processes=list(processes),
                    connections=list(connections), gpus=list(gpus))


def load_signals(snap: Snapshot, rules, policy: Policy | None = None):
    return load.signals(Context.build(snap, rules, policy or Policy()))


def finding_for(report, pid: int):
    found = [f for f in report.findings if f.subject.pid == pid]
    assert len(found) <= 1
    return found[0] if found else None


def test_busy_unknown_binary_alone_is_not_high(compiled_rules):
    # In someone's terminal session: context only, no finding at all (heavy research must stay quiet).
    attended = evaluate(snapshot([busy(terminal="pts/3")]), compiled_rules)
    assert finding_for(attended, 500) is None and attended.verdict == Verdict.COMPLIANT
    # Nobody's session, no scheduler job: asks for review, never condemns.
    report = evaluate(snapshot([busy()]), compiled_rules)
    finding = finding_for(report, 500)
    assert finding is not None
    assert finding.rule_ids == [load.RULE_BUSY]
    assert finding.severity.rank < Severity.HIGH.rank
    assert report.verdict == Verdict.NEEDS_REVIEW
    assert any("no controlling terminal" in reason for reason in finding.reasons)


def test_busy_with_pool_port_and_no_tty_raises_confidence(compiled_rules):
    port = pool_port(compiled_rules)
    alone = finding_for(evaluate(snapshot([busy()]), compiled_rules), 500)
    report = evaluate(snapshot([busy()], [outbound(500, port=port)]), compiled_rules)
    finding = finding_for(report, 500)
    assert {load.RULE_BUSY, load.RULE_STRATUM} <= set(finding.rule_ids)
    assert len(finding.rule_ids) >= 3                       # plus the pool-port signal of detect/process.py
    assert finding.confidence > alone.confidence
    assert finding.severity.rank < Severity.HIGH.rank       # heuristics together still only ask for review
    assert report.verdict == Verdict.NEEDS_REVIEW
    assert any("no controlling terminal and is not inside a Slurm job" in r for r in finding.reasons)
    assert f"127.0.0.1:{port}" in finding.subject.connections


def test_suspicious_executable_asks_for_review(compiled_rules):
    [signal] = load_signals(snapshot([busy(exe="/dev/shm/.k/kworker", terminal="pts/1")]), compiled_rules)
    assert signal.severity == Severity.LOW and signal.weak
    assert "world-writable" in signal.reason and "hidden path" in signal.reason


def test_inside_a_slurm_job_is_information_only(compiled_rules):
    proc = busy(slurm_job_id="81234", cgroup="/system.slice/slurmstepd.scope/job_81234/step_0")
    [signal] = load_signals(snapshot([proc]), compiled_rules)
    assert signal.severity == Severity.INFO
    assert "Slurm job 81234" in signal.reason
    assert signal.subject.slurm_job_id == "81234"


def test_deleted_packaged_executable_is_weak(compiled_rules):
    proc = busy(exe="/usr/bin/rsync", exe_deleted=True)
    [signal] = load_signals(snapshot([proc]), compiled_rules)
    assert signal.severity == Severity.INFO
    assert "upgrade" in signal.reason
    [deleted_elsewhere] = load_signals(snapshot([busy(exe="/srv/x/worker", exe_deleted=True)]), compiled_rules)
    assert deleted_elsewhere.severity == Severity.LOW and "deleted" in deleted_elsewhere.reason


@pytest.mark.parametrize("cmdline", [
    ["torchrun", "--nproc_per_node=8", "train.py", "--epochs", "90"],
    ["python", "train.py", "--config", "configs/resnet50.yaml"],
    ["gmx", "mdrun", "-deffnm", "md_0_1", "-nt", "32"],
])
def test_known_research_workloads_are_quiet(cmdline, compiled_rules):
    exe = {"torchrun": "/opt/conda/bin/python3.11", "python": "/opt/conda/bin/python3.11"}.get(cmdline[0],
                                                                                             "/usr/bin/gmx")
    proc = ProcessInfo(pid=900, name=cmdline[0], exe=exe, cmdline=cmdline, cpu_percent=3180.0, allowed_cpus=32,
                       create_time=COLLECTED_AT - 86400)
    gpu = GpuDevice(index=0, name="NVIDIA A100", utilization_percent=99.0, processes=[GpuProcess(pid=900)])
    snap = snapshot([proc], [outbound(900, remote="10.0.0.9", port=29500)], [gpu])
    assert load_signals(snap, compiled_rules) == []
    report = evaluate(snap, compiled_rules)
    assert all(f.severity.rank < Severity.HIGH.rank for f in report.findings)


def test_interpreter_running_a_script_from_tmp_is_not_exempt(compiled_rules):
    proc = ProcessInfo(pid=901, name="python3", exe="/usr/bin/python3.11", cmdline=["python3", "/tmp/.x/m.py"],
                       cpu_percent=790.0, allowed_cpus=8, create_time=COLLECTED_AT - 600)
    assert [s.rule_id for s in load_signals(snapshot([proc]), compiled_rules)] == [load.RULE_BUSY]


def test_short_window_is_not_judged(compiled_rules):
    snap = snapshot([busy()], [outbound(500)], window=1.0)
    assert load_signals(snap, compiled_rules) == []


def test_not_busy_enough_is_quiet(compiled_rules):
    # 4 of 8 allowed CPUs: below cpu_busy_fraction
    assert load_signals(snapshot([busy(percent=400.0)], [outbound(500)]), compiled_rules) == []


def test_thresholds_come_from_the_policy(tmp_path, compiled_rules):
    config = tmp_path / "config.yaml"
    config.write_text("thresholds:\n  cpu_busy_fraction: 0.4\n  stratum_max_connections: 1\n"
                      "  stratum_count_loopback: 0\n")
    policy = load_policy(config)
    assert policy.thresholds.cpu_busy_fraction == 0.4 and policy.thresholds.stratum_count_loopback == 0
    snap = snapshot([busy(percent=400.0)], [outbound(500)])
    assert [s.rule_id for s in load_signals(snap, compiled_rules, policy)] == [load.RULE_BUSY]   # loopback ignored
    two = snapshot([busy()], [outbound(500, remote="203.0.113.5"), outbound(500, remote="203.0.113.6")])
    assert load.RULE_STRATUM not in [s.rule_id for s in load_signals(two, compiled_rules, policy)]
    assert load.RULE_STRATUM in [s.rule_id for s in load_signals(two, compiled_rules)]        # default allows 2


def test_stratum_shape_needs_few_outbound_low_traffic_connections(compiled_rules):
    def stratum(connections, proc=None):
        return [s for s in load_signals(snapshot([proc or busy()], connections), compiled_rules)
                if s.rule_id == load.RULE_STRATUM]

    many = [outbound(500, remote=f"203.0.113.{i}", local_port=45000 + i) for i in range(5)]
    assert stratum(many) == []
    inbound = [outbound(500, remote="10.1.1.1", port=51000, local_port=8888)]     # someone dialled our 8888
    assert stratum(inbound) == []
    bulk = [outbound(500, remote="203.0.113.7", port=443, bytes_sent=10_000_000, bytes_received=900_000_000)]
    assert stratum(bulk) == []
    [quiet] = stratum([outbound(500, remote="203.0.113.7", port=443, bytes_sent=6000, bytes_received=9000)])
    assert "little traffic" in quiet.reason and quiet.confidence > 0.3
    born_late = busy()
    born_late.create_time = COLLECTED_AT + 5
    assert stratum([outbound(500, remote="203.0.113.7", port=443)], born_late) == []


def test_saturated_gpu_with_one_connection_is_stratum_like(compiled_rules):
    proc = ProcessInfo(pid=700, name="worker", exe="/srv/bin/worker", cmdline=["/srv/bin/worker"], cpu_percent=12.0,
                       allowed_cpus=16, create_time=COLLECTED_AT - 7200)
    gpu = GpuDevice(index=2, name="NVIDIA A100", utilization_percent=98.0, processes=[GpuProcess(pid=700)])
    [signal] = load_signals(snapshot([proc], [outbound(700, remote="198.51.100.4", port=443)], [gpu]),
                            compiled_rules)
    assert signal.rule_id == load.RULE_STRATUM and signal.subject.gpu_index == 2
    report = evaluate(snapshot([proc], [outbound(700, remote="198.51.100.4", port=443)], [gpu]), compiled_rules)
    finding = finding_for(report, 700)
    assert finding.severity.rank < Severity.HIGH.rank and "AA-GPU-001" in finding.rule_ids


def test_default_thresholds_are_explicit():
    thresholds = Thresholds()
    assert 0 < thresholds.cpu_busy_fraction <= 1 and thresholds.min_window_seconds > 0
    assert thresholds.stratum_max_connections >= 1 and thresholds.stratum_max_bytes_per_second > 0
