"""Every regex that meets attacker text: the rule pack's patterns and the code's module-level patterns.

Shared by the linear-time fuzz test and bench/regex_linear.py.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
import time
from collections.abc import Iterator

import audit_agent

# Text the agent never runs a regex over, or never with attacker text of unbounded size
# (rule ids and domain names of the pack itself, SHA-256 strings typed by the admin).
NOT_ATTACKER_TEXT = {"audit_agent.rules.loader.RULE_ID"}


class BytesPattern:
    """A bytes pattern (one run over kernel tables and /proc files) driven with text, as the fuzz test drives
    every pattern: the text is encoded first, so its cost is that of the bytes the agent would read."""

    def __init__(self, compiled: re.Pattern[bytes]) -> None:
        self.compiled = compiled
        self.pattern = compiled.pattern.decode("latin-1")
        self.flags = compiled.flags

    def search(self, text: str) -> re.Match[bytes] | None:
        return self.compiled.search(text.encode("utf-8", "surrogateescape"))

    def finditer(self, text: str) -> Iterator[re.Match[bytes]]:
        return self.compiled.finditer(text.encode("utf-8", "surrogateescape"))


def code_regexes() -> Iterator[tuple[str, re.Pattern[str]]]:
    """(module.NAME, pattern) for every compiled pattern at the top level of an audit_agent module."""
    for info in pkgutil.walk_packages(audit_agent.__path__, "audit_agent."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            where = f"{info.name}.{name}"
            if isinstance(value, re.Pattern) and where not in NOT_ATTACKER_TEXT:
                yield where, (BytesPattern(value) if isinstance(value.pattern, bytes) else value)  # type: ignore[misc]


def pack_regexes() -> Iterator[tuple[str, re.Pattern[str]]]:
    """(rule id, pattern) for every regex in the default pack, compiled the way the compiler does (RE2 where
    the pattern allows, audit_agent/linear_regex.py), so the timing is of what the agent runs."""
    from audit_agent.linear_regex import compile_linear
    from audit_agent.rules.loader import load_pack
    for rule in load_pack().rules:
        for key in ("patterns", "unless", "libraries"):
            for index, entry in enumerate(rule.params.get(key) or []):
                source = entry.get("regex") if isinstance(entry, dict) else entry
                if isinstance(source, str):
                    flags = 0 if rule.kind == "wallet" else re.IGNORECASE
                    yield f"{rule.id}.{key}[{index}]", compile_linear(source, flags)


def all_regexes() -> list[tuple[str, re.Pattern[str]]]:
    seen: dict[tuple[str, int], str] = {}
    out = []
    for where, pattern in [*code_regexes(), *pack_regexes()]:
        key = (pattern.pattern, getattr(pattern, "flags", -1))
        if key not in seen:
            seen[key] = where
            out.append((where, pattern))
    return out


WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]+")
PUNCT = " \t\n=:/-.@|;&+,\"'[](){}<>\\$`*?!#%~^0123456789xX_"


def tokens(pattern: str) -> list[str]:
    """Literal pieces an attacker would repeat to make this regex work hard: its words and punctuation."""
    words = sorted(set(WORD.findall(pattern)))[:60]
    pieces = [w for w in words if len(w) <= 20]
    pieces += [f"{w} " for w in pieces[:20]] + [f"--{w}" for w in pieces[:10]] + [f"{w}=" for w in pieces[:10]]
    pieces += ["://", "a://b:", "stratum+tcp://", "-o ", " -", "| sh", "=x", "@", "0x", "4" * 8]
    return pieces + list(PUNCT)


def cost(pattern: re.Pattern[str], text: str, runs: int = 5) -> float:
    """Best-of-`runs` CPU seconds of this thread (time spent waiting for a busy CPU does not count) for what
    the agent does with a pattern: search, and find all (sub / findall)."""
    best = float("inf")
    for _ in range(runs):
        started = time.thread_time()
        pattern.search(text)
        for _match in pattern.finditer(text):
            pass
        best = min(best, time.thread_time() - started)
    return best


def grow(prefix: str, seed: str, suffix: str, length: int) -> str:
    body = (seed * (length // max(1, len(seed)) + 1))[:length]
    return prefix + body + suffix


def growth_ratio(pattern: re.Pattern[str], prefix: str, seed: str, suffix: str, small: int, factor: int,
                 tries: int = 3) -> tuple[float, float, float]:
    """(ratio, small time, big time) of the cost at factor×small vs small characters; the least of `tries`.

    A busy machine only ever adds time, so the least ratio over a few tries is the honest one."""
    best = (float("inf"), 0.0, 0.0)
    for _ in range(tries):
        t_small = cost(pattern, grow(prefix, seed, suffix, small))
        t_big = cost(pattern, grow(prefix, seed, suffix, small * factor))
        ratio = t_big / max(t_small, 1e-7)
        if ratio < best[0]:
            best = (ratio, t_small, t_big)
        if ratio < factor * 2:
            break
    return best
