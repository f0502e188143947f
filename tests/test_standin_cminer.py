"""The C stand-in miner itself: what later tests rely on it to be (no identifying string on disk, a real
Stratum login over TLS, its disguises really in place). Every process started here is ended by its PID."""
from __future__ import annotations

import os
import sys
import time

import pytest

from tests.conftest import MONERO_WALLET, have_compiler
from tests.standin.cbuild import AGENT, build_cminer, section_range
from tests.standin.pool import StratumPool

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux") or not have_compiler(),
                                 reason="needs Linux and a C compiler")]
ON_DISK_NEVER = [b"stratum+", b"rx/0", b"cn/r", b"XMRig", b"mining", MONERO_WALLET.encode()[:20],
                 b"audit-agent", b"audit_agent", b'"login"']


@pytest.fixture
def tls_pool(tmp_path):
    with StratumPool(0, tls=tmp_path / "cert") as running:
        yield running


@pytest.mark.parametrize("pack", [None, "scrubbed", "upx-marks"])
def test_binary_on_disk_holds_none_of_its_strings(tmp_path, pack):
    exe = build_cminer(tmp_path, port=4444, pack=pack)
    data = exe.read_bytes()
    for text in ON_DISK_NEVER:
        assert text not in data, text
    assert (b"UPX!" in data) == (pack == "upx-marks")
    if pack:
        assert data[0x3C:0x3E] == b"\0\0", "no section table left, as in UPX output"


def test_packed_code_is_encrypted_on_disk(tmp_path):
    plain = build_cminer(tmp_path / "plain", port=4444)
    start, size = section_range(plain.read_bytes(), b"pk_text")
    packed = build_cminer(tmp_path / "packed", port=4444, pack="scrubbed").read_bytes()
    assert size > 2048
    assert packed[start:start + size] != plain.read_bytes()[start:start + size]


def test_logs_in_over_tls_with_disguises(tmp_path, tls_pool, processes):
    exe = build_cminer(tmp_path, port=tls_pool.port, pack="scrubbed")
    miner = processes.start([str(exe), "--tls", "--name", "kworker/1:1", "--blank-argv", "--memfd",
                             "--throttle", "40", "--seconds", "30"], wait_for_line="ready")
    assert tls_pool.logins and tls_pool.logins[0]["login"] == MONERO_WALLET
    assert tls_pool.logins[0]["agent"] == AGENT
    with open(f"/proc/{miner.pid}/cmdline", "rb") as handle:
        assert handle.read().rstrip(b"\0") == b"kworker/1:1"
    with open(f"/proc/{miner.pid}/comm") as handle:
        assert handle.read().strip() == "kworker/1:1"
    assert os.readlink(f"/proc/{miner.pid}/exe").startswith("/memfd:")


def test_submits_shares_and_exits_when_its_time_is_up(tmp_path, processes):
    with StratumPool(0) as pool:
        exe = build_cminer(tmp_path, port=pool.port)
        miner = processes.start([str(exe), "--seconds", "3"], wait_for_line="ready")
        deadline = time.monotonic() + 30
        while miner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert miner.returncode == 0
        assert "submit" in pool.methods


def test_bad_options_are_refused(tmp_path, processes):
    exe = build_cminer(tmp_path, port=4444)
    proc = processes.start([str(exe), "--throttle", "0"])
    assert proc.wait(timeout=10) == 2
    proc = processes.start([str(exe), "--no-such-option"])
    assert proc.wait(timeout=10) == 2
