"""Make untrusted text safe to show: redact secrets, cap lengths, strip control characters."""
from __future__ import annotations

import re
from typing import Any, Callable

REDACTED = "***"
# -p/--pass/--password VALUE: the pool password (wallets after -u are kept: they are evidence)
SECRET_FLAGS = {"-p", "--pass", "--password", "-pass", "--http-access-token", "--api-token", "--token",
                "--access-token", "--dualpass", "-pass2", "--api-password", "-epsw", "-dpsw", "--proxy-password"}
# user:password in one value (xmrig -O/--userpass): the login stays (a wallet is evidence), the password goes.
USERPASS_FLAGS = {"-O", "--userpass"}
# Both start only where a run of key (or scheme) characters starts: never re-scanning the same run from each
# of its characters, which made a 1 MiB word cost minutes (quadratic); linear on any text.
SECRET_ASSIGN = re.compile(
    r"(?i)(?<![a-z0-9_-])([a-z0-9_-]*(?:pass(?:word|wd)?|token|secret|api[_-]?key|access[_-]?key|auth)=)([^\s&;]+)")
URL_CREDENTIALS = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)")
# C0/C1 controls (ESC, BEL, NUL, ...), zero-width and bidi overrides, and lone surrogates (undecodable bytes)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def redact_argv(argv: list[str]) -> list[str]:
    """The argument list with pool passwords, tokens and key=value secrets replaced by ***."""
    redacted = []
    pending: Callable[[str], str] | None = None     # how to hide the next argument, the value of a flag
    for arg in argv:
        if pending is not None:
            redacted.append(pending(arg))
            pending = None
            continue
        flag, sep, value = arg.partition("=")
        hider = secret_hider(flag)
        if hider is None:
            redacted.append(redact_text(arg))
        elif sep:
            redacted.append(f"{flag}={hider(value)}")
        else:
            redacted.append(arg)
            pending = hider
    return redacted


def secret_hider(flag: str) -> Callable[[str], str] | None:
    """How the value of `flag` is hidden: all of it, only the password of user:password, or not at all."""
    if flag in USERPASS_FLAGS:
        return hide_password
    if flag in SECRET_FLAGS:
        return lambda _value: REDACTED
    return None


def hide_password(userpass: str) -> str:
    login, sep, _ = userpass.partition(":")
    return f"{login}:{REDACTED}" if sep else userpass


def redact_text(text: str) -> str:
    text = SECRET_ASSIGN.sub(lambda m: m.group(1) + REDACTED, text)
    return URL_CREDENTIALS.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)


def redact_flat(text: str) -> str:
    """A command line (or a piece of one) already joined into one string, secrets redacted."""
    return " ".join(redact_argv(text.split(" ")))


def redact_cmdline(argv: list[str], limit: int = 2000) -> str:
    return cap(" ".join(redact_argv(argv)), limit)


def cap(text: str, limit: int) -> str:
    """At most `limit` characters, control and bidi-override characters made visible as \\xNN."""
    text = CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}" if ord(m.group(0)) < 0x100 else f"\\u{ord(m.group(0)):04x}",
                       text or "")
    return text if len(text) <= limit else text[:limit] + f"…[{len(text) - limit} more chars]"


def redact_snapshot(snapshot: Any) -> None:
    """Other users' secrets out of a raw snapshot (`collect -o`), in place: pool passwords and tokens in
    command lines, URL credentials and key=value secrets in configs and persistence lines. Wallets and
    pool addresses stay: they are the evidence a later `scan --snapshot` judges."""
    for process in snapshot.processes:
        process.cmdline = redact_argv(process.cmdline)
    for config in snapshot.configs:
        config.urls = [redact_text(url) for url in config.urls]
        config.commands = [redact_flat(command) for command in config.commands]
    for entry in snapshot.persistence:
        entry.text = redact_flat(entry.text)
        entry.decoded = [redact_flat(command) for command in entry.decoded]
        entry.downloads = [redact_text(url) for url in entry.downloads]
    for family_config in snapshot.family_configs:
        family_config.urls = [redact_text(url) for url in family_config.urls]
