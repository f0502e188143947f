"""The HTML report: self-contained, sectioned, translated, sorted, small, and inert against hostile data."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import pytest

from audit_agent.i18n import translator
from audit_agent.model import Verdict
from audit_agent.render import RenderOptions, render
from audit_agent.render.html import templates_dir

SECTIONS = ("characteristics", "verdict", "inventory", "checks", "findings", "registered", "load", "basis",
            "declaration")


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def login_html(demo_reports):
    return {lang: render("html", demo_reports["login-02"], RenderOptions(lang=lang)) for lang in ("en", "zh-CN")}


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_self_contained_no_external_resource(login_html, lang):
    html = login_html[lang]
    elements = parse(html)
    tags = {tag for tag, _ in elements.tags}
    assert not tags & {"link", "img", "iframe", "object", "embed", "base", "form", "video", "audio", "source"}
    for tag, attrs in elements.tags:
        assert not {"src", "href", "action", "srcset", "poster", "xmlns"} & set(attrs), (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)      # no inline handlers
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert "url(" not in style and "@import" not in style and "@font-face" not in style


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_csp_allows_exactly_the_inline_script(login_html, lang):
    html = login_html[lang]
    elements = parse(html)
    csp = next(attrs["content"] for tag, attrs in elements.tags
               if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert len(elements.scripts) == 1
    digest = base64.b64encode(hashlib.sha256(elements.scripts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert elements.scripts[0] == (templates_dir() / "report.js").read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_sections_and_labels_in_the_language(login_html, lang):
    html = login_html[lang]
    t = translator(lang)
    ids = {attrs.get("id") for _, attrs in parse(html).tags}
    assert set(SECTIONS) <= ids
    assert f'lang="{t("meta.html_lang")}"' in html and 'class="no-js"' in html
    for key in ("verdict.non_compliant", "inventory.section", "checks.section", "findings.section",
                "registered.section", "load.section", "declaration.section", "declaration.auditor",
                "declaration.reviewer", "severity.critical", "coverage.skipped"):
        assert t(key) in html, key
    assert t.datetime(1795527600) in html      # window start, in the locale's form


def test_findings_most_severe_first_and_only_findings(demo_reports, login_html):
    html = login_html["en"]
    order = re.findall(r'<article class="finding sev-(\w+)"', html)
    ranks = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}
    counted = order[: len(demo_reports["login-02"].open_findings)]
    assert counted == sorted(counted, key=lambda s: -ranks[s]) and counted[0] == "critical"
    assert "rsyslogd" not in html and "sssd_nss" not in html      # processes are not listed, findings are
    assert len(html.encode()) < 250_000


def test_report_of_a_400_process_host_stays_small(demo_reports):
    report = demo_reports["login-02"]
    assert report.process_count >= 350
    assert len(render("html", report, RenderOptions()).encode()) < 250_000


def test_compliant_report_lists_registered_research(demo_reports):
    report = demo_reports["cn-117"]
    assert report.verdict == Verdict.COMPLIANT
    html = render("html", report, RenderOptions(lang="zh-CN"))
    t = translator("zh-CN")
    assert "DEMO-2026-BC-017" in html and t("status.registered") in html and t("status.allowlisted") in html
    assert t("findings.none") in html


def test_load_charts_are_inline_svg(login_html):
    html = login_html["en"]
    assert html.count("<svg") == 1 and "<polyline" in html     # login-02 has no GPU: CPU chart only
    points = re.search(r'<polyline points="([^"]+)"', html).group(1).split()
    assert len(points) == 16 and all(re.fullmatch(r"[\d.]+,[\d.]+", p) for p in points)


def test_hostile_strings_are_inert(hostile_report):
    html = render("html", hostile_report, RenderOptions())
    elements = parse(html)
    assert [tag for tag, _ in elements.tags].count("script") == 1
    assert not any(name.startswith("on") for _, attrs in elements.tags for name in attrs)
    assert "<img" not in html and "<b>" not in html and "<svg onload" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\x1b" not in html and "\x00" not in html and "\u202e" not in html and "\x07" not in html
    assert "\\x1b[31m" in html and "\\u202e" in html          # made visible, not live
    assert len(html) < 120_000                                  # the 100 kB argument is capped


def test_hostile_report_secrets_redacted_wallet_kept(hostile_report):
    from tests.conftest import MONERO_WALLET, SECRETS
    for lang in ("en", "zh-CN"):
        html = render("html", hostile_report, RenderOptions(lang=lang))
        assert not [s for s in SECRETS if s in html]
        assert MONERO_WALLET in html


def test_cli_report_rerenders_saved_json_in_chinese(tmp_path, demo_reports):
    from audit_agent.cli import main
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(demo_reports["gpu-lab-03"].to_dict()), encoding="utf-8")
    out = tmp_path / "out.html"
    assert main(["report", str(saved), "--html", str(out), "--lang", "zh-CN", "--markdown", str(tmp_path / "r.md"),
                 "--junit", str(tmp_path / "r.xml"), "--sarif", str(tmp_path / "r.sarif")]) == 0
    html = out.read_text(encoding="utf-8")
    assert translator("zh-CN")("verdict.non_compliant") in html and "gpu-lab-03" in html
    assert (tmp_path / "r.md").read_text(encoding="utf-8").startswith("# ")


def finding_texts(html: str) -> list[tuple[str, str]]:
    """(title, recommended action) of every finding card, as printed."""
    titles = re.findall(r'<h3>\d+\. ([^<]*)</h3>', html)
    actions = re.findall(r'<p class="action"><strong>[^<]*</strong> ([^<]*)</p>', html)
    return list(zip(titles, actions, strict=False))


def test_chinese_report_names_findings_and_actions_in_chinese(demo_reports, login_html):
    from audit_agent.i18n import load_rule_texts
    from audit_agent.render.view import lead_rule
    zh = load_rule_texts("zh-CN")
    report = demo_reports["login-02"]
    lead = lead_rule(report.open_findings[0])
    assert lead == "AA-BIN-001"
    texts = finding_texts(login_html["zh-CN"])
    assert texts[0] == ("XMRig 系列挖矿程序（程序文件内容）", zh["AA-BIN-001"]["action"])
    assert zh["AA-BIN-001"]["action"].startswith("终止该进程")
    assert len(texts) == len(re.findall(r'<article class="finding', login_html["zh-CN"]))
    for title, action in texts:
        assert re.search(r"[\u4e00-\u9fff]", title) and re.search(r"[\u4e00-\u9fff]", action), (title, action)
    # each evidence row says where, what was seen and what its rule means, in Chinese; never the engine's English
    assert zh["AA-POOL-001"]["meaning"] in login_html["zh-CN"]
    assert "<tr><td>程序文件内容</td>" in login_html["zh-CN"] and "<tr><td>executable content</td>" in login_html["en"]
    assert login_html["zh-CN"].count('<td class="meaning">') == sum(len(f.evidence) for f in report.findings)
    assert not [r for f in report.findings for r in f.reasons if r in login_html["zh-CN"]]
    assert not [r for f in report.findings for r in f.reasons if r in login_html["en"]]


def test_lead_rule_is_the_rule_that_named_the_finding_and_listed_first(demo_reports):
    import copy
    from audit_agent.render.view import lead_rule
    finding = demo_reports["cn-117"].registered_findings[0]
    assert finding.rule_ids[0] == lead_rule(finding) == "AA-CMD-001", "the engine lists the lead rule first"
    older = copy.deepcopy(finding)          # a report from before that: the signals' order, the lead not first
    older.rule_ids = sorted(older.rule_ids, key=lambda r: r != "AA-NAME-001")
    assert older.rule_ids[0] == "AA-NAME-001" and lead_rule(older) == "AA-CMD-001"
    html = render("html", demo_reports["cn-117"], RenderOptions(lang="zh-CN"))
    assert "Stratum 矿池地址（命令行）</h3>" in html and "已知的 CPU 挖矿程序" not in html.split("<h3>1.")[1].split("</h3>")[0]
    for report in demo_reports.values():
        for f in report.findings:
            assert lead_rule(f) in f.rule_ids, f.title
            assert lead_rule(f) in (f.rule_ids[0], None), f"{f.title}: SARIF and JUnit name it by rule_ids[0]"


def test_english_report_keeps_the_engines_titles_and_actions(demo_reports, login_html):
    texts = finding_texts(login_html["en"])
    findings = demo_reports["login-02"].open_findings
    ordered = sorted(findings, key=lambda f: (-f.severity.rank, -f.confidence, f.subject.pid or 0, f.fingerprint))
    assert [title.split(" — ")[0] for title, _ in texts[:len(findings)]] == [f.title for f in ordered]
    assert texts[0][0] == "xmrig-family miner binary — executable content"   # what was found, and where
    assert texts[0][1] == findings[0].recommended_action       # the pack rule's own action, unchanged
    assert "What it means" in login_html["en"]


def test_unknown_rule_keeps_the_engines_english_text(demo_reports):
    import copy
    report = copy.deepcopy(demo_reports["gpu-lab-03"])
    finding = report.open_findings[0]
    finding.title, finding.rule_ids = "Site rule: <b>lab</b> miner", ["AA-SITE-001"]
    finding.recommended_action = "Call the <i>lab</i> admin."
    for e in finding.evidence:
        e.rule_id = "AA-SITE-001"
    html = render("html", report, RenderOptions(lang="zh-CN"))
    assert "Site rule: &lt;b&gt;lab&lt;/b&gt; miner（" in html
    assert "Call the &lt;i&gt;lab&lt;/i&gt; admin.</p>" in html and "<b>lab" not in html


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_hostile_report_with_rule_texts_stays_inert(hostile_report, lang):
    html = render("html", hostile_report, RenderOptions(lang=lang))
    assert [tag for tag, _ in parse(html).tags].count("script") == 1
    assert "<img" not in html and "\x1b" not in html and "\u202e" not in html
    assert len(html) < 125_000
    if lang == "zh-CN":
        from audit_agent.i18n import load_rule_texts
        from audit_agent.render.view import lead_rule
        lead = lead_rule(hostile_report.open_findings[0])
        assert lead and f"1. {load_rule_texts('zh-CN')[lead]['title']}（" in html


def test_verdict_reasons_are_phrased_in_the_report_language(demo_reports):
    from audit_agent.render import RenderOptions, render
    report = demo_reports["login-02"]
    high = sum(1 for f in report.open_findings if f.severity.rank >= 3)
    chinese = render("html", report, RenderOptions(lang="zh-CN"))
    english = render("html", report, RenderOptions(lang="en"))
    assert f"{high} 项高或严重级别的发现" in chinese
    assert f"{high} finding(s) of high or critical severity" in english
    assert "finding(s) of high or critical severity" not in chinese
