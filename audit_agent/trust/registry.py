"""The fleet's keys file: which public key each machine signs its reports with.

One host per line, as `audit-agent keys show` prints it on the host ('#' lines and blank lines are
comments):
  <machine id> audit-agent-report-key-ed25519 <base64 32-byte public key> [comment, e.g. the hostname]
`fleet --keys` takes such a file, or a directory whose *.keys and *.pub files are read in name order.
Any problem is a ConfigError naming the file and line: the fleet stops (exit 2) rather than verify
against a half-read registry.
"""
from __future__ import annotations

import re
from pathlib import Path

from nacl.signing import VerifyKey

from audit_agent.rules.signing import key_bytes
from audit_agent.yamlfile import ConfigError

PUBLIC_TAG = "audit-agent-report-key-ed25519"
MACHINE_ID = re.compile(r"[0-9a-f]{32}")
MAX_FILE = 4 << 20


def read_keys(source: str | Path) -> dict[str, VerifyKey]:
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".keys", ".pub") and p.is_file())
        if not files:
            raise ConfigError(f"{path}: no *.keys or *.pub file in the keys directory")
    else:
        files = [path]
    keys: dict[str, VerifyKey] = {}
    origin: dict[str, str] = {}
    for file in files:
        for where, machine, key in _lines(file):
            if machine in keys and bytes(keys[machine]) != bytes(key):
                raise ConfigError(f"{where}: machine id {machine} already has another key ({origin[machine]})")
            keys[machine], origin[machine] = key, where
    return keys


def _lines(path: Path) -> list[tuple[str, str, VerifyKey]]:
    try:
        if path.stat().st_size > MAX_FILE:
            raise ConfigError(f"{path}: too large to be a keys file")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read keys file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the keys file is not UTF-8 text") from None
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) < 3 or fields[1] != PUBLIC_TAG:
            raise ConfigError(f"{where}: expected 'MACHINE_ID {PUBLIC_TAG} BASE64 [comment]' "
                              "(the line `audit-agent keys show` prints)")
        if not MACHINE_ID.fullmatch(fields[0]):
            raise ConfigError(f"{where}: {fields[0][:40]!r} is not a machine id (32 lowercase hex digits)")
        found.append((where, fields[0], VerifyKey(key_bytes(fields[2], where, "public key"))))
    if not found:
        raise ConfigError(f"{path}: no key in the keys file")
    return found
