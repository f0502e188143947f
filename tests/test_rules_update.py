"""`rules update` against a rule pack served by an HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from audit_agent.paths import data_dir
from audit_agent.rules.update import compare_versions
from tests.loopback_http import LoopbackServer


@pytest.fixture
def server():
    with LoopbackServer() as running:
        yield running


def pack_dir(tmp_path: Path, version: str, name: str = "src") -> Path:
    """A copy of the shipped pack with another version."""
    root = tmp_path / name / "audit-agent-rules"
    shutil.copytree(data_dir("rules"), root)
    text = (root / "pack.yaml").read_text()
    (root / "pack.yaml").write_text(text.replace('version: "2026.11.0"', f'version: "{version}"'))
    assert f'"{version}"' in (root / "pack.yaml").read_text()
    return root


def targz(root: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(root, arcname=root.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def serve(server: LoopbackServer, name: str, data: bytes) -> tuple[str, str]:
    server.behaviour.files[f"/{name}"] = data
    return f"{server.url}/{name}", hashlib.sha256(data).hexdigest()


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".new-" in p.name)


def installed_version(rules: Path) -> str:
    return next(line for line in (rules / "pack.yaml").read_text().splitlines() if line.startswith("version"))


def test_good_pack_installs_atomically_and_keeps_the_previous(agent, server, tmp_path):
    rules = tmp_path / "var" / "rules"
    url, digest = serve(server, "p1.tar.gz", targz(pack_dir(tmp_path, "2099.1.0", "a")))
    result = agent("rules", "update", "--url", url, "--sha256", digest, "--rules-dir", str(rules))
    assert result.returncode == 0, result.stderr
    assert "2099.1.0" in result.stdout
    assert "2099.1.0" in installed_version(rules) and (rules / "yara").is_dir()
    url, digest = serve(server, "p2.tar.gz", targz(pack_dir(tmp_path, "2099.2.0", "b")))
    assert agent("rules", "update", "--url", url, "--sha256", digest, "--rules-dir", str(rules)).returncode == 0
    assert "2099.2.0" in installed_version(rules)
    assert "2099.1.0" in installed_version(rules.with_name("rules.previous"))
    assert leftovers(rules.parent) == []
    listing = agent("rules", "list", env={"AUDIT_AGENT_RULES_DIR": str(rules)})
    assert listing.stdout.startswith("audit-agent-default 2099.2.0"), "scan and list use the installed pack"


def install_ok(agent, server, tmp_path, rules: Path) -> None:
    url, digest = serve(server, "good.tar.gz", targz(pack_dir(tmp_path, "2099.1.0", "good")))
    assert agent("rules", "update", "--url", url, "--sha256", digest, "--rules-dir", str(rules)).returncode == 0


def refused(agent, rules: Path, url: str, digest: str, message: str) -> None:
    before = {p.name: p.read_bytes() for p in rules.glob("*.yaml")}
    result = agent("rules", "update", "--url", url, "--sha256", digest, "--rules-dir", str(rules))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert {p.name: p.read_bytes() for p in rules.glob("*.yaml")} == before, "the installed pack is intact"
    assert leftovers(rules.parent) == []


def test_wrong_hash_is_refused(agent, server, tmp_path):
    rules = tmp_path / "rules"
    install_ok(agent, server, tmp_path, rules)
    url, _ = serve(server, "new.tar.gz", targz(pack_dir(tmp_path, "2099.5.0", "new")))
    refused(agent, rules, url, "0" * 64, "SHA-256 mismatch")


@pytest.mark.parametrize("version", ["2099.1.0", "2099.0.9", "2026.1.0"])
def test_older_or_equal_version_is_refused(agent, server, tmp_path, version):
    rules = tmp_path / "rules"
    install_ok(agent, server, tmp_path, rules)
    url, digest = serve(server, "old.tar.gz", targz(pack_dir(tmp_path, version, "old")))
    refused(agent, rules, url, digest, "is not newer than the installed")


def test_older_than_the_shipped_pack_is_refused_on_a_fresh_host(agent, server, tmp_path):
    rules = tmp_path / "rules"
    url, digest = serve(server, "old.tar.gz", targz(pack_dir(tmp_path, "2020.1.0", "old")))
    result = agent("rules", "update", "--url", url, "--sha256", digest, "--rules-dir", str(rules))
    assert result.returncode == 2 and "not newer" in result.stderr
    assert not rules.exists() and leftovers(tmp_path) == []


def test_broken_yaml_is_refused_with_file_and_line(agent, server, tmp_path):
    rules = tmp_path / "rules"
    install_ok(agent, server, tmp_path, rules)
    root = pack_dir(tmp_path, "2099.3.0", "broken")
    (root / "miners.yaml").write_text("rules:\n  - id: AA-X-001\n    title: [unclosed\n")
    url, digest = serve(server, "broken.tar.gz", targz(root))
    refused(agent, rules, url, digest, "miners.yaml:")


def test_pack_whose_examples_fail_is_refused(agent, server, tmp_path):
    rules = tmp_path / "rules"
    install_ok(agent, server, tmp_path, rules)
    root = pack_dir(tmp_path, "2099.3.0", "examples")
    text = (root / "miners.yaml").read_text()
    (root / "miners.yaml").write_text(text.replace("        - xmrig\n", "        - xmrig-renamed-away\n", 1))
    url, digest = serve(server, "ex.tar.gz", targz(root))
    refused(agent, rules, url, digest, "example")


def test_unsafe_archive_member_is_refused(agent, server, tmp_path):
    rules = tmp_path / "rules"
    install_ok(agent, server, tmp_path, rules)
    url, digest = serve(server, "evil.tar.gz", targz(pack_dir(tmp_path, "2099.4.0", "evil"), {"../evil.yaml": b"x"}))
    refused(agent, rules, url, digest, "unsafe path")
    assert not (rules.parent / "evil.yaml").exists()


def test_a_single_yaml_file_or_a_missing_url_is_refused(agent, server, tmp_path):
    rules = tmp_path / "rules"
    install_ok(agent, server, tmp_path, rules)
    url, digest = serve(server, "one.yaml", b"name: x\nversion: '2099.9.0'\n")
    refused(agent, rules, url, digest, "not a .tar.gz")
    refused(agent, rules, f"{server.url}/missing.tar.gz", "a" * 64, "HTTP 404")


def test_versions_compare_numerically():
    assert compare_versions("2026.12.0", "2026.9.0") == 1
    assert compare_versions("2026.11", "2026.11.0") == 0
    assert compare_versions("2026.11.0", "2026.11.0.1") == -1
