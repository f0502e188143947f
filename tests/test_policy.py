"""The YAML config: thresholds, allowlist and profile validated with file:line errors."""
from __future__ import annotations

import pytest

from audit_agent.policy import load_policy
from audit_agent.yamlfile import ConfigError


def test_full_config_loads(tmp_path):
    (tmp_path / "c.yaml").write_text("""
fail_on: medium
profile: {institution: Example University, responsible: Zhang San}
filings: registry.yaml
thresholds: {gpu_busy_percent: 95, cpu_busy_fraction: 0.7}
allowlist:
  - {user: boinc, reason: volunteer computing approved}
""")
    policy = load_policy(tmp_path / "c.yaml")
    assert policy.fail_on.value == "medium"
    assert policy.thresholds.gpu_busy_percent == 95.0 and policy.thresholds.cpu_busy_fraction == 0.7
    assert policy.filings_path == str(tmp_path / "registry.yaml")
    assert policy.profile["institution"] == "Example University"
    assert policy.allowlist[0].user == "boinc"


@pytest.mark.parametrize("text, line, message", [
    ("allowlist:\n  - user: bob\n", 2, "needs a reason"),
    ("allowlist:\n  - reason: because\n", 2, "at least one of"),
    ("allowlist:\n  - {reason: r, cmdline: '(oops'}\n", 2, "bad cmdline regex"),
    ("thresholds:\n  gpu_busy_percent: lots\n", 2, "non-negative number"),
    ("thresholds:\n  warp_factor: 9\n", 2, "unknown threshold"),
    ("colour: blue\n", 1, "unknown key"),
    ("fail_on: sometimes\n", 1, "fail_on must be one of"),
    ("profile:\n  institution: [a\n", 3, "invalid YAML"),
])
def test_bad_config_names_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_policy(path)
    assert f"c.yaml:{line}:" in str(error.value) and message in str(error.value)


def test_missing_config_file_is_a_clean_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "nope.yaml")
