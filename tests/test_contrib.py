"""contrib/: systemd units verified by systemd-analyze, the cron example, the Ansible playbook run against localhost."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, agent_command

CONTRIB = REPO / "contrib"
INSTALLED = "/opt/audit-agent/bin/audit-agent"


def directives(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file, comments and continuation lines handled."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_service_has_the_expected_hardening_and_priorities():
    unit = directives(CONTRIB / "systemd" / "audit-agent.service")
    assert unit["Type"] == ["oneshot"]
    assert unit["Nice"] == ["19"] and unit["IOSchedulingClass"] == ["idle"]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert "/var/lib/audit-agent /var/log/audit-agent" in unit["ReadWritePaths"]
    for hiding in ("ProtectProc", "ProcSubset", "PrivateTmp", "PrivateNetwork"):
        assert hiding not in unit, f"{hiding} would hide what the audit must see"
    assert "--once" in unit["ExecStart"][0]
    timer = directives(CONTRIB / "systemd" / "audit-agent.timer")
    assert timer["RandomizedDelaySec"] and timer["OnCalendar"] and timer["Persistent"] == ["true"]


def test_rules_update_units_pin_the_key_and_are_locked_down():
    unit = directives(CONTRIB / "systemd" / "audit-agent-rules-update.service")
    command = unit["ExecStart"][0]
    assert unit["Type"] == ["oneshot"] and " rules update ${AUDIT_AGENT_RULES_URL} " in command
    assert "--key /etc/audit-agent/update-key.pub" in command and "--force" not in command
    assert unit["EnvironmentFile"] == ["/etc/audit-agent/rules-update.env"]
    assert unit["ProtectSystem"] == ["strict"] and unit["ReadWritePaths"] == ["/var/lib/audit-agent"]
    assert unit["ProtectHome"] == ["yes"] and unit["NoNewPrivileges"] == ["yes"]
    timer = directives(CONTRIB / "systemd" / "audit-agent-rules-update.timer")
    assert timer["RandomizedDelaySec"] and timer["OnCalendar"] and timer["Persistent"] == ["true"]


def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze is not installed")
    # ExecStart must name an existing executable for verify: point it at this checkout's agent.
    agent = agent_command()[0]
    names = ("audit-agent.service", "audit-agent.timer", "audit-agent-rules-update.service",
             "audit-agent-rules-update.timer")
    for name in names:
        text = (CONTRIB / "systemd" / name).read_text().replace(INSTALLED, agent)
        (tmp_path / name).write_text(text)
    result = subprocess.run([tool, "verify", *names], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    if result.returncode != 0 and re.search(r"Failed to (initialize|connect|create)|Permission denied|not booted", output):
        pytest.skip(f"systemd-analyze cannot run here: {output.strip().splitlines()[0]}")
    assert result.returncode == 0, output
    assert not re.search(r"Unknown (key|lvalue|section)|[Ii]nvalid|ignoring", output), output


def test_cron_example_is_a_valid_cron_d_line():
    lines = [line for line in (CONTRIB / "cron" / "audit-agent").read_text().splitlines()
             if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(lines) == 1
    fields = lines[0].split(None, 6)
    assert len(fields) == 7 and fields[5] == "root"
    assert all(re.fullmatch(r"[0-9*/,\-]+", f) for f in fields[:5])
    assert "\\%" in fields[6], "a bare % ends the command in cron"
    assert "watch --once" in fields[6] and "nice -n 19" in fields[6] and "ionice -c 3" in fields[6]


def ansible_env(tmp_path: Path) -> dict[str, str]:
    # Without PYTHONPATH: a source tree on it (with the egg-info a wheel build leaves) makes pip in the host's new
    # venv believe the agent is already installed, and it installs nothing.
    inherited = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**inherited, "ANSIBLE_HOME": str(tmp_path / "ansible-home"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "atmp"),
            "ANSIBLE_REMOTE_TEMP": str(tmp_path / "rtmp"), "ANSIBLE_NOCOLOR": "1", "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "ANSIBLE_RETRY_FILES_ENABLED": "0"}


def ansible_playbook() -> str:
    tool = Path(sys.executable).parent / "ansible-playbook"
    if not tool.exists():
        pytest.skip("ansible-core is not installed in this environment")
    return str(tool)


def run_playbook(tmp_path, variables: dict, timeout: float) -> subprocess.CompletedProcess:
    """site.yml against localhost, its outputs under tmp_path, plus the given variables."""
    settings = {"ansible_python_interpreter": sys.executable, "audit_agent_fleet_command": agent_command()[0],
                "audit_agent_work_dir": tmp_path / "host", "audit_agent_reports_dir": tmp_path / "reports",
                "audit_agent_fleet_dir": tmp_path / "fleet", "audit_agent_become": "false",
                "audit_agent_window": "0.5", **variables}
    command = [ansible_playbook(), "-i", "localhost,", "-c", "local", str(CONTRIB / "ansible" / "site.yml")]
    for name, value in settings.items():
        command += ["-e", f"{name}={value}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=ansible_env(tmp_path),
                          stdin=subprocess.DEVNULL)


@pytest.mark.e2e
def test_ansible_playbook_scans_localhost_and_builds_the_fleet_report(tmp_path):
    agent = agent_command()[0]
    if not agent.endswith("audit-agent"):
        pytest.skip("needs the installed audit-agent script")
    result = run_playbook(tmp_path, {"audit_agent_command": agent}, timeout=300)   # the current venv's agent: no install
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "reports" / "localhost.json").read_text())
    assert report["schema_version"] and report["host"]["hostname"]
    fleet = json.loads((tmp_path / "fleet" / "fleet.json").read_text())
    assert [h["hostname"] for h in fleet["hosts"]] == [report["host"]["hostname"]]
    html = (tmp_path / "fleet" / "fleet.html").read_text()
    assert "Fleet audit report" in html


@pytest.mark.e2e
def test_ansible_playbook_installs_the_wheel_then_scans(tmp_path):
    """The install path of the playbook: a wheel built from this checkout, copied and installed into a new venv
    with its dependencies (from the package index, as `.ci/run`'s own install does)."""
    wheels = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(wheels), str(REPO)], capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1:]}")
    [wheel] = wheels.glob("audit_agent-*.whl")
    venv = tmp_path / "host-venv"
    # The control node is this host: its fleet step uses the agent the playbook just installed.
    result = run_playbook(tmp_path, {"audit_agent_wheel": wheel, "audit_agent_venv": venv,
                                     "audit_agent_python": sys.executable,
                                     "audit_agent_fleet_command": venv / "bin" / "audit-agent"}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert (venv / "bin" / "audit-agent").exists(), "the playbook installed the agent into its venv"
    installed = subprocess.run([str(venv / "bin" / "audit-agent"), "--version"], capture_output=True, text=True)
    assert installed.returncode == 0 and installed.stdout.startswith("audit-agent ")
    report = json.loads((tmp_path / "reports" / "localhost.json").read_text())
    assert report["agent_version"] and report["host"]["hostname"]
    assert (tmp_path / "fleet" / "fleet.html").exists()


def test_ansible_playbook_syntax(tmp_path):
    result = subprocess.run([ansible_playbook(), "--syntax-check", "-i", "localhost,",
                             str(CONTRIB / "ansible" / "site.yml")], capture_output=True, text=True, timeout=120,
                            env=ansible_env(tmp_path), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (CONTRIB / "ansible" / "site.yml").read_text()
    assert "failed_when: audit_scan.rc not in [0, 1]" in text and "flat: true" in text
    assert "run_once: true" in text and "delegate_to: localhost" in text
