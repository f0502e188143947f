"""POST JSON AuditReports to a receiver; what cannot be delivered waits in a bounded on-disk spool.

Order: the spool is sent oldest first, then the new report, so a receiver sees
reports in the order they were made. A report is never lost silently: if the
spool is full the oldest file is dropped, and that is counted and logged.
"""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from audit_agent import __version__
from audit_agent.collect.safe_read import NotRegularFile, Refused, read_no_symlink
from audit_agent.output import write_atomic
from audit_agent.safe_write import make_private_dir
from audit_agent.yamlfile import ConfigError

RETRY_STATUS = {408, 425, 429}              # plus every 5xx
KEEP_STATUS = {401, 403}                    # our configuration is wrong (token): keep the report, retry later
MAX_SPOOLED_BYTES = 64 << 20                # a spooled report larger than this was not written by us
MAX_TOKEN_BYTES = 4096
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
    insecure: bool = False              # allow the token over plain http


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
    """The bearer token; a file other users may read (or a symlink, or not a plain file) is refused."""
    if not path:
        return None
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the push token: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: the push token file must be a plain file, not a symlink or special file")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: the push token file is readable by other users (mode "
                          f"{stat.S_IMODE(info.st_mode):04o}); chmod 600 it")
    if info.st_uid not in (os.geteuid(), 0):
        raise ConfigError(f"{path}: the push token file belongs to uid {info.st_uid}, not to this user or root")
    try:
        token = read_no_symlink(path, MAX_TOKEN_BYTES).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError, ValueError, NotRegularFile, Refused) as exc:
        raise ConfigError(f"{path}: cannot read the push token: {getattr(exc, 'strerror', None) or exc}") from None
    if not token or any(ch in token for ch in "\r\n"):
        raise ConfigError(f"{path}: the push token file must hold one non-empty line")
    return token


def safe_url(url: str) -> str:
    """The URL as it may be logged: no user name or password, no query string (tokens hide there too)."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?…" if parts.query else "")


def check_push(url: str, token_file: str | None, insecure: bool) -> str | None:
    """ConfigError for a push that would leak its credentials; else the token (or None)."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        raise ConfigError(f"push URL {safe_url(url)} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"push URL {safe_url(url)} must be an http:// or https:// URL with a host")
    token = read_token(token_file)
    if parts.scheme == "http" and (token or password) and not insecure and not is_loopback(parts.hostname):
        raise ConfigError(f"refusing to send credentials to {safe_url(url)} over plain http (anyone on the path "
                          "reads them): use https://, or --insecure to accept that")
    return token


def is_loopback(host: str) -> bool:
    """A receiver on this host (a local forwarder): plain http never leaves the machine."""
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def spooled(spool_dir: Path) -> list[Path]:
    """Spool files, oldest first (names start with a zero-padded nanosecond time); plain files only."""
    try:
        names = [p for p in spool_dir.iterdir() if p.suffix == ".json" and not p.name.startswith(".")
                 and stat.S_ISREG(os.lstat(p).st_mode)]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda p: p.name)


def read_spooled(path: Path) -> bytes:
    """A spooled report, never through a symlink or from a file that is not ours: FileNotFoundError if not."""
    try:
        info = os.lstat(path)
        if info.st_uid != os.geteuid():
            raise Refused(str(path))
        return read_no_symlink(path, MAX_SPOOLED_BYTES)
    except (NotRegularFile, Refused, ValueError):
        raise FileNotFoundError(f"{path}: not a spool file of ours") from None


def spool(payload: bytes, spool_dir: Path) -> Path:
    make_private_dir(spool_dir)
    path = spool_dir / f"{time.time_ns():020d}-{os.getpid()}.json"
    return write_atomic(path, payload)


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
    token = check_push(config.url, config.token_file, config.insecure)
    where = safe_url(config.url)
    own = session is None
    session = session or requests.Session()
    try:
        blocked = False
        for path in spooled(config.spool_dir):
            try:
                post_with_retries(session, config, read_spooled(path), token, sleep)
                result.sent += 1
            except _Failed as failure:
                if failure.keep:
                    result.errors.append(f"{where}: {failure} (spooled {path.name} kept)")
                    blocked = True
                    break
                result.rejected += 1
                result.errors.append(f"{where}: {failure}: dropped spooled {path.name}")
            except FileNotFoundError:
                continue                # another run sent it meanwhile (or it is not ours: never sent)
            path.unlink(missing_ok=True)
        if not blocked:
            try:
                post_with_retries(session, config, payload, token, sleep)
                result.sent += 1
            except _Failed as failure:
                result.errors.append(f"{where}: {failure}")
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
