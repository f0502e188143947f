"""Report translations: both languages have every key, and every key the templates use exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from audit_agent.i18n import LANGS, RULE_PARTS, i18n_dir, load_messages, load_rule_texts, translator
from audit_agent.model import CATEGORIES, CoverageStatus, FindingStatus, Severity, Verdict
from audit_agent.render.html import templates_dir
from audit_agent.rules.loader import load_pack

# t('key'), t("key", ...), and the prefixes of keys built as t('group.' ~ value)
LITERAL_KEY = re.compile(r"""\bt\(\s*['"]([a-z0-9_.]+)['"]""")
# The host report's templates; other templates (the fleet report) carry their own translation files.
REPORT_TEMPLATES = ("report.html.j2", "report.md.j2")
ENUM_GROUPS = {"severity": Severity, "verdict": Verdict, "status": FindingStatus, "coverage": CoverageStatus}


def template_keys() -> set[str]:
    keys: set[str] = set()
    for name in REPORT_TEMPLATES:
        text = (templates_dir() / name).read_text(encoding="utf-8")
        keys |= {k for k in LITERAL_KEY.findall(text) if not k.endswith(".") and not k.endswith("_")}
    return keys


def dynamic_keys() -> set[str]:
    """Keys built from enum values in code and templates (t.enum, 'verdict.explain_' ~ verdict)."""
    keys = {f"{group}.{member.value}" for group, enum in ENUM_GROUPS.items() for member in enum}
    keys |= {f"verdict.explain_{v.value}" for v in Verdict}
    keys |= {f"check.{name}" for name in ("host", "processes", "network", "gpu", "binaries", "configs", "stealth",
                                          "persistence", "family_configs", "artefacts", "packing", "memory")}
    keys |= {f"kind.{name}" for name in ("process", "gpu", "host", "persistence", "connection")}
    keys |= {f"category.{name}" for name in CATEGORIES}
    keys |= {f"tuning_action.{name}" for name in ("disable", "severity", "allow", "add")}
    keys |= {"format.date", "format.datetime", "format.months", "format.seconds", "format.none"}
    keys |= {f"field.{name}" for name in ("name", "exe", "argv0", "cmdline", "login", "host", "port", "binary",
                                          "persistence", "config", "connection", "gpu", "load", "memory", "pid",
                                          "environ", "file", "maps", "mountinfo", "cpu", "meminfo", "sysfs", "sysctl")}
    return keys


def test_both_languages_have_the_same_keys():
    english, chinese = load_messages("en"), load_messages("zh-CN")
    assert sorted(set(english) - set(chinese)) == [], "keys missing from zh-CN.yaml"
    assert sorted(set(chinese) - set(english)) == [], "keys missing from en.yaml"
    assert all((i18n_dir() / f"{lang}.yaml").is_file() for lang in LANGS)


@pytest.mark.parametrize("lang", LANGS)
def test_every_key_the_templates_use_exists(lang):
    messages = load_messages(lang)
    used = template_keys() | dynamic_keys()
    assert len(used) > 100
    assert sorted(used - set(messages)) == []


@pytest.mark.parametrize("lang", LANGS)
def test_placeholders_match_between_languages(lang):
    english = load_messages("en")
    placeholders = re.compile(r"\{(\w+)\}")
    for key, text in load_messages(lang).items():
        if key.startswith("format."):       # date patterns differ by design (month name vs number)
            continue
        assert set(placeholders.findall(text)) == set(placeholders.findall(english[key])), key


def test_chinese_labels_are_translated_not_copied():
    english, chinese = load_messages("en"), load_messages("zh-CN")
    for group in ("severity", "verdict", "status", "coverage", "declaration", "header", "findings"):
        for key in (k for k in english if k.startswith(group + ".")):
            if english[key] in ("MITRE ATT&CK",):
                continue
            assert chinese[key] != english[key], key
            assert re.search(r"[\u4e00-\u9fff]", chinese[key]), f"{key} has no Chinese text: {chinese[key]!r}"


def test_missing_key_is_an_error():
    t = translator("en")
    with pytest.raises(KeyError, match="no.such.key"):
        t("no.such.key")


def test_dates_in_the_locale_form():
    moment = 1795637700.0      # 2026-11-25 20:15 UTC
    assert translator("en").datetime(moment) == "25 Nov 2026 20:15:00 UTC+00:00"      # no zone given: UTC
    assert translator("en").date(moment) == "25 Nov 2026"
    assert translator("zh-CN").datetime(moment).startswith("2026年11月25日 20:15:00")
    assert translator("zh-CN").date(moment) == "2026年11月25日"
    assert translator("en").datetime(0) == "—"


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="fr"):
        translator("fr")


# ---------------------------------------------------------------- rule texts (reports/i18n/rules.<lang>.yaml)

DETECT_DIR = Path(__file__).resolve().parents[1] / "audit_agent" / "detect"
RULE_ID_LITERAL = re.compile(r"""["'](AA-[A-Z]+-\d{3})["']""")
CJK = re.compile(r"[\u4e00-\u9fff]")


def coded_rule_ids() -> set[str]:
    """The ids of the coded checks: RULE_* constants and any other "AA-..." literal in audit_agent/detect/*.py."""
    return {rule_id for path in DETECT_DIR.glob("*.py") for rule_id in RULE_ID_LITERAL.findall(path.read_text())}


def all_rule_ids() -> set[str]:
    return {rule.id for rule in load_pack().rules} | coded_rule_ids()


def test_every_rule_id_has_a_title_action_and_meaning_in_both_languages():
    ids = all_rule_ids()
    assert len(coded_rule_ids()) >= 28 and len(ids) >= 71        # the pack's 43 and the coded checks' 28
    for lang in LANGS:
        texts = load_rule_texts(lang)
        missing = sorted(rule_id for rule_id in ids
                         if not all(isinstance(texts.get(rule_id, {}).get(part), str)
                                    and texts[rule_id][part].strip() for part in RULE_PARTS))
        assert missing == [], f"rules.{lang}.yaml lacks title/action/meaning for {missing}"
        assert sorted(set(texts) - ids) == [], f"rules.{lang}.yaml has entries for unknown rule ids"
        assert all(set(entry) <= {*RULE_PARTS, "title_variants", "facts"} for entry in texts.values())


def test_english_rule_texts_are_the_engines_own():
    """A pack rule keeps its title (and its action, where it has one); a coded check's titles are its own."""
    english = load_rule_texts("en")
    for rule in load_pack().rules:
        assert english[rule.id]["title"] == rule.title, rule.id
        if rule.action:
            assert english[rule.id]["action"] == rule.action, rule.id
    source = "\n".join(path.read_text() for path in DETECT_DIR.glob("*.py"))
    for rule_id in coded_rule_ids():
        for title in [english[rule_id]["title"], *english[rule_id].get("title_variants", {})]:
            assert f'"{title}"' in source, (rule_id, title)        # so lead_rule() finds the finding's rule


def test_chinese_rule_texts_are_chinese_sentences():
    english, chinese = load_rule_texts("en"), load_rule_texts("zh-CN")
    for rule_id, entry in chinese.items():
        for part in RULE_PARTS:
            assert CJK.search(entry[part]) and entry[part] != english[rule_id][part], (rule_id, part)
        assert entry["meaning"].endswith("。") and entry["meaning"].count("。") == 1, rule_id     # one sentence
        assert entry["action"].endswith("。"), rule_id
        assert not entry["title"].endswith("。"), rule_id
        assert set(entry.get("title_variants", {})) == set(english[rule_id].get("title_variants", {})), rule_id
        assert english[rule_id]["meaning"].endswith("."), rule_id


def test_rule_lookup_falls_back_to_the_engine_text():
    zh = translator("zh-CN")
    assert zh.rule("AA-BIN-001", "title", "xmrig-family miner binary") == "XMRig 系列挖矿程序"
    assert zh.rule("AA-STEALTH-004", "title", "Executable in a hidden directory") == "位于隐藏目录中的可执行文件"
    assert zh.rule("AA-STEALTH-004", "title", "Hidden (dot-named) executable") == "隐藏的（以点开头命名的）可执行文件"
    assert zh.rule("AA-SITE-001", "title", "A site's own rule") == "A site's own rule"
    assert zh.rule(None, "action", "Stop it.") == "Stop it."
    assert zh.rule("AA-SITE-001", "meaning") == ""
    assert translator("en").rule("AA-BIN-001", "title") == "xmrig-family miner binary"
    with pytest.raises(KeyError, match="reason"):
        zh.rule("AA-BIN-001", "reason")
