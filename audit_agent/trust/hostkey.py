"""The host's report signing key and machine id.

The key is made once (`audit-agent keys init`, or the first `scan --sign` / `watch --sign`) and kept in
the state directory as <state dir>/report-signing.key: created by safe_write (O_EXCL, O_NOFOLLOW, fchmod
0600, never replacing an existing key), read only when it is a regular file owned by this user that no
other user can read or write. Its public half is registered with the fleet (`audit-agent keys show`
prints the keys-file line).

File format (one line, base64; '#' lines are comments):
  audit-agent-report-secret-ed25519 <32-byte seed>
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from pathlib import Path

from nacl.signing import SigningKey

from audit_agent.trust.registry import PUBLIC_TAG
from audit_agent.trust.signature import key_id
from audit_agent.yamlfile import ConfigError

SECRET_TAG = "audit-agent-report-secret-ed25519"
KEY_NAME = "report-signing.key"
MAX_FILE = 4096
MACHINE_ID = re.compile(r"[0-9a-f]{32}")


def default_key_path() -> Path:
    from audit_agent.rules.active import state_dir
    return state_dir() / KEY_NAME


def machine_id(etc_root: str | os.PathLike[str] = "/etc") -> str:
    """/etc/machine-id (32 lowercase hex digits): the id the fleet keys a host by."""
    path = Path(etc_root) / "machine-id"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            text = handle.read(MAX_FILE).decode("ascii", "replace").strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the machine id: {exc.strerror or exc}") from None
    if not MACHINE_ID.fullmatch(text):
        raise ConfigError(f"{path}: not a machine id (expected 32 lowercase hex digits)")
    return text


def create_key(path: Path) -> SigningKey:
    """Make a new key at `path` (0600, in a 0700 folder made if missing); FileExistsError if one is there."""
    from audit_agent.safe_write import make_private_dir, write_file
    make_private_dir(path.parent, mode=0o700)
    key = SigningKey.generate()
    text = (f"# audit-agent report signing key {key_id(key.verify_key)}: keep secret, root only\n"
            f"{SECRET_TAG} {base64.b64encode(bytes(key)).decode()}\n")
    write_file(path, text.encode("ascii"), mode=0o600, replace=False)
    return key


def load_key(path: Path) -> SigningKey:
    """The key at `path`; ConfigError (one line) if it is missing, not ours, readable by others or malformed."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no report signing key; make one with `audit-agent keys init`") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the report signing key: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise ConfigError(f"{path}: the report signing key must be a regular file owned by uid {os.geteuid()}")
        if info.st_mode & 0o077:
            raise ConfigError(f"{path}: the report signing key is open to other users (mode "
                              f"{stat.S_IMODE(info.st_mode):04o}); it must be 0600")
        raw = handle.read(MAX_FILE + 1)
    if len(raw) > MAX_FILE:
        raise ConfigError(f"{path}: too large to be a report signing key")
    for number, line in enumerate(raw.decode("ascii", "replace").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        try:
            seed = base64.b64decode(fields[1], validate=True) if fields[0] == SECRET_TAG and len(fields) == 2 else b""
        except (binascii.Error, ValueError):
            seed = b""
        if len(seed) != 32:
            raise ConfigError(f"{path}:{number}: not a report signing key (expected '{SECRET_TAG} BASE64')")
        return SigningKey(seed)
    raise ConfigError(f"{path}: no report signing key in the file")


def load_or_create(path: Path) -> tuple[SigningKey, bool]:
    """The key at `path`, made now if there is none; (key, created)."""
    if not os.path.lexists(path):
        try:
            return create_key(path), True
        except FileExistsError:         # another first run made it meanwhile: use that one
            pass
    return load_key(path), False


def public_line(key: SigningKey, machine: str, comment: str = "") -> str:
    """The keys-file line that registers this host with the fleet: MACHINE_ID TAG BASE64 [comment]."""
    public = base64.b64encode(bytes(key.verify_key)).decode()
    clean = "".join(ch for ch in comment if ch.isprintable() and not ch.isspace())[:100]
    return f"{machine} {PUBLIC_TAG} {public} {clean}".rstrip()


def signing_identity(etc_root: str = "/etc") -> tuple[SigningKey, str]:
    """(key, machine id) for `--sign`; the key is made on first use, and that is said on stderr."""
    import sys
    machine = machine_id(etc_root)
    path = default_key_path()
    key, created = load_or_create(path)
    if created:
        print(f"audit-agent: made the report signing key {path}; register this host with the fleet: "
              "audit-agent keys show", file=sys.stderr)
    return key, machine
