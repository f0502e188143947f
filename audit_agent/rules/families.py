"""Families: one YAML file per coin, storage network or token-sharing network (rules/families/*.yaml).

A family names its software (process names, sub-commands and flags), default
ports, configuration files (where the software reads them and which keys make
them its own), environment variables, artefacts on disk (name pattern and
size), pools and the network/mode flags of its test networks. The loader turns
each family into ordinary rules (names, cmdline, domains: compiled into the
same matchers as every other rule) plus family rules (ports, env, config,
files) that the family collector and detector use. Next year's token is a new
file with its own examples, not new code.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from audit_agent.model import CATEGORIES, Severity
from audit_agent.rules.loader import DOMAIN_TYPES, Rule, _check_domain_entry, _check_regexes
from audit_agent.yamlfile import ConfigError, line_of

FAMILY_ID = re.compile(r"^[A-Z][A-Z0-9]{1,15}$")
FAMILY_CATEGORIES = ("miner", "storage_farming", "resource_sharing")
CONFIG_FORMATS = ("json", "yaml", "toml", "ini")
SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$", re.IGNORECASE)
UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
         "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
PLACEHOLDER = re.compile(r"^(~|\{cwd\}|\{exe_dir\}|\$[A-Z_][A-Z0-9_]*|\{arg:-{0,2}[\w-]+\}|/)")
EXAMPLE_KINDS = ("names", "node_names", "cmdline", "wallets", "pools", "ports", "env", "configs", "files")
KEYS = {"id", "name", "category", "coin", "reference", "software", "wallets", "ports", "env", "configs", "artefacts",
        "pools", "networks", "examples"}
ARTEFACT_KEYS = {"kind", "name", "parent", "min_size", "max_size", "multiple_of", "tied", "group_up"}
# (rule suffix, kind, severity, confidence): how sure one signal of that sort makes us.
RULE_SHAPES = {
    "NAME": ("names", Severity.HIGH, 0.8),
    "NODE": ("names", Severity.INFO, 0.3),          # a chain node alone is blockchain use: context, never a finding
    "CMD": ("cmdline", Severity.HIGH, 0.8),
    "WALLET": ("wallet", Severity.HIGH, 0.85),      # the coin's own address format, where a login is given
    "POOL": ("domains", Severity.HIGH, 0.8),
    "PORT": ("family_port", Severity.MEDIUM, 0.3),
    "ENV": ("family_env", Severity.MEDIUM, 0.55),
    "CONFIG": ("family_config", Severity.HIGH, 0.75),
    "FILE": ("family_file", Severity.HIGH, 0.8),
}
ACTIVITY = {"miner": "mining", "storage_farming": "storage farming", "resource_sharing": "GPU sharing for tokens"}


class ConfigSpec(Struct):
    paths: list[str]
    format: str
    identify: list[str]             # dotted key paths (lists flattened: pool_list.pool_url)
    need: int = 1                   # how many of `identify` must be present
    dirs: list[str] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)


class ArtefactSpec(Struct):
    kind: str
    name: str                       # regex, full match on the file name
    min_bytes: int
    max_bytes: int | None = None
    parent: str = ""                # regex, full match on the folder's name, when the name alone is too common
    multiple_of: int | None = None  # the software sizes the file in whole units (hostd: 4 MiB sectors)
    tied: bool = False              # a name others use too: counts only in a folder a process of the family
                                    # has open or names, or that its configuration names
    group_up: int = 0               # report the folder this many levels up (one piece store, not 1024 prefixes)


class Family(Struct):
    id: str
    name: str
    name_zh: str
    category: str
    coin: str
    reference: str
    origin: str
    names: list[str] = field(default_factory=list)
    node_names: list[str] = field(default_factory=list)
    cmdline: list[str] = field(default_factory=list)
    unless: list[str] = field(default_factory=list)
    wallets: list[dict[str, str]] = field(default_factory=list)     # {coin, regex}: the coin's address formats
    listen_ports: list[int] = field(default_factory=list)
    connect_ports: list[int] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    configs: list[ConfigSpec] = field(default_factory=list)
    artefacts: list[ArtefactSpec] = field(default_factory=list)
    pools: list[dict[str, Any]] = field(default_factory=list)
    networks: dict[str, list[str]] = field(default_factory=dict)    # mode -> regexes (testnet, devnet, ...)
    examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def activity(self) -> str:
        return ACTIVITY[self.category]


def parse_size(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = SIZE.match(str(value).strip())
    if not match:
        raise ConfigError(f"{where}: {value!r} is not a size (use bytes or 32GiB, 500MiB, ...)")
    return int(float(match.group(1)) * UNITS[(match.group(2) or "b").lower()])


def parse_family(data: Any, file: Path) -> Family:
    if not isinstance(data, dict) or not isinstance(data.get("family"), dict):
        raise ConfigError(f"{file}:{line_of(data, 1)}: a family file holds one mapping 'family:'")
    item = data["family"]
    at = f"{file}:{line_of(item, 1)}"
    unknown = set(item) - KEYS
    if unknown:
        raise ConfigError(f"{at}: unknown family key(s): {', '.join(sorted(map(str, unknown)))}")
    family_id = item.get("id")
    if not isinstance(family_id, str) or not FAMILY_ID.match(family_id):
        raise ConfigError(f"{at}: family id {family_id!r} must be 2-16 upper-case letters/digits (CHIA)")
    name = item.get("name")
    if not isinstance(name, dict) or not all(isinstance(name.get(k), str) and name[k] for k in ("en", "zh-CN")):
        raise ConfigError(f"{at}: {family_id}: name needs en and zh-CN")
    category = item.get("category")
    if category not in FAMILY_CATEGORIES or category not in CATEGORIES:
        raise ConfigError(f"{at}: {family_id}: category must be one of {', '.join(FAMILY_CATEGORIES)}")
    reference = item.get("reference")
    if not isinstance(reference, str) or not reference.strip():
        raise ConfigError(f"{at}: {family_id}: reference (a public source) is required")
    family = Family(id=family_id, name=name["en"], name_zh=name["zh-CN"], category=category,
                    coin=str(item.get("coin", "")), reference=reference, origin=at)
    software = _mapping(item, "software", at, family_id)
    family.names = [str(v).lower() for v in _list(software, "names", at, family_id)]
    family.node_names = [str(v).lower() for v in _list(software, "node_names", at, family_id)]
    family.cmdline = _list(software, "cmdline", at, family_id)
    family.unless = _list(software, "unless", at, family_id)
    _check_regexes(family.cmdline + family.unless, at, family_id)
    family.wallets = [_wallet(w, at, family) for w in _list(item, "wallets", at, family_id)]
    ports = _mapping(item, "ports", at, family_id)
    family.listen_ports = _ports(ports, "listen", at, family_id)
    family.connect_ports = _ports(ports, "connect", at, family_id)
    family.env = [str(v) for v in _list(item, "env", at, family_id)]
    family.configs = [_config(c, f"{file}:{line_of(c, line_of(item))}", family_id)
                      for c in _list(item, "configs", at, family_id)]
    family.artefacts = [_artefact(a, f"{file}:{line_of(a, line_of(item))}", family_id)
                        for a in _list(item, "artefacts", at, family_id)]
    family.pools = _list(item, "pools", at, family_id)
    for entry in family.pools:
        if isinstance(entry, dict) and entry.get("type") not in DOMAIN_TYPES:
            entry.setdefault("type", "pool")
        _check_domain_entry(entry, at, family_id)
    networks = _mapping(item, "networks", at, family_id)
    family.networks = {str(mode): _list(networks, mode, at, family_id) for mode in networks}
    for patterns in family.networks.values():
        _check_regexes(patterns, at, family_id)
    family.examples = _examples(item, at, family)
    if not (family.names or family.node_names or family.cmdline or family.pools or family.configs
            or family.artefacts or family.wallets):
        raise ConfigError(f"{at}: {family_id}: a family needs software, pools, configs or artefacts")
    return family


def _mapping(item: dict[str, Any], key: str, at: str, family_id: str) -> dict[str, Any]:
    value = item.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{at}: {family_id}: {key} must be a mapping")
    return value


def _list(item: dict[str, Any], key: str, at: str, family_id: str) -> list[Any]:
    value = item.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{at}: {family_id}: {key} must be a list")
    return value


def _ports(ports: dict[str, Any], key: str, at: str, family_id: str) -> list[int]:
    values = _list(ports, key, at, family_id)
    for port in values:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"{at}: {family_id}: {port!r} is not a port number")
    return values


def _strings(item: dict[str, Any], key: str, at: str, family_id: str) -> list[str]:
    values = _list(item, key, at, family_id)
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{at}: {family_id}: {key} must be a list of non-empty strings")
    return values


def _config(item: Any, at: str, family_id: str) -> ConfigSpec:
    if not isinstance(item, dict):
        raise ConfigError(f"{at}: {family_id}: each config must be a mapping")
    paths = _strings(item, "paths", at, family_id)
    if not paths:
        raise ConfigError(f"{at}: {family_id}: a config needs paths")
    for path in paths:
        if not PLACEHOLDER.match(path):
            raise ConfigError(f"{at}: {family_id}: config path {path!r} must start with /, ~, {{cwd}}, "
                              "{exe_dir}, $VAR or {arg:--flag}")
    if item.get("format") not in CONFIG_FORMATS:
        raise ConfigError(f"{at}: {family_id}: config format must be one of {', '.join(CONFIG_FORMATS)}")
    identify = [k.lower() for k in _strings(item, "identify", at, family_id)]
    need = item.get("need", 1)
    if not identify or not isinstance(need, int) or isinstance(need, bool) or not 1 <= need <= len(identify):
        raise ConfigError(f"{at}: {family_id}: a config needs identify keys and 1 <= need <= their number")
    return ConfigSpec(paths=paths, format=item["format"], identify=identify, need=need,
                      dirs=[k.lower() for k in _strings(item, "dirs", at, family_id)],
                      logins=[k.lower() for k in _strings(item, "logins", at, family_id)],
                      urls=[k.lower() for k in _strings(item, "urls", at, family_id)],
                      network=[k.lower() for k in _strings(item, "network", at, family_id)])


def _wallet(item: Any, at: str, family: Family) -> dict[str, str]:
    """One address format: {coin: shown name, regex: the whole address (a login is cut at its worker suffix)}."""
    if not isinstance(item, dict) or not isinstance(item.get("regex"), str) or set(item) - {"coin", "regex"}:
        raise ConfigError(f"{at}: {family.id}: a wallet is a mapping with regex (and coin)")
    _check_regexes([item["regex"]], at, family.id)
    return {"coin": str(item.get("coin") or family.name), "regex": item["regex"]}


def _artefact(item: Any, at: str, family_id: str) -> ArtefactSpec:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("kind"), str):
        raise ConfigError(f"{at}: {family_id}: an artefact needs kind and name (a regex)")
    unknown = set(item) - ARTEFACT_KEYS
    if unknown:
        raise ConfigError(f"{at}: {family_id}: unknown artefact key(s): {', '.join(sorted(map(str, unknown)))}")
    _check_regexes([item["name"], *([item["parent"]] if "parent" in item else [])], at, family_id)
    if "min_size" not in item:
        raise ConfigError(f"{at}: {family_id}: an artefact needs min_size (a name alone is no farm)")
    maximum = parse_size(item["max_size"], at) if "max_size" in item else None
    multiple = parse_size(item["multiple_of"], at) if "multiple_of" in item else None
    group_up = item.get("group_up", 0)
    if multiple == 0 or not isinstance(item.get("tied", False), bool) or not isinstance(group_up, int) \
            or isinstance(group_up, bool) or not 0 <= group_up <= 3:
        raise ConfigError(f"{at}: {family_id}: multiple_of > 0, tied true/false, group_up 0..3")
    return ArtefactSpec(kind=item["kind"], name=item["name"], min_bytes=parse_size(item["min_size"], at),
                        max_bytes=maximum, parent=str(item.get("parent", "")), multiple_of=multiple,
                        tied=bool(item.get("tied", False)), group_up=group_up)


def _examples(item: dict[str, Any], at: str, family: Family) -> dict[str, dict[str, list[str]]]:
    examples = _mapping(item, "examples", at, family.id)
    unknown = set(examples) - set(EXAMPLE_KINDS)
    if unknown:
        raise ConfigError(f"{at}: {family.id}: unknown example kind(s) {', '.join(sorted(map(str, unknown)))}")
    present = {"names": family.names, "node_names": family.node_names, "cmdline": family.cmdline,
               "wallets": family.wallets, "pools": family.pools, "ports": family.listen_ports + family.connect_ports, "env": family.env,
               "configs": family.configs, "files": family.artefacts}
    result = {}
    for kind, values in present.items():
        if not values:
            continue
        entry = examples.get(kind)
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), list) and entry[k]
                                                  for k in ("match", "no_match")):
            raise ConfigError(f"{at}: {family.id}: examples.{kind} needs match and no_match examples")
        result[kind] = {k: [str(v) for v in entry[k]] for k in ("match", "no_match")}
    return result


# ------------------------------------------------------------------ family -> rules


def family_rules(family: Family) -> list[Rule]:
    """The rules a family compiles into; their ids are AA-<FAMILY>-<SHAPE>."""
    sections: dict[str, tuple[str, dict[str, list[Any]]]] = {"NAME": ("names", {"values": family.names}), "NODE": ("node_names", {"values": family.node_names}),
                "CMD": ("cmdline", {"patterns": family.cmdline, "unless": family.unless}),
                "WALLET": ("wallets", {"patterns": family.wallets, "unless": family.unless}),
                "POOL": ("pools", {"entries": family.pools}),
                "PORT": ("ports", {"listen": family.listen_ports, "connect": family.connect_ports}),
                "ENV": ("env", {"keys": family.env}), "CONFIG": ("configs", {"specs": family.configs}),
                "FILE": ("files", {"specs": family.artefacts})}
    rules = []
    for shape, (section, params) in sections.items():
        if not any(v for k, v in params.items() if k != "unless"):      # `unless` alone matches nothing
            continue
        kind, severity, confidence = RULE_SHAPES[shape]
        examples = family.examples[section]
        rules.append(Rule(id=f"AA-{family.id}-{shape}", title=rule_title(family, shape), category=family.category,
                          severity=severity, confidence=confidence, reason=rule_reason(family, shape),
                          reference=family.reference, kind=kind, params={**params, "family": family.id},
                          examples_match=examples["match"], examples_no_match=examples["no_match"],
                          action=rule_action(family), origin=family.origin))
    return rules


def rule_title(family: Family, shape: str) -> str:
    what = {"NAME": "software", "NODE": "node software", "CMD": "command line", "WALLET": "wallet address",
            "POOL": "pool or service",
            "PORT": "default port in use", "ENV": "environment variable", "CONFIG": "configuration file",
            "FILE": "artefacts on disk"}[shape]
    return f"{family.name} {family.activity} {what}"


def rule_reason(family: Family, shape: str) -> str:
    name, activity = family.name, family.activity
    return {
        "NAME": f"The process {{field}} {{value!r}} is {{matched}}, {name} {activity} software.",
        "NODE": f"The process {{field}} {{value!r}} is {{matched}}, a {name} node or service (a network used for "
                f"{activity}).",
        "CMD": f"The command line uses {name} {activity} options ({{matched}}): {{value}}",
        "WALLET": f"The login given ({{value}}) is a {name} address ({{matched}}): the {activity} rewards are paid "
                  f"to it.",
        "POOL": f"The {{field}} names {{value!r}}, a known {name} pool or service ({{matched}}).",
        "PORT": f"{{value}}: {{matched}} is a default port of {name} {activity} software.",
        "ENV": f"The process environment sets {{matched}}, a setting of {name} {activity} software ({{value}}).",
        "CONFIG": f"A {name} configuration sits where that software reads it: {{value}} ({{matched}}).",
        "FILE": f"{name} artefacts on disk: {{value}} ({{matched}}).",
    }[shape]


def rule_action(family: Family) -> str:
    return (f"Find who runs the {family.name} software and whether it is a filed research system; otherwise stop "
            f"it and preserve its configuration, keys and artefact list as evidence.")
