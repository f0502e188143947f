"""Watch mode: change events across scans, state, survival (collector crash, bad rules, full disk), clean stop.

The end-to-end tests run the installed agent as a subprocess against the real
host, with the stand-in miner talking Stratum to a pool on 127.0.0.1.
"""
from __future__ import annotations

import errno
import io
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from argparse import Namespace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from audit_agent.model import Severity
from audit_agent.paths import data_dir
from audit_agent.watch import WatchOptions, WatchState, Watcher, diff, format_event
from tests.conftest import MONERO_WALLET, agent_command, start_miner
from tests.factories import conn, proc, scan, snapshot


class WatchProcess:
    """`audit-agent watch` as a subprocess; stdout (events) and stderr (log) read by threads."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*agent_command(), "watch", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.events: queue.Queue = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.events.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.log.append), daemon=True).start()

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    def wait_event(self, predicate, timeout: float = 40) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = json.loads(self.events.get(timeout=0.5))
            except queue.Empty:
                assert self.proc.poll() is None, f"watch exited {self.proc.returncode}: {self.log}"
                continue
            if predicate(item):
                return item
        raise AssertionError(f"no matching event within {timeout}s; log: {self.log}")

    def wait_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.log):
                return
            assert self.proc.poll() is None, f"watch exited {self.proc.returncode}: {self.log}"
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not logged within {timeout}s; log: {self.log}")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 5) -> int:
        os.kill(self.proc.pid, sig)
        return self.proc.wait(timeout=timeout)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


@pytest.fixture
def watch_process():
    started: list[WatchProcess] = []

    def start(*args: str) -> WatchProcess:
        started.append(WatchProcess(*args))
        return started[-1]
    yield start
    for item in started:
        item.cleanup()


def wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def cycles(state: Path) -> int:
    try:
        return json.loads(state.read_text())["counters"]["scans_total"]
    except (OSError, ValueError, KeyError):
        return 0


# ---------------------------------------------------------------- end to end


@pytest.mark.e2e
def test_miner_appears_as_new_then_resolved_and_sigterm_stops_cleanly(watch_process, pool, processes, tmp_path):
    state = tmp_path / "state.json"
    watcher = watch_process("--interval", "1", "--window", "0.5", "--state", str(state), "--textfile-dir",
                            str(tmp_path), "--events", "json", "--json", str(tmp_path / "report.json"))
    wait_for(lambda: cycles(state) >= 1)
    miner = start_miner(processes, ["xmrig", "-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET])
    new = watcher.wait_event(lambda e: e["event"] == "new" and e["subject"].get("pid") == miner.pid)
    assert new["severity"] in ("high", "critical") and new["host"]
    processes.stop(miner)
    resolved = watcher.wait_event(lambda e: e["event"] == "resolved" and e["fingerprint"] == new["fingerprint"])
    assert resolved["first_seen"] <= resolved["time"]

    started = time.monotonic()
    assert watcher.terminate(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    entry = json.loads(state.read_text())["findings"][new["fingerprint"]]
    assert entry["first_seen"] <= entry["last_seen"] <= entry["resolved_at"]
    metrics = {f.name for f in text_string_to_metric_families((tmp_path / "audit_agent.prom").read_text())}
    assert {"audit_agent_verdict", "audit_agent_findings", "audit_agent_last_run_timestamp_seconds"} <= metrics
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.e2e
def test_bad_rules_update_keeps_the_last_good_pack(watch_process, pool, processes, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(data_dir("rules"), rules)
    state = tmp_path / "state.json"
    watcher = watch_process("--interval", "1", "--window", "0.2", "--rules", str(rules), "--state", str(state),
                            "--events", "json")
    wait_for(lambda: cycles(state) >= 1)
    (rules / "miners.yaml").write_text("rules:\n  - id: [broken\n")
    watcher.wait_log("invalid; keeping audit-agent-default")
    seen = cycles(state)
    wait_for(lambda: cycles(state) >= seen + 2)           # still scanning
    miner = start_miner(processes, ["xmrig", "-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET])
    event = watcher.wait_event(lambda e: e["event"] == "new" and e["subject"].get("pid") == miner.pid)
    assert "AA-NAME-001" in event["rule_ids"], "the last good pack (with the miner names) is still in use"
    assert sum("invalid; keeping" in line for line in watcher.log) == 1, "logged once, not every cycle"
    assert watcher.terminate(signal.SIGINT) == 0


@pytest.mark.e2e
def test_unwritable_outputs_are_logged_once_and_watch_keeps_running(watch_process, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    watcher = watch_process("--interval", "0.5", "--window", "0", "--state", str(blocker / "state.json"),
                            "--textfile-dir", str(blocker / "metrics"), "--json", str(blocker / "r.json"))
    watcher.wait_log("cannot write state")
    watcher.wait_log("cannot write metrics")
    time.sleep(2.5)                                        # several more cycles
    assert watcher.proc.poll() is None
    assert sum("cannot write metrics" in line for line in watcher.log) == 1
    assert watcher.terminate() == 0


@pytest.mark.e2e
def test_once_exit_codes_and_state_across_runs(agent, pool, processes, tmp_path):
    state = tmp_path / "state.json"
    args = ("watch", "--once", "--window", "0.5", "--state", str(state), "--events", "json")
    miner = start_miner(processes, ["xmrig", "-o", f"stratum+tcp://127.0.0.1:{pool.port}", "-u", MONERO_WALLET])
    first = agent(*args)
    assert first.returncode == 1, first.stderr
    events = [json.loads(line) for line in first.stdout.splitlines()]
    fingerprint = next(e["fingerprint"] for e in events if e["event"] == "new" and e["subject"]["pid"] == miner.pid)
    processes.stop(miner)
    second = agent(*args, "--json", str(tmp_path / "report.json"))
    events = [json.loads(line) for line in second.stdout.splitlines()]
    assert {"event": "resolved", "fingerprint": fingerprint}.items() <= next(
        e for e in events if e.get("fingerprint") == fingerprint).items()
    assert not any(e["event"] == "new" and e["subject"].get("pid") == miner.pid for e in events)
    # Other test sessions on this host may run miners of their own: the exit code must match the report.
    report = json.loads((tmp_path / "report.json").read_text())
    high = [f for f in report["findings"] if f["status"] == "open" and f["severity"] in ("high", "critical")]
    assert second.returncode == (1 if high else 0), second.stderr


# ---------------------------------------------------------------- in process


def options(tmp_path: Path, **extra) -> WatchOptions:
    values = dict(interval=0.01, once=False, state_path=tmp_path / "state.json", rules=None, config=None, window=0.0,
                  textfile_dir=str(tmp_path), json_path=str(tmp_path / "report.json"))
    values.update(extra)
    return WatchOptions(**values)


def miner_snapshot(pid: int = 4242, cpu: float = 190.0):
    miner = proc(pid, f"/tmp/.x/xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u {MONERO_WALLET}", cpu=cpu)
    return snapshot([miner], [conn(pid, "94.130.12.27", 3333)])


def test_full_disk_is_logged_and_the_cycle_goes_on(tmp_path, mocker):
    err = io.StringIO()
    watcher = Watcher(options(tmp_path), threading.Event(), out=io.StringIO(), err=err)
    mocker.patch.object(watcher, "collect", return_value=miner_snapshot())
    full = mocker.patch("audit_agent.safe_write.os.rename", side_effect=OSError(errno.ENOSPC, "No space left on device"))
    assert watcher.cycle() is not None
    assert watcher.cycle() is not None
    assert watcher.state.counters.write_errors_total == 4          # report + metrics, twice
    assert err.getvalue().count("No space left on device") == 3    # state, report, metrics: once each
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")], "temp files are removed"
    mocker.stop(full)
    assert watcher.cycle() is not None
    assert (tmp_path / "audit_agent.prom").exists() and (tmp_path / "state.json").exists()
    assert "writing metrics works again" in err.getvalue()


def test_a_failing_collector_is_survived(tmp_path, mocker):
    err = io.StringIO()
    watcher = Watcher(options(tmp_path), threading.Event(), out=io.StringIO(), err=err)
    mocker.patch.object(watcher, "collect", side_effect=[RuntimeError("netlink exploded"), miner_snapshot()])
    assert watcher.cycle() is None
    assert "scan failed" in err.getvalue() and "netlink exploded" in err.getvalue()
    assert watcher.cycle() is not None
    assert watcher.state.counters.scan_errors_total == 1 and watcher.state.counters.scans_total == 1


def test_stop_event_ends_the_loop_during_the_sleep(tmp_path, mocker):
    stop = threading.Event()
    watcher = Watcher(options(tmp_path, interval=600), stop, out=io.StringIO(), err=io.StringIO())
    mocker.patch.object(watcher, "collect", return_value=snapshot([]))
    thread = threading.Thread(target=watcher.run_forever)
    thread.start()
    wait_for(lambda: watcher.state.counters.scans_total == 1, timeout=10)
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_diff_reports_new_severity_change_resolved_and_reappearance():
    state = WatchState()
    first = scan(miner_snapshot())
    events = diff(state, first, now=100.0)
    assert [e["event"] for e in events] == ["new", "verdict_changed"]
    fingerprint = events[0]["fingerprint"]
    assert diff(state, scan(miner_snapshot(pid=999)), now=110.0) == [], "a new PID of the same miner is no change"
    changed = scan(miner_snapshot())
    changed.findings[0].severity = Severity.MEDIUM
    assert [e["event"] for e in diff(state, changed, now=120.0)] == ["severity_changed"]
    clean = scan(snapshot([proc(1, "/usr/sbin/sshd -D", user="root")]))
    events = diff(state, clean, now=130.0)
    assert [e["event"] for e in events] == ["resolved", "verdict_changed"]
    assert state.findings[fingerprint]["resolved_at"] == 130.0
    again = diff(state, first, now=140.0)
    assert again[0]["event"] == "new" and again[0]["reappeared_after"] == 130.0
    assert state.findings[fingerprint]["first_seen"] == 100.0


def test_text_events_carry_no_terminal_escapes():
    report = scan(miner_snapshot())
    report.findings[0].subject.exe = "/tmp/\x1b[31mred\x1b[0m\nfake line"
    events = diff(WatchState(), report, now=1.0)
    line = format_event(events[0], "text")
    assert "\x1b" not in line and "\n" not in line
    assert "\\x1b[31m" in line
    assert json.loads(format_event(events[0], "json"))["subject"]["exe"].startswith("/tmp/\x1b")


def test_corrupt_state_file_starts_fresh(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    err = io.StringIO()
    watcher = Watcher(options(tmp_path), threading.Event(), out=io.StringIO(), err=err)
    assert watcher.state.findings == {} and "unreadable" in err.getvalue()


def test_cli_options_reach_the_watcher(tmp_path):
    from audit_agent.cli import build_parser
    args = build_parser().parse_args(["watch", "--interval", "60", "--state", str(tmp_path / "s.json"),
                                      "--max-spool", "7", "--events", "json", "--push", "https://x.example/r"])
    opts = WatchOptions.from_args(args)
    assert opts.max_spool == 7 and opts.events == "json" and opts.spool_dir == tmp_path / "spool"
    assert isinstance(args, Namespace)


def test_malformed_state_entries_are_dropped_and_the_cycle_runs(tmp_path, mocker):
    good = {"first_seen": 1.0, "last_seen": 2.0, "resolved_at": None, "severity": "high", "status": "open",
            "title": "kept", "rule_ids": ["R1"], "subject": {"kind": "process"}}
    state = {"state_version": 1, "verdict": "compliant", "counters": ["not", "a", "dict"], "updated_at": "yesterday",
             "findings": {"ok": good,
                          "no-first-seen": {"severity": "high"},
                          "text-resolved": {**good, "resolved_at": "last week"},
                          "list-rules": {**good, "rule_ids": [["R1"]]},
                          "list-subject": {**good, "subject": ["pid", 1]},
                          "huge-time": {**good, "last_seen": 10 ** 400},
                          "not-an-object": [1, 2]}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    err, out = io.StringIO(), io.StringIO()
    watcher = Watcher(options(tmp_path), threading.Event(), out=out, err=err)
    assert list(watcher.state.findings) == ["ok"]
    assert err.getvalue().count("dropped 6 malformed finding entries") == 1
    mocker.patch.object(watcher, "collect", return_value=snapshot([proc(1, "/usr/sbin/sshd -D", user="root")]))
    assert watcher.cycle() is not None
    assert "resolved" in out.getvalue() and "kept" in out.getvalue()


@pytest.mark.parametrize("content", ["{not json", "[" * 100_000 + "]" * 100_000, '{"findings": []}', "\xff\xfe"])
def test_unreadable_state_starts_fresh_and_is_kept_until_a_scan_succeeds(tmp_path, mocker, content):
    path = tmp_path / "state.json"
    path.write_bytes(content.encode("latin-1"))
    err = io.StringIO()
    watcher = Watcher(options(tmp_path), threading.Event(), out=io.StringIO(), err=err)
    assert watcher.state.findings == {} and "unreadable" in err.getvalue()
    mocker.patch.object(watcher, "collect", side_effect=[RuntimeError("netlink exploded"), miner_snapshot()])
    assert watcher.cycle() is None
    assert path.read_bytes() == content.encode("latin-1"), "a failed scan does not overwrite the old state"
    assert watcher.cycle() is not None
    assert json.loads(path.read_text())["counters"]["scans_total"] == 1


def test_pushed_and_written_report_json_escapes_bidi_and_c1(tmp_path, mocker):
    watcher = Watcher(options(tmp_path), threading.Event(), out=io.StringIO(), err=io.StringIO())
    snap = miner_snapshot()
    snap.host.hostname = "gpu\u202e01\u0085"
    mocker.patch.object(watcher, "collect", return_value=snap)
    pushed = mocker.patch.object(watcher, "push")
    watcher.options.push_url = "https://collector.example/reports"
    assert watcher.cycle() is not None
    for data in (pushed.call_args.args[0].decode("utf-8"), (tmp_path / "report.json").read_text(encoding="utf-8")):
        assert "\u202e" not in data and "\u0085" not in data
        assert json.loads(data)["host"]["hostname"] == "gpu\u202e01\u0085"
