"""Atomic writes: a report is either complete or absent, never half-written; created 0640."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from audit_agent.model import AuditReport, SchemaError, Snapshot
from audit_agent.yamlfile import ConfigError

REPORT_MODE = 0o640


def write_atomic(path: str | Path, data: str | bytes, mode: int = REPORT_MODE) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    # backslashreplace: a lone surrogate (undecodable bytes from a hostile snapshot) is written as \udcff, never a crash
    payload = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; any problem is a ConfigError naming the file (and line for syntax errors)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: {what} is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: {what} is nested too deeply to be a {what}") from None


def read_snapshot(path: str | Path) -> Snapshot:
    try:
        return Snapshot.from_dict(read_json(path, "snapshot"))
    except SchemaError as exc:
        raise ConfigError(f"{path}: not a valid snapshot: {exc}") from None


def read_report(path: str | Path) -> AuditReport:
    try:
        return AuditReport.from_dict(read_json(path, "report"))
    except SchemaError as exc:
        raise ConfigError(f"{path}: not a valid report: {exc}") from None
