"""Report translations: both languages have every key, and every key the templates use exists."""
from __future__ import annotations

import re

import pytest

from audit_agent.i18n import LANGS, i18n_dir, load_messages, translator
from audit_agent.model import CoverageStatus, FindingStatus, Severity, Verdict
from audit_agent.render.html import templates_dir

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
                                          "persistence")}
    keys |= {f"kind.{name}" for name in ("process", "gpu", "host", "persistence", "connection")}
    keys |= {f"category.{name}" for name in ("miner", "network", "stealth", "persistence", "gpu", "load", "tuning")}
    keys |= {"format.date", "format.datetime", "format.months", "format.seconds", "format.none"}
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
    assert translator("en").datetime(moment) == "25 Nov 2026 20:15:00 UTC"
    assert translator("en").date(moment) == "25 Nov 2026"
    assert translator("zh-CN").datetime(moment).startswith("2026年11月25日 20:15:00")
    assert translator("zh-CN").date(moment) == "2026年11月25日"
    assert translator("en").datetime(0) == "—"


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="fr"):
        translator("fr")
