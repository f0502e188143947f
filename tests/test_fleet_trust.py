"""Fleet reports that can be trusted, and the fleet page that says so: signed host reports, registered keys,
hosts keyed by machine id, future times refused, hostile text escaped, the host table (verdict, top finding,
link), the sign-off, and the exit code that follows --fail-on."""
from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from html import unescape
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from audit_agent.fleet import merge
from audit_agent.fleet_html import render_html
from audit_agent.render.json_report import dumps
from audit_agent.trust.hostkey import public_line
from audit_agent.trust.registry import read_keys
from audit_agent.trust.signature import sign_report
from audit_agent.yamlfile import ConfigError
from tests.conftest import MONERO_WALLET
from tests.factories import conn, proc, scan, snapshot

DAY = 86400
MACHINE_A, MACHINE_B, MACHINE_C = "a" * 32, "b" * 32, "c" * 32


def miner_report(hostname: str, at: float):
    miner = proc(4242, f"/tmp/.x/xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u {MONERO_WALLET}", cpu=190.0)
    return scan(snapshot([miner], [conn(4242, "94.130.12.27", 3333)], hostname=hostname, collected_at=at))


def clean_report(hostname: str, at: float):
    return scan(snapshot([proc(1, "/usr/sbin/sshd -D", user="root")], hostname=hostname, collected_at=at))


def save(directory: Path, name: str, report) -> Path:    # noqa: ANN001 - an AuditReport
    path = directory / name
    path.write_text(dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def keys():
    return {MACHINE_A: SigningKey.generate(), MACHINE_B: SigningKey.generate()}


@pytest.fixture
def keys_file(tmp_path, keys):
    path = tmp_path / "fleet.keys"
    path.write_text("# registered hosts\n" + "".join(public_line(k, m, f"host-{m[0]}") + "\n" for m, k in keys.items()))
    return path


def errors_of(fleet) -> dict[str, str]:     # noqa: ANN001
    return {Path(e.path).name: e.reason for e in fleet.errors}


def test_a_signed_report_verifies_and_a_changed_byte_is_refused(tmp_path, keys, keys_file):
    now = time.time()
    reports = tmp_path / "reports"
    reports.mkdir()
    signed = save(reports, "a.json", sign_report(miner_report("lab-a", now - 60), keys[MACHINE_A], MACHINE_A))
    registry = read_keys(keys_file)
    fleet = merge([str(reports)], keys=registry, keys_source=str(keys_file))
    [row] = fleet.hosts
    assert fleet.errors == [] and fleet.verified and row.verified and row.machine_id == MACHINE_A
    data = json.loads(signed.read_text())
    assert set(data["signature"]) == {"algorithm", "key_id", "machine_id", "value"}
    assert len(base64.b64decode(data["signature"]["value"])) == 64

    text = signed.read_text()
    title = data["findings"][0]["title"]
    (reports / "a.json").write_text(text.replace(title, title[:-1] + chr(ord(title[-1]) ^ 1), 1))
    fleet = merge([str(reports)], keys=registry)
    assert fleet.hosts == []
    reason = errors_of(fleet)["a.json"]
    assert "BAD SIGNATURE" in reason and MACHINE_A in reason and "changed after" in reason


def test_unsigned_and_unregistered_and_wrong_key_reports_are_refused(tmp_path, keys, keys_file):
    now = time.time()
    save(tmp_path, "unsigned.json", clean_report("lab-u", now))
    save(tmp_path, "stranger.json", sign_report(clean_report("lab-s", now), SigningKey.generate(), MACHINE_C))
    save(tmp_path, "impostor.json", sign_report(clean_report("lab-a", now), SigningKey.generate(), MACHINE_A))
    fleet = merge([str(tmp_path)], keys=read_keys(keys_file), exclude={keys_file.resolve()})
    errors = errors_of(fleet)
    assert fleet.hosts == []
    assert "not signed" in errors["unsigned.json"]
    assert "no registered key" in errors["stranger.json"] and MACHINE_C in errors["stranger.json"]
    assert "not with the key registered for machine id " + MACHINE_A in errors["impostor.json"]
    assert {e.code for e in fleet.errors} == {"unsigned", "unknown_machine", "wrong_key"}


@pytest.mark.parametrize("with_keys", [False, True])
def test_a_report_dated_in_the_future_is_refused(tmp_path, keys, keys_file, with_keys):
    now = time.time()
    reports = tmp_path / "reports"
    reports.mkdir()
    save(reports, "ahead.json", sign_report(clean_report("lab-a", now + 2 * DAY), keys[MACHINE_A], MACHINE_A))
    save(reports, "skew.json", sign_report(clean_report("lab-b", now + 120), keys[MACHINE_B], MACHINE_B))
    fleet = merge([str(reports)], now=now, keys=read_keys(keys_file) if with_keys else None)
    assert "in the future" in errors_of(fleet)["ahead.json"]
    assert [h.hostname for h in fleet.hosts] == ["lab-b"], "two minutes of clock skew is accepted"


def test_two_machines_with_one_hostname_are_two_flagged_rows(tmp_path, keys, keys_file):
    now = time.time()
    save(tmp_path, "a.json", sign_report(clean_report("lab-pc", now - 60), keys[MACHINE_A], MACHINE_A))
    save(tmp_path, "b.json", sign_report(miner_report("lab-pc", now - 30), keys[MACHINE_B], MACHINE_B))
    fleet = merge([str(tmp_path)], keys=read_keys(keys_file), exclude={keys_file.resolve()})
    assert sorted(h.machine_id for h in fleet.hosts) == [MACHINE_A, MACHINE_B]
    assert all(h.duplicate_hostname for h in fleet.hosts) and fleet.duplicate_hostnames == ["lab-pc"]
    html = render_html(fleet, "en")
    table = html[html.index('<table class="sortable">'):]
    assert "One hostname, several machines." in html
    assert table[:table.index("</table>")].count("same hostname as another machine") == 2


@pytest.mark.parametrize("with_keys", [False, True])
def test_a_forged_newer_report_naming_host_a_does_not_replace_its_row(tmp_path, keys, keys_file, with_keys):
    now = time.time()
    reports = tmp_path / "reports"
    reports.mkdir()
    save(reports, "a.json", sign_report(miner_report("host-a", now - DAY), keys[MACHINE_A], MACHINE_A))
    # B (a registered machine) writes a newer, clean report that claims to be host-a, and an unsigned one too
    save(reports, "forged-b.json", sign_report(clean_report("host-a", now - 60), keys[MACHINE_B], MACHINE_B))
    save(reports, "forged-unsigned.json", clean_report("host-a", now - 30))
    fleet = merge([str(reports)], keys=read_keys(keys_file) if with_keys else None)
    rows = [h for h in fleet.hosts if h.machine_id == MACHINE_A]
    assert len(rows) == 1 and rows[0].verdict == "non_compliant" and rows[0].older_reports == 0
    assert all(h.duplicate_hostname for h in fleet.hosts if h.hostname == "host-a")
    if with_keys:
        assert "forged-unsigned.json" in errors_of(fleet) and len(fleet.hosts) == 2
    else:
        assert len(fleet.hosts) == 3 and not fleet.verified
        assert "Unverified reports." in render_html(fleet, "en")


def test_hostile_text_in_a_hostname_or_title_never_reaches_the_page_raw(tmp_path):
    now = time.time()
    report = miner_report("evil\u202eexe.\x1b[31mred\nnext\u2066", now)
    report.findings[0].title = "Miner\u202e\x1b]8;;http://x\x07 <b>bold</b>\nline"
    report.findings[0].rule_ids = ["SITE-OWN-RULE"]        # not a shipped rule: the page shows its own title
    save(tmp_path, "evil.json", report)
    for lang in ("en", "zh-CN"):
        html = render_html(merge([str(tmp_path)]), lang)
        body = html.split("<script>")[0]
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]", html)
        assert "\\u202e" in html and "\\x1b" in html and "\\x0a" in body
        assert "evil\\u202eexe.\\x1b[31mred\\x0anext\\u2066" in body
        assert "&lt;b&gt;bold&lt;/b&gt;" in body and "<b>bold" not in body


def test_the_host_table_has_verdict_top_finding_link_and_worst_first_order(tmp_path):
    now = time.time()
    reports, out = tmp_path / "reports", tmp_path / "out"
    reports.mkdir()
    out.mkdir()
    save(reports, "clean.json", clean_report("quiet-pc", now))
    save(reports, "miner.json", miner_report("busy-pc", now))
    (reports / "miner.html").write_text("<p>host report</p>")
    fleet = merge([str(reports)])
    assert [h.verdict for h in fleet.hosts] == ["non_compliant", "compliant"]
    assert fleet.hosts[0].top_finding is not None and fleet.hosts[1].top_finding is None
    html = render_html(fleet, "en", out)
    table = html[html.index('<table class="sortable">'):]
    table = table[:table.index("</table>")]
    assert table.index("busy-pc") < table.index("quiet-pc"), "worst first without any script"
    assert 'href="../reports/miner.html"' in table and 'href="../reports/clean.json"' in table
    assert 'data-sort="num" aria-sort="ascending"' in table
    zh = render_html(fleet, "zh-CN", out)
    from audit_agent.fleet_html import top_title
    from audit_agent.fleet_html import Translator, fleet_messages
    english, chinese = (top_title(fleet.hosts[0], Translator(lang, fleet_messages(lang))) for lang in ("en", "zh-CN"))
    assert english != chinese and re.search(r"[\u4e00-\u9fff]", chinese)
    assert unescape(chinese) in unescape(zh) and english in unescape(html)


def test_institution_departments_and_the_full_sign_off(tmp_path):
    now = time.time()
    for name, department in (("a", "Physics"), ("b", "Chemistry")):
        report = clean_report(f"lab-{name}", now)
        report.profile = {"institution": "Example University", "department": department, "responsible": "Dr. Wang"}
        save(tmp_path, f"{name}.json", report)
    fleet = merge([str(tmp_path)])
    assert fleet.institutions == ["Example University"] and fleet.departments == ["Chemistry", "Physics"]
    html = render_html(fleet, "en")
    for text in ("Example University", "Chemistry", "Physics", "Auditor", "Reviewer", "Seal of the institution",
                 "Responsible person of the institution", "Dr. Wang"):
        assert text in html, text
    zh = render_html(fleet, "zh-CN")
    assert "审计人" in zh and "复核人" in zh and "单位盖章" in zh


# ---------------------------------------------------------------- the command


def test_exit_code_follows_fail_on_like_scan(agent, tmp_path):
    now = time.time()
    save(tmp_path, "miner.json", miner_report("busy-pc", now))
    save(tmp_path, "clean.json", clean_report("quiet-pc", now))
    high = max(f["severity"] for f in json.loads((tmp_path / "miner.json").read_text())["findings"]
               if f["severity"] in ("high", "critical"))
    assert agent("fleet", str(tmp_path)).returncode == 1, "a non-compliant host fails the fleet by default"
    assert agent("fleet", str(tmp_path), "--fail-on", "never").returncode == 0
    assert agent("fleet", str(tmp_path), "--fail-on", high).returncode == 1
    clean_only = tmp_path / "clean"
    clean_only.mkdir()
    save(clean_only, "clean.json", clean_report("quiet-pc", now))
    assert agent("fleet", str(clean_only)).returncode == 0


def test_fail_on_incomplete_gives_3(agent, tmp_path):
    report = clean_report("gap-pc", time.time())
    data = report.to_dict()
    data["verdict"] = "incomplete"
    (tmp_path / "gap.json").write_text(json.dumps(data))
    assert agent("fleet", str(tmp_path)).returncode == 0
    assert agent("fleet", str(tmp_path), "--fail-on-incomplete").returncode == 3


@pytest.mark.parametrize("content,where,says", [
    ("# hosts\n" + "a" * 32 + " audit-agent-report-key-ed25519 not-base64!\n", ":2:", "32 bytes of base64"),
    ("zz audit-agent-report-key-ed25519 " + base64.b64encode(b"k" * 32).decode() + "\n", ":1:", "not a machine id"),
    ("a" * 32 + " ssh-ed25519 AAAA\n", ":1:", "expected 'MACHINE_ID"),
    ("# nothing\n", "", "no key"),
    ("a" * 32 + " audit-agent-report-key-ed25519 " + base64.b64encode(b"k" * 32).decode() + "\n"
     + "a" * 32 + " audit-agent-report-key-ed25519 " + base64.b64encode(b"j" * 32).decode() + "\n", ":2:",
     "already has another key"),
])
def test_a_malformed_keys_file_is_one_line_exit_2(agent, tmp_path, content, where, says):
    keys = tmp_path / "bad.keys"
    keys.write_text(content)
    reports = tmp_path / "reports"
    reports.mkdir()
    save(reports, "a.json", clean_report("lab-a", time.time()))
    result = agent("fleet", str(reports), "--keys", str(keys))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{keys}{where}" in lines[0] and says in lines[0], result.stderr
    with pytest.raises(ConfigError):
        read_keys(keys)


def test_keys_init_show_scan_sign_and_fleet_verify_end_to_end(agent, tmp_path):
    state, etc, reports = tmp_path / "state", tmp_path / "etc", tmp_path / "reports"
    etc.mkdir()
    reports.mkdir()
    (etc / "machine-id").write_text(MACHINE_C + "\n")
    env = {"AUDIT_AGENT_STATE_DIR": str(state)}
    made = agent("keys", "init", "--etc-root", str(etc), env=env)
    assert made.returncode == 0, made.stderr
    key = state / "report-signing.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    line = made.stdout.strip()
    assert line.startswith(MACHINE_C + " audit-agent-report-key-ed25519 ")
    again = agent("keys", "init", "--etc-root", str(etc), env=env)
    assert again.returncode == 0 and again.stdout.strip() == line, "init never replaces a key"
    shown = agent("keys", "show", "--etc-root", str(etc), env=env)
    assert shown.returncode == 0 and shown.stdout.strip() == line
    (tmp_path / "fleet.keys").write_text(line + "\n")

    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(snapshot([proc(1, "/usr/sbin/sshd -D", user="root")], hostname="lab-c").to_dict()))
    signed = agent("scan", "--snapshot", str(snap), "--sign", "--json", str(reports / "lab-c.json"),
                   "--etc-root", str(etc), "-q", env=env)
    assert signed.returncode == 0, signed.stderr
    assert json.loads((reports / "lab-c.json").read_text())["signature"]["machine_id"] == MACHINE_C
    fleet = agent("fleet", str(reports), "--keys", str(tmp_path / "fleet.keys"), "--json", str(tmp_path / "f.json"))
    assert fleet.returncode == 0, fleet.stderr
    assert "signatures verified" in fleet.stderr
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["verified"] and data["hosts"][0]["verified"] and data["hosts"][0]["machine_id"] == MACHINE_C

    os.chmod(key, 0o644)
    loose = agent("scan", "--snapshot", str(snap), "--sign", "--json", str(reports / "x.json"),
                  "--etc-root", str(etc), "-q", env=env)
    assert loose.returncode == 2 and "open to other users" in loose.stderr and "Traceback" not in loose.stderr


def test_sign_needs_a_json_report(agent, tmp_path):
    result = agent("scan", "--snapshot", str(tmp_path / "none.json"), "--sign", "-q")
    assert result.returncode == 2 and "--json" in result.stderr
