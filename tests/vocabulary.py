"""Everything the engine can say, enumerated from the live sources, and a report that says all of it.

Other engineers add rule ids, check ids, coverage reasons, categories, subject kinds and evidence
fields in their own modules; these functions read them from the code and data as they are, so a new
name without its translation fails tests/test_i18n_nodes.py at once.
"""
from __future__ import annotations

import ast
import re
import string
from pathlib import Path

from audit_agent.detect import coded_checks
from audit_agent.i18n import coverage_reasons, load_messages, load_rule_texts
from audit_agent.model import (CATEGORIES, AcceptedGap, AuditReport, Coverage, CoverageDetail, CoverageStatus, Evidence, Finding,
                               FindingStatus, HostInfo, RulePackInfo, Severity, Subject, Verdict)
from audit_agent.rules.loader import load_pack

PACKAGE = Path(__file__).resolve().parents[1] / "audit_agent"
RULE_ID = re.compile(r"""["'](AA-[A-Z]+-\d{3})["']""")
DATA = "DATA-Ω"          # stands for a value from the host in the synthetic report: never translated


def sources(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((PACKAGE / folder).rglob("*.py"))]


def calls(paths: list[Path], names: set[str]) -> list[ast.Call]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in names:
                    found.append(node)
    return found


def module_strings(paths: list[Path]) -> dict[str, str]:
    """NAME = "literal" at module level, so CHECK = "binaries" resolves where a call passes CHECK."""
    constants: dict[str, str] = {}
    for path in paths:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            value = node.value if isinstance(node, ast.Assign) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                constants.update({t.id: value.value for t in node.targets if isinstance(t, ast.Name)})  # type: ignore[union-attr]
    return constants


def literal(node: ast.AST, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def rule_ids() -> set[str]:
    coded = {rule_id for path in sources("detect") for rule_id in RULE_ID.findall(path.read_text(encoding="utf-8"))}
    return {rule.id for rule in load_pack().rules} | coded | set(coded_checks())


def check_ids() -> set[str]:
    """The first argument of every coverage()/Coverage() call in the collectors, plus the core checks."""
    found: set[str | None] = set()
    for path in sources("collect"):         # constants resolve per module: each has its own CHECK
        constants = module_strings([path])
        found |= {literal(call.args[0], constants) for call in calls([path], {"coverage", "Coverage"}) if call.args}
        found |= {value for name, value in constants.items() if name.startswith("CHECK")}
    return {name for name in found if name} | {"processes", "network", "host"}


def coverage_codes() -> set[str]:
    """Every because("code") in the collectors, and every code of the English registry."""
    paths = sources("collect")
    used = {literal(call.args[0], {}) for call in calls(paths, {"because"}) if call.args}
    return {code for code in used if code} | set(coverage_reasons("en"))


def subject_kinds() -> set[str]:
    paths = sources("detect")
    kinds = {literal(kw.value, {}) for call in calls(paths, {"Subject"}) for kw in call.keywords if kw.arg == "kind"}
    return {kind for kind in kinds if kind} | {"process"}


def evidence_fields() -> set[str]:
    """field=/field_name= literals in the detectors, the fields the rule compiler names, and a few more."""
    paths = sources("detect") + [PACKAGE / "rules" / "compiler.py"]
    constants = module_strings(paths)
    found: set[str] = set()
    for call in calls(paths, {"Evidence", "signal_from_hit", "add", "_path_signal", "Hit"}):
        for kw in call.keywords:
            if kw.arg in ("field", "field_name"):
                found.add(literal(kw.value, constants) or "")
    for call in calls(paths, {"Hit"}):
        if len(call.args) > 1:
            found.add(literal(call.args[1], constants) or "")
    for call in calls(paths, {"add"}):         # stealth's add(rule, title, ..., field, value, matched, ...)
        for arg in call.args:
            value = literal(arg, constants)
            if value in ("pid", "exe", "name", "environ", "file", "maps", "mountinfo", "cpu", "sysfs", "meminfo",
                         "sysctl"):
                found.add(value)
    text = (PACKAGE / "rules" / "compiler.py").read_text(encoding="utf-8")
    found |= set(re.findall(r'field: str = "(\w+)"', text))
    return {name for name in found if name and re.fullmatch(r"[a-z_0-9]+", name)}


def persistence_kinds() -> set[str]:
    from audit_agent.detect.persistence import KIND_WORDS
    return set(KIND_WORDS.values())


def decision_codes() -> set[str]:
    from audit_agent.filing.decision import DECISION_TEXT
    return set(DECISION_TEXT) | {"allowlisted"}


def verdict_keys() -> set[str]:
    from audit_agent.evaluate import VERDICT_REASON_TEXT
    return set(VERDICT_REASON_TEXT)


def categories() -> set[str]:
    return set(CATEGORIES) | {rule.category for rule in load_pack().rules} | \
        {entry["category"] for entry in coded_checks().values() if entry.get("category")}


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


# ---------------------------------------------------------------- the report that says everything

def facts_for(rule_id: str) -> list[dict[str, object]]:
    """One facts dict per `facts` template of the rule (English), each placeholder given a value."""
    templates = load_rule_texts("en").get(rule_id, {}).get("facts") or []
    templates = [templates] if isinstance(templates, str) else templates
    return [{name: 7 for name in placeholders(t) - {"value", "matched"}} for t in templates] or [{}]


def everything_report() -> AuditReport:
    english = load_rule_texts("en")
    messages = load_messages("en")
    kinds = sorted(subject_kinds())
    fields = sorted(evidence_fields())
    cats = sorted(categories())
    decisions = sorted(decision_codes())
    statuses = [FindingStatus.OPEN, FindingStatus.REGISTERED, FindingStatus.ALLOWLISTED,
                FindingStatus.REGISTRATION_EXPIRED, FindingStatus.OUTSIDE_REGISTRATION]
    findings = []
    for n, rule_id in enumerate(sorted(rule_ids())):
        entry = english.get(rule_id, {})
        evidence = [Evidence(field=fields[(n + i) % len(fields)], value=f"{DATA} {rule_id}", matched=DATA,
                             rule_id=rule_id, facts=facts) for i, facts in enumerate(facts_for(rule_id))]
        status = statuses[n % len(statuses)]
        decision: dict[str, object] = {}
        if status != FindingStatus.OPEN:
            code = decisions[n % len(decisions)]
            decision = {"code": code, **{name: DATA for name in placeholders(messages.get(f"decision.{code}", ""))}}
        subject = Subject(kind=kinds[n % len(kinds)], pid=100 + n, name=DATA, exe=f"/{DATA}", cmdline=DATA,
                          username=DATA, path=f"/{DATA}")
        if subject.kind == "persistence":
            subject.name = sorted(persistence_kinds())[n % len(persistence_kinds())]
        findings.append(Finding(fingerprint=f"{n:016x}", subject=subject, title=entry.get("title", rule_id),
                                category=cats[n % len(cats)], severity=list(Severity)[n % 5], confidence=0.5,
                                rule_ids=[rule_id], reasons=["ENGLISH-REASON"], evidence=evidence,
                                recommended_action="ENGLISH-ACTION", status=status, status_reason="ENGLISH-STATUS",
                                filing=DATA if status != FindingStatus.ALLOWLISTED else "", decision=decision))
    for kind in persistence_kinds():        # every persistence entry kind, as a subject
        findings.append(Finding(fingerprint="f" * 16, subject=Subject(kind="persistence", name=kind, path=f"/{DATA}"),
                                title=english["AA-PERSIST-101"]["title"], category="persistence",
                                severity=Severity.HIGH, confidence=0.9, rule_ids=["AA-PERSIST-101"]))
    codes = sorted(coverage_codes())
    templates = coverage_reasons("en")
    coverage = []
    for n, check in enumerate(sorted(check_ids())):
        status = list(CoverageStatus)[n % len(CoverageStatus)]
        coverage.append(Coverage(check, status, "ENGLISH-COVERAGE", inspected=3, denied=1,
                                 details=[CoverageDetail(code, {p: DATA for p in placeholders(templates.get(code, ""))})
                                          for code in codes[n::len(check_ids())]],
                                 unreadable=[f"pid 1 {DATA}", f"pid 2 {DATA}"],
                                 accepted=[AcceptedGap(f"pid 2 {DATA}", DATA, f"{DATA}.yaml:3")]))
    verdict_facts = [{"key": key, "values": {"n": 2, "check": sorted(check_ids())[0], "status": "partial",
                                             "detail": "ENGLISH-DETAIL"}} for key in sorted(verdict_keys())]
    return AuditReport(host=HostInfo(hostname=DATA), findings=findings, coverage=coverage,
                       verdict=Verdict.NON_COMPLIANT, verdict_reasons=["ENGLISH-VERDICT"], verdict_facts=verdict_facts,
                       rule_pack=RulePackInfo(name=DATA, version="1", sha256="0" * 64,
                                              references={r: f"https://{DATA}" for r in rule_ids()}),
                       profile={"institution": DATA, "responsible": DATA})
