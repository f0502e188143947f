"""`audit-agent rules update`: download, verify and atomically install a rule pack.

Format: a .tar.gz of the pack directory (pack.yaml with name and version, the
rule *.yaml files, optionally yara/*.yar), either at the archive's top level or
inside one top-level directory. A single YAML file is not accepted: it cannot
carry the pack's version next to its rules, and the version is what keeps an
old pack from replacing a newer one.

Steps, each refusing with a one-line ConfigError (exit 2) and leaving the
installed pack untouched:
  1. download with requests (TLS verified, timeout, size cap);
  2. compare the SHA-256 of the downloaded bytes with --sha256;
  3. extract into a new directory next to the target (safe members only);
  4. load_pack (schema) and check_examples (every rule's examples);
  5. refuse a version older than or equal to the active pack's;
  6. rename the current pack to <dir>.previous and the new one into place.
"""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import requests

from audit_agent.rules.active import installed_rules_dir
from audit_agent.rules.examples import check_examples
from audit_agent.rules.loader import RulePack, load_pack
from audit_agent.yamlfile import ConfigError

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
TIMEOUT_SECONDS = 30
PREVIOUS_SUFFIX = ".previous"


def update_pack(url: str, sha256: str, rules_dir: str | Path | None = None) -> str:
    """Install the pack at `url` into `rules_dir` (default: the installed rules dir); return a one-line message."""
    expected = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ConfigError("--sha256 must be 64 hexadecimal characters")
    target = Path(rules_dir) if rules_dir else installed_rules_dir()
    data = download(url)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ConfigError(f"{url}: SHA-256 mismatch: got {actual}, expected {expected}; nothing installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        root = extract(data, staging)
        pack = validate(root)
        current = current_pack(target)
        if current is not None and compare_versions(pack.version, current.version) <= 0:
            raise ConfigError(f"{url}: pack {pack.name} {pack.version} is not newer than the installed "
                              f"{current.name} {current.version}; nothing installed")
        swap(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    before = f" (previous {current.version} kept in {target.name}{PREVIOUS_SUFFIX})" if current else ""
    return f"installed rule pack {pack.name} {pack.version} ({len(pack.rules)} rules) in {target}{before}"


def download(url: str) -> bytes:
    if not url.lower().startswith(("https://", "http://")):
        raise ConfigError(f"{url}: only http(s) URLs are supported")
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT_SECONDS, verify=True) as response:
            if response.status_code != 200:
                raise ConfigError(f"{url}: download failed: HTTP {response.status_code}")
            buffer = io.BytesIO()
            for chunk in response.iter_content(64 * 1024):
                buffer.write(chunk)
                if buffer.tell() > MAX_DOWNLOAD_BYTES:
                    raise ConfigError(f"{url}: download larger than {MAX_DOWNLOAD_BYTES // 2**20} MiB; refused")
            return buffer.getvalue()
    except requests.RequestException as exc:
        raise ConfigError(f"{url}: download failed: {type(exc).__name__}") from None


def extract(data: bytes, staging: Path) -> Path:
    """Unpack regular files and directories only (no links, devices, absolute or '..' paths); return the pack root."""
    root = staging / "pack"
    root.mkdir()
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    except (tarfile.TarError, OSError, EOFError):
        raise ConfigError("the download is not a .tar.gz rule pack archive") from None
    unpacked = 0
    with archive:
        try:
            members = archive.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ConfigError(f"the rule pack archive is corrupt: {exc}") from None
        for member in members:
            name = Path(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise ConfigError(f"unsafe path in the rule pack archive: {member.name[:100]!r}")
            if member.isdir():
                (root / name).mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                raise ConfigError(f"the rule pack archive may hold only files and directories: {member.name[:100]!r}")
            unpacked += member.size
            if unpacked > MAX_UNPACKED_BYTES:
                raise ConfigError("the rule pack archive unpacks to more than 100 MiB; refused")
            source = archive.extractfile(member)
            if source is None:
                raise ConfigError(f"cannot read {member.name[:100]!r} from the rule pack archive")
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            with source, open(root / name, "wb") as out:
                shutil.copyfileobj(source, out)
    if (root / "pack.yaml").is_file():
        return root
    children = [p for p in root.iterdir()]
    if len(children) == 1 and (children[0] / "pack.yaml").is_file():
        return children[0]
    raise ConfigError("the archive has no pack.yaml at its top level or in a single top-level directory")


def validate(root: Path) -> RulePack:
    pack = load_pack(root)                   # ConfigError with file:line (inside the staging dir)
    problems = check_examples(pack)
    if problems:
        raise ConfigError(f"{len(problems)} rule example(s) fail, first: {problems[0]}; nothing installed")
    if not pack.rules:
        raise ConfigError("the rule pack has no rules; nothing installed")
    return pack


def current_pack(target: Path) -> RulePack | None:
    """The pack the new one must be newer than: the installed one, else the shipped default.

    A broken installed pack is not a reason to refuse its repair: then only the shipped one counts.
    """
    if (target / "pack.yaml").is_file():
        try:
            return load_pack(target)
        except ConfigError:
            pass
    try:
        return load_pack(None)
    except ConfigError:
        return None


def compare_versions(a: str, b: str) -> int:
    """-1, 0, 1 comparing dotted versions ("2026.11.0" < "2026.12.0" < "2026.12.0.1"); numbers compare as numbers."""
    def key(text: str) -> list[tuple[int, int | str]]:
        return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.\-+]", text.strip()) if part]
    left, right = key(a), key(b)
    width = max(len(left), len(right))
    left += [(0, 0)] * (width - len(left))
    right += [(0, 0)] * (width - len(right))
    return (left > right) - (left < right)


def swap(new_root: Path, target: Path) -> None:
    """Two renames on one filesystem: target -> target.previous, new -> target.

    Between them the target is briefly absent, and a scan in that instant falls
    back to the shipped pack; it never sees a half-written pack.
    """
    previous = target.with_name(target.name + PREVIOUS_SUFFIX)
    if target.exists():
        if previous.exists():
            shutil.rmtree(previous)
        target.rename(previous)
    try:
        new_root.rename(target)
    except OSError:
        if previous.exists() and not target.exists():
            previous.rename(target)          # put the old pack back
        raise
