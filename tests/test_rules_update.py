"""Signed rule pack updates: from an HTTP server on 127.0.0.1 or a local file (air-gapped), verified with a
pinned ed25519 key, refused when unsigned, tampered, older, hollowed out or jumping too far; rollback."""
from __future__ import annotations

import base64
import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from audit_agent.paths import data_dir
from audit_agent.rules.loader import load_pack
from audit_agent.rules.signing import generate_keys, read_secret_key, sign
from audit_agent.rules.update import build_archive, compare_versions, rollback, update_pack
from audit_agent.yamlfile import ConfigError
from tests.loopback_http import LoopbackServer

SHIPPED = load_pack().version          # the shipped pack, whatever its version now


@pytest.fixture
def server():
    with LoopbackServer() as running:
        yield running


@pytest.fixture
def keys(tmp_path) -> tuple[Path, Path]:
    """(secret, public) of the institution's signing key."""
    (tmp_path / "keys").mkdir()
    return generate_keys(tmp_path / "keys" / "institution")


def pack_dir(tmp_path: Path, version: str, name: str = "src") -> Path:
    """A copy of the shipped pack with another version."""
    root = tmp_path / name / "audit-agent-rules"
    shutil.copytree(data_dir("rules"), root)
    text = (root / "pack.yaml").read_text()
    (root / "pack.yaml").write_text(text.replace(f'version: "{SHIPPED}"', f'version: "{version}"'))
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


def publish(server: LoopbackServer, name: str, data: bytes, secret: Path | None) -> str:
    """Serve the archive and (when a key is given) its signature; return the archive's URL."""
    server.behaviour.files[f"/{name}"] = data
    if secret is not None:
        server.behaviour.files[f"/{name}.sig"] = sign(data, read_secret_key(secret)).encode()
    return f"{server.url}/{name}"


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".new-" in p.name or ".rollback-" in p.name)


def installed_version(rules: Path) -> str:
    return next(line for line in (rules / "pack.yaml").read_text().splitlines() if line.startswith("version"))


def install(server, tmp_path, keys, rules: Path, version: str, **options) -> str:
    name = f"v{version}-{len(list(tmp_path.glob('v*')))}"
    url = publish(server, f"{name}.tar.gz", targz(pack_dir(tmp_path, version, name)), keys[0])
    return update_pack(url, key=keys[1], rules_dir=rules, **options)


def refused(rules: Path, message: str, source: str, keys, **options) -> None:
    before = {p.name: p.read_bytes() for p in rules.glob("*.yaml")} if rules.exists() else None
    with pytest.raises(ConfigError) as error:
        update_pack(source, key=keys[1], rules_dir=rules, **options)
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)
    after = {p.name: p.read_bytes() for p in rules.glob("*.yaml")} if rules.exists() else None
    assert after == before, "the installed pack is intact"
    assert leftovers(rules.parent) == []


def test_signed_pack_installs_keeps_the_previous_and_the_same_pack_again_is_up_to_date(agent, server, tmp_path, keys):
    rules = tmp_path / "var" / "rules"
    message = install(server, tmp_path, keys, rules, "2026.12.0")
    assert "installed rule pack audit-agent-default 2026.12.0" in message
    assert "2026.12.0" in installed_version(rules) and (rules / "yara" / "miners.yar").is_file()
    install(server, tmp_path, keys, rules, "2027.1.0")
    assert "2027.1.0" in installed_version(rules)
    assert "2026.12.0" in installed_version(rules.with_name("rules.previous"))
    assert "up to date" in install(server, tmp_path, keys, rules, "2027.1.0")    # a daily timer: exit 0
    assert leftovers(rules.parent) == []
    listing = agent("rules", "list", env={"AUDIT_AGENT_RULES_DIR": str(rules)})
    assert listing.stdout.startswith("audit-agent-default 2027.1.0"), "scan and list use the installed pack"


def test_unsigned_tampered_or_foreign_signed_packs_are_refused(server, tmp_path, keys):
    rules = tmp_path / "rules"
    install(server, tmp_path, keys, rules, "2026.12.0")
    data = targz(pack_dir(tmp_path, "2027.2.0", "new"))
    unsigned = publish(server, "unsigned.tar.gz", data, None)
    refused(rules, "HTTP 404", unsigned, keys)
    tampered = publish(server, "tampered.tar.gz", data, keys[0])
    server.behaviour.files["/tampered.tar.gz"] = targz(pack_dir(tmp_path, "2027.2.0", "other"), {"x.txt": b"x"})
    refused(rules, "BAD SIGNATURE", tampered, keys)
    (tmp_path / "mallory").mkdir()
    mallory, _ = generate_keys(tmp_path / "mallory" / "key")
    foreign = publish(server, "foreign.tar.gz", data, mallory)
    refused(rules, "not signed by the pinned key (signed by key", foreign, keys)
    server.behaviour.files["/garbage.tar.gz.sig"] = b"hello"
    garbage = publish(server, "garbage.tar.gz", data, None)
    refused(rules, "not an audit-agent pack signature", garbage, keys)
    good = publish(server, "good.tar.gz", data, keys[0])
    refused(rules, "SHA-256 mismatch", good, keys, sha256="0" * 64)
    with pytest.raises(ConfigError, match="cannot read public key"):
        update_pack(good, key=tmp_path / "no-such.pub", rules_dir=rules)


@pytest.mark.parametrize("version", ["2026.12.0", "2026.11.9", "2026.1.0"])
def test_older_or_same_version_with_other_content_is_refused(server, tmp_path, keys, version):
    rules = tmp_path / "rules"
    install(server, tmp_path, keys, rules, "2026.12.0")
    root = pack_dir(tmp_path, version, "old")
    (root / "README.md").write_text("changed\n")
    (root / "pools.yaml").write_text((root / "pools.yaml").read_text() + "\n# changed\n")
    refused(rules, "is not newer than the installed", publish(server, "old.tar.gz", targz(root), keys[0]), keys)


def test_older_than_the_shipped_pack_is_refused_on_a_fresh_host(server, tmp_path, keys):
    rules = tmp_path / "rules"
    url = publish(server, "old.tar.gz", targz(pack_dir(tmp_path, "2020.1.0", "old")), keys[0])
    with pytest.raises(ConfigError, match="not newer"):
        update_pack(url, key=keys[1], rules_dir=rules)
    assert not rules.exists() and leftovers(tmp_path) == []


def test_a_hollowed_out_pack_or_a_wild_version_jump_needs_force(server, tmp_path, keys):
    rules = tmp_path / "rules"
    install(server, tmp_path, keys, rules, "2026.12.0")
    root = pack_dir(tmp_path, "2027.1.0", "small")
    for name in ("miners.yaml", "cmdline.yaml", "pools.yaml"):
        (root / name).unlink()
    shutil.rmtree(root / "families", ignore_errors=True)       # the coin and storage families' rules too
    url = publish(server, "small.tar.gz", targz(root), keys[0])
    refused(rules, "fewer than the 40 the installed pack requires", url, keys)
    far = publish(server, "far.tar.gz", targz(pack_dir(tmp_path, "2099.1.0", "far")), keys[0])
    refused(rules, "jumps too far from 2026.12.0 (more than 1)", far, keys)
    assert "2026.12.0" in installed_version(rules)
    assert "2027.1.0" in update_pack(url, key=keys[1], rules_dir=rules, force=True)
    assert "2099.1.0" in update_pack(far, key=keys[1], rules_dir=rules, force=True)


def test_rollback_restores_the_previous_pack_and_holds_the_bad_one_back(server, tmp_path, keys):
    rules = tmp_path / "rules"
    with pytest.raises(ConfigError, match="no previous rule pack"):
        rollback(rules)
    install(server, tmp_path, keys, rules, "2026.12.0")
    install(server, tmp_path, keys, rules, "2027.1.0")
    message = rollback(rules)
    assert "rolled back to rule pack audit-agent-default 2026.12.0" in message and "held back" in message
    assert "2026.12.0" in installed_version(rules)
    assert "2027.1.0" in installed_version(rules.with_name("rules.previous"))
    assert leftovers(rules.parent) == []
    # The unattended timer offers the bad pack again: refused until a newer one (or --force).
    url = publish(server, "bad-again.tar.gz", targz(pack_dir(tmp_path, "2027.1.0", "again")), keys[0])
    refused(rules, "which was rolled back", url, keys)
    assert "2027.1.1" in install(server, tmp_path, keys, rules, "2027.1.1")
    assert not rules.with_name("rules.held-back").exists()


def test_broken_pack_contents_are_refused(server, tmp_path, keys):
    rules = tmp_path / "rules"
    install(server, tmp_path, keys, rules, "2026.12.0")
    broken = pack_dir(tmp_path, "2026.12.1", "broken")
    (broken / "miners.yaml").write_text("rules:\n  - id: AA-X-001\n    title: [unclosed\n")
    refused(rules, "miners.yaml:", publish(server, "broken.tar.gz", targz(broken), keys[0]), keys)
    examples = pack_dir(tmp_path, "2026.12.2", "examples")
    text = (examples / "miners.yaml").read_text()
    (examples / "miners.yaml").write_text(text.replace("        - xmrig\n", "        - xmrig-renamed-away\n", 1))
    refused(rules, "example", publish(server, "ex.tar.gz", targz(examples), keys[0]), keys)
    yara = pack_dir(tmp_path, "2026.12.3", "yara")
    (yara / "yara" / "bad.yar").write_text("rule x {\n condition:\n  $nope\n}\n")
    refused(rules, "bad.yar:4: YARA: undefined string", publish(server, "y.tar.gz", targz(yara), keys[0]), keys)
    evil = targz(pack_dir(tmp_path, "2026.12.4", "evil"), {"../evil.yaml": b"x"})
    refused(rules, "unsafe path", publish(server, "evil.tar.gz", evil, keys[0]), keys)
    assert not (rules.parent / "evil.yaml").exists()
    refused(rules, "not a .tar.gz", publish(server, "one.yaml", b"name: x\nversion: '2099.9.0'\n", keys[0]), keys)


def test_operator_flow_keygen_sign_and_air_gapped_update_from_files(agent, tmp_path):
    """What an institution runs: keygen once, sign each release, copy archive + .sig to the cluster."""
    made = agent("rules", "keygen", "--out", str(tmp_path / "inst"), "--comment", "Example University IT")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "inst.key").stat().st_mode & 0o777 == 0o600
    assert agent("rules", "keygen", "--out", str(tmp_path / "inst")).returncode == 2      # never overwrites
    root = pack_dir(tmp_path, "2026.12.0", "release")
    archive = tmp_path / "release.tar.gz"
    signed = agent("rules", "sign", str(root), "--key", str(tmp_path / "inst.key"), "-o", str(archive))
    assert signed.returncode == 0, signed.stderr
    assert archive.read_bytes() == build_archive(root), "the archive is reproducible"
    rules = tmp_path / "state" / "rules"
    update = ["rules", "update", str(archive), "--key", str(tmp_path / "inst.pub"), "--rules-dir", str(rules)]
    result = agent(*update)
    assert result.returncode == 0 and "2026.12.0" in result.stdout, result.stderr
    assert agent(*update).stdout.count("up to date") == 1
    tag, key_id, signature = Path(f"{archive}.sig").read_text().split()
    flipped = bytearray(base64.b64decode(signature))
    flipped[0] ^= 1
    Path(f"{archive}.sig").write_text(f"{tag} {key_id} {base64.b64encode(bytes(flipped)).decode()}\n")
    bad = agent(*update)
    assert bad.returncode == 2 and "BAD SIGNATURE" in bad.stderr and bad.stderr.count("\n") == 1
    assert agent("rules", "rollback", "--rules-dir", str(rules)).returncode == 2   # nothing to go back to
    validate = agent("rules", "validate", env={"AUDIT_AGENT_RULES_DIR": str(rules)})
    assert validate.returncode == 0 and "2026.12.0" in validate.stdout and "1 YARA file(s) compiled" in validate.stdout


def test_versions_compare_numerically():
    assert compare_versions("2026.12.0", "2026.9.0") == 1
    assert compare_versions("2026.11", "2026.11.0") == 0
    assert compare_versions("2026.11.0", "2026.11.0.1") == -1


def test_sha256_option_still_pins_one_archive(server, tmp_path, keys):
    rules = tmp_path / "rules"
    data = targz(pack_dir(tmp_path, "2026.12.0", "pinned"))
    url = publish(server, "pinned.tar.gz", data, keys[0])
    assert "2026.12.0" in update_pack(url, key=keys[1], rules_dir=rules, sha256=hashlib.sha256(data).hexdigest())
