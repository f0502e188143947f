"""Family evidence on the host: environment keys, listening ports, configs where the software reads them.

For every process, each family's config paths are resolved as that process
sees them (`~` = its HOME, `{cwd}`, `{exe_dir}`, `$VAR` from its environment,
`{arg:--flag}` from its command line) and read through /proc/PID/root, bounded
and without following anyone's symlinks (safe_read), and only if the process
itself could read the file. The artefact search (collect/artefacts.py) then
looks in the folders these configs name, the folders processes have open or
name on their command line, and the usual mount points.
"""
from __future__ import annotations

import os
import pwd
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from audit_agent.collect import linux_only
from audit_agent.collect.configs import is_forbidden, readable_by
from audit_agent.collect.proc_facts import Held, ProcFacts, walk_fds
from audit_agent.collect.sockets import RawSocket, read_own_tables
from audit_agent.collect.processes import EXTRA_VALUE_CHARS, MAX_EXTRA_ENVIRON_BYTES
from audit_agent.collect.safe_read import NotRegularFile, Refused, read_regular
from audit_agent.collect.coverage import because
from audit_agent.collect.coverage import coverage as covered
from audit_agent.model import ConfigReader, Coverage, CoverageStatus, FamilyConfig, Listener, ProcessInfo, Snapshot
from audit_agent.redact import cap, redact_text
from audit_agent.rules.families import ConfigSpec, Family
from audit_agent.rules.family_match import config_facts

CHECKS = ("family_configs", "artefacts")
MAX_CONFIG_BYTES = 1024 * 1024
MAX_ENVIRON_BYTES = MAX_EXTRA_ENVIRON_BYTES   # what the process reader looks through for these keys too
MAX_FILES = 2048            # config files read in all
MAX_READERS = 64            # processes listed per config (every shell of a user with a home config)
CONFIG_SECONDS = 5.0        # all config reads together (each path is looked up in someone's file system)
ARG_PLACEHOLDER = re.compile(r"\{arg:(-{0,2}[\w-]+)\}")


class Found(msgspec.Struct):
    """What this collector learnt that the artefact search needs."""
    open_dirs: dict[str, set[int]] = msgspec.field(default_factory=dict)       # folder a process has a file open in
    named_dirs: dict[str, set[int]] = msgspec.field(default_factory=dict)      # folder a process names in its argv
    sockets: dict[int, int] = msgspec.field(default_factory=dict)              # socket inode -> pid (from the fd links)
    access: dict[str, str] = msgspec.field(default_factory=dict)               # shown folder -> path to open it by
    files_read: int = 0
    denied: set[int] = msgspec.field(default_factory=set)      # processes whose config places could not be read
    limit_hit: bool = False
    stalled: str = ""                                                  # why the config reads stopped early


def collect_families(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """reading coin and farming configs, then searching for farming artefacts"""
    not_linux = linux_only("family_configs")
    if not_linux:
        return [not_linux, covered("artefacts", CoverageStatus.NOT_APPLICABLE, *not_linux.details)]
    families = getattr(options, "families", None)
    if families is None:
        from audit_agent.rules.loader import load_pack
        families = load_pack().families
    proc_root = getattr(options, "proc_root", "/proc")
    env_keys = family_env_keys(families)
    facts: ProcFacts = getattr(options, "proc_facts", None) or ProcFacts()
    env_read = env_keys <= facts.env_keys
    found = Found()
    for proc in snapshot.processes:
        if proc.exe or proc.cmdline:
            # what the process reader already read of this process (its environ, its descriptors) is not read again
            if not (env_read and facts.covers(proc.pid)):
                add_environ(proc, env_keys, proc_root)
            note_open_dirs(proc, proc_root, found, facts.held.get(proc.pid))
    snapshot.listeners.extend(listeners({p for f in families for p in f.listen_ports}, found.sockets, proc_root,
                                        facts.sockets))
    results: dict[tuple[str, str], FamilyConfig | None] = {}
    seconds = float(getattr(options, "config_seconds", CONFIG_SECONDS))
    from audit_agent.collect.pool_configs import read_pool_configs

    def read_all() -> None:
        read_configs(snapshot.processes, families, proc_root, found, results)
        read_pool_configs(snapshot.processes, proc_root, found, results)     # Stratum V2 roles' -c config
    if not within(seconds, read_all):
        found.stalled = f"config reads stopped after {seconds:g} s: a file system did not answer"
    # A reader stuck in a hung file system may still add to `results`: keep copies of what is there now.
    snapshot.family_configs.extend(msgspec.structs.replace(config, readers=list(config.readers))
                                   for config in list(results.values()) if config is not None)
    coverage = config_coverage(found)
    from audit_agent.collect.artefacts import search_artefacts
    return [coverage, search_artefacts(snapshot, families, found, options)]


def within(seconds: float, work: Callable[[], object]) -> bool:
    """Run `work` in a worker thread; False if it has not finished after `seconds` (a hung network or FUSE
    file system blocks the thread inside the kernel, never the scan: it is left behind as a daemon)."""
    done = threading.Event()

    def run() -> None:
        try:
            work()
        finally:
            done.set()
    threading.Thread(target=run, name="family-configs", daemon=True).start()
    return done.wait(seconds)


def config_coverage(found: Found) -> Coverage:
    problems = []
    if found.denied:
        problems.append(because("family_configs_denied", n=len(found.denied)))
    if found.limit_hit:
        problems.append(because("family_config_limit", limit=MAX_FILES))
    if found.stalled:
        problems.append(because("family_configs_stalled", why=found.stalled))
    status = CoverageStatus.PARTIAL if problems else CoverageStatus.OK
    return covered("family_configs", status, *problems, inspected=found.files_read, denied=len(found.denied))


# ------------------------------------------------------------------ per process facts


def family_env_keys(families: list[Family]) -> frozenset[str]:
    """The environment keys the family evidence needs of every process (the families' and HOME)."""
    return frozenset({key for family in families for key in family.env} | {"HOME"})


def add_environ(proc: ProcessInfo, keys: set[str] | frozenset[str], proc_root: str) -> None:
    """The family environment keys the process sets (values capped and redacted) into proc.environ, plus HOME."""
    try:
        data = read_regular(os.path.join(proc_root, str(proc.pid), "environ"), MAX_ENVIRON_BYTES).data
    except (OSError, NotRegularFile, Refused):
        return
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        name = key.decode("utf-8", "replace")
        if sep and (name in keys or name == "HOME"):
            proc.environ.setdefault(name, cap(redact_text(value.decode("utf-8", "replace")), EXTRA_VALUE_CHARS))


def note_open_dirs(proc: ProcessInfo, proc_root: str, found: Found, held: Held | None = None) -> None:
    """Folders in which the process has a regular file open (a farmer's plots, a miner's sector), and its
    sockets; `held`: what the process reader's walk of its descriptors saw (None: walk them now)."""
    if held is None:
        held = walk_fds(os.fsencode(os.path.join(proc_root, str(proc.pid), "fd")) + b"/")
    if held is None or held.denied:
        return
    for inode in held.sockets:
        found.sockets[inode] = proc.pid
    for folder in held.dirs:
        found.open_dirs.setdefault(folder, set()).add(proc.pid)
        found.access.setdefault(folder, os.path.join(proc_root, str(proc.pid), "root") + folder)
    for arg in proc.cmdline[1:64]:
        for value in re.findall(r"(?:^|[=,])(/[^\s,;:=]{1,4096})", arg):
            found.named_dirs.setdefault(os.path.normpath(value), set()).add(proc.pid)
            found.access.setdefault(os.path.normpath(value), os.path.join(proc_root, str(proc.pid), "root")
                                    + os.path.normpath(value))


def listeners(ports: set[int], sockets: dict[int, int], proc_root: str = "/proc",
              table: list[RawSocket] | None = None) -> list[Listener]:
    """Listening TCP and bound UDP sockets on a family's default ports, from the tables the connections step
    read (`table`), else from /proc/net (the owners come from the descriptors read above, so no second walk
    over every process's sockets)."""
    if table is None:
        table, _ = read_own_tables(proc_root)
    return [Listener(pid=sockets.get(sock.inode), protocol=sock.protocol.rstrip("6"),
                     address=sock.local_address, port=sock.local_port)
            for sock in table if sock.local_port in ports and is_listening(sock)]


def is_listening(sock: RawSocket) -> bool:
    """A listening TCP socket, or a bound UDP one that is not connected (state 07 in the table: a UDP socket
    shows ESTABLISHED, with its peer, only once connect() gave it one)."""
    if sock.protocol.startswith("tcp"):
        return sock.state == "LISTEN"
    return sock.remote_port == 0


def home_of(proc: ProcessInfo) -> str:
    home = proc.environ.get("HOME", "")
    if home.startswith("/"):
        return home
    try:
        return pwd.getpwuid(proc.uid).pw_dir if proc.uid is not None else ""
    except (KeyError, OverflowError):
        return ""


def resolve(template: str, proc: ProcessInfo) -> tuple[str, str] | None:
    """(path as the process sees it, how we know) for a config path template; None when it does not apply."""
    if template.startswith("~/"):
        home = home_of(proc)
        return (home.rstrip("/") + template[1:], "home") if home else None
    if template.startswith("{cwd}/"):
        return (proc.cwd.rstrip("/") + template[5:], "cwd") if proc.cwd.startswith("/") else None
    if template.startswith("{exe_dir}/"):
        exe = proc.exe.removesuffix(" (deleted)")
        return (os.path.dirname(exe).rstrip("/") + template[9:], "exe_dir") if exe.startswith("/") else None
    if template.startswith("$"):
        name, _, rest = template[1:].partition("/")
        value = proc.environ.get(name, "")
        return ((value.rstrip("/") + "/" + rest) if rest else value, "env") if value.startswith("/") else None
    match = ARG_PLACEHOLDER.match(template)
    if match:
        value = arg_value(proc.cmdline, match.group(1))
        if not value:
            return None
        if not value.startswith("/"):
            if not proc.cwd.startswith("/"):
                return None
            value = os.path.join(proc.cwd, value)
        return os.path.normpath(value + template[match.end():]), "arg"
    return template, "fixed"


def arg_value(argv: list[str], flag: str) -> str:
    """The value given to `flag` (`--flag V`, `--flag=V`, and Erlang-style `flag V`)."""
    for index, arg in enumerate(argv[1:], start=1):
        name, sep, inline = arg.partition("=")
        if name == flag:
            return inline if sep else (argv[index + 1] if index + 1 < len(argv) else "")
    return ""


def candidates(proc: ProcessInfo, families: list[Family]) -> Iterator[tuple[Family, ConfigSpec, str, str]]:
    for family in families:
        for spec in family.configs:
            for template in spec.paths:
                resolved = resolve(template, proc)
                if resolved:
                    yield family, spec, resolved[0], resolved[1]


MAX_RESOLVED = 1024         # distinct processes whose config paths are remembered at once


def resolved_candidates(proc: ProcessInfo, families: list[Family],
                        resolved: dict[tuple[object, ...], list[tuple[Family, ConfigSpec, str, str]]]
                        ) -> list[tuple[Family, ConfigSpec, str, str]]:
    """candidates(), worked out once for processes that resolve every template alike (the same user,
    environment, folder, executable and command line: a host's many identical workers)."""
    key = (proc.uid, proc.cwd, proc.exe, tuple(proc.cmdline), tuple(sorted(proc.environ.items())))
    found = resolved.get(key)
    if found is None:
        if len(resolved) >= MAX_RESOLVED:
            resolved.clear()
        found = resolved[key] = list(candidates(proc, families))
    return found


def read_configs(processes: list[ProcessInfo], families: list[Family], proc_root: str, found: Found,
                 results: dict[tuple[str, str], FamilyConfig | None] | None = None) -> list[FamilyConfig]:
    """Each family config found, once, with every process that reads it from where it sits.

    `results` ((family, path) -> config, or None where the file is not one) fills as files are read,
    so a caller that stops waiting still has what was found so far."""
    results = {} if results is None else results
    resolved: dict[tuple[object, ...], list[tuple[Family, ConfigSpec, str, str]]] = {}
    # Once every path of a candidate list has its answer in `results` (read, or not a config: an answer never
    # changes), the processes that share the list need only the configs among them (id: the list, kept
    # alive in `resolved`, which is cleared together with this).
    settled: dict[int, list[tuple[FamilyConfig, str]]] = {}
    for proc in processes:
        if not (proc.exe or proc.cmdline):
            continue
        if len(resolved) >= MAX_RESOLVED:
            settled.clear()
        candidates_of = resolved_candidates(proc, families, resolved)
        answers = settled.get(id(candidates_of))
        if answers is None:
            answers = []
            complete = True
            for family, spec, path, via in candidates_of:
                key = (family.id, path)
                if key not in results:
                    if found.files_read >= MAX_FILES:
                        found.limit_hit = True
                        complete = False
                        continue
                    results[key] = read_config(family, spec, path, proc, proc_root, found)
                config = results[key]
                if config is not None:
                    answers.append((config, via))
            if complete:
                settled[id(candidates_of)] = answers
        for config, via in answers:
            if len(config.readers) < MAX_READERS and all(r.pid != proc.pid for r in config.readers):
                config.readers.append(ConfigReader(pid=proc.pid, via=via))
    return [config for config in results.values() if config is not None]


def read_as_process(path: str, proc: ProcessInfo, proc_root: str, found: Found, limit: int) -> Any:
    """The file `path` as the process sees it (through its root), only if its user may read it, never
    through a symlink or into a forbidden place; None when it cannot be read (a denial is counted)."""
    access = os.path.join(proc_root, str(proc.pid), "root") + path
    try:
        opened = read_regular(access, limit, accept=lambda info, real, linked:
                              not is_forbidden(real) and readable_by(info, proc.uid) and not linked)
    except PermissionError:
        found.denied.add(proc.pid)
        return None
    except (OSError, NotRegularFile, Refused):
        return None
    found.files_read += 1
    return opened


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def read_config(family: Family, spec: ConfigSpec, path: str, proc: ProcessInfo, proc_root: str,
                found: Found) -> FamilyConfig | None:
    opened = read_as_process(path, proc, proc_root, found, MAX_CONFIG_BYTES)
    if opened is None:
        return None
    facts = config_facts(spec, opened.data.decode("utf-8", "replace"))
    if facts is None:
        return None
    owner = owner_name(opened.info.st_uid)
    for folder in facts.dirs:
        if folder.startswith("/"):
            folder = os.path.normpath(folder)
            found.access.setdefault(folder, os.path.join(proc_root, str(proc.pid), "root") + folder)
    return FamilyConfig(path=cap(path, 1024), family=family.id, owner=owner, keys=facts.keys,
                        urls=[cap(u, 300) for u in facts.urls], logins=[cap(v, 200) for v in facts.logins],
                        dirs=[cap(d, 1024) for d in facts.dirs], network=facts.network)
