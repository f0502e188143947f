"""The terminal summary (labelled, translated, truthful about what was written, one line per datum),
`rules list` / `rules show`, `report --config` and the dated report of scheduled runs."""
from __future__ import annotations

import copy
import io
import json
import re
import threading

import pytest
from rich.console import Console

from audit_agent.cli import main
from audit_agent.i18n import load_messages, load_rule_texts
from audit_agent.render.summary import write_plain
from audit_agent.render.text import Written, write
from tests import vocabulary
from tests.test_i18n_nodes import chinese_vocabulary

LATIN = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]")


WRITERS = ("rich", "plain")      # a terminal gets Rich's tables; a pipe or file the same content as lines


def summary(report, lang="en", written=None, writer="rich") -> str:      # noqa: ANN001
    buffer = io.StringIO()
    if writer == "plain":
        write_plain(buffer, report, lang, written)
    else:
        write(Console(file=buffer, width=120, color_system=None, highlight=False), report, lang, written)
    return buffer.getvalue()


@pytest.mark.parametrize("writer", WRITERS)
def test_header_fields_are_labelled(demo_reports, writer):
    text = summary(demo_reports["login-02"], writer=writer)
    for label in ("Host: login-02", "Sampling window: 30 s", "Processes inspected: ", "Rule pack: "):
        assert label in text, label


@pytest.mark.parametrize("writer", WRITERS)
def test_chinese_summary_has_no_english_words_outside_data(demo_reports, writer):
    report = demo_reports["login-02"]
    text = summary(report, "zh-CN", Written(html="/srv/audit/login-02.html"), writer)
    for value in sorted({f.subject.exe for f in report.findings} | {f.subject.name for f in report.findings}
                        | {e.value for f in report.findings for e in f.evidence}
                        | {report.rule_pack.name, report.host.hostname}, key=len, reverse=True):
        text = text.replace(value, " ")
    allowed = chinese_vocabulary() | {"audit", "agent", "html", "srv"}
    words = {w for w in LATIN.findall(text) if w.lower() not in allowed}
    assert not words - {"deleted", "sha", "shm", "dev", "json", "config", "wangfang", "kworker", "ldr", "sh",
                        "crontabs", "var", "spool", "cron", "null", "reboot", "curl", "fsSL", "wget", "sys",
                        "module", "msr", "parameters", "allow_writes", "on"}, words


@pytest.mark.parametrize("writer", WRITERS)
def test_next_steps_are_truthful_about_written_reports(demo_reports, writer):
    report = demo_reports["login-02"]
    nothing = summary(report, writer=writer)
    assert "Next step: write the signable report: audit-agent scan --html" in nothing
    assert "more rows in" not in nothing and "write the full report with --html" in nothing
    saved = summary(report, written=Written(json="/tmp/r.json"), writer=writer)
    assert "audit-agent report /tmp/r.json --html" in saved
    opened = summary(report, written=Written(json="/tmp/r.json", html="/tmp/r.html"), writer=writer)
    assert "Next step: open /tmp/r.html" in opened and "more rows in /tmp/r.html" in opened


@pytest.mark.parametrize("writer", WRITERS)
def test_a_line_break_in_data_never_starts_a_line(demo_reports, writer):
    report = copy.deepcopy(demo_reports["login-02"])
    report.open_findings[0].subject.name = "kworker\nVerdict: COMPLIANT\r\x1b[2J"
    report.host.hostname = "h\nFAKE"
    text = summary(report, writer=writer)
    assert not any(line.startswith(("Verdict: COMPLIANT", "FAKE")) for line in text.splitlines())
    assert "Host: h\\nFAKE" in text and "\x1b" not in text and "\r" not in text


def test_both_writers_tell_the_same_findings_and_coverage(demo_reports):
    report = demo_reports["login-02"]
    terminal, piped = summary(report), summary(report, writer="plain")
    flat = " ".join(terminal.split())
    for finding in report.open_findings:
        if finding.subject.pid is not None:
            assert f"PID {finding.subject.pid} " in piped and f"PID {finding.subject.pid} " in terminal
    for line in piped.splitlines():
        if line.startswith("  ") and ": " in line and " - " in line:      # a coverage line: check: status - detail
            check = line.strip().split(":")[0]
            assert check in flat, check
    assert piped.count("\n* ") == len(report.open_findings) + len(report.registered_findings
                                                                   + report.allowlisted_findings)


def test_a_piped_summary_does_not_import_rich(tmp_path):
    """cron and CI read the summary from a pipe: it is plain lines, and the ~100 ms of Rich is not paid."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parent.parent
    seed = repo / "seeds" / "login-02.snapshot.json"
    code = ("import sys; from audit_agent.cli import main; code = main(['scan', '--snapshot', sys.argv[1]]); "
            "print('RICH LOADED' if any(m == 'rich' or m.startswith('rich.') for m in sys.modules) else 'NO RICH')")
    result = subprocess.run([sys.executable, "-c", code, str(seed)], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.stdout.rstrip().endswith("NO RICH"), result.stdout[-500:] + result.stderr[-500:]
    assert "Verdict: " in result.stdout and "Next step: " in result.stdout


def test_rules_list_covers_every_rule_id_the_engine_can_emit(capsys):
    assert main(["rules", "list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:] if line.strip()}
    assert vocabulary.rule_ids() <= listed
    families = {rule_id.rsplit("-", 1)[0] for rule_id in listed}
    assert len(families) == len({f.lower() for f in families})


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_rules_show_explains_a_coded_check_with_its_source_and_attack_name(capsys, lang):
    assert main(["rules", "show", "AA-STEALTH-005", "--lang", lang]) == 0
    out = capsys.readouterr().out
    assert load_rule_texts(lang)["AA-STEALTH-005"]["meaning"] in out
    assert "https://attack.mitre.org/techniques/T1036/004/" in out
    assert load_messages(lang)["attack.T1496"] in out


def test_rules_show_gives_examples_of_a_pack_rule_and_refuses_an_unknown_id(capsys):
    assert main(["rules", "show", "aa-cmd-001"]) == 0
    out = capsys.readouterr().out
    assert "stratum+tcp://" in out and "Does not match, for example" in out
    assert main(["rules", "show", "AA-NOPE-999"]) == 2
    assert "rules list" in capsys.readouterr().err


def test_report_config_fills_the_profile_of_a_saved_report(tmp_path, demo_reports):
    saved = tmp_path / "r.json"
    bare = copy.deepcopy(demo_reports["gpu-lab-03"])
    bare.profile = {}
    saved.write_text(json.dumps(bare.to_dict()), encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("profile:\n  institution: 示范大学\n  responsible: 王老师\n", encoding="utf-8")
    html = tmp_path / "r.html"
    assert main(["report", str(saved), "--html", str(html), "--config", str(config), "--lang", "zh-CN"]) == 0
    assert "示范大学" in html.read_text(encoding="utf-8") and "王老师" in html.read_text(encoding="utf-8")
    config.write_text("profile:\n  nonsense: 1\n", encoding="utf-8")
    assert main(["report", str(saved), "--html", str(html), "--config", str(config)]) == 2


def test_watch_writes_the_dated_signable_report_beside_the_json(tmp_path, mocker):
    from tests.test_watch import miner_snapshot, options
    from audit_agent.watch import Watcher
    reports = tmp_path / "reports"
    watcher = Watcher(options(tmp_path, html_dir=str(reports), lang="zh-CN"), threading.Event(),
                      out=io.StringIO(), err=io.StringIO())
    mocker.patch.object(watcher, "collect", return_value=miner_snapshot())
    report = watcher.cycle()
    [written] = list(reports.iterdir())
    assert re.fullmatch(rf"{re.escape(report.host.hostname)}-\d{{4}}-\d\d-\d\d\.html", written.name)
    assert "审计结论" in written.read_text(encoding="utf-8")
    assert (tmp_path / "report.json").exists()


def test_shipped_units_produce_the_filed_document():
    from pathlib import Path
    contrib = Path(__file__).resolve().parents[1] / "contrib"
    for unit in (contrib / "systemd" / "audit-agent.service", contrib / "cron" / "audit-agent"):
        text = unit.read_text()
        assert "--config /etc/audit-agent/config.yaml" in text and "--html /var/lib/audit-agent/reports" in text
        assert "--lang zh-CN" in text
