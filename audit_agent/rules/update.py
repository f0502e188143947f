"""`audit-agent rules update` / `rules rollback`: verify, install and undo signed rule packs.

Format: a .tar.gz of the pack directory (pack.yaml with name and version, the
rule *.yaml files, optionally yara/*.yar), either at the archive's top level or
inside one top-level directory, with a detached signature `<archive>.sig`
(see rules/signing.py). The source is an http(s) URL or a local file (an
air-gapped cluster copies both files in). A single YAML file is not accepted:
it cannot carry the pack's version next to its rules, and the version is what
keeps an old pack from replacing a newer one.

Steps, each refusing with a one-line ConfigError (exit 2) and leaving the
installed pack untouched:
  1. read the archive and its signature (TLS verified, timeout, size cap);
  2. verify the signature with the pinned public key (and --sha256, if given);
  3. extract into a new directory next to the target (safe members only);
  4. load_pack (schema, YARA) and check_examples (every rule's examples);
  5. refuse a version older than the active pack's or than one rolled back from;
     the same version with the same content is "up to date" (exit 0, for timers);
  6. unless --force: refuse fewer rules than the active pack's update.min_rules,
     or a first version component that grows by more than update.max_version_jump;
  7. rename the current pack to <dir>.previous and the new one into place.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import requests

from audit_agent.rules.active import installed_rules_dir
from audit_agent.rules.examples import check_examples
from audit_agent.rules.loader import RulePack, load_pack
from audit_agent.rules.signing import DEFAULT_KEY, read_public_key, verify
from audit_agent.yamlfile import ConfigError

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
TIMEOUT_SECONDS = 30
PREVIOUS_SUFFIX = ".previous"
HELD_BACK_SUFFIX = ".held-back"


def update_pack(source: str, signature: str | None = None, key: str | Path | None = None,
                rules_dir: str | Path | None = None, sha256: str | None = None, force: bool = False) -> str:
    """Install the signed pack at `source` into `rules_dir` (default: the installed rules dir); return a one-line message."""
    pinned = read_public_key(key or os.environ.get("AUDIT_AGENT_UPDATE_KEY") or DEFAULT_KEY)
    target = Path(rules_dir) if rules_dir else installed_rules_dir()
    data = fetch(source, MAX_DOWNLOAD_BYTES)
    signature_source = signature or source + ".sig"
    verify(data, fetch(signature_source, 4096).decode("utf-8", "replace"), pinned, signature_source)
    if sha256 is not None:
        check_sha256(data, sha256, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        root = extract(data, staging)
        pack = validate(root)
        current = current_pack(target)
        if current is not None and compare_versions(pack.version, current.version) == 0 \
                and pack.sha256 == current.sha256:
            return f"rule pack {pack.name} {pack.version} is already installed in {target}: up to date"
        check_allowed(pack, current, held_back(target), force, source)
        swap(root, target)
        held_back_file(target).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    before = f" (previous {current.version} kept for `rules rollback`)" if current else ""
    return f"installed rule pack {pack.name} {pack.version} ({len(pack.rules)} rules) in {target}{before}"


def check_allowed(pack: RulePack, current: RulePack | None, held: str | None, force: bool, source: str) -> None:
    if current is not None and compare_versions(pack.version, current.version) <= 0:
        raise ConfigError(f"{source}: pack {pack.name} {pack.version} is not newer than the installed "
                          f"{current.name} {current.version}; nothing installed")
    if held is not None and compare_versions(pack.version, held) <= 0 and not force:
        raise ConfigError(f"{source}: pack {pack.version} is not newer than {held}, which was rolled back; "
                          "nothing installed (--force to install it anyway)")
    if current is None or force:
        return
    policy = current.update
    if len(pack.rules) < policy.min_rules:
        raise ConfigError(f"{source}: pack {pack.version} has {len(pack.rules)} rules, fewer than the "
                          f"{policy.min_rules} the installed pack requires; nothing installed (--force to install it anyway)")
    jump = first_number(pack.version) - first_number(current.version)
    if policy.max_version_jump is not None and jump > policy.max_version_jump:
        raise ConfigError(f"{source}: version {pack.version} jumps too far from {current.version} "
                          f"(more than {policy.max_version_jump}); nothing installed (--force to install it anyway)")


def rollback(rules_dir: str | Path | None = None) -> str:
    """Put <dir>.previous back in place (the current pack becomes the previous one) and remember the
    version rolled back from, so a timer does not install it again."""
    target = Path(rules_dir) if rules_dir else installed_rules_dir()
    previous = target.with_name(target.name + PREVIOUS_SUFFIX)
    if not (previous / "pack.yaml").is_file():
        raise ConfigError(f"{previous}: no previous rule pack to roll back to")
    old = load_pack(previous)
    undone = current_pack(target) if (target / "pack.yaml").is_file() else None
    parking = target.with_name(f".{target.name}.rollback-{os.getpid()}")
    if target.exists():
        target.rename(parking)
    previous.rename(target)
    if parking.exists():
        parking.rename(previous)
    if undone is not None:
        held_back_file(target).write_text(undone.version + "\n", encoding="utf-8")
    after = f"; {undone.version} kept as previous and held back from updates" if undone else ""
    return f"rolled back to rule pack {old.name} {old.version} in {target}{after}"


def held_back_file(target: Path) -> Path:
    return target.with_name(target.name + HELD_BACK_SUFFIX)


def held_back(target: Path) -> str | None:
    try:
        text = held_back_file(target).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def check_sha256(data: bytes, sha256: str, source: str) -> None:
    expected = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ConfigError("--sha256 must be 64 hexadecimal characters")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ConfigError(f"{source}: SHA-256 mismatch: got {actual}, expected {expected}; nothing installed")


def fetch(source: str, limit: int) -> bytes:
    """An http(s) URL, or a local file (a path or file://) for air-gapped hosts; at most `limit` bytes."""
    if source.lower().startswith(("https://", "http://")):
        return download(source, limit)
    path = Path(source[len("file://"):] if source.startswith("file://") else source)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ConfigError(f"{source}: larger than {limit} bytes; refused")
    return data


def download(url: str, limit: int = MAX_DOWNLOAD_BYTES) -> bytes:
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT_SECONDS, verify=True) as response:
            if response.status_code != 200:
                raise ConfigError(f"{url}: download failed: HTTP {response.status_code}")
            buffer = io.BytesIO()
            for chunk in response.iter_content(64 * 1024):
                buffer.write(chunk)
                if buffer.tell() > limit:
                    raise ConfigError(f"{url}: download larger than {limit} bytes; refused")
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


def first_number(version: str) -> int:
    found = re.match(r"\s*(\d+)", version)
    return int(found.group(1)) if found else 0


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


def build_archive(root: Path) -> bytes:
    """A reproducible .tar.gz of a pack directory (sorted, mtime 0, root-owned, no links): the same pack
    always gives the same bytes, so a signature can be checked against a rebuild."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                           and "__pycache__" not in p.parts and not p.name.startswith(".")):
            info = tarfile.TarInfo(f"{root.name}/{path.relative_to(root).as_posix()}")
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
