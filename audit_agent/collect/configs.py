"""Miner config files: the ones a process names (`-c`, `--config`) and the ones in its cwd or next to its exe.

A miner started with no arguments keeps its pool and wallet in a config file
(xmrig/T-Rex/SRBMiner/lolMiner config.json, nanominer config.ini, xmr-stak
pools.txt). Files are opened through /proc/PID/cwd and /proc/PID/root, so a
deleted cwd or a container's filesystem is read as the process sees it.
Only pool URLs, logins (wallets), notable keys and algorithms are kept, never
passwords. Everything read is bounded: size per file, files per process, in all.
"""
from __future__ import annotations

import json
import os
import re
import stat
from typing import Any, Iterator

from msgspec import Struct, field

from audit_agent.collect import linux_only
from audit_agent.collect import observed
from audit_agent.collect.safe_read import NotRegularFile, Refused, read_regular
from audit_agent.collect.coverage import because, coverage
from audit_agent.model import Coverage, CoverageStatus, MinerConfig, ProcessInfo, Snapshot
from audit_agent.redact import cap, redact_cmdline, redact_text

CHECK = "configs"
MAX_CONFIG_BYTES = 1024 * 1024
MAX_FILES_PER_PROCESS = 8
MAX_FILES_TOTAL = 512
MAX_VALUES = 32                 # urls / users / keys kept per file
MAX_JSON_DEPTH = 8
CONFIG_FLAGS = {"-c", "--config", "-C", "--config-file", "--cfg", "-config"}
DEFAULT_NAMES = ("config.json", "config.ini", "pools.txt", "config.txt", "config.toml")
FORBIDDEN_PREFIXES = ("/proc/", "/sys/", "/dev/")
# `sh -c CODE`, `gcc -c FILE.c`, `python -c CODE`: for these programs -c is not a config file.
NOT_CONFIG_C = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "busybox", "gcc", "cc", "clang", "g++",
                "c++", "clang++", "ld", "as", "cpp", "perl", "ruby", "node"}
SHELL_CODE = re.compile(r"[\s;|&$`<>(){}*?!'\"\\]")
# A launcher script (`bash /tmp/.x/run.sh`, `python3 start.py`, `perl x.pl`) that starts a miner is read like a
# config: its command lines are matched like a process's (Kinsing, TeamTNT and WatchDog droppers start xmrig
# from such scripts). Only the interpreters' own options are skipped to find the script.
SCRIPT_RUNNER = re.compile(r"^(?:sh|bash|dash|zsh|ksh|mksh|ash|python[0-9.]*|perl[0-9.]*)$")
OPTIONS_WITH_VALUE = {"python": {"-W", "-X", "--check-hash-based-pycs"},
                      "sh": {"-o", "-O", "+o", "+O", "--rcfile", "--init-file"}, "perl": set()}
# A line that gives a program a pool (host:port after -o/--url/--pool, or a URL) or a wallet-length login:
# a build script's `gcc -O2 -c x.c -o x.o` lines are not kept.
COMMAND_LINE = re.compile(r"stratum|://|(?:^|[\s\"'])(?:-o|--url|--pool)[\s=\"']+[^\s\"']+:\d{2,5}\b|"
                          r"(?:^|[\s\"'])(?:-u|--user|--userpass|-O|--wallet|-w)[\s=\"']+[^\s\"']{20,}")
MAX_COMMANDS = 16

URL_KEYS = {"url", "pool", "pool_address", "server", "stratum", "proxy", "address_pool", "pool_url"}
POOL_N_KEY = re.compile(r"^pool\d+$", re.IGNORECASE)
USER_KEYS = {"user", "wallet", "wallet_address", "login", "username", "wal", "worker_user", "account", "dualuser"}
PASSWORD_KEYS = {"pass", "password", "pool_password", "passwd", "pwd", "token", "access-token", "api-token"}
ALGO_KEYS = {"algo", "algorithm", "coin", "pow", "currency", "dualalgo"}
NOTABLE_KEYS = {"pools", "pool_list", "donate-level", "donate-over-proxy", "randomx", "cpu", "cuda", "opencl",
                "rig-id", "nicehash", "tls-fingerprint", "huge-pages", "1gb-pages", "wrmsr", "rigname",
                "algo", "algorithm", "coin", "wallet", "pool", "autosave", "background", "max-threads-hint"}
# A file that is not named by the process must carry at least one of these to count as a miner config.
POOLISH = {"pools", "pool_list", "pool", "donate-level", "wallet", "wallet_address"}

# A pool given as an address: private proxies and IP-only pools avoid DNS on purpose.
ADDRESS_PORT = re.compile(r"(?<![\w.:-])((?:\d{1,3}\.){3}\d{1,3}|\[[0-9a-fA-F:]+\]):\d{2,5}\b")
STRATUM_URL = re.compile(r"\b(?:stratum[a-z0-9+]*|ssl|tcp|tls)://[^\s\"'<>,;]{3,300}", re.IGNORECASE)
HOST_PORT = re.compile(r"(?<![\w./@-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62}:\d{2,5})\b",
                       re.IGNORECASE)
RAW_USER = re.compile(r"(?im)[\"']?\b(?:user|wallet|wallet_address|login|username)[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{6,200})")
RAW_KEY = re.compile(r"(?im)^[\s{,]*[\"']?([a-z][a-z0-9_-]{1,40})[\"']?\s*[:=]")


class _Plan(Struct, frozen=True):
    """What a process's command line, folder and executable say to look at, with no /proc/PID in it yet:
    the same for every copy of a program started alike (a host's thousands of workers)."""
    named: tuple[tuple[str, str], ...]          # (path as the process sees it, how it is opened from /proc/PID)
    dirs: tuple[tuple[str, str], ...]           # (folder as the process sees it, how it is opened from /proc/PID)


MAX_PLANS = 4096        # distinct (command line, folder, executable) remembered at once


class _Budget(Struct):
    files: int = 0
    denied: int = 0
    not_examined: int = 0       # processes left out once MAX_FILES_TOTAL was reached
    seen_files: dict[tuple[int, int], MinerConfig | None] = field(default_factory=dict)
    seen_dirs: dict[str, list[str]] = field(default_factory=dict)   # directory -> candidate names
    plans: dict[tuple[tuple[str, ...], str, str], _Plan] = field(default_factory=dict)

    def plan(self, proc: ProcessInfo) -> _Plan:
        key = (tuple(proc.cmdline), proc.cwd, proc.exe)
        found = self.plans.get(key)
        if found is None:
            if len(self.plans) >= MAX_PLANS:
                self.plans.clear()
            found = self.plans[key] = plan_of(proc)
        return found

    def nothing_for(self, plan: _Plan) -> bool:
        """No name on the command line, and every folder listed already with no default config in it: the
        process has no candidate (its folders were looked at through the first process that has them)."""
        if plan.named:
            return False
        seen = self.seen_dirs
        return all(seen.get(shown) == [] for shown, _ in plan.dirs)


def collect_configs(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """reading miner config files"""
    not_linux = linux_only(CHECK)
    if not_linux:
        return [not_linux]
    proc_root = getattr(options, "proc_root", "/proc")
    configs, budget = scan_processes(snapshot.processes, proc_root)
    snapshot.configs.extend(configs)
    return [configs_coverage(budget)]


def configs_coverage(budget: _Budget) -> Coverage:
    problems = []
    if budget.denied:
        problems.append(because("configs_denied", n=budget.denied))
    if budget.not_examined:
        problems.append(because("config_limit", limit=MAX_FILES_TOTAL, n=budget.not_examined))
    if problems:
        return coverage(CHECK, CoverageStatus.PARTIAL, *problems, inspected=budget.files, denied=budget.denied)
    return coverage(CHECK, CoverageStatus.OK, inspected=budget.files)


def scan_processes(processes: list[ProcessInfo], proc_root: str = "/proc",
                   budget: _Budget | None = None) -> tuple[list[MinerConfig], _Budget]:
    """Miner configs used by `processes`; one MinerConfig per distinct file, listing every pid."""
    budget = budget or _Budget()
    found: list[MinerConfig] = []
    own = os.getpid()
    for index, proc in enumerate(processes):
        if not proc.exe and not proc.cmdline:
            continue            # kernel thread
        if proc.pid == own:
            continue            # the agent's own files (its working directory) are not evidence about the host
        if budget.nothing_for(budget.plan(proc)):
            continue            # what candidates() would find: nothing
        for shown, access, named in candidates(proc, proc_root, budget):
            if budget.files >= MAX_FILES_TOTAL:
                budget.not_examined = sum(1 for p in processes[index:] if p.exe or p.cmdline)
                return found, budget
            config = read_candidate(shown, access, named, budget, proc.uid)
            if config is not None:
                if proc.pid not in config.pids:
                    config.pids.append(proc.pid)
                if config not in found:
                    found.append(config)
    return found, budget


def candidates(proc: ProcessInfo, proc_root: str, budget: _Budget) -> Iterator[tuple[str, str, bool]]:
    """(path as the process sees it, path we open, named by the process) for each file worth reading."""
    base = os.path.join(proc_root, str(proc.pid))
    plan = budget.plan(proc)
    count = 0
    for shown, access in plan.named:
        if count >= MAX_FILES_PER_PROCESS:
            return
        count += 1
        yield shown, base + access, True
    for shown_dir, access in plan.dirs:
        access_dir = base + access
        if shown_dir not in budget.seen_dirs:        # list each directory once; its files are read once too
            budget.seen_dirs[shown_dir] = directory_candidates(access_dir, budget)
        for name in budget.seen_dirs[shown_dir]:
            if count >= MAX_FILES_PER_PROCESS:
                return
            count += 1
            yield os.path.join(shown_dir, name), os.path.join(access_dir, name), False


def plan_of(proc: ProcessInfo) -> _Plan:
    """The names a process gives and the folders it has, each with the way to it from /proc/PID."""
    named = []
    for name in [*named_configs(proc.cmdline), *launcher_script(proc.cmdline)][:MAX_FILES_PER_PROCESS]:
        if name.startswith("/"):
            named.append((name, "/root" + name))
        else:
            shown = os.path.normpath(os.path.join(proc.cwd, name)) if proc.cwd else name
            named.append((shown, "/cwd/" + name))
    directories = [(proc.cwd, "/cwd")]
    exe = proc.exe[: -len(" (deleted)")] if proc.exe.endswith(" (deleted)") else proc.exe
    if exe.startswith("/"):
        parent = os.path.dirname(exe)
        directories.append((parent, "/root" + parent))
    return _Plan(tuple(named), tuple((shown, access) for shown, access in directories if shown and shown != "/"))


def named_configs(argv: list[str]) -> list[str]:
    """Values given to -c / --config / --config= / -C that look like a file name.

    Not `-c` of a shell, interpreter or compiler (`sh -c CODE`, `gcc -c x.c`), and
    never a value that is an option, holds spaces or is shell code."""
    names = []
    c_is_config = bool(argv) and not is_code_runner(argv[0])
    for index, arg in enumerate(argv[1:], start=1):
        flag, sep, inline = arg.partition("=")
        if flag in CONFIG_FLAGS and (flag != "-c" or c_is_config):
            value = inline if sep else (argv[index + 1] if index + 1 < len(argv) else "")
            if value and not value.startswith("-") and not SHELL_CODE.search(value) and len(value) <= 4096:
                names.append(value)
    return names


def launcher_script(argv: list[str]) -> list[str]:
    """The script an interpreter runs (`bash run.sh`, `python3 -u start.py`); [] for code given with -c or -m."""
    runner = os.path.basename(argv[0]) if argv else ""
    if not SCRIPT_RUNNER.match(runner):
        return []
    with_value = OPTIONS_WITH_VALUE["python" if runner.startswith("python") else
                                    "perl" if runner.startswith("perl") else "sh"]
    index = 1
    while index < len(argv) and argv[index].startswith(("-", "+")):
        if argv[index] in ("-c", "-m", "-e", "-E", "--command"):
            return []
        index += 2 if argv[index] in with_value else 1
    script = argv[index] if index < len(argv) else ""
    return [script] if script and not SHELL_CODE.search(script) and len(script) <= 4096 else []


def is_code_runner(argv0: str) -> bool:
    """A shell, interpreter or compiler, for which `-c` means code or compile-only (gcc-12, python3.11 too)."""
    name = re.sub(r"[-.]?\d+(?:\.\d+)*$", "", os.path.basename(argv0))
    return name in NOT_CONFIG_C or name.startswith("python") or name.endswith(("-gcc", "-g++", "-ld", "-cc"))


def directory_candidates(directory: str, budget: _Budget) -> list[str]:
    """The miners' default config names present in `directory`.

    Only the default names: a process's working directory is often a shared one
    (/tmp, a home), and any other JSON there (a saved audit report quoting a
    miner's command line, say) is not that process's configuration. A config
    under another name is found when the process names it (-c FILE). Looked up
    by name, so a directory of thousands of files costs a handful of stats."""
    names = []
    for name in DEFAULT_NAMES:
        try:
            candidate = os.path.join(directory, name)
            if stat.S_ISREG(observed.stat_path(candidate, follow_symlinks=True).st_mode):
                names.append(name)
        except PermissionError:
            budget.denied += 1
            break
        except OSError:
            continue
    return names


def read_candidate(shown: str, access: str, named: bool, budget: _Budget,
                   reader_uid: int | None = 0) -> MinerConfig | None:
    text, identity = read_bounded(access, budget, reader_uid)
    if text is None or identity is None:
        return None
    if identity in budget.seen_files:
        return budget.seen_files[identity]
    budget.files += 1
    config = parse_config(text, shown)
    if config is not None and not named and not looks_like_miner_config(config):
        config = None
    budget.seen_files[identity] = config
    return config


def read_bounded(path: str, budget: _Budget, reader_uid: int | None = 0) -> tuple[str | None, tuple[int, int] | None]:
    """At most MAX_CONFIG_BYTES of a regular file; never a FIFO, device, or anything under /proc, /sys, /dev.

    A path named on a command line may be /dev/watchdog or a tape: opening one
    for reading has effects (the watchdog arms, the tape rewinds). read_regular
    looks at what the path is through an O_PATH descriptor and opens only a
    regular file for reading. And the agent reads, as root, only what the process
    itself could read: `-c /root/.my.cnf` from a user's process must not put a
    root-only file's values into the report."""
    try:
        opened = read_regular(path, MAX_CONFIG_BYTES, as_uid=reader_uid,
                              accept=lambda info, real, linked: not is_forbidden(real) and readable_by(info, reader_uid))
    except PermissionError:
        budget.denied += 1
        observed.unanswered()
        return None, None
    except (FileNotFoundError, NotADirectoryError):
        observed.saw(path, True, None)
        return None, None
    except (OSError, NotRegularFile, Refused):
        observed.unanswered()
        return None, None
    observed.saw(path, True, opened.info)
    return opened.data.decode("utf-8", "replace"), opened.identity


def readable_by(info: os.stat_result, uid: int | None) -> bool:
    """Could a process of `uid` read this file? Owner or world read bits only: its groups are not known,
    so a group-readable file (root:shadow 0640) does not count. An unknown uid reads only world-readable files."""
    if uid == 0:
        return True
    if uid is not None and info.st_uid == uid:
        return bool(info.st_mode & stat.S_IRUSR)
    return bool(info.st_mode & stat.S_IROTH)


def is_forbidden(real_path: str) -> bool:
    """The file really lives in /proc, /sys or /dev (a config name pointing at a kernel file)."""
    return real_path.startswith(FORBIDDEN_PREFIXES)


# ------------------------------------------------------------------ parsing


def parse_config(text: str, path: str) -> MinerConfig | None:
    """URLs, users, notable keys and algorithms of a JSON, INI/TOML-ish or free-text miner config."""
    config = MinerConfig(path=cap(path, 1024))
    stripped = text.lstrip()
    parsed: Any = None
    if stripped.startswith(("{", "[")):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):     # `[[[[...` 100000 deep: parse it as raw text instead
            parsed = None
    if parsed is not None:
        walk_json(parsed, config, 0)
    else:
        parse_key_values(text, config)
    parse_raw_text(text, config)        # catches what the structured pass missed (comments, pools.txt fragments)
    if text.startswith("#!") or not stripped.startswith(("{", "[")):
        config.commands = command_lines(text)
    finish(config)
    if not (config.urls or config.users or config.keys or config.algorithms or config.commands):
        return None
    return config


def walk_json(node: Any, config: MinerConfig, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        return
    if isinstance(node, list):
        for item in node[:256]:
            walk_json(item, config, depth + 1)
        return
    if not isinstance(node, dict):
        return
    for raw_key, value in list(node.items())[:512]:
        key = str(raw_key).strip().lower()
        record_value(key, value, config)
        if isinstance(value, (dict, list)):
            walk_json(value, config, depth + 1)


def parse_key_values(text: str, config: MinerConfig) -> None:
    """INI / TOML / `key = value` files (nanominer config.ini: [RandomX], wallet=, pool1=, coin=)."""
    sections = []
    for line in text.splitlines()[:20000]:
        line = line.strip()
        if not line or line.startswith(("#", ";", "//")):
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append(line[1:-1].strip())
            continue
        key, sep, value = _split_assignment(line)
        if sep:
            record_value(key.strip().lower(), value.strip().rstrip(",").strip("\"'"), config)
    if config.urls or config.users:     # nanominer names the algorithm as the section
        for section in sections:
            if 0 < len(section) <= 40 and re.fullmatch(r"[A-Za-z0-9/_-]+", section) \
                    and section.lower() not in ("general", "common", "settings", "main"):
                add(config.algorithms, section)


def _split_assignment(line: str) -> tuple[str, str, str]:
    match = re.match(r"^([A-Za-z][\w.-]{0,60})\s*([=:])\s*(.*)$", line)
    return (match.group(1), match.group(2), match.group(3)) if match else ("", "", "")


def record_value(key: str, value: Any, config: MinerConfig) -> None:
    if key in PASSWORD_KEYS or "pass" in key:
        return                                  # never keep a password
    if key in NOTABLE_KEYS or POOL_N_KEY.match(key):
        add(config.keys, key)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return
    text = str(value).strip()
    if not text:
        return
    if key in URL_KEYS or POOL_N_KEY.match(key):
        if "://" in text or HOST_PORT.search(text) or ADDRESS_PORT.search(text):
            add(config.urls, redact_text(text))
    elif key in USER_KEYS:
        add(config.users, text)
    elif key in ALGO_KEYS and isinstance(value, str):
        add(config.algorithms, text)


def parse_raw_text(text: str, config: MinerConfig) -> None:
    """Stratum URLs, host:port pairs next to a pool-ish word, and values after user/wallet keys."""
    for match in STRATUM_URL.finditer(text):
        add(config.urls, redact_text(match.group(0)))
    if config.urls or re.search(r"(?i)pool|stratum", text):
        for match in [*HOST_PORT.finditer(text), *ADDRESS_PORT.finditer(text)]:
            if not any(match.group(0) in url for url in config.urls):
                add(config.urls, match.group(0))
    for match in RAW_USER.finditer(text):
        add(config.users, match.group(1))
    for match in RAW_KEY.finditer(text[:MAX_CONFIG_BYTES]):
        key = match.group(1).lower()
        if key in NOTABLE_KEYS:
            add(config.keys, key)


def command_lines(text: str) -> list[str]:
    """Lines that give a program a pool or a login (`./x -o pool:3333 -u W`), secrets redacted, bounded."""
    found: list[str] = []
    for line in text[:MAX_CONFIG_BYTES].splitlines():
        line = line.strip()
        if line and not line.startswith("#") and COMMAND_LINE.search(line):
            found.append(redact_cmdline(line.split(), 4096))
            if len(found) >= MAX_COMMANDS:
                break
    return found


def add(values: list[str], value: str) -> None:
    value = cap(value, 300)
    if value and value not in values and len(values) < MAX_VALUES:
        values.append(value)


def finish(config: MinerConfig) -> None:
    config.users = [u for u in config.users if u.lower() not in ("x", "worker", "user", "wallet", "null", "none")]


def looks_like_miner_config(config: MinerConfig) -> bool:
    """A file the process did not name counts only with pool-ish keys, or a stratum URL with a login."""
    if set(config.keys) & POOLISH or any(POOL_N_KEY.match(k) for k in config.keys):
        return bool(config.urls or config.users)
    return any(url.lower().startswith("stratum") for url in config.urls)
