"""The local configuration: thresholds, allowlist, institution profile, filings registry path.

Read from a YAML file given with --config; every error names file:line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_agent.model import Severity
from audit_agent.yamlfile import ConfigError, LineDict, line_of, load_yaml

PROFILE_KEYS = ("institution", "department", "system", "responsible", "contact", "purpose")


@dataclass
class Thresholds:
    """When load becomes a signal. Load alone only asks for review; it never condemns."""
    cpu_busy_fraction: float = 0.8      # of the process's allowed CPUs, for the whole window
    min_cpu_percent: float = 90.0       # and at least this much of one core
    gpu_busy_percent: float = 90.0
    unexplained_cpu_percent: float = 50.0   # system CPU the visible processes do not explain (100 = one core)
    min_window_seconds: float = 2.0     # below this, load heuristics are not judged
    stratum_max_connections: float = 2.0        # a pool session (+ a fail-over) and nothing else
    stratum_max_bytes_per_second: float = 4096.0    # above this a connection is bulk data, not a pool
    stratum_count_loopback: float = 1.0         # 1: a 127.0.0.1 pool/proxy counts; 0: ignore loopback
    tls_session_min_cpu_percent: float = 5.0    # a long TLS session of an unknown program asks review above this
    lifetime_cpu_percent: float = 25.0  # average CPU since start (of one core) that counts as a long busy life
    lifetime_min_seconds: float = 60.0  # a lifetime average over a shorter life is not judged
    paused_fraction: float = 0.25       # window CPU below this share of the lifetime average: it slowed for us


@dataclass
class AllowEntry:
    reason: str
    exe: str = ""                # exact path or glob
    user: str = ""
    cmdline: str = ""            # regex, searched in the joined command line
    host: str = ""               # exact host name or glob
    origin: str = ""
    _cmdline_regex: re.Pattern[str] | None = None


@dataclass
class Policy:
    thresholds: Thresholds = field(default_factory=Thresholds)
    allowlist: list[AllowEntry] = field(default_factory=list)
    profile: dict[str, str] = field(default_factory=dict)
    filings_path: str = ""
    tuning_dir: str = ""            # rules.d overlay; "" = $AUDIT_AGENT_TUNING_DIR, else /etc/audit-agent/rules.d
    fail_on: Severity | None = None
    timezone: str = ""          # the institution's IANA zone; "" = the host's (audit_agent/timezone.py)
    research_severity: Severity = Severity.MEDIUM   # an unfiled mining-related research system
    source: str = ""


def load_policy(path: str | Path | None) -> Policy:
    if not path:
        return Policy()
    path = Path(path)
    data = load_yaml(path)
    if data is None:
        return Policy(source=str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping")
    known = {"thresholds", "allowlist", "profile", "filings", "fail_on", "timezone", "research_severity", "tuning_dir"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{path}:{line_of(data, 1)}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"expected {', '.join(sorted(known))}")
    policy = Policy(source=str(path))
    policy.thresholds = _thresholds(data.get("thresholds") or LineDict(), path)
    policy.allowlist = [_allow_entry(item, path) for item in _list(data, "allowlist", path)]
    policy.profile = _profile(data.get("profile") or LineDict(), path)
    filings = data.get("filings", "")
    if filings and not isinstance(filings, str):
        raise ConfigError(f"{path}:{line_of(data)}: filings must be a path to the registry YAML")
    if filings:
        policy.filings_path = str((path.parent / filings) if not Path(filings).is_absolute() else Path(filings))
    tuning_dir = data.get("tuning_dir", "")
    if tuning_dir and not isinstance(tuning_dir, str):
        raise ConfigError(f"{path}:{line_of(data)}: tuning_dir must be a path to the rules.d folder")
    if tuning_dir:
        policy.tuning_dir = str(path.parent / tuning_dir)
    if "fail_on" in data:
        try:
            policy.fail_on = Severity(data["fail_on"])
        except ValueError:
            raise ConfigError(f"{path}:{line_of(data)}: fail_on must be one of "
                              f"{', '.join(s.value for s in Severity)}") from None
    policy.timezone = _timezone(data, path)
    if "research_severity" in data:
        if data["research_severity"] not in (Severity.MEDIUM.value, Severity.HIGH.value):
            raise ConfigError(f"{path}:{line_of(data)}: research_severity must be medium or high")
        policy.research_severity = Severity(data["research_severity"])
    return policy


def _timezone(data: dict[str, Any], path: Path) -> str:
    """The `timezone` setting, checked now so a typo stops the scan with file:line, not mid-report."""
    from audit_agent.timezone import zone_by_name
    name = data.get("timezone", "")
    if name in ("", None):
        return ""
    if not isinstance(name, str):
        raise ConfigError(f"{path}:{line_of(data)}: timezone must be an IANA zone name such as Asia/Shanghai")
    try:
        zone_by_name(name)
    except ValueError as exc:
        raise ConfigError(f"{path}:{line_of(data)}: {exc}") from None
    return name


def _list(data: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise ConfigError(f"{path}:{line_of(data)}: {key} must be a list")
    return value


def _thresholds(data: Any, path: Path) -> Thresholds:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:{line_of(data)}: thresholds must be a mapping")
    thresholds = Thresholds()
    for key, value in data.items():
        if not hasattr(thresholds, str(key)):
            raise ConfigError(f"{path}:{line_of(data)}: unknown threshold {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{path}:{line_of(data)}: threshold {key} must be a non-negative number")
        setattr(thresholds, str(key), float(value))
    return thresholds


def _allow_entry(item: Any, path: Path) -> AllowEntry:
    if not isinstance(item, dict):
        raise ConfigError(f"{path}:{line_of(item)}: each allowlist entry must be a mapping")
    where = f"{path}:{line_of(item)}"
    unknown = set(item) - {"reason", "exe", "user", "cmdline", "host"}
    if unknown:
        raise ConfigError(f"{where}: unknown allowlist key(s) {', '.join(sorted(map(str, unknown)))}")
    if not isinstance(item.get("reason"), str) or not item["reason"].strip():
        raise ConfigError(f"{where}: each allowlist entry needs a reason")
    if not any(item.get(key) for key in ("exe", "user", "cmdline", "host")):
        raise ConfigError(f"{where}: an allowlist entry must name at least one of exe, user, cmdline, host")
    for key in ("exe", "user", "cmdline", "host"):
        if key in item and not isinstance(item[key], str):
            raise ConfigError(f"{where}: allowlist {key} must be a string")
    entry = AllowEntry(reason=item["reason"], exe=item.get("exe", ""), user=item.get("user", ""),
                       cmdline=item.get("cmdline", ""), host=item.get("host", ""), origin=where)
    if entry.cmdline:
        try:
            entry._cmdline_regex = re.compile(entry.cmdline)
        except re.error as exc:
            raise ConfigError(f"{where}: bad cmdline regex {entry.cmdline!r}: {exc}") from None
    return entry


def _profile(data: Any, path: Path) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:{line_of(data)}: profile must be a mapping")
    unknown = set(data) - set(PROFILE_KEYS)
    if unknown:
        raise ConfigError(f"{path}:{line_of(data)}: unknown profile key(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"expected {', '.join(PROFILE_KEYS)}")
    return {str(k): str(v) for k, v in data.items()}
