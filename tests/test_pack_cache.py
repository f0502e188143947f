"""The compiled rule pack kept between runs: reused only for the same bytes, never from a file others control."""
from __future__ import annotations

import os
import pickle
import re
import shutil

import pytest

from audit_agent.rules import pack_cache
from audit_agent.rules.compiler import CompiledRules, LazyRegex
from audit_agent.rules.loader import default_rules_dir, load_pack
from audit_agent.yamlfile import ConfigError

XMRIG = "/opt/x/xmrig -o stratum+tcp://pool.supportxmr.com:3333 -u 4AbC -p x"


@pytest.fixture
def pack(tmp_path):
    copy = tmp_path / "pack"
    shutil.copytree(default_rules_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def build_counting(pack, calls):
    def build():
        calls.append(1)
        return CompiledRules(load_pack(pack))
    return build


def test_the_second_load_is_the_saved_pack_and_matches_the_same(pack, tmp_path):
    calls: list[int] = []
    state = tmp_path / "state"
    first = pack_cache.cached([pack], state, build_counting(pack, calls))
    second = pack_cache.cached([pack], state, build_counting(pack, calls))
    assert len(calls) == 1
    assert [r.id for r in second.pack.rules] == [r.id for r in first.pack.rules]
    assert second.pack.sha256 == first.pack.sha256
    assert [h.rule.id for h in second.match_cmdline(XMRIG)] == [h.rule.id for h in first.match_cmdline(XMRIG)]
    assert [h.rule.id for h in second.match_domains(XMRIG, "cmdline")] == \
        [h.rule.id for h in first.match_domains(XMRIG, "cmdline")]
    saved = list((state / pack_cache.FOLDER).iterdir())
    assert len(saved) == 1 and saved[0].stat().st_mode & 0o777 == 0o600


def test_a_changed_rule_file_builds_the_pack_again_and_keeps_one_saved_copy(pack, tmp_path):
    calls: list[int] = []
    state = tmp_path / "state"
    pack_cache.cached([pack], state, build_counting(pack, calls))
    some_file = sorted(pack.glob("*.yaml"))[-1]
    some_file.write_text(some_file.read_text() + "\n# a comment changes the bytes\n")
    rebuilt = pack_cache.cached([pack], state, build_counting(pack, calls))
    assert len(calls) == 2 and rebuilt.pack.sha256 != ""
    assert len(list((state / pack_cache.FOLDER).iterdir())) == 1


def test_a_broken_pack_is_an_error_and_is_never_saved(pack, tmp_path):
    state = tmp_path / "state"
    (pack / "zz-broken.yaml").write_text("rules:\n  - id: NOT VALID\n")
    with pytest.raises(ConfigError):
        pack_cache.cached([pack], state, lambda: CompiledRules(load_pack(pack)))
    assert not list(state.rglob("*.pickle"))


class Planted:
    """What an attacker would put in a pickle: code that runs when it is loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("how", ["world-writable", "folder-writable", "symlink", "foreign-owner"])
def test_a_saved_pack_others_could_have_written_is_never_loaded(pack, tmp_path, how):
    if how == "foreign-owner" and os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    calls: list[int] = []
    state = tmp_path / "state"
    pack_cache.cached([pack], state, build_counting(pack, calls))
    [saved] = (state / pack_cache.FOLDER).glob("*.pickle")
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(Planted(str(marker)))
    if how == "symlink":
        elsewhere = tmp_path / "elsewhere.pickle"
        elsewhere.write_bytes(payload)
        saved.unlink()
        saved.symlink_to(elsewhere)
    else:
        saved.write_bytes(payload)
        if how == "world-writable":
            saved.chmod(0o666)
        elif how == "folder-writable":
            saved.parent.chmod(0o777)
        else:
            os.chown(saved, 65534, 65534)
    loaded = pack_cache.cached([pack], state, build_counting(pack, calls))
    assert not marker.exists()
    assert len(calls) == 2 and isinstance(loaded, CompiledRules)


def test_a_torn_saved_pack_is_rebuilt(pack, tmp_path):
    calls: list[int] = []
    state = tmp_path / "state"
    pack_cache.cached([pack], state, build_counting(pack, calls))
    [saved] = (state / pack_cache.FOLDER).glob("*.pickle")
    saved.write_bytes(saved.read_bytes()[:100])
    assert isinstance(pack_cache.cached([pack], state, build_counting(pack, calls)), CompiledRules)
    assert len(calls) == 2


def test_without_a_state_folder_the_pack_is_built_every_time(pack):
    calls: list[int] = []
    pack_cache.cached([pack], None, build_counting(pack, calls))
    pack_cache.cached([pack], None, build_counting(pack, calls))
    assert len(calls) == 2


@pytest.mark.parametrize("pattern, flags, text", [
    (r"stratum\+(tcp|ssl)://", re.IGNORECASE, "STRATUM+SSL://pool:443"),
    (r"^4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}$", 0, "4" + "A" * 94),
    (r"(?:a|b)+c", 0, "xxababcx"),
])
def test_a_lazy_regex_answers_like_the_compiled_one_also_after_pickling(pattern, flags, text):
    real = re.compile(pattern, flags)
    lazy = pickle.loads(pickle.dumps(LazyRegex(pattern, flags)))
    assert bool(lazy.search(text)) == bool(real.search(text))
    assert bool(lazy.fullmatch(text)) == bool(real.fullmatch(text))
    assert lazy.findall(text) == real.findall(text)
    assert lazy.pattern == real.pattern


# ---------------------------------------------------------------- shipped data files (checks.yaml, i18n)


def parse_counting(calls):
    def parse(data):
        calls.append(1)
        import yaml
        return yaml.safe_load(data)
    return parse


def test_a_data_file_is_parsed_once_per_change_of_its_bytes(tmp_path):
    source, state, calls = tmp_path / "texts.yaml", tmp_path / "state", []
    source.write_text("a: één\nb: {c: 'x'}\n", encoding="utf-8")
    first = pack_cache.cached_data(source, state, parse_counting(calls))
    assert pack_cache.cached_data(source, state, parse_counting(calls)) == first == {"a": "één", "b": {"c": "x"}}
    assert len(calls) == 1
    source.write_text("a: two\n", encoding="utf-8")
    assert pack_cache.cached_data(source, state, parse_counting(calls)) == {"a": "two"}
    assert len(calls) == 2
    assert len(list((state / pack_cache.DATA_FOLDER).iterdir())) == 1


def test_a_saved_data_file_others_could_have_written_is_never_used(tmp_path):
    source, state, calls = tmp_path / "texts.yaml", tmp_path / "state", []
    source.write_text("a: shipped\n", encoding="utf-8")
    pack_cache.cached_data(source, state, parse_counting(calls))
    saved = next((state / pack_cache.DATA_FOLDER).iterdir())
    saved.write_text(saved.read_text().replace("shipped", "forged"))
    os.chmod(saved, 0o666)
    assert pack_cache.cached_data(source, state, parse_counting(calls)) == {"a": "shipped"}
    assert len(calls) == 2


def test_data_that_json_would_change_is_not_kept(tmp_path):
    source, state, calls = tmp_path / "dates.yaml", tmp_path / "state", []
    source.write_text("1: 2024-01-02\n", encoding="utf-8")
    first = pack_cache.cached_data(source, state, parse_counting(calls))
    assert pack_cache.cached_data(source, state, parse_counting(calls)) == first
    assert len(calls) == 2
    assert not list((state / pack_cache.DATA_FOLDER).glob("*.json"))


def test_the_shipped_texts_read_through_the_cache_are_what_yaml_says(tmp_path, monkeypatch):
    from pathlib import Path

    import yaml

    import audit_agent.detect
    from audit_agent.i18n import i18n_dir
    from audit_agent.yamlfile import load_data
    monkeypatch.setenv("AUDIT_AGENT_STATE_DIR", str(tmp_path / "state"))
    for path in [*sorted(i18n_dir().glob("*.yaml")), Path(audit_agent.detect.__file__).parent / "checks.yaml"]:
        expected = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert load_data(path) == expected            # parsed (libyaml where present)
        assert load_data(path) == expected            # and from the saved copy


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_the_family_rule_texts_are_built_once_and_read_back_the_same(tmp_path, monkeypatch, lang):
    from audit_agent import i18n
    monkeypatch.setenv("AUDIT_AGENT_STATE_DIR", str(tmp_path))
    calls = []
    build = i18n.build_family_rule_texts
    monkeypatch.setattr(i18n, "build_family_rule_texts", lambda which: calls.append(which) or build(which))
    built = i18n.family_rule_texts(lang)
    assert built == build(lang) and built["AA-QUBIC-NAME"]["title"]
    assert i18n.family_rule_texts(lang) == built
    assert calls == [lang]
    assert (tmp_path / pack_cache.DATA_FOLDER / f"family-texts.{lang}.json").is_file()
