"""Local tuning (rules.d overlay): disable, re-grade, rule-scoped allow and local rules, each with a reason,
validated with file:line, applied by evaluate and listed in every report as "tuning in effect"."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from audit_agent.model import FindingStatus, Severity
from audit_agent.pipeline import Inputs, load_tuned_rules, run_scan
from audit_agent.policy import Policy
from audit_agent.render import RenderOptions, render
from audit_agent.schemas import published_schema
from audit_agent.yamlfile import ConfigError
from tests.conftest import MONERO_WALLET
from tests.factories import conn, proc, snapshot

XMRIG = "/opt/x/xmrig --threads 4"
WALLET_MINER = f"/opt/tools/helper -o 198.51.100.7:3333 -u {MONERO_WALLET}"
LOCAL_RULE = """
  - add:
      id: AA-LOCAL-001
      title: "Campaign dropper seen on our network"
      category: miner
      severity: critical
      confidence: 0.9
      reason: "The process name {value!r} is the dropper of a campaign our CERT tracked."
      reference: "https://cert.example.edu/2026-17"
      match:
        kind: names
        values: [kdevtmpfsi-x]
      examples:
        match: [kdevtmpfsi-x]
        no_match: [kdevtmpfs]
    reason: "CERT advisory 2026-17"
"""


def overlay(tmp_path: Path, text: str, name: str = "10-local.yaml") -> Path:
    folder = tmp_path / "rules.d"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("tuning:\n" + text)
    return folder


def scan_with(folder: Path | None, processes, connections=()):
    inputs = Inputs(rules=load_tuned_rules(None, str(folder) if folder else None), policy=Policy())
    return run_scan(snapshot(processes, connections), inputs)


def by_pid(report, pid):
    return next(f for f in report.findings if f.subject.pid == pid)


def test_without_an_overlay_nothing_changes(tmp_path):
    report = scan_with(tmp_path / "missing", [proc(10, XMRIG)])
    assert report.tuning == [] and by_pid(report, 10).rule_ids == ["AA-NAME-001"]


def test_disable_and_severity_apply_to_pack_rules_and_are_listed(tmp_path):
    folder = overlay(tmp_path, """
  - disable: AA-NAME-001
    reason: "lab benchmark machines; decided by the IT board on 2026-11-02"
  - rule: AA-LOAD-001
    severity: info
    reason: "HPC nodes are always busy"
""")
    report = scan_with(folder, [proc(10, XMRIG)])
    assert not [f for f in report.findings if f.subject.pid == 10]
    assert [(c.action, c.rule_ids, c.detail) for c in report.tuning] == [
        ("disable", ["AA-NAME-001"], ""), ("severity", ["AA-LOAD-001"], "info")]
    assert report.tuning[0].origin == f"{folder / '10-local.yaml'}:3"
    assert "IT board" in report.tuning[0].reason
    regraded = scan_with(overlay(tmp_path, """
  - rule: AA-NAME-001
    severity: low
    reason: "known benchmark binaries"
""", "20-other.yaml"), [proc(10, XMRIG)])
    assert {c.action for c in regraded.tuning} == {"disable", "severity"}, "every file in the folder applies"


def test_severity_change_regrades_the_finding(tmp_path):
    folder = overlay(tmp_path, """
  - rule: AA-NAME-001
    severity: low
    reason: "known benchmark binaries on the teaching cluster"
""")
    finding = by_pid(scan_with(folder, [proc(10, XMRIG)]), 10)
    assert finding.severity == Severity.LOW and finding.status == FindingStatus.OPEN


def test_allow_is_scoped_to_the_named_rules(tmp_path):
    folder = overlay(tmp_path, """
  - allow: AA-NAME-001
    exe: /opt/x/xmrig
    user: alice
    reason: "filed benchmark study, ticket IT-2001"
""")
    report = scan_with(folder, [proc(10, XMRIG), proc(11, XMRIG, user="bob")])
    allowed = by_pid(report, 10)
    assert allowed.status == FindingStatus.ALLOWLISTED
    assert "ticket IT-2001" in allowed.status_reason and "10-local.yaml:3" in allowed.status_reason
    assert by_pid(report, 11).status == FindingStatus.OPEN, "another user is not covered"
    # The allow covers AA-NAME-001 only: a wallet and a pool connection still make an open finding.
    other = scan_with(folder, [proc(12, WALLET_MINER, exe="/opt/x/xmrig", name="xmrig")],
                      [conn(12, "198.51.100.7", 3333)])
    finding = by_pid(other, 12)
    assert finding.status == FindingStatus.OPEN and "AA-NAME-001" not in finding.rule_ids and finding.rule_ids


def test_a_local_rule_is_added_with_its_examples(tmp_path):
    report = scan_with(overlay(tmp_path, LOCAL_RULE), [proc(10, "/tmp/kdevtmpfsi-x")])
    finding = by_pid(report, 10)
    assert finding.rule_ids[0] == "AA-LOCAL-001" and finding.severity == Severity.CRITICAL
    assert report.tuning[0].action == "add" and report.tuning[0].detail == "Campaign dropper seen on our network"


@pytest.mark.parametrize("text, message", [
    ("  - disable: AA-NAME-001\n", "10-local.yaml:2: every tuning change needs a reason"),
    ("  - disable: AA-NAME-001\n    reason: '  '\n", "needs a reason"),
    ("  - disable: AA-NOPE-999\n    reason: x\n", ":2: no rule AA-NOPE-999 in the pack or the built-in checks"),
    ("  - disable: AA-NAME-001\n    rule: AA-NAME-002\n    reason: x\n", "exactly one of"),
    ("  - rule: AA-NAME-001\n    severity: huge\n    reason: x\n", "severity must be one of"),
    ("  - allow: AA-NAME-001\n    reason: x\n", "must name at least one of exe, user, cmdline, host"),
    ("  - allow: []\n    exe: /x\n    reason: x\n", "names the rule id(s)"),
    ("  - disable: AA-NAME-001\n    reason: x\n    note: y\n", "unknown key(s) note"),
    (LOCAL_RULE.replace("AA-LOCAL-001", "AA-NAME-001"), "already exists"),
    (LOCAL_RULE.replace("no_match: [kdevtmpfs]", "no_match: [kdevtmpfsi-x]"), "example should not match"),
])
def test_bad_tuning_is_refused_with_file_and_line(tmp_path, text, message):
    folder = overlay(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_tuned_rules(None, str(folder))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_file_that_is_not_a_tuning_list_is_refused(tmp_path):
    folder = tmp_path / "rules.d"
    folder.mkdir()
    (folder / "x.yaml").write_text("rules: []\n")
    with pytest.raises(ConfigError, match=r"x\.yaml:1: a tuning file holds one key"):
        load_tuned_rules(None, str(folder))


@pytest.mark.parametrize("lang, label", [("en", "Local tuning in effect"), ("zh-CN", "生效的本地规则调整")])
def test_every_report_lists_the_tuning_in_effect(tmp_path, lang, label):
    folder = overlay(tmp_path, """
  - rule: AA-NAME-001
    severity: medium
    reason: "<b>benchmark</b> cluster"
""")
    report = scan_with(folder, [proc(10, XMRIG)])
    data = json.loads(render("json", report))
    assert data["tuning"][0]["reason"] == "<b>benchmark</b> cluster" and data["tuning"][0]["rule_ids"] == ["AA-NAME-001"]
    jsonschema.validate(data, published_schema("report.schema.json"))
    html = render("html", report, RenderOptions(lang=lang))
    assert label in html and "&lt;b&gt;benchmark&lt;/b&gt; cluster" in html and "<b>benchmark" not in html
    markdown = render("markdown", report, RenderOptions(lang=lang))
    assert label in markdown and "AA-NAME-001" in markdown and "benchmark" in markdown
    untuned = render("html", scan_with(None, [proc(10, XMRIG)]), RenderOptions(lang=lang))
    assert label in untuned, "the report says so when nothing is tuned"


def test_operator_commands_validate_and_scan_with_the_overlay(agent, tmp_path):
    folder = overlay(tmp_path, LOCAL_RULE + """
  - disable: AA-LOAD-001
    reason: "HPC"
""")
    checked = agent("rules", "validate", "--tuning", str(folder))
    assert checked.returncode == 0, checked.stderr
    assert "2 change(s) valid" in checked.stdout and "add AA-LOCAL-001" in checked.stdout
    seed = Path(__file__).resolve().parent.parent / "seeds" / "login-02.snapshot.json"
    out = tmp_path / "r.json"
    scanned = agent("scan", "--snapshot", str(seed), "--json", str(out), "--quiet", "--fail-on", "never",
                    env={"AUDIT_AGENT_TUNING_DIR": str(folder)})
    assert scanned.returncode == 0, scanned.stderr
    assert [c["action"] for c in json.loads(out.read_text())["tuning"]] == ["add", "disable"]
    (folder / "20-bad.yaml").write_text("tuning:\n  - disable: AA-NAME-001\n")
    broken = agent("scan", "--snapshot", str(seed), "--quiet", env={"AUDIT_AGENT_TUNING_DIR": str(folder)})
    assert broken.returncode == 2 and "20-bad.yaml:2: every tuning change needs a reason" in broken.stderr
    assert agent("rules", "validate", "--tuning", str(tmp_path / "nope")).returncode == 2


def test_an_overlay_written_for_a_former_rule_id_keeps_working_and_says_the_new_id(tmp_path, capsys):
    """pack.yaml `renamed:` maps ids the pack gave up (AA-PERS-00N joined AA-PERSIST): an institution's
    rules.d still disables the rule it meant, with a warning naming the id to write now."""
    from audit_agent.rules.loader import load_pack
    renamed = load_pack().renamed
    old, new = sorted(renamed.items())[0]
    folder = overlay(tmp_path, f"  - disable: {old}\n    reason: \"noisy on our build farm\"\n")
    rules = load_tuned_rules(None, str(folder))
    assert new not in {rule.id for rule in rules.pack.rules}
    assert f"{old} is now {new}" in capsys.readouterr().err
    folder = overlay(tmp_path, "  - disable: AA-NOPE-001\n    reason: x\n", "20-bad.yaml")
    with pytest.raises(ConfigError, match="no rule AA-NOPE-001"):
        load_tuned_rules(None, str(folder))


def test_one_id_namespace_per_area():
    """No area's prefix is a shortened form of another's (AA-PERS beside AA-PERSIST): one family, one name."""
    from audit_agent.detect import coded_checks
    from audit_agent.rules.loader import load_pack
    ids = {rule.id for rule in load_pack().rules} | set(coded_checks())
    areas = {rule_id.rsplit("-", 1)[0] for rule_id in ids}
    clashes = [(a, b) for a in areas for b in areas if a != b and b.startswith(a) and b[len(a)].isalpha()]
    assert clashes == []
