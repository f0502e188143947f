"""The YAML config: thresholds, allowlist and profile validated with file:line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit_agent.model import Severity
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
    # the line of the bad key, not of the mapping it is in
    ("profile: {institution: U}\nthresholds:\n  min_cpu_percent: 90\n  cpu_busy_fraction: 1.2\n", 4,
     "cpu_busy_fraction is a fraction between 0 and 1"),
    ("thresholds:\n  paused_fraction: 7\n", 2, "paused_fraction is a fraction between 0 and 1"),
    ("thresholds:\n  gpu_busy_percent: 101\n", 2, "gpu_busy_percent is a percentage between 0 and 100"),
    ("thresholds:\n  stratum_count_loopback: 2\n", 2, "is 1 (on) or 0 (off)"),
    ("thresholds:\n  min_cpu_percent: -5\n", 2, "non-negative number, not -5"),
    ("thresholds:\n  min_cpu_percent: '90'\n", 2, "non-negative number, not '90'"),
    ("thresholds:\n  min_cpu_percent: .nan\n", 2, "non-negative number"),
    ("thresholds:\n  min_cpu_percent: .inf\n", 2, "non-negative number"),
    ("thresholds:\n  cpu_busy_fraction: true\n", 2, "non-negative number, not True"),
    ("thresholds: [1, 2]\n", 1, "thresholds must be a mapping"),
    ("# comment\n\nfail_on: no\n", 3, "fail_on must be one of info, low, medium, high, critical, never"),
    ("fail_on: 3\n", 1, "fail_on must be one of"),
    ("research_severity: low\n", 1, "research_severity must be medium or high"),
    ("profile:\n  purpose: 2026-02-30\n", 2, "'2026-02-30' is not a real date"),
    ("profile:\n  purpose: 2026-13-01\n", 2, "'2026-13-01' is not a real date"),
    ("profile:\n  purpose: [a, b]\n", 2, "profile purpose must be text"),
    ("allowlist: {reason: r}\n", 1, "allowlist must be a list"),
    ("allowlist:\n  - reason: r\n    host: '*'\n", 2, "would allow every finding (host '*' matches everything)"),
    ("allowlist:\n  - reason: r\n    host: cn-117\n", 2, "would allow every finding (a host narrows only where"),
    ("allowlist:\n  - reason: r\n    cmdline: '.*'\n", 2, "cmdline '.*' matches everything"),
    ("allowlist:\n  - reason: r\n    cmdline: '^.*$'\n", 2, "cmdline '^.*$' matches everything"),
    ("allowlist:\n  - reason: r\n    cmdline: '(.*)'\n", 2, "cmdline '(.*)' matches everything"),
    ("allowlist:\n  - reason: r\n    cmdline: 'x*'\n    host: 'cn-*'\n", 2, "matches everything"),
    ("allowlist:\n  - reason: r\n    exe: '*'\n", 2, "exe '*' matches everything"),
    ("allowlist:\n  - reason: r\n    exe: '/*'\n    cmdline: '.+'\n", 2, "exe '/*' matches everything"),
    ("allowlist:\n  - reason: r\n    cmdline: '.*'\n    allow_all: yes please\n", 4, "allow_all must be true or false"),
    ("allowlist:\n  - reason: r\n    user: 7\n", 3, "allowlist user must be a string"),
    ("accept_unreadable:\n  - name: systemd\n", 2, "needs a reason"),
    ("accept_unreadable:\n  - reason: sandboxed\n", 2, "names the process by exe (path) or name"),
    ("accept_unreadable:\n  - {reason: r, exe: '*'}\n", 2, "matches every program"),
    ("accept_unreadable:\n  - {reason: r, pid: 1}\n", 2, "unknown accept_unreadable key(s) pid"),
    ("accept_unreadable:\n  - systemd\n", 1, "each accept_unreadable entry must be a mapping"),
    ("# c\nallowlist:\n  - [a]\n", 2, "each allowlist entry must be a mapping"),
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


def test_narrow_entries_and_allow_all_load(tmp_path):
    (tmp_path / "c.yaml").write_text("""
allowlist:
  - {reason: benchmark, cmdline: '^/opt/bench/run '}
  - {reason: node burn-in, exe: /opt/gpu-burn/gpu_burn, host: 'cn-*'}
  - {reason: the whole lab host is a filed mining testbed, host: lab-07, allow_all: true}
  - {reason: everything, allow_all: true}
  - {reason: every command line, cmdline: '.*', allow_all: true}
accept_unreadable:
  - {exe: /usr/lib/systemd/systemd, reason: PID 1 under the container's LSM profile}
  - {name: containerd-shim, reason: runtime shims are audited on the node}
""")
    policy = load_policy(tmp_path / "c.yaml")
    assert [e.allow_all for e in policy.allowlist] == [False, False, True, True, True]
    assert [(e.exe, e.name) for e in policy.accept_unreadable] == [("/usr/lib/systemd/systemd", ""),
                                                                   ("", "containerd-shim")]
    assert policy.accept_unreadable[0].origin == f"{tmp_path / 'c.yaml'}:9"


def test_fail_on_takes_the_values_of_the_command_line():
    from audit_agent.cli import SEVERITIES
    from audit_agent.policy import FAIL_ON_VALUES
    assert set(FAIL_ON_VALUES) == set(SEVERITIES)


@pytest.mark.parametrize("value", ["never", "info", "critical"])
def test_fail_on_in_the_file(tmp_path, value):
    (tmp_path / "c.yaml").write_text(f"fail_on: {value}\n")
    policy = load_policy(tmp_path / "c.yaml")
    assert policy.fail_on_set and policy.fail_on_or(Severity.HIGH) == (None if value == "never" else Severity(value))
    assert load_policy(None).fail_on_or(Severity.HIGH) == Severity.HIGH


# ---------------------------------------------------------------- through the real CLI

DEMO_SNAPSHOT = Path(__file__).resolve().parents[1] / "seeds" / "login-02.snapshot.json"   # 3 counted findings


def scan_with(agent, tmp_path, config: str, *extra: str):
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    result = agent("scan", "--snapshot", str(DEMO_SNAPSHOT), "--config", str(path), "--json", str(out / "r.json"),
                   "--html", str(out / "r.html"), "--markdown", str(out / "r.md"), "-q", *extra)
    return result, sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize("config, line, message", [
    ("thresholds:\n  cpu_busy_fraction: 1.5\n", 2, "fraction between 0 and 1"),
    ("thresholds:\n  min_cpu_percent: -1\n", 2, "non-negative number"),
    ("thresholds:\n  gpu_busy_percent: high\n", 2, "non-negative number"),
    ("profile:\n  purpose: 2026-02-30\n", 2, "not a real date"),
    ("fail_on: off\n", 1, "fail_on must be one of"),
    ("allowlist:\n  - reason: r\n    host: '*'\n", 2, "would allow every finding"),
    ("allowlist:\n  - reason: r\n    cmdline: '.*'\n", 2, "would allow every finding"),
    ("allowlist:\n  - reason: anything at all\n", 2, "at least one of exe, user, cmdline, host"),
    ("accept_unreadable:\n  - name: systemd\n", 2, "needs a reason"),
])
def test_bad_config_through_the_cli_is_one_line_exit_2_and_no_report(agent, tmp_path, config, line, message):
    result, written = scan_with(agent, tmp_path, config)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"audit-agent: error: {tmp_path / 'bad.yaml'}:{line}: ")
    assert message in result.stderr
    assert written == []


def test_fail_on_never_in_the_file_works_like_the_flag(agent, tmp_path):
    default, _ = scan_with(agent, tmp_path, "profile: {institution: U}\n")
    assert default.returncode == 1                      # the demo host has counted high findings
    flag, _ = scan_with(agent, tmp_path, "profile: {institution: U}\n", "--fail-on", "never")
    from_file, written = scan_with(agent, tmp_path, "fail_on: never\n")
    assert flag.returncode == from_file.returncode == 0, from_file.stderr
    assert json.loads((tmp_path / "out" / "r.json").read_text())["verdict"] == "non_compliant"   # still said
    assert written == ["r.html", "r.json", "r.md"]
    overridden, _ = scan_with(agent, tmp_path, "fail_on: never\n", "--fail-on", "high")   # the flag wins
    assert overridden.returncode == 1


def test_allow_all_lets_the_broad_entry_through(agent, tmp_path):
    result, _ = scan_with(agent, tmp_path, "allowlist:\n  - reason: Mining testbed of course CS-7001, whole host\n"
                                           "    host: login-*\n    allow_all: true\n")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "r.json").read_text())
    assert report["findings"] and {f["status"] for f in report["findings"]} <= {"allowlisted", "registered"}
    assert report["verdict"] == "compliant"
    for name in ("r.html", "r.md"):        # every allowlisted finding is listed with its reason
        text = (tmp_path / "out" / name).read_text()
        assert text.count("CS-7001") >= len(report["findings"])
