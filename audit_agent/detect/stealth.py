"""Signals from how a process or the host hides: deleted or /tmp executables, kernel-thread imitation,
preloaded libraries, processes hidden from the /proc listing, CPU nobody accounts for, RandomX tuning.

Heavy legitimate workloads must stay quiet: a package upgrade leaves deleted
executables under /usr (info only), conda and pip live in dot-directories
(ignored), profilers preload libraries (ignored), and VMs often run with the
NMI watchdog off (only noted next to other tuning). Hiding from the process
listing, on the other hand, has no innocent explanation.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from audit_agent.detect import ALONE, Context, Signal, each_process, process_key, process_subject
from audit_agent.detect.places import (KERNEL_THREAD_NAME, PACKAGE_DIRS, WORLD_WRITABLE_DIRS, hidden_component,
                                       writable_root)
from audit_agent.model import Evidence, ProcessInfo, Severity, StealthState, Subject
from audit_agent.redact import cap, redact_cmdline

RULE_DELETED = "AA-STEALTH-001"
RULE_WRITABLE_DIR = "AA-STEALTH-002"
RULE_MEMFD = "AA-STEALTH-003"
RULE_DOT_NAME = "AA-STEALTH-004"
RULE_KTHREAD = "AA-STEALTH-005"
RULE_ENV_PRELOAD = "AA-STEALTH-006"
RULE_HIDDEN = "AA-STEALTH-007"
RULE_PID_FILE = "AA-STEALTH-008"
RULE_LD_SO_PRELOAD = "AA-STEALTH-010"
RULE_SELF_PRELOAD = "AA-STEALTH-011"
RULE_PROC_BIND = "AA-STEALTH-012"
RULE_HIDEPID = "AA-STEALTH-013"
RULE_UNEXPLAINED_CPU = "AA-STEALTH-014"
RULE_HOOKED_LIBC = "AA-STEALTH-015"
RULE_PRELOAD_HIDDEN = "AA-STEALTH-016"
RULE_HUGEPAGES = "AA-TUNE-001"
RULE_MSR = "AA-TUNE-002"
RULE_NMI = "AA-TUNE-003"

PID_FILE = re.compile(r"^/(?:var/)?run/[^/]+\.(?:pid|lock|reboot)$")
# Libraries that profilers, allocators and build tools preload on purpose.
BENIGN_PRELOAD = re.compile(r"(?i)(?:jemalloc|tcmalloc|mimalloc|darshan|fakeroot|eatmydata|vglfaker|rrfaker|"
                            r"nss_wrapper|libstdbuf|asan|tsan|ubsan|lsan|gtk3-nocsd|libhugetlbfs|xalt|faketime|"
                            r"libsnoopy|proxychains|libtorsocks|libgpuinfo|libnvidia|vtune|libittnotify)")
BENIGN_LD_SO_PRELOAD = re.compile(r"(?i)(?:libsnoopy|libjemalloc|libtcmalloc|libmimalloc|xalt)")
AddSignal = Callable[..., None]      # host_signals' helper that appends one host-level Signal
HUGEPAGES_WORTH_NOTING = 1 << 30    # a RandomX dataset is ~2 GiB; THP for a smaller process is ordinary
# Replacing these has one use: filtering what a program sees of /proc (no profiler or allocator needs them).
HIDING_FUNCTIONS = {"readdir", "readdir64", "getdents64", "kill", "opendir"}


def signals(ctx: Context) -> list[Signal]:
    found = each_process(ctx, lambda proc: process_signals(proc, ctx), silent_key)
    found.extend(host_signals(ctx))
    return found


# ------------------------------------------------------------------ per process

PRELOAD_KEYS = ("LD_PRELOAD", "LD_AOUT_PRELOAD", "LD_ELF_PRELOAD")


def silent_key(proc: ProcessInfo) -> object:
    """What process_signals reads of a process beyond its look (detect.each_process: name, executable, command
    line, environment) that can make it say something: whether its parent is a userland one. ALONE (judged on
    its own) for a process hidden, with a deleted executable or holding huge pages."""
    if proc.hidden or proc.exe_deleted or (proc.anon_hugepages_bytes or 0) >= HUGEPAGES_WORTH_NOTING:
        return ALONE
    ppid = proc.ppid
    return ppid is not None and ppid not in (0, 2)


PENDING_SUBJECT = Subject(kind="process")     # replaced by the real subject before the signals leave


def process_signals(proc: ProcessInfo, ctx: Context) -> list[Signal]:
    found: list[Signal] = []
    # The subject (redacted command line and all) is built only for a process that gave a signal:
    # this loop sees every process, and almost none of them.
    key, subject = process_key(proc.pid), PENDING_SUBJECT

    def add(rule_id: str, title: str, severity: Severity, confidence: float, reason: str, field: str,
            value: str, matched: str, weak: bool, action: str = "") -> None:
        found.append(Signal(subject_key=key, subject=subject, rule_id=rule_id, title=title, category="stealth",
                            severity=severity, confidence=confidence, reason=reason,
                            evidence=Evidence(field=field, value=cap(value, 300), matched=matched, rule_id=rule_id),
                            action=action, indicator=matched, weak=weak))

    exe = proc.exe
    shown_exe = cap(exe, 300)
    if proc.hidden:
        add(RULE_HIDDEN, "Process hidden from the process listing", Severity.CRITICAL, 0.9,
            f"Process {proc.pid} ({cap(proc.name, 64)!r}) is alive when probed by PID but missing from the /proc "
            "directory listing that ps and top read: something on this host hides it (an LD_PRELOAD library "
            "or a kernel rootkit).", "pid", f"{proc.pid} {proc.name}", "hidden from /proc listing", weak=False,
            action="Treat the host as compromised: inspect it from trusted media, preserve the process and "
                   "/etc/ld.so.preload, and check for a rootkit.")
    if exe.startswith("/memfd:"):
        # INFO alone: container runtimes and sandboxes re-exec themselves from sealed memfds (runc, gVisor);
        # next to any other signal it still adds confidence.
        add(RULE_MEMFD, "Executable runs from memory (memfd)", Severity.INFO, 0.35,
            f"The executable {shown_exe!r} exists only in memory (memfd_create): fileless execution, used by "
            "droppers and also by some container runtimes.", "exe", exe, "memfd executable", weak=True)
    elif proc.exe_deleted:
        found.append(deleted_signal(proc, key, subject))
    if exe.startswith(WORLD_WRITABLE_DIRS):
        add(RULE_WRITABLE_DIR, "Executable in a world-writable directory", Severity.MEDIUM, 0.45,
            f"The executable {shown_exe!r} lives in a world-writable directory, where droppers put miners.",
            "exe", exe, f"exe in {writable_root(exe)}", weak=True)
    if PID_FILE.match(exe):
        add(RULE_PID_FILE, "Executable disguised as a PID or lock file", Severity.MEDIUM, 0.6,
            f"The executable {shown_exe!r} is named like a PID or lock file: a disguise, not an install location.",
            "exe", exe, "exe is a pid/lock file", weak=False)
    dotted = hidden_component(exe)
    if dotted:
        is_name = dotted == exe.rsplit("/", 1)[-1]
        add(RULE_DOT_NAME, "Hidden (dot-named) executable" if is_name else "Executable in a hidden directory",
            Severity.MEDIUM if is_name else Severity.LOW, 0.4 if is_name else 0.25,
            f"The executable {shown_exe!r} is {'itself dot-named' if is_name else 'inside the hidden directory ' + repr(cap(dotted, 60))}, "
            "so `ls` does not show it.", "exe", exe, f"dot-named {'file' if is_name else 'directory'}", weak=True)
    imitation = kernel_thread_imitation(proc)
    if imitation:
        add(RULE_KTHREAD, "Process imitates a kernel thread", Severity.HIGH, 0.7,
            f"The process calls itself {cap(imitation, 80)!r} like a kernel thread, but {kthread_evidence(proc)}: "
            "real kernel threads have no executable, an empty command line and kthreadd (PID 2) as parent.",
            "name", " | ".join(filter(None, [proc.name, redact_cmdline(proc.cmdline, 200), exe])),
            "kernel-thread name with an executable",
            weak=False, action="Identify the real executable behind the process, stop it, and check how it started.")
    preload = suspicious_preload(proc)
    if preload:
        add(RULE_ENV_PRELOAD, "LD_PRELOAD in the process environment", Severity.MEDIUM, 0.45,
            f"The process runs with {preload[0]}={cap(preload[1], 200)!r}: a preloaded library can hide processes, "
            "files and connections.", "environ", f"{preload[0]}={preload[1]}", "LD_PRELOAD", weak=True)
    found.extend(hugepage_signals(proc, ctx, key, subject))
    if found:
        built = process_subject(proc)
        for signal in found:
            signal.subject = built
    return found


def deleted_signal(proc: ProcessInfo, key: str, subject: Subject) -> Signal:
    """Deleted executable: info after a package upgrade, low elsewhere, medium in a world-writable directory."""
    exe = proc.exe
    if exe.startswith(WORLD_WRITABLE_DIRS):
        severity, confidence, weak, why = Severity.MEDIUM, 0.5, False, \
            "was deleted from a world-writable directory after it started, which droppers do to leave no file behind"
    elif exe.startswith(PACKAGE_DIRS):
        severity, confidence, weak, why = Severity.INFO, 0.05, True, \
            "was replaced or removed after it started; under a package-managed path this usually means a package upgrade"
    else:
        severity, confidence, weak, why = Severity.LOW, 0.3, True, "was deleted after it started"
    return Signal(subject_key=key, subject=subject, rule_id=RULE_DELETED, title="Executable deleted while running",
                  category="stealth", severity=severity, confidence=confidence,
                  reason=f"The executable {cap(exe, 300)!r} {why}; it is still readable through /proc/{proc.pid}/exe.",
                  evidence=Evidence(field="exe",
                                    value=cap(exe if exe.endswith(" (deleted)") else exe + " (deleted)", 300),
                                    matched="deleted executable",
                                    rule_id=RULE_DELETED),
                  action="Copy /proc/PID/exe as evidence before stopping the process." if not weak else "",
                  indicator="deleted executable", weak=weak)


def kernel_thread_imitation(proc: ProcessInfo) -> str:
    """The kernel-thread-like name a userland process uses, or ''.

    Real kernel threads have no exe link, an empty cmdline and PPID 2 (or 0 for kthreadd).
    """
    argv0 = proc.cmdline[0] if proc.cmdline else ""
    bracketed = len(proc.cmdline) == 1 and argv0.startswith("[") and argv0.endswith("]")
    name = next((n for n in (proc.name, argv0) if n and KERNEL_THREAD_NAME.match(n)), "")
    if not (name or bracketed):
        return ""
    userland = bool(proc.exe) or bool(proc.cmdline) or (proc.ppid is not None and proc.ppid not in (0, 2))
    return (name or argv0) if userland else ""


def kthread_evidence(proc: ProcessInfo) -> str:
    facts = []
    if proc.exe:
        facts.append(f"it runs the executable {cap(proc.exe, 200)!r}")
    if proc.cmdline:
        facts.append("has a command line")
    if proc.ppid is not None and proc.ppid not in (0, 2):
        facts.append(f"its parent is PID {proc.ppid}")
    return ", ".join(facts) or "it is a userland process"


def suspicious_preload(proc: ProcessInfo) -> tuple[str, str] | None:
    for env_key in PRELOAD_KEYS:
        value = proc.environ.get(env_key, "").strip()
        if not value:
            continue
        libraries = [part for part in re.split(r"[:\s]+", value) if part]
        if any(not BENIGN_PRELOAD.search(lib) for lib in libraries):
            return env_key, value
    return None


def hugepage_signals(proc: ProcessInfo, ctx: Context, key: str, subject: Subject) -> list[Signal]:
    """A busy process holding a RandomX-dataset-sized amount of huge pages (weak: HPC codes use them too)."""
    thresholds = ctx.policy.thresholds
    held = proc.anon_hugepages_bytes or 0
    if held < HUGEPAGES_WORTH_NOTING or (proc.cpu_percent or 0) < thresholds.min_cpu_percent:
        return []
    gib = held / (1 << 30)
    return [Signal(subject_key=key, subject=subject, rule_id=RULE_HUGEPAGES, title="Busy process on huge pages",
                   category="tuning", severity=Severity.LOW, confidence=0.25,
                   reason=f"The process kept {proc.cpu_percent:.0f}% CPU busy while holding {gib:.1f} GiB of huge "
                          "pages, the memory layout RandomX miners tune for (HPC codes use huge pages too).",
                   evidence=Evidence(field="memory", value=f"{gib:.1f} GiB huge pages, {proc.cpu_percent:.0f}% CPU",
                                     matched="huge pages + busy CPU", rule_id=RULE_HUGEPAGES,
                                     facts={"gib": round(gib, 1), "cpu_percent": round(proc.cpu_percent or 0)}),
                   indicator="huge pages + busy", weak=True)]


# ------------------------------------------------------------------ host level


def host_signals(ctx: Context) -> list[Signal]:
    state = ctx.snapshot.stealth
    subject = Subject(kind="host", name=ctx.snapshot.host.hostname)
    found: list[Signal] = []

    def add(rule_id: str, title: str, category: str, severity: Severity, confidence: float, reason: str,
            field: str, value: str, matched: str, weak: bool, action: str = "", facts: dict[str, Any] | None = None) -> None:
        found.append(Signal(subject_key="host", subject=subject, rule_id=rule_id, title=title, category=category,
                            severity=severity, confidence=confidence, reason=reason,
                            evidence=Evidence(field=field, value=cap(value, 300), matched=matched, rule_id=rule_id,
                                              facts=facts or {}),
                            action=action, indicator=matched, weak=weak))

    if state.ld_so_preload:
        entries = ", ".join(state.ld_so_preload[:5])
        benign = all(BENIGN_LD_SO_PRELOAD.search(e) for e in state.ld_so_preload)
        add(RULE_LD_SO_PRELOAD, "Libraries preloaded into every process (/etc/ld.so.preload)", "stealth",
            Severity.LOW if benign else Severity.HIGH, 0.2 if benign else 0.7,
            f"/etc/ld.so.preload loads {cap(entries, 300)} into every program on this host, the usual way "
            "userland rootkits hide miner processes from ps and top.", "file", f"/etc/ld.so.preload: {entries}",
            "ld.so.preload entry", weak=benign,
            action="Check who installed each library in /etc/ld.so.preload and whether it filters readdir.")
    if state.self_preloaded_libraries:
        libs = ", ".join(state.self_preloaded_libraries[:5])
        add(RULE_SELF_PRELOAD, "Unexpected library preloaded into the audit agent", "stealth", Severity.HIGH, 0.75,
            f"The audit agent itself runs with {cap(libs, 300)} preloaded: what this audit saw through libc may "
            "have been filtered.", "maps", libs, "library preloaded into the agent", weak=False,
            action="Re-run the audit from trusted, statically linked tools or boot media.")
    hooked_libc_signal(state, add)
    if state.proc_bind_mounts:
        mounts = ", ".join(state.proc_bind_mounts[:5])
        add(RULE_PROC_BIND, "Mount over a /proc/PID directory", "stealth", Severity.HIGH, 0.8,
            f"Something is mounted over {cap(mounts, 300)}: a bind mount over /proc/PID hides that process "
            "from ps and top.", "mountinfo", mounts, "bind mount on /proc/PID", weak=False,
            action="Unmount it (umount /proc/PID) and inspect the process it hid.")
    if state.proc_hidepid and state.proc_hidepid not in ("0", "off"):
        add(RULE_HIDEPID, "/proc mounted with hidepid", "stealth", Severity.INFO, 0.1,
            f"/proc is mounted with hidepid={cap(state.proc_hidepid, 20)}: users cannot see each other's processes. "
            "Hardened hosts do this on purpose; the audit needs root to see every process.",
            "mountinfo", f"hidepid={state.proc_hidepid}", "hidepid", weak=True)
    unexplained_cpu_signal(ctx, add)
    tuning_signals(ctx, state, add)
    return found


def hooked_libc_signal(state: StealthState, add: AddSignal) -> None:
    """libc functions replaced inside the agent, and an ld.so.preload that libc says does not exist."""
    if state.ld_so_preload_hidden:
        entries = ", ".join(state.ld_so_preload[:5])
        add(RULE_PRELOAD_HIDDEN, "/etc/ld.so.preload hidden from ordinary file access", "stealth",
            Severity.CRITICAL, 0.9,
            f"/etc/ld.so.preload exists and loads {cap(entries, 300)} (read with system calls), yet open and stat "
            "through libc say it does not exist: a preloaded library hides its own configuration, which only a "
            "rootkit does.", "file", f"/etc/ld.so.preload: {entries}", "ld.so.preload hidden from libc", weak=False,
            action="Treat the host as compromised: boot trusted media, remove the library and /etc/ld.so.preload, "
                   "and look for the processes it hid.")
    if not state.hooked_functions:
        return
    names = {item.split(" ", 1)[0] for item in state.hooked_functions}
    libraries = {item.split(" (", 1)[1].rstrip(")") for item in state.hooked_functions if " (" in item}
    hiding = sorted(names & HIDING_FUNCTIONS)
    benign = not hiding and bool(libraries) and all(BENIGN_PRELOAD.search(lib) for lib in libraries)
    shown = ", ".join(state.hooked_functions[:8])
    add(RULE_HOOKED_LIBC, "libc functions replaced inside the audit agent", "stealth",
        Severity.LOW if benign else Severity.HIGH, 0.2 if benign else 0.8,
        f"Inside the agent, {cap(shown, 400)} resolve to a library loaded before libc instead of libc itself"
        + (f"; replacing {', '.join(hiding)} serves only to filter what programs see of /proc" if hiding else "")
        + ". The audit read /proc, its own memory map and ld.so.preload with system calls instead.",
        "symbols", shown, "libc function interposed", weak=benign,
        action="Identify the library, who installed it and which processes it hides; re-run the audit from "
               "trusted, statically linked tools or boot media.")


def unexplained_cpu_signal(ctx: Context, add: AddSignal) -> None:
    state = ctx.snapshot.stealth
    thresholds = ctx.policy.thresholds
    if (state.unexplained_cpu_percent is None or ctx.snapshot.window_seconds < thresholds.min_window_seconds
            or state.unexplained_cpu_percent < thresholds.unexplained_cpu_percent):
        return
    add(RULE_UNEXPLAINED_CPU, "CPU time no visible process accounts for", "stealth", Severity.MEDIUM, 0.4,
        f"Over the {ctx.snapshot.window_seconds:.0f} s window the host spent {state.system_cpu_percent:.0f}% CPU "
        f"(100% = one core) but the listed processes account for only {state.visible_cpu_percent:.0f}%: "
        f"{state.unexplained_cpu_percent:.0f}% is unexplained, which a hidden process would cause "
        "(short-lived processes can too).", "cpu",
        f"system {state.system_cpu_percent}%, visible {state.visible_cpu_percent}%, "
        f"unexplained {state.unexplained_cpu_percent}%", "unexplained CPU", weak=True,
        facts={"window": round(ctx.snapshot.window_seconds), "system": round(state.system_cpu_percent or 0),
               "visible": round(state.visible_cpu_percent or 0), "unexplained": round(state.unexplained_cpu_percent)})


def tuning_signals(ctx: Context, state: StealthState, add: AddSignal) -> None:
    msr_writes = state.msr_loaded and state.msr_allow_writes.lower() == "on"
    if msr_writes:
        add(RULE_MSR, "msr module loaded with writes allowed", "tuning", Severity.MEDIUM, 0.45,
            "The msr kernel module is loaded with allow_writes=on: xmrig writes CPU MSRs (--randomx-wrmsr) to "
            "speed up RandomX; performance tools such as likwid need it too.", "sysfs",
            "/sys/module/msr/parameters/allow_writes=on", "msr allow_writes=on", weak=True)
    reserved = state.hugepages_total or 0
    busy = [p for p in ctx.by_pid.values()
            if (p.cpu_percent or 0) >= ctx.policy.thresholds.min_cpu_percent] if reserved > 0 else []
    if reserved > 0 and busy:
        size = f"{state.hugepage_size_kb} kB" if state.hugepage_size_kb else "default-size"
        add(RULE_HUGEPAGES, "Huge pages reserved while a process keeps the CPU busy", "tuning", Severity.LOW, 0.2,
            f"{reserved} huge pages of {size} are reserved and {len(busy)} process(es) kept a core busy over the "
            "window: RandomX miners reserve huge pages (vm.nr_hugepages); databases and HPC codes do too.",
            "meminfo", f"HugePages_Total={reserved}, Hugepagesize={state.hugepage_size_kb} kB",
            "huge pages reserved", weak=True, facts={"pages": reserved, "size_kb": state.hugepage_size_kb or "",
                                                     "busy": len(busy)})
    if state.nmi_watchdog == 0 and (msr_writes or (reserved > 0 and busy)):
        add(RULE_NMI, "NMI watchdog disabled", "tuning", Severity.INFO, 0.1,
            "kernel.nmi_watchdog is 0, part of the usual RandomX tuning (many VMs run with it off too).",
            "sysctl", "kernel.nmi_watchdog=0", "nmi_watchdog=0", weak=True)
