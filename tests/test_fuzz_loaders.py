"""Malformed input (hypothesis): every loader ends a bad file in one clean ConfigError naming the file
(and the line where there is one); through the CLI that is exit 2, one line on stderr, no traceback,
and no output file or temp file left behind."""
from __future__ import annotations

import contextlib
import io
import json
import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_agent import cli
from audit_agent.filings import load_registry
from audit_agent.output import read_report, read_snapshot
from audit_agent.paths import data_dir
from audit_agent.policy import load_policy
from audit_agent.rules.loader import load_pack
from audit_agent.yamlfile import ConfigError

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds"
# FUZZ_EXAMPLES=2000 for a longer, randomised run; CI runs a fixed, derandomised sample
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 60, deadline=None, derandomize=not EXAMPLES,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FEW = settings(FUZZ, max_examples=max(EXAMPLES // 5, 20))
YAML_NOISE = st.text(alphabet=string.ascii_letters + string.digits + " \t\n:-[]{}&*!|>'\"%@`#,?.=\\\u00e9\u202e\x00\x1b",
                     max_size=40)
JSON_NOISE = st.text(alphabet=string.ascii_letters + string.digits + ' \n:[]{},"\\.-+eE0tfnul\u00e9\x00', max_size=30)


def mutate(text: str, noise: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid document with a slice cut out, replaced or duplicated, or noise spliced in."""
    length = len(text)

    @st.composite
    def build(draw):  # type: ignore[no-untyped-def]
        start = draw(st.integers(0, length))
        end = draw(st.integers(start, min(length, start + draw(st.sampled_from([1, 8, 64, 600])))))
        how = draw(st.sampled_from(["cut", "replace", "insert", "duplicate", "truncate"]))
        if how == "cut":
            return text[:start] + text[end:]
        if how == "replace":
            return text[:start] + draw(noise) + text[end:]
        if how == "insert":
            return text[:start] + draw(noise) + text[start:]
        if how == "duplicate":
            return text[:end] + text[start:end] + text[end:]
        return text[:start]
    return build()


def assert_clean_error(exc: ConfigError, path: Path) -> None:
    message = str(exc)
    assert "\n" not in message, message
    assert message.startswith(str(path)), message
    assert "Traceback" not in message


def check_loader(load, path: Path, text: str) -> None:  # type: ignore[no-untyped-def]
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load(path)
    except ConfigError as exc:
        assert_clean_error(exc, path)


# ---------------------------------------------------------------- YAML loaders

RULE_FILE = (data_dir("rules") / "miners.yaml").read_text(encoding="utf-8")
CONFIG_FILE = (SEEDS / "config.yaml").read_text(encoding="utf-8").replace("filings: filings.yaml\n", "")
REGISTRY_FILE = (SEEDS / "filings.yaml").read_text(encoding="utf-8")


@FUZZ
@given(st.one_of(mutate(RULE_FILE, YAML_NOISE), YAML_NOISE))
def test_rule_pack_loader(tmp_path_factory, text):
    pack = tmp_path_factory.mktemp("pack")
    path = pack / "rules.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_pack(pack)
    except ConfigError as exc:
        assert_clean_error(exc, path)


@FUZZ
@given(st.one_of(mutate(CONFIG_FILE, YAML_NOISE), YAML_NOISE))
def test_config_loader(tmp_path_factory, text):
    check_loader(load_policy, tmp_path_factory.mktemp("cfg") / "config.yaml", text)


@FUZZ
@given(st.one_of(mutate(REGISTRY_FILE, YAML_NOISE), YAML_NOISE))
def test_filing_registry_loader(tmp_path_factory, text):
    check_loader(load_registry, tmp_path_factory.mktemp("reg") / "filings.yaml", text)


@pytest.mark.parametrize("text", ["[" * 100_000, "- " * 50_000 + "x", "a: &a [*a]", "\ufeff\x00", "? [a]\n: b"])
def test_yaml_bombs_and_depth(tmp_path, text):
    for load, name in ((load_policy, "c.yaml"), (load_registry, "f.yaml")):
        check_loader(load, tmp_path / name, text)


# ---------------------------------------------------------------- JSON loaders

def small_snapshot_text() -> str:
    data = json.loads((SEEDS / "cn-117.snapshot.json").read_text(encoding="utf-8"))
    data["processes"] = data["processes"][:12]
    data["connections"] = data["connections"][:6]
    return json.dumps(data, indent=1)


SNAPSHOT = small_snapshot_text()


def report_text() -> str:
    from audit_agent.pipeline import load_inputs, run_scan
    snapshot = read_snapshot(SEEDS / "cn-117.snapshot.json")
    return json.dumps(run_scan(snapshot, load_inputs()).to_dict(), indent=1)


REPORT = report_text()
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                     max_size=3), max_leaves=6)


def paths_of(value, prefix=()):  # type: ignore[no-untyped-def]
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield from paths_of(item, (*prefix, index))


def replaced(text: str) -> st.SearchStrategy[str]:
    """The valid document with one value (anywhere in it) swapped for arbitrary JSON."""
    document = json.loads(text)
    paths = [p for p in paths_of(document) if p]

    @st.composite
    def build(draw):  # type: ignore[no-untyped-def]
        data = json.loads(text)
        path = draw(st.sampled_from(paths))
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = draw(JSON_VALUES)
        return json.dumps(data)
    return build()


def bad_json(text: str) -> st.SearchStrategy[str]:
    return st.one_of(mutate(text, JSON_NOISE), replaced(text), JSON_NOISE)


@FUZZ
@given(bad_json(SNAPSHOT))
def test_snapshot_loader(tmp_path_factory, text):
    check_loader(read_snapshot, tmp_path_factory.mktemp("snap") / "snap.json", text)


@FUZZ
@given(bad_json(REPORT))
def test_report_loader(tmp_path_factory, text):
    check_loader(read_report, tmp_path_factory.mktemp("rep") / "report.json", text)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"schema_version": "1.0", "processes": ' + "[" * 5000 + "]" * 5000 + "}",
                                  '{"schema_version": "99.0"}', '"\\udcff"', "NaN", ""])
def test_json_depth_and_versions(tmp_path, text):
    for load, name in ((read_snapshot, "s.json"), (read_report, "r.json")):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load(path)
        assert_clean_error(caught.value, path)


# ---------------------------------------------------------------- the CLI on those files

def run_cli(*args: str) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = cli.main(list(args))
    return code, err.getvalue()


def assert_exit_2(code: int, stderr: str, bad: Path, outdir: Path) -> None:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audit-agent: error: "), stderr
    assert str(bad) in lines[0]
    assert "Traceback" not in stderr
    assert [p.name for p in outdir.iterdir()] == [], "no partial output or temp file"


@FEW
@given(bad_json(SNAPSHOT))
def test_cli_scan_of_a_bad_snapshot(tmp_path_factory, text):
    work = tmp_path_factory.mktemp("cli")
    bad, outdir = work / "bad.json", work / "out"
    outdir.mkdir()
    bad.write_text(text, encoding="utf-8", errors="surrogatepass")
    code, stderr = run_cli("scan", "--snapshot", str(bad), "--json", str(outdir / "out.json"), "--quiet",
                           "--fail-on", "never")
    if code == 2:
        assert_exit_2(code, stderr, bad, outdir)
    else:           # still a valid snapshot: a complete report, nothing else
        assert code == 0, stderr
        assert [p.name for p in outdir.iterdir()] == ["out.json"]
        json.loads((outdir / "out.json").read_text(encoding="utf-8"))


@FEW
@given(bad_json(REPORT))
def test_cli_report_of_a_bad_report(tmp_path_factory, text):
    work = tmp_path_factory.mktemp("cli")
    bad, outdir = work / "bad.json", work / "out"
    outdir.mkdir()
    bad.write_text(text, encoding="utf-8", errors="surrogatepass")
    code, stderr = run_cli("report", str(bad), "--sarif", str(outdir / "out.sarif"))
    if code == 2:
        assert_exit_2(code, stderr, bad, outdir)
    else:
        assert code == 0, stderr
        assert [p.name for p in outdir.iterdir()] == ["out.sarif"]


@pytest.mark.parametrize("option, name, text", [
    ("--rules", "rules.yaml", "rules:\n  - id: AA-X\n    title: [unclosed\n"),
    ("--config", "config.yaml", "thresholds:\n  min_cpu_percent: -3\n"),
    ("--config", "config.yaml", "allowlist:\n  - reason: x\n    cmdline: '(['\n"),
    ("--snapshot", "snap.json", '{"schema_version": "1.0", "processes": [{"pid": "one"}]}'),
    ("--snapshot", "snap.json", '{"schema_version": "1.0",\n "processes": [,]}'),
])
def test_real_cli_bad_input_exit_2_and_no_output(agent, tmp_path, option, name, text):
    bad = tmp_path / name
    bad.write_text(text)
    outdir = tmp_path / "out"
    outdir.mkdir()
    target = str(tmp_path) if option == "--rules" else str(bad)
    extra = [] if option == "--snapshot" else ["--snapshot", str(REPO / "seeds" / "cn-117.snapshot.json")]
    result = agent("scan", option, target, *extra, "--json", str(outdir / "out.json"), "--html",
                   str(outdir / "out.html"), "--quiet")
    assert_exit_2(result.returncode, result.stderr, bad, outdir)
    assert os.listdir(outdir) == []
