"""Signal producers: each module turns one part of a Snapshot into Signals about subjects.

A Signal is one reason to suspect one subject. evaluate.py folds every Signal
about the same subject into one Finding. Producers are pure: no I/O.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable, Hashable, Iterable, TypeVar

from msgspec import Struct, field

from audit_agent.detect.memo import SignalMemo
from audit_agent.model import Evidence, ProcessInfo, Severity, Snapshot, Subject
from audit_agent.policy import Policy
from audit_agent.redact import cap, redact_cmdline
from audit_agent.rules.compiler import CompiledRules, Hit
from audit_agent.rules.loader import Rule
from audit_agent.yamlfile import load_data


class Signal(Struct):
    subject_key: str            # "pid:123", "gpu:0", "host", "file:/etc/crontab"
    subject: Subject
    rule_id: str
    title: str
    category: str
    severity: Severity
    confidence: float
    reason: str
    evidence: Evidence
    action: str = ""
    indicator: str = ""         # the stable matched indicator, for the fingerprint
    weak: bool = False          # only raises confidence / asks for review; never condemns alone
    tags: list[str] = field(default_factory=list)
    identifies: str = ""        # the coin or network family the rule names (AA-QUBIC-...): what was found, so
                                # among equally grave signals it titles the finding, not a generic pool rule


class Context(Struct):
    """What every producer gets: the snapshot, compiled rules, policy, and a pid index."""
    snapshot: Snapshot
    rules: CompiledRules
    policy: Policy
    by_pid: dict[int, ProcessInfo]
    by_namespace_pid: dict[int, ProcessInfo] = field(default_factory=dict)   # inner NSpid -> process, if unique
    memo: SignalMemo | None = None      # conclusions of earlier runs on unchanged inputs (detect/memo.py)
    _looks: dict[int, int] | None = None

    def looks(self) -> dict[int, int]:
        """pid -> a number for what the process says of itself: name, executable, command line and environment.
        Processes that say the same share it (made once per evaluation): the key each_process starts from."""
        if self._looks is None:
            ids: dict[tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...]], int] = {}
            self._looks = {pid: ids.setdefault((proc.name, proc.exe, tuple(proc.cmdline), tuple(proc.environ.items())),
                                               len(ids))
                           for pid, proc in self.by_pid.items()}
        return self._looks

    @classmethod
    def build(cls, snapshot: Snapshot, rules: CompiledRules, policy: Policy,
              memo: SignalMemo | None = None) -> "Context":
        by_pid = {p.pid: p for p in snapshot.processes}
        for hidden in snapshot.stealth.hidden_pids:
            by_pid.setdefault(hidden.pid, ProcessInfo(pid=hidden.pid, name=hidden.name, exe=hidden.exe,
                                                      cmdline=hidden.cmdline, hidden=True))
        return cls(snapshot, rules, policy, by_pid, namespace_index(by_pid.values()), memo)


# Off only in the tests that check the shortcut below against judging every process (tests/test_evaluate_dedup.py).
JUDGE_ONCE = True


Said = TypeVar("Said")
ALONE = object()        # also(proc): this process is judged on its own


def each_process(ctx: Context, judge: Callable[[ProcessInfo], list[Said]],
                 also: Callable[[ProcessInfo], Hashable] | None = None) -> list[Said]:
    """judge(proc) for every process, except that a process that looks like one judged silent is skipped: a
    host's thousands of identical workers or sleepers are judged once, not each.

    The look (Context.looks: name, executable, command line, environment) and `also(proc)` together must hold
    everything `judge` reads that can make it say something, but the pid; `also` answers ALONE for a process
    that is always judged on its own. A process that does say something is judged each time: its signals
    name it."""
    found: list[Said] = []
    silent: set[tuple[int, Hashable]] = set()
    looks = ctx.looks() if JUDGE_ONCE else None
    for proc in ctx.by_pid.values():
        seen: tuple[int, Hashable] | None = None
        if looks is not None:
            extra = also(proc) if also is not None else None
            if extra is not ALONE:
                seen = (looks[proc.pid], extra)
                if seen in silent:
                    continue
        said = judge(proc)
        if said:
            found.extend(said)
        elif seen is not None:
            silent.add(seen)
    return found


def namespace_index(processes: Iterable[ProcessInfo]) -> dict[int, ProcessInfo]:
    """Each pid a process has inside a nested pid namespace (NSpid after the first), where only one has it:
    two containers both have a pid 1, and such a pid names nobody."""
    seen: dict[int, list[ProcessInfo]] = {}
    for proc in processes:
        for inner in proc.ns_pids[1:]:
            seen.setdefault(inner, []).append(proc)
    return {pid: owners[0] for pid, owners in seen.items() if len(owners) == 1}


def process_subject(proc: ProcessInfo) -> Subject:
    return Subject(kind="process", pid=proc.pid, name=cap(proc.name, 256), exe=cap(proc.exe, 1024),
                   cmdline=redact_cmdline(proc.cmdline), username=proc.username, cgroup=cap(proc.cgroup, 512),
                   container_id=proc.container_id, slurm_job_id=proc.slurm_job_id, terminal=proc.terminal)


def process_key(pid: int) -> str:
    return f"pid:{pid}"


def signal_from_hit(hit: Hit, key: str, subject: Subject, *, field_name: str | None = None,
                    value: str | None = None, weak: bool = False, severity: Severity | None = None,
                    confidence: float | None = None) -> Signal:
    """A Signal from a rule Hit: the rule's reason template filled with redacted, capped values."""
    rule = hit.rule
    shown = cap(value if value is not None else hit.value, 300)
    where = field_name or hit.field
    return Signal(subject_key=key, subject=subject, rule_id=rule.id, title=rule.title, category=rule.category,
                  severity=severity or rule.severity, confidence=rule.confidence if confidence is None else confidence,
                  reason=safe_format(rule.reason, field=where, value=shown, matched=cap(hit.matched, 200)),
                  evidence=Evidence(field=where, value=shown, matched=cap(hit.matched, 200), rule_id=rule.id,
                                    facts=dict(hit.facts)),
                  action=rule.action, indicator=hit.matched, weak=weak, identifies=rule_family(rule))


def rule_family(rule: Rule) -> str:
    """The family a rule was compiled from (rules/families/*.yaml), or ''."""
    params = rule.params if isinstance(rule.params, dict) else {}
    return str(params.get("family") or "")


def safe_format(template: str, **values: str) -> str:
    """Fill a reason template; the values are data and are never themselves formatted."""
    try:
        return " ".join(template.format(**values).split())
    except (KeyError, IndexError, ValueError):
        return f"{template} ({values.get('field')}: {values.get('value')})"


@lru_cache(maxsize=1)
def coded_checks() -> dict[str, dict[str, str]]:
    """{rule id: {category, source, reference}} of the coded checks (audit_agent/detect/checks.yaml)."""
    data = load_data(Path(__file__).resolve().parent / "checks.yaml") or {}
    return {str(rule_id): {k: str(v) for k, v in entry.items()} for rule_id, entry in (data.get("checks") or {}).items()}
