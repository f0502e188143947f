"""Writes a local user cannot redirect (issue 13 item 1) and push hygiene (item 6).

The hostile pieces are real: a second user created by the test, symlinks and
directories planted where the agent writes, a racer process of that user that
keeps planting symlinks while root writes.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from audit_agent import safe_write
from audit_agent.export.push import PushConfig, check_push, deliver, read_token, safe_url, spooled
from audit_agent.output import write_atomic
from audit_agent.yamlfile import ConfigError
from tests.conftest import agent_command

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux file semantics")


@pytest.fixture
def secret(tmp_path):
    """A root-only file the attacker wants exposed."""
    path = tmp_path / "secret"
    path.write_text("root-only-content\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def sticky(tmp_path):
    """A shared sticky folder like /tmp (everyone may create files, only owners may remove them)."""
    path = tmp_path / "shared"
    path.mkdir()
    path.chmod(0o1777)
    return path


def warnings():
    seen: list[str] = []
    return seen, seen.append


def test_symlink_at_the_report_name_is_not_followed(sticky, secret):
    (sticky / "report.json").symlink_to(secret)
    seen, warn = warnings()
    written = safe_write.write_file(sticky / "report.json", b"{}\n", 0o644, warn=warn)
    assert written.fallback and written.path.name.startswith("report-") and written.path.suffix == ".json"
    assert written.path.read_bytes() == b"{}\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600, "the mode went to our file, not through the link"
    assert secret.read_text() == "root-only-content\n"
    assert (sticky / "report.json").is_symlink(), "the planted link is left alone"
    assert len(seen) == 1 and "symlink" in seen[0] and str(written.path) in seen[0]


def test_a_planted_directory_does_not_stop_scheduled_runs(tmp_path):
    (tmp_path / "audit_agent.prom").mkdir()
    first = safe_write.write_file(tmp_path / "audit_agent.prom", b"a 1\n", 0o644, warn=lambda m: None)
    second = safe_write.write_file(tmp_path / "audit_agent.prom", b"a 2\n", 0o644, warn=lambda m: None)
    assert first.fallback and second.fallback
    assert second.path.read_bytes() == b"a 2\n"
    proms = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert proms == [second.path.name], "one dated file at a time: node_exporter must not read the series twice"


def test_older_fallbacks_of_another_user_are_not_removed(sticky, other_user):
    (sticky / "report.json").mkdir()
    theirs = sticky / safe_write.fallback_name("report.json", 0)
    theirs.write_text("theirs")
    os.chown(theirs, other_user.uid, other_user.gid)
    safe_write.write_file(sticky / "report.json", b"ours", warn=lambda m: None)
    assert theirs.read_text() == "theirs"


def test_a_world_writable_folder_is_refused(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(safe_write.UnsafeTarget, match="writable by every user"):
        write_atomic(folder / "report.json", "{}")
    assert list(folder.iterdir()) == []


def test_a_folder_of_another_user_is_refused(tmp_path, other_user):
    folder = tmp_path / "theirs"
    folder.mkdir()
    os.chown(folder, other_user.uid, other_user.gid)
    with pytest.raises(safe_write.UnsafeTarget, match=f"uid {other_user.uid}"):
        write_atomic(folder / "metrics.prom", "x 1\n")


def test_a_file_of_another_user_in_a_sticky_folder_is_left_alone(sticky, other_user):
    theirs = sticky / "report.json"
    theirs.write_text("their bait")
    os.chown(theirs, other_user.uid, other_user.gid)
    written = safe_write.write_file(theirs, b"ours", warn=lambda m: None)
    assert written.fallback and theirs.read_text() == "their bait"
    again = safe_write.write_file(sticky / "mine.json", b"1", warn=lambda m: None)
    assert not again.fallback
    assert not safe_write.write_file(sticky / "mine.json", b"2", warn=lambda m: None).fallback, \
        "a file we wrote before is ours and is replaced"


def test_cli_refuses_an_unsafe_report_folder_in_one_line(tmp_path, agent):
    from tests.factories import proc, snapshot
    seed = tmp_path / "snap.json"
    seed.write_text(json.dumps(snapshot([proc(5, "sleep 100")]).to_dict()))
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    result = agent("scan", "--snapshot", str(seed), "--json", str(folder / "r.json"), "--quiet")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "refusing to write here" in result.stderr and list(folder.iterdir()) == []


RACER = r"""
import os, sys, threading, time
folder, target, stop_after = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.time() + stop_after
def plant_final():
    while time.time() < end:
        try:
            os.symlink(target, os.path.join(folder, "report.json"))
        except OSError:
            pass
def swap_temps():
    while time.time() < end:
        for name in os.listdir(folder):
            if name.endswith(".tmp"):
                path = os.path.join(folder, name)
                try:
                    os.unlink(path)           # refused in a sticky folder: the file is root's
                    os.symlink(target, path)
                except OSError:
                    pass
threads = [threading.Thread(target=f) for f in (plant_final, swap_temps, swap_temps)]
[t.start() for t in threads]
print("racing", flush=True)
[t.join() for t in threads]
"""


def test_symlink_racers_never_redirect_a_root_write(other_user):
    import shutil
    import tempfile
    top = tempfile.mkdtemp(prefix="audit-race-")        # /tmp itself: the racer user must reach it
    try:
        os.chmod(top, 0o755)
        secret = os.path.join(top, "secret")
        with open(secret, "w") as handle:
            handle.write("root-only-content\n")
        os.chmod(secret, 0o600)
        shared = os.path.join(top, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
        racer = subprocess.Popen(other_user.command(sys.executable, "-c", RACER, shared, secret, "6"),
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert racer.stdout.readline().strip() == "racing"
            outcomes = set()
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                written = safe_write.write_file(os.path.join(shared, "report.json"), b"report\n", 0o644,
                                                warn=lambda m: None)
                assert written.path.read_bytes() == b"report\n" and not written.path.is_symlink()
                outcomes.add(written.fallback)
        finally:
            racer.wait(timeout=20)
        info = os.stat(secret)
        assert open(secret).read() == "root-only-content\n"
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == 0
        assert outcomes, "the writer ran"
    finally:
        shutil.rmtree(top, ignore_errors=True)


# ---------------------------------------------------------------- push spool and token


def test_spool_never_sends_a_planted_symlink_or_a_file_of_another_user(tmp_path, secret, other_user, mocker):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o750)
    (spool_dir / "00000000000000000001-1.json").symlink_to(secret)
    theirs = spool_dir / "00000000000000000002-1.json"
    theirs.write_text('{"planted": true}')
    os.chown(theirs, other_user.uid, other_user.gid)
    ours = spool_dir / "00000000000000000003-1.json"
    ours.write_text('{"ours": true}')
    sent: list[bytes] = []
    session = mocker.Mock()
    session.post.side_effect = lambda url, data, **kw: (sent.append(data), mocker.Mock(status_code=200))[1]
    result = deliver(b'{"new": true}', PushConfig(url="https://receiver.invalid/r", spool_dir=spool_dir),
                     session=session)
    assert sent == [b'{"ours": true}', b'{"new": true}'], "only our own plain spool files are sent"
    assert b"root-only" not in b"".join(sent)
    assert result.sent == 2 and (spool_dir / "00000000000000000001-1.json").is_symlink()
    assert [p.name for p in spooled(spool_dir)] == [theirs.name], "the symlink is not even listed"


def token_file(tmp_path, mode=0o600, text="tok-123\n"):
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_token_file_others_can_read_is_refused(tmp_path, mode):
    with pytest.raises(ConfigError, match="readable by other users"):
        read_token(str(token_file(tmp_path, mode)))


def test_a_symlinked_token_file_is_refused(tmp_path):
    real = token_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="symlink"):
        read_token(str(link))


def test_a_token_over_plain_http_needs_insecure(tmp_path):
    token = str(token_file(tmp_path))
    with pytest.raises(ConfigError, match="plain http"):
        check_push("http://203.0.113.7/reports", token, insecure=False)
    with pytest.raises(ConfigError, match="plain http"):
        check_push("http://user:pw@203.0.113.7/reports", None, insecure=False)
    assert check_push("http://203.0.113.7/reports", token, insecure=True) == "tok-123"
    assert check_push("https://203.0.113.7/reports", token, insecure=False) == "tok-123"
    assert check_push("http://127.0.0.1:9/reports", token, insecure=False) == "tok-123", "loopback never leaves"
    assert check_push("http://203.0.113.7/reports", None, insecure=False) is None, "nothing secret to send"


def test_credentials_in_the_push_url_are_never_logged(tmp_path):
    url = "http://alice:hunter2pw@127.0.0.1:9/r?token=qs-secret"
    assert "hunter2pw" not in safe_url(url) and "alice" not in safe_url(url) and "qs-secret" not in safe_url(url)
    result = deliver(b"{}", PushConfig(url=url, spool_dir=tmp_path / "spool", retries=1, timeout=1))
    assert result.spooled and result.errors
    assert not any("hunter2pw" in e or "qs-secret" in e for e in result.errors)


def test_watch_refuses_an_unsafe_token_file_and_folder_at_start(tmp_path):
    loose = token_file(tmp_path, 0o644)
    env = {**os.environ, "AUDIT_AGENT_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run([*agent_command(), "watch", "--once", "--window", "0", "--quiet",
                             "--state", str(tmp_path / "state" / "s.json"),
                             "--push", "https://203.0.113.7/r", "--push-token-file", str(loose)],
                            capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "readable by other users" in result.stderr
    assert "Traceback" not in result.stderr
    folder = tmp_path / "prom"
    folder.mkdir()
    folder.chmod(0o777)
    result = subprocess.run([*agent_command(), "watch", "--once", "--window", "0", "--quiet",
                             "--state", str(tmp_path / "state" / "s.json"), "--textfile-dir", str(folder)],
                            capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "refusing to write here" in result.stderr, result.stderr
