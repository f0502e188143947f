"""Which lines of a persistence file start something: one function per file format, pure text in, lines out.

Each yields (line number, text, user), user being the account the line runs
as when the format says so ('' when the place decides). Only lines that start
or load something are kept, so a snapshot stays small. The regexes here run on
attacker-written text: each is linear (no nested or overlapping repeats).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

Entry = tuple[int, str, str]

SYSTEMD_EXEC = re.compile(r"^\s*(Exec(?:Start|StartPre|StartPost|Reload|Stop|StopPost|Condition))\s*=")
TIMER_KEYS = re.compile(r"^\s*(Unit|OnCalendar|OnBootSec|OnStartupSec|OnActiveSec|OnUnitActiveSec)\s*=")
UNIT_KEYS = re.compile(r"^\s*(User|WantedBy|RequiredBy|Environment|EnvironmentFile)\s*=")
CRON_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")
ASSIGNMENT = re.compile(r"^(?:export\s+|local\s+|readonly\s+|declare\s+(?:-\w+\s+)?)?[A-Za-z_]\w*=")
FUNCTION_HEAD = re.compile(r"^(?:function\s+)?[\w-]+\s*\(\)\s*\{?$")
# Control words in front of the command they guard: `then /x &`, `if cmd; then`, `do ./y`.
CONTROL_WORD = re.compile(r"^(?:then|else|elif|do|if|while|until|!|\{|\()\s+")
FURNITURE_WORDS = {"fi", "done", "esac", "then", "else", "do", "{", "}", ";;", ":", "exit", "return", "true",
                   "false", "set", "shopt", "unset", "alias", "unalias", "umask", "ulimit", "case", "in",
                   "local", "export", "readonly", "declare", "typeset", "break", "continue", "shift", "bind",
                   "complete", "compdef", "autoload", "zstyle", "setopt", "unsetopt", "bindkey", "[", "[[",
                   "test", "echo", "printf", "eval_gettext"}
# Profile scripts are long and mostly furniture (aliases, prompts, tests). Keep a command when it could
# start or fetch something: a program named by path, something sent to the background, a pipe, a URL,
# a download or decode tool, a preload.
RUNS_HINT = re.compile(
    r"(?:^|[\s;&|`(=])(?:\.{0,2}/|~/|\$HOME/|\$\{HOME\}/)\S"
    r"|&$|\|"
    r"|://"
    r"|\b(?:curl|wget|nohup|setsid|screen|tmux|base64|xxd|LD_PRELOAD|stratum|disown|crontab|systemctl)\b",
    re.IGNORECASE)
# What every match of RUNS_HINT holds: a slash, an ampersand, a pipe or one of its words (lower case: an ASCII
# line is lowered first). Most lines of a profile hold none of them and are let go before the slower steps
# of script_lines; matching RUNS_HINT itself on every line costs more than those steps.
HINT_WORDS = re.compile(r"curl|wget|nohup|setsid|screen|tmux|base64|xxd|ld_preload|stratum|disown|crontab|systemctl")
SOURCE_ONLY = re.compile(r"^(?:\.|source)\s+\S+$")
AT_HEADER = re.compile(r"^#\s*atrun\s+uid=(\d+)")
AT_HEREDOC = re.compile(r"^\$\{SHELL:-/bin/sh\}\s*<<\s*['\"]?(\w+)")
UDEV_RUN = re.compile(r"\b(?:RUN|PROGRAM|IMPORT\{program\})(?:\{[a-z]+\})?\s*\+?=\s*\"([^\"]*)\"")
SSH_OPTION = re.compile(r"(?:^|,)\s*(command|environment)=\"((?:[^\"\\]|\\.)*)\"", re.IGNORECASE)
KEY_TYPES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")


def joined_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
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


def cron_lines(lines: list[str], system: bool) -> Iterator[Entry]:
    """Job lines of a crontab; a system table (/etc/crontab, cron.d) names the user in field 6."""
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


def anacron_lines(lines: list[str]) -> Iterator[Entry]:
    """/etc/anacrontab: `period delay job-id command`, run as root."""
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#") or CRON_ENV.match(text):
            continue
        if len(text.split()) >= 4:
            yield number, text, "root"


def at_job_lines(lines: list[str]) -> tuple[str, list[tuple[int, str]]]:
    """An at/batch spool file: (uid from the `# atrun uid=` header, the commands of the job).

    atd writes the submitter's environment and a `cd` guard first, then the
    job, usually as a here-document fed to ${SHELL}; only the job is kept."""
    uid = ""
    body_from = 0
    delimiter = ""
    for number, raw in enumerate(lines[:200], 1):
        header = AT_HEADER.match(raw)
        if header:
            uid = header.group(1)
        heredoc = AT_HEREDOC.match(raw)
        if heredoc:
            body_from, delimiter = number, heredoc.group(1)
            break
        if raw.startswith("}"):             # the end of the `cd DIR || { ... }` guard
            body_from = number
    found = []
    for number, text in joined_lines(lines[body_from:]):
        if delimiter and text == delimiter:
            break
        if text.startswith(("#", "export ", "umask ")) or ASSIGNMENT.match(text):
            continue
        found.append((number + body_from, text))
    return uid, found


def unit_lines(lines: list[str], timer: bool = False) -> Iterator[tuple[int, str]]:
    """Exec*= lines of a unit (continuations joined) plus User=/WantedBy=/Environment=; a timer's schedule."""
    wanted = TIMER_KEYS if timer else SYSTEMD_EXEC
    for number, text in joined_lines(lines):
        if wanted.match(text) or (not timer and UNIT_KEYS.match(text)):
            yield number, text


def script_lines(lines: list[str], filtered: bool = False) -> Iterator[tuple[int, str]]:
    """Commands of a shell script; `filtered` keeps only those that could start something.

    A command inside a block counts like one at the top: `then /opt/x &` and
    `if true; then /opt/x & fi` keep the command they guard."""
    for number, text in joined_lines(lines):
        if text.startswith(("#", "#!")):
            continue
        if filtered and not could_hint(text):
            continue
        command = strip_control(text)
        if not command or is_furniture(command):
            continue
        if filtered and (not RUNS_HINT.search(command) or SOURCE_ONLY.match(command)):
            continue
        yield number, text


def could_hint(text: str) -> bool:
    """False when RUNS_HINT cannot match the line nor any part of it (the command strip_control leaves).
    A line with other than ASCII is never let go here: re's case-insensitive match knows letters (the long
    s, the Kelvin sign) that lower() does not turn into the ASCII ones."""
    if "/" in text or "&" in text or "|" in text or not text.isascii():
        return True
    return HINT_WORDS.search(text.lower()) is not None


def strip_control(text: str) -> str:
    """The command a line runs once control words in front of it are taken off (`if x; then y; fi` -> y...)."""
    command = text.strip()
    for _ in range(8):
        match = CONTROL_WORD.match(command)
        if not match:
            break
        command = command[match.end():].lstrip()
    if command.endswith((" fi", ";fi", "; fi", " done", ";done")):
        command = command.rsplit(None, 1)[0].rstrip(";").rstrip() if " " in command else ""
    return command


def is_furniture(command: str) -> bool:
    """A line that cannot start anything itself: block syntax, exits, plain assignments, functions."""
    if ASSIGNMENT.match(command) and "$(" not in command and "`" not in command:
        return True
    if FUNCTION_HEAD.match(command):
        return True
    first = command.split(None, 1)[0].rstrip(";")
    return first in FURNITURE_WORDS and "|" not in command and "&" not in command.replace("&&", "")


def desktop_lines(lines: list[str]) -> Iterator[Entry]:
    """XDG autostart .desktop: Exec= (and TryExec=) of the [Desktop Entry] group; Hidden=true disables it."""
    group = ""
    found = []
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if text.startswith("["):
            group = text
            continue
        if group != "[Desktop Entry]":
            continue
        key, sep, value = text.partition("=")
        key = key.strip()
        if key == "Hidden" and value.strip().lower() == "true":
            return
        if sep and key in ("Exec", "TryExec"):
            found.append((number, text, ""))
    yield from found


def udev_lines(lines: list[str]) -> Iterator[Entry]:
    """udev rules that run a program: RUN+=, RUN{program}+=, PROGRAM=, IMPORT{program}=; run as root."""
    for number, text in joined_lines(lines):
        if not text.startswith("#") and UDEV_RUN.search(text):
            yield number, text, "root"


def udev_commands(text: str) -> list[str]:
    """The programs a udev rule line runs (RUN{builtin} is udev's own code, not a program)."""
    return [m.group(1) for m in UDEV_RUN.finditer(text) if "{builtin}" not in m.group(0)]


def authorized_keys_lines(lines: list[str]) -> Iterator[Entry]:
    """Keys with a forced command= or environment= option: they run on every login with that key."""
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#") or text.startswith(KEY_TYPES):
            continue                        # a plain key: no options
        if "command=" in text.lower() or "environment=" in text.lower():
            yield number, text, ""


def ssh_options(text: str) -> list[tuple[str, str]]:
    """(option, value) of command= and environment= in an authorized_keys line, quotes undone."""
    options_part = text
    for key_type in KEY_TYPES:
        index = text.find(" " + key_type)
        if index > 0:
            options_part = text[:index]
            break
    return [(m.group(1).lower(), m.group(2).replace('\\"', '"')) for m in SSH_OPTION.finditer(options_part)]


def preload_lines(lines: list[str]) -> Iterator[Entry]:
    """/etc/ld.so.preload: whitespace-separated library paths, loaded into every program."""
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if text:
            yield number, text, "*"


def ld_conf_lines(lines: list[str]) -> Iterator[Entry]:
    """ld.so.conf(.d): library folders searched before the system's (include lines are read as files)."""
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if text and not text.startswith("include "):
            yield number, text, "*"


def environment_lines(lines: list[str]) -> Iterator[Entry]:
    """/etc/environment (pam_env): a LD_PRELOAD / LD_LIBRARY_PATH / PATH set for every login."""
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if text.startswith(("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT")):
            yield number, text, "*"


def sshd_authorized_keys_files(lines: list[str]) -> list[str]:
    """The AuthorizedKeysFile patterns of sshd_config (%h, %u, %% tokens left in), or the default."""
    for raw in lines:
        words = raw.split("#", 1)[0].split()
        if len(words) >= 2 and words[0].lower() == "authorizedkeysfile":
            return [w for w in words[1:] if w.lower() != "none"][:4]
    return [".ssh/authorized_keys", ".ssh/authorized_keys2"]


def pam_exec_lines(lines: list[str]) -> Iterator[Entry]:
    """PAM lines that run a program (pam_exec.so PROGRAM): run as root at every login or password change."""
    for number, text in joined_lines(lines):
        if not text.startswith("#") and "pam_exec.so" in text:
            yield number, text, "root"


def pam_exec_command(text: str) -> str:
    """The command of a pam_exec line: the words after pam_exec.so and its options (key or key=value)."""
    words = text.split("pam_exec.so", 1)[1].split()
    while words and not words[0].startswith("/"):
        words = words[1:]
    return " ".join(words)


def force_command_lines(lines: list[str]) -> Iterator[Entry]:
    """sshd_config ForceCommand: run instead of whatever a user asks for at every SSH login."""
    for number, raw in enumerate(lines, 1):
        words = raw.split("#", 1)[0].split(None, 1)
        if len(words) == 2 and words[0].lower() == "forcecommand" and words[1].strip().lower() != "none":
            yield number, raw.strip(), "*"
