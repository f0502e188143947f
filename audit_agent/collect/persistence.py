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
Reading is bounded (bytes per file, files in all, home directories). A file or
a folder that cannot be read (a spool or /home the agent may not list, a
crontab it may not open) is counted in the coverage as denied, never raised;
so are files and homes left out at a bound, and symlinks not followed.

Opening. The agent runs as root over paths users control, so every file is
opened through collect.safe_read: an O_PATH descriptor is fstat'ed and only a
regular file is reopened for reading (a ~/.bashrc swapped for a FIFO cannot
hang the agent; a device is never opened). Symlinks, deliberately:
  * in a user's home, a file reached through a symlink (the file itself, or a
    linked ~/.config) is read only when that user owns it: dotfiles kept in a
    repository and linked (GNU stow) are still read, while ~/.bashrc -> a
    root-only file never puts root's lines into the report;
  * elsewhere (/etc, /usr/lib, /lib, the cron spool, all root-made) a symlink
    is followed when its target is owned by root (or by the agent's own user)
    and is not world-writable: linked units such as
    /etc/systemd/system/foo.service -> /usr/lib/... are still read.
A symlink not followed is counted in the coverage.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from audit_agent.collect import linux_only
from audit_agent.collect.safe_read import FileRead, NotRegularFile, Refused, read_regular
from audit_agent.model import Coverage, CoverageStatus, PersistenceEntry, Snapshot

MAX_FILE_BYTES = 256 * 1024     # a crontab or unit is tiny; a bigger file is read only this far
MAX_FILES = 5000                # every file read, all sources together
MAX_HOMES = 2000                # home directories looked into (a cluster's /home can hold thousands)
MAX_LINE_CHARS = 4096
MAX_ENTRIES_PER_FILE = 500      # a generated or hostile file must not flood the snapshot
MAX_EXAMPLES = 5                # example paths named in the coverage reason
CHECK = "persistence"

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
    refused: int = 0                # symlinks not followed (see the module docstring)
    refused_paths: list[str] = field(default_factory=list)
    truncated: int = 0
    skipped_for_limit: int = 0
    homes_skipped: int = 0
    seen: set[tuple[int, int]] = field(default_factory=set)

    def read_lines(self, path: Path, home: Path | None = None) -> list[str] | None:
        """The file's lines (bounded), or None when it is not a readable regular file.

        `home`: the user's home directory the file lies in (None for system files)."""
        if self.files >= MAX_FILES:
            if os.path.lexists(path):
                self.skipped_for_limit += 1
            return None
        try:
            opened = read_head(path, MAX_FILE_BYTES + 1, home)
        except (FileNotFoundError, NotADirectoryError, NotRegularFile):
            return None
        except Refused:
            self.refused += 1
            if len(self.refused_paths) < MAX_EXAMPLES:
                self.refused_paths.append(str(path))
            return None
        except OSError:
            self.note_denied(path)
            return None
        if opened.identity in self.seen:
            return None             # merged /usr, symlinked units: read each file once
        self.seen.add(opened.identity)
        self.files += 1
        data = opened.data
        if len(data) > MAX_FILE_BYTES:
            self.truncated += 1
            data = data[:MAX_FILE_BYTES]
        return data.decode("utf-8", "replace").splitlines()

    def note_denied(self, path: Path | str) -> None:
        """A file or folder that exists but could not be read or listed."""
        self.denied += 1
        if len(self.denied_paths) < MAX_EXAMPLES:
            self.denied_paths.append(str(path))

    def add(self, path: Path, kind: str, entries: Iterator[tuple[int, str, str]]) -> None:
        for count, (line, text, user) in enumerate(entries):
            if count >= MAX_ENTRIES_PER_FILE:
                self.truncated += 1
                break
            self.entries.append(PersistenceEntry(path=str(path), kind=kind, line=line,
                                                 text=text[:MAX_LINE_CHARS], user=user))


def collect_persistence(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """Persistence: crontabs, systemd units and timers, rc.local and profile scripts."""
    not_here = linux_only(CHECK)
    if not_here:
        return [not_here]
    etc = Path(options.etc_root)
    if not etc.is_dir():
        return [Coverage(CHECK, CoverageStatus.SKIPPED, f"{etc} is not a directory")]
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
        problems.append(f"{reader.denied} file(s) or folder(s) could not be read (access denied), e.g. "
                        + ", ".join(reader.denied_paths))
    if reader.refused:
        problems.append(f"{reader.refused} symlink(s) not followed (target owned by another user or "
                        "world-writable), e.g. " + ", ".join(reader.refused_paths))
    if reader.skipped_for_limit:
        problems.append(f"{reader.skipped_for_limit} file(s) not read: limit of {MAX_FILES} files reached")
    if reader.homes_skipped:
        problems.append(f"{reader.homes_skipped} home folder(s) not read: limit of {MAX_HOMES} homes reached")
    if reader.truncated:
        problems.append(f"{reader.truncated} file(s) read only in part (over {MAX_FILE_BYTES // 1024} KiB "
                        f"or {MAX_ENTRIES_PER_FILE} entries)")
    status = CoverageStatus.PARTIAL if problems else CoverageStatus.OK
    reason = "; ".join(problems) or f"{len(reader.entries)} entries from {reader.files} files"
    return Coverage(CHECK, status, reason, inspected=reader.files, denied=reader.denied + reader.refused)


# ---------------------------------------------------------------- cron

def read_cron(reader: _Reader, etc: Path, root: Path) -> None:
    system_tables = [etc / "crontab", *_files(etc / "cron.d", reader)]
    for path in system_tables:
        lines = reader.read_lines(path)
        if lines is not None:
            reader.add(path, "cron", cron_lines(lines, system=True))
    for directory in CRON_PERIODIC:
        for path in _files(etc / directory, reader):
            lines = reader.read_lines(path)
            if lines is not None:           # periodic scripts run as root; every command line counts
                reader.add(path, "cron", ((n, text, "root") for n, text in script_lines(lines)))
    spool = root / "var" / "spool" / "cron"
    for path in [*_files(spool / "crontabs", reader), *_files(spool, reader)]:
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
        for path in _walk(directory, reader):
            read_unit(reader, path, "root" if directory.name == "system" else "")
    for directory in (root / "usr" / "lib" / "systemd" / "system", root / "lib" / "systemd" / "system"):
        for path in _walk(directory, reader, suffixes=(".service",)):
            read_unit(reader, path, "root")


def read_unit(reader: _Reader, path: Path, user: str, home: Path | None = None) -> None:
    if path.suffix not in (".service", ".timer", ".conf") or path.parent.name.endswith(".wants"):
        return      # *.wants/ holds links to units read from their own directory
    lines = reader.read_lines(path, home)
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
    for path in (etc / "profile", etc / "bash.bashrc", etc / "bashrc", *_files(etc / "profile.d", reader)):
        lines = reader.read_lines(path)
        if lines is not None:
            reader.add(path, "profile", ((n, text, "") for n, text in script_lines(lines, filtered=True)))
    for path in _files(etc / "init.d", reader):
        lines = reader.read_lines(path)
        if lines is not None:
            reader.add(path, "rc", ((n, text, "root") for n, text in script_lines(lines, filtered=True)))


def read_homes(reader: _Reader, root: Path) -> None:
    homes = [root / "root"]
    try:
        listed = sorted(p for p in (root / "home").iterdir() if p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        listed = []
    except OSError:
        reader.note_denied(root / "home")      # every user's files are out of sight: say so
        listed = []
    reader.homes_skipped += max(len(listed) - MAX_HOMES, 0)
    homes += listed[:MAX_HOMES]
    for home in homes:
        user = home.name
        for name in USER_SHELL_FILES:
            path = home / name
            lines = reader.read_lines(path, home)
            if lines is not None:
                reader.add(path, "profile", ((n, text, user) for n, text in script_lines(lines, filtered=True)))
        for path in _walk(home / ".config" / "systemd" / "user", reader):
            read_unit(reader, path, user, home)


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

def read_head(path: Path, limit: int, home: Path | None = None) -> FileRead:
    """At most `limit` bytes of a regular file, opened safely under the symlink policy of the module docstring
    (its own function so tests can deny access to one file)."""
    return read_regular(path, limit, accept=home_policy(home, path) if home is not None else system_policy)


def system_policy(info: os.stat_result, real: str, linked: bool) -> bool:
    """A system file; through a symlink only to a target owned by root (or the agent's user), not world-writable."""
    if not linked:
        return True
    return info.st_uid in (0, _euid()) and not info.st_mode & stat.S_IWOTH


def home_policy(home: Path, path: Path) -> Callable[[os.stat_result, str, bool], bool]:
    """For `path` in a user's `home`: read directly, or through any symlink only when the home's owner owns it.

    "Directly" means the file actually opened is the one the path names below
    the home's real location, with no symlink on the way (a linked ~/.bashrc,
    or a linked ~/.config whose files lie elsewhere, is not direct)."""
    try:
        home_real = os.path.realpath(home)
        owner: int | None = os.stat(home).st_uid
    except OSError:
        home_real, owner = "", None
    direct = os.path.join(home_real, os.path.relpath(path, home)) if home_real else None

    def accept(info: os.stat_result, real: str, linked: bool) -> bool:
        if not linked and real and real == direct:
            return True
        return owner is not None and info.st_uid == owner
    return accept


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else -1


def _files(directory: Path, reader: _Reader | None = None) -> list[Path]:
    """Regular files directly in a directory, sorted; dot-files and editor backups are still read.
    A directory that exists but cannot be listed is counted as denied."""
    try:
        return sorted(p for p in directory.iterdir() if not p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError:
        if reader is not None:
            reader.note_denied(directory)
        return []


def _walk(directory: Path, reader: _Reader | None = None,
          suffixes: tuple[str, ...] = (".service", ".timer", ".conf")) -> list[Path]:
    """Unit files below a directory; a folder that cannot be listed is counted as denied."""
    found: list[Path] = []

    def unreadable(error: OSError) -> None:
        if reader is not None and not isinstance(error, (FileNotFoundError, NotADirectoryError)):
            reader.note_denied(error.filename or directory)

    for current, dirs, files in os.walk(directory, onerror=unreadable):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(suffixes):
                if len(found) >= MAX_FILES:     # at least this one left out: the coverage says partial
                    if reader is not None:
                        reader.skipped_for_limit += 1
                    return found
                found.append(Path(current) / name)
    return found
