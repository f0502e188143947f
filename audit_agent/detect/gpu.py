"""GPU heuristics: a busy GPU whose process is not a known ML/HPC framework, or busy with no process at all,
and a GPU process whose memory is the Ethash/KawPow DAG of some epoch.

These only ask for review or raise confidence: a GPU at 100 % is what a long
training job looks like too, and the DAG grows by 8 MiB an epoch, so "the size
of some epoch's DAG plus a context" is a band (1 to ~9 GiB), not a point: a
GPU job of that size that is not a known framework is worth a second look, no
more.
"""
from __future__ import annotations

from audit_agent.detect import Context, Signal, process_key, process_subject, rule_family
from audit_agent.detect.hashing import dag_cache_bytes, dag_dataset_bytes, dag_epochs_fitting
from audit_agent.model import Evidence, GpuDevice, GpuProcess, ProcessInfo, Severity, Subject
from audit_agent.rules.compiler import logins_from_argv
from audit_agent.rules.families import Family

RULE_UNKNOWN = "AA-GPU-001"
RULE_NO_PROCESS = "AA-GPU-002"
RULE_FAMILY = "AA-GPU-003"
RULE_DAG = "AA-GPU-004"
MiB = 1 << 20
# Beyond the dataset and cache a GPU miner holds its CUDA/OpenCL context (about 0.3-0.5 GiB on current
# drivers, counted in the process's used memory by NVML) and a few small buffers.
DAG_OVERHEAD = 768 * MiB
DAG_MAX_EPOCH = 1024            # a 9 GiB DAG: beyond every Ethash-family chain mined today


def signals(ctx: Context) -> list[Signal]:
    found = []
    busy_at = ctx.policy.thresholds.gpu_busy_percent
    on_gpu: set[int] = set()
    for device in ctx.snapshot.gpus:
        # Listed on the GPU at all is the fact, busy or not: a GPU harvester (Gigahorse, bladebit CUDA's
        # decompression) works in bursts at each signage point, and its plots stay in GPU memory between them.
        for gpu_proc in device.processes:
            proc = host_process(gpu_proc.pid, ctx)
            family = family_of(proc, ctx) if proc is not None else None
            if proc is not None and family is not None:
                found.append(family_gpu_signal(device, gpu_proc, proc, family))
                on_gpu.add(proc.pid)
    for device in ctx.snapshot.gpus:
        busy = device.utilization_percent is not None and device.utilization_percent >= busy_at
        found += dag_signals(device, busy, ctx)
        if not busy:
            continue
        if not device.processes:
            found.append(no_process_signal(device))
            continue
        for gpu_proc in device.processes:
            proc = host_process(gpu_proc.pid, ctx)
            if proc is None:
                found.append(no_process_signal(device, missing_pid=gpu_proc.pid))
                continue
            if proc.pid in on_gpu or looks_like_research(proc, ctx):
                continue
            found.append(unknown_process_signal(device, proc))
    return found


def dag_signals(device: GpuDevice, busy: bool, ctx: Context) -> list[Signal]:
    """GPU processes that are not a known framework and hold the memory of an Ethash/KawPow DAG."""
    found = []
    for gpu_proc in device.processes:
        used = gpu_proc.used_memory_bytes
        fits = dag_epochs_fitting(used, DAG_OVERHEAD, DAG_MAX_EPOCH) if used else None
        proc = host_process(gpu_proc.pid, ctx)
        if fits is None or proc is None or looks_like_research(proc, ctx):
            continue
        found.append(dag_signal(device, gpu_proc, proc, fits, busy))
    return found


def dag_signal(device: GpuDevice, gpu_proc: GpuProcess, proc: ProcessInfo, epochs: tuple[int, int],
               busy: bool) -> Signal:
    first, last = epochs
    used = (gpu_proc.used_memory_bytes or 0) / MiB
    low = (dag_dataset_bytes(first) + dag_cache_bytes(first)) / MiB
    span = f"epoch {first}" if first == last else f"epochs {first}-{last}"
    subject = process_subject(proc)
    subject.gpu_index = device.index
    return Signal(
        subject_key=process_key(proc.pid), subject=subject, rule_id=RULE_DAG,
        title="GPU memory the size of an Ethash/KawPow DAG", category="gpu",
        severity=Severity.LOW if busy else Severity.INFO, confidence=0.25 if busy else 0.1,
        reason=f"It holds {used:.0f} MiB on GPU {device.index} ({device.name}): the Ethash/KawPow dataset and "
               f"light cache of {span} ({low:.0f} MiB and up) plus a driver context, and it is not a known ML or "
               f"HPC framework" + (", with the GPU busy." if busy else "."),
        evidence=Evidence(field="gpu", value=f"GPU {device.index} {device.name}: {used:.0f} MiB used by PID {proc.pid}",
                          matched=f"DAG {span}", rule_id=RULE_DAG,
                          facts={**gpu_facts(device), "mib": round(used), "first": first, "last": last}),
        action="Ask the owner what this GPU job is; check it against the filed research systems.",
        indicator="gpu memory DAG-sized", weak=True)


def looks_like_research(proc: ProcessInfo, ctx: Context) -> bool:
    """A known ML/HPC framework. For a generic runtime whose libraries were read, only the libraries count:
    `python3 train.py` is free to type, mapping libtorch or libcudnn is what a training job does."""
    rules = ctx.rules
    if proc.libraries and rules.is_generic_runtime(proc.name, proc.exe):
        return rules.uses_framework_library(proc.libraries)
    return rules.is_framework(proc.name, proc.exe, " ".join(proc.cmdline), proc.libraries)


def family_of(proc: ProcessInfo, ctx: Context) -> Family | None:
    """The coin or farming family whose software the process is: by its name, its command line or the wallet it
    logs in with, or a family configuration it reads (a renamed `python3` harvester)."""
    rules = ctx.rules
    argv0 = proc.cmdline[0] if proc.cmdline else ""
    hits = [*rules.match_names(proc.name, proc.exe, argv0),
            *(rules.match_cmdline(" ".join(proc.cmdline)) if proc.cmdline else []),
            *rules.match_wallets(logins_from_argv(proc.cmdline))]
    for hit in hits:
        family = rules.families.families.get(rule_family(hit.rule))
        if family is not None and hit.rule.severity != Severity.INFO:       # a chain node alone is no farmer
            return family
    from audit_agent.detect.families import config_pids
    for config in ctx.snapshot.family_configs:
        if proc.pid in config_pids(config, ctx) and config.family in rules.families.families:
            return rules.families.families[config.family]
    return None


def family_gpu_signal(device: GpuDevice, gpu_proc: GpuProcess, proc: ProcessInfo, family: Family) -> Signal:
    subject = process_subject(proc)
    subject.gpu_index = device.index
    memory = round((gpu_proc.used_memory_bytes or 0) / MiB)
    busy = f", the GPU {device.utilization_percent:.0f}% busy" if device.utilization_percent is not None else ""
    return Signal(
        subject_key=process_key(proc.pid), subject=subject, rule_id=RULE_FAMILY,
        title="GPU used by mining or storage-farming software", category="gpu",
        severity=Severity.MEDIUM, confidence=0.5,
        reason=f"GPU {device.index} ({device.name}) runs {proc.name or gpu_proc.name} (pid {proc.pid}), {family.name} "
               f"{family.activity} software, with {memory} MiB of GPU memory{busy}: the GPU serves {family.activity}, "
               "not research.",
        evidence=Evidence(field="gpu", value=f"GPU {device.index} {device.name}: {proc.name or gpu_proc.name} "
                                             f"(pid {proc.pid}) {memory} MiB{busy}",
                          matched=f"{family.id.lower()} {family.activity} on GPU {device.index}", rule_id=RULE_FAMILY,
                          facts={**gpu_facts(device), "family": family.name,
                                 "memory_mib": memory, "process": proc.name or gpu_proc.name}),
        action=f"Find who runs the {family.name} software on this GPU; a GPU lab server's accelerators are for filed "
               "research, so stop it and keep its configuration as evidence.",
        indicator=f"{family.id.lower()} on gpu", identifies=family.id)


def host_process(pid: int, ctx: Context) -> ProcessInfo | None:
    """NVML reports host pids; a tool inside a container may report the namespace pid, which maps back
    through NSpid when exactly one process has it."""
    return ctx.by_pid.get(pid) or ctx.by_namespace_pid.get(pid)


def unknown_process_signal(device: GpuDevice, proc: ProcessInfo) -> Signal:
    subject = process_subject(proc)
    subject.gpu_index = device.index
    util = f"{device.utilization_percent:.0f}%"
    return Signal(
        subject_key=process_key(proc.pid), subject=subject, rule_id=RULE_UNKNOWN,
        title="GPU busy with a process that is not a known ML or HPC framework", category="gpu",
        severity=Severity.LOW, confidence=0.3,
        reason=f"GPU {device.index} ({device.name}) was {util} busy over the window, running a process "
               "that is not a known ML or HPC framework.",
        evidence=Evidence(field="gpu", value=f"GPU {device.index} {device.name}: {util}",
                          matched="busy GPU, unknown workload", rule_id=RULE_UNKNOWN, facts=gpu_facts(device)),
        action="Ask the owner what this GPU job is; check it against the filed research systems.",
        indicator="gpu busy unknown", weak=True)


def no_process_signal(device: GpuDevice, missing_pid: int | None = None) -> Signal:
    util = f"{device.utilization_percent:.0f}%"
    detail = (f"its compute process {missing_pid} is not visible in /proc" if missing_pid is not None
              else "no compute process is listed for it")
    return Signal(
        subject_key=f"gpu:{device.index}", subject=Subject(kind="gpu", gpu_index=device.index, name=device.name,
                                                            pid=missing_pid),
        rule_id=RULE_NO_PROCESS, title="GPU busy with no visible process", category="gpu",
        severity=Severity.MEDIUM, confidence=0.5,
        reason=f"GPU {device.index} ({device.name}) was {util} busy over the window but {detail}: "
               "a process may be hidden, or running in another pid namespace.",
        evidence=Evidence(field="gpu", value=f"GPU {device.index} {device.name}: {util}",
                          matched="busy GPU without visible process", rule_id=RULE_NO_PROCESS,
                          facts={**gpu_facts(device), "pid": "" if missing_pid is None else missing_pid}),
        action="Inspect the GPU with nvidia-smi from the host pid namespace; look for hidden processes.",
        indicator="gpu busy no process", weak=True)


def gpu_facts(device: GpuDevice) -> dict[str, object]:
    """What the reports phrase in each language (rules.<lang>.yaml `facts`)."""
    return {"index": device.index, "model": device.name, "percent": round(device.utilization_percent or 0)}
