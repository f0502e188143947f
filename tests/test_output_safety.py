"""Output safety: hostile process data is inert in every output, and reports are written 0640 and atomically."""
from __future__ import annotations

import importlib
import io
import json
import os
import re
import stat
import xml.etree.ElementTree as ET

import pytest

from audit_agent import output, safe_write
from audit_agent.model import ProcessInfo
from audit_agent.render import FORMATS, RenderOptions, render
from tests.factories import conn, proc, scan as scan_report, snapshot
from tests.conftest import MONERO_WALLET

SCRIPT = "<script>alert(1)</script><img src=x onerror=alert(2)>"
MARKUP = "[bold red]x[/][link=https://evil.invalid]click[/link]"
ANSI = "\x1b[31mRED\x1b[0m\x1b[2J\x1b]0;pwned title\x07\x1b]8;;https://evil.invalid\x1b\\link\x1b]8;;\x1b\\"
CONTROL = "nul\x00bel\x07bs\x08cr\rdel\x7fc1\x9b"
RTL = "invoice\u202eexe.sh"
HOSTILE = f"{MARKUP}{SCRIPT}{ANSI}{CONTROL}{RTL}&amp;\"'`|*_#"
ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-9;]*m")     # styling the renderer itself emits (SGR), nothing else


def hostile_report():
    miner = ProcessInfo(pid=4242, ppid=1, name=f"xmrig{HOSTILE}"[:64], exe=f"/tmp/{HOSTILE}/xmrig",
                        cmdline=[f"/tmp/{HOSTILE}/xmrig", "-o", "stratum+tcp://pool.supportxmr.com:3333", "-u",
                                 MONERO_WALLET, "-p", "hunter2secret", f"--comment={HOSTILE}"],
                        username=f"eve{MARKUP}", cwd=f"/tmp/{RTL}", cpu_percent=390.0, allowed_cpus=4,
                        cgroup=f"/docker/{ANSI}", environ={"LD_PRELOAD": f"/tmp/{HOSTILE}.so"})
    quiet = proc(17, ["python3", f"train.py --tag={HOSTILE}"], user=f"bob{ANSI}")
    snap = snapshot([miner, quiet], [conn(4242, "203.0.113.9", 3333)], hostname=f"node{RTL}{ANSI}")
    report = scan_report(snap)
    assert any(f.subject.pid == 4242 for f in report.findings), "the hostile process must be a finding"
    return report


@pytest.fixture(scope="module")
def report():
    return hostile_report()


def test_terminal_text_is_inert(report):
    text = render("text", report, RenderOptions(width=400))
    assert "\x1b" not in text and "\x07" not in text and "\x00" not in text and "\x9b" not in text
    assert "\u202e" not in text
    assert "[bold red]x[/]" in text, "Rich markup in data is shown literally"
    assert "[link=https://evil.invalid]" in text


def test_terminal_text_in_colour_emits_only_its_own_styling(report):
    text = render("text", report, RenderOptions(width=400, color=True))
    assert ESCAPE_SEQUENCE.search(text), "colour output does use SGR styling"
    leftover = ESCAPE_SEQUENCE.sub("", text)
    assert "\x1b" not in leftover and "\x07" not in leftover, "no OSC (title, hyperlink) or cursor sequences from data"
    assert "\u202e" not in leftover and "\x00" not in leftover
    assert "[bold red]x[/]" in leftover


def test_real_cli_terminal_output_is_inert(agent, tmp_path, report):
    path = tmp_path / "hostile.json"
    snap = snapshot([ProcessInfo(pid=4242, name=f"xmrig{HOSTILE}"[:64], exe=f"/tmp/{HOSTILE}/xmrig",
                                 cmdline=[f"/tmp/{HOSTILE}/xmrig", "-o", "stratum+tcp://pool.supportxmr.com:3333",
                                          "-u", MONERO_WALLET], username=f"eve{MARKUP}")], hostname=f"h{ANSI}")
    path.write_text(json.dumps(snap.to_dict()))
    for env in ({"NO_COLOR": "1", "COLUMNS": "400"}, {"FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "400"}):
        result = agent("scan", "--snapshot", str(path), "--fail-on", "never", env=env)
        assert result.returncode == 0, result.stderr
        shown = ESCAPE_SEQUENCE.sub("", result.stdout + result.stderr)
        assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown and "\x00" not in shown
        assert "[bold red]x[/]" in shown
        assert "Traceback" not in result.stderr


def test_json_is_valid_and_inert(report):
    text = render("json", report, RenderOptions())
    data = json.loads(text)
    assert data["findings"]
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", text), "no raw control or bidi characters in the JSON text"
    assert "hunter2secret" not in text, "pool passwords are redacted"
    assert MONERO_WALLET in text, "wallets are kept as evidence"


def optional(fmt: str):
    try:
        importlib.import_module(FORMATS[fmt])
    except ImportError as exc:          # the renderer has not landed in this checkout
        pytest.skip(f"{fmt} renderer not available: {exc}")


def as_text(data) -> str:
    return data.decode("utf-8") if isinstance(data, bytes) else data


def test_html_is_inert(report):
    optional("html")
    html = as_text(render("html", report, RenderOptions()))
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "onerror=alert" not in html or "&lt;img" in html
    assert "&lt;script&gt;alert(1)" in html, "hostile markup is shown escaped"
    assert "\x1b" not in html and "\x00" not in html and "\u202e" not in html
    assert "hunter2secret" not in html


def test_markdown_is_inert(report):
    optional("markdown")
    md = as_text(render("markdown", report, RenderOptions()))
    outside_code = re.sub(r"`[^`\n]*`", "", md)
    assert not re.search(r"(?<!\\)<(?:script|img)\b", outside_code), "no live HTML from data (Markdown renders it)"
    assert "\x1b" not in md and "\x00" not in md and "\x07" not in md and "\u202e" not in md
    assert "hunter2secret" not in md


@pytest.mark.parametrize("fmt", ["junit", "sarif"])
def test_machine_formats_parse_and_are_inert(report, fmt):
    optional(fmt)
    data = as_text(render(fmt, report, RenderOptions()))
    if fmt == "junit":
        root = ET.fromstring(data.encode("utf-8"))
        assert root.iter()
        assert "<script>" not in data
    else:
        json.loads(data)
    assert "\x1b" not in data and "\x00" not in data and "\x07" not in data
    assert "hunter2secret" not in data


def test_undecodable_bytes_never_crash_a_write(agent, tmp_path):
    """A snapshot carrying lone surrogates (undecodable bytes) still renders and writes every format."""
    path = tmp_path / "surrogates.json"
    process = {"pid": 7, "name": "xmrig", "exe": "/tmp/x\\udcff/xmrig",
               "cmdline": ["xmrig", "-o", "stratum+tcp://pool.supportxmr.com:3333", "--tag=\\udcff\\udce9"]}
    data = snapshot([]).to_dict()
    data["processes"] = [process]
    path.write_text(json.dumps(data).replace("\\\\udc", "\\udc"))
    outs = {fmt: tmp_path / f"out.{fmt}" for fmt in ("json", "html", "markdown", "junit", "sarif")}
    args = [arg for fmt, out in outs.items() for arg in (f"--{fmt}", str(out))]
    result = agent("scan", "--snapshot", str(path), "--fail-on", "never", *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for out in outs.values():
        out.read_text(encoding="utf-8")          # strict UTF-8


# ---------------------------------------------------------------- atomic, 0640 writes


def test_reports_are_written_0640(tmp_path):
    old = os.umask(0o077)
    try:
        target = tmp_path / "report.json"
        output.write_atomic(target, "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_rename_leaves_nothing(tmp_path, mocker):
    mocker.patch.object(safe_write.os, "rename", side_effect=OSError(28, "No space left on device"))
    with pytest.raises(OSError):
        output.write_atomic(tmp_path / "report.json", "x" * 100_000)
    assert list(tmp_path.iterdir()) == [], "no report and no temp file"


def test_a_failed_rename_keeps_the_previous_report_whole(tmp_path, mocker):
    target = tmp_path / "report.json"
    output.write_atomic(target, "old complete report\n")
    mocker.patch.object(safe_write.os, "rename", side_effect=OSError(5, "I/O error"))
    with pytest.raises(OSError):
        output.write_atomic(target, "new")
    assert target.read_text() == "old complete report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_cli_writes_no_report_when_any_render_fails(tmp_path, mocker):
    """All outputs are rendered before any is written: one failing renderer leaves no file at all."""
    import contextlib

    from audit_agent import cli
    from audit_agent.render import text as text_renderer

    seed = tmp_path / "snap.json"
    seed.write_text(json.dumps(snapshot([proc(5, "xmrig -o stratum+tcp://pool.supportxmr.com:3333")]).to_dict()))
    mocker.patch("audit_agent.render.sarif.render", side_effect=OSError(5, "renderer failed"), create=True)
    outdir = tmp_path / "out"
    outdir.mkdir()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["scan", "--snapshot", str(seed), "--json", str(outdir / "r.json"), "--sarif",
                         str(outdir / "r.sarif"), "--quiet"])
    assert code == 2 and "renderer failed" in err.getvalue()
    assert list(outdir.iterdir()) == []
    assert text_renderer  # the text renderer is untouched by the failing one


SECRET = "hunter2-not-a-wallet"


def test_collect_snapshots_redact_other_users_secrets_unless_asked(agent, tmp_path, processes):
    """`collect -o` writes a file that travels (to a colleague, into a ticket): pool passwords, tokens and
    URL credentials of other users' command lines are redacted; the wallet, the evidence, stays."""
    import sys
    argv = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)",
            "-o", "stratum+tcp://pool.invalid:3333", "-u", MONERO_WALLET, "--pass", SECRET,
            f"--proxy=socks5://worker:{SECRET}@127.0.0.1:1080", f"api_token={SECRET}"]
    child = processes.start(argv, wait_for_line="ready")
    redacted, kept = tmp_path / "redacted.json", tmp_path / "kept.json"
    result = agent("collect", "--window", "0", "-o", str(redacted), "--quiet")
    assert result.returncode == 0, result.stderr
    mine = next(p for p in json.loads(redacted.read_text())["processes"] if p["pid"] == child.pid)
    assert SECRET not in redacted.read_text(), "no copy of the secret anywhere in the snapshot"
    assert MONERO_WALLET in mine["cmdline"] and "***" in mine["cmdline"]
    result = agent("collect", "--window", "0", "-o", str(kept), "--quiet", "--keep-secrets")
    assert result.returncode == 0, result.stderr
    mine = next(p for p in json.loads(kept.read_text())["processes"] if p["pid"] == child.pid)
    assert SECRET in mine["cmdline"], "--keep-secrets keeps the command line as it was"
