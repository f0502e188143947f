"""GPU: the collector with a fake NVML and a fake nvidia-smi, and the heuristics on what they report.

This machine has no GPU: NVML is a small fake object handed to GpuSampler(nvml_loader=...),
nvidia-smi is a shell script that prints canned CSV.
"""
from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from audit_agent.collect.gpu import GpuSampler, parse_smi_apps, parse_smi_gpus
from audit_agent.detect import Context
from audit_agent.detect import gpu as gpu_detect
from audit_agent.evaluate import evaluate
from audit_agent.model import CoverageStatus, GpuDevice, GpuProcess, ProcessInfo, Severity, Snapshot, Verdict
from audit_agent.policy import Policy

SMI_GPUS = """0, NVIDIA A100-SXM4-80GB, GPU-aaaa, 550.54.15, 81920, 70000, 99
1, NVIDIA A100-SXM4-80GB, GPU-bbbb, 550.54.15, 81920, 3, 97
2, NVIDIA A100-SXM4-80GB, GPU-cccc, 550.54.15, 81920, [N/A], [Not Supported]
"""
SMI_APPS = """GPU-aaaa, 4242, /tmp/.x/worker, 65536
GPU-aaaa, 5151, python, 4096
GPU-cccc, 777, /usr/bin/gmx, [N/A]
GPU-zzzz, 888, ghost, 1
"""


# ---------------------------------------------------------------- fakes

class FakeNvml:
    """Just enough of pynvml: devices with utilisation, memory and running processes."""

    def __init__(self, devices: list[dict], fail_init: Exception | None = None) -> None:
        self.devices = devices
        self.fail_init = fail_init
        self.shut_down = False

    def nvmlInit(self):
        if self.fail_init:
            raise self.fail_init

    def nvmlShutdown(self):
        self.shut_down = True

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self.devices[index]

    def nvmlDeviceGetName(self, handle):
        return handle["name"].encode()

    def nvmlDeviceGetUUID(self, handle):
        return handle["uuid"]

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=80 << 30, used=handle.get("used", 0))

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=handle["util"], memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid, usedGpuMemory=1 << 30) for pid in handle.get("compute", [])]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        if handle.get("graphics_fails"):
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return [SimpleNamespace(pid=pid, usedGpuMemory=None) for pid in handle.get("graphics", [])]


def fake_smi(tmp_path: Path, gpus: str = SMI_GPUS, apps: str = SMI_APPS, exit_code: int = 0,
             stderr: str = "") -> str:
    """An executable nvidia-smi stand-in printing canned CSV for --query-gpu and --query-compute-apps."""
    (tmp_path / "gpus.csv").write_text(gpus)
    (tmp_path / "apps.csv").write_text(apps)
    script = tmp_path / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
if [ {exit_code} -ne 0 ]; then echo "{stderr}" >&2; exit {exit_code}; fi
case "$1" in
  --query-gpu=*) cat "{tmp_path}/gpus.csv" ;;
  --query-compute-apps=*) cat "{tmp_path}/apps.csv" ;;
  *) exit 9 ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def no_nvml():
    raise ImportError("No module named 'pynvml'")


def run_sampler(sampler: GpuSampler, samples: int = 3):
    sampler.start()
    readings = [sampler.sample() for _ in range(samples)]
    devices, coverage = sampler.finish()
    return readings, devices, coverage


# ---------------------------------------------------------------- collector

def test_parsers_read_smi_csv_with_missing_values():
    devices = parse_smi_gpus(SMI_GPUS + "garbage line\n\n")
    assert [d.index for d in devices] == [0, 1, 2]
    assert devices[0].memory_used_bytes == 70000 * 1024 * 1024 and devices[0].utilization_percent == 99.0
    assert devices[2].memory_used_bytes is None and devices[2].utilization_percent is None
    assert devices[1].uuid == "GPU-bbbb" and devices[1].driver == "550.54.15"
    apps = parse_smi_apps(SMI_APPS + "GPU-aaaa, notapid, x, 1\n")
    assert [(uuid, p.pid) for uuid, p in apps] == [("GPU-aaaa", 4242), ("GPU-aaaa", 5151), ("GPU-cccc", 777),
                                                  ("GPU-zzzz", 888)]
    assert apps[2][1].used_memory_bytes is None and apps[0][1].name == "/tmp/.x/worker"


def test_nvml_devices_processes_and_window_mean():
    nvml = FakeNvml([
        {"name": "NVIDIA H100", "uuid": "GPU-1", "util": 99, "compute": [10, 11], "graphics": [11]},
        {"name": "NVIDIA H100", "uuid": "GPU-2", "util": 0, "graphics_fails": True},
    ])
    readings, devices, coverage = run_sampler(GpuSampler(nvml_loader=lambda: nvml))
    assert readings == [[99.0, 0.0]] * 3
    assert coverage.status == CoverageStatus.OK and "nvml" in coverage.reason and coverage.inspected == 2
    assert [p.pid for p in devices[0].processes] == [10, 11]            # de-duplicated across getters
    assert devices[0].utilization_percent == 99.0 and devices[0].utilization_samples == [99.0] * 3
    assert devices[0].name == "NVIDIA H100" and devices[0].driver == "550.54.15"
    assert devices[1].processes == []
    assert nvml.shut_down


def test_no_driver_is_skipped_with_the_reason(mocker):
    mocker.patch("audit_agent.collect.gpu.find_on_path", return_value=None)
    readings, devices, coverage = run_sampler(GpuSampler(nvml_loader=no_nvml))
    assert readings == [[], [], []] and devices == []
    assert coverage.status == CoverageStatus.SKIPPED
    assert "nvidia-ml-py is not installed" in coverage.reason and "nvidia-smi" in coverage.reason


def test_nvml_failure_falls_back_to_nvidia_smi(tmp_path: Path):
    nvml = FakeNvml([], fail_init=RuntimeError("NVML_ERROR_DRIVER_NOT_LOADED"))
    sampler = GpuSampler(nvml_loader=lambda: nvml, smi_path=fake_smi(tmp_path))
    readings, devices, coverage = run_sampler(sampler, samples=2)
    assert sampler.backend == "nvidia-smi"
    assert coverage.status == CoverageStatus.OK and "nvidia-smi" in coverage.reason
    assert readings[0] == [99.0, 97.0, 0.0]
    assert [[p.pid for p in d.processes] for d in devices] == [[4242, 5151], [], [777]]   # unknown uuid dropped


def test_nvidia_smi_failing_is_an_error_coverage_not_a_crash(tmp_path: Path):
    smi = fake_smi(tmp_path, exit_code=6, stderr="NVIDIA-SMI has failed because it couldn't communicate with the driver")
    readings, devices, coverage = run_sampler(GpuSampler(nvml_loader=no_nvml, smi_path=smi))
    assert readings == [[], [], []]                                     # a failing sample does not end the scan
    assert devices == [] and coverage.status == CoverageStatus.ERROR
    assert "couldn't communicate with the driver" in coverage.reason


def test_driver_without_gpus_is_not_applicable():
    _, devices, coverage = run_sampler(GpuSampler(nvml_loader=lambda: FakeNvml([])))
    assert devices == [] and coverage.status == CoverageStatus.NOT_APPLICABLE


# ---------------------------------------------------------------- heuristics

def gpu_snapshot(processes: list[ProcessInfo], devices: list[GpuDevice]) -> Snapshot:
    return Snapshot(collected_at=1_700_000_000.0, window_seconds=30.0, processes=processes, gpus=devices)


def device(index: int, util: float | None, pids: list[int] = ()) -> GpuDevice:
    return GpuDevice(index=index, name="NVIDIA A100-SXM4-80GB", utilization_percent=util,
                     processes=[GpuProcess(pid=pid) for pid in pids])


def test_unknown_process_at_99_percent_asks_review_never_high(compiled_rules):
    worker = ProcessInfo(pid=4242, name="worker", exe="/srv/gpu/worker", cmdline=["/srv/gpu/worker", "--fast"],
                         username="bob", terminal="pts/2")
    report = evaluate(gpu_snapshot([worker], [device(0, 99.0, [4242]), device(1, 3.0)]), compiled_rules)
    [finding] = report.findings
    assert finding.subject.pid == 4242 and finding.subject.gpu_index == 0
    assert finding.rule_ids == [gpu_detect.RULE_UNKNOWN]
    assert finding.severity == Severity.LOW and finding.confidence <= 0.6
    assert report.verdict == Verdict.NEEDS_REVIEW


def test_busy_gpu_with_no_process_is_a_review_item(compiled_rules):
    report = evaluate(gpu_snapshot([], [device(3, 96.0)]), compiled_rules)
    [finding] = report.findings
    assert finding.subject.kind == "gpu" and finding.subject.gpu_index == 3
    assert finding.severity == Severity.MEDIUM and report.verdict == Verdict.NEEDS_REVIEW
    assert "no compute process" in finding.reasons[0]


def test_gpu_pid_missing_from_proc_is_a_review_item(compiled_rules):
    report = evaluate(gpu_snapshot([], [device(0, 99.0, [31337])]), compiled_rules)
    [finding] = report.findings
    assert finding.subject.kind == "gpu" and finding.subject.pid == 31337
    assert "31337 is not visible" in finding.reasons[0]


@pytest.mark.parametrize("name, cmdline", [
    ("python", ["python", "train.py", "--model", "llama-7b", "--bf16"]),
    ("torchrun", ["/opt/conda/bin/torchrun", "--nproc_per_node=4", "pretrain.py"]),
    ("python3", ["python3", "-m", "torch.distributed.run", "--nnodes=2", "main.py"]),
])
def test_pytorch_training_job_is_not_flagged_high(name, cmdline, compiled_rules):
    job = ProcessInfo(pid=6000, name=name, exe="/opt/conda/bin/python3.11", cmdline=cmdline, username="carol",
                      cpu_percent=400.0, allowed_cpus=16, slurm_job_id="4711")
    report = evaluate(gpu_snapshot([job], [device(0, 99.0, [6000]), device(1, 99.0, [6000])]), compiled_rules)
    assert all(f.severity.rank < Severity.HIGH.rank for f in report.findings)
    assert report.findings == []            # ideally: nothing at all


def test_gpu_pid_maps_to_a_containerised_process_through_nspid(compiled_rules):
    # NVML reports the host pid 91234; the process we saw in /proc is the same one, pid 12 in its container.
    inside = ProcessInfo(pid=91234, name="miner", exe="/app/miner", cmdline=["/app/miner"],
                         container_id="3f4e5d6c7b8a", ns_pids=[91234, 12])
    ctx = Context.build(gpu_snapshot([inside], [device(0, 99.0, [91234])]), compiled_rules, Policy())
    assert gpu_detect.host_process(91234, ctx) is inside
    assert gpu_detect.host_process(12, ctx) is inside                   # a container-side pid maps back too
    [signal] = gpu_detect.signals(ctx)
    assert signal.subject.container_id == "3f4e5d6c7b8a" and signal.subject.gpu_index == 0


def test_container_pid_reported_by_a_gpu_tool_inside_the_namespace(compiled_rules):
    # Seen from a container, a tool may report the namespace pid (12); the host listing has it in NSpid.
    inside = ProcessInfo(pid=91234, name="worker", exe="/app/worker", cmdline=["/app/worker"],
                         container_id="3f4e5d6c7b8a", ns_pids=[91234, 12])
    report = evaluate(gpu_snapshot([inside], [device(0, 99.0, [12])]), compiled_rules)
    [finding] = report.findings
    assert finding.subject.pid == 91234 and finding.subject.kind == "process"
    assert finding.subject.container_id == "3f4e5d6c7b8a"


def test_idle_or_unknown_utilisation_is_quiet(compiled_rules):
    worker = ProcessInfo(pid=1, name="worker", exe="/srv/worker", cmdline=["/srv/worker"])
    snap = gpu_snapshot([worker], [device(0, 20.0, [1]), device(1, None, [1]), device(2, 89.9)])
    assert gpu_detect.signals(Context.build(snap, compiled_rules, Policy())) == []


def test_an_inner_pid_shared_by_two_containers_names_nobody(compiled_rules):
    """Both containers have a pid 7: a GPU pid 7 that is not a host pid must not be pinned on either."""
    first = ProcessInfo(pid=5001, name="worker", exe="/app/worker", cmdline=["/app/worker"], ns_pids=[5001, 7])
    second = ProcessInfo(pid=5002, name="worker", exe="/app/worker", cmdline=["/app/worker"], ns_pids=[5002, 7])
    ctx = Context.build(gpu_snapshot([first, second], [device(0, 99.0, [7])]), compiled_rules, Policy())
    assert gpu_detect.host_process(7, ctx) is None
    [signal] = gpu_detect.signals(ctx)
    assert signal.rule_id == gpu_detect.RULE_NO_PROCESS          # the busy GPU still asks for review


def test_nvidia_smi_is_found_on_path_as_which_finds_it(tmp_path: Path, monkeypatch):
    import shutil
    from audit_agent.collect.gpu import find_on_path
    empty, tools, other = tmp_path / "empty", tmp_path / "tools", tmp_path / "other"
    for folder in (empty, tools, other):
        folder.mkdir()
    (tools / "nvidia-smi").write_text("#!/bin/sh\n")
    (tools / "nvidia-smi").chmod(0o644)                 # not executable: passed over
    (other / "nvidia-smi").write_text("#!/bin/sh\n")
    (other / "nvidia-smi").chmod(0o755)
    (empty / "nvidia-smi").mkdir()                      # a folder of that name: passed over
    for path in (f"{empty}:{tools}:{other}", f"{empty}", f"{other}:{tools}"):
        monkeypatch.setenv("PATH", path)
        assert find_on_path("nvidia-smi") == shutil.which("nvidia-smi")
    monkeypatch.setenv("PATH", f"{tools}:{other}")
    assert find_on_path("nvidia-smi") == str(other / "nvidia-smi")
    monkeypatch.chdir(other)
    monkeypatch.setenv("PATH", f":.:{empty}")           # the current folder, twice: not looked in
    assert find_on_path("nvidia-smi") is None and shutil.which("nvidia-smi") is not None
