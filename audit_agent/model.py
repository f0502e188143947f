"""Plain data of the audit: the Snapshot (raw evidence) and the AuditReport (judgement).

Each class is a msgspec.Struct: msgspec (de)serialises them without looking at them first, and a Struct
class costs ~0.04 ms to make where a dataclass cost ~1.3 ms (Python 3.11 compiles each dataclass's
methods from source): 40 ms of every run's start for these 32 classes.

Both serialise to JSON with `to_dict()` and come back with `from_dict()` (or straight from JSON
bytes with `decode_json()`, the fast path that audit_agent.output tries first); their
`schema_version` lets a reader refuse a newer major version with a clear message.
"""
from __future__ import annotations

import enum
from typing import Any, TypeVar

import msgspec
from msgspec import Struct, field
from msgspec import field as make_field     # Evidence has a field named `field`

SNAPSHOT_SCHEMA_VERSION = "1.0"
REPORT_SCHEMA_VERSION = "1.0"


class SchemaError(ValueError):
    """A snapshot or report that cannot be read (corrupt, wrong shape, newer major version)."""


class CoverageStatus(str, enum.Enum):
    OK = "ok"
    PARTIAL = "partial"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"


class Severity(str, enum.Enum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return SEVERITY_ORDER.index(self)


SEVERITY_ORDER = [Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]


class Verdict(str, enum.Enum):
    COMPLIANT = "compliant"
    NEEDS_REVIEW = "needs_review"
    NON_COMPLIANT = "non_compliant"
    INCOMPLETE = "incomplete"


class FindingStatus(str, enum.Enum):
    OPEN = "open"                                   # counts against the host
    REGISTERED = "registered"                       # covered by a valid filing
    REGISTRATION_EXPIRED = "registration_expired"   # a filing matched but is no longer valid
    OUTSIDE_REGISTRATION = "outside_registration"   # a filing matched the workload but not host/user/scale
    ALLOWLISTED = "allowlisted"                     # approved in the local config
    UNFILED = "unfiled"                             # a mining-related research system without a filing


# Findings with these statuses count against the host (the verdict, exit codes, metrics, fleets).
COUNTED_STATUSES = (FindingStatus.OPEN, FindingStatus.UNFILED, FindingStatus.REGISTRATION_EXPIRED,
                    FindingStatus.OUTSIDE_REGISTRATION)
# What a finding or rule is about; rule packs and metrics use the same list.
# research: mining-related research systems (issue10). storage_farming: proof-of-space/storage networks (Chia,
# Filecoin, ...); resource_sharing: DePIN clients that rent out GPUs for tokens. Both need the same filing as a
# miner. Append new categories at the end.
CATEGORIES = ("miner", "network", "stealth", "persistence", "gpu", "load", "tuning", "research", "storage_farming",
              "resource_sharing")


# ---------------------------------------------------------------- snapshot parts


class CoverageDetail(Struct):
    """One fact about what a check could not see: a code of reports/i18n/coverage.<lang>.yaml and its values."""
    code: str
    facts: dict[str, Any] = field(default_factory=dict)


class AcceptedGap(Struct):
    """An unreadable item the institution's policy accepts (`accept_unreadable`), with its reason and the
    entry that accepts it (config file name:line)."""
    item: str                   # as in Coverage.unreadable ("pid 1 systemd (/usr/lib/systemd/systemd): exe")
    reason: str
    source: str = ""


class Coverage(Struct):
    """What one check could see: ok, partial (how much it could not see and why), skipped, n/a."""
    check: str
    status: CoverageStatus
    reason: str = ""
    inspected: int = 0
    denied: int = 0
    # What the reports phrase in each language (reports/i18n/coverage.<lang>.yaml); `reason` is the same
    # in English, for the JSON and its older readers.
    details: list[CoverageDetail] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)     # what could not be read, bounded ("pid 1 systemd")
    accepted: list[AcceptedGap] = field(default_factory=list)   # of those, what the policy accepts, and why


class GpuProcess(Struct):
    pid: int
    name: str = ""
    used_memory_bytes: int | None = None


class GpuDevice(Struct):
    index: int
    name: str
    uuid: str = ""
    vendor: str = "nvidia"
    driver: str = ""
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    utilization_percent: float | None = None        # mean over the sampling window
    utilization_samples: list[float] = field(default_factory=list)
    processes: list[GpuProcess] = field(default_factory=list)


class HostInfo(Struct):
    hostname: str = ""
    os: str = ""                # "Linux", "Darwin", "Windows"
    os_release: str = ""        # e.g. "Debian GNU/Linux 12 (bookworm)"
    kernel: str = ""
    arch: str = ""
    cpu_model: str = ""
    cpu_sockets: int | None = None
    cpu_cores: int | None = None
    cpu_threads: int | None = None
    memory_total_bytes: int | None = None
    boot_time: float | None = None
    uptime_seconds: float | None = None
    gpus: list[GpuDevice] = field(default_factory=list)


class ProcessInfo(Struct):
    pid: int
    ppid: int | None = None
    name: str = ""
    exe: str = ""
    cmdline: list[str] = field(default_factory=list)
    username: str = ""
    uid: int | None = None
    cwd: str = ""
    create_time: float | None = None
    status: str = ""
    nice: int | None = None
    num_threads: int | None = None
    rss_bytes: int | None = None
    cpu_percent: float | None = None        # over the window, 100 = one core
    cpu_seconds: float | None = None        # user + system over the window
    lifetime_cpu_seconds: float | None = None   # user + system since it started (pausing or throttling still shows)
    cmdline_bytes: int | None = None        # length of the whole command line when it was too long to keep whole
    children_cpu_seconds: float | None = None   # CPU of children it reaped during the window (make, shells)
    allowed_cpus: int | None = None         # size of the CPU affinity set
    terminal: str = ""
    cgroup: str = ""
    container_id: str = ""
    slurm_job_id: str = ""
    environ: dict[str, str] = field(default_factory=dict)   # only the keys that matter (LD_PRELOAD, SLURM_JOB_ID, ...)
    exe_deleted: bool = False
    ns_pids: list[int] = field(default_factory=list)        # NSpid from /proc/PID/status: host pid first
    anon_hugepages_bytes: int | None = None
    hidden: bool = False                    # alive when probed by PID but missing from the /proc listing
    libraries: list[str] = field(default_factory=list)      # mapped shared libraries (basenames), busy/GPU processes only
    denied: list[str] = field(default_factory=list)         # attributes that access was denied to


class Connection(Struct):
    pid: int | None
    protocol: str               # tcp, tcp6, udp, udp6
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: str = ""
    bytes_sent: int | None = None
    bytes_received: int | None = None
    namespace: str = ""                 # "net:[4026532281]" when not the agent's own network namespace
    held_seconds: float | None = None   # at least this long: the same socket at the window's start and end
    owner_unseen: bool = False          # no process holds it, though every process's fds could be read


class BinaryScan(Struct):
    """Result of scanning one executable's content for miner signatures."""
    path: str
    pids: list[int] = field(default_factory=list)
    sha256: str = ""
    size_bytes: int | None = None
    scanned_bytes: int = 0
    matched_strings: list[str] = field(default_factory=list)
    engine: str = "builtin"     # builtin | yara
    error: str = ""


class Packing(Struct):
    """What an executable's file looks like to a packer check (set only for files outside package paths)."""
    path: str
    pids: list[int] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)      # UPX's own marks found (UPX!, $Info line, UPX0 ...)
    entropy: float | None = None            # bits per byte over a sample of its loadable segments
    section_table: bool = True              # False: no section headers (UPX output, crafted droppers)
    imports: int | None = None              # DT_NEEDED libraries; None when not dynamically linked
    sampled_bytes: int = 0


class ProgramIdentity(Struct):
    """Whether a process that calls itself a known program (python3, sshd, nginx, ...) runs that program's
    file: the file its name resolves to on the system PATH, or one the package database lists."""
    pid: int
    claimed: str                            # the name it calls itself
    exe: str
    on_path: str = ""                       # what the name resolves to on the system PATH (real path), "" none
    same_as_path: bool | None = None        # the executable is that very file (same device and inode)
    package: str | None = None              # package listing the executable; "" listed by none; None: not read
    package_db: str = ""                    # dpkg, rpm (not read), or "" when the host has none
    env_marker: str = ""                    # pyvenv.cfg or conda-meta beside it: a copied virtual environment


class MemoryRegion(Struct):
    """An anonymous mapping whose size tells a hashing algorithm (from /proc/PID/smaps)."""
    size_bytes: int
    shape: str                              # randomx-cache, randomx-dataset, scratchpad
    huge_pages: bool = False
    count: int = 1                          # scratchpads: mappings of this size (one per hashing thread)


class MemoryScan(Struct):
    """One suspect process's memory, scanned within bounds: strings, algorithm-shaped mappings, threads."""
    pid: int
    why: list[str] = field(default_factory=list)           # why it was a suspect
    scanned_bytes: int = 0
    seconds: float = 0.0
    matched_strings: list[str] = field(default_factory=list)   # pack strings and yara:<rule> found in memory
    regions: list[MemoryRegion] = field(default_factory=list)
    busy_threads: int = 0                   # threads that used >= 80% of a core over their life
    lockstep: bool = False                  # those threads used nearly the same CPU (one job split N ways)
    cut: str = ""                           # why the scan stopped early (bytes or time bound), "" if whole
    error: str = ""


class MinerConfig(Struct):
    """A miner-style config file a process named or that sits in its cwd."""
    path: str
    pids: list[int] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)     # notable keys seen (pools, donate-level, algo, ...)
    algorithms: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # a launcher script's lines that run a program with options


class ConfigReader(Struct):
    """A process that reads a family config at this path, and how we know (home, cwd, exe_dir, env, open)."""
    pid: int
    via: str


class FamilyConfig(Struct):
    """A configuration file of a known coin / storage / sharing family, found where that software reads it."""
    path: str
    family: str
    readers: list[ConfigReader] = field(default_factory=list)
    owner: str = ""                 # the file's owner (a home config with no process reading it names its user)
    keys: list[str] = field(default_factory=list)       # identifying keys present (dotted paths)
    urls: list[str] = field(default_factory=list)       # pools / peers it names (secrets redacted)
    logins: list[str] = field(default_factory=list)     # payout addresses, account names (tokens never kept)
    dirs: list[str] = field(default_factory=list)       # artefact folders it names (plot/sector/farm dirs)
    network: str = ""               # the network it selects (mainnet, testnet11, ...), when it says


class ArtefactGroup(Struct):
    """Artefact files of one family and kind in one folder (plots, sectors, PoST data, piece caches)."""
    family: str
    kind: str                       # plot, sector, postdata, farm, ...
    directory: str
    count: int = 0
    total_bytes: int = 0            # apparent size (st_size): what the network counts as farmed space
    allocated_bytes: int = 0        # blocks really used on disk (a sparse stand-in uses almost none)
    examples: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)       # processes that have the folder open or configure it
    found_via: str = ""             # open, config, cmdline, mount


class Listener(Struct):
    """A listening TCP socket or bound UDP socket on a port some family uses by default."""
    pid: int | None
    protocol: str
    address: str
    port: int


class HiddenPid(Struct):
    pid: int
    name: str = ""
    exe: str = ""
    cmdline: list[str] = field(default_factory=list)
    method: str = ""            # how it was found: probe, task-of-visible, children-of-visible


class StealthState(Struct):
    ld_so_preload: list[str] = field(default_factory=list)
    ld_so_preload_hidden: bool = False             # read by system call, yet libc says it does not exist
    self_preloaded_libraries: list[str] = field(default_factory=list)
    hooked_functions: list[str] = field(default_factory=list)     # "readdir (/lib/x.so)": libc names interposed
    hidden_pids: list[HiddenPid] = field(default_factory=list)
    proc_bind_mounts: list[str] = field(default_factory=list)
    proc_hidepid: str = ""
    hugepages_total: int | None = None
    hugepage_size_kb: int | None = None
    msr_loaded: bool | None = None
    msr_allow_writes: str = ""
    nmi_watchdog: int | None = None
    system_cpu_percent: float | None = None        # all CPUs, 100 = one core, over the window
    visible_cpu_percent: float | None = None       # sum of the visible processes over the same window
    unexplained_cpu_percent: float | None = None


class StartedProgram(Struct):
    """A program a persistence entry starts, looked at on disk whether or not it runs now."""
    path: str                   # as the host sees it (/home/a/.x/run), not below a test root
    via: str = ""               # how the entry reaches it: "", "sh -c", "decoded base64", "script /x.sh:3", ...
    exists: bool = False
    uid: int | None = None      # owner of the file
    mode: int | None = None     # st_mode
    size: int | None = None
    mtime: float | None = None
    ctime: float | None = None
    writable_by: str = ""       # "", "world", "group", or the non-root owner's name: who may replace it
    hidden_dir: str = ""        # the dot-named directory it lies in
    sha256: str = ""
    matched_strings: list[str] = field(default_factory=list)    # the executable scanner's hits (YARA as yara:NAME)
    packer: str = ""            # e.g. "upx" when the file carries a packer's marks
    configs: list[MinerConfig] = field(default_factory=list)    # miner configs it names or that lie next to it
    error: str = ""             # why it could not be looked at (not found, access denied, limit)


class PersistenceEntry(Struct):
    path: str
    kind: str                   # cron, at, anacron, systemd, generator, udev, rc, profile, autostart, ssh,
                                # motd, ld-preload, ld-conf, container
    line: int
    text: str
    user: str = ""              # the account the started program runs as ("*" = every user who logs in)
    placement: str = ""         # finer place: "user crontab", "systemd user unit", "timer", "drop-in", ...
    trigger: str = ""           # boot, schedule, timer, login, ssh-login, device, every-process, restart
    owner: str = ""             # who owns the file holding the entry (name, or uid as text)
    owner_uid: int | None = None
    mtime: float | None = None  # of the file holding the entry
    ctime: float | None = None
    decoded: list[str] = field(default_factory=list)      # commands decoded from base64 / printf / hex in the line
    downloads: list[str] = field(default_factory=list)    # URLs the line fetches and runs
    programs: list[StartedProgram] = field(default_factory=list)


class PersistenceBaseline(Struct):
    """What the host's own files say about its age, to tell a recent entry from the rest."""
    package_db_mtime: float | None = None       # newest change of the package database (dpkg/rpm/apk/pacman)
    install_time: float | None = None           # oldest sign of the installation (machine-id, installer logs)
    root_prefix: str = ""                       # the test root the paths were read below ("" = /)


class LoadSample(Struct):
    t: float                    # seconds since the start of the window
    cpu_percent: float          # whole host, 100 = all CPUs busy
    gpu_percent: list[float] = field(default_factory=list)


class Snapshot(Struct):
    schema_version: str = SNAPSHOT_SCHEMA_VERSION
    agent_version: str = ""
    collected_at: float = 0.0
    window_seconds: float = 0.0
    host: HostInfo = field(default_factory=HostInfo)
    processes: list[ProcessInfo] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    gpus: list[GpuDevice] = field(default_factory=list)
    binaries: list[BinaryScan] = field(default_factory=list)
    configs: list[MinerConfig] = field(default_factory=list)
    packing: list[Packing] = field(default_factory=list)
    memory: list[MemoryScan] = field(default_factory=list)
    identities: list[ProgramIdentity] = field(default_factory=list)
    stealth: StealthState = field(default_factory=StealthState)
    persistence: list[PersistenceEntry] = field(default_factory=list)
    persistence_baseline: PersistenceBaseline = field(default_factory=PersistenceBaseline)
    load: list[LoadSample] = field(default_factory=list)
    coverage: list[Coverage] = field(default_factory=list)
    family_configs: list[FamilyConfig] = field(default_factory=list)
    artefacts: list[ArtefactGroup] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = to_dict(self)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "Snapshot":
        check_schema_version(data, SNAPSHOT_SCHEMA_VERSION, "snapshot")
        return from_dict(cls, data)



# ---------------------------------------------------------------- report parts


class Evidence(Struct):
    field: str                  # where it was seen: name, exe, cmdline, connection, config, binary, gpu, ...
    value: str                  # what was seen there (redacted, capped)
    matched: str                # the indicator it matched (whole tokens of `value`, or a label of a coded check)
    rule_id: str
    # Numbers and names a coded check measured; the reports phrase them per language
    # (reports/i18n/rules.<lang>.yaml: the rule's `facts` template). Empty for a pattern match.
    facts: dict[str, Any] = make_field(default_factory=dict)


class Subject(Struct):
    """What a finding is about, named precisely so a person can act on it."""
    kind: str                   # process, gpu, host, persistence
    pid: int | None = None
    name: str = ""
    exe: str = ""
    cmdline: str = ""           # joined, secrets redacted
    username: str = ""
    cgroup: str = ""
    container_id: str = ""
    slurm_job_id: str = ""
    terminal: str = ""
    connections: list[str] = field(default_factory=list)
    gpu_index: int | None = None
    path: str = ""              # for persistence and host-level subjects


class Finding(Struct):
    fingerprint: str
    subject: Subject
    title: str
    category: str               # miner, network, stealth, persistence, gpu, load, tuning
    severity: Severity
    confidence: float           # 0..1
    rule_ids: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    attack: list[str] = field(default_factory=lambda: ["T1496"])
    recommended_action: str = ""
    status: FindingStatus = FindingStatus.OPEN
    status_reason: str = ""     # why allowlisted / registered / outside registration
    filing: str = ""            # the filing number that matched, if any
    # The same decision as facts the reports phrase per language: {"code": "filing_valid", "number": ...}
    # or {"code": "allowlisted", "reason": ..., "source": "config.yaml:12"}; empty while open.
    decision: dict[str, Any] = field(default_factory=dict)


class TuningChange(Struct):
    """One local change to the rule pack (rules.d overlay), listed in the report as "tuning in effect"."""
    action: str                 # disable | severity | allow | add
    rule_ids: list[str]
    detail: str                 # the new severity, the allowed workload (exe=..., user=...), the added rule's title
    reason: str                 # why: mandatory
    origin: str                 # file:line


class RulePackInfo(Struct):
    name: str = ""
    version: str = ""
    sha256: str = ""
    files: list[str] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)    # rule id -> its source, for each rule cited


class ReportSignature(Struct):
    """A host's Ed25519 signature of its own report (audit_agent/trust): who signed, and the signature.

    It covers the report's canonical JSON with this block in it minus `value` (so the machine id and key id
    are signed too); a fleet holding the registered public keys refuses a report changed after signing."""
    algorithm: str = "ed25519"
    key_id: str = ""            # first 16 hex digits of the public key's SHA-256
    machine_id: str = ""        # the signing host's /etc/machine-id
    value: str = ""             # base64 of the 64-byte signature


class AuditReport(Struct):
    schema_version: str = REPORT_SCHEMA_VERSION
    agent_version: str = ""
    generated_at: float = 0.0
    collected_at: float = 0.0
    window_seconds: float = 0.0
    host: HostInfo = field(default_factory=HostInfo)
    profile: dict[str, str] = field(default_factory=dict)   # institution, department, system, responsible, contact, purpose
    rule_pack: RulePackInfo = field(default_factory=RulePackInfo)
    coverage: list[Coverage] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)   # every status; renderers split by status
    verdict: Verdict = Verdict.COMPLIANT
    verdict_reasons: list[str] = field(default_factory=list)
    # The facts behind the verdict ({"key": "high", "values": {"n": 2}}), so every renderer phrases them
    # in its own language without calling the evaluation.
    verdict_facts: list[dict[str, Any]] = field(default_factory=list)
    fail_on: Severity | None = Severity.HIGH     # None: --fail-on never
    process_count: int = 0
    connection_count: int = 0
    load: list[LoadSample] = field(default_factory=list)
    filings: list[dict[str, Any]] = field(default_factory=list)   # filings that matched, expire soon or lie unused
    research_systems: list[dict[str, Any]] = field(default_factory=list)   # per research system: use vs filed scale
    timezone: str = ""          # the institution's zone filings were judged in
    tuning: list[TuningChange] = field(default_factory=list)     # local rule changes in effect (rules.d)
    signature: ReportSignature | None = None     # scan/watch --sign: the host's signature of this report

    @property
    def open_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.status not in (FindingStatus.REGISTERED, FindingStatus.ALLOWLISTED)]

    @property
    def registered_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == FindingStatus.REGISTERED]

    @property
    def allowlisted_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == FindingStatus.ALLOWLISTED]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = to_dict(self)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "AuditReport":
        check_schema_version(data, REPORT_SCHEMA_VERSION, "report")
        return from_dict(cls, data)



# ---------------------------------------------------------------- (de)serialisation
#
# One decoder for both JSON contracts: msgspec reads the Structs above directly and caches
# their type information, so adding a field to a Struct is the only change a new field needs.
# It checks types as strictly as the contract says (an int is not a bool, a string is not a
# number; an int is accepted where a float is expected) and names the bad field ($.processes[3].pid).

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """Dataclasses, enums and lists to plain JSON-able data."""
    return msgspec.to_builtins(obj)


def check_schema_version(data: Any, supported: str, what: str) -> None:
    if not isinstance(data, dict):
        raise SchemaError(f"{what} JSON must be an object, not {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, str) or not version.split(".")[0].isdigit():
        raise SchemaError(f"{what} has no valid schema_version")
    if int(version.split(".")[0]) > int(supported.split(".")[0]):
        raise SchemaError(f"{what} schema_version {version} is newer than this agent supports ({supported}); upgrade audit-agent")


def from_dict(cls: type[T], data: Any, path: str = "$") -> T:
    """Rebuild a dataclass from plain data, checking types; raises SchemaError naming the bad field."""
    try:
        return msgspec.convert(data, type=cls)
    except msgspec.ValidationError as exc:
        raise SchemaError(_where(str(exc), path)) from None
    except RecursionError:
        raise SchemaError(f"{path}: nested too deeply") from None


def decode_json(raw: bytes, cls: type[T]) -> T | None:
    """The fast path: JSON bytes straight into `cls`, or None when that fails for any reason (bad JSON,
    bad shape, a lone surrogate escape that json.loads accepts); the caller then takes the slow path
    for a precise message (line of a syntax error, schema version, bad field)."""
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = msgspec.json.Decoder(cls)
    try:
        decoded: T = decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    return decoded


_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}


def _where(message: str, path: str) -> str:
    """msgspec says "Expected `int`, got `str` - at `$.processes[0].pid`": put the place first."""
    text, _, at = message.partition(" - at `")
    place = at.rstrip("`") or "$"
    if path != "$":
        place = path + place[1:]
    return f"{place}: {text}"
