"""Signals from what mining is, not what a miner says: strings in memory, algorithm-shaped memory,
packed executables, CPU over a whole life, and slowing down exactly while the audit ran.

The facts come from the collectors (memscan, packing, processes); this module
only judges them. Research workloads stay quiet: known frameworks and language
runtimes are left to the load checks, and the shapes that a numpy array or a
BLAS thread pool can also take are weak on their own.
"""
from __future__ import annotations

import re

from audit_agent.detect import Context, Signal, process_key, process_subject
from audit_agent.detect.hashing import algorithms_for_unit, size_text
from audit_agent.detect.identity import is_packed
from audit_agent.detect.load import cpu_saturated, known_workload, suspicious_exe
from audit_agent.detect.places import WORLD_WRITABLE_DIRS, hidden_component
from audit_agent.model import Evidence, MemoryRegion, MemoryScan, Packing, ProcessInfo, Severity
from audit_agent.redact import cap

RULE_MEMORY_STRINGS = "AA-MEM-001"
RULE_RANDOMX_SHAPE = "AA-MEM-002"
RULE_SCRATCHPADS = "AA-MEM-003"
RULE_LOCKSTEP = "AA-CPU-003"
RULE_PACKED = "AA-PACK-001"
RULE_LIFETIME = "AA-CPU-001"
RULE_PAUSED = "AA-CPU-002"
RULE_LONG_CMDLINE = "AA-LONG-001"
RUNTIME_LIBRARIES = ("libpython", "libjvm.so", "_multiarray_umath", "libtorch", "libopenblas", "libmkl", "libgomp")
MiB = 1 << 20
SIGNATURE_DATABASE_FAMILIES = 4     # distinct string rules (pack + YARA) matched at once: a signature list
YARA_PACK_RULE = re.compile(r"AA_([A-Z]+)_(\d{3})_")


def signals(ctx: Context) -> list[Signal]:
    found: list[Signal] = []
    for scan in ctx.snapshot.memory:
        proc = ctx.by_pid.get(scan.pid)
        if proc is not None:
            found += memory_string_signals(scan, proc, ctx) + shape_signals(scan, proc, ctx)
    for packing in ctx.snapshot.packing:
        if is_packed(packing):
            found += packed_signals(packing, ctx)
    for proc in ctx.by_pid.values():
        found += cpu_life_signals(proc, ctx)
        if proc.cmdline_bytes:
            found.append(long_cmdline_signal(proc))
    return found


def signal(proc: ProcessInfo, rule_id: str, title: str, severity: Severity, confidence: float, reason: str,
           field: str, value: str, matched: str, *, weak: bool, action: str, category: str = "miner") -> Signal:
    return Signal(subject_key=process_key(proc.pid), subject=process_subject(proc), rule_id=rule_id, title=title,
                  category=category, severity=severity, confidence=confidence, reason=cap(reason, 800),
                  evidence=Evidence(field=field, value=cap(value, 300), matched=cap(matched, 200), rule_id=rule_id),
                  action=action, indicator=matched, weak=weak)


# ---------------------------------------------------------------- memory

def memory_string_signals(scan: MemoryScan, proc: ProcessInfo, ctx: Context) -> list[Signal]:
    plain = {s for s in scan.matched_strings if not s.startswith("yara:")}
    yara_rules = [s[5:] for s in scan.matched_strings if s.startswith("yara:")]
    on_disk = any(proc.pid in b.pids and b.matched_strings for b in ctx.snapshot.binaries)
    where = (f"its memory ({scan.scanned_bytes / MiB:.1f} MiB of heap and private mappings read)"
             + ("" if on_disk else ", while its file on disk shows none of them: they are decoded at run time"))
    action = "Preserve the process memory and executable (gcore, /proc/PID/exe), stop it, and find how it started."
    hits = ctx.rules.match_strings(plain, proc.exe)
    if len({hit.rule.id for hit in hits} | {rule_of(name) for name in yara_rules}) >= SIGNATURE_DATABASE_FAMILIES:
        # A miner carries its own family's strings; a process holding those of many families at once is a
        # scanner, an editor or a test suite with a signature list loaded (this agent's own rule pack too).
        names = ", ".join(sorted({hit.rule.id for hit in hits})[:6])
        return [signal(proc, RULE_MEMORY_STRINGS, "Miner strings in process memory", Severity.INFO, 0.1,
                       f"Strings of {len(hits)} miner families ({names}) are in {where}: so many families at once "
                       "is a signature list loaded by a scanner or editor, not a miner.", "memory",
                       f"pid {proc.pid} memory: {names}", "memory:signature list", weak=True, action=action)]
    found = []
    for hit in hits:
        found.append(signal(proc, RULE_MEMORY_STRINGS, "Miner strings in process memory", hit.rule.severity,
                            hit.rule.confidence, f"{hit.rule.title} ({hit.matched}) found in {where}.",
                            "memory", f"pid {proc.pid} memory: {hit.matched}", f"memory:{hit.rule.id}",
                            weak=False, action=action))
    for name in yara_rules:
        found.append(signal(proc, RULE_MEMORY_STRINGS, "Miner strings in process memory", Severity.HIGH, 0.8,
                            f"The YARA rule {cap(name, 100)!r} matches {where}.", "memory",
                            f"pid {proc.pid} memory", f"memory:yara:{cap(name, 100)}", weak=False, action=action))
    return found


def rule_of(yara_name: str) -> str:
    """The pack rule a pack YARA rule is written for (AA_BIN_001_XMRig_Family -> AA-BIN-001): one family
    found by both engines is one family, not two (a real xmrig matches both for xmrig and for Stratum)."""
    match = YARA_PACK_RULE.match(yara_name)
    return f"AA-{match.group(1)}-{match.group(2)}" if match else yara_name


def runtime_process(proc: ProcessInfo, ctx: Context) -> bool:
    """A language runtime or numeric library is mapped: its big arrays and thread pools take these shapes too."""
    return any(lib.startswith(RUNTIME_LIBRARIES) for lib in proc.libraries) or known_workload(proc, ctx)


def scratchpad_threads(region: MemoryRegion) -> int:
    """Hashing threads a scratchpad region stands for: its mappings, and on huge pages every 2 MiB of them
    (the kernel merges neighbouring huge-page scratchpads into one mapping)."""
    if region.huge_pages and region.size_bytes % (2 * MiB) <= 64 * 1024:
        return max(region.count, region.count * (region.size_bytes // (2 * MiB)))
    return region.count


def shape_signals(scan: MemoryScan, proc: ProcessInfo, ctx: Context) -> list[Signal]:
    shapes = {region.shape for region in scan.regions}
    found = lockstep_signals(scan, proc, ctx)
    if not shapes:
        return found
    pads = [r for r in scan.regions if r.shape == "scratchpad"]
    pad_count = sum(scratchpad_threads(r) for r in pads)
    threads = (f"; {scan.busy_threads} threads busy over their life" + (" in lockstep" if scan.lockstep else "")
               if scan.busy_threads else "")
    runtime = runtime_process(proc, ctx)
    action = "Find what the process is (its executable, its owner); a miner's memory holds its pool and wallet."
    big = next((r for r in scan.regions if r.shape.startswith("randomx")), None)
    if big is not None:
        mode = "fast-mode dataset (2080 MiB)" if big.shape == "randomx-dataset" else "light-mode cache (256 MiB)"
        hugepages = " on huge pages" if big.huge_pages else ""
        strong = not runtime and (big.shape == "randomx-dataset" or big.huge_pages or bool(pads))
        return found + [signal(proc, RULE_RANDOMX_SHAPE, "Memory shaped like RandomX", Severity.MEDIUM if strong else
                               (Severity.INFO if runtime else Severity.LOW), 0.6 if strong else 0.3,
                               f"It holds an anonymous mapping of {big.size_bytes / MiB:.0f} MiB{hugepages}, the size "
                               f"of the RandomX {mode}, and {pad_count} scratchpad-sized (2 MiB) huge-page region(s)"
                               f"{threads}: the memory RandomX (Monero) hashing needs, whatever the process is called.",
                               "memory", f"{big.size_bytes} bytes{hugepages}, {pad_count} x 2 MiB{threads}",
                               big.shape, weak=not strong, action=action)]
    if not pad_count or not scan.busy_threads or runtime:
        return found
    # Without huge pages a scratchpad size is only telling when it repeats once per busy thread.
    matching = [r for r in pads if r.huge_pages or abs(r.count - scan.busy_threads) <= 1]
    if not matching:
        return found
    lead = max(matching, key=scratchpad_threads)
    unit = lead.size_bytes if not lead.huge_pages or lead.count > 1 or lead.size_bytes < 2 * MiB else 2 * MiB
    algorithms = algorithms_for_unit(unit) or algorithms_for_unit(2 * MiB)
    pages = "on huge pages" if lead.huge_pages else "without huge pages"
    count = sum(scratchpad_threads(r) for r in matching)
    return found + [signal(proc, RULE_SCRATCHPADS, "Hashing scratchpads, one per busy thread", Severity.LOW, 0.3,
                           f"It holds {count} scratchpad-sized region(s) of {size_text(unit)} {pages}{threads}: "
                           f"one per hashing thread is the layout of {'; '.join(algorithms[:3])}.",
                           "memory", f"{count} x {size_text(unit)} {pages}{threads}",
                           f"hashing scratchpads {size_text(unit)}", weak=True, action=action)]


def lockstep_signals(scan: MemoryScan, proc: ProcessInfo, ctx: Context) -> list[Signal]:
    """N threads of one process, each burning about the same CPU over its life, N about the CPUs it may use:
    how a miner splits one job (xmrig starts a thread per core by default). Numeric libraries (BLAS,
    OpenMP, PyTorch) and JVMs do the same, so this only adds to other evidence: info for them, a weak
    low otherwise, never more on its own."""
    allowed = proc.allowed_cpus or ctx.snapshot.host.cpu_threads or 0
    busy = scan.busy_threads
    if not scan.lockstep or busy < 2 or allowed < 2 or not allowed - max(1, allowed // 8) <= busy <= allowed + 1:
        return []
    quiet = runtime_process(proc, ctx)
    return [signal(proc, RULE_LOCKSTEP, "Threads burning CPU in lockstep", Severity.INFO if quiet else Severity.LOW,
                   0.1 if quiet else 0.2,
                   f"{busy} of its threads each used about the same share of a core over their life, and it may "
                   f"run on {allowed} CPUs: one job split across every CPU, as a miner's hashing threads are"
                   + (" (and as a numeric library's thread pool is: it maps one)." if quiet else "."),
                   "threads", f"{busy} busy threads in lockstep, {allowed} CPUs allowed", "threads in lockstep",
                   weak=True, category="load",
                   action="Ask the owner what this workload is; check it against the filed research systems.")]


# ---------------------------------------------------------------- packing

def packed_signals(packing: Packing, ctx: Context) -> list[Signal]:
    how = (f"UPX's marks ({', '.join(packing.marks[:3])})" if packing.marks
           else f"code entropy {packing.entropy:.2f} bits/byte (compiled code: 5.5-6.6)")
    if not packing.section_table:
        how += ", no section table"
    if packing.imports is not None and packing.imports <= 3:
        how += f", {packing.imports} imported libraries"
    found = []
    for pid in packing.pids:
        proc = ctx.by_pid.get(pid)
        if proc is None:
            continue
        exe = proc.exe
        odd = exe.startswith(("/memfd:", *WORLD_WRITABLE_DIRS)) or proc.exe_deleted or bool(hidden_component(exe))
        place = "a world-writable, hidden or deleted location" if odd else "outside the package-managed paths"
        found.append(signal(proc, RULE_PACKED, "Packed executable from a user-writable place",
                            Severity.HIGH if odd else Severity.MEDIUM, 0.7 if odd else 0.5,
                            f"Its executable {cap(packing.path, 200)!r} is packed ({how}) and runs from {place}: "
                            "droppers pack miners so that no string of theirs is on disk.",
                            "exe", f"{packing.path}: {how}", "packed executable", weak=False, category="stealth",
                            action="Preserve the executable, stop the process, and unpack or run it in a sandbox."))
    return found


# ---------------------------------------------------------------- CPU over a whole life

def cpu_life_signals(proc: ProcessInfo, ctx: Context) -> list[Signal]:
    """Busy on average over its life (throttled) or, worse, busy all its life but not while we watched."""
    thresholds = ctx.policy.thresholds
    if proc.lifetime_cpu_seconds is None or not proc.create_time or ctx.snapshot.window_seconds <= 0:
        return []
    age = ctx.snapshot.collected_at - proc.create_time
    if age < thresholds.lifetime_min_seconds or age <= ctx.snapshot.window_seconds:
        return []
    lifetime = 100.0 * proc.lifetime_cpu_seconds / age
    if lifetime < thresholds.lifetime_cpu_percent or known_workload(proc, ctx):
        return []
    window = proc.cpu_percent or 0.0
    life = f"{lifetime:.0f}% of a core on average over {age / 60:.0f} min of life"
    why = "; ".join(suspicious_exe(proc))
    if window <= thresholds.paused_fraction * lifetime:
        return [signal(proc, RULE_PAUSED, "Slowed down while the audit ran", Severity.MEDIUM, 0.45,
                       f"It used {life}, but only {window:.0f}% while this audit watched: a miner that pauses "
                       "while an auditor runs looks like this" + (f"; {why}." if why else "."),
                       "load", f"lifetime {lifetime:.0f}%, window {window:.0f}%", "slowed during the audit",
                       weak=True, category="load",
                       action="Watch the process over a longer time (or audit again unannounced) and ask its owner.")]
    if cpu_saturated(proc, thresholds, ctx.snapshot.host.cpu_threads):
        return []       # AA-LOAD-001 speaks for it
    return [signal(proc, RULE_LIFETIME, "Busy over its whole life", Severity.LOW if why else Severity.INFO,
                   0.3 if why else 0.15,
                   f"It used {life} (and {window:.0f}% while watched): steady load below the saturation a "
                   "window shows, as a throttled miner keeps" + (f"; {why}." if why else "."),
                   "load", f"lifetime {lifetime:.0f}%, window {window:.0f}%", "busy over its life",
                   weak=True, category="load",
                   action="Ask the owner what this workload is; check it against the filed research systems.")]


def long_cmdline_signal(proc: ProcessInfo) -> Signal:
    return signal(proc, RULE_LONG_CMDLINE, "Very long command line", Severity.INFO, 0.1,
                  f"Its command line is {proc.cmdline_bytes} characters long; its head and its tail were both "
                  "examined (padding is how a pool URL is pushed past a scanner's cut).",
                  "cmdline", f"{proc.cmdline_bytes} characters", "long command line", weak=True, category="stealth",
                  action="Read the end of the command line: what follows the padding is what it hides.")
