"""Filing drafts (issue 10 item 4): pre-filled, read by the registry once completed, safe with hostile text."""
from __future__ import annotations

import json

import pytest
import yaml

from audit_agent.evaluate import evaluate
from audit_agent.filing import load_registry
from audit_agent.filing.draft import write_drafts
from audit_agent.model import FindingStatus, GpuDevice, GpuProcess
from audit_agent.policy import Policy
from audit_agent.render.json_report import dumps
from audit_agent.yamlfile import ConfigError
from tests.factories import default_inputs, proc, snapshot

BENCH = "/opt/xmrig-6.21.0/xmrig --bench=10M --threads 8"
HOSTILE = '<script>alert(1)</script>"\u202e'


def report_of(*procs, gpus=(), hostname="gpu-lab-07"):
    snap = snapshot(list(procs), gpus=list(gpus), hostname=hostname)
    inputs = default_inputs()
    return snap, evaluate(snap, inputs.rules, Policy(timezone="Asia/Shanghai"), [])


def fill(path, **changes):
    data = yaml.safe_load(path.read_text())
    data["filings"][0].update(number="XK-2026-07", approved_by="Provincial Department of Education",
                              project="GPU proof-of-work energy study", discipline="Electrical engineering",
                              responsible="Dr. Wang Fang", valid_from="2026-01-01", valid_until="2099-12-31",
                              **changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))


def test_draft_is_prefilled_and_round_trips_into_the_registry(tmp_path):
    gpu = GpuDevice(index=0, name="NVIDIA A100", memory_total_bytes=80 << 30,
                    processes=[GpuProcess(pid=600, used_memory_bytes=3 << 30)])
    snap, report = report_of(proc(600, BENCH, cpu=310.0, user="wangf", create_time=1764400000.0), gpus=[gpu])
    written = write_drafts(report, tmp_path / "drafts")
    yaml_path = next(p for p in written if p.suffix == ".yaml")
    assert {p.name.split(".", 1)[1] for p in written} == {"yaml", "en.html", "zh-CN.html"}
    entry = yaml.safe_load(yaml_path.read_text())["filings"][0]
    assert entry["hosts"] == ["gpu-lab-07"] and entry["users"] == ["wangf"]
    assert entry["scale"] == {"cpu_cores": 4, "gpus": 1, "gpu_memory_gib": 3}
    assert entry["number"] == entry["approved_by"] == entry["discipline"] == entry["responsible"] == ""
    observed = entry["observed"]
    assert observed["workload"]["version"] == "6.21.0" and observed["workload"]["command"] == BENCH
    assert observed["workload"]["started"] == "2025-11-29 15:06:40 +08:00"     # institution's zone, with offset
    assert observed["scale"]["cpu_cores"] == 3.1 and observed["host"]["hostname"] == "gpu-lab-07"
    system = report.research_systems[0]
    assert system["draft"] == str(yaml_path)                                   # the report links its draft

    with pytest.raises(ConfigError, match=r"drafts/filing-draft-gpu-lab-07-benchmark-\w+\.yaml:7: filing needs "
                                          r"'number', 'approved_by', 'project', 'discipline', 'responsible' \(a draft"):
        load_registry(yaml_path)
    fill(yaml_path)
    filings = load_registry(yaml_path)
    inputs = default_inputs()
    again = evaluate(snap, inputs.rules, Policy(timezone="Asia/Shanghai"), filings)
    assert [f.status for f in again.findings] == [FindingStatus.REGISTERED]
    assert again.research_systems[0]["filing"] == "XK-2026-07" and again.research_systems[0]["over_scale"] == []


def test_a_completed_draft_still_catches_growth_beyond_its_scale(tmp_path):
    _, report = report_of(proc(600, BENCH, cpu=310.0))
    yaml_path = next(p for p in write_drafts(report, tmp_path) if p.suffix == ".yaml")
    fill(yaml_path)
    snap, _ = report_of(proc(600, BENCH, cpu=790.0))
    inputs = default_inputs()
    grown = evaluate(snap, inputs.rules, Policy(), load_registry(yaml_path))
    assert grown.findings[0].status == FindingStatus.OUTSIDE_REGISTRATION
    assert grown.research_systems[0]["over_scale"] == ["uses 7.9 CPU cores, beyond the 4 filed under XK-2026-07"]


def test_hostile_names_cannot_escape_the_folder_or_the_page(tmp_path):
    _, report = report_of(proc(61, ["/opt/x/xmrig", "--bench=1M", HOSTILE], cpu=50.0), hostname="../../etc/x y")
    written = write_drafts(report, tmp_path / "out")
    assert all(p.parent == tmp_path / "out" for p in written)
    page = next(p for p in written if p.name.endswith(".en.html")).read_text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    entry = yaml.safe_load(next(p for p in written if p.suffix == ".yaml").read_text())["filings"][0]
    assert entry["hosts"] == ["../../etc/x y"]                 # the data itself survives, quoted


def test_filing_draft_command(agent, tmp_path):
    _, report = report_of(proc(600, BENCH, cpu=100.0))
    path = tmp_path / "report.json"
    path.write_text(dumps(report.to_dict()))
    result = agent("filing", "draft", str(path), "--out", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 3 and all(p.startswith(str(tmp_path / "d")) for p in result.stdout.split())
    assert "备案草稿" in next((tmp_path / "d").glob("*.zh-CN.html")).read_text()

    _, quiet = report_of(proc(5, "python3 train.py", cpu=100.0))
    path.write_text(dumps(quiet.to_dict()))
    result = agent("filing", "draft", str(path), "--out", str(tmp_path / "none"))
    assert result.returncode == 0 and "nothing to draft" in result.stderr and not (tmp_path / "none").exists()

    path.write_text(json.dumps({"schema_version": "1.0", "findings": "x"}))
    result = agent("filing", "draft", str(path), "--out", str(tmp_path / "bad"))
    assert result.returncode == 2 and "not a valid report" in result.stderr and "Traceback" not in result.stderr

    (tmp_path / "afile").write_text("")
    path.write_text(dumps(report.to_dict()))
    result = agent("filing", "draft", str(path), "--out", str(tmp_path / "afile"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
