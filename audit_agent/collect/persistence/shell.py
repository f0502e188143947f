"""What a persistence line starts: the shell command of each format, wrappers peeled, payloads decoded.

Pure text functions (no I/O), shared by the collector (which resolves the
programs on disk) and the detector (which judges snapshots that carry no
resolution). Every loop over attacker text is bounded: nesting of `sh -c`,
wrappers, decoding rounds and the size of what decoding may produce.
"""
from __future__ import annotations

import base64
import binascii
import re
import shlex
from functools import lru_cache

from audit_agent.collect.persistence import lines as fmt
from audit_agent.model import PersistenceEntry

CRON_SCHEDULE = re.compile(r"^\s*(?:@\S+|(?:\S+\s+){4}\S+)\s+")
CRON_SCRIPT_DIRS = ("/cron.hourly/", "/cron.daily/", "/cron.weekly/", "/cron.monthly/")
SYSTEM_CRONTAB = re.compile(r"(?:/etc/crontab|/cron\.d/[^/]+)$")
EXEC_LINE = re.compile(r"^\s*Exec\w+\s*=\s*[-@:+!|]*")
DESKTOP_EXEC = re.compile(r"^\s*(?:Try)?Exec\s*=\s*")
SEGMENT_SPLIT = re.compile(r"\|\||&&|(?<![<>&])&(?!>)|[;|`\n]|\$\(|<\(|\)")   # not the & of 2>&1 or &>
QUOTING = frozenset("'\"\\")                   # what shlex.split (posix) unquotes or escapes
SHLEX_BLANKS = re.compile(r"[ \t\r\n]+")            # shlex's whitespace: not str.split()'s \x0b, \x1c, NBSP...
REDIRECT = re.compile(r"^(?:\d*|&)(?:>>?|<<?<?)(&?\S*)$")
ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Wrappers that start the program named after them; (name, how many non-option words it takes first).
WRAPPERS = {"nohup": 0, "setsid": 0, "exec": 0, "sudo": 0, "doas": 0, "env": 0, "nice": 0, "ionice": 0,
            "chrt": 1, "taskset": 1, "timeout": 1, "stdbuf": 0, "time": 0, "command": 0, "flock": 1,
            "runuser": 0, "su": 0, "cpulimit": 0, "torsocks": 0, "proxychains": 0, "proxychains4": 0,
            "daemonize": 0, "xargs": 0, "systemd-run": 0, "disown": 0}
WRAPPER_OPTIONS_WITH_VALUE = {"-u", "-g", "-n", "-c", "-l", "-s", "-p", "-k", "--user", "--group", "-S", "-x",
                              "--exec", "--startas", "-a"}
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "fish", "mksh"}
INTERPRETERS = SHELLS | {"python", "python2", "python3", "perl", "ruby", "node", "php"}
FETCH_TOOLS = ("curl", "wget", "fetch", "lwp-download", "tftp")
URL = re.compile(r"(?i)\b(?:https?|ftp|tftp)://[^\s'\"`|;&<>()]{1,500}")
URL_HOST = re.compile(r"(?i)\b(?:https?|ftp|tftp)://(?:[^/\s@]{0,200}@)?(\[[0-9a-f:]{2,45}\]|[^/\s:'\"`|;&<>()]{1,255})")
BASE64_WORD = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
HEX_WORD = re.compile(r"\b[0-9a-fA-F]{16,}\b")
ESCAPES = re.compile(r"\\(?:x[0-9a-fA-F]{1,2}|[0-7]{1,3})")
MAX_DECODED = 16 * 1024
MAX_ROUNDS = 3


def command_of(entry: PersistenceEntry) -> str:
    """The shell command a line runs: cron schedule and user field, `ExecStart=-`, `Exec=` stripped,
    udev RUN values, an SSH key's command=, a pam_exec program, a container's command."""
    text = entry.text
    special = _special_command(entry)
    if special is not None:
        return special
    if entry.kind == "cron" and not any(d in entry.path for d in CRON_SCRIPT_DIRS):
        match = CRON_SCHEDULE.match(text)
        if not match:
            return ""
        text = text[match.end():]
        if entry.user and SYSTEM_CRONTAB.search(entry.path):
            first, _, rest = text.partition(" ")
            if first == entry.user:
                text = rest
        return text.strip()
    if entry.kind == "anacron":
        fields = text.split(None, 3)
        return fields[3].strip() if len(fields) == 4 else ""
    if entry.kind in ("systemd", "generator") and EXEC_LINE.match(text):
        return text[EXEC_LINE.match(text).end():].strip()    # type: ignore[union-attr]
    if entry.kind == "systemd":
        return ""
    if entry.kind == "autostart":
        match = DESKTOP_EXEC.match(text)
        return re.sub(r"%[fFuUdDnNickvm]", "", text[match.end():]).strip() if match else ""
    if entry.kind in ("ld-preload", "ld-conf"):
        return ""
    return text.strip()


def _special_command(entry: PersistenceEntry) -> str | None:
    if entry.kind == "udev":
        return " ; ".join(fmt.udev_commands(entry.text))
    if entry.kind == "ssh" and entry.placement == "authorized_keys":
        return " ; ".join(value for key, value in fmt.ssh_options(entry.text) if key == "command")
    if entry.kind == "ssh" and entry.placement == "sshd ForceCommand":
        words = entry.text.split(None, 1)
        return words[1] if len(words) == 2 else ""
    if entry.kind == "pam":
        return fmt.pam_exec_command(entry.text)
    if entry.kind == "container":
        return entry.text.split(" command=", 1)[1] if " command=" in entry.text else ""
    return None


def programs(command: str, depth: int = 0) -> list[list[str]]:
    """argv of every simple command in a shell line, wrappers (nohup, sudo, sh -c ...) peeled off."""
    return [list(argv) for argv in _programs(command, depth)]


@lru_cache(maxsize=4096)
def _programs(command: str, depth: int) -> tuple[tuple[str, ...], ...]:
    """programs(), remembered: the collector and the judgement split the same lines several times each."""
    return tuple(tuple(argv) for argv in _split_programs(command, depth))


def _split_programs(command: str, depth: int) -> list[list[str]]:
    found = []
    for segment in SEGMENT_SPLIT.split(command[:8192]):
        argv = split_words(segment)
        while argv and ENV_ASSIGN.match(argv[0]):
            argv = argv[1:]
        argv = peel_wrappers(argv)
        if not argv:
            continue
        name = basename(argv[0])
        if name == "start-stop-daemon":
            argv = option_values(argv, ("--exec", "-x", "--startas", "-a"))[:1]
            if not argv:
                continue
        if name in SHELLS and "-c" in argv[1:-1]:
            if depth < 3:
                found += programs(argv[argv.index("-c", 1) + 1], depth + 1)
            continue
        if name in SHELLS and len(argv) > 1 and not argv[1].startswith("-"):
            argv = argv[1:]         # `sh /tmp/.x/run.sh`: the script is what runs
        found.append(argv)
    return found


def split_words(segment: str) -> list[str]:
    """Shell words of one simple command, redirections (>/dev/null, 2>&1, < in) left out."""
    if QUOTING.isdisjoint(segment):
        # Nothing to unquote or escape: shlex (pure Python, a character at a time) would only split on its
        # blanks; most lines of a host (vendor units, udev rules) are such.
        words = [word for word in SHLEX_BLANKS.split(segment) if word]
    else:
        try:
            words = shlex.split(segment, comments=False)
        except ValueError:          # unbalanced quotes in hostile text: fall back to whitespace
            words = segment.split()
    kept = []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        redirect = REDIRECT.match(word)
        if redirect:
            skip_next = not redirect.group(1)       # `> file` names its target in the next word
            continue
        kept.append(word)
    return kept


def peel_wrappers(argv: list[str]) -> list[str]:
    for _ in range(8):
        if not argv or basename(argv[0]) not in WRAPPERS:
            return argv
        takes = WRAPPERS[basename(argv[0])]
        index = 1
        while index < len(argv) and (argv[index].startswith("-") or ENV_ASSIGN.match(argv[index])):
            index += 2 if argv[index] in WRAPPER_OPTIONS_WITH_VALUE else 1
        argv = argv[index + takes:]
    return argv


def option_values(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """Values of the given options (`--exec X`, `--exec=X`), in order."""
    found = []
    for index, word in enumerate(argv):
        flag, sep, value = word.partition("=")
        if flag in flags:
            if sep:
                found.append(value)
            elif index + 1 < len(argv):
                found.append(argv[index + 1])
    return found


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------- decoding and downloads

def decoded_commands(command: str) -> list[tuple[str, str]]:
    """(how, text) of every payload the line decodes and runs: base64, printf/$'..' escapes, hex (xxd -r).

    Only where the line itself decodes (a base64 tool, b64decode, printf, xxd -r),
    so a plain token that happens to be valid base64 is not taken for code.
    Decoded text is decoded again, at most MAX_ROUNDS deep."""
    found: list[tuple[str, str]] = []
    pending = [command[:MAX_DECODED]]
    for _ in range(MAX_ROUNDS):
        following = []
        for text in pending:
            for how, plain in _decode_once(text):
                if len(found) >= 8:
                    return found
                found.append((how, plain))
                following.append(plain)
        if not following:
            break
        pending = following
    return found


def _decode_once(text: str) -> list[tuple[str, str]]:
    lowered = text.lower()
    found = []
    if "base64" in lowered or "b64decode" in lowered or "openssl enc -d" in lowered:
        for word in BASE64_WORD.findall(text):
            plain = _b64(word)
            if plain:
                found.append(("base64", plain))
    if "printf" in lowered or "$'" in text or "echo -e" in lowered:
        for quoted in _quoted(text):
            if ESCAPES.search(quoted):
                plain = ESCAPES.sub(_unescape, quoted)
                if plain != quoted and _printable(plain):
                    found.append(("printf escapes", plain))
    if "xxd" in lowered or "fromhex" in lowered or "unhexlify" in lowered:
        for word in HEX_WORD.findall(text):
            try:
                plain = bytes.fromhex(word if len(word) % 2 == 0 else word[:-1]).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                continue
            if _printable(plain):
                found.append(("hex", plain))
    return found


def _b64(word: str) -> str:
    padded = word + "=" * (-len(word) % 4)
    try:
        plain = base64.b64decode(padded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return ""
    return plain if _printable(plain) and len(plain) >= 4 else ""


def _quoted(text: str) -> list[str]:
    """The single- or double-quoted strings of a line (unbalanced quotes: the rest of the line)."""
    found: list[str] = []
    position = 0
    while position < len(text) and len(found) < 32:
        starts = [i for i in (text.find("'", position), text.find('"', position)) if i >= 0]
        if not starts:
            break
        start = min(starts)
        end = text.find(text[start], start + 1)
        if end < 0:
            found.append(text[start + 1:])
            break
        found.append(text[start + 1:end])
        position = end + 1
    return found


def _unescape(match: re.Match[str]) -> str:
    code = match.group(0)[1:]
    value = int(code[1:], 16) if code.startswith("x") else int(code, 8)
    return chr(value) if value < 256 else ""


def _printable(text: str) -> bool:
    if not text or len(text) > MAX_DECODED:
        return False
    shown = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
    return shown / len(text) > 0.95


def downloads(command: str) -> list[str]:
    """URLs that the line fetches and hands to an interpreter: `curl URL | sh`, `sh -c "$(wget -O- URL)"`,
    `bash <(curl URL)`, or a download saved to a file that the line then runs."""
    lowered = command.lower()
    if not any(tool in lowered for tool in FETCH_TOOLS):
        return []
    urls = URL.findall(command)
    if not urls:
        return []
    for segment_start in _fetch_segments(command):
        rest = command[segment_start:]
        pipe = rest.find("|")
        if pipe >= 0 and not rest.startswith("||", pipe):
            after = split_words(rest[pipe + 1:].split("|", 1)[0])
            after = peel_wrappers(after)
            if after and basename(after[0]) in INTERPRETERS:
                return urls[:8]
        if _substituted_into_command(command[:segment_start]):
            return urls[:8]
    if saved_then_run(command):
        return urls[:8]
    return []


def _substituted_into_command(before: str) -> bool:
    """The fetch starts right after `$(`, a backquote or `<(`, and its output is run: `sh -c "$(curl ..)"`,
    `eval "$(wget ..)"`, `bash <(curl ..)`, or the substitution is the command word itself. Not
    `V=$(curl ..)`, which only stores what it fetched."""
    text = before.rstrip()
    if text.endswith("<("):
        return True
    if not text.endswith(("$(", "`")):
        return False
    head = text[:-2] if text.endswith("$(") else text[:-1]
    head = head.rstrip().rstrip("\"'").rstrip()
    return head.endswith(("-c", "eval", ";", "&", "|", "(", "{", " do")) or not head


def _fetch_segments(command: str) -> list[int]:
    starts: list[int] = []
    for tool in FETCH_TOOLS:
        position = 0
        while len(starts) < 32:
            index = command.find(tool, position)
            if index < 0:
                break
            starts.append(index)
            position = index + len(tool)
    return sorted(starts)


FETCH_SAVE = re.compile(r"\b(?:curl|wget)\b[^;&|]{0,500}?\s(?:-[a-zA-Z]{0,4}[oO]\s*|--output[= ]|--output-document[= ])(\S+)",
                        re.IGNORECASE)


def saved_then_run(command: str) -> re.Match[str] | None:
    """`curl -o /tmp/x URL; chmod +x /tmp/x; /tmp/x`: a download saved to a file that the line then runs."""
    saved = FETCH_SAVE.search(command)
    if not saved or saved.group(1) in ("-", "/dev/null"):
        return None
    target = saved.group(1).strip("'\"")
    started = [argv[0] for argv in programs(command[saved.end():])]
    started += [argv[1] for argv in programs(command[saved.end():])
                if len(argv) > 1 and basename(argv[0]) in INTERPRETERS]
    if any(path == target or (not path.startswith("/") and target.endswith("/" + path.lstrip("./")))
           for path in started):
        return saved
    return None


def url_hosts(urls: list[str]) -> list[str]:
    return [m.group(1).strip("[]") for m in map(URL_HOST.match, urls) if m]
