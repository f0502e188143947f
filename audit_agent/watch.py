"""Watch mode: repeated scans in one long-running process, reporting only what changed.

One process keeps its compiled rules, imports and the binary-scan cache between
cycles, so a cycle costs one collect + evaluate. It remembers findings by their
fingerprint (no PID) in a small JSON state file, so a restart or a timer run
(`--once`) still knows what is new and what was resolved.

It must not die of what it watches for: a collector that raises, a broken rule
update (the last good pack stays) or a full disk (OSError on a write is logged
once and the loop goes on). SIGTERM/SIGINT stop it between cycles or during the
window sampling, within about half a second.
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from audit_agent.model import AuditReport, Finding, Severity, Snapshot
from audit_agent.pipeline import Inputs, load_inputs, run_scan, tuning_dir
from audit_agent.render.json_report import dumps
from audit_agent.rules.active import active_rules_path, state_dir
from audit_agent.rules.loader import default_rules_dir
from audit_agent.export.prometheus import Counters
from audit_agent.yamlfile import ConfigError

STATE_VERSION = 1
RESOLVED_KEEP_SECONDS = 30 * 86400      # forget resolved findings after a month
MAX_STATE_FINDINGS = 5000               # bound the state file even on a host that churns findings
TEXT_CAP = 200
MAX_STATE_BYTES = 64 << 20              # far above MAX_STATE_FINDINGS entries; a bigger file is not ours


class Stopped(Exception):
    """Raised inside a cycle when a stop signal arrives during the sampling window."""


@dataclass
class WatchOptions:
    interval: float
    once: bool
    state_path: Path
    rules: str | None
    config: str | None
    window: float
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    etc_root: str = "/etc"
    textfile_dir: str | None = None
    json_path: str | None = None
    html_dir: str | None = None         # the dated signable report of each cycle goes here
    lang: str = "en"
    push_url: str | None = None
    push_token_file: str | None = None
    spool_dir: Path | None = None
    max_spool: int = 100
    events: str = "text"                # text | json (the terminal)
    events_file: str | None = None      # ECS JSON lines
    syslog: str | None = None           # RFC 5424 target
    quiet: bool = False
    full_every: int = 10                # cycles between full process rescans (events catch the rest)
    slow_every: int = 10                # cycles between hidden-process and persistence checks
    insecure: bool = False              # allow a push token over plain http
    sign: bool = False                  # sign the JSON report (file and push) with the host's key
    timeout: float = 600.0              # ceiling of one cycle's collection
    call_timeout: float = 5.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "WatchOptions":
        state_path = Path(args.state) if args.state else state_dir() / "state.json"
        if getattr(args, "syslog", None):
            from audit_agent.export.syslog import parse_target
            parse_target(args.syslog)           # ConfigError: exit 2 before the first cycle
        spool = getattr(args, "spool_dir", None)
        style = getattr(args, "events", "text") or "text"
        return cls(interval=max(0.0, args.interval), once=args.once, state_path=state_path, rules=args.rules,
                   config=args.config, window=args.window, proc_root=args.proc_root, sys_root=args.sys_root,
                   etc_root=args.etc_root, textfile_dir=args.textfile_dir, json_path=args.json,
                   html_dir=getattr(args, "html", None), lang=getattr(args, "lang", "en") or "en",
                   push_url=args.push, push_token_file=args.push_token_file,
                   spool_dir=Path(spool) if spool else state_path.parent / "spool",
                   max_spool=getattr(args, "max_spool", 100), events=style if style in ("text", "json") else "text",
                   events_file=None if style in ("text", "json") else style, syslog=getattr(args, "syslog", None),
                   quiet=args.quiet, full_every=max(1, getattr(args, "full_every", 10)),
                   slow_every=max(1, getattr(args, "slow_every", 10)), insecure=getattr(args, "insecure", False),
                   sign=getattr(args, "sign", False),
                   timeout=getattr(args, "timeout", 600.0), call_timeout=getattr(args, "call_timeout", 5.0))


# ---------------------------------------------------------------- state


@dataclass
class WatchState:
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    verdict: str | None = None
    updated_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        counters = {k: v for k, v in vars(self.counters).items() if k != "extra"}
        return {"state_version": STATE_VERSION, "updated_at": self.updated_at, "verdict": self.verdict,
                "counters": counters, "findings": self.findings}

    @classmethod
    def from_dict(cls, data: Any, log: Callable[[str], None] | None = None) -> "WatchState":
        """The state as saved; ValueError if it is not a state object at all, bad finding entries dropped."""
        if not isinstance(data, dict) or not isinstance(data.get("findings"), dict):
            raise ValueError("not a watch state object")
        counters = Counters()
        saved = data.get("counters")
        for key, value in (saved.items() if isinstance(saved, dict) else ()):
            if hasattr(counters, key) and key != "extra" and isinstance(value, int) and not isinstance(value, bool):
                setattr(counters, key, value)
        findings = {str(k): v for k, v in data["findings"].items() if valid_entry(v)}
        dropped = len(data["findings"]) - len(findings)
        if dropped and log:
            log(f"state file: dropped {dropped} malformed finding entr{'y' if dropped == 1 else 'ies'}")
        verdict = data.get("verdict") if isinstance(data.get("verdict"), str) else None
        updated = data.get("updated_at") if _number(data.get("updated_at")) else None
        return cls(findings=findings, counters=counters, verdict=verdict, updated_at=updated)


def _number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:          # an integer too large for a float
        return False


def valid_entry(entry: Any) -> bool:
    """A finding entry as diff() and the events read it: times are numbers, texts strings, rule ids a list."""
    if not isinstance(entry, dict) or not _number(entry.get("first_seen")):
        return False
    if any(entry.get(key) is not None and not _number(entry[key]) for key in ("last_seen", "resolved_at")):
        return False
    if any(entry.get(key) is not None and not isinstance(entry[key], str)
           for key in ("severity", "status", "title", "category")):
        return False
    rule_ids = entry.get("rule_ids", [])
    return (isinstance(rule_ids, list) and all(isinstance(r, str) for r in rule_ids)
            and isinstance(entry.get("subject", {}), dict))


def load_state(path: Path, log: Callable[[str], None]) -> tuple[WatchState, bool]:
    """The saved state and whether it may be overwritten (False: unreadable, kept until a cycle succeeds)."""
    from audit_agent.collect.safe_read import NotRegularFile, Refused, read_no_symlink
    try:
        return WatchState.from_dict(json.loads(read_no_symlink(path, MAX_STATE_BYTES)), log), True
    except FileNotFoundError:
        return WatchState(), True
    except (NotRegularFile, Refused):
        log(f"state file {path} is not a plain file (a symlink or something planted); not followed, "
            "starting with empty state")
        return WatchState(), True
    except (OSError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        log(f"state file {path} unreadable ({reason}); starting with empty state, "
            "keeping the file until a scan succeeds")
        return WatchState(), False


def diff(state: WatchState, report: AuditReport, now: float) -> list[dict[str, Any]]:
    """Update `state` with this report's findings; return the change events (new, resolved, changed)."""
    events: list[dict[str, Any]] = []
    current: dict[str, Finding] = {}
    for finding in report.findings:
        current.setdefault(finding.fingerprint, finding)     # several processes of one binary: one entry
    for fp, finding in current.items():
        entry = state.findings.get(fp)
        if entry is None or entry.get("resolved_at"):
            previous = entry.get("resolved_at") if entry else None
            entry = state.findings[fp] = {"first_seen": entry["first_seen"] if entry else now}
            events.append(event("new", finding, reappeared_after=previous))
        else:
            if entry.get("severity") != finding.severity.value:
                events.append(event("severity_changed", finding, previous_severity=entry.get("severity")))
            if entry.get("status") != finding.status.value:
                events.append(event("status_changed", finding, previous_status=entry.get("status")))
        entry.update(last_seen=now, resolved_at=None, **describe(finding))
    for fp, entry in state.findings.items():
        if fp not in current and not entry.get("resolved_at"):
            entry["resolved_at"] = now
            events.append({"event": "resolved", "fingerprint": fp, "severity": entry.get("severity"),
                           "title": entry.get("title", ""), "rule_ids": entry.get("rule_ids", []),
                           "subject": entry.get("subject", {}), "first_seen": entry.get("first_seen")})
    if report.verdict.value != state.verdict:
        events.append({"event": "verdict_changed", "verdict": report.verdict.value, "previous_verdict": state.verdict,
                       "reasons": report.verdict_reasons})
        state.verdict = report.verdict.value
    prune(state, now)
    host = report.host.hostname
    for item in events:
        item["host"] = host
        item["time"] = now
    return events


def describe(finding: Finding) -> dict[str, Any]:
    subject = finding.subject
    return {"severity": finding.severity.value, "status": finding.status.value, "title": finding.title,
            "category": finding.category, "rule_ids": list(finding.rule_ids),
            "subject": {"kind": subject.kind, "pid": subject.pid, "name": subject.name[:TEXT_CAP],
                        "exe": subject.exe[:TEXT_CAP], "username": subject.username[:TEXT_CAP],
                        "path": subject.path[:TEXT_CAP]}}


def event(kind: str, finding: Finding, **extra: Any) -> dict[str, Any]:
    data = {"event": kind, "fingerprint": finding.fingerprint, **describe(finding)}
    data.update({k: v for k, v in extra.items() if v is not None})
    return data


def prune(state: WatchState, now: float) -> None:
    for fp in [fp for fp, e in state.findings.items()
               if e.get("resolved_at") and now - float(e["resolved_at"]) > RESOLVED_KEEP_SECONDS]:
        del state.findings[fp]
    if len(state.findings) > MAX_STATE_FINDINGS:       # drop the longest-resolved first, then the oldest seen
        order = sorted(state.findings, key=lambda fp: (state.findings[fp].get("resolved_at") is None,
                                                       state.findings[fp].get("last_seen") or 0))
        for fp in order[:len(state.findings) - MAX_STATE_FINDINGS]:
            del state.findings[fp]


# ---------------------------------------------------------------- output


def clean(text: Any, cap: int = TEXT_CAP) -> str:
    """Process data is attacker-controlled: no control characters or ANSI escapes reach the terminal."""
    value = str(text)[:cap]
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in value)


def format_event(item: dict[str, Any], style: str) -> str:
    if style == "json":
        return json.dumps(item, ensure_ascii=True, sort_keys=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item["time"]))
    kind = item["event"]
    if kind == "verdict_changed":
        return f"{stamp} verdict {clean(item.get('previous_verdict') or '(none)')} -> {item['verdict']}"
    subject = item.get("subject", {})
    parts = [stamp, kind, str(item.get("severity")), f"fp={item['fingerprint']}", ",".join(item.get("rule_ids", []))]
    if kind == "severity_changed":
        parts[2] = f"{item.get('previous_severity')}->{item.get('severity')}"
    if kind == "status_changed":
        parts.append(f"status={item.get('previous_status')}->{item.get('status')}")
    if subject.get("pid") is not None:
        parts.append(f"pid={subject['pid']}")
    for key in ("exe", "name", "path"):
        if subject.get(key):
            parts.append(f"{key}={clean(subject[key])!r}")
            break
    if subject.get("username"):
        parts.append(f"user={clean(subject['username'])}")
    return " ".join(parts) + f": {clean(item.get('title', ''))}"


# ---------------------------------------------------------------- the watcher


class Watcher:
    def __init__(self, options: WatchOptions, stop: threading.Event, out: TextIO = sys.stdout,
                 err: TextIO = sys.stderr) -> None:
        self.options = options
        self.stop = stop
        self.out = out
        self.err = err
        self._write_errors: dict[str, str] = {}
        self.inputs: Inputs = load_inputs(options.rules, options.config)   # ConfigError at start: exit 2
        self._inputs_signature = self.inputs_signature()
        self.state, self._state_writable = load_state(options.state_path, self.log)
        self.last_report: AuditReport | None = None
        self.tracker: Any = None                    # IncrementalProcesses, opened on the first cycle
        self.last_snapshot: Snapshot | None = None      # the last cycle's, for what a fast cycle carries
        self.last_slow: Any = None                  # the last snapshot with hidden-process and persistence checks
        self.cycles = 0
        if options.push_url:
            from audit_agent.export.push import check_push
            check_push(options.push_url, options.push_token_file, options.insecure)   # fail early: exit 2
        self.check_output_dirs()
        self.signing: Any = None
        if options.sign:
            from audit_agent.trust.hostkey import signing_identity
            self.signing = signing_identity(options.etc_root)     # made or read now: a problem is exit 2

    def check_output_dirs(self) -> None:
        """Refuse (exit 2) at start an existing output directory another user could write: see safe_write."""
        from audit_agent.safe_write import check_target_dir
        o = self.options
        dirs = [o.state_path.parent, o.textfile_dir, Path(o.json_path).parent if o.json_path else None,
                o.spool_dir if o.push_url else None]
        for directory in dirs:
            if directory is not None and Path(directory or ".").is_dir():
                check_target_dir(directory or ".")

    def log(self, message: str) -> None:
        print(f"audit-agent watch: {clean(message, 500)}", file=self.err, flush=True)

    def info(self, message: str) -> None:
        if not self.options.quiet:
            self.log(message)

    # -- rules and config: reload when their files change, keep the last good ones otherwise

    def rules_path(self) -> Path:
        return active_rules_path(self.options.rules) or default_rules_dir()

    def inputs_signature(self) -> tuple[Any, ...]:
        paths = [self.rules_path()]
        if self.options.config:
            paths.append(Path(self.options.config))
        if self.inputs.policy.filings_path:
            paths.append(Path(self.inputs.policy.filings_path))
        paths.append(Path(tuning_dir(self.inputs.policy)))     # a rules.d change takes effect next cycle
        return tuple((str(p), *file_signature(p)) for p in paths)

    def maybe_reload(self) -> None:
        signature = self.inputs_signature()
        if signature == self._inputs_signature:
            return
        self._inputs_signature = signature
        pack = self.inputs.rules.pack
        try:
            inputs = load_inputs(self.options.rules, self.options.config)
        except ConfigError as exc:
            self.log(f"rule pack or config changed but is invalid; keeping {pack.name} {pack.version}: {exc}")
            return
        self.inputs = inputs
        self.last_snapshot = None       # what the last cycle found was found with the old rules: look again
        self._inputs_signature = self.inputs_signature()      # the filings path may have changed
        self.info(f"reloaded rules {inputs.rules.pack.name} {inputs.rules.pack.version}")

    # -- one cycle

    def fail_on(self) -> Severity | None:
        """The config's fail_on (None: never), else high."""
        return self.inputs.policy.fail_on_or(Severity.HIGH)

    def collect(self) -> Snapshot:
        from audit_agent.collect import CollectOptions, collect_snapshot

        def check_stop(what: str, done: float) -> None:
            if self.stop.is_set():
                raise Stopped()
        from audit_agent.collect.incremental import IncrementalProcesses, carry_slow_checks
        o = self.options
        if self.tracker is None and not o.once:
            self.tracker = IncrementalProcesses.open(o.proc_root, o.full_every)
        slow = self.last_slow is None or self.cycles % o.slow_every == 0
        self.cycles += 1
        from audit_agent.collect.carry import Carry
        carry = None if slow or self.last_snapshot is None or self.tracker is None else \
            Carry(self.last_snapshot, self.tracker)
        snapshot = collect_snapshot(CollectOptions(window=o.window, proc_root=o.proc_root, sys_root=o.sys_root,
                                                   etc_root=o.etc_root,
                                                   signature_strings=self.inputs.rules.signature_strings(),
                                                   rules_fingerprint=self.inputs.rules.fingerprint,
                                                   yara_sources=self.inputs.rules.pack.yara_sources,
                                                   progress=check_stop, check_stealth=slow, check_persistence=slow,
                                                   process_source=self.tracker, check_families=slow,
                                                   families=self.inputs.rules.pack.families, timeout=o.timeout,
                                                   call_timeout=o.call_timeout, carry=carry))
        self.last_snapshot = snapshot
        if slow:
            self.last_slow = snapshot
        else:
            carry_slow_checks(snapshot, self.last_slow)
        return snapshot

    def cycle(self) -> AuditReport | None:
        """Collect, evaluate, report changes, export. Returns the report, or None when the scan failed."""
        self.maybe_reload()
        started = time.monotonic()
        try:
            snapshot = self.collect()
            report = run_scan(snapshot, self.inputs, self.fail_on())
        except Stopped:
            return None
        except Exception as exc:  # noqa: BLE001 - a failing collector must not end monitoring
            self.state.counters.scan_errors_total += 1
            self.log(f"scan failed, will retry next cycle: {type(exc).__name__}: {exc}")
            if self._state_writable:        # an unreadable state file is kept until a scan succeeds
                self.guarded("state", self.save_state)
            return None
        duration = time.monotonic() - started
        now = time.time()
        self.state.counters.scans_total += 1
        changes = diff(self.state, report, now)
        for item in changes:
            print(format_event(item, self.options.events), file=self.out, flush=True)
        if changes and (self.options.events_file or self.options.syslog):
            self.guarded("events", lambda: self.export_events(report, changes))
        self.state.updated_at = now
        self.last_report = report
        json_path, push_url, textfile_dir = self.options.json_path, self.options.push_url, self.options.textfile_dir
        signed = report
        if self.signing is not None and (json_path or push_url):
            from audit_agent.trust.signature import sign_report
            signed = sign_report(report, *self.signing)
        payload = dumps(signed.to_dict(), indent=None).encode("utf-8") if json_path or push_url else b""
        if json_path:
            from audit_agent.output import write_atomic
            self.guarded("report", lambda: write_atomic(json_path, payload))
        if self.options.html_dir:
            self.guarded("html report", lambda: self.write_html(report))
        if push_url:
            self.guarded("push spool", lambda: self.push(payload, push_url))
        if textfile_dir:
            self.guarded("metrics", lambda: self.write_metrics(report, duration, now, textfile_dir))
        self._state_writable = True
        self.guarded("state", self.save_state)
        return report

    def export_events(self, report: AuditReport, changes: list[dict[str, Any]]) -> None:
        from audit_agent.export.events import append_events, change_events
        events = change_events(report, changes)
        if self.options.events_file:
            append_events(self.options.events_file, events)
        if self.options.syslog:
            from audit_agent.export.syslog import send
            send(self.options.syslog, events, report.host.hostname)

    def push(self, payload: bytes, url: str) -> None:
        from audit_agent.export.push import PushConfig, deliver
        spool_dir = self.options.spool_dir or self.options.state_path.parent / "spool"
        config = PushConfig(url=url, spool_dir=spool_dir,
                            token_file=self.options.push_token_file, max_spool=self.options.max_spool,
                            insecure=self.options.insecure)
        try:
            result = deliver(payload, config, sleep=self.stop.wait)
        except ConfigError as exc:
            result = None
            self.log(f"push skipped: {exc}")
        counters = self.state.counters
        if result is None:
            counters.push_failures_total += 1
            return
        counters.spool_pending = result.pending
        counters.spool_dropped_total += result.dropped
        counters.push_failures_total += 1 if result.spooled else 0
        for message in result.errors:
            self.log(f"push: {message}")
        if result.spooled:
            self.log(f"push: report spooled in {config.spool_dir} ({result.pending} waiting)")

    def write_metrics(self, report: AuditReport, duration: float, now: float, directory: str) -> None:
        from audit_agent.export.prometheus import render, write_textfile
        write_textfile(directory, render(report, duration, now, self.state.counters))

    def write_html(self, report: AuditReport) -> None:
        """The signable report of this cycle, dated, beside the JSON: a scheduled audit leaves a document."""
        from audit_agent.output import write_atomic
        from audit_agent.render import RenderOptions, render
        Path(self.options.html_dir or ".").mkdir(mode=0o750, parents=True, exist_ok=True)
        write_atomic(html_report_path(self.options.html_dir or ".", report),
                     render("html", report, RenderOptions(lang=self.options.lang)))

    def save_state(self) -> None:
        from audit_agent.output import write_atomic
        from audit_agent.safe_write import make_private_dir
        path = self.options.state_path
        make_private_dir(path.parent)
        write_atomic(path, json.dumps(self.state.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")

    def guarded(self, what: str, action: Callable[[], Any]) -> None:
        """Run a write; on OSError (full disk, read-only, missing dir) log once per distinct error and go on."""
        try:
            action()
        except OSError as exc:
            message = f"cannot write {what}: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}"
            if what != "state":
                self.state.counters.write_errors_total += 1
            key = f"{exc.errno}:{exc.strerror}"        # not the file name: temp names differ every time
            if self._write_errors.get(what) != key:
                self._write_errors[what] = key
                self.log(message + " (continuing)")
            return
        if self._write_errors.pop(what, None):
            self.log(f"writing {what} works again")

    # -- the loop

    def run_forever(self) -> None:
        o = self.options
        self.info(f"watching every {o.interval:g}s with rules {self.inputs.rules.pack.name} "
                  f"{self.inputs.rules.pack.version}; state {o.state_path}")
        while not self.stop.is_set():
            started = time.monotonic()
            self.cycle()
            rest = max(o.interval - (time.monotonic() - started), 0.1 * o.interval)
            self.stop.wait(rest)
        self.info("stopped")


def file_signature(path: Path) -> tuple[Any, ...]:
    """Cheap change detection: (inode, size, mtime) of a file, or of a directory and the files in it."""
    try:
        st = path.stat()
    except OSError:
        return ("missing",)
    parts: list[tuple[Any, ...]] = [(st.st_ino, st.st_size, st.st_mtime_ns)]
    if path.is_dir():
        for child in sorted(list(path.glob("*.yaml")) + list(path.glob("yara/*"))):
            try:
                cst = child.stat()
            except OSError:
                continue
            parts.append((child.name, cst.st_ino, cst.st_size, cst.st_mtime_ns))
    return tuple(parts)


def install_stop_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT set `stop`; a second signal interrupts at once. Returns a function that restores."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return restore


def run_watch(args: argparse.Namespace) -> int:
    from audit_agent.evaluate import exit_code

    stop = threading.Event()
    watcher = Watcher(WatchOptions.from_args(args), stop)
    restore = install_stop_handlers(stop)
    try:
        if watcher.options.once:
            report = watcher.cycle()
            if report is None:
                return 2
            return exit_code(report, watcher.fail_on())
        watcher.run_forever()
        return 0
    finally:
        restore()


def html_report_path(folder: str, report: AuditReport) -> Path:
    """FOLDER/HOST-YYYY-MM-DD.html, the day in the institution's time zone; a later run that day replaces it."""
    from audit_agent.timezone import institution_zone, local_day
    try:
        zone = institution_zone(report.timezone or "")
    except ValueError:          # a label that is no zone name: the host's zone
        zone = institution_zone()
    day = local_day(report.collected_at or time.time(), zone)
    host = "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in report.host.hostname)[:64] or "host"
    return Path(folder) / f"{host}-{day.isoformat()}.html"
