"""Resolve each persistence entry to what it starts, and look at each program on disk.

For an entry: its command (per format), the payloads it decodes (base64,
printf escapes, hex), the URLs it downloads and runs, and the argv of every
simple command, wrappers peeled (shell.py). Each program named is found on
disk below the scan root (PATH search for bare names, the user's home for
`~/` and relative names), and examined once, however many entries name it:
owner, mode, ages, who may replace it, the hidden folder it sits in, the
executable scanner's signature hits (collect.binaries, with its cache, so a
program that also runs is scanned once), packer marks, and the miner configs
it names or that lie next to it (collect.configs). A program that is a script
is read (bounded, only if the account it runs as could read it) and the
programs it starts are resolved in turn, to a fixed depth.

Programs are opened through fs.Tree like everything else: a symlink never
leads out of the scan root and only a regular file is opened for reading.
"""
from __future__ import annotations

import os
import posixpath
from typing import Any

import msgspec

from audit_agent.collect import binaries, configs, deadline, observed
from audit_agent.collect.persistence import lines as fmt
from audit_agent.collect.persistence import shell
from audit_agent.collect.persistence.baseline import read_baseline
from audit_agent.collect.persistence.fs import Limits, Scope, Tree, read_fd
from audit_agent.collect.persistence.state import Collected
from audit_agent.detect.places import PACKAGE_DIRS, hidden_component
from audit_agent.model import PersistenceEntry, StartedProgram

PROGRAM_LIMITS = Limits(files=3000, bytes=2 * 1024 * 1024 * 1024, seconds=120.0, names=10000)
MAX_SCRIPT_BYTES = 64 * 1024
MAX_SCRIPT_DEPTH = 2
MAX_PROGRAMS_PER_ENTRY = 12
MAX_TEXT = 2000
PATH_DIRS = ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin")
UDEV_DIRS = ("usr/lib/udev", "lib/udev")
BUILTINS = {"cd", "echo", "printf", "test", "[", "[[", "true", "false", "exit", "export", "set", "source", ".",
            "read", "kill", "sleep", "eval", "wait", "trap", "ulimit", "umask", "shift", "let", "unset", "alias",
            "type", "hash", "builtin", "local", "return", "if", "then", "fi", "else", "for", "while", "do", "done",
            "case", "esac", "{", "}", "!", ":"}
PRELOAD_KEYS = ("LD_PRELOAD=", "LD_AUDIT=")


class Resolver:
    def __init__(self, out: Collected, strings: list[str]) -> None:
        self.out = out
        self.scope = Scope("programs started", PROGRAM_LIMITS)
        out.scopes.append(self.scope)
        self.tree = Tree(out.root, self.scope, set())
        self.cache: dict[tuple[str, str], StartedProgram] = {}
        self.scripts: dict[tuple[str, str], list[tuple[int, str]]] = {}     # a script's commands
        self.children: dict[tuple[str, str, int], list[StartedProgram]] = {}
        self.located: dict[tuple[str, str, str], str] = {}
        self.folders: dict[str, Any] = {}       # folder (relative to the root) -> its stat, or None
        self.strings = strings
        self.encoded = [s.encode("utf-8") for s in strings]
        self.yara = binaries.load_yara_rules(strings) if strings else None
        self.signature_id = (tuple(strings), id(self.yara) if self.yara is not None else None)
        self.config_budget = configs._Budget()
        self.package_mtime = read_baseline(out.root).package_db_mtime
        self.names_uid = {name: uid for uid, name in out.uid_names.items()}

    def close(self) -> None:
        self.tree.close()

    # ---------------------------------------------------------------- entries

    def resolve(self, entry: PersistenceEntry) -> None:
        command = shell.command_of(entry)
        entry.decoded = [text[:MAX_TEXT] for _, text in shell.decoded_commands(command)] if command else []
        entry.downloads = _unique([*shell.downloads(command), *(u for d in entry.decoded for u in shell.downloads(d))])
        found: list[StartedProgram] = []
        for path, via, argv in self.named_paths(entry, command):
            if len(found) >= MAX_PROGRAMS_PER_ENTRY:
                break
            found += self.examine(path, via, entry.user, argv, 0)
        entry.programs = _dedupe(found)[:MAX_PROGRAMS_PER_ENTRY]

    def named_paths(self, entry: PersistenceEntry, command: str) -> list[tuple[str, str, list[str]]]:
        """(host path, how the entry reaches it, argv) of every program the entry names."""
        if entry.kind in ("ld-preload", "ld-conf"):
            return [(word, "", [word]) for word in entry.text.split()[:MAX_PROGRAMS_PER_ENTRY] if word.startswith("/")]
        if entry.kind == "generator":
            return [(entry.text, "", [entry.text])]
        named: list[tuple[str, str, list[str]]] = []
        for library in preload_paths(entry):
            named.append((library, "LD_PRELOAD", [library]))
        if entry.kind == "container" or not command:
            return named
        sources = [("", command), *(("decoded", text) for text in entry.decoded)]
        for via, text in sources:
            for argv in shell.programs(text):
                for word in program_words(argv):
                    path = self.locate(word, entry)
                    if path:
                        named.append((path, via, argv))
        return named

    # ---------------------------------------------------------------- finding programs

    def locate(self, word: str, entry: PersistenceEntry) -> str:
        """The host path a program word names ('' when it is a builtin, a variable, or not found)."""
        key = (word, entry.user, entry.kind)
        if key not in self.located:
            self.located[key] = self._locate(word, entry)
        return self.located[key]

    def _locate(self, word: str, entry: PersistenceEntry) -> str:
        if not word or "$" in word.replace("$HOME", "").replace("${HOME}", "") or word in BUILTINS:
            return ""
        home = self.out.homes.get(entry.user, "")
        for prefix in ("~/", "$HOME/", "${HOME}/"):
            if word.startswith(prefix):
                return posixpath.join(home, word[len(prefix):]) if home else ""
        if word.startswith("/"):
            return posixpath.normpath(word)
        if "/" in word:
            return posixpath.normpath(posixpath.join(home, word)) if home else ""
        dirs = [*PATH_DIRS, *(UDEV_DIRS if entry.kind == "udev" else ())]
        if home:
            dirs += [posixpath.join(home, ".local/bin").lstrip("/"), posixpath.join(home, "bin").lstrip("/")]
        for directory in dirs:
            if self.tree.lstat(f"{directory}/{word}") is not None:
                return f"/{directory}/{word}"
        return ""

    def examine(self, path: str, via: str, user: str, argv: list[str], depth: int) -> list[StartedProgram]:
        """The program at `path` and, for a script, the programs it starts (each examined once per account)."""
        key = (path, user)
        cached = self.cache.get(key)
        if cached is None:
            cached = self.look_at(path, user, argv)
            self.cache[key] = cached
        found = [msgspec.structs.replace(cached, via=via)]
        if depth < MAX_SCRIPT_DEPTH:
            children = self.children.get((path, user, depth))
            if children is None:
                children = []
                self.children[(path, user, depth)] = children      # set first: a script that runs itself ends here
                for number, line in self.scripts.get(key, []):
                    entry = PersistenceEntry(path=path, kind="rc", line=number, text=line, user=user)
                    for child, _, child_argv in self.named_paths(entry, line):
                        if child != path and len(children) < MAX_PROGRAMS_PER_ENTRY:
                            children += self.examine(child, f"script {path}:{number}", user, child_argv, depth + 1)
            found += children
        return found

    def look_at(self, path: str, user: str, argv: list[str]) -> StartedProgram:
        program = StartedProgram(path=path[:1024], hidden_dir=hidden_component(path))
        if self.scope.spent():
            self.scope.skipped.add(path)
            program.error = f"not examined: limit of {self.scope.limit_hit} reached"
            return program
        rel = path.lstrip("/")
        opened = self.tree.open_file(rel)
        if opened is None:
            program.error = "not found" if self.tree.lstat(rel) is None else "not a readable regular file"
            return program
        fd, _ = opened
        try:
            info = os.fstat(fd)
            observed.saw(self.tree.full(rel), True, info)
            program.exists = True
            program.uid, program.mode, program.size = info.st_uid, info.st_mode, info.st_size
            program.mtime, program.ctime = info.st_mtime, info.st_ctime
            program.writable_by = self.writable_by(rel, info)
            head = read_fd(fd, 4096)
            program.packer = packer_of(head)
            self.scope.files += 1
            packaged = self.packaged(program, info)
            if not packaged and head.startswith(b"#!") and configs.readable_by(info, self.names_uid.get(user, 0 if user == "root" else None)):
                text = read_fd(fd, MAX_SCRIPT_BYTES).decode("utf-8", "replace")
                self.scope.bytes += len(text)
                self.scripts[(path, user)] = list(fmt.script_lines(text.splitlines()))[:200]
            if not packaged and (self.strings or self.yara is not None):
                self.scan(program, fd, info)
        except OSError as error:
            program.error = f"unreadable: {error.strerror or error}"
        finally:
            os.close(fd)
        program.configs = self.configs_near(path, user, argv)
        return program

    def writable_by(self, rel: str, info: Any) -> str:
        """Who besides root may replace the program: the world, a group, its owner, or its folder's owner."""
        if info.st_mode & 0o002:
            return "world"
        if info.st_uid != 0:
            return self.out.uid_names.get(info.st_uid, str(info.st_uid))
        if info.st_mode & 0o020 and info.st_gid != 0:
            return "group"
        folder = self.folder_stat(posixpath.dirname(rel))
        if folder is not None and folder.st_mode & 0o002 and not folder.st_mode & 0o1000:
            return "world"
        if folder is not None and folder.st_uid != 0:
            return self.out.uid_names.get(folder.st_uid, str(folder.st_uid))
        return ""

    def folder_stat(self, rel: str) -> Any:
        """The folder's stat, through links such as /sbin -> usr/sbin (None if it cannot be had); once per folder."""
        if rel not in self.folders:
            try:
                self.folders[rel] = observed.stat_path(self.tree.full(rel), follow_symlinks=True)
            except (OSError, deadline.TimedOut):
                self.folders[rel] = None
        return self.folders[rel]

    def packaged(self, program: StartedProgram, info: Any) -> bool:
        """Root's file in a package folder, only root may replace it, and not changed since the package
        database last was: the package manager's own. Not content-scanned or followed (the running-process
        scan still reads it if it runs)."""
        return (program.uid == 0 and not program.writable_by and program.path.startswith(PACKAGE_DIRS)
                and self.package_mtime is not None and max(info.st_mtime, info.st_ctime) <= self.package_mtime + 60)

    def scan(self, program: StartedProgram, fd: int, info: Any) -> None:
        """The executable scanner's hits (shared cache with the running-process scan)."""
        target = binaries._Target(path=program.path, open_path=f"/proc/self/fd/{fd}",
                                  key=(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns),
                                  size=info.st_size)
        result = binaries.scan_target(target, self.signature_id, self.strings, self.encoded, self.yara)
        self.scope.bytes += result.scanned
        program.matched_strings = list(result.matched)
        program.sha256 = result.sha256
        if result.error:
            program.error = result.error

    def configs_near(self, path: str, user: str, argv: list[str]) -> list[Any]:
        """Miner configs the program names (-c FILE) or that lie next to it under a miner's default name."""
        root = self.out.root.rstrip("/")
        folder = posixpath.dirname(path)
        uid = self.names_uid.get(user, 0 if user == "root" else None)
        found = []
        candidates = [(name if name.startswith("/") else posixpath.join(folder, name), True)
                      for name in configs.named_configs(argv)]
        if folder not in self.config_budget.seen_dirs:     # a folder's default names looked up once (/usr/bin: ~100)
            self.config_budget.seen_dirs[folder] = configs.directory_candidates(root + folder, self.config_budget)
        candidates += [(posixpath.join(folder, name), False) for name in self.config_budget.seen_dirs[folder]]
        for shown, named in candidates[:4]:
            config = configs.read_candidate(shown, root + shown, named, self.config_budget, uid)
            if config is not None:
                found.append(config)
        return found


def preload_paths(entry: PersistenceEntry) -> list[str]:
    """Libraries an entry preloads: LD_PRELOAD= in an environment line, a unit's Environment=, an ssh key's
    environment= option."""
    texts = [entry.text]
    if entry.kind == "ssh":
        texts = [value for key, value in fmt.ssh_options(entry.text) if key == "environment"]
    found = []
    for text in texts:
        for key in PRELOAD_KEYS:
            index = text.find(key)
            if index >= 0:
                value = text[index + len(key):].split()[0].strip("\"'") if text[index + len(key):].split() else ""
                found += [p for p in value.replace(":", " ").split() if p.startswith("/")]
    return found[:4]


def program_words(argv: list[str]) -> list[str]:
    """argv[0], and the script an interpreter runs (`python3 /opt/x.py`, `perl x.pl`)."""
    words = [argv[0]]
    if shell.basename(argv[0]).rstrip("0123456789.") in shell.INTERPRETERS and len(argv) > 1:
        script = next((a for a in argv[1:] if not a.startswith("-")), "")
        if script and "-c" not in argv and "-e" not in argv:
            words.append(script)
    return words


def packer_of(head: bytes) -> str:
    """UPX marks in the first bytes, or an ELF without a section table (stripped by a packer)."""
    if b"UPX!" in head or b"UPX0" in head:
        return "upx"
    if head.startswith(b"\x7fELF") and len(head) >= 64:
        is64 = head[4] == 2
        offset = 0x3C if is64 else 0x30
        shnum = int.from_bytes(head[offset:offset + 2], "little" if head[5] == 1 else "big")
        if shnum == 0:
            return "no section table"
    return ""


def resolve_entries(out: Collected, strings: list[str]) -> None:
    resolver = Resolver(out, strings)
    try:
        # users' and admins' entries before the vendor's, so the budget goes where attackers write
        for entry in sorted(out.entries, key=lambda e: e.placement in ("vendor unit", "generator output")):
            try:
                resolver.resolve(entry)
            except (OSError, ValueError, RecursionError) as error:
                resolver.scope.failed.add(f"{entry.path}:{entry.line}: {type(error).__name__}")
    finally:
        resolver.close()


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))[:8]


def _dedupe(programs: list[StartedProgram]) -> list[StartedProgram]:
    seen = set()
    kept = []
    for program in programs:
        if program.path not in seen:
            seen.add(program.path)
            kept.append(program)
    return kept
