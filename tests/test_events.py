"""SIEM outputs: --events FILE as ECS JSON lines and RFC 5424 syslog, each checked against a real receiver the
test starts (a unix datagram socket in tmp, a UDP socket on 127.0.0.1)."""
from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from audit_agent.export import syslog
from audit_agent.export.events import change_events, finding_event, line, scan_events
from audit_agent.yamlfile import ConfigError

SEED = Path(__file__).resolve().parent.parent / "seeds" / "login-02.snapshot.json"
# RFC 5424: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
RFC5424 = re.compile(rb"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?[^\\]\]) \xef\xbb\xbf(.*)$", re.S)
ECS_TOP = {"@timestamp", "ecs", "event", "host", "observer", "message", "process", "user", "rule", "threat", "labels",
           "audit_agent"}


@pytest.fixture
def unix_receiver(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "log.sock"
    sock.bind(str(path))
    sock.settimeout(10)
    yield sock, path
    sock.close()


@pytest.fixture
def udp_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock, sock.getsockname()[1]
    sock.close()


def receive(sock, count: int) -> list[bytes]:
    return [sock.recv(65536) for _ in range(count)]


def parse(datagram: bytes) -> tuple[int, bytes, dict]:
    found = RFC5424.match(datagram)
    assert found, datagram[:200]
    return int(found.group(1)), found.group(6), json.loads(found.group(8))


def test_scan_writes_one_ecs_line_per_finding_and_sends_them_to_syslog(agent, tmp_path, unix_receiver, udp_receiver):
    events, report_path = tmp_path / "events.jsonl", tmp_path / "r.json"
    unix, path = unix_receiver
    result = agent("scan", "--snapshot", str(SEED), "--json", str(report_path), "--events", str(events),
                   "--syslog", f"unix:{path}", "--quiet", "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    lines = [json.loads(text) for text in events.read_text().splitlines()]
    assert len(lines) == len(report["findings"]) >= 2
    for event, finding in zip(lines, report["findings"]):
        assert set(event) <= ECS_TOP and event["ecs"]["version"]
        assert event["event"]["kind"] == "alert" and event["event"]["id"] == finding["fingerprint"]
        assert event["host"]["hostname"] == report["host"]["hostname"]
        assert event["rule"]["id"] == finding["rule_ids"][0] and event["threat"]["technique"]["id"] == ["T1496"]
        assert event["labels"]["severity"] == finding["severity"]
    received = [parse(d) for d in receive(unix, len(lines))]
    for (pri, msgid, body), event in zip(received, lines):
        assert pri // 8 == syslog.FACILITY_LOCAL0 and pri % 8 == syslog.SEVERITY[event["labels"]["severity"]]
        assert msgid == b"finding-reported" and body == event
    # Appending: a second scan adds lines, never rewrites the file.
    port = udp_receiver[1]
    again = agent("scan", "--snapshot", str(SEED), "--events", str(events), "--syslog", f"udp:127.0.0.1:{port}",
                  "--quiet", "--fail-on", "never")
    assert again.returncode == 0 and len(events.read_text().splitlines()) == 2 * len(lines)
    assert [parse(d)[2]["event"]["id"] for d in receive(udp_receiver[0], len(lines))] == \
        [e["event"]["id"] for e in lines]


def test_hostile_text_cannot_break_lines_or_syslog_framing(hostile_report):
    for finding in hostile_report.findings:
        event = finding_event(hostile_report, finding)
        text = line(event)
        assert "\n" not in text and "\r" not in text and all(32 <= ord(c) < 127 for c in text)
        assert json.loads(text)["event"]["id"] == finding.fingerprint
        message = syslog.format_message(event, "host name\nwith ]\"junk")
        header = message.split(b"\xef\xbb\xbf", 1)[0]
        assert b"\n" not in header and parse(message)[2]["event"]["id"] == finding.fingerprint


@pytest.mark.parametrize("target, message", [
    ("udp:10.0.0.5:514", "only a loopback relay"),
    ("udp:localhost", "expected udp:127.0.0.1:PORT"),
    ("tcp:127.0.0.1:514", "use unix:/dev/log"),
    ("unix:relative.sock", "absolute path"),
])
def test_syslog_targets_are_local_only(target, message):
    with pytest.raises(ConfigError, match=message):
        syslog.parse_target(target)


def test_a_bad_target_is_exit_2_and_an_absent_receiver_only_a_warning(agent, tmp_path):
    bad = agent("scan", "--snapshot", str(SEED), "--syslog", "udp:192.0.2.1:514", "--quiet")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "loopback" in bad.stderr
    absent = agent("scan", "--snapshot", str(SEED), "--syslog", f"unix:{tmp_path / 'nobody.sock'}", "--quiet")
    assert absent.returncode == 1, absent.stderr          # the findings still decide the exit code
    assert "warning: syslog" in absent.stderr and "Traceback" not in absent.stderr


def test_watch_changes_become_events_verdict_changes_included(demo_reports):
    report = demo_reports["login-02"]
    finding = report.findings[0]
    changes = [{"event": "new", "fingerprint": finding.fingerprint, "time": 100.0},
               {"event": "verdict_changed", "verdict": "non_compliant", "previous_verdict": "compliant",
                "reasons": ["1 finding(s) of high or critical severity"], "time": 100.0},
               {"event": "resolved", "fingerprint": "0123456789abcdef", "title": "old", "rule_ids": ["AA-X-001"],
                "time": 100.0}]
    events = change_events(report, changes)
    assert [e["event"]["action"] for e in events] == ["finding-new", "verdict-changed", "finding-resolved"]
    assert events[1]["audit_agent"] == {"verdict": "non_compliant", "previous_verdict": "compliant"}
    assert events[0]["@timestamp"].startswith("1970-01-01T00:01:40")
    assert len(scan_events(report)) == len(report.findings)


@pytest.mark.e2e
def test_watch_once_writes_its_changes_to_the_events_file(agent, tmp_path, unix_receiver):
    events = tmp_path / "watch.jsonl"
    sock, path = unix_receiver
    result = agent("watch", "--once", "--window", "0", "--quiet", "--state", str(tmp_path / "state.json"),
                   "--events", str(events), "--syslog", f"unix:{path}", timeout=300)
    assert result.returncode in (0, 1), result.stderr
    lines = [json.loads(text) for text in events.read_text().splitlines()]
    verdicts = [e for e in lines if e["event"]["action"] == "verdict-changed"]
    assert len(verdicts) == 1 and verdicts[0]["audit_agent"]["previous_verdict"] is None
    assert parse(receive(sock, 1)[0])[2] == lines[0]
