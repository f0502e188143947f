"""The active pack's YARA rules: compiled with the pack's signature strings, used from the pack that is
loaded (shipped, --rules DIR or updated), in its hash, and a broken file refused with file:line."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from audit_agent.collect import binaries
from audit_agent.pipeline import load_rules
from audit_agent.rules.loader import default_rules_dir, load_pack
from audit_agent.yamlfile import ConfigError

ELF = b"\x7fELF" + b"\x00" * 64
OWN_RULE = """rule Lab_Own_Marker
{
    strings:
        $a = "lab-specific-miner-marker-7f3a"
        $b = "second-marker-for-this-lab"
    condition:
        all of them
}
"""


def test_shipped_yara_rules_add_their_own_matches():
    compiled = load_rules()
    strings = compiled.signature_strings()
    assert "yara/miners.yar" in compiled.pack.yara_sources
    rules = binaries.load_yara_rules(strings, compiled.pack.yara_sources)
    assert rules is not None, "yara-python is a dependency and the shipped rules/yara/*.yar must compile"
    blob = ELF + b"\x00".join(s.encode() for s in strings[:12])
    found = binaries.yara_matches(rules, {"data": blob}, strings)
    assert set(strings[:12]) <= set(found)
    assert any(item.startswith("yara:") for item in found)
    clean = binaries.yara_matches(rules, {"data": ELF + b"\x00" * 4096 + b"GNU C Library"}, strings)
    assert clean == []


@pytest.fixture
def own_pack(tmp_path) -> Path:
    pack = tmp_path / "pack"
    shutil.copytree(default_rules_dir(), pack)
    return pack


def test_a_pack_dir_brings_its_own_yara_files_and_they_are_in_its_hash(own_pack):
    before = load_pack(own_pack)
    (own_pack / "yara" / "lab.yar").write_text(OWN_RULE)
    pack = load_pack(own_pack)
    assert "yara/lab.yar" in pack.files and "yara/lab.yar" in pack.yara_sources
    assert pack.sha256 != before.sha256
    rules = binaries.load_yara_rules([], pack.yara_sources)
    found = binaries.yara_matches(rules, {"data": ELF + b"lab-specific-miner-marker-7f3a second-marker-for-this-lab"}, [])
    assert found == ["yara:Lab_Own_Marker"]
    # The shipped copy is not used when the active pack has no YARA files of its own.
    shutil.rmtree(own_pack / "yara")
    bare = load_pack(own_pack)
    assert bare.yara_sources == {}
    xmrig = ELF + b"XMRig/%s donate.v2.xmrig.com --donate-level"
    assert not any(s.startswith("yara:") for s in binaries.yara_matches(
        binaries.load_yara_rules([], bare.yara_sources) or _never(), {"data": xmrig}, []))


def _never():
    import yara
    return yara.compile(source="rule never { condition: false }")


def test_a_yara_edit_changes_the_pack_hash(own_pack):
    before = load_pack(own_pack).sha256
    target = own_pack / "yara" / "miners.yar"
    target.write_text(target.read_text() + "\n// local note\n")
    assert load_pack(own_pack).sha256 != before


@pytest.mark.parametrize("text, line, message", [
    ("rule broken {\n  strings:\n    $a = \"x\"\n  condition:\n    $a and\n}\n", 6, "syntax error"),
    ("rule undefined {\n  condition:\n    $nothing\n}\n", 4, "undefined string"),      # YARA names the rule's last line
])
def test_a_broken_yara_file_is_an_error_with_file_and_line(own_pack, agent, text, line, message):
    bad = own_pack / "yara" / "zz-broken.yar"
    bad.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_pack(own_pack)
    assert str(error.value).startswith(f"{bad}:{line}: YARA: ")
    assert message in str(error.value)
    result = agent("rules", "validate", str(own_pack))
    assert result.returncode == 2 and f"{bad}:{line}: YARA:" in result.stderr and "Traceback" not in result.stderr
    scan = agent("scan", "--rules", str(own_pack), "--window", "0", "--quiet")
    assert scan.returncode == 2 and f"{bad}:{line}" in scan.stderr
