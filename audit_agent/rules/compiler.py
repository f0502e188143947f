"""Compile a RulePack once into fast matchers: sets for names, ports and domains, regexes for patterns.

Cost grows with the text looked at, not with text x rules: names, ports and
domains are set lookups; the command-line patterns are first tried as one
combined regex and only the texts it hits are matched rule by rule.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Callable

from msgspec import Struct

from audit_agent.linear_regex import compile_linear
from audit_agent.redact import cap, redact_flat
from audit_agent.rules.loader import DomainEntry, Rule, RulePack, domain_entries
from audit_agent.rules.research import ResearchMatcher
from audit_agent.rules.tuning import Tuning, tuned_pack

HOST_PATTERN = re.compile(r"(?<![\w.@-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62})(?![\w-])",
                          re.IGNORECASE)
LOGIN_FLAGS = {"-u", "--user", "--username", "--wallet", "-wal", "--wal", "-O", "--userpass", "--login",
               "-w", "--worker", "--address", "-user", "--dualuser", "-ewal", "--mining-address",
               # newer coins' miners: xelis_miner, dynexsolve, zanod's stratum, rqiner, qli-Client settings
               "--miner-address", "-mining-address", "--stratum-miner-address", "-i", "--id",
               "--ClientSettings:PayoutId", "--ClientSettings:QubicAddress"}
COIN_PREFIXED_LOGIN = re.compile(r"^[A-Za-z]{2,6}:(.+)$")


class Hit(Struct, frozen=True):
    rule: Rule
    field: str        # where: name, exe, argv0, cmdline, login, host, port, binary, persistence, config
    value: str        # what was looked at
    matched: str      # the indicator that matched
    facts: tuple[tuple[str, str], ...] = ()     # what the reports phrase per language (a wallet's coin, a pool's domain)


@lru_cache(maxsize=8192)
def basename(path: str) -> str:
    """Lower-case file name without `.exe` (POSIX or Windows path); cached: hosts repeat their names."""
    if "\\" in path:
        name = PureWindowsPath(path).name
    else:
        name = path.rsplit("/", 1)[-1]
        if not name or name == ".":                 # trailing '/' or '/.': what PurePosixPath(path).name says
            name = PurePosixPath(path).name
    name = name.lower()
    return name[:-4] if name.endswith(".exe") else name


class CompiledRules:
    """The pack's rules turned into lookups; build once per scan (or once per watch cycle)."""

    def __init__(self, pack: RulePack, tuning: Tuning | None = None) -> None:
        self.fingerprint: str | None = None     # the pack cache's key of its files, when loaded through it
        self.tuning = tuning or Tuning()
        pack = tuned_pack(pack, self.tuning) if tuning else pack
        self.pack = pack
        self.names: dict[str, Rule] = {}
        for rule in pack.by_kind("names"):
            for value in rule.params["values"]:
                self.names.setdefault(basename(str(value)), rule)
        self.cmdline = _PatternSet(pack.by_kind("cmdline"))
        self.persistence = _PatternSet(pack.by_kind("persistence"))
        self.wallets: list[tuple[Rule, str, LazyRegex]] = [
            (rule, entry["coin"], LazyRegex(entry["regex"]))
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
        self.generic_runtimes: set[str] = set()
        framework_patterns: list[str] = []
        library_patterns: list[str] = []
        for rule in pack.by_kind("frameworks"):
            self.framework_names.update(basename(str(v)) for v in rule.params.get("values", []))
            self.generic_runtimes.update(basename(str(v)) for v in rule.params.get("generic", []))
            framework_patterns.extend(rule.params.get("patterns", []))
            library_patterns.extend(rule.params.get("libraries", []))
        self.research = ResearchMatcher(pack.by_kind("research"))
        self.kind_of = {rule.id: rule.kind for rule in pack.rules}
        self._domain_memo: dict[tuple[str, str], tuple[Hit, ...]] = {}
        self._unless: dict[str, re.Pattern[str]] = {}
        self.framework_regex = _alternation(framework_patterns)
        self.framework_library_regex = _alternation(library_patterns)
        # Known TLS clients (rules `clients`): the first such rule is the long-lived TLS session check.
        clients = pack.by_kind("clients")
        self.client_rule: Rule | None = clients[0] if clients else None
        self.client_names = {basename(str(v)) for rule in clients for v in rule.params["values"]}
        self.client_regex = _alternation([p for rule in clients for p in rule.params.get("patterns", [])])
        self.client_ports = {int(p) for rule in clients for p in rule.params["ports"]}
        # Ports of in-kernel clients (NFS, SMB, iSCSI, Ceph, DRBD): sockets no process holds, left alone.
        from audit_agent.rules.loader import kernel_client_ports
        self.kernel_client_ports: set[int] = set()
        for rule in pack.by_kind("ownerless"):
            self.kernel_client_ports |= kernel_client_ports(rule.params)
        from audit_agent.rules.family_match import FamilyMatchers
        self.families = FamilyMatchers(pack)

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
            found = next(((rule, coin) for address in wallet_candidates(login)
                          for rule, coin, regex in self.wallets if regex.fullmatch(address)), None)
            if found:
                hits.append(Hit(found[0], field, login, f"{found[1]} wallet", (("coin", found[1]),)))
        return hits

    def unless_matches(self, rule: Rule, text: str) -> bool:
        """A family's `unless` (its own tools' sub-commands that name an address without mining: `snarkos
        account verify --address aleo1..`) also holds for its wallet rule on that command line."""
        unless = rule.params.get("unless") if isinstance(rule.params, dict) else None
        if not unless:
            return False
        regex = self._unless.get(rule.id)
        if regex is None:
            regex = self._unless[rule.id] = re.compile("|".join(f"(?:{p})" for p in unless), re.IGNORECASE)
        return bool(regex.search(text))

    # -- domains, wherever a host name appears
    def match_domains(self, text: str, field: str) -> list[Hit]:
        """Known pool domains among the host names in `text`; identical texts are looked at once."""
        return remembered(self._domain_memo, (text, field), self._match_domains)

    def _match_domains(self, text: str, field: str) -> list[Hit]:
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
                hits.append(Hit(rule, field, host, f"{entry.domain} ({entry.type}, {entry.status})", (("domain", entry.domain),)))
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
    def is_framework(self, name: str, exe: str, cmdline: str, libraries: list[str] | tuple[str, ...] = ()) -> bool:
        """A known research workload: by a specific name, a command-line pattern, or its loaded libraries.

        A generic runtime (python, java) is not evidence by itself: miners are
        disguised as `python3 train.py`. It counts when a pattern or a loaded ML
        library (libtorch, libcudnn, ...) confirms it.
        """
        names = {basename(name), basename(exe) if exe else ""}
        if names & self.framework_names:
            return True
        if self.framework_regex and self.framework_regex.search(cmdline):
            return True
        return self.uses_framework_library(libraries)

    def is_generic_runtime(self, name: str, exe: str) -> bool:
        """python, java, ...: what most research code runs in, and what miners pose as."""
        names = {basename(name), basename(exe) if exe else ""}
        names |= {re.sub(r"[\d.]+$", "", n) for n in names}      # python3.11 -> python
        return bool(names & self.generic_runtimes)

    # -- known TLS clients
    def known_client(self, name: str, exe: str) -> str | None:
        """The client a process is (by its executable's basename or location; its name only when the
        executable is unknown), or None. The caller rules out executables in out-of-place paths."""
        if exe:
            if basename(exe) in self.client_names:
                return basename(exe)
            return exe if self.client_regex and self.client_regex.search(exe) else None
        return basename(name) if name and basename(name) in self.client_names else None

    def uses_framework_library(self, libraries: list[str] | tuple[str, ...]) -> bool:
        regex = self.framework_library_regex
        return bool(regex and any(regex.search(library) for library in libraries))


def _alternation(patterns: list[str]) -> re.Pattern[str] | None:
    joined = "|".join(f"(?:{p})" for p in patterns)
    return LazyRegex(joined, re.IGNORECASE) if patterns else None  # type: ignore[return-value]


class LazyRegex:
    """A regex compiled on first use, and pickled as its source: a pack loaded from the pack cache
    (pack_cache.py) compiles only the patterns a scan really reaches (most wallets and framework
    patterns, on a host with no miner, never)."""

    __slots__ = ("pattern", "flags", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern, self.flags = pattern, flags
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = compile_linear(self.pattern, self.flags)
        return getattr(compiled, name)

    def __getstate__(self) -> tuple[str, int]:
        return self.pattern, self.flags

    def __setstate__(self, state: tuple[str, int]) -> None:
        self.pattern, self.flags = state
        self._compiled = None


class _PatternSet:
    """Regex rules behind a literal prefilter, so the cost per text does not grow with the pattern count.

    Each pattern is parsed once for the literals it cannot match without (its
    "required" set: at least one of them must occur in any text it matches).
    A text is cut into its 3-character grams; only patterns whose literal has
    a gram in the text, and whose literal then really occurs, are candidates,
    and only their rules' regexes run. Patterns with no usable literal run
    on every text (as one combined regex). Non-ASCII text, where Unicode case
    folding could defeat a lower-case literal check, skips the prefilter.
    """

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = list(rules)
        self._compiled: dict[int, tuple[re.Pattern[str], re.Pattern[str] | None]] = {}    # on first candidacy
        self.by_gram: dict[str, list[tuple[str, int]]] = {}     # gram -> (literal, rule index)
        unfiltered: list[str] = []
        self.unfiltered_rules: list[int] = []
        for index, rule in enumerate(rules):
            for pattern in rule.params["patterns"]:
                literals = required_literals(pattern)
                if literals is None:
                    unfiltered.append(f"(?:{pattern})")
                    if index not in self.unfiltered_rules:
                        self.unfiltered_rules.append(index)
                    continue
                for literal in literals:
                    self.by_gram.setdefault(_rarest_gram(literal, self.by_gram), []).append((literal, index))
        self.unfiltered = LazyRegex("|".join(unfiltered), re.IGNORECASE) if unfiltered else None
        self._every = [f"(?:{p})" for rule in rules for p in rule.params["patterns"]]
        self._any: re.Pattern[str] | None = None
        self._memo: dict[tuple[str, str], tuple[Hit, ...]] = {}

    @property
    def any(self) -> re.Pattern[str] | None:
        """All patterns as one regex (only needed for non-ASCII text); compiled on first use."""
        if self._any is None and self._every:
            self._any = compile_linear("|".join(self._every), re.IGNORECASE)
        return self._any

    def regexes(self, index: int) -> tuple[re.Pattern[str], re.Pattern[str] | None]:
        """A rule's patterns (and `unless`) as one regex each, compiled the first time the rule is a candidate."""
        found = self._compiled.get(index)
        if found is None:
            rule = self.rules[index]
            unless = rule.params.get("unless") or []
            found = (compile_linear("|".join(f"(?:{p})" for p in rule.params["patterns"]), re.IGNORECASE),
                     compile_linear("|".join(f"(?:{p})" for p in unless), re.IGNORECASE) if unless else None)
            self._compiled[index] = found
        return found

    def candidates(self, text: str) -> list[int] | None:
        """Indexes of the rules that may match `text`, in pack order; None when the prefilter cannot judge."""
        if not text.isascii():
            return None
        low = text.lower()
        found: set[int] = set()
        grams = {low[i:i + 3] for i in range(len(low) - 2)}
        for gram in grams.intersection(self.by_gram) if len(grams) < len(self.by_gram) else \
                [g for g in self.by_gram if g in grams]:
            for literal, index in self.by_gram[gram]:
                if index not in found and literal in low:
                    found.add(index)
        if self.unfiltered is not None and self.unfiltered.search(text):
            found.update(self.unfiltered_rules)
        return sorted(found)

    def match(self, text: str, field: str) -> list[Hit]:
        """Hits of every rule in `text`. Identical texts (2,000 workers of one job, one command line) are
        matched once: the result is remembered, boundedly, for the life of the compiled pack."""
        if not self.rules:
            return []
        return remembered(self._memo, (text, field), self._match)

    def _match(self, text: str, field: str) -> list[Hit]:
        indexes = self.candidates(text)
        if indexes is None:
            if not self.any or not self.any.search(text):
                return []
            indexes = list(range(len(self.rules)))
        hits = []
        for index in indexes:
            rule = self.rules[index]
            regex, unless = self.regexes(index)
            found = regex.search(text)
            if found and not (unless and unless.search(text)):
                # Shown whole: the words the match touches, never a cut-off regex span; a pattern made of
                # lookaheads matches the empty string, so it shows the whole text. Redacted like a command line.
                hits.append(Hit(rule, field, text, cap(redact_flat(whole_words(text, found.start(), found.end())),
                                                       MAX_MATCHED)))
        return hits


MIN_LITERAL = 3
MEMO_ENTRIES = 8192         # distinct texts remembered per matcher; past it the memo starts over


def remembered(memo: dict[tuple[str, str], tuple[Hit, ...]], key: tuple[str, str],
               match: Callable[[str, str], list[Hit]]) -> list[Hit]:
    """match(*key), computed once per distinct key (bounded); a fresh list each time, so callers may change it."""
    known = memo.get(key)
    if known is None:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        known = memo[key] = tuple(match(*key))
    return list(known)


MAX_MATCHED = 200       # characters of matched text kept; cap() says how many more there were


def whole_words(text: str, start: int, end: int) -> str:
    """The whitespace-delimited words that text[start:end] touches; all of text for an empty match."""
    if start >= end:
        return text.strip()
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[start:end].strip()


def _rarest_gram(literal: str, by_gram: dict[str, list[tuple[str, int]]]) -> str:
    """The literal's 3-gram that indexes the fewest literals so far (spreads the index)."""
    grams = [literal[i:i + 3] for i in range(len(literal) - 2)]
    return min(grams, key=lambda g: len(by_gram.get(g, ())))


def required_literals(pattern: str) -> set[str] | None:
    """Lower-case literals of which any text matching `pattern` contains at least one; None if unknown.

    Sound by construction: only literal runs that every match must contain
    (sequence members, every branch of an alternation, repeats with a minimum
    of one, positive lookarounds) are used; anything else gives None.
    """
    try:
        parsed = _sre_parser().parse(pattern, re.IGNORECASE)
    except (re.error, RecursionError, ValueError):
        return None
    try:
        found = _sequence_literals(list(parsed), 0)
    except RecursionError:
        return None
    if not found or min(len(lit) for lit in found) < MIN_LITERAL or not all(lit.isascii() for lit in found):
        return None
    return found


def _sre_parser() -> Any:
    try:
        from re import _parser  # type: ignore[attr-defined]  # Python 3.11+
        return _parser
    except ImportError:         # Python 3.10
        import sre_parse
        return sre_parse


def _sre_opcodes() -> Any:
    """The parser's opcode constants: re._constants on 3.11+, sre_constants on 3.10 (which lacks the
    atomic and possessive opcodes; a sentinel stands in, so they are simply never seen there)."""
    try:
        from re import _constants as constants  # type: ignore[attr-defined]
    except ImportError:         # Python 3.10
        import sre_constants as constants
    missing = object()
    return {name: getattr(constants, name, missing) for name in
            ("ASSERT", "ATOMIC_GROUP", "BRANCH", "LITERAL", "MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT",
             "SUBPATTERN")}


def _better(first: set[str] | None, second: set[str] | None) -> set[str] | None:
    """The more selective of two required sets: longer shortest literal, then fewer literals."""
    if first is None:
        return second
    if second is None:
        return first
    def score(found: set[str]) -> tuple[int, int]:
        return (min(len(lit) for lit in found), -len(found))
    return second if score(second) > score(first) else first


def _sequence_literals(items: list, depth: int) -> set[str] | None:  # type: ignore[type-arg]
    ops = _sre_opcodes()
    ASSERT, ATOMIC_GROUP, BRANCH, LITERAL = ops["ASSERT"], ops["ATOMIC_GROUP"], ops["BRANCH"], ops["LITERAL"]
    MAX_REPEAT, MIN_REPEAT, POSSESSIVE_REPEAT = ops["MAX_REPEAT"], ops["MIN_REPEAT"], ops["POSSESSIVE_REPEAT"]
    SUBPATTERN = ops["SUBPATTERN"]
    if depth > 50:
        return None
    best: set[str] | None = None
    run: list[str] = []

    def flush() -> None:
        nonlocal best
        if run:
            best = _better(best, {"".join(run)})
            run.clear()

    for op, value in items:
        if op is LITERAL:
            run.append(chr(value).lower())
            continue
        flush()
        inner: set[str] | None = None
        if op is SUBPATTERN:
            inner = _sequence_literals(list(value[-1]), depth + 1)
        elif op is BRANCH:
            branches = [_sequence_literals(list(branch), depth + 1) for branch in value[1]]
            if all(branch is not None for branch in branches):
                inner = set().union(*branches)  # type: ignore[arg-type]
        elif op in (MAX_REPEAT, MIN_REPEAT, POSSESSIVE_REPEAT):
            low, _high, body = value
            if low >= 1:
                inner = _sequence_literals(list(body), depth + 1)
        elif op is ASSERT:                  # positive lookahead/lookbehind: its text is in the subject too
            inner = _sequence_literals(list(value[1]), depth + 1)
        elif op is ATOMIC_GROUP:
            inner = _sequence_literals(list(value), depth + 1)
        best = _better(best, inner)
    flush()
    return best


def wallet_candidates(login: str) -> list[str]:
    """The address inside a pool login: `[1]cfx:ADDR`, `COIN:ADDR.worker#ref`, `ADDR+diff`, `ADDR:worker`, `kaspa:q...`."""
    value = re.sub(r"^\[\d+\]", "", login.strip())
    candidates = [value, re.split(r"[./+#]", value, maxsplit=1)[0]]
    coin_prefixed = COIN_PREFIXED_LOGIN.match(value)
    if coin_prefixed:
        candidates.append(re.split(r"[./+#:]", coin_prefixed.group(1), maxsplit=1)[0])
    candidates.append(re.split(r"[./+#:]", value, maxsplit=1)[0])
    return list(dict.fromkeys(c for c in candidates if c))


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
