"""The CLI: usage errors, corrupt inputs and hostile process data end cleanly."""
from __future__ import annotations

import json
import os

from audit_agent.cli import main
from audit_agent.model import ProcessInfo
from audit_agent.render.text import render
from tests.factories import proc, scan, snapshot

HOSTILE = ["[bold red]PWNED[/bold red]", "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "<script>alert(1)</script>",
           "[link=https://evil.invalid]click[/link]", "\u202eexe.gpj"]


def test_unknown_option_is_a_usage_error(agent):
    result = agent("scan", "--frobnicate")
    assert result.returncode == 2
    assert "unrecognized arguments: --frobnicate" in result.stderr and "Traceback" not in result.stderr


def test_no_command_prints_help_and_exits_2(agent):
    result = agent()
    assert result.returncode == 2 and "scan" in result.stderr


def test_version(agent):
    result = agent("--version")
    assert result.returncode == 0 and result.stdout.startswith("audit-agent ")


def test_corrupt_snapshot_is_one_line_error_and_leaves_no_report(agent, tmp_path):
    bad = tmp_path / "bad.json"
    out = tmp_path / "out.json"
    for content in ('{"schema_version": "1.0", "processes": [{"pid": "x"}]}', "{not json", "[]",
                    '{"schema_version": "9.0"}'):
        bad.write_text(content)
        result = agent("scan", "--snapshot", str(bad), "--json", str(out))
        assert result.returncode == 2, content
        assert len(result.stderr.strip().splitlines()) == 1 and str(bad) in result.stderr
        assert not out.exists() and list(tmp_path.iterdir()) == [bad]
    assert "newer than this agent supports" in result.stderr


def test_missing_snapshot_file(agent, tmp_path):
    result = agent("scan", "--snapshot", str(tmp_path / "none.json"))
    assert result.returncode == 2 and "cannot read snapshot" in result.stderr


def test_report_json_is_written_0640(tmp_path, capsys):
    snap_path = tmp_path / "s.json"
    snap_path.write_text(json.dumps(snapshot([proc(5, "/usr/bin/sleep 100")]).to_dict()))
    out = tmp_path / "r.json"
    assert main(["scan", "--snapshot", str(snap_path), "--json", str(out), "--quiet"]) == 0
    assert oct(os.stat(out).st_mode & 0o777) == "0o640"
    assert json.loads(out.read_text())["verdict"] == "compliant"


def test_terminal_summary_shows_hostile_names_literally():
    hostile = [proc(100 + i, ["/tmp/xmrig", name, "-o", "stratum+tcp://198.51.100.1:3333"], name=name)
               for i, name in enumerate(HOSTILE)]
    text = render(scan(snapshot(hostile)))
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "[bold red]PWNED[/bold red]" in text
    assert "[link=https://evil.invalid]click[/link]" in text


def test_cli_terminal_output_has_no_escape_bytes_from_data(tmp_path):
    snap = snapshot([ProcessInfo(pid=7, name="\x1b[2J\x1b]0;x\x07[blink]x", exe="/tmp/xmrig",
                                 cmdline=["/tmp/xmrig", "\x1b[31m"], cpu_percent=99.0)])
    path = tmp_path / "s.json"
    path.write_text(json.dumps(snap.to_dict()))
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "audit_agent", "scan", "--snapshot", str(path)],
                            capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 1
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b[2J" in result.stdout and "\\x1b[31m" in result.stdout


def run_in_terminal(args: list[str], env: dict | None = None, timeout: float = 60) -> tuple[int, bytes]:
    """Run the agent with stdout and stderr on a pseudo-terminal, as an administrator at a console would."""
    import pty
    import select
    import subprocess
    import sys
    import time

    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "audit_agent", *args], stdin=subprocess.DEVNULL,
                            stdout=child_fd, stderr=child_fd, env={**os.environ, "COLUMNS": "100", **(env or {})})
    os.close(child_fd)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main_fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    os.close(main_fd)
    # The terminal can close (EIO) before the process has exited; on a loaded machine the rest of the
    # scan may take a while, so the wait is a hang guard, not a timing assertion.
    return proc.wait(timeout=max(deadline - time.monotonic(), 0) + 120), output


def test_progress_is_shown_on_a_terminal_and_not_with_quiet():
    code, output = run_in_terminal(["scan", "--window", "1.5", "--fail-on", "never"])
    assert code == 0
    assert b"sampling CPU and GPU load" in output
    assert b"Verdict:" in output
    code, output = run_in_terminal(["scan", "--window", "1", "--fail-on", "never", "--quiet"])
    assert code == 0 and output.strip() == b""


def test_colour_on_a_terminal_unless_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)

    def coloured(env: dict) -> bool:
        code, output = run_in_terminal(["scan", "--window", "0", "--fail-on", "never"], env=env)
        assert code == 0 and b"Verdict:" in output
        summary = output[output.index(b"audit-agent "):]
        return b"\x1b[3" in summary or b"\x1b[1;3" in summary         # foreground colours
    assert coloured({})
    assert not coloured({"NO_COLOR": "1"})


def test_an_internal_error_is_one_line_and_exit_2_not_1(mocker, capsys):
    """A bug or a broken install must never look like exit 1 ("findings") to cron, CI or Ansible."""
    from audit_agent import cli
    from audit_agent.rules import loader
    mocker.patch.object(loader, "load_pack", side_effect=RuntimeError("boom"))
    assert cli.main(["rules", "list"]) == 2
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err and "Traceback" not in err
    mocker.patch.object(loader, "load_pack", side_effect=ModuleNotFoundError("No module named 'yaml'", name="yaml"))
    assert cli.main(["rules", "list"]) == 2
    assert "missing dependency yaml" in capsys.readouterr().err


def test_terminal_summary_caps_agent_version_and_check_names():
    report = scan(snapshot([proc(5, "/usr/bin/sleep 100")]))
    report.agent_version = "1.0\x1b]0;owned\x07\x1b[2J"
    report.coverage[0].check = "processes\x1b[31m\u202e"
    text = render(report)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b]0;owned\\x07" in text and "processes\\x1b[31m" in text


def test_fail_on_never_is_not_reported_as_a_threshold(tmp_path):
    import xml.etree.ElementTree as ET
    snap_path, junit = tmp_path / "snap.json", tmp_path / "junit.xml"
    miner = proc(4242, "/tmp/.x/xmrig -o stratum+tcp://pool.supportxmr.com:3333", cpu=190.0)
    snap_path.write_text(json.dumps(snapshot([miner]).to_dict()))
    assert main(["scan", "--snapshot", str(snap_path), "--fail-on", "never", "--junit", str(junit), "--quiet"]) == 0
    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert properties["verdict"] and "fail_on" not in properties, "the exit threshold is the CLI's, not the report's"


def test_fail_on_never_is_stored_as_such(tmp_path):
    snap_path = tmp_path / "s.json"
    snap_path.write_text(json.dumps(snapshot([proc(5, "/opt/x/xmrig -o stratum+tcp://198.51.100.1:3333")]).to_dict()))
    out = tmp_path / "r.json"
    assert main(["scan", "--snapshot", str(snap_path), "--json", str(out), "--quiet", "--fail-on", "never"]) == 0
    assert json.loads(out.read_text())["fail_on"] is None
    assert main(["scan", "--snapshot", str(snap_path), "--json", str(out), "--quiet"]) == 1
    assert json.loads(out.read_text())["fail_on"] == "high"


# ---- the parser of the one sub-command asked for


ARGV_LINES = [
    ["scan", "--window", "0", "--quiet", "--fail-on", "never", "--json", "r.json", "--lang", "zh-CN"],
    ["scan", "--snapshot", "s.json", "--html", "r.html", "--sign"],
    ["collect", "-o", "s.json", "--keep-secrets"],
    ["report", "r.json", "--markdown", "r.md"],
    ["filing", "draft", "r.json", "--out", "d"],
    ["demo", "--lang", "zh-CN"],
    ["rules", "update", "pack.tar.gz", "--force"], ["rules", "show", "AA-X"], ["rules", "list"],
    ["watch", "--interval", "60", "--once", "--full-every", "3"],
    ["fleet", "a", "b", "--stale-days", "7"],
    ["keys", "show", "--key", "k"],
]


def test_the_one_command_parser_reads_every_command_line_as_the_whole_parser_does():
    from audit_agent.cli import COMMANDS, build_parser, command_in
    for argv in ARGV_LINES:
        assert command_in(argv) == argv[0]
        assert vars(build_parser(argv[0]).parse_args(argv)) == vars(build_parser().parse_args(argv)), argv
    assert set(COMMANDS) == {argv[0] for argv in ARGV_LINES}
    assert command_in(["--version"]) is None and command_in([]) is None and command_in(["bogus"]) is None


def test_a_scan_builds_no_formatter_that_imports_shutil(tmp_path):
    """argparse's own formatter imports shutil (and bz2 and lzma) for each parser just to learn the width."""
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parent.parent
    code = ("import sys; from audit_agent.cli import build_parser; build_parser('scan').parse_args(['scan']); "
            "print('shutil' in sys.modules)")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env={"PYTHONPATH": str(repo), "PATH": os.environ.get("PATH", "")})
    assert result.stdout.strip() == "False", result.stdout + result.stderr


def test_help_is_as_wide_as_argparse_would_make_it(monkeypatch):
    import shutil
    from audit_agent.cli import terminal_columns
    for columns in ("60", "132", "", "0", "wide"):
        monkeypatch.setenv("COLUMNS", columns)
        assert terminal_columns() == shutil.get_terminal_size().columns, columns
