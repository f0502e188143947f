"""Compile a RulePack once into fast matchers: sets for names, ports and domains, regexes for patterns.

Cost grows with the text looked at, not with text x rules: names, ports and
domains are set lookups; the command-line patterns are first tried as one
combined regex and only the texts it hits are matched rule by rule.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from audit_agent.rules.loader import DomainEntry, Rule, RulePack, domain_entries

HOST_PATTERN = re.compile(r"(?<![\w.@-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62})(?![\w-])",
                          re.IGNORECASE)
LOGIN_FLAGS = {"-u", "--user", "--username", "--wallet", "-wal", "--wal", "-O", "--userpass", "--login",
               "-w", "--worker", "--address", "-user", "--dualuser", "-ewal", "--mining-address"}
COIN_PREFIXED_LOGIN = re.compile(r"^[A-Za-z]{2,6}:(.+)$")


@dataclass(frozen=True)
class Hit:
    rule: Rule
    field: str        # where: name, exe, argv0, cmdline, login, host, port, binary, persistence, config
    value: str        # what was looked at
    matched: str      # the indicator that matched


def basename(path: str) -> str:
    name = PureWindowsPath(path).name if "\\" in path else PurePosixPath(path).name
    name = name.lower()
    return name[:-4] if name.endswith(".exe") else name


class CompiledRules:
    """The pack's rules turned into lookups; build once per scan (or once per watch cycle)."""

    def __init__(self, pack: RulePack) -> None:
        self.pack = pack
        self.names: dict[str, Rule] = {}
        for rule in pack.by_kind("names"):
            for value in rule.params["values"]:
                self.names.setdefault(basename(str(value)), rule)
        self.cmdline = _PatternSet(pack.by_kind("cmdline"))
        self.persistence = _PatternSet(pack.by_kind("persistence"))
        self.wallets: list[tuple[Rule, str, re.Pattern[str]]] = [
            (rule, entry["coin"], re.compile(entry["regex"]))
            for rule in pack.by_kind("wallet") for entry in rule.params["patterns"]]
        self.domain_suffix: dict[str, tuple[Rule, DomainEntry]] = {}
        self.domain_exact: dict[str, tuple[Rule, DomainEntry]] = {}
        for rule in pack.by_kind("domains"):
            for entry in domain_entries(rule):
                table = self.domain_exact if entry.match == "exact" else self.domain_suffix
                table.setdefault(entry.domain, (rule, entry))
        self.pool_ports: dict[int, Rule] = {}
        self.generic_ports: set[int] = set()
        for rule in pack.by_kind("ports"):
            for port in rule.params["ports"]:
                self.pool_ports.setdefault(int(port), rule)
            self.generic_ports.update(int(p) for p in rule.params.get("generic", []))
        self.string_rules = pack.by_kind("strings")
        self.framework_names: set[str] = set()
        framework_patterns: list[str] = []
        for rule in pack.by_kind("frameworks"):
            self.framework_names.update(basename(str(v)) for v in rule.params.get("values", []))
            framework_patterns.extend(rule.params.get("patterns", []))
        self.framework_regex = re.compile("|".join(f"(?:{p})" for p in framework_patterns), re.IGNORECASE) \
            if framework_patterns else None

    # -- names
    def match_names(self, name: str, exe: str, argv0: str) -> list[Hit]:
        hits: dict[str, Hit] = {}
        for field, value in (("name", name), ("exe", exe), ("argv0", argv0)):
            if not value:
                continue
            rule = self.names.get(basename(value))
            if rule and rule.id not in hits:
                hits[rule.id] = Hit(rule, field, value, basename(value))
        return list(hits.values())

    # -- patterns
    def match_cmdline(self, text: str, field: str = "cmdline") -> list[Hit]:
        return self.cmdline.match(text, field)

    def match_persistence(self, text: str) -> list[Hit]:
        return self.persistence.match(text, "persistence")

    # -- wallets, only where a login is expected
    def match_wallets(self, logins: list[str], field: str = "login") -> list[Hit]:
        hits = []
        for login in logins:
            value = login.strip()
            coin_prefixed = COIN_PREFIXED_LOGIN.match(value)
            if coin_prefixed:
                value = coin_prefixed.group(1)
            address = re.split(r"[./+#]", value, maxsplit=1)[0]
            for rule, coin, regex in self.wallets:
                if regex.fullmatch(address):
                    hits.append(Hit(rule, field, login, f"{coin} wallet"))
                    break
        return hits

    # -- domains, wherever a host name appears
    def match_domains(self, text: str, field: str) -> list[Hit]:
        hits = []
        seen = set()
        for host in HOST_PATTERN.findall(text):
            host = host.lower().rstrip(".")
            if host in seen:
                continue
            seen.add(host)
            found = self.lookup_domain(host)
            if found:
                rule, entry = found
                hits.append(Hit(rule, field, host, f"{entry.domain} ({entry.type}, {entry.status})"))
        return hits

    def lookup_domain(self, host: str) -> tuple[Rule, DomainEntry] | None:
        host = host.lower().rstrip(".")
        if host in self.domain_exact:
            return self.domain_exact[host]
        labels = host.split(".")
        for start in range(len(labels) - 1):
            found = self.domain_suffix.get(".".join(labels[start:]))
            if found:
                return found
        return None

    # -- ports
    def pool_port_rule(self, port: int) -> Rule | None:
        if port in self.generic_ports:
            return None
        return self.pool_ports.get(port)

    # -- executable content
    def signature_strings(self) -> list[str]:
        """Every string the content scanner must look for, de-duplicated, in pack order."""
        seen: dict[str, None] = {}
        for rule in self.string_rules:
            for text in rule.params["strings"]:
                seen.setdefault(str(text), None)
        return list(seen)

    def match_strings(self, found: set[str], path: str) -> list[Hit]:
        hits = []
        for rule in self.string_rules:
            matched = [s for s in rule.params["strings"] if str(s) in found]
            if len(matched) >= rule.params.get("min_matches", 1):
                hits.append(Hit(rule, "binary", path, ", ".join(matched[:6])))
        return hits

    # -- known research frameworks
    def is_framework(self, name: str, exe: str, cmdline: str) -> bool:
        if basename(name) in self.framework_names or (exe and basename(exe) in self.framework_names):
            return True
        return bool(self.framework_regex and self.framework_regex.search(cmdline))


class _PatternSet:
    """Regex rules tried first as one combined expression, then one by one on a hit."""

    def __init__(self, rules: list[Rule]) -> None:
        self.entries: list[tuple[Rule, re.Pattern[str], re.Pattern[str] | None]] = []
        for rule in rules:
            combined = "|".join(f"(?:{p})" for p in rule.params["patterns"])
            unless = rule.params.get("unless") or []
            self.entries.append((rule, re.compile(combined, re.IGNORECASE),
                                 re.compile("|".join(f"(?:{p})" for p in unless), re.IGNORECASE) if unless else None))
        every = [f"(?:{p})" for rule in rules for p in rule.params["patterns"]]
        self.any = re.compile("|".join(every), re.IGNORECASE) if every else None

    def match(self, text: str, field: str) -> list[Hit]:
        if not self.any or not self.any.search(text):
            return []
        hits = []
        for rule, regex, unless in self.entries:
            found = regex.search(text)
            if found and not (unless and unless.search(text)):
                hits.append(Hit(rule, field, text, found.group(0)[:120]))
        return hits


def logins_from_argv(argv: list[str]) -> list[str]:
    """Values given to login/wallet flags: `-u X`, `--user=X`, `-O X:pass`."""
    logins = []
    for index, arg in enumerate(argv):
        flag, sep, inline = arg.partition("=")
        if flag in LOGIN_FLAGS:
            value = inline if sep else (argv[index + 1] if index + 1 < len(argv) else "")
            if flag in ("-O", "--userpass"):
                value = value.split(":", 1)[0]
            if value:
                logins.append(value)
    return logins
