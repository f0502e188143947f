"""Persistence: the lines of crontabs, systemd units, rc.local and profile scripts that start programs.

Roots. Everything is read below ONE root so that tests point the collector at a
small fake tree: the configuration root is `options.etc_root` (default /etc) and
the other trees are taken from its parent, `root = Path(etc_root).parent`:

    ROOT/etc/...                          crontab, cron.d, cron.{hourly,daily,weekly,monthly},
                                          systemd/system, systemd/user, rc.local, rc.d/rc.local,
                                          profile, profile.d, bash.bashrc, bashrc, init.d
    ROOT/var/spool/cron/crontabs/USER     Debian/Ubuntu user crontabs
    ROOT/var/spool/cron/USER              RHEL/Fedora user crontabs
    ROOT/usr/lib/systemd/system,
    ROOT/lib/systemd/system               vendor units (only *.service Exec lines)
    ROOT/home/*/, ROOT/root/              .bashrc, .profile, .bash_profile, .bash_login,
                                          .config/systemd/user/**

With the default /etc the root is `/`. Only the lines that start something are
kept (cron commands, systemd `Exec*=` lines, script lines that run a program),
as PersistenceEntry(path, kind, line, text, user), so a snapshot stays small.
Reading is bounded (bytes per file, files in all, home directories); a file
that cannot be read is counted in the coverage, never raised.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from audit_agent.collect import linux_only
from audit_agent.model import Coverage, CoverageStatus, PersistenceEntry, Snapshot

MAX_FILE_BYTES = 256 * 1024     # a crontab or unit is tiny; a bigger file is read only this far
MAX_FILES = 5000                # every file read, all sources together
MAX_HOMES = 2000                # home directories looked into (a cluster's /home can hold thousands)
MAX_LINE_CHARS = 4096
MAX_ENTRIES_PER_FILE = 500      # a generated or hostile file must not flood the snapshot

CRON_PERIODIC = ("cron.hourly", "cron.daily", "cron.weekly", "cron.monthly")
SYSTEMD_EXEC = re.compile(r"^\s*(Exec(?:Start|StartPre|StartPost|Reload|Stop|StopPost|Condition))\s*=")
TIMER_KEYS = re.compile(r"^\s*(Unit|OnCalendar|OnBootSec|OnStartupSec|OnActiveSec|OnUnitActiveSec)\s*=")
CRON_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")
# Lines of a script that cannot start anything themselves: block syntax, exits, plain assignments.
SHELL_FURNITURE = re.compile(
    r"^(?:fi|done|esac|then|else|do|\{|\}|;;|:|set\s+[-+][\w-]+|exit(?:\s+\$?\w+)?|return(?:\s+\$?\w+)?"
    r"|[\w-]+\s*\(\)\s*\{?|(?:export\s+|local\s+|readonly\s+)?[A-Za-z_]\w*=[^$`;&|]*)\s*;?$")
USER_SHELL_FILES = (".bashrc", ".profile", ".bash_profile", ".bash_login", ".zshrc")
# Profile scripts are long and mostly shell furniture (aliases, prompts, tests).
# Keep a line only when it could start or fetch something: a program named by
# path, something sent to the background, a pipe, a URL or a download tool.
PROFILE_RUNS = re.compile(
    r"(?:^|[;&|`(]\s*|\b(?:exec|nohup|setsid|eval|sh|bash)\s+)(?:\.{0,2}/|~/|\$HOME/)"
    r"|&\s*$|\||://|\b(?:curl|wget|nohup|setsid|screen|tmux|base64|LD_PRELOAD|stratum)\b",
    re.IGNORECASE)


@dataclass
class _Reader:
    """Reads files once each, within the bounds, and counts what it could not read."""
    entries: list[PersistenceEntry] = field(default_factory=list)
    files: int = 0
    denied: int = 0
    denied_paths: list[str] = field(default_factory=list)
    truncated: int = 0
    skipped_for_limit: int = 0
    seen: set[str] = field(default_factory=set)

    def read_lines(self, path: Path) -> list[str] | None:
        """The file's lines (bounded), or None when it is not a readable regular file."""
        try:
            real = os.path.realpath(path)
            if real in self.seen:
                return None         # merged /usr, symlinked units: read each file once
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):
                return None
            if self.files >= MAX_FILES:
                self.skipped_for_limit += 1
                return None
            self.seen.add(real)
            self.files += 1
            data = read_head(path, MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError:
            self.denied += 1
            if len(self.denied_paths) < 5:
                self.denied_paths.append(str(path))
            return None
        if len(data) > MAX_FILE_BYTES:
            self.truncated += 1
            data = data[:MAX_FILE_BYTES]
        return data.decode("utf-8", "replace").splitlines()

    def add(self, path: Path, kind: str, entries: Iterator[tuple[int, str, str]]) -> None:
        for count, (line, text, user) in enumerate(entries):
            if count >= MAX_ENTRIES_PER_FILE:
                self.truncated += 1
                break
            self.entries.append(PersistenceEntry(path=str(path), kind=kind, line=line,
                                                 text=text[:MAX_LINE_CHARS], user=user))


def collect_persistence(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """Persistence: crontabs, systemd units and timers, rc.local and profile scripts."""
    not_here = linux_only("persistence")
    if not_here:
        return [not_here]
    etc = Path(options.etc_root)
    if not etc.is_dir():
        return [Coverage("persistence", CoverageStatus.SKIPPED, f"{etc} is not a directory")]
    reader = read_persistence(etc)
    snapshot.persistence = reader.entries
    return [persistence_coverage(reader)]


def read_persistence(etc: Path) -> _Reader:
    """Read every persistence source below etc and its parent root (see the module docstring)."""
    root = etc.parent
    reader = _Reader()
    read_cron(reader, etc, root)
    read_systemd(reader, etc, root)
    read_scripts(reader, etc)
    read_homes(reader, root)
    return reader


def persistence_coverage(reader: _Reader) -> Coverage:
    problems = []
    if reader.denied:
        problems.append(f"{reader.denied} file(s) could not be read (access denied), e.g. "
                        + ", ".join(reader.denied_paths))
    if reader.skipped_for_limit:
        problems.append(f"{reader.skipped_for_limit} file(s) not read: limit of {MAX_FILES} files reached")
    if reader.truncated:
        problems.append(f"{reader.truncated} file(s) read only in part (over {MAX_FILE_BYTES // 1024} KiB "
                        f"or {MAX_ENTRIES_PER_FILE} entries)")
    status = CoverageStatus.PARTIAL if problems else CoverageStatus.OK
    reason = "; ".join(problems) or f"{len(reader.entries)} entries from {reader.files} files"
    return Coverage("persistence", status, reason, inspected=reader.files, denied=reader.denied)


# ---------------------------------------------------------------- cron

def read_cron(reader: _Reader, etc: Path, root: Path) -> None:
    system_tables = [etc / "crontab", *_files(etc / "cron.d")]
    for path in system_tables:
        lines = reader.read_lines(path)
        if lines is not None:
            reader.add(path, "cron", cron_lines(lines, system=True))
    for directory in CRON_PERIODIC:
        for path in _files(etc / directory):
            lines = reader.read_lines(path)
            if lines is not None:           # periodic scripts run as root; every command line counts
                reader.add(path, "cron", ((n, text, "root") for n, text in script_lines(lines)))
    spool = root / "var" / "spool" / "cron"
    for path in [*_files(spool / "crontabs"), *_files(spool)]:
        lines = reader.read_lines(path)     # the file name is the user; _files skips crontabs/ itself
        if lines is not None:
            reader.add(path, "cron", ((n, text, path.name) for n, text, _ in cron_lines(lines, system=False)))


def cron_lines(lines: list[str], system: bool) -> Iterator[tuple[int, str, str]]:
    """(line number, the whole line, user) for every job line; a system table names the user in field 6."""
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#") or CRON_ENV.match(text):
            continue
        fields = text.split()
        schedule = 1 if fields[0].startswith("@") else 5
        if len(fields) <= schedule:
            continue
        user = fields[schedule] if system and len(fields) > schedule + 1 else ""
        yield number, text, user


# ---------------------------------------------------------------- systemd

def read_systemd(reader: _Reader, etc: Path, root: Path) -> None:
    for directory in (etc / "systemd" / "system", etc / "systemd" / "user"):
        for path in _walk(directory):
            read_unit(reader, path, "root" if directory.name == "system" else "")
    for directory in (root / "usr" / "lib" / "systemd" / "system", root / "lib" / "systemd" / "system"):
        for path in _walk(directory, suffixes=(".service",)):
            read_unit(reader, path, "root")


def read_unit(reader: _Reader, path: Path, user: str) -> None:
    if path.suffix not in (".service", ".timer", ".conf") or path.parent.name.endswith(".wants"):
        return      # *.wants/ holds links to units read from their own directory
    lines = reader.read_lines(path)
    if lines is not None:
        reader.add(path, "systemd", ((n, text, user) for n, text in unit_lines(lines, path.suffix == ".timer")))


def unit_lines(lines: list[str], timer: bool = False) -> Iterator[tuple[int, str]]:
    """Exec*= lines of a service (continuations joined); Unit= and schedule lines of a timer."""
    wanted = TIMER_KEYS if timer else SYSTEMD_EXEC
    for number, text in joined_lines(lines):
        if wanted.match(text):
            yield number, text


# ---------------------------------------------------------------- rc and profile scripts

def read_scripts(reader: _Reader, etc: Path) -> None:
    for path in (etc / "rc.local", etc / "rc.d" / "rc.local"):
        lines = reader.read_lines(path)
        if lines is not None:       # rc.local is a plain list of commands run at boot: keep them all
            reader.add(path, "rc", ((n, text, "root") for n, text in script_lines(lines)))
    for path in (etc / "profile", etc / "bash.bashrc", etc / "bashrc", *_files(etc / "profile.d")):
        lines = reader.read_lines(path)
        if lines is not None:
            reader.add(path, "profile", ((n, text, "") for n, text in script_lines(lines, filtered=True)))
    for path in _files(etc / "init.d"):
        lines = reader.read_lines(path)
        if lines is not None:
            reader.add(path, "rc", ((n, text, "root") for n, text in script_lines(lines, filtered=True)))


def read_homes(reader: _Reader, root: Path) -> None:
    homes = [root / "root"]
    try:
        homes += sorted(p for p in (root / "home").iterdir() if p.is_dir())[:MAX_HOMES]
    except OSError:
        pass
    for home in homes:
        user = home.name
        for name in USER_SHELL_FILES:
            path = home / name
            lines = reader.read_lines(path)
            if lines is not None:
                reader.add(path, "profile", ((n, text, user) for n, text in script_lines(lines, filtered=True)))
        for path in _walk(home / ".config" / "systemd" / "user"):
            read_unit(reader, path, user)


def script_lines(lines: list[str], filtered: bool = False) -> Iterator[tuple[int, str]]:
    """Non-comment lines of a shell script; `filtered` keeps only those that could start something."""
    for number, text in joined_lines(lines):
        if text.startswith("#") or SHELL_FURNITURE.match(text) or (filtered and not PROFILE_RUNS.search(text)):
            continue
        yield number, text


def joined_lines(lines: list[str]) -> Iterator[tuple[int, str]]:
    """Stripped non-empty lines, a trailing backslash joining the next; numbered by their first line."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not pending:
            start = number
        if text.endswith("\\"):
            pending.append(text[:-1].strip())
            continue
        text = " ".join([*pending, text]).strip() if pending else text
        pending = []
        if text:
            yield start, text
    if pending:
        yield start, " ".join(pending)


# ---------------------------------------------------------------- listing

def read_head(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of a file (its own function so tests can deny access to one file)."""
    with open(path, "rb") as handle:
        return handle.read(limit)


def _files(directory: Path) -> list[Path]:
    """Regular files directly in a directory, sorted; dot-files and editor backups are still read."""
    try:
        return sorted(p for p in directory.iterdir() if not p.is_dir())
    except OSError:
        return []


def _walk(directory: Path, suffixes: tuple[str, ...] = (".service", ".timer", ".conf")) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(suffixes):
                found.append(Path(current) / name)
                if len(found) >= MAX_FILES:
                    return found
    return found
