"""`audit-agent demo` and the seeds/ snapshots behind it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from audit_agent.demo import run_demo, seeds
from audit_agent.model import Verdict
from audit_agent.paths import data_dir

EXPECTED = {"gpu-lab-03": Verdict.NON_COMPLIANT, "login-02": Verdict.NON_COMPLIANT, "cn-117": Verdict.COMPLIANT}
SNAPSHOT_SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "audit_agent" / "schemas" /
                              "snapshot.schema.json").read_text(encoding="utf-8"))


def test_seeds_validate_and_look_like_real_hosts():
    found = seeds()
    assert {seed.name for seed in found} == set(EXPECTED)
    for seed in found:
        data = json.loads(seed.snapshot.read_text(encoding="utf-8"))
        jsonschema.validate(data, SNAPSHOT_SCHEMA)
        assert 150 <= len(data["processes"]) <= 400, seed.name
        names = {p["name"] for p in data["processes"]}
        assert {"systemd", "sshd", "kthreadd", "cron"} <= names
        assert len({p["username"] for p in data["processes"]}) >= 4
        assert len({p["pid"] for p in data["processes"]}) == len(data["processes"])


def test_seed_generator_is_deterministic(tmp_path):
    subprocess.run([sys.executable, str(data_dir("seeds") / "make_seeds.py"), str(tmp_path)], check=True,
                   capture_output=True)
    for seed in seeds():
        assert (tmp_path / seed.snapshot.name).read_bytes() == seed.snapshot.read_bytes(), \
            f"{seed.snapshot.name} is stale: run python seeds/make_seeds.py and commit the result"


def test_each_seed_gets_the_verdict_it_demonstrates(demo_reports):
    assert {name: report.verdict for name, report in demo_reports.items()} == EXPECTED
    gpu_lab = demo_reports["gpu-lab-03"]
    disguised = [f for f in gpu_lab.open_findings if f.subject.name == "python3"]
    assert len(disguised) == 2 and {f.subject.slurm_job_id for f in disguised} >= {"88412"}
    login = demo_reports["login-02"]
    assert any(f.subject.name == "kworker/0:1" and f.severity.value == "critical" for f in login.open_findings)
    assert any(f.subject.kind == "persistence" for f in login.open_findings)
    compute = demo_reports["cn-117"]
    assert [f.filing for f in compute.registered_findings] == ["DEMO-2026-BC-017"]
    assert len(compute.allowlisted_findings) == 1


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_run_demo_writes_every_report(tmp_path, lang):
    lines = list(run_demo(tmp_path, lang))
    suffix = "" if lang == "en" else ".zh-CN"
    for name in EXPECTED:
        for extension in (".html", ".md", ".json"):
            path = tmp_path / f"{name}{suffix}{extension}"
            assert path.is_file() and path.stat().st_size > 1000
            assert any(str(path) in line for line in lines)
    assert len(lines) == 3 * len(EXPECTED)


def test_demo_command(tmp_path, agent):
    result = agent("demo", "--out", str(tmp_path), "--lang", "zh-CN")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "login-02.zh-CN.html").is_file()
    assert "non_compliant" in result.stdout
