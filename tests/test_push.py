"""Push with spool against a real HTTP server on 127.0.0.1: down, slow, 500, recovery, token, overflow."""
from __future__ import annotations

import json

import pytest

from audit_agent.export.push import PushConfig, deliver, spooled
from audit_agent.yamlfile import ConfigError
from tests.loopback_http import LoopbackServer, closed_port


@pytest.fixture
def server():
    with LoopbackServer() as running:
        yield running


def config(tmp_path, url: str, **extra) -> PushConfig:
    values = dict(timeout=2.0, retries=3, backoff=0.01, max_spool=100)
    values.update(extra)
    return PushConfig(url=url, spool_dir=tmp_path / "spool", **values)


def report(n: int) -> bytes:
    return json.dumps({"schema_version": "1.0", "n": n}).encode()


def test_delivered_with_bearer_token_from_file(tmp_path, server):
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o600)
    result = deliver(report(1), config(tmp_path, f"{server.url}/reports", token_file=str(token)))
    assert result.sent == 1 and not result.spooled and result.pending == 0
    got = server.received[0]
    assert got.path == "/reports"
    assert got.headers["Authorization"] == "Bearer s3cret-token"
    assert got.headers["Content-Type"] == "application/json"
    assert json.loads(got.body) == {"schema_version": "1.0", "n": 1}


def test_receiver_down_spools_the_report(tmp_path):
    sleeps = []
    result = deliver(report(1), config(tmp_path, f"http://127.0.0.1:{closed_port()}/"), sleep=sleeps.append)
    assert result.spooled and result.sent == 0 and result.pending == 1
    assert sleeps == [0.01, 0.02], "exponential backoff between the three attempts"
    assert json.loads(spooled(tmp_path / "spool")[0].read_bytes())["n"] == 1


def test_slow_receiver_times_out_and_spools(tmp_path, server):
    server.behaviour.delay = 1.5
    result = deliver(report(1), config(tmp_path, server.url, timeout=0.3, retries=1))
    assert result.spooled and result.pending == 1
    assert "timed out" in result.errors[0]


def test_server_error_is_retried_then_spooled(tmp_path, server):
    server.behaviour.status = 500
    result = deliver(report(1), config(tmp_path, server.url, retries=3))
    assert server.attempts == 3
    assert result.spooled and result.pending == 1 and "HTTP 500" in result.errors[0]


def test_recovery_sends_the_spool_oldest_first_then_the_new_report(tmp_path, server):
    server.behaviour.status = 503
    for n in (1, 2, 3):
        assert deliver(report(n), config(tmp_path, server.url, retries=1)).spooled
    assert len(spooled(tmp_path / "spool")) == 3
    server.behaviour.status = 200
    result = deliver(report(4), config(tmp_path, server.url))
    assert result.sent == 4 and not result.spooled and result.pending == 0
    assert [json.loads(r.body)["n"] for r in server.received] == [1, 2, 3, 4]
    assert spooled(tmp_path / "spool") == []


def test_spool_is_bounded_and_overflow_is_reported(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/"
    dropped = 0
    for n in range(1, 6):
        result = deliver(report(n), config(tmp_path, url, retries=1, max_spool=3))
        dropped += result.dropped
    left = [json.loads(p.read_bytes())["n"] for p in spooled(tmp_path / "spool")]
    assert left == [3, 4, 5], "the oldest are dropped"
    assert dropped == 2 and result.pending == 3
    assert any("spool full" in e for e in result.errors)


def test_rejected_report_is_not_spooled(tmp_path, server):
    server.behaviour.status = 400
    result = deliver(report(1), config(tmp_path, server.url))
    assert server.attempts == 1, "a 4xx is not retried"
    assert not result.spooled and result.rejected == 1 and result.pending == 0


def test_unreadable_token_file_is_a_config_error(tmp_path, server):
    with pytest.raises(ConfigError, match="token"):
        deliver(report(1), config(tmp_path, server.url, token_file=str(tmp_path / "missing")))


def test_tls_verification_is_on_by_default(tmp_path):
    assert PushConfig(url="https://x", spool_dir=tmp_path).verify is True
