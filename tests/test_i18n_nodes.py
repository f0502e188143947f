"""No untranslated text in a report: every rule id, check id, coverage reason, verdict fact, subject kind,
category, evidence field and filing decision the engine can emit is rendered in both languages, and the
rendered HTML's text nodes are read one by one.

A text node outside `translate="no"` (the marker of data from the host) may hold data, but no word that
comes from English: in a zh-CN report a Latin word is allowed only if the Chinese translation files use it
themselves (GPU, XMRig, systemd, ...). Data-marked nodes must really be data: text of the report's own
host-side values, never the engine's English sentences. The names are read from the live sources
(tests/vocabulary.py), so a name another change adds without its translation fails here.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import yaml

from audit_agent.i18n import LANGS, coverage_reasons, i18n_dir, load_messages, load_rule_texts
from audit_agent.render import RenderOptions, render
from tests import vocabulary
from tests.vocabulary import DATA

LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]")
ENGLISH_MARKERS = ("ENGLISH-",)          # the engine's English sentences in the synthetic report
VOID = {"meta", "br", "col", "input", "link", "img", "rect", "line", "polyline", "hr", "wbr"}


class TextNodes(HTMLParser):
    """(text, inside translate="no") for every text node outside <style> and <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.nodes: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            return
        data = dict(attrs).get("translate") == "no" or (bool(self.stack) and self.stack[-1][1])
        self.stack.append((tag, data))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        if any(tag in ("style", "script") for tag, _ in self.stack) or not data.strip():
            return
        self.nodes.append((data.strip(), bool(self.stack) and self.stack[-1][1]))


def text_nodes(html: str) -> list[tuple[str, bool]]:
    parser = TextNodes()
    parser.feed(html)
    return parser.nodes


def chinese_vocabulary() -> set[str]:
    """Latin words the Chinese translation files use themselves: product names and technical terms."""
    words: set[str] = set()
    for path in i18n_dir().glob("*zh-CN.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        words |= {w.lower() for w in LATIN_WORD.findall(strings_of(data))}
    # the Chinese rule texts, wherever they come from (coin families carry their own): coin and product names
    words |= {w.lower() for w in LATIN_WORD.findall(strings_of(load_rule_texts("zh-CN")))}
    return words


def strings_of(data) -> str:     # noqa: ANN001 - any YAML value
    if isinstance(data, dict):
        return " ".join(strings_of(v) for v in data.values())     # values only: keys are English by design
    if isinstance(data, list):
        return " ".join(strings_of(v) for v in data)
    return str(data)


def untranslated(html: str, lang: str) -> list[str]:
    """Text nodes that show English where the report's language is asked, or engine sentences anywhere."""
    allowed = chinese_vocabulary() if lang == "zh-CN" else None
    bad = []
    for text, is_data in text_nodes(html):
        if any(marker in text for marker in ENGLISH_MARKERS):
            bad.append(text)
            continue
        if re.search(r"\{\w+\}", text) or text in load_messages("en"):       # a placeholder or a raw key
            bad.append(text)
            continue
        if is_data or allowed is None:
            continue
        rest = text.replace(DATA, " ")
        words = [w for w in LATIN_WORD.findall(rest) if w.lower() not in allowed and not re.fullmatch(r"T\d{4}", w)]
        if words:
            bad.append(f"{text!r}: {words}")
    return bad


@pytest.fixture(scope="module")
def everything():
    return vocabulary.everything_report()


def test_the_vocabulary_is_read_from_the_live_sources():
    assert len(vocabulary.rule_ids()) >= 71
    assert {"processes", "network", "binaries", "configs", "persistence", "stealth", "hidden-processes",
            "libraries", "gpu"} <= vocabulary.check_ids()
    assert {"processes_denied", "step_failed"} <= vocabulary.coverage_codes()
    assert {"process", "gpu", "host", "persistence", "connection", "file"} <= vocabulary.subject_kinds()
    assert {"cmdline", "config", "binary", "persistence", "memory", "connection"} <= vocabulary.evidence_fields()
    assert {"filing_valid", "filing_expired", "allowlisted"} <= vocabulary.decision_codes()


@pytest.mark.parametrize("lang", LANGS)
def test_every_name_has_its_label_in_both_languages(lang):
    messages = load_messages(lang)
    rules = load_rule_texts(lang)
    missing = [f"check.{c}" for c in vocabulary.check_ids() if f"check.{c}" not in messages]
    missing += [f"kind.{k}" for k in vocabulary.subject_kinds() if f"kind.{k}" not in messages]
    missing += [f"category.{c}" for c in vocabulary.categories() if f"category.{c}" not in messages]
    missing += [f"field.{f}" for f in vocabulary.evidence_fields() if f"field.{f}" not in messages]
    missing += [f"entry.{k}" for k in vocabulary.persistence_kinds() if f"entry.{k}" not in messages]
    missing += [f"decision.{d}" for d in vocabulary.decision_codes() if f"decision.{d}" not in messages]
    missing += [f"verdict_reason.{v}" for v in vocabulary.verdict_keys() if f"verdict_reason.{v}" not in messages]
    missing += [f"coverage code {c}" for c in vocabulary.coverage_codes() if c not in coverage_reasons(lang)]
    missing += [f"rule {r}" for r in vocabulary.rule_ids() if r not in rules]
    assert sorted(missing) == []


def test_coverage_reasons_have_the_same_placeholders_in_both_languages():
    english, chinese = coverage_reasons("en"), coverage_reasons("zh-CN")
    assert set(english) == set(chinese)
    for code in english:
        assert vocabulary.placeholders(english[code]) == vocabulary.placeholders(chinese[code]), code
        assert re.search(r"[\u4e00-\u9fff]", chinese[code]), code


def test_fact_templates_have_the_same_placeholders_in_both_languages():
    english, chinese = load_rule_texts("en"), load_rule_texts("zh-CN")
    for rule_id, entry in english.items():
        en, zh = entry.get("facts") or [], chinese[rule_id].get("facts") or []
        en, zh = ([en] if isinstance(en, str) else en), ([zh] if isinstance(zh, str) else zh)
        assert [vocabulary.placeholders(t) for t in en] == [vocabulary.placeholders(t) for t in zh], rule_id


@pytest.mark.parametrize("lang", LANGS)
def test_a_report_that_says_everything_has_no_untranslated_text(everything, lang):
    html = render("html", everything, RenderOptions(lang=lang))
    assert untranslated(html, lang) == []
    assert DATA in html
    # every rule, check and kind really reached the page (the test would prove nothing otherwise)
    assert html.count('<article class="finding') == len(everything.findings)
    assert html.count('class="coverage-row"') == len(everything.coverage)


@pytest.mark.parametrize("lang", LANGS)
def test_markdown_says_everything_without_english_sentences(everything, lang):
    text = render("markdown", everything, RenderOptions(lang=lang))
    assert not [m for m in ENGLISH_MARKERS if m in text]
    assert not re.search(r"\{\w+\}", text)


@pytest.mark.parametrize("name", ["cn-117", "gpu-lab-03", "login-02"])
def test_demo_reports_have_no_untranslated_text_in_chinese(demo_reports, name):
    report = demo_reports[name]
    html = render("html", report, RenderOptions(lang="zh-CN"))
    data = host_strings(report)
    leftovers = []
    for item in untranslated(strip_data(html, data), "zh-CN"):
        leftovers.append(item)
    assert leftovers == []
    for finding in report.findings:         # the engine's English never reaches the page
        assert not [r for r in finding.reasons if r in html]
        assert finding.recommended_action not in html


def host_strings(report) -> list[str]:   # noqa: ANN001
    """Values that came from the host or the institution (data), longest first."""
    found: set[str] = set()
    found |= {v for v in report.profile.values() if v}
    host = report.host
    found |= {host.hostname, host.os_release, host.os, host.kernel, host.arch, host.cpu_model}
    found |= {g.name for g in host.gpus} | {g.uuid for g in host.gpus} | {g.driver for g in host.gpus}
    for f in report.findings:
        s = f.subject
        found |= {s.name, s.exe, s.cmdline, s.username, s.path, s.cgroup, s.terminal, s.slurm_job_id, f.filing}
        found |= {e.value for e in f.evidence if not e.facts} | {e.matched for e in f.evidence}
        found |= {str(v) for e in f.evidence for v in e.facts.values()}
        found |= {str(v) for k, v in f.decision.items() if k != "code"}
    for item in report.filings:
        found |= {str(v) for v in item.values() if isinstance(v, (str, int, float))}
        found |= {str(v) for v in item.get("hosts") or []} | {str(v) for v in item.get("users") or []}
    for c in report.coverage:
        found |= set(c.unreadable) | {s for a in c.accepted for s in (a.item, a.reason, a.source)}
        found |= {str(v) for d in c.details for v in d.facts.values()}
    return sorted((s for s in found if s and len(s) > 1), key=len, reverse=True)


def strip_data(html: str, data: list[str]) -> str:
    from html import escape
    for value in data:
        html = html.replace(escape(value, quote=False), DATA)
    return html


def test_collectors_give_coverage_reasons_as_codes_not_sentences():
    """A reason written as an English sentence could never be translated: collectors name a code."""
    import ast
    offenders = []
    for path in vocabulary.sources("collect"):
        if path.name == "coverage.py":
            continue
        for call in vocabulary.calls([path], {"Coverage"}):
            if len(call.args) > 2 or any(kw.arg == "reason" for kw in call.keywords):
                offenders.append(f"{path.name}:{call.lineno}: Coverage(..., reason) - use coverage(..., because(code))")
        for call in vocabulary.calls([path], {"coverage"}):
            for arg in call.args[2:]:
                if isinstance(arg, ast.Constant) or isinstance(arg, ast.JoinedStr):
                    offenders.append(f"{path.name}:{call.lineno}: a sentence where a because(code) belongs")
    assert offenders == []


def test_an_accepted_gap_in_chinese_shows_no_english_but_the_institutions_reason(tmp_path):
    """accept_unreadable: the coverage row and the verdict say "accepted by policy" in Chinese; the only
    English on the page is the reason the institution typed (and the process data), marked as data."""
    from tests.factories import proc, scan, snapshot
    from audit_agent.collect.processes import process_coverage
    from audit_agent.model import Coverage, CoverageStatus, Verdict
    reason = "PID 1 runs under the container's AppArmor profile; audited on the node"
    config = tmp_path / "config.yaml"
    config.write_text(f"accept_unreadable:\n  - exe: /usr/lib/systemd/systemd\n    reason: \"{reason}\"\n")
    processes = [proc(10, "/usr/bin/sleep 100"), proc(1, ["/sbin/init"], name="systemd",
                                                       exe="/usr/lib/systemd/systemd", user="root", denied=["cmdline"])]
    report = scan(snapshot(processes, coverage=[process_coverage(2, 1, processes),
                                                Coverage("network", CoverageStatus.OK)]), str(config))
    assert report.verdict == Verdict.COMPLIANT
    html = render("html", report, RenderOptions(lang="zh-CN"))
    assert "已按策略接受" in html and reason.replace("'", "&#39;") in html
    data = [s for s in host_strings(report) if s != "Linux"]     # the OS name would also cut "SELinux" in a sentence
    assert untranslated(strip_data(html, data), "zh-CN") == []
    english = render("html", report, RenderOptions(lang="en"))
    assert "Accepted by policy" in english and "except what the policy accepts" in english


@pytest.mark.parametrize("verified", [False, True])
def test_the_chinese_fleet_page_has_no_english_outside_data(demo_reports, tmp_path, verified):
    """The fleet page in zh-CN: every label, notice, refusal, top finding and the sign-off in Chinese."""
    import copy
    import time

    from nacl.signing import SigningKey

    from audit_agent.fleet import merge
    from audit_agent.fleet_html import render_html
    from audit_agent.render.json_report import dumps
    from audit_agent.trust.hostkey import public_line
    from audit_agent.trust.registry import read_keys
    from audit_agent.trust.signature import sign_report

    reports = tmp_path / "reports"
    reports.mkdir()
    keys, lines, data = {}, [], []
    now = time.time()
    reports_by_name = {name: copy.deepcopy(report) for name, report in demo_reports.items()}  # shared fixture
    for number, name in enumerate(sorted(reports_by_name) + ["twin"]):
        report = reports_by_name.get(name) or copy.deepcopy(reports_by_name["gpu-lab-03"])  # one name, two machines
        machine = f"{number:032x}"
        keys[machine] = SigningKey.generate()
        lines.append(public_line(keys[machine], machine, name))
        report.collected_at = report.generated_at = now - 3600
        signed = sign_report(report, keys[machine], machine)
        (reports / f"{name}.json").write_text(dumps(signed.to_dict()))
        data += host_strings(report) + [machine[:12]]
    (reports / "changed.json").write_text((reports / "login-02.json").read_text().replace("login-02", "login-03", 1))
    ahead = copy.deepcopy(reports_by_name["login-02"])
    ahead.collected_at += 86400
    future = sign_report(ahead, keys[f"{1:032x}"], f"{1:032x}")
    (reports / "future.json").write_text(dumps(future.to_dict()))
    (tmp_path / "fleet.keys").write_text("\n".join(lines) + "\n")
    fleet = merge([str(reports)], keys=read_keys(tmp_path / "fleet.keys") if verified else None,
                  keys_source=str(tmp_path / "fleet.keys"))
    assert fleet.duplicate_hostnames and fleet.errors and any(h.top_finding for h in fleet.hosts)
    assert not verified or {e.code for e in fleet.errors} >= {"bad_signature", "future"}
    html = render_html(fleet, "zh-CN", tmp_path)
    assert untranslated(strip_data(html, data), "zh-CN") == []
    assert "审计人" in html and "单位盖章" in html


def test_every_coded_check_is_in_the_registry_that_rules_list_reads():
    from audit_agent.detect import coded_checks
    from audit_agent.rules.loader import load_pack
    in_code = vocabulary.rule_ids() - {rule.id for rule in load_pack().rules}
    assert sorted(in_code - set(coded_checks())) == [], "add them to audit_agent/detect/checks.yaml"
