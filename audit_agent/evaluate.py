"""evaluate: Snapshot + compiled rules + policy (+ filings) -> AuditReport. Pure: no I/O (the clock,
for the report's time, only when `now` is not given).

Every signal about one subject is folded into one Finding listing all reasons;
confidence rises as independent signals agree (noisy-OR over distinct rules).
"""
from __future__ import annotations

import fnmatch
import hashlib
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import msgspec

from audit_agent import __version__
from audit_agent.detect import (
    Context,
    Signal,
    behaviour,
    coded_checks,
    content,
    families,
    gpu,
    identity,
    load,
    network,
    persistence,
    process,
    research,
    stealth,
)
from audit_agent.detect.memo import SignalMemo
from audit_agent.collect.processes import unreadable_label
from audit_agent.filing import Filing, apply_filings
from audit_agent.filing.systems import research_systems
from audit_agent.model import (
    COUNTED_STATUSES,
    AcceptedGap,
    AuditReport,
    Coverage,
    CoverageStatus,
    Finding,
    FindingStatus,
    RulePackInfo,
    Severity,
    Snapshot,
    Subject,
    Verdict,
)
from audit_agent.policy import AcceptUnreadable, AllowEntry, Policy
from audit_agent.rules.compiler import CompiledRules
from audit_agent.timezone import institution_zone, zone_label
from audit_agent.rules.tuning import ScopedAllow, Tuning

PRODUCERS: list[Callable[[Context], list[Signal]]] = [
    process.signals, content.signals, stealth.signals, persistence.signals, gpu.signals, load.signals,
    research.signals,
    network.signals,
    families.signals,
    identity.signals, behaviour.signals,
]
CORE_CHECKS = ("processes", "network")
COUNTED = COUNTED_STATUSES
WEAK_ONLY_CAP = Severity.MEDIUM     # heuristics alone ask for review, they never condemn
ESCALATE_AT = 0.9                   # independent signals this sure together make a finding at least high
MAX_ACCEPTED = 100                  # accepted unreadable processes listed per check; beyond it the gap stays


def evaluate(snapshot: Snapshot, rules: CompiledRules, policy: Policy | None = None,
             filings: list[Filing] | None = None, now: float | None = None,
             fail_on: Severity | None = Severity.HIGH, memo: SignalMemo | None = None) -> AuditReport:
    policy = policy or Policy()
    ctx = Context.build(snapshot, rules, policy, memo)
    collected: list[Signal] = []
    for producer in PRODUCERS:
        collected.extend(producer(ctx))
    kept, tuned_away = apply_tuning(collected, rules.tuning, snapshot.host.hostname)
    findings = fold(kept, rules.kind_of) + allowed_by_tuning(tuned_away, {s.subject_key for s in kept}, rules.kind_of)
    for finding in findings:
        if finding.status == FindingStatus.OPEN:
            apply_allowlist(finding, policy.allowlist, snapshot.host.hostname)
    zone = institution_zone(policy.timezone)
    matched_filings = apply_filings(findings, filings or [], snapshot,
                                    now if now is not None else snapshot.collected_at, zone)
    findings.sort(key=lambda f: (-f.severity.rank, -f.confidence, f.subject.pid or 0, f.fingerprint))
    report = AuditReport(
        agent_version=__version__, generated_at=time.time() if now is None else now,
        collected_at=snapshot.collected_at, window_seconds=snapshot.window_seconds, host=snapshot.host,
        profile=dict(policy.profile),
        rule_pack=RulePackInfo(name=rules.pack.name, version=rules.pack.version, sha256=rules.pack.sha256,
                               files=list(rules.pack.files), references=references(findings, rules)),
        coverage=accept_unreadable(snapshot, policy.accept_unreadable), findings=findings, fail_on=fail_on,
        process_count=len(snapshot.processes), connection_count=len(snapshot.connections),
        load=list(snapshot.load), filings=matched_filings, timezone=zone_label(zone), tuning=list(rules.tuning.changes),
        research_systems=research_systems(findings, snapshot, {r.id: r for r in rules.pack.rules}, filings or []))
    report.verdict, facts = verdict_facts(report)
    report.verdict_reasons = [VERDICT_REASON_TEXT[key].format(**values) for key, values in facts]
    report.verdict_facts = [{"key": key, "values": values} for key, values in facts]
    return report


def accept_unreadable(snapshot: Snapshot, entries: list[AcceptUnreadable]) -> list[Coverage]:
    """The snapshot's coverage, with the unreadable processes the policy accepts (by exe or name) named in
    `accepted` with the institution's reason. The check stays partial; verdict_facts judges whether any gap
    is left (fully_accepted)."""
    shown = list(snapshot.coverage)
    if not entries:
        return shown
    for index, entry in enumerate(shown):
        if entry.check != "processes" or entry.status != CoverageStatus.PARTIAL:
            continue
        accepted = []
        for proc in snapshot.processes:
            rule = next((e for e in entries if e.matches(proc.exe, proc.name)), None) if proc.denied else None
            if rule is not None:
                accepted.append(AcceptedGap(unreadable_label(proc), rule.reason, rule.origin.rsplit("/", 1)[-1]))
        if accepted:
            shown[index] = msgspec.structs.replace(entry, accepted=accepted[:MAX_ACCEPTED + 1])
    return shown


def references(findings: list[Finding], rules: CompiledRules) -> dict[str, str]:
    """The source each cited rule rests on (the pack's `reference`, or the coded check's), for the report."""
    known = {rule.id: rule.reference for rule in rules.pack.rules}
    known.update({rule_id: entry.get("reference", "") for rule_id, entry in coded_checks().items()})
    cited = sorted({rule_id for finding in findings for rule_id in finding.rule_ids})
    return {rule_id: known[rule_id] for rule_id in cited
            if known.get(rule_id, "").startswith(("https://", "http://"))}


def fold(signals: list[Signal], kind_of: dict[str, str] | None = None) -> list[Finding]:
    """One finding per subject, with every reason; severity and confidence from the signals together.

    A subject with research evidence is settled first (detect/research.settle): research-led,
    or a miner when it also mines on a main network or hides.
    """
    by_subject: dict[str, list[Signal]] = defaultdict(list)
    for signal in signals:
        by_subject[signal.subject_key].append(signal)
    groups = [research.settle(group, kind_of or {}) for group in by_subject.values()]
    return [finding_from(group) for group in groups if not only_context(group)]


def only_context(group: list[Signal]) -> bool:
    """Weak informational signals (a busy packaged program, a memfd runtime, hidepid) add to other
    evidence but are no finding on their own: a heavy research workload must stay quiet."""
    return all(s.weak and s.severity == Severity.INFO for s in group)


def finding_from(group: list[Signal]) -> Finding:
    strong = [s for s in group if not s.weak]
    best_per_rule: dict[str, float] = {}
    for signal in group:
        best_per_rule[signal.rule_id] = max(best_per_rule.get(signal.rule_id, 0.0), signal.confidence)
    confidence = combined_confidence(best_per_rule.values())
    if strong:
        severity = max((s.severity for s in strong), key=lambda s: s.rank)
        categories = {s.category for s in group}
        research_led = any(s.category == research.CATEGORY for s in strong)
        if (len(categories) >= 2 and confidence >= ESCALATE_AT and severity.rank < Severity.HIGH.rank
                and not research_led):     # a filed-research subject is judged by the registry, not escalated
            severity = Severity.HIGH
    else:
        severity = min(max((s.severity for s in group), key=lambda s: s.rank), WEAK_ONLY_CAP, key=lambda s: s.rank)
        confidence = min(confidence, 0.6)
    # The finding is titled by its lead: the gravest strong signal, and among equally grave ones one that names
    # what was found (a coin or network family: "Qubic mining software") before a generic one ("Mining pool
    # host name"), then the surest.
    lead = max(group, key=lambda s: (not s.weak, s.severity.rank, bool(s.identifies), s.confidence))
    subject = lead.subject
    for signal in group:                     # a later signal may know more (connections, GPU)
        for endpoint in signal.subject.connections:
            if endpoint not in subject.connections:
                subject.connections.append(endpoint)
        if subject.gpu_index is None and signal.subject.gpu_index is not None:
            subject.gpu_index = signal.subject.gpu_index
    # The lead rule (whose title the finding carries) first: SARIF, JUnit and the reports name the finding by it.
    rule_ids = list(dict.fromkeys([lead.rule_id, *(s.rule_id for s in group)]))
    ordered = sorted(group, key=lambda s: (s.weak, -s.severity.rank, -s.confidence))
    reasons = list(dict.fromkeys(s.reason for s in ordered))
    evidence = []
    seen = set()
    for signal in ordered:
        key = (signal.evidence.field, signal.evidence.value, signal.evidence.matched)
        if key not in seen:
            seen.add(key)
            evidence.append(signal.evidence)
    actions = [s.action for s in ordered if s.action]
    return Finding(fingerprint=fingerprint(subject.exe or subject.name or subject.path or lead.subject_key,
                                           subject.username, rule_ids, [s.indicator for s in group]),
                   subject=subject, title=lead.title, category=lead.category, severity=severity,
                   confidence=round(confidence, 2), rule_ids=rule_ids, reasons=reasons, evidence=evidence,
                   recommended_action=actions[0] if actions else default_action(severity))


def combined_confidence(confidences: Any) -> float:
    remaining_doubt = 1.0
    for value in confidences:
        remaining_doubt *= 1.0 - max(0.0, min(1.0, value))
    return 1.0 - remaining_doubt


def fingerprint(what: str, user: str, rule_ids: list[str], indicators: list[str]) -> str:
    """Stable across scans: no pid, no start time; rule + executable + user + matched indicator."""
    text = "\0".join([what, user, *sorted(rule_ids), *sorted(set(indicators))])
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def default_action(severity: Severity) -> str:
    if severity.rank >= Severity.HIGH.rank:
        return "Stop the process, preserve its executable and configuration as evidence, and find who started it."
    return "Review this workload with its owner and confirm it is approved research."


def apply_allowlist(finding: Finding, allowlist: list[AllowEntry], hostname: str) -> None:
    for entry in allowlist:
        if allow_entry_matches(entry, finding, hostname):
            finding.status = FindingStatus.ALLOWLISTED
            finding.status_reason = f"{entry.reason} (allowlist {entry.origin})"
            # The filed document names the entry by file name and line, not the path it was read from.
            finding.decision = {"code": "allowlisted", "reason": entry.reason,
                                "source": entry.origin.rsplit("/", 1)[-1]}
            return


def apply_tuning(signals: list[Signal], tuning: Tuning,
                 hostname: str) -> tuple[list[Signal], dict[str, tuple[list[Signal], ScopedAllow]]]:
    """Drop disabled rules' signals (coded checks too: pack rules are already left out of the matchers),
    re-grade by rule id, and set aside the signals a rule-scoped allow entry covers."""
    kept: list[Signal] = []
    set_aside: dict[str, tuple[list[Signal], ScopedAllow]] = {}
    for signal in signals:
        if signal.rule_id in tuning.disabled:
            continue
        if signal.rule_id in tuning.severity:
            signal = msgspec.structs.replace(signal, severity=tuning.severity[signal.rule_id])
        scoped = next((a for a in tuning.allows if signal.rule_id in a.rule_ids
                       and subject_allowed(a.entry, signal.subject, hostname)), None)
        if scoped is None:
            kept.append(signal)
        else:
            set_aside.setdefault(signal.subject_key, ([], scoped))[0].append(signal)
    return kept, set_aside


def allowed_by_tuning(set_aside: dict[str, tuple[list[Signal], ScopedAllow]], kept_subjects: set[str],
                      kind_of: dict[str, str] | None = None) -> list[Finding]:
    """A subject that only the allowed rules flagged is still listed, as allowlisted with the tuning reason;
    one that other rules flag too stays open, with only those rules' reasons."""
    findings = []
    for key, (group, scoped) in set_aside.items():
        group = research.settle(group, kind_of or {})
        if key in kept_subjects or only_context(group):
            continue
        finding = finding_from(group)
        finding.status = FindingStatus.ALLOWLISTED
        finding.status_reason = f"{scoped.entry.reason} (tuning {scoped.entry.origin})"
        findings.append(finding)
    return findings


def allow_entry_matches(entry: AllowEntry, finding: Finding, hostname: str) -> bool:
    return subject_allowed(entry, finding.subject, hostname)


def subject_allowed(entry: AllowEntry, subject: Subject, hostname: str) -> bool:
    if entry.exe and not (subject.exe and fnmatch.fnmatchcase(subject.exe, entry.exe)):
        return False
    if entry.user and entry.user != subject.username:
        return False
    if entry._cmdline_regex and not entry._cmdline_regex.search(subject.cmdline):
        return False
    if entry.host and not fnmatch.fnmatchcase(hostname, entry.host):
        return False
    return True


VERDICT_REASON_TEXT = {       # English; the reports translate the same facts (reports/i18n: verdict_reason.*)
    "high": "{n} finding(s) of high or critical severity",
    "review": "{n} finding(s) to review",
    "gap": "check {check} is {status}: {detail}",   # the reports phrase the detail from the coverage entry
    "clean": "no mining workload found and every core check ran in full",
    "clean_accepted": "no mining workload found and every core check ran in full, except what the policy accepts",
    "accepted": "check {check}: {n} unreadable item(s) accepted by policy (accept_unreadable)",
}


def verdict_facts(report: AuditReport) -> tuple[Verdict, list[tuple[str, dict[str, Any]]]]:
    """The verdict and the facts behind it, as (key, values) pairs any language can phrase."""
    counted = [f for f in report.findings if f.status in COUNTED]
    high = [f for f in counted if f.severity.rank >= Severity.HIGH.rank]
    review = [f for f in counted if Severity.LOW.rank <= f.severity.rank < Severity.HIGH.rank]
    gaps = [c for c in report.coverage
            if ((c.check in CORE_CHECKS and c.status != CoverageStatus.OK) or c.status == CoverageStatus.ERROR)
            and not fully_accepted(c)]
    accepted = [("accepted", {"check": c.check, "n": len(c.accepted)}) for c in report.coverage
                if c.check in CORE_CHECKS and fully_accepted(c)]
    facts: list[tuple[str, dict[str, Any]]] = []
    if high:
        facts.append(("high", {"n": len(high)}))
    if review:
        facts.append(("review", {"n": len(review)}))
    facts += [("gap", {"check": gap.check, "status": gap.status.value, "detail": gap.reason}) for gap in gaps]
    if high:
        return Verdict.NON_COMPLIANT, facts + accepted
    if review:
        return Verdict.NEEDS_REVIEW, facts + accepted
    if gaps:
        return Verdict.INCOMPLETE, facts + accepted
    return Verdict.COMPLIANT, [("clean_accepted", {}), *accepted] if accepted else [("clean", {})]


def fully_accepted(coverage: Coverage) -> bool:
    """A partial check whose every unreadable item the policy accepts (a sandboxed init) is no gap. Every one:
    the named ones and those only counted (a process hidepid hid is denied but not named, so never accepted)."""
    return (coverage.status == CoverageStatus.PARTIAL and bool(coverage.accepted)
            and len(coverage.accepted) <= MAX_ACCEPTED
            and len(coverage.accepted) >= max(coverage.denied, len(coverage.unreadable)))


def verdict(report: AuditReport) -> tuple[Verdict, list[str]]:
    result, facts = verdict_facts(report)
    return result, [VERDICT_REASON_TEXT[key].format(**values) for key, values in facts]


def exit_code(report: AuditReport, fail_on: Severity | None, fail_on_incomplete: bool = False) -> int:
    """0 nothing at or above fail_on; 1 findings at or above it; 3 incomplete (only if asked)."""
    return exit_status([f.severity for f in report.findings if f.status in COUNTED],
                       report.verdict == Verdict.INCOMPLETE, fail_on, fail_on_incomplete)


def exit_status(counted: list[Severity], incomplete: bool, fail_on: Severity | None,
                fail_on_incomplete: bool = False) -> int:
    """The exit code from the severities of the counted findings (one host's, or a whole fleet's)."""
    if fail_on is not None and any(severity.rank >= fail_on.rank for severity in counted):
        return 1
    if fail_on_incomplete and incomplete:
        return 3
    return 0
