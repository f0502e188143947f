"""Fleet merge: per-host verdicts, stale hosts, compute totals, registered systems, corrupt files; HTML quality."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from html import unescape
from pathlib import Path

import msgspec
import pytest
import yaml

from audit_agent.fleet import merge
from audit_agent.fleet_html import render_html
from audit_agent.i18n import flatten
from audit_agent.model import FindingStatus, GpuDevice
from tests.conftest import MONERO_WALLET
from tests.factories import conn, proc, scan, snapshot

DAY = 86400
FILING = {"number": "RS-2026-017", "approved_by": "Provincial DRC", "project": "Consensus <research>",
          "discipline": "CS", "responsible": "Prof. Li", "contact": "", "hosts": ["gpu-01"], "users": ["alice"],
          "workloads": ["xmrig"], "cpu_cores": 16, "gpus": 2, "valid_from": "2026-01-01", "valid_until": "2027-12-31"}


def write(directory: Path, name: str, report: dict) -> None:
    (directory / name).write_text(json.dumps(report))


@pytest.fixture
def reports(tmp_path):
    now = time.time()
    miner = proc(4242, f"/tmp/.x/xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u {MONERO_WALLET}", cpu=190.0)
    bad = scan(snapshot([miner], [conn(4242, "94.130.12.27", 3333)], hostname="<script>alert(1)</script>",
                        collected_at=now - 2 * DAY)).to_dict()
    bad["host"].update(cpu_cores=32, cpu_threads=64)
    gpu_host = scan(snapshot([miner], [conn(4242, "94.130.12.27", 3333)], hostname="gpu-01",
                             collected_at=now - 1 * DAY)).to_dict()
    for finding in gpu_host["findings"]:
        finding["status"] = FindingStatus.REGISTERED.value
    gpu_host["verdict"] = "compliant"
    gpu_host["filings"] = [FILING | {"findings": [f["fingerprint"] for f in gpu_host["findings"]]}]
    gpu_host["host"].update(cpu_cores=16, cpu_threads=32, gpus=[
        msgspec.to_builtins(GpuDevice(index=i, name="NVIDIA A100-SXM4-80GB"))
        for i in range(2)] + [msgspec.to_builtins(GpuDevice(index=2, name="NVIDIA V100"))])
    stale = scan(snapshot([proc(1, "/usr/sbin/sshd -D", user="root")], hostname="old-lab-pc",
                          collected_at=now - 60 * DAY)).to_dict()
    stale["host"].update(cpu_cores=4, cpu_threads=8)
    older_gpu = json.loads(json.dumps(gpu_host))
    older_gpu["collected_at"] = older_gpu["generated_at"] = now - 20 * DAY
    older_gpu["verdict"] = "non_compliant"
    for name, data in (("bad.json", bad), ("gpu-01.json", gpu_host), ("gpu-01-old.json", older_gpu),
                       ("old-lab-pc.json", stale)):
        write(tmp_path, name, data)
    (tmp_path / "corrupt.json").write_text('{"schema_version": "1.0", "host": ')
    write(tmp_path, "future.json", {**stale, "schema_version": "9.0"})
    write(tmp_path, "notes.json", {"schema_version": "1.0", "hello": "world"})
    return tmp_path


def test_merge_totals_stale_registered_and_errors(reports):
    fleet = merge([str(reports)], stale_days=31)
    assert [h.hostname for h in fleet.hosts] == ["<script>alert(1)</script>", "gpu-01", "old-lab-pc"]
    verdicts = {h.hostname: h.verdict for h in fleet.hosts}
    assert verdicts["gpu-01"] == "compliant", "the newest report of a host wins"
    assert next(h for h in fleet.hosts if h.hostname == "gpu-01").older_reports == 1
    assert fleet.verdicts["non_compliant"] == 1 and fleet.verdicts["compliant"] >= 1
    assert fleet.stale_hosts == ["old-lab-pc"]
    assert fleet.findings["high"] + fleet.findings["critical"] >= 1
    assert fleet.compute["cpu_cores"] == 32 + 16 + 4 and fleet.compute["cpu_threads"] == 64 + 32 + 8
    assert fleet.compute["gpus"] == 3
    assert fleet.compute["gpus_by_model"] == {"NVIDIA A100-SXM4-80GB": 2, "NVIDIA V100": 1}
    [system] = fleet.registered_systems
    assert system["number"] == "RS-2026-017" and system["seen_on"] == ["gpu-01"]
    assert system["registered_findings"] == len(json.loads((reports / "gpu-01.json").read_text())["findings"])
    errors = {Path(e.path).name: e.reason for e in fleet.errors}
    assert set(errors) == {"corrupt.json", "future.json", "notes.json"}
    assert "not valid JSON" in errors["corrupt.json"]
    assert "newer" in errors["future.json"]
    assert all("\n" not in reason for reason in errors.values())


def test_cli_writes_json_and_html_without_crashing_on_bad_files(agent, reports, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = agent("fleet", str(reports), "--json", str(out / "fleet.json"), "--html", str(out / "fleet.html"))
    assert result.returncode == 1, "a non-compliant host fails the fleet as it fails its scan: " + result.stderr
    assert "corrupt.json" in result.stderr and "3 hosts" in result.stderr
    data = json.loads((out / "fleet.json").read_text())
    assert data["schema_version"] and len(data["hosts"]) == 3 and len(data["errors"]) == 3


def test_output_inside_the_input_directory_is_not_read_back(agent, reports):
    first = agent("fleet", str(reports), "--json", str(reports / "fleet.json"), "--fail-on", "never")
    second = agent("fleet", str(reports), "--json", str(reports / "fleet.json"), "--fail-on", "never")
    assert first.returncode == second.returncode == 0
    assert "fleet.json" not in second.stderr


@pytest.mark.parametrize("lang,title", [("en", "Fleet audit report"), ("zh-CN", "集群审计报告")])
def test_html_is_self_contained_escaped_printable_in_both_languages(reports, lang, title):
    html = render_html(merge([str(reports)]), lang)
    assert f'<html lang="{lang}">' in html and title in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I), "no external resources"
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert html.count("<script") == 1 and "data-key" in scripts[0] and "document" in scripts[0], \
        "only our own sort script; host names are escaped"
    policy = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1))
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Consensus &lt;research&gt;" in html
    assert "@media print" in html
    assert "RS-2026-017" in html and "NVIDIA A100-SXM4-80GB" in html


def test_fleet_translations_are_complete_in_both_languages():
    root = Path(__file__).resolve().parent.parent / "reports"
    keys = {}
    for lang in ("en", "zh-CN"):
        data = yaml.safe_load((root / "i18n" / f"fleet.{lang}.yaml").read_text(encoding="utf-8"))
        flat = flatten(data["fleet"])
        keys[lang] = set(flat)
        assert all(isinstance(v, str) and v.strip() for v in flat.values())
    assert keys["en"] == keys["zh-CN"]
    template = (root / "templates" / "fleet.html.j2").read_text()
    used = set(re.findall(r't(?:\.parts)?\("fleet\.([a-z_]+(?:\.[a-z_]+)*)"', template))
    used |= {f"refused.{code}" for code in ("unsigned", "malformed", "algorithm", "unknown_machine", "wrong_key",
                                            "bad_signature", "future")}
    assert used <= keys["en"], f"template keys missing: {used - keys['en']}"


def test_empty_input_is_an_error_only_when_nothing_was_readable(agent, tmp_path):
    (tmp_path / "x.json").write_text("[]")
    result = agent("fleet", str(tmp_path))
    assert result.returncode == 2 and "x.json" in result.stderr


def test_a_hostile_report_is_an_error_line_not_the_end_of_the_merge(agent, reports, tmp_path_factory):
    good = json.loads((reports / "old-lab-pc.json").read_text())
    (reports / "deep.json").write_text('{"schema_version": "1.0", "host": ' + "[" * 200_000 + "]" * 200_000 + "}")
    listed = json.loads(json.dumps(good))
    listed["findings"] = [{"status": ["open"], "severity": "high"}]
    write(reports, "list-status.json", listed)
    listed_severity = json.loads(json.dumps(good))
    listed_severity["findings"] = [{"status": "open", "severity": {"high": 1}}]
    write(reports, "dict-severity.json", listed_severity)
    huge_time = json.dumps(good).replace('"collected_at": ', '"collected_at": 1' + "0" * 400 + ', "x": ', 1)
    (reports / "huge-time.json").write_text(huge_time)
    fleet = merge([str(reports)])
    errors = {Path(e.path).name: e.reason for e in fleet.errors}
    assert {"deep.json", "list-status.json", "dict-severity.json", "huge-time.json"} <= set(errors)
    assert "nested too deeply" in errors["deep.json"] and "must be strings" in errors["list-status.json"]
    assert len(fleet.hosts) == 3
    out = tmp_path_factory.mktemp("out")
    result = agent("fleet", str(reports), "--json", str(out / "fleet.json"), "--fail-on", "never")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "deep.json" in result.stderr and (out / "fleet.json").exists()


def test_each_filing_counts_only_the_findings_it_covers(tmp_path):
    now = time.time()
    miner = proc(4242, f"/tmp/.x/xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u {MONERO_WALLET}", cpu=190.0)
    other = proc(4343, "/opt/lab/t-rex -a kawpow -o stratum+tcp://10.0.0.5:3333 -u lab", cpu=90.0)
    data = scan(snapshot([miner, other], [conn(4242, "94.130.12.27", 3333)], hostname="gpu-01",
                         collected_at=now)).to_dict()
    for finding in data["findings"]:
        finding["status"] = FindingStatus.REGISTERED.value
    fingerprints = [f["fingerprint"] for f in data["findings"]]
    assert len(fingerprints) >= 2
    data["filings"] = [FILING | {"findings": fingerprints[:1]},
                       FILING | {"number": "RS-2026-018", "findings": fingerprints[1:]}]
    write(tmp_path, "gpu-01.json", data)
    counts = {s["number"]: s["registered_findings"] for s in merge([str(tmp_path)]).registered_systems}
    assert counts == {"RS-2026-017": 1, "RS-2026-018": len(fingerprints) - 1}


def test_fleet_json_escapes_bidi_and_c1_characters(agent, reports, tmp_path_factory):
    data = json.loads((reports / "old-lab-pc.json").read_text())
    data["host"]["hostname"] = "lab\u202epc\u0085"
    write(reports, "old-lab-pc.json", data)
    out = tmp_path_factory.mktemp("out")
    assert agent("fleet", str(reports), "--json", str(out / "fleet.json"), "--fail-on", "never").returncode == 0
    text = (out / "fleet.json").read_text(encoding="utf-8")
    assert "\u202e" not in text and "\u0085" not in text, "raw bidi/C1 characters never reach the file"
    assert "lab\\u202epc\\u0085" in text
    assert any(h["hostname"] == "lab\u202epc\u0085" for h in json.loads(text)["hosts"])
