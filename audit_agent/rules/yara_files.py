"""The pack's own YARA rules (<pack>/yara/*.yar): read with the pack, hashed with it, checked when it
loads and compiled for the executable scan.

The active pack is whole: an updated pack or `--rules DIR` brings its YARA files with it, a broken
one stops the load with file:line (never a silent fall-back to the built-in scanner), and the pack
hash in the report covers them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from audit_agent.yamlfile import ConfigError

SUFFIXES = (".yar", ".yara")
MAX_FILE_BYTES = 4 * 1024 * 1024
SIGNATURE_RULE = "audit_agent_signature_strings"
_LINE = re.compile(r"^line (\d+): (.*)$", re.S)


def yara_module() -> Any:
    """yara-python, or None where it cannot be imported (the built-in string scanner then runs alone)."""
    try:
        import yara
    except ImportError:
        return None
    return yara


def read_yara_files(root: Path, digest: Any) -> dict[str, str]:
    """'yara/<name>' -> source text for every YARA file of the pack directory, in name order; each file's
    bytes go into the pack hash under that name, so changing a .yar changes the pack's sha256."""
    folder = root / "yara"
    if not folder.is_dir():
        return {}
    sources: dict[str, str] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()):
        name = f"yara/{path.name}"
        try:
            raw = path.read_bytes()
            if len(raw) > MAX_FILE_BYTES:
                raise ConfigError(f"{path}: YARA file larger than {MAX_FILE_BYTES // 2**20} MiB")
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        digest.update(name.encode() + b"\0" + raw)
        sources[name] = text
    return sources


def check_yara(sources: dict[str, str], root: Path) -> None:
    """Compile each file on its own; the first error is a ConfigError naming file:line."""
    yara = yara_module()
    if yara is None or not sources:
        return
    for name, text in sources.items():
        try:
            yara.compile(source=text)
        except yara.SyntaxError as exc:
            found = _LINE.match(str(exc))
            where, message = (f"{root / name}:{found.group(1)}", found.group(2)) if found else (str(root / name), str(exc))
            raise ConfigError(f"{where}: YARA: {message.strip()}") from None
        except yara.Error as exc:
            raise ConfigError(f"{root / name}: YARA: {exc}") from None


def compile_for_scan(sources: dict[str, str], strings: list[str]) -> Any:
    """One compiled rule set: the pack's YARA files (one namespace each) plus the signature strings as a
    generated rule. None without yara-python or with nothing to compile."""
    yara = yara_module()
    if yara is None:
        return None
    compiled = {f"pack_{i}": text for i, text in enumerate(sources.values())}
    if strings:
        compiled["signatures"] = signature_rule(strings)
    return yara.compile(sources=compiled) if compiled else None


def signature_rule(strings: list[str]) -> str:
    """One YARA rule holding every signature string as hex (no escaping questions), matching any of them."""
    lines = [f"    $s{i} = {{ {text.encode('utf-8').hex(' ')} }}" for i, text in enumerate(strings) if text]
    return "rule " + SIGNATURE_RULE + " {\n  strings:\n" + "\n".join(lines) + "\n  condition:\n    any of them\n}\n"
