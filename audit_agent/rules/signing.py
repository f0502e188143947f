"""Ed25519 signatures for rule pack archives (PyNaCl, i.e. libsodium; no home-made crypto).

An institution makes one key pair (`rules keygen`), keeps the secret key on its build machine,
and pins the public key on every host (/etc/audit-agent/update-key.pub). `rules sign` writes
`<pack>.tar.gz` and `<pack>.tar.gz.sig`; `rules update` refuses an archive whose signature does
not verify with the pinned key, so neither a compromised mirror nor a hand-typed hash can install
a pack.

File formats (one line each, base64; '#' lines are comments):
  public key   audit-agent-pack-key-ed25519 <32-byte key> [comment]
  secret key   audit-agent-pack-secret-ed25519 <32-byte seed>
  signature    audit-agent-pack-signature-ed25519 <key id> <64-byte signature>
The signature covers CONTEXT + the archive's bytes; the key id (first 16 hex digits of the public
key's SHA-256) only makes a wrong-key error readable: it is not trusted.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from audit_agent.yamlfile import ConfigError

PUBLIC_TAG = "audit-agent-pack-key-ed25519"
SECRET_TAG = "audit-agent-pack-secret-ed25519"
SIGNATURE_TAG = "audit-agent-pack-signature-ed25519"
CONTEXT = b"audit-agent rule pack archive v1\0"
DEFAULT_KEY = "/etc/audit-agent/update-key.pub"
MAX_KEY_FILE = 4096


def key_id(key: VerifyKey) -> str:
    return hashlib.sha256(bytes(key)).hexdigest()[:16]


def generate_keys(prefix: Path, comment: str = "") -> tuple[Path, Path]:
    """Write <prefix>.key (secret, 0600, never overwritten) and <prefix>.pub; return both paths."""
    secret_path, public_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for path in (secret_path, public_path):
        if path.exists():
            raise ConfigError(f"{path}: already exists; not overwriting a key")
    secret = SigningKey.generate()
    public = secret.verify_key
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"# audit-agent rule pack signing key {key_id(public)}: keep secret\n"
                     f"{SECRET_TAG} {base64.b64encode(bytes(secret)).decode()}\n")
    text = f"{PUBLIC_TAG} {base64.b64encode(bytes(public)).decode()} {comment or key_id(public)}".strip()
    public_path.write_text(text + "\n", encoding="ascii")
    return secret_path, public_path


def read_public_key(path: str | Path) -> VerifyKey:
    return VerifyKey(_read_key_line(Path(path), PUBLIC_TAG, "public key"))


def read_secret_key(path: str | Path) -> SigningKey:
    return SigningKey(_read_key_line(Path(path), SECRET_TAG, "secret key"))


def sign(data: bytes, key: SigningKey) -> str:
    """The signature file's text for the archive `data`."""
    signature = key.sign(CONTEXT + data).signature
    return f"{SIGNATURE_TAG} {key_id(key.verify_key)} {base64.b64encode(signature).decode()}\n"


def verify(data: bytes, signature_text: str, key: VerifyKey, where: str) -> None:
    """Raise ConfigError unless `signature_text` is a valid signature of `data` by `key`."""
    lines = [line.split() for line in signature_text.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1 or len(lines[0]) != 3 or lines[0][0] != SIGNATURE_TAG:
        raise ConfigError(f"{where}: not an audit-agent pack signature (expected one line '{SIGNATURE_TAG} KEYID SIG')")
    _, claimed, encoded = lines[0]
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: the signature is not base64") from None
    try:
        key.verify(CONTEXT + data, signature)
    except (BadSignatureError, ValueError):
        hint = f" (signed by key {claimed[:16]}, pinned key is {key_id(key)})" if claimed != key_id(key) else ""
        raise ConfigError(f"{where}: BAD SIGNATURE: the pack was not signed by the pinned key{hint}; "
                          "nothing installed") from None


def _read_key_line(path: Path, tag: str, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_FILE:
            raise ConfigError(f"{path}: too large to be a {what}")
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if fields[0] != tag or len(fields) < 2:
            raise ConfigError(f"{path}:{number}: not an audit-agent {what} (expected '{tag} BASE64')")
        return key_bytes(fields[1], f"{path}:{number}", what)
    raise ConfigError(f"{path}: no {what} in the file")


def key_bytes(text: str, where: str, what: str) -> bytes:
    """An ed25519 key written as base64: its 32 bytes, or a ConfigError that names the file and line."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{where}: the {what} must be 32 bytes of base64")
    return raw
