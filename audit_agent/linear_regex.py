"""Regexes that come from data (the rule pack, rules.d, the config's allowlist and filings) and run on text
other users control: compiled with RE2 where the pattern allows, so matching time is linear in the text.

Python's `re` backtracks: a pack pattern like `siad\\s.*-M\\s*\\S*h` costs quadratic time on a command line
that repeats `siad -` (145 ms at 16k characters, seconds at the 64k the agent keeps), and a pack written
by someone else can hide worse. RE2 (google-re2) runs in linear time, guaranteed by construction. Patterns
RE2 cannot express (lookaround, backreferences) and flags other than IGNORECASE stay with `re`;
`engine_of` says which engine a pattern got, so the regex benchmark measures what the agent runs.
"""
from __future__ import annotations

import re
from typing import Any

try:
    import re2
except ImportError:     # a platform without a google-re2 wheel: every pattern runs on `re`
    re2 = None


SURROGATE = re.compile(r"[\ud800-\udfff]")


class _Linear:
    """An RE2 pattern that also takes text with lone surrogates (undecodable bytes of a command line, kept
    by Python as surrogates, which RE2 cannot encode): each becomes U+FFFD, one code point for one, so
    every match position still points into the original text."""

    __slots__ = ("compiled", "pattern")

    def __init__(self, compiled: Any) -> None:
        self.compiled, self.pattern = compiled, compiled.pattern

    def _call(self, name: str, text: str, *args: Any) -> Any:
        try:
            return getattr(self.compiled, name)(text, *args)
        except UnicodeEncodeError:
            return getattr(self.compiled, name)(SURROGATE.sub("\ufffd", text), *args)

    def search(self, text: str, *args: Any) -> Any:
        return self._call("search", text, *args)

    def match(self, text: str, *args: Any) -> Any:
        return self._call("match", text, *args)

    def fullmatch(self, text: str, *args: Any) -> Any:
        return self._call("fullmatch", text, *args)

    def findall(self, text: str, *args: Any) -> Any:
        return self._call("findall", text, *args)

    def finditer(self, text: str, *args: Any) -> Any:
        return self._call("finditer", text, *args)

    def sub(self, repl: Any, text: str, *args: Any) -> Any:
        try:
            return self.compiled.sub(repl, text, *args)
        except UnicodeEncodeError:
            return self.compiled.sub(repl, SURROGATE.sub("\ufffd", text), *args)


def compile_linear(pattern: str, flags: int = 0) -> Any:
    """`pattern` compiled by RE2 when it can be, else by `re`; both answer search/match/fullmatch/findall/sub."""
    if re2 is not None and not flags & ~(re.IGNORECASE | re.UNICODE):     # UNICODE: the default for str
        options = re2.Options()
        options.case_sensitive = not flags & re.IGNORECASE
        options.log_errors = False          # an unsupported pattern is not an error: it goes to `re`
        try:
            return _Linear(re2.compile(pattern, options))
        except re2.error:
            pass
    return re.compile(pattern, flags)


def engine_of(compiled: Any) -> str:
    return "re2" if isinstance(compiled, _Linear) else "re"
