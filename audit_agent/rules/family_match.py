"""The family rules compiled for lookup: ports, environment keys, artefact names, and config parsing.

Pure: the collector reads files and lists folders, then asks these matchers
what a file name, a config text or an environment key means.
"""
from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from audit_agent.linear_regex import compile_linear, engine_of
from audit_agent.redact import redact_text
from audit_agent.rules.families import ArtefactSpec, ConfigSpec, Family
from audit_agent.rules.loader import Rule, RulePack

MAX_KEYS = 5000                             # flattened keys kept per config (a YAML alias bomb stops here)
MAX_DEPTH = 12
MAX_VALUES = 32
SECRET_KEY = re.compile(r"pass|secret|token|apikey|api_key|private|mnemonic|seed", re.IGNORECASE)


class ArtefactPattern(msgspec.Struct, frozen=True):
    family: str
    spec: ArtefactSpec
    name: re.Pattern[str]
    parent: re.Pattern[str] | None


class FamilyMatchers:
    """Family rules as dictionaries: port -> rule, env key -> rule, family -> config/file rule."""

    def __init__(self, pack: RulePack) -> None:
        self.families: dict[str, Family] = {f.id: f for f in pack.families}
        self.listen_ports: dict[int, Rule] = {}
        self.connect_ports: dict[int, Rule] = {}
        self.env: dict[str, Rule] = {}
        self.config_rules: dict[str, Rule] = {}
        self.file_rules: dict[str, Rule] = {}
        self.artefacts: list[ArtefactPattern] = []
        for rule in pack.rules:
            family = rule.params.get("family", "") if isinstance(rule.params, dict) else ""
            if rule.kind == "family_port":
                for port in rule.params["listen"]:
                    self.listen_ports.setdefault(int(port), rule)
                for port in rule.params["connect"]:
                    self.connect_ports.setdefault(int(port), rule)
            elif rule.kind == "family_env":
                for key in rule.params["keys"]:
                    self.env.setdefault(str(key), rule)
            elif rule.kind == "family_config":
                self.config_rules[family] = rule
            elif rule.kind == "family_file":
                self.file_rules[family] = rule
                for spec in rule.params["specs"]:
                    self.artefacts.append(ArtefactPattern(family, spec, compile_linear(spec.name, re.IGNORECASE),
                                                          compile_linear(spec.parent) if spec.parent else None))
        self.any_name, self.other_names = any_of([p.name for p in self.artefacts])

    def env_keys(self) -> set[str]:
        return set(self.env)

    def match_env(self, environ: dict[str, str]) -> list[tuple[Rule, str, str]]:
        """(rule, key, value) for each family environment key the process sets."""
        env = self.env
        return [(env[key], key, environ[key]) for key in sorted(key for key in environ if key in env)]

    def match_file(self, name: str, parent: str, size: int) -> ArtefactPattern | None:
        """The family artefact a file is, by its name, its folder's name and its (apparent) size."""
        for pattern in self.artefacts:
            spec = pattern.spec
            if size < spec.min_bytes or (spec.max_bytes is not None and size > spec.max_bytes) \
                    or (spec.multiple_of and size % spec.multiple_of):
                continue
            if pattern.name.fullmatch(name) and (pattern.parent is None or pattern.parent.fullmatch(parent)):
                return pattern
        return None

    def spec(self, family: str, kind: str) -> ArtefactSpec | None:
        """The artefact spec a group of found files was matched by."""
        return next((p.spec for p in self.artefacts if p.family == family and p.spec.kind == kind), None)

    def file_name_may_match(self, name: str) -> bool:
        """Whether any artefact pattern matches the whole name: the walk asks it of every file it lists."""
        if self.any_name is not None and self.any_name.fullmatch(name):
            return True
        return any(pattern.fullmatch(name) for pattern in self.other_names)


def any_of(patterns: list[Any]) -> tuple[Any | None, list[Any]]:
    """The RE2 patterns (each compiled case-insensitive, as every artefact name is) as one case-insensitive
    alternation, and the rest (those only `re` can run) as they are.

    A call into RE2 costs ~5 us whatever the pattern (the binding's own overhead): fourteen patterns asked one
    by one cost a scan ~30 ms over a few hundred file names, one alternation a fourteenth of it. The
    alternation is anchored as a whole by fullmatch, so it matches exactly the names one of its parts does."""
    linear = [p for p in patterns if engine_of(p) == "re2"]
    rest = [p for p in patterns if engine_of(p) != "re2"]
    if not linear:
        return None, rest
    joined = compile_linear("|".join(f"(?:{p.pattern})" for p in linear), re.IGNORECASE)
    if engine_of(joined) != "re2":      # cannot happen for parts RE2 took alone; keep them apart if it does
        return None, patterns
    return joined, rest


# ------------------------------------------------------------------ configs


class ConfigFacts(msgspec.Struct):
    keys: list[str]
    urls: list[str]
    logins: list[str]
    dirs: list[str]
    network: str


def flatten(text: str, fmt: str) -> dict[str, list[str]] | None:
    """A config as dotted lower-case key paths -> scalar values (lists flattened); None if it does not parse."""
    try:
        data = _parse(text, fmt)
    except (ValueError, RecursionError, UnicodeError):
        return None
    if not isinstance(data, dict):
        return None
    flat: dict[str, list[str]] = {}
    _walk(data, "", flat, 0)
    return flat


def _parse(text: str, fmt: str) -> Any:
    """A config's data; ValueError when it does not parse. Each parser is imported with the first config of
    its format: most scans read no config at all, and PyYAML alone costs a quiet scan more than its rules."""
    if fmt == "json":
        return json.loads(text)
    if fmt == "yaml":
        import yaml
        try:
            return yaml.load(text, Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))
        except yaml.YAMLError as exc:
            raise ValueError(str(exc)) from None
    if fmt == "toml":
        try:
            import tomllib
        except ImportError:                 # Python 3.10: TOML is read as INI-like key = value lines
            pass
        else:
            return tomllib.loads(text)      # TOMLDecodeError is a ValueError
    import configparser
    try:
        return _ini(text)
    except configparser.Error as exc:
        raise ValueError(str(exc)) from None


def _ini(text: str) -> dict[str, Any]:
    import configparser
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.MissingSectionHeaderError:
        parser.read_string("[root]\n" + text)
    result: dict[str, Any] = {}
    for section in parser.sections():
        values = {key: value.strip().strip("\"'") for key, value in parser.items(section)}
        if section == "root":
            result.update(values)
        else:
            result[section] = values
    return result


def _walk(node: Any, prefix: str, flat: dict[str, list[str]], depth: int) -> None:
    if depth > MAX_DEPTH or len(flat) >= MAX_KEYS:
        return
    if isinstance(node, dict):
        for key, value in list(node.items())[:1024]:
            path = f"{prefix}.{str(key).lower()}" if prefix else str(key).lower()
            flat.setdefault(path, [])
            _walk(value, path, flat, depth + 1)
    elif isinstance(node, list):
        for item in node[:1024]:
            _walk(item, prefix, flat, depth + 1)
    elif node is not None and prefix:
        values = flat.setdefault(prefix, [])
        if len(values) < MAX_VALUES:
            values.append(str(node)[:1024])


def identify(spec: ConfigSpec, flat: dict[str, list[str]]) -> list[str]:
    """The spec's identifying keys present in the config (a key whose own key path ends with it counts too)."""
    present = []
    for key in spec.identify:
        if key in flat or any(path.endswith("." + key) for path in flat):
            present.append(key)
    return present


def config_facts(spec: ConfigSpec, text: str) -> ConfigFacts | None:
    """What a config of this family says, or None when the text is not such a config."""
    flat = flatten(text, spec.format)
    if flat is None:
        return None
    keys = identify(spec, flat)
    if len(keys) < spec.need:
        return None

    def values(paths: list[str]) -> list[str]:
        found: list[str] = []
        for path in paths:
            for key, items in flat.items():
                if key == path or key.endswith("." + path):
                    found += [v for v in items if v and v not in found]
        return found[:MAX_VALUES]

    logins = [v for v in values(spec.logins) if not SECRET_KEY.search(v)]
    network = next(iter(values(spec.network)), "")
    return ConfigFacts(keys=keys, urls=[redact_text(u) for u in values(spec.urls)], logins=logins,
                       dirs=values(spec.dirs), network=network[:64])
