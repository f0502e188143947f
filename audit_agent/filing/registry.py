"""The registry of filed (approved and registered) research systems: read and check it.

The format stays backward compatible: every key added since the first registry (the scale's
gpu_memory_gib and storage_tib, kind, software, networks, observed, draft) is optional. An
error names file:line, including a date that does not exist (2026-02-30).
"""
from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from audit_agent.linear_regex import compile_linear
from audit_agent.yamlfile import ConfigError, key_line, line_of, load_yaml

FILING_KEYS = {"number", "approved_by", "project", "discipline", "responsible", "contact", "hosts", "users",
               "workloads", "scale", "valid_from", "valid_until", "notes",
               # optional, written by `audit-agent filing draft`: kept for the record, not judged on
               "kind", "software", "networks", "observed", "draft"}
SCALE_KEYS = ("cpu_cores", "gpus", "gpu_memory_gib", "storage_tib")
REQUIRED = ("number", "approved_by", "project", "discipline", "responsible")


class Filing(Struct):
    number: str
    approved_by: str
    project: str
    discipline: str
    responsible: str
    hosts: list[str]
    users: list[str]
    workloads: list[re.Pattern[str]]
    valid_from: dt.date
    valid_until: dt.date
    cpu_cores: float | None = None
    gpus: int | None = None
    gpu_memory_gib: float | None = None
    storage_tib: float | None = None
    kind: str = ""
    software: str = ""
    contact: str = ""
    origin: str = ""
    workload_texts: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"number": self.number, "approved_by": self.approved_by, "project": self.project,
                "discipline": self.discipline, "responsible": self.responsible, "contact": self.contact,
                "hosts": self.hosts, "users": self.users, "workloads": self.workload_texts,
                "cpu_cores": self.cpu_cores, "gpus": self.gpus, "gpu_memory_gib": self.gpu_memory_gib,
                "storage_tib": self.storage_tib, "kind": self.kind, "software": self.software,
                "valid_from": self.valid_from.isoformat(), "valid_until": self.valid_until.isoformat()}


def load_registry(path: str | Path) -> list[Filing]:
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("filings"), list):
        raise ConfigError(f"{path}:{line_of(data, 1)}: the registry must be a mapping with a 'filings' list")
    filings = [parse_filing(item, path) for item in data["filings"]]
    seen: dict[str, str] = {}
    for filing in filings:
        if filing.number in seen:
            raise ConfigError(f"{filing.origin}: duplicate filing number {filing.number} (first at {seen[filing.number]})")
        seen[filing.number] = filing.origin
    return filings


def parse_filing(item: Any, path: Path) -> Filing:
    where = f"{path}:{line_of(item)}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: each filing must be a mapping")
    unknown = set(item) - FILING_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown filing key(s) {', '.join(sorted(map(str, unknown)))}")
    missing = [key for key in REQUIRED if not isinstance(item.get(key), (str, int)) or not str(item.get(key)).strip()]
    if missing:
        raise ConfigError(f"{where}: filing needs {', '.join(repr(k) for k in missing)}"
                          + (" (a draft: complete it before filing)" if "observed" in item else ""))
    path_ = str(path)
    hosts, users, workloads = (_strings(item, key, path_) for key in ("hosts", "users", "workloads"))
    if not hosts:
        raise ConfigError(f"{where}: filing {item['number']} must list the hosts it covers")
    if not workloads:
        raise ConfigError(f"{where}: filing {item['number']} must list workload patterns (regex on exe or command line)")
    patterns = []
    for text in workloads:
        try:
            patterns.append(compile_linear(text, re.IGNORECASE))
        except re.error as exc:
            raise ConfigError(f"{path}:{key_line(item, 'workloads')}: bad workload regex {text!r}: {exc}") from None
    scale = item.get("scale") or {}
    if not isinstance(scale, dict) or set(scale) - set(SCALE_KEYS):
        raise ConfigError(f"{path}:{key_line(item, 'scale')}: scale must be a mapping of {', '.join(SCALE_KEYS)}")
    for key, value in scale.items():
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value < 0):
            raise ConfigError(f"{path}:{key_line(scale, key)}: scale.{key} must be a non-negative number")
    valid_from, valid_until = _date(item, "valid_from", path_), _date(item, "valid_until", path_)
    if valid_until < valid_from:
        raise ConfigError(f"{path}:{key_line(item, 'valid_until')}: valid_until {valid_until} is before "
                          f"valid_from {valid_from}")
    return Filing(number=str(item["number"]), approved_by=str(item["approved_by"]), project=str(item["project"]),
                  discipline=str(item["discipline"]), responsible=str(item["responsible"]),
                  contact=str(item.get("contact", "")), hosts=hosts, users=users, workloads=patterns,
                  workload_texts=workloads, valid_from=valid_from, valid_until=valid_until,
                  cpu_cores=float(scale["cpu_cores"]) if "cpu_cores" in scale else None,
                  gpus=int(scale["gpus"]) if "gpus" in scale else None,
                  gpu_memory_gib=float(scale["gpu_memory_gib"]) if "gpu_memory_gib" in scale else None,
                  storage_tib=float(scale["storage_tib"]) if "storage_tib" in scale else None,
                  kind=str(item.get("kind") or ""), software=str(item.get("software") or ""), origin=where)


def _strings(item: dict[str, Any], key: str, path: str) -> list[str]:
    value = item.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}:{key_line(item, key)}: {key} must be a list of strings")
    return value


def _date(item: dict[str, Any], key: str, path: str) -> dt.date:
    """A real date: YAML's own (2026-03-01, checked by the loader) or a quoted "YYYY-MM-DD"; the error
    points at the key's line."""
    where = f"{path}:{key_line(item, key)}"
    value = item.get(key)
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            if value.strip():
                raise ConfigError(f"{where}: {key} {value!r} is not a real date (YYYY-MM-DD: {exc})") from None
    raise ConfigError(f"{where}: {key} must be a date (YYYY-MM-DD)")


