"""Load and validate YAML rule packs; every error names file:line."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from audit_agent.model import CATEGORIES, Severity
from audit_agent.paths import data_dir
from audit_agent.rules.yara_files import check_yara, read_yara_files
from audit_agent.yamlfile import ConfigError, line_of, parse_yaml

KINDS = ("names", "cmdline", "wallet", "domains", "ports", "strings", "persistence", "frameworks", "research",
         "clients", "ownerless")
RESEARCH_SYSTEMS = ("pow_node", "devnet", "pool", "benchmark", "library", "farming")
DOMAIN_TYPES = ("pool", "proxy", "donate", "browser", "dyndns", "campaign")
DOMAIN_STATUSES = ("active", "defunct")
RULE_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")
REQUIRED = ("id", "title", "category", "severity", "confidence", "reason", "reference", "match", "examples")


class DomainEntry(Struct):
    domain: str
    type: str
    status: str
    match: str


class Rule(Struct):
    id: str
    title: str
    category: str
    severity: Severity
    confidence: float
    reason: str
    reference: str
    kind: str
    params: dict[str, Any]
    examples_match: list[str]
    examples_no_match: list[str]
    action: str = ""
    origin: str = ""          # file:line, for messages


class UpdatePolicy(Struct):
    """What the installed pack lets an update do without --force (pack.yaml `update:`)."""
    min_rules: int = 0                  # a new pack with fewer rules is refused (truncated or hollowed out)
    max_version_jump: int | None = None     # how far the first version component may grow in one update


class RulePack(Struct):
    name: str
    version: str
    description: str
    sha256: str
    files: list[str]
    rules: list[Rule] = field(default_factory=list)
    families: list[Any] = field(default_factory=list)       # rules.families.Family, one per families/*.yaml
    yara_sources: dict[str, str] = field(default_factory=dict)    # "yara/<file>" -> text, the pack's own
    update: UpdatePolicy = field(default_factory=UpdatePolicy)
    renamed: dict[str, str] = field(default_factory=dict)     # a former rule id -> its id now (pack.yaml)

    def by_kind(self, kind: str) -> list[Rule]:
        return [rule for rule in self.rules if rule.kind == kind]


def default_rules_dir() -> Path:
    return data_dir("rules")


def load_pack(path: str | Path | None = None) -> RulePack:
    """Load a rule pack from a directory of YAML files (or one file); raise ConfigError on any problem."""
    root = Path(path) if path else default_rules_dir()
    if root.is_dir():
        files = sorted(p for p in root.glob("*.yaml") if p.is_file())
    elif root.is_file():
        files = [root]
    else:
        raise ConfigError(f"{root}: rule pack not found")
    if not files:
        raise ConfigError(f"{root}: no *.yaml rule files")
    digest = hashlib.sha256()
    name, version, description = root.name, "0", ""
    update = UpdatePolicy()
    renamed: dict[str, str] = {}
    rules: list[Rule] = []
    for file in files:
        data = read_rule_file(file, digest)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"{file}:1: a rule file must be a mapping with 'rules:' or pack metadata")
        if "name" in data and "rules" not in data:
            name = _text(data, "name", file)
            version = str(data.get("version", "0"))
            description = str(data.get("description", ""))
            update = parse_update_policy(data.get("update"), file)
            renamed = parse_renamed(data.get("renamed"), file)
            continue
        unknown = set(data) - {"rules"}
        if unknown:
            raise ConfigError(f"{file}:{line_of(data, 1)}: unknown top-level key(s): {', '.join(sorted(map(str, unknown)))}")
        items = data.get("rules")
        if not isinstance(items, list):
            raise ConfigError(f"{file}:{line_of(data, 1)}: 'rules' must be a list")
        rules.extend(parse_rule(item, file) for item in items)
    from audit_agent.rules.families import family_rules   # families builds on this module's checks
    families, family_files = load_families(root / "families" if root.is_dir() else None, digest)
    for family in families:
        rules.extend(family_rules(family))
    _check_unique_ids(rules)
    _check_renamed(renamed, rules, root)
    yara_sources = read_yara_files(root, digest) if root.is_dir() else {}
    check_yara(yara_sources, root)
    return RulePack(name=name, version=version, description=description, sha256=digest.hexdigest(),
                    files=[f.name for f in files] + family_files + list(yara_sources), rules=rules, families=families,
                    yara_sources=yara_sources, update=update, renamed=renamed)


def parse_renamed(data: Any, file: Path) -> dict[str, str]:
    """pack.yaml `renamed:`: former id -> current id, so overlays written for an older pack keep working."""
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"{file}:{line_of(data, 1)}: renamed: maps a former rule id to its current id")
    return dict(data)


def _check_renamed(renamed: dict[str, str], rules: list[Rule], root: Path) -> None:
    ids = {rule.id for rule in rules}
    for old, new in renamed.items():
        if old in ids:
            raise ConfigError(f"{root}: renamed: {old} is still a rule id of the pack")
        if new not in ids:
            raise ConfigError(f"{root}: renamed: {old} -> {new}: no such rule")


def load_families(directory: Path | None, digest: Any) -> tuple[list[Any], list[str]]:
    """One family per families/*.yaml (coins, storage networks, token-sharing networks), in name order."""
    from audit_agent.rules.families import parse_family
    if directory is None or not directory.is_dir():
        return [], []
    files = sorted(p for p in directory.glob("*.yaml") if p.is_file())
    families = [parse_family(read_rule_file(file, digest), file) for file in files]
    seen: dict[str, str] = {}
    for family in families:
        if family.id in seen:
            raise ConfigError(f"{family.origin}: duplicate family id {family.id} (first at {seen[family.id]})")
        seen[family.id] = family.origin
    return families, [f"families/{f.name}" for f in files]


def parse_update_policy(data: Any, file: Path) -> UpdatePolicy:
    if data is None:
        return UpdatePolicy()
    where = f"{file}:{line_of(data, 1)}"
    if not isinstance(data, dict) or set(data) - {"min_rules", "max_version_jump"}:
        raise ConfigError(f"{where}: update: takes only min_rules and max_version_jump")
    for key in ("min_rules", "max_version_jump"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"{where}: update.{key} must be a whole number >= 0")
    return UpdatePolicy(min_rules=data.get("min_rules") or 0, max_version_jump=data.get("max_version_jump"))


def read_rule_file(file: Path, digest: Any) -> Any:
    """Read one rule file once: its bytes go into the pack hash, its text to the YAML parser."""
    try:
        raw = file.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    digest.update(file.name.encode() + b"\0" + raw)
    return parse_yaml(text, file)


def _check_unique_ids(rules: list[Rule]) -> None:
    seen: dict[str, str] = {}
    for rule in rules:
        if rule.id in seen:
            raise ConfigError(f"{rule.origin}: duplicate rule id {rule.id} (first at {seen[rule.id]})")
        seen[rule.id] = rule.origin


def parse_rule(item: Any, file: Path) -> Rule:
    if not isinstance(item, dict):
        raise ConfigError(f"{file}:{line_of(item)}: each rule must be a mapping")
    line = line_of(item)
    where = f"{file}:{line}"
    missing = [key for key in REQUIRED if key not in item]
    if missing:
        raise ConfigError(f"{where}: rule {item.get('id', '?')} is missing {', '.join(missing)}")
    rule_id = _text(item, "id", file)
    if not RULE_ID.match(rule_id):
        raise ConfigError(f"{where}: rule id {rule_id!r} must look like AA-NAME-001")
    category = _text(item, "category", file)
    if category not in CATEGORIES:
        raise ConfigError(f"{where}: {rule_id}: category {category!r} is not one of {', '.join(CATEGORIES)}")
    try:
        severity = Severity(item["severity"])
    except ValueError:
        raise ConfigError(f"{where}: {rule_id}: severity {item['severity']!r} is not one of "
                          f"{', '.join(s.value for s in Severity)}") from None
    confidence = item["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise ConfigError(f"{where}: {rule_id}: confidence must be a number between 0 and 1")
    match = item["match"]
    if not isinstance(match, dict) or match.get("kind") not in KINDS:
        raise ConfigError(f"{file}:{line_of(match, line)}: {rule_id}: match.kind must be one of {', '.join(KINDS)}")
    params = {key: value for key, value in match.items() if key != "kind"}
    _check_params(match["kind"], params, f"{file}:{line_of(match, line)}", rule_id)
    examples = item["examples"]
    if not isinstance(examples, dict):
        raise ConfigError(f"{file}:{line_of(examples, line)}: {rule_id}: examples must be a mapping with match and no_match")
    positives = _example_list(examples, "match", file, rule_id, line)
    negatives = _example_list(examples, "no_match", file, rule_id, line)
    reason = _text(item, "reason", file)
    try:
        reason.format(field="f", value="v", matched="m")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{where}: {rule_id}: reason template is invalid ({exc}); use {{field}}, {{value}}, {{matched}}") from None
    return Rule(id=rule_id, title=_text(item, "title", file), category=category, severity=severity,
                confidence=float(confidence), reason=reason, reference=_text(item, "reference", file),
                kind=match["kind"], params=params, examples_match=positives, examples_no_match=negatives,
                action=str(item.get("action", "")), origin=where)


def _text(item: dict[str, Any], key: str, file: Path) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{file}:{line_of(item)}: {key!r} must be a non-empty string")
    return value


def _example_list(examples: dict[str, Any], key: str, file: Path, rule_id: str, line: int) -> list[str]:
    values = examples.get(key)
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{file}:{line_of(examples, line)}: {rule_id}: examples.{key} needs at least one example")
    return [str(value) for value in values]


def _string_list(params: dict[str, Any], key: str, where: str, rule_id: str, required: bool = True) -> list[Any]:
    values = params.get(key, [] if not required else None)
    if not isinstance(values, list) or (required and not values):
        raise ConfigError(f"{where}: {rule_id}: match.{key} must be a non-empty list")
    return values


def _check_regexes(patterns: list[Any], where: str, rule_id: str) -> None:
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ConfigError(f"{where}: {rule_id}: pattern {pattern!r} must be a string")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{where}: {rule_id}: bad regex {pattern!r}: {exc}") from None


def _check_params(kind: str, params: dict[str, Any], where: str, rule_id: str) -> None:
    if kind in ("names",):
        _string_list(params, "values", where, rule_id)
    elif kind in ("cmdline", "persistence"):
        _check_regexes(_string_list(params, "patterns", where, rule_id), where, rule_id)
        _check_regexes(_string_list(params, "unless", where, rule_id, required=False), where, rule_id)
    elif kind == "frameworks":
        _string_list(params, "values", where, rule_id, required=False)
        _string_list(params, "generic", where, rule_id, required=False)
        _check_regexes(_string_list(params, "patterns", where, rule_id, required=False), where, rule_id)
        _check_regexes(_string_list(params, "libraries", where, rule_id, required=False), where, rule_id)
    elif kind == "research":
        _check_research(params, where, rule_id)
    elif kind == "clients":
        _string_list(params, "values", where, rule_id)
        _check_regexes(_string_list(params, "patterns", where, rule_id, required=False), where, rule_id)
        for port in _string_list(params, "ports", where, rule_id):
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ConfigError(f"{where}: {rule_id}: {port!r} is not a port number")
    elif kind == "ownerless":
        kernel_client_ports(params, where, rule_id)
    elif kind == "wallet":
        for entry in _string_list(params, "patterns", where, rule_id):
            if not isinstance(entry, dict) or not isinstance(entry.get("coin"), str) or "regex" not in entry:
                raise ConfigError(f"{where}: {rule_id}: wallet patterns need coin and regex")
            _check_regexes([entry["regex"]], f"{where.rsplit(':', 1)[0]}:{line_of(entry)}", rule_id)
    elif kind == "domains":
        for entry in _string_list(params, "entries", where, rule_id):
            _check_domain_entry(entry, where, rule_id)
    elif kind == "ports":
        for port in _string_list(params, "ports", where, rule_id) + _string_list(params, "generic", where, rule_id, False):
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ConfigError(f"{where}: {rule_id}: {port!r} is not a port number")
    elif kind == "strings":
        strings = _string_list(params, "strings", where, rule_id)
        minimum = params.get("min_matches", 1)
        if not isinstance(minimum, int) or isinstance(minimum, bool) or not 1 <= minimum <= len(strings):
            raise ConfigError(f"{where}: {rule_id}: min_matches must be between 1 and the number of strings")


def kernel_client_ports(params: dict[str, Any], where: str = "", rule_id: str = "") -> set[int]:
    """The ports of an `ownerless` rule's kernel_clients: numbers, or "first-last" ranges."""
    ports: set[int] = set()
    for entry in _string_list(params, "kernel_clients", where, rule_id):
        if isinstance(entry, str) and "-" in entry:
            first, _, last = entry.partition("-")
            if not (first.strip().isdigit() and last.strip().isdigit()) or not 0 < int(first) <= int(last) < 65536:
                raise ConfigError(f"{where}: {rule_id}: {entry!r} is not a port range (first-last)")
            ports.update(range(int(first), int(last) + 1))
        elif isinstance(entry, int) and not isinstance(entry, bool) and 0 < entry < 65536:
            ports.add(entry)
        else:
            raise ConfigError(f"{where}: {rule_id}: {entry!r} is not a port number or range")
    return ports


def _check_research(params: dict[str, Any], where: str, rule_id: str) -> None:
    if params.get("system") not in RESEARCH_SYSTEMS:
        raise ConfigError(f"{where}: {rule_id}: match.system must be one of {', '.join(RESEARCH_SYSTEMS)}")
    if not isinstance(params.get("software"), str) or not params["software"].strip():
        raise ConfigError(f"{where}: {rule_id}: match.software must name the software (shown in filing drafts)")
    programs = _string_list(params, "programs", where, rule_id, required=False)
    patterns = _string_list(params, "patterns", where, rule_id, required=False)
    if not programs and not patterns:
        raise ConfigError(f"{where}: {rule_id}: a research rule needs programs, patterns or both")
    for key in ("patterns", "requires", "unless"):
        _check_regexes(_string_list(params, key, where, rule_id, required=False), where, rule_id)
    for key in ("needs", "provides"):
        if key in params and (not isinstance(params[key], str) or not params[key].strip()):
            raise ConfigError(f"{where}: {rule_id}: match.{key} must be a label such as bitcoin-blocks")
    unknown = set(params) - {"system", "software", "programs", "patterns", "requires", "unless", "needs", "provides"}
    if unknown:
        raise ConfigError(f"{where}: {rule_id}: unknown research key(s) {', '.join(sorted(map(str, unknown)))}")


def _check_domain_entry(entry: Any, where: str, rule_id: str) -> None:
    at = f"{where.rsplit(':', 1)[0]}:{line_of(entry, 0) or where.rsplit(':', 1)[1]}"
    if not isinstance(entry, dict) or not isinstance(entry.get("domain"), str):
        raise ConfigError(f"{at}: {rule_id}: each domain entry needs a 'domain'")
    domain = entry["domain"]
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", domain):
        raise ConfigError(f"{at}: {rule_id}: {domain!r} is not a lower-case domain name")
    if entry.get("type") not in DOMAIN_TYPES:
        raise ConfigError(f"{at}: {rule_id}: {domain}: type must be one of {', '.join(DOMAIN_TYPES)}")
    if entry.get("status", "active") not in DOMAIN_STATUSES:
        raise ConfigError(f"{at}: {rule_id}: {domain}: status must be active or defunct")
    if entry.get("match", "suffix") not in ("suffix", "exact"):
        raise ConfigError(f"{at}: {rule_id}: {domain}: match must be suffix or exact")
    if entry.get("type") == "dyndns" and entry.get("match") != "exact":
        raise ConfigError(f"{at}: {rule_id}: {domain}: a dyndns entry must use match: exact")


def domain_entries(rule: Rule) -> list[DomainEntry]:
    return [DomainEntry(domain=e["domain"], type=e["type"], status=e.get("status", "active"),
                        match=e.get("match", "suffix")) for e in rule.params["entries"]]
