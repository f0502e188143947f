"""Rule packs: broken packs fail with file:line, the default pack's examples all pass, FP traps stay quiet."""
from __future__ import annotations

import textwrap

import pytest

from audit_agent.rules.compiler import CompiledRules
from audit_agent.rules.examples import check_examples
from audit_agent.rules.loader import load_pack
from audit_agent.yamlfile import ConfigError

GOOD_RULE = """\
rules:
  - id: AA-TEST-001
    title: Test names
    category: miner
    severity: high
    confidence: 0.8
    reason: "{field} {value} is {matched}"
    reference: https://example.invalid/
    match:
      kind: names
      values: [xmrig]
    examples:
      match: [xmrig]
      no_match: [python3]
"""


def write_pack(tmp_path, text: str):
    (tmp_path / "pack.yaml").write_text("name: test-pack\nversion: '1'\n")
    (tmp_path / "r.yaml").write_text(textwrap.dedent(text))
    return tmp_path


def test_default_pack_loads_and_every_example_passes():
    pack = load_pack()
    assert pack.name == "audit-agent-default"
    assert check_examples(pack) == []
    assert len(pack.sha256) == 64


def test_default_pack_has_the_breadth_the_audit_needs():
    rules = CompiledRules(load_pack())
    assert len(rules.names) >= 40
    for name in ("xmrig", "xmr-stak", "minerd", "cpuminer-opt", "ccminer", "ethminer", "t-rex", "lolminer",
                 "nbminer", "gminer", "phoenixminer", "teamredminer", "srbminer-multi", "nanominer", "bzminer",
                 "rigel", "xmrig-proxy"):
        assert name in rules.names, name
    assert len(rules.domain_suffix) + len(rules.domain_exact) >= 100
    assert {3333, 4444, 5555, 14444} <= set(rules.pool_ports)
    coins = {coin.lower() for _, coin, _ in rules.wallets}
    for coin in ("monero", "bitcoin", "ethereum", "ravencoin", "litecoin"):
        assert any(coin in c for c in coins), coin


def test_good_pack_loads(tmp_path):
    pack = load_pack(write_pack(tmp_path, GOOD_RULE))
    assert [r.id for r in pack.rules] == ["AA-TEST-001"]
    assert pack.name == "test-pack"


@pytest.mark.parametrize("broken, line, message", [
    ("rules:\n  - id: AA-X-1\n    title: [unclosed\n", 4, "invalid YAML"),
    (GOOD_RULE.replace("    severity: high\n", "    severity: urgent\n"), 2, "severity 'urgent'"),
    (GOOD_RULE.replace("    confidence: 0.8\n", "    confidence: 3\n"), 2, "confidence"),
    (GOOD_RULE.replace("      kind: names\n      values: [xmrig]\n", "      kind: cmdline\n      patterns: ['(unclosed']\n"),
     10, "bad regex"),
    (GOOD_RULE.replace("    reference: https://example.invalid/\n", ""), 2, "missing reference"),
    (GOOD_RULE.replace("      no_match: [python3]\n", ""), 13, "examples.no_match"),
    (GOOD_RULE + GOOD_RULE.replace("rules:\n", ""), 15, "duplicate rule id"),
    (GOOD_RULE.replace("      kind: names\n      values: [xmrig]\n",
                       "      kind: domains\n      entries:\n        - {domain: ddns.net, type: dyndns, status: active, match: suffix}\n"),
     12, "dyndns entry must use match: exact"),
    ("rules: {}\n", 1, "'rules' must be a list"),
])
def test_broken_pack_names_file_and_line(tmp_path, broken, line, message):
    write_pack(tmp_path, broken)
    with pytest.raises(ConfigError) as error:
        load_pack(tmp_path)
    text = str(error.value)
    assert f"r.yaml:{line}:" in text
    assert message in text
    assert "\n" not in text


def test_failing_example_is_reported_with_location(tmp_path):
    pack = load_pack(write_pack(tmp_path, GOOD_RULE.replace("no_match: [python3]", "no_match: [xmrig.exe]")))
    problems = check_examples(pack)
    assert len(problems) == 1 and "r.yaml:2: AA-TEST-001: example should not match" in problems[0]


def test_cli_rejects_broken_pack_with_exit_2(agent, tmp_path):
    write_pack(tmp_path, GOOD_RULE.replace("kind: names", "kind: telepathy"))
    result = agent("scan", "--window", "0", "--rules", str(tmp_path), "--quiet")
    assert result.returncode == 2
    assert "r.yaml:10:" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = agent("rules", "validate", str(tmp_path))
    assert result.returncode == 2


def test_domains_match_by_suffix_but_dynamic_dns_parents_never():
    rules = CompiledRules(load_pack())
    assert rules.lookup_domain("gulf.moneroocean.stream")
    assert rules.lookup_domain("xmr-eu1.nanopool.org")
    for benign in ("ddns.net", "myhome.ddns.net", "dyndns.org", "github.com", "binance.com", "cloudflare.com",
                   "pypi.org", "download.pytorch.org"):
        assert rules.lookup_domain(benign) is None, benign
