"""collect: the only stage that touches the host. Builds a Snapshot, recording each check's coverage."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Protocol

import msgspec
from msgspec import Struct, field

from audit_agent import __version__
from audit_agent.collect import bounds, deadline
from audit_agent.collect.gpu import GpuSampler
from audit_agent.collect.host import collect_host
from audit_agent.collect.network import collect_connections
from audit_agent.collect.proc_facts import ProcFacts
from audit_agent.collect.processes import FirstReading, first_reading, read_processes
from audit_agent.collect.coverage import because, coverage
from audit_agent.model import Coverage, CoverageStatus, LoadSample, ProcessInfo, Snapshot
from audit_agent.redact import cap

Progress = Callable[[str, float], None]     # (what is happening, fraction of the window done 0..1)
SAMPLE_EVERY = 0.5
DEFAULT_TIMEOUT = 600.0     # well under the daily timer; a scan of a big host takes under a minute
STEP_BUDGET = 240.0


class ProcessSource(Protocol):
    """Where a cycle's processes come from when not a fresh full read (watch: incremental.py)."""

    def read(self, first: FirstReading) -> tuple[list[ProcessInfo], Coverage]: ...

    def coverage(self) -> Coverage: ...


class CollectOptions(Struct):
    window: float = 5.0
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    etc_root: str = "/etc"
    signature_strings: list[str] = field(default_factory=list)   # what the executable scanner looks for
    rules_fingerprint: str | None = None     # the pack's (pack_cache): keys results kept between runs
    yara_sources: dict[str, str] = field(default_factory=dict)   # the active pack's yara/*.yar texts
    progress: Progress | None = None
    gpu_sampler: GpuSampler | None = None
    scan_binaries: bool = True
    check_stealth: bool = True
    check_persistence: bool = True
    process_source: ProcessSource | None = None     # None: read every process in full
    socket_sample: Any = None       # netns.SocketSample taken when the window starts (connection age)
    proc_facts: Any = None          # proc_facts.ProcFacts: what the process reader's one walk of each process saw
    families: Any = None            # rules.families.Family list; None: the default pack's
    check_families: bool = True     # family configs and the artefact search (watch: on its slow cycles)
    check_behaviour: bool = True        # packing and the memory of suspects (off only to measure their cost)
    timeout: float | None = DEFAULT_TIMEOUT     # the whole scan's ceiling, seconds
    step_budget: float = STEP_BUDGET            # each step after the window, seconds (within the ceiling)
    call_timeout: float = deadline.CALL_TIMEOUT  # one blocking call on a path another user controls
    carry: Any = None               # carry.Carry: a fast watch cycle keeps the last one's per-process results


def collect_snapshot(options: CollectOptions) -> Snapshot:
    """The snapshot, always: a step that does not finish within its budget (or the ceiling) is `error`
    coverage naming the limit, and calls that did not answer are listed under the `deadline` check."""
    from audit_agent.collect.heap import tune_allocator, tune_collector
    tune_allocator()                # before the steps' threads: memory they free is given back
    tune_collector()
    clock = deadline.start_scan(options.timeout, options.call_timeout)
    try:
        return collect_within(options, clock)
    finally:
        deadline.end_scan(clock)


def collect_within(options: CollectOptions, clock: deadline.Deadlines) -> Snapshot:
    bounds.new_scan()
    progress = options.progress or (lambda what, done: None)
    snapshot = Snapshot(agent_version=__version__, collected_at=time.time(), window_seconds=options.window)
    progress("host inventory", 0.0)
    snapshot.host, host_coverage = collect_host(options.proc_root, options.etc_root)
    snapshot.coverage.append(host_coverage)
    options = _collect_core(snapshot, options, clock, progress)
    for step in extra_steps(options):
        progress(step.__doc__.splitlines()[0] if step.__doc__ else step.__name__, 1.0)
        snapshot.coverage.extend(run_step(step, snapshot, options, clock))
    if clock.timed_out:
        snapshot.coverage.append(timeouts_coverage(clock))
    return detach(snapshot) if clock.abandoned_steps else snapshot


def _collect_core(snapshot: Snapshot, options: CollectOptions, clock: deadline.Deadlines,
                  progress: Progress) -> CollectOptions:
    """Window, processes, connections, GPUs; the options as the later steps need them (socket sample)."""
    gpu = options.gpu_sampler or GpuSampler()
    gpu.start()
    from audit_agent.collect.stealth import CpuAccount     # hidden-CPU check: /proc/stat over this window
    cpu_account = CpuAccount.start(options.proc_root) if options.check_stealth else None
    if options.window > 0:      # which connections outlive the window (with no window, none can be said to)
        from audit_agent.collect.netns import sample_sockets
        options = msgspec.structs.replace(options, socket_sample=sample_sockets(options.proc_root))
    # No window, no first reading: CPU is then each process's average over its life (set_cpu_use), which a
    # process that pauses or throttles while the audit runs cannot hide from.
    first = first_reading(options.proc_root) if options.window > 0 else FirstReading(time.monotonic(), {})
    snapshot.load = sample_window(options.window, gpu, progress)

    progress("processes", 1.0)
    source = options.process_source
    facts = shared_facts(options)
    options = msgspec.structs.replace(options, proc_facts=facts)
    read = (lambda: source.read(first)) if source is not None else \
        (lambda: read_processes(first, options.proc_root, facts))
    done, result = clock.run_step(read, options.step_budget)
    if done and result is not None:
        snapshot.processes, coverage = result
        if source is not None:
            snapshot.coverage.append(source.coverage())
        if cpu_account is not None:
            cpu_account.finish(snapshot)    # /proc/stat vs the listed processes over the same window
    else:
        coverage = over_time("processes", options.step_budget, clock)
    snapshot.coverage.append(coverage)
    progress("connections", 1.0)
    done, found = clock.run_step(lambda: collect_connections(options.proc_root, facts), options.step_budget)
    if done and found is not None:
        snapshot.connections, coverage = found
    else:
        coverage = over_time("network", options.step_budget, clock)
    snapshot.coverage.append(coverage)
    progress("GPUs", 1.0)
    snapshot.gpus, coverage = gpu.finish()
    snapshot.host.gpus = snapshot.gpus
    snapshot.coverage.append(coverage)
    return options


def shared_facts(options: CollectOptions) -> ProcFacts | None:
    """The per-process facts the full process read gathers for later steps (None when it is not a full read):
    open descriptors always, and the family environment keys when the families are checked."""
    if options.process_source is not None:
        return None
    keys: frozenset[str] = frozenset()
    if options.check_families and options.families is not None:
        from audit_agent.collect.families import family_env_keys
        keys = family_env_keys(options.families)
    return ProcFacts(env_keys=keys)


MAX_ERROR_CHARS = 300


def over_time(check: str, budget: float, clock: deadline.Deadlines) -> Coverage:
    """Error coverage for a part of the scan that did not finish within its budget or the ceiling."""
    if clock.left() == 0:
        return coverage(check, CoverageStatus.ERROR, because("step_over_ceiling"))
    return coverage(check, CoverageStatus.ERROR, because("step_over_budget", budget=f"{budget:g}"))


def timeouts_coverage(clock: deadline.Deadlines) -> Coverage:
    """The `deadline` check: what on the host did not answer in time (a stalled mount hides what is on it).
    Each call is named by its path and the seconds it was given (data, the same in every language)."""
    listed = [t for t in clock.timed_out if t != "…"]
    shown = "; ".join(cap(item, MAX_ERROR_CHARS) for item in clock.timed_out[:8])
    if len(clock.timed_out) > 8:
        shown += " …"
    return coverage(deadline.CHECK, CoverageStatus.ERROR, because("calls_unanswered", n=len(listed), calls=shown),
                    denied=len(listed), unreadable=listed)


def detach(snapshot: Snapshot) -> Snapshot:
    """A copy no abandoned step thread can still change (it may write to the original as it unwinds)."""
    for _ in range(20):
        try:
            return Snapshot.from_dict(snapshot.to_dict())
        except RuntimeError:        # "changed size during iteration": that thread was writing; try again
            time.sleep(0.05)
    return snapshot


def run_step(step: Callable[[Snapshot, CollectOptions], list[Coverage]], snapshot: Snapshot,
             options: CollectOptions, clock: deadline.Deadlines | None = None) -> list[Coverage]:
    """One extra step's coverage; a step that fails unexpectedly becomes `error` coverage and the scan
    goes on, and so does one that runs past its budget (it is given up, see deadline.run_step).

    An audit that could not look is never reported as clean: the failed check
    is named in the coverage (so the verdict is incomplete), not left out."""
    clock = clock or deadline.current()
    budget = options.step_budget if options is not None else STEP_BUDGET
    try:
        done, result = clock.run_step(lambda: call_step(step, snapshot, options), budget)
        if not done:
            return [over_time(check, budget, clock) for check in step_checks(step)]
        return result or []
    except Exception as exc:        # noqa: BLE001 - any bug in one check must not cost the whole audit
        message = " ".join(str(exc).split())
        if len(message) > MAX_ERROR_CHARS:
            message = message[:MAX_ERROR_CHARS] + "…"
        reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        return [coverage(check, CoverageStatus.ERROR, because("step_failed", error=reason))
                for check in step_checks(step)]


def call_step(step: Callable[[Snapshot, CollectOptions], list[Coverage]], snapshot: Snapshot,
              options: CollectOptions) -> list[Coverage]:
    """The step, or in a fast watch cycle the step on new and changed processes only (collect/carry.py)."""
    carry = getattr(options, "carry", None)
    if carry is not None:
        from audit_agent.collect.carry import carried_step, run_with_carry
        if carried_step(step.__name__):
            return run_with_carry(step, snapshot, options, carry, step_checks(step))
    return step(snapshot, options)


def step_checks(step: Callable[..., object]) -> tuple[str, ...]:
    """The coverage check names a step reports: its module's CHECKS, or CHECK, or the step's own name."""
    module = sys.modules.get(getattr(step, "__module__", "") or "")
    checks = getattr(module, "CHECKS", None) or (getattr(module, "CHECK", None),)
    return tuple(c for c in checks if c) or (getattr(step, "__name__", "step"),)


def sample_window(window: float, gpu: GpuSampler, progress: Progress) -> list[LoadSample]:
    """Sleep through the window, sampling whole-host CPU and GPU load for the report's charts."""
    samples: list[LoadSample] = []
    cpu_percent = whole_host_cpu()
    cpu_percent()
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= window:
            break
        time.sleep(min(SAMPLE_EVERY, window - elapsed))
        elapsed = time.monotonic() - start
        samples.append(LoadSample(t=round(elapsed, 2), cpu_percent=cpu_percent(),
                                  gpu_percent=gpu.sample()))
        progress("sampling CPU and GPU load", min(elapsed / window, 1.0) if window else 1.0)
    return samples


def whole_host_cpu() -> Callable[[], float]:
    """Percent of all CPUs busy since the last call: from /proc/stat on Linux, psutil elsewhere."""
    if sys.platform.startswith("linux"):
        from audit_agent.collect.procfs import CpuLoad
        return CpuLoad().percent
    import psutil
    return lambda: psutil.cpu_percent(interval=None)


def extra_steps(options: CollectOptions) -> list[Callable[[Snapshot, CollectOptions], list[Coverage]]]:
    """The slower checks that run after the window; each returns its coverage entries."""
    steps: list[Callable[[Snapshot, CollectOptions], list[Coverage]]] = []
    if options.check_stealth:       # first: the processes it finds hidden are then examined like the rest
        from audit_agent.collect.stealth import collect_stealth
        steps.append(collect_stealth)
    from audit_agent.collect.netns import collect_namespaces    # after stealth: hidden processes own sockets too
    steps.append(collect_namespaces)
    if options.scan_binaries:
        from audit_agent.collect.binaries import collect_binaries
        from audit_agent.collect.configs import collect_configs
        from audit_agent.collect.memscan import collect_memory
        from audit_agent.collect.packing import collect_packing
        from audit_agent.collect.programs import collect_programs
        steps += [collect_binaries, collect_configs]
        if options.check_behaviour:     # memory: suspects only, and a name its program contradicts makes one
            steps += [collect_packing, collect_programs, collect_memory]
    from audit_agent.collect.libraries import collect_libraries
    steps.append(collect_libraries)
    if options.check_families:
        from audit_agent.collect.families import collect_families      # configs where they sit, then artefacts
        steps.append(collect_families)
    if options.check_persistence:
        from audit_agent.collect.persistence import collect_persistence
        steps.append(collect_persistence)
    return steps


def linux_only(check: str) -> Coverage | None:
    """Coverage `not_applicable` for a Linux-only check on another OS, else None."""
    if sys.platform.startswith("linux"):
        return None
    return coverage(check, CoverageStatus.NOT_APPLICABLE, because("linux_only", platform=sys.platform))
