"""The JSON contracts' one decoder (msgspec over the model's dataclasses): what it reads back is what was
written, fast and slow paths agree, and a bad document is refused naming the field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit_agent.model import (AuditReport, ProcessInfo, SchemaError, Severity, Snapshot, decode_json, from_dict,
                               to_dict)
from audit_agent.output import read_report, read_snapshot
from audit_agent.pipeline import load_inputs, run_scan
from audit_agent.yamlfile import ConfigError

SEEDS = sorted((Path(__file__).resolve().parent.parent / "seeds").glob("*.snapshot.json"))


@pytest.fixture(scope="module")
def inputs():
    return load_inputs(None, None)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.name)
def test_seed_snapshots_and_their_reports_round_trip_unchanged(seed, inputs, tmp_path):
    raw = seed.read_bytes()
    fast = decode_json(raw, Snapshot)
    slow = Snapshot.from_dict(json.loads(raw))
    assert fast is not None and fast == slow
    # Every field the seed holds comes back with the same value; fields it lacks get their defaults.
    written = fast.to_dict()
    original = json.loads(raw)
    assert holds(written, original)
    assert Snapshot.from_dict(written) == fast
    report = run_scan(fast, inputs, Severity.HIGH)
    assert report.findings, "the demo hosts have findings: the report side must be exercised too"
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report.to_dict()), encoding="utf-8")
    again = read_report(path)
    assert again == report
    assert again.to_dict() == report.to_dict()


def holds(written, original) -> bool:
    """`written` has every key and value of `original` (recursively); extra keys are new fields' defaults."""
    if isinstance(original, dict):
        return isinstance(written, dict) and all(k in written and holds(written[k], v) for k, v in original.items())
    if isinstance(original, list):
        return isinstance(written, list) and len(written) == len(original) and all(map(holds, written, original))
    if type(original) is int and type(written) is float:      # a float field written as 1 in JSON reads as 1.0
        return written == original
    return written == original and type(written) is type(original)


def test_to_dict_is_plain_json_data_with_enum_values():
    snapshot = Snapshot(processes=[ProcessInfo(pid=7, cmdline=["a", "b"], environ={"LD_PRELOAD": "/x.so"})])
    data = snapshot.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["processes"][0]["cmdline"] == ["a", "b"]
    report = AuditReport(fail_on=None)
    assert to_dict(report)["verdict"] == "compliant" and to_dict(report)["fail_on"] is None


def test_lone_surrogate_escapes_take_the_slow_path_and_still_load(tmp_path):
    """Our writer escapes undecodable bytes as \\udcXX; msgspec refuses those, json accepts them."""
    data = Snapshot(processes=[ProcessInfo(pid=1, name="x\udcffy")]).to_dict()
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data), encoding="ascii")
    assert decode_json(path.read_bytes(), Snapshot) is None
    assert read_snapshot(path).processes[0].name == "x\udcffy"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["processes"][0].update(pid="12"), "$.processes[0].pid: Expected `int`, got `str`"),
    (lambda d: d["processes"][0].update(pid=True), "$.processes[0].pid: Expected `int`, got `bool`"),
    (lambda d: d["processes"][0].update(cmdline="xmrig -o x"), "$.processes[0].cmdline: Expected `array`"),
    (lambda d: d["processes"][0].pop("pid"), "missing required field `pid`"),
    (lambda d: d["stealth"].update(hidden_pids=[{"name": "x"}]), "$.stealth.hidden_pids[0]"),
    (lambda d: d["coverage"].append({"check": "gpu", "status": "fine"}), "Invalid enum value 'fine'"),
    (lambda d: d.update(schema_version="2.0"), "newer than this agent supports"),
    (lambda d: d.update(schema_version=None), "no valid schema_version"),
])
def test_bad_snapshot_is_refused_naming_the_field(tmp_path, change, message):
    data = json.loads(SEEDS[0].read_bytes())
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        read_snapshot(path)
    assert str(error.value).startswith(f"{path}: not a valid snapshot: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_newer_major_version_is_refused_even_when_the_shape_still_decodes(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**AuditReport().to_dict(), "schema_version": "7.1"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="schema_version 7.1 is newer"):
        read_report(path)
    path.write_text(json.dumps({**AuditReport().to_dict(), "schema_version": "1.9", "new_field": 1}))
    assert read_report(path).schema_version == "1.9"        # a newer minor version: unknown fields ignored


def test_syntax_error_names_the_line_and_wrong_top_level_is_one_line(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{\n"schema_version": "1.0",\n"processes": [,]\n}')
    with pytest.raises(ConfigError, match=r"s\.json:3: snapshot is not valid JSON"):
        read_snapshot(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="snapshot JSON must be an object, not list"):
        read_snapshot(path)


def test_from_dict_prefixes_a_nested_path():
    with pytest.raises(SchemaError, match=r"^\$\.hosts\[2\]\.pid: Expected `int`"):
        from_dict(ProcessInfo, {"pid": "x"}, "$.hosts[2]")


def test_the_published_schemas_are_what_the_model_gives():
    """snapshot.schema.json and report.schema.json (shipped) describe the Structs as they are: a field added,
    renamed or retyped without `python -m audit_agent.schemas --write` fails here."""
    from audit_agent.schemas import PUBLISHED, build_schema, published_schema
    for filename, cls in PUBLISHED.items():
        assert published_schema(filename) == build_schema(cls, filename.split(".")[0]), filename
    required = build_schema(Snapshot, "snapshot")["$defs"]["ProcessInfo"]["required"]
    assert required == ["pid"]          # the only field without a default
