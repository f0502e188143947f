"""NVIDIA GPUs: NVML (nvidia-ml-py, optional) first, `nvidia-smi --query-*` CSV as fallback.

Utilisation is sampled over the window like CPU; the compute processes of each
device come with their (host) pid and memory. No driver is coverage `skipped`.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from audit_agent.collect.coverage import because, coverage
from audit_agent.model import Coverage, CoverageDetail, CoverageStatus, GpuDevice, GpuProcess

MIB = 1024 * 1024
SMI_TIMEOUT = 10
QUERY_GPU = "index,name,uuid,driver_version,memory.total,memory.used,utilization.gpu"
QUERY_APPS = "gpu_uuid,pid,process_name,used_memory"


class GpuSampler:
    """Open a backend, take utilisation samples during the window, then read devices and processes."""

    def __init__(self, nvml_loader: Callable[[], Any] | None = None, smi_path: str | None = None) -> None:
        self._load_nvml = nvml_loader or _import_nvml
        self._smi_path = smi_path
        self.backend = ""
        self.reasons: list[CoverageDetail] = []     # why there is no backend
        self._nvml: Any = None
        self._samples: dict[int, list[float]] = {}

    def start(self) -> None:
        try:
            nvml = self._load_nvml()
            nvml.nvmlInit()
            self._nvml, self.backend = nvml, "nvml"
            return
        except ImportError:
            self.reasons = [because("nvml_missing")]
        except Exception as exc:        # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.reasons = [because("nvml_unavailable", error=str(exc))]
        smi = self._smi_path or find_on_path("nvidia-smi")
        if smi:
            self._smi_path, self.backend = smi, "nvidia-smi"
        else:
            self.reasons.append(because("no_nvidia_smi"))

    def sample(self) -> list[float]:
        """One utilisation reading per device (percent); [] when there is no backend."""
        if not self.backend:
            return []
        try:
            readings = self._nvml_utilisation() if self.backend == "nvml" else \
                [d.utilization_percent or 0.0 for d in self._smi_devices()]
        except Exception:               # a failing sample must not end the scan
            return []
        for index, value in enumerate(readings):
            self._samples.setdefault(index, []).append(float(value))
        return readings

    def finish(self) -> tuple[list[GpuDevice], Coverage]:
        if not self.backend:
            return [], coverage("gpu", CoverageStatus.SKIPPED, *self.reasons)
        try:
            devices = self._nvml_devices() if self.backend == "nvml" else self._smi_devices(with_processes=True)
        except Exception as exc:
            return [], coverage("gpu", CoverageStatus.ERROR,
                                because("gpu_backend_failed", backend=self.backend, error=str(exc)))
        finally:
            if self._nvml is not None:
                try:
                    self._nvml.nvmlShutdown()
                except Exception:
                    pass
        for device in devices:
            samples = self._samples.get(device.index)
            if samples:
                device.utilization_samples = [round(s, 1) for s in samples]
                device.utilization_percent = round(sum(samples) / len(samples), 1)
        if not devices:
            return [], coverage("gpu", CoverageStatus.NOT_APPLICABLE, because("no_nvidia_gpu", backend=self.backend))
        return devices, coverage("gpu", CoverageStatus.OK, because("gpu_backend", backend=self.backend),
                                 inspected=len(devices))

    # -- NVML
    def _nvml_utilisation(self) -> list[float]:
        nvml = self._nvml
        return [float(nvml.nvmlDeviceGetUtilizationRates(nvml.nvmlDeviceGetHandleByIndex(i)).gpu)
                for i in range(nvml.nvmlDeviceGetCount())]

    def _nvml_devices(self) -> list[GpuDevice]:
        nvml = self._nvml
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            device = GpuDevice(index=index, name=_text(nvml.nvmlDeviceGetName(handle)),
                               uuid=_text(nvml.nvmlDeviceGetUUID(handle)), driver=driver,
                               memory_total_bytes=int(memory.total), memory_used_bytes=int(memory.used),
                               utilization_percent=float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
            seen = set()
            for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                try:
                    running = getattr(nvml, getter)(handle)
                except Exception:
                    continue
                for proc in running:
                    if proc.pid in seen:
                        continue
                    seen.add(proc.pid)
                    used = getattr(proc, "usedGpuMemory", None)
                    device.processes.append(GpuProcess(pid=int(proc.pid), used_memory_bytes=int(used) if used else None))
            devices.append(device)
        return devices

    # -- nvidia-smi
    def _run_smi(self, *args: str) -> str:
        import subprocess
        result = subprocess.run([self._smi_path or "nvidia-smi", *args], capture_output=True, text=True,
                                timeout=SMI_TIMEOUT, check=False)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip().splitlines()[0] if result.stderr.strip()
                               else f"exit code {result.returncode}")
        return result.stdout

    def _smi_devices(self, with_processes: bool = False) -> list[GpuDevice]:
        devices = parse_smi_gpus(self._run_smi(f"--query-gpu={QUERY_GPU}", "--format=csv,noheader,nounits"))
        if with_processes:
            apps = parse_smi_apps(self._run_smi(f"--query-compute-apps={QUERY_APPS}", "--format=csv,noheader,nounits"))
            by_uuid = {device.uuid: device for device in devices}
            for uuid, process in apps:
                if uuid in by_uuid:
                    by_uuid[uuid].processes.append(process)
        return devices


def _import_nvml() -> Any:
    import pynvml  # noqa: PLC0415 - optional extra, imported only when a scan looks at GPUs
    return pynvml


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return None         # "[N/A]", "[Not Supported]"


def parse_smi_gpus(text: str) -> list[GpuDevice]:
    devices = []
    for row in csv_rows(text):
        if len(row) < 7 or not row[0].strip().isdigit():
            continue
        total, used, util = _number(row[4]), _number(row[5]), _number(row[6])
        devices.append(GpuDevice(index=int(row[0]), name=row[1].strip(), uuid=row[2].strip(), driver=row[3].strip(),
                                 memory_total_bytes=int(total * MIB) if total is not None else None,
                                 memory_used_bytes=int(used * MIB) if used is not None else None,
                                 utilization_percent=util))
    return devices


def parse_smi_apps(text: str) -> list[tuple[str, GpuProcess]]:
    apps = []
    for row in csv_rows(text):
        if len(row) < 4 or not row[1].strip().isdigit():
            continue
        used = _number(row[3])
        apps.append((row[0].strip(), GpuProcess(pid=int(row[1]), name=row[2].strip(),
                                                used_memory_bytes=int(used * MIB) if used is not None else None)))
    return apps


# A host without NVIDIA tools (most) runs none of nvidia-smi: what only running and parsing it needs (subprocess,
# csv and shutil, which brings bz2 and lzma: ~11 ms of a scan's start-up) is imported when it is run.

def find_on_path(name: str) -> str | None:
    """The first executable file `name` in the absolute folders of PATH, as shutil.which finds it, except that
    an empty or relative entry is passed over: the agent runs as root, from a folder someone else may own."""
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder, name)
        if os.path.isabs(folder) and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def csv_rows(text: str) -> list[list[str]]:
    import csv
    import io
    return list(csv.reader(io.StringIO(text), skipinitialspace=True))
