"""Families (rules/families/*.yaml): each compiles into rules whose examples pass; broken files fail with file:line."""
from __future__ import annotations

import shutil
import textwrap

import pytest

from audit_agent.evaluate import evaluate
from audit_agent.i18n import load_rule_texts
from audit_agent.model import ProcessInfo, Snapshot
from audit_agent.rules.compiler import CompiledRules
from audit_agent.rules.examples import check_examples
from audit_agent.rules.family_match import config_facts
from audit_agent.rules.loader import default_rules_dir, load_pack
from audit_agent.yamlfile import ConfigError

REQUIRED = {"CHIA", "FILECOIN", "SPACEMESH", "SUBSPACE", "STORJ", "SWARM", "ARWEAVE", "SIA", "QUBIC", "ALEO", "DYNEX",
            "XELIS", "IRONFISH", "TARI", "SALVIUM", "ZANO", "NEXA", "KARLSEN", "PYRIN", "SPECTRE", "DERO", "ZEPHYR",
            "VERUS", "ALEPHIUM", "NEURAI", "KASPA", "IONET", "GOLEM", "NOSANA"}

MINIMAL = """\
family:
  id: TOYCOIN
  name: {en: Toycoin, zh-CN: 玩具币}
  category: miner
  coin: TOY
  reference: https://example.invalid/toycoin
  software:
    names: [toyminer]
  ports: {listen: [4242]}
  examples:
    names: {match: [toyminer], no_match: [toy]}
    ports: {match: ["4242"], no_match: ["4243"]}
"""


def pack_with_family(tmp_path, text: str):
    root = tmp_path / "pack"
    shutil.copytree(default_rules_dir(), root, ignore=shutil.ignore_patterns("families"))
    (root / "families").mkdir()
    (root / "families" / "toy.yaml").write_text(textwrap.dedent(text))
    return root


def test_the_default_families_load_and_their_examples_pass():
    pack = load_pack()
    assert {f.id for f in pack.families} >= REQUIRED
    assert check_examples(pack) == []
    categories = {f.category for f in pack.families}
    assert categories == {"miner", "storage_farming", "resource_sharing"}
    storage = {f.id for f in pack.families if f.category == "storage_farming"}
    assert storage >= {"CHIA", "FILECOIN", "SPACEMESH", "SUBSPACE", "STORJ", "SWARM", "ARWEAVE", "SIA"}
    assert all(any(r.id.startswith(f"AA-{f.id}-") for r in pack.rules) for f in pack.families)
    assert any(name.startswith("families/") for name in pack.files)


def test_family_rules_have_texts_in_both_languages():
    ids = {r.id for r in load_pack().rules if r.kind.startswith("family_") or r.id.endswith(("-NAME", "-CMD"))}
    english, chinese = load_rule_texts("en"), load_rule_texts("zh-CN")
    for rule_id in ids:
        assert english[rule_id]["meaning"].endswith("."), rule_id
        assert "奇亚" in chinese["AA-CHIA-NAME"]["title"] or "Chia" in chinese["AA-CHIA-NAME"]["title"]
        assert chinese[rule_id]["meaning"].endswith("。") and chinese[rule_id]["meaning"] != english[rule_id]["meaning"]


def test_a_new_token_is_a_data_change(tmp_path):
    pack = load_pack(pack_with_family(tmp_path, MINIMAL))
    assert [r.id for r in pack.rules if r.id.startswith("AA-TOYCOIN")] == ["AA-TOYCOIN-NAME", "AA-TOYCOIN-PORT"]
    rules = CompiledRules(pack)
    assert rules.names["toyminer"].id == "AA-TOYCOIN-NAME"
    assert 4242 in rules.families.listen_ports
    report = evaluate(Snapshot(processes=[ProcessInfo(pid=7, name="toyminer", cmdline=["./toyminer"])]), rules, now=0)
    [finding] = report.findings
    assert finding.rule_ids == ["AA-TOYCOIN-NAME"] and finding.category == "miner"


@pytest.mark.parametrize("change, message", [
    (("id: TOYCOIN", "id: toy"), "toy.yaml:2: family id 'toy' must be"),
    (("category: miner", "category: farming"), "category must be one of"),
    (("  reference: https://example.invalid/toycoin\n", ""), "reference (a public source) is required"),
    (("    names: {match: [toyminer], no_match: [toy]}\n", ""), "examples.names needs match and no_match"),
    (("{listen: [4242]}", "{listen: [70000]}"), "70000 is not a port number"),
    (("names: [toyminer]", "cmdline: ['(unclosed']"), "bad regex"),
    (("  examples:", "  artefacts: [{kind: plot, name: 'x.plot'}]\n  examples:"), "needs min_size"),
    (("  examples:", "  configs: [{paths: [relative.json], format: json, identify: [a]}]\n  examples:"),
     "must start with /, ~"),
    (("  examples:", "  surprise: 1\n  examples:"), "unknown family key(s): surprise"),
])
def test_a_broken_family_fails_with_file_and_line(tmp_path, change, message):
    with pytest.raises(ConfigError, match="toy.yaml:") as failure:
        load_pack(pack_with_family(tmp_path, MINIMAL.replace(*change)))
    assert message in str(failure.value)


def test_a_failing_family_example_is_reported(tmp_path):
    pack = load_pack(pack_with_family(tmp_path, MINIMAL.replace("no_match: [toy]", "no_match: [toyminer]")))
    problems = check_examples(pack)
    assert len(problems) == 1 and "AA-TOYCOIN-NAME" in problems[0] and "toy.yaml" in problems[0]


def test_duplicate_family_ids_are_refused(tmp_path):
    root = pack_with_family(tmp_path, MINIMAL)
    (root / "families" / "toy2.yaml").write_text(textwrap.dedent(MINIMAL))
    with pytest.raises(ConfigError, match="duplicate family id TOYCOIN"):
        load_pack(root)


def test_rules_list_shows_the_families(agent):
    result = agent("rules", "list")
    assert result.returncode == 0, result.stderr
    assert "families (rules/families/*.yaml)" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("CHIA "))
    assert "storage_farming" in line and "artefacts" in line and "configs" in line
    assert any(line.startswith("IONET ") and "resource_sharing" in line for line in result.stdout.splitlines())


def test_config_facts_keep_logins_and_dirs_but_never_tokens():
    pack = load_pack()
    qubic = next(f for f in pack.families if f.id == "QUBIC").configs[0]
    facts = config_facts(qubic, '{"ClientSettings": {"accessToken": "eyJhbGciOiJIUzUxMiJ9.secret.sig", '
                                '"amountOfThreads": 8, "alias": "rig7", "poolAddress": "wss://wps.qubic.li/ws"}}')
    assert facts is not None and "accesstoken" in facts.keys
    assert "rig7" in facts.logins and "wss://wps.qubic.li/ws" in facts.urls
    assert not any("eyJ" in value for value in facts.logins + facts.urls + facts.dirs)
    chia = next(f for f in pack.families if f.id == "CHIA").configs[0]
    facts = config_facts(chia, "selected_network: testnet11\nfarmer:\n  xch_target_address: txch1q\n"
                               "harvester:\n  plot_directories: [/mnt/a, /mnt/b]\n")
    assert facts is not None and facts.dirs == ["/mnt/a", "/mnt/b"] and facts.network == "testnet11"
    assert config_facts(chia, "{{{{ not yaml") is None
    assert config_facts(chia, "- a list\n- not a mapping\n") is None
