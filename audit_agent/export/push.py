"""POST JSON AuditReports to a receiver; what cannot be delivered waits in a bounded on-disk spool.

Order: the spool is sent oldest first, then the new report, so a receiver sees
reports in the order they were made. A report is never lost silently: if the
spool is full the oldest file is dropped, and that is counted and logged.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from audit_agent import __version__
from audit_agent.output import write_atomic
from audit_agent.yamlfile import ConfigError

RETRY_STATUS = {408, 425, 429}              # plus every 5xx
KEEP_STATUS = {401, 403}                    # our configuration is wrong (token): keep the report, retry later
Sleep = Callable[[float], object]


@dataclass
class PushConfig:
    url: str
    spool_dir: Path
    token_file: str | None = None
    timeout: float = 10.0               # seconds, connect and read each
    retries: int = 3                    # attempts per report
    backoff: float = 1.0                # first wait; doubles each retry
    max_spool: int = 100                # files; the oldest is dropped beyond this
    verify: bool | str = True           # TLS verification on; a CA bundle path may be given


@dataclass
class PushResult:
    sent: int = 0                       # reports delivered in this call (spool + new)
    spooled: bool = False               # the new report went to the spool
    dropped: int = 0                    # spool files dropped for room
    rejected: int = 0                   # refused by the receiver for good (4xx), not kept
    pending: int = 0                    # spool files left
    errors: list[str] = field(default_factory=list)


class _Failed(Exception):
    def __init__(self, reason: str, keep: bool = True) -> None:
        super().__init__(reason)
        self.keep = keep                # False: the receiver refused this report for good


def read_token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the push token: {getattr(exc, 'strerror', None) or exc}") from None
    if not token or any(ch in token for ch in "\r\n"):
        raise ConfigError(f"{path}: the push token file must hold one non-empty line")
    return token


def spooled(spool_dir: Path) -> list[Path]:
    """Spool files, oldest first (names start with a zero-padded nanosecond time)."""
    try:
        names = [p for p in spool_dir.iterdir() if p.suffix == ".json" and not p.name.startswith(".")]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda p: p.name)


def spool(payload: bytes, spool_dir: Path) -> Path:
    spool_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    path = spool_dir / f"{time.time_ns():020d}-{os.getpid()}.json"
    write_atomic(path, payload)
    return path


def trim_spool(spool_dir: Path, max_files: int) -> list[Path]:
    """Drop the oldest files beyond max_files; return what was dropped."""
    files = spooled(spool_dir)
    dropped = files[:max(0, len(files) - max_files)]
    for path in dropped:
        path.unlink(missing_ok=True)
    return dropped


def post_once(session: requests.Session, config: PushConfig, payload: bytes, token: str | None) -> None:
    headers = {"Content-Type": "application/json", "User-Agent": f"audit-agent/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = session.post(config.url, data=payload, headers=headers, timeout=config.timeout,
                                verify=config.verify, allow_redirects=False)
    except requests.Timeout:
        raise _Failed(f"timed out after {config.timeout:g}s") from None
    except requests.RequestException as exc:
        raise _Failed(f"cannot connect: {type(exc).__name__}") from None
    status = response.status_code
    response.close()
    if 200 <= status < 300:
        return
    if status >= 500 or status in RETRY_STATUS or status in KEEP_STATUS:
        raise _Failed(f"HTTP {status}", keep=True)
    raise _Failed(f"HTTP {status} (rejected)", keep=False)


def post_with_retries(session: requests.Session, config: PushConfig, payload: bytes, token: str | None,
                      sleep: Sleep) -> None:
    """Up to config.retries attempts, waiting backoff, 2*backoff, ... between them (not after the last)."""
    for attempt in range(max(1, config.retries)):
        try:
            post_once(session, config, payload, token)
            return
        except _Failed as failure:
            if not failure.keep or attempt + 1 >= max(1, config.retries):
                raise
            if sleep(config.backoff * 2 ** attempt):    # a stop-aware sleep returns True when asked to stop
                raise


def deliver(payload: bytes, config: PushConfig, sleep: Sleep = time.sleep,
            session: requests.Session | None = None) -> PushResult:
    """Send the spool (oldest first) and then `payload`; spool `payload` if anything is undeliverable.

    Raises ConfigError only for an unreadable token file; network trouble is in the result.
    OSError from the spool (full disk) propagates to the caller, which logs it.
    """
    result = PushResult()
    token = read_token(config.token_file)
    own = session is None
    session = session or requests.Session()
    try:
        blocked = False
        for path in spooled(config.spool_dir):
            try:
                post_with_retries(session, config, path.read_bytes(), token, sleep)
                result.sent += 1
            except _Failed as failure:
                if failure.keep:
                    result.errors.append(f"{config.url}: {failure} (spooled {path.name} kept)")
                    blocked = True
                    break
                result.rejected += 1
                result.errors.append(f"{config.url}: {failure}: dropped spooled {path.name}")
            except FileNotFoundError:
                continue                # another run sent it meanwhile
            path.unlink(missing_ok=True)
        if not blocked:
            try:
                post_with_retries(session, config, payload, token, sleep)
                result.sent += 1
            except _Failed as failure:
                result.errors.append(f"{config.url}: {failure}")
                if failure.keep:
                    blocked = True
                else:
                    result.rejected += 1
        if blocked:
            spool(payload, config.spool_dir)
            result.spooled = True
            dropped = trim_spool(config.spool_dir, config.max_spool)
            result.dropped = len(dropped)
            if dropped:
                result.errors.append(f"spool full ({config.max_spool} files): dropped {len(dropped)} oldest report(s)")
    finally:
        if own:
            session.close()
    result.pending = len(spooled(config.spool_dir))
    return result
