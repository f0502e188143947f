"""The local configuration: thresholds, allowlist, institution profile, filings registry path.

Read from a YAML file given with --config; every error names file:line.
"""
from __future__ import annotations

import fnmatch
import math
import re
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from audit_agent.linear_regex import compile_linear
from audit_agent.model import Severity
from audit_agent.yamlfile import ConfigError, LineDict, key_line, line_of, load_yaml

PROFILE_KEYS = ("institution", "department", "system", "responsible", "contact", "purpose")
# What `fail_on` takes: the same values as `scan --fail-on` (cli.SEVERITIES); "never": exit 0 whatever is found.
FAIL_ON_VALUES = (*(s.value for s in Severity), "never")
# Thresholds that are shares of something (0..1), percentages of one bounded whole (0..100), or a 0/1 switch.
FRACTIONS = ("cpu_busy_fraction", "paused_fraction")
PERCENT_OF_WHOLE = ("gpu_busy_percent",)
SWITCHES = ("stratum_count_loopback",)
# Probes for "this pattern matches everything": an allowlist entry that matches all of them narrows nothing.
PROBE_EXES = ("/usr/bin/xmrig", "/tmp/.x/kworker", "/home/alice/a b/miner", "/opt/research/bin/run", "/dev/shm/x")
PROBE_CMDLINES = ("/tmp/xmrig -o stratum+tcp://pool.example:3333 -u 4AbC", "kworker/0:1", "python3 train.py --gpus 2",
                  "/usr/sbin/sshd -D", "./x", "java -jar app.jar")


class Thresholds(Struct):
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


class AllowEntry(Struct):
    reason: str
    exe: str = ""                # exact path or glob
    user: str = ""
    cmdline: str = ""            # regex, searched in the joined command line
    host: str = ""               # exact host name or glob
    origin: str = ""
    allow_all: bool = False      # the institution means an entry that matches every finding (on its hosts)
    _cmdline_regex: re.Pattern[str] | None = None


class AcceptUnreadable(Struct):
    """A process the scan is known not to be able to read (a sandboxed init, a confined container runtime):
    its coverage gap is accepted, with the institution's reason, and no longer makes the audit incomplete."""
    reason: str
    exe: str = ""                # exact path or glob; matches only when the executable link could be read
    name: str = ""               # exact process name (comm); the process chooses it, so prefer exe
    origin: str = ""

    def matches(self, exe: str, name: str) -> bool:
        if self.exe and not (exe and fnmatch.fnmatchcase(exe, self.exe)):
            return False
        if self.name and self.name != name:
            return False
        return bool(self.exe or self.name)


class Policy(Struct):
    thresholds: Thresholds = field(default_factory=Thresholds)
    allowlist: list[AllowEntry] = field(default_factory=list)
    accept_unreadable: list[AcceptUnreadable] = field(default_factory=list)
    profile: dict[str, str] = field(default_factory=dict)
    filings_path: str = ""
    tuning_dir: str = ""            # rules.d overlay; "" = $AUDIT_AGENT_TUNING_DIR, else /etc/audit-agent/rules.d
    fail_on: Severity | None = None     # with fail_on_set: None is `fail_on: never`
    fail_on_set: bool = False
    timezone: str = ""          # the institution's IANA zone; "" = the host's (audit_agent/timezone.py)
    research_severity: Severity = Severity.MEDIUM   # an unfiled mining-related research system
    source: str = ""

    def fail_on_or(self, default: Severity | None) -> Severity | None:
        """The file's fail_on (None for never) when it sets one, else `default`."""
        return self.fail_on if self.fail_on_set else default


def load_policy(path: str | Path | None) -> Policy:
    if not path:
        return Policy()
    path = Path(path)
    data = load_yaml(path)
    if data is None:
        return Policy(source=str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping")
    known = {"thresholds", "allowlist", "accept_unreadable", "profile", "filings", "fail_on", "timezone",
             "research_severity", "tuning_dir"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{path}:{line_of(data, 1)}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"expected {', '.join(sorted(known))}")
    policy = Policy(source=str(path))
    policy.thresholds = _thresholds(_mapping(data, "thresholds", path), path)
    policy.allowlist = [_allow_entry(item, path, near=key_line(data, "allowlist"))
                        for item in _list(data, "allowlist", path)]
    policy.accept_unreadable = [_accept_unreadable(item, path, near=key_line(data, "accept_unreadable"))
                                for item in _list(data, "accept_unreadable", path)]
    policy.profile = _profile(_mapping(data, "profile", path), path)
    filings = data.get("filings", "")
    if filings and not isinstance(filings, str):
        raise ConfigError(f"{path}:{key_line(data, 'filings')}: filings must be a path to the registry YAML")
    if filings:
        policy.filings_path = str((path.parent / filings) if not Path(filings).is_absolute() else Path(filings))
    tuning_dir = data.get("tuning_dir", "")
    if tuning_dir and not isinstance(tuning_dir, str):
        raise ConfigError(f"{path}:{key_line(data, 'tuning_dir')}: tuning_dir must be a path to the rules.d folder")
    if tuning_dir:
        policy.tuning_dir = str(path.parent / tuning_dir)
    if "fail_on" in data:
        policy.fail_on = _fail_on(data, path)
        policy.fail_on_set = True
    policy.timezone = _timezone(data, path)
    if "research_severity" in data:
        if data["research_severity"] not in (Severity.MEDIUM.value, Severity.HIGH.value):
            raise ConfigError(f"{path}:{key_line(data, 'research_severity')}: research_severity must be medium or high")
        policy.research_severity = Severity(data["research_severity"])
    return policy


def _fail_on(data: dict[str, Any], path: Path) -> Severity | None:
    """The same values as `scan --fail-on`; YAML reads a bare no/off/false as a boolean, so say so."""
    value = data["fail_on"]
    if value == "never":
        return None
    if isinstance(value, str) and value in FAIL_ON_VALUES:
        return Severity(value)
    hint = " (write never, not a yes/no value)" if isinstance(value, bool) else ""
    raise ConfigError(f"{path}:{key_line(data, 'fail_on')}: fail_on must be one of {', '.join(FAIL_ON_VALUES)}{hint}")


def _mapping(data: dict[str, Any], key: str, path: Path) -> dict[Any, Any]:
    """data[key] as a mapping (empty when absent), refused with the key's line when it is something else."""
    value = data.get(key)
    if value is None:
        empty = LineDict()
        empty.line = key_line(data, key)
        return empty
    if not isinstance(value, dict):
        raise ConfigError(f"{path}:{key_line(data, key)}: {key} must be a mapping")
    return value


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
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}:{key_line(data, key)}: {key} must be a list")
    return value


def _thresholds(data: Any, path: Path) -> Thresholds:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:{line_of(data)}: thresholds must be a mapping")
    thresholds = Thresholds()
    for key, value in data.items():
        where = f"{path}:{key_line(data, key)}"
        if not isinstance(key, str) or key.startswith("_") or not hasattr(thresholds, key):
            raise ConfigError(f"{where}: unknown threshold {key!r}")
        if key in SWITCHES and isinstance(value, bool):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}: threshold {key} must be a non-negative number, not {_shown(value)}")
        if key in FRACTIONS and value > 1:
            raise ConfigError(f"{where}: threshold {key} is a fraction between 0 and 1 (0.8 = 80 %), not {value}")
        if key in PERCENT_OF_WHOLE and value > 100:
            raise ConfigError(f"{where}: threshold {key} is a percentage between 0 and 100, not {value}")
        if key in SWITCHES and value not in (0, 1):
            raise ConfigError(f"{where}: threshold {key} is 1 (on) or 0 (off), not {value}")
        setattr(thresholds, key, float(value))
    return thresholds


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, (str, bool, int, float)) or value is None else f"a {type(value).__name__}"


def _allow_entry(item: Any, path: Path, scoped: bool = False, near: int = 0) -> AllowEntry:
    """One allowlist entry. An entry that would allow every finding (no narrowing field, `exe: "*"`, a cmdline
    regex that matches anything such as `.*`, or only a host) is refused unless it says `allow_all: true`.
    `scoped`: a rules.d allow, already narrowed to its rule ids. `near`: the list's line, for an item that is
    no mapping (YAML keeps no line for a scalar)."""
    if not isinstance(item, dict):
        raise ConfigError(f"{path}:{line_of(item, near)}: each allowlist entry must be a mapping")
    where = f"{path}:{line_of(item)}"
    fields = ("exe", "user", "cmdline", "host")
    unknown = set(item) - {"reason", *fields} - (set() if scoped else {"allow_all"})
    if unknown:
        raise ConfigError(f"{where}: unknown allowlist key(s) {', '.join(sorted(map(str, unknown)))}")
    if not isinstance(item.get("reason"), str) or not item["reason"].strip():
        raise ConfigError(f"{where}: each allowlist entry needs a reason")
    for key in fields:
        if key in item and not isinstance(item[key], str):
            raise ConfigError(f"{path}:{key_line(item, key)}: allowlist {key} must be a string")
    allow_all = item.get("allow_all", False)
    if not isinstance(allow_all, bool):
        raise ConfigError(f"{path}:{key_line(item, 'allow_all')}: allow_all must be true or false")
    if not any(item.get(key) for key in fields) and (scoped or not allow_all):
        raise ConfigError(f"{where}: an allowlist entry must name at least one of exe, user, cmdline, host"
                          + ("" if scoped else " (or say allow_all: true to allow every finding)"))
    entry = AllowEntry(reason=item["reason"], exe=item.get("exe", ""), user=item.get("user", ""),
                       cmdline=item.get("cmdline", ""), host=item.get("host", ""), origin=where, allow_all=allow_all)
    if entry.cmdline:
        try:
            entry._cmdline_regex = compile_linear(entry.cmdline)
        except re.error as exc:
            raise ConfigError(f"{path}:{key_line(item, 'cmdline')}: bad cmdline regex {entry.cmdline!r}: {exc}") from None
    if not scoped and not allow_all:
        broad = match_all_fields(entry)
        narrowing = [key for key in ("exe", "user", "cmdline") if getattr(entry, key) and key not in broad]
        if not narrowing:
            what = (", ".join(f"{key} {getattr(entry, key)!r} matches everything" for key in broad) if broad
                    else "a host narrows only where, not what")
            raise ConfigError(f"{where}: this allowlist entry would allow every finding ({what}); narrow it by exe, "
                              "user or cmdline, or say allow_all: true if that is meant")
    return entry


def match_all_fields(entry: AllowEntry) -> list[str]:
    """The entry's fields that narrow nothing: a glob or regex that every probe matches."""
    broad = []
    if entry.exe and all(fnmatch.fnmatchcase(probe, entry.exe) for probe in PROBE_EXES):
        broad.append("exe")
    if entry._cmdline_regex is not None and all(entry._cmdline_regex.search(probe) for probe in PROBE_CMDLINES):
        broad.append("cmdline")
    if entry.host and all(fnmatch.fnmatchcase(probe, entry.host) for probe in ("cn-117", "login01", "x")):
        broad.append("host")
    return broad


def _accept_unreadable(item: Any, path: Path, near: int = 0) -> AcceptUnreadable:
    """One accepted unreadable process: exe (path or glob) and/or name (exact), and the institution's reason."""
    if not isinstance(item, dict):
        raise ConfigError(f"{path}:{line_of(item, near)}: each accept_unreadable entry must be a mapping "
                          "(exe or name, and reason)")
    where = f"{path}:{line_of(item)}"
    unknown = set(item) - {"exe", "name", "reason"}
    if unknown:
        raise ConfigError(f"{where}: unknown accept_unreadable key(s) {', '.join(sorted(map(str, unknown)))}; "
                          "expected exe, name, reason")
    for key in ("exe", "name", "reason"):
        if key in item and not isinstance(item[key], str):
            raise ConfigError(f"{path}:{key_line(item, key)}: accept_unreadable {key} must be a string")
    if not item.get("reason", "").strip():
        raise ConfigError(f"{where}: each accept_unreadable entry needs a reason (why the gap is acceptable)")
    if not item.get("exe") and not item.get("name"):
        raise ConfigError(f"{where}: an accept_unreadable entry names the process by exe (path) or name")
    entry = AcceptUnreadable(reason=item["reason"].strip(), exe=item.get("exe", ""), name=item.get("name", ""),
                             origin=where)
    if entry.exe and all(fnmatch.fnmatchcase(probe, entry.exe) for probe in PROBE_EXES):
        raise ConfigError(f"{path}:{key_line(item, 'exe')}: accept_unreadable exe {entry.exe!r} matches every "
                          "program; name the executable")
    return entry


def _profile(data: Any, path: Path) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:{line_of(data)}: profile must be a mapping")
    unknown = set(data) - set(PROFILE_KEYS)
    if unknown:
        raise ConfigError(f"{path}:{line_of(data)}: unknown profile key(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"expected {', '.join(PROFILE_KEYS)}")
    for key, value in data.items():
        if isinstance(value, (list, dict)):
            raise ConfigError(f"{path}:{key_line(data, key)}: profile {key} must be text")
    return {str(k): str(v) for k, v in data.items() if v is not None}
