"""Atomic writes: a report is either complete or absent, never half-written; created 0640."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from audit_agent.model import (REPORT_SCHEMA_VERSION, SNAPSHOT_SCHEMA_VERSION, AuditReport, SchemaError, Snapshot,
                               check_schema_version, decode_json)
from audit_agent.safe_write import write_file
from audit_agent.yamlfile import ConfigError

REPORT_MODE = 0o640
Contract = TypeVar("Contract", Snapshot, AuditReport)
SCHEMA_VERSIONS: dict[type, str] = {Snapshot: SNAPSHOT_SCHEMA_VERSION, AuditReport: REPORT_SCHEMA_VERSION}


def write_atomic(path: str | Path, data: str | bytes, mode: int = REPORT_MODE) -> Path:
    """Write `data` whole or not at all, in a file created here (see safe_write); return where it went."""
    # backslashreplace: a lone surrogate (undecodable bytes from a hostile snapshot) is written as \udcff, never a crash
    payload = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    return write_file(path, payload, mode).path


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; any problem is a ConfigError naming the file (and line for syntax errors)."""
    return parse_json(read_bytes(path, what), path, what)


def read_bytes(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


def parse_json(raw: bytes, path: str | Path, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: {what} is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{path}: {what} is nested too deeply to be a {what}") from None


def read_snapshot(path: str | Path) -> Snapshot:
    return read_contract(path, Snapshot, "snapshot")


def read_report(path: str | Path) -> AuditReport:
    return read_contract(path, AuditReport, "report")


def read_contract(path: str | Path, cls: type[Contract], what: str) -> Contract:
    """The fast decoder first; when it refuses, the slow path says precisely why (line, version, field)."""
    raw = read_bytes(path, what)
    try:
        decoded = decode_json(raw, cls)
        if decoded is not None:
            check_schema_version({"schema_version": decoded.schema_version}, SCHEMA_VERSIONS[cls], what)
            return decoded
        return cls.from_dict(parse_json(raw, path, what))
    except SchemaError as exc:
        raise ConfigError(f"{path}: not a valid {what}: {exc}") from None
