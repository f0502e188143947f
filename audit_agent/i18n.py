"""Report labels in English and Chinese, from reports/i18n/<lang>.yaml, and dates in the locale's form.

A missing key is an error (KeyError), never a silent fallback: a filed report
must not show a raw key or half its labels in another language.

Rule texts (a finding's title, recommended action, and what an indicator means)
come from reports/i18n/rules.<lang>.yaml through `t.rule(rule_id, part, fallback)`.
Those are open-ended (a site may load its own rule pack), so a rule that is not
there keeps the engine's English text instead of failing the report.
"""
from __future__ import annotations

import datetime as dt
import string
from functools import lru_cache
from pathlib import Path
from typing import Any

from msgspec import Struct

from audit_agent.paths import data_dir
from audit_agent.yamlfile import load_data

LANGS = ("en", "zh-CN")


def i18n_dir() -> Path:
    return data_dir("reports") / "i18n"


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings to dotted keys: {'a': {'b': 'x'}} -> {'a.b': 'x'}."""
    flat: dict[str, str] = {}
    if not isinstance(data, dict):
        raise ValueError(f"translation {prefix or 'file'} must be a mapping")
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = str(value)
    return flat


@lru_cache(maxsize=None)
def load_messages(lang: str) -> dict[str, str]:
    if lang not in LANGS:
        raise ValueError(f"unknown report language {lang!r}; known: {', '.join(LANGS)}")
    path = i18n_dir() / f"{lang}.yaml"
    return flatten(load_data(path))


RULE_PARTS = ("title", "action", "meaning")
# Optional per rule: `facts`, how a coded check's measured numbers read (a template, or a list of them,
# the first whose placeholders the evidence has), and `title_variants`.


@lru_cache(maxsize=None)
def load_rule_texts(lang: str) -> dict[str, dict[str, Any]]:
    """{rule_id: {"title": .., "action": .., "meaning": .., "title_variants": {engine title: shown title}}}."""
    if lang not in LANGS:
        raise ValueError(f"unknown report language {lang!r}; known: {', '.join(LANGS)}")
    path = i18n_dir() / f"rules.{lang}.yaml"
    data = load_data(path) or {}
    if not isinstance(data, dict) or not all(isinstance(entry, dict) for entry in data.values()):
        raise ValueError(f"{path}: must map each rule id to its title, action and meaning")
    return {**family_rule_texts(lang), **{str(rule_id): entry for rule_id, entry in data.items()}}


def family_rule_texts(lang: str) -> dict[str, dict[str, Any]]:
    """The texts of the shipped families' rules (AA-<FAMILY>-<SHAPE>), from reports/i18n/families.<lang>.yaml.

    Building them reads and checks every family file (PyYAML, their regexes): kept in the state directory's
    data cache, keyed by the bytes of those files, so a summary or report of a finding does not pay it again."""
    from audit_agent.rules.active import state_dir
    from audit_agent.rules.pack_cache import cached_json
    roots = [data_dir("rules") / "families", i18n_dir() / f"families.{lang}.yaml", Path(__file__)]  # this code too
    texts: dict[str, dict[str, Any]] = cached_json(f"family-texts.{lang}", roots, state_dir(),
                                                   lambda: build_family_rule_texts(lang))
    return texts


def build_family_rule_texts(lang: str) -> dict[str, dict[str, Any]]:
    import hashlib

    from audit_agent.rules.families import family_rules
    from audit_agent.rules.loader import load_families
    texts = load_data(i18n_dir() / f"families.{lang}.yaml")
    families, _ = load_families(data_dir("rules") / "families", hashlib.sha256())
    result: dict[str, dict[str, Any]] = {}
    for family in families:
        values = {"family": family.name if lang == "en" else family.name_zh, "coin": family.coin or family.name,
                  "activity": texts["activity"][family.category]}
        for rule in family_rules(family):
            shape = rule.id.rsplit("-", 1)[1]
            result[rule.id] = {
                "title": rule.title if lang == "en" else texts["title"][shape].format(**values),
                "action": rule.action if lang == "en" else texts["action"].format(**values),
                "meaning": texts["meaning"][shape].format(**values)}
    return result


class Translator(Struct, frozen=True):
    """`t("verdict.compliant")` or `t("header.window_value", start=..., end=...)`."""
    lang: str
    messages: dict[str, str]
    zone: dt.tzinfo = dt.timezone.utc      # the institution's zone: every time shown is in it, with its offset

    def __call__(self, key: str, **values: Any) -> str:
        try:
            text = self.messages[key]
        except KeyError:
            raise KeyError(f"translation key {key!r} is missing from reports/i18n/{self.lang}.yaml") from None
        # Values are data: substituted once, never themselves formatted.
        return text.format(**{k: "" if v is None else v for k, v in values.items()}) if values else text

    def parts(self, key: str, **values: Any) -> list[tuple[str, bool]]:
        """The message as (text, is_data) parts, so a template can mark the values as data (translate="no")."""
        parts: list[tuple[str, bool]] = []
        for text, name, _, _ in string.Formatter().parse(self(key)):
            if text:
                parts.append((text, False))
            if name:
                parts.append(("" if values.get(name) is None else str(values[name]), True))
        return parts

    def enum(self, group: str, value: Any) -> str:
        """The label of an enum member (severity, verdict, status, coverage) by its value."""
        return self(f"{group}.{getattr(value, 'value', value)}")

    def known(self, group: str, name: str) -> str:
        """A label for an open-ended name (check, subject kind, category): one this version does not know
        keeps its own name rather than failing the whole report."""
        return self.messages.get(f"{group}.{name}", name)

    def check(self, name: str) -> str:
        return self.known("check", name)

    def rule(self, rule_id: str | None, part: str, fallback: str = "") -> str:
        """A rule's `title`, `action` or `meaning` in this language; `fallback` (the engine's English text)
        when the rule or the part is not in rules.<lang>.yaml. For a title, `fallback` is also the engine's
        title, which picks the right entry of `title_variants` (a coded check with more than one title)."""
        if part not in RULE_PARTS:
            raise KeyError(f"rule text part {part!r} is not one of {', '.join(RULE_PARTS)}")
        entry = load_rule_texts(self.lang).get(rule_id or "")
        if not entry:
            return fallback
        if part == "title":
            variant = (entry.get("title_variants") or {}).get(fallback)
            if variant:
                return str(variant)
        text = entry.get(part)
        return str(text) if text else fallback

    def date(self, timestamp: float | None) -> str:
        return self._format("format.date", timestamp)

    def datetime(self, timestamp: float | None) -> str:
        return self._format("format.datetime", timestamp)

    def _format(self, key: str, timestamp: float | None) -> str:
        if not timestamp:
            return self("format.none")
        # The institution's zone, with its UTC offset: local to the people who sign, unambiguous to anyone else.
        moment = dt.datetime.fromtimestamp(timestamp, tz=self.zone)
        months = self("format.months").split()
        return self(key, d=moment.day, m=moment.month, mon=months[moment.month - 1], y=moment.year,
                    H=f"{moment.hour:02d}", M=f"{moment.minute:02d}", S=f"{moment.second:02d}",
                    offset=utc_offset(moment))


def translator(lang: str = "en", zone: str = "") -> Translator:
    """Messages of `lang`; times shown in the zone named `zone` (a report's `timezone`), else UTC."""
    from audit_agent.timezone import zone_by_name
    try:
        tz = zone_by_name(zone) if zone else dt.timezone.utc
    except ValueError:      # a report from a host whose zone this machine does not know: UTC, said as such
        tz = dt.timezone.utc
    return Translator(lang, load_messages(lang), tz)


def utc_offset(moment: dt.datetime) -> str:
    """+08:00, -05:00, +00:00 (the messages put "UTC" before it, in their own words)."""
    offset = moment.strftime("%z") or "+0000"
    return f"{offset[:3]}:{offset[3:]}"


@lru_cache(maxsize=None)
def coverage_reasons(lang: str = "en") -> dict[str, str]:
    """{reason code: sentence} of reports/i18n/coverage.<lang>.yaml (why a check could not see everything)."""
    if lang not in LANGS:
        raise ValueError(f"unknown report language {lang!r}; known: {', '.join(LANGS)}")
    path = i18n_dir() / f"coverage.{lang}.yaml"
    data = load_data(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must map each coverage reason code to its sentence")
    return {str(code): str(text) for code, text in data.items()}


def coverage_phrase(detail: Any, lang: str = "en") -> str:
    """One coverage detail (code + facts) in `lang`; the facts are data, substituted once."""
    template = coverage_reasons(lang).get(detail.code)
    if template is None:
        return str(detail.code)
    try:
        return template.format(**detail.facts)
    except (KeyError, IndexError, ValueError):
        return f"{template} {detail.facts}"


def coverage_text(details: list[Any], lang: str = "en", separator: str = "; ") -> str:
    """Several coverage details as one text; a detail that ends with a colon introduces the next one."""
    text = ""
    for detail in details:
        phrase = coverage_phrase(detail, lang)
        if text:
            text += " " if text.endswith(":") else "" if text.endswith("：") else separator
        text += phrase
    return text
