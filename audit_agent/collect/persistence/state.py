"""What the persistence check gathers as it goes: entries, scopes (budgets) and the user table."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from msgspec import Struct, field

from audit_agent.collect.persistence.fs import Read, Scope
from audit_agent.model import PersistenceEntry

MAX_LINE_CHARS = 4096
MAX_ENTRIES_PER_FILE = 500      # a generated or hostile file must not flood the snapshot
MAX_ENTRIES_PER_SCOPE = 5000


class Collected(Struct):
    root: str                                           # the scan root ("/" on a real host)
    entries: list[PersistenceEntry] = field(default_factory=list)
    scopes: list[Scope] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)
    uid_names: dict[int, str] = field(default_factory=dict)
    per_scope: dict[str, int] = field(default_factory=dict)
    places: set[str] = field(default_factory=set)       # the placement kinds looked at
    resolve_seconds: float = 0.0
    ssh_files: list[str] = field(default_factory=list)    # sshd's AuthorizedKeysFile patterns
    homes: dict[str, str] = field(default_factory=dict)     # account -> home, as the host names it

    def add(self, read: Read, scope: Scope, kind: str, placement: str, trigger: str,
            found: Iterable[tuple[int, str, str]], user: str = "") -> list[PersistenceEntry]:
        """Entries for the lines `found` in the file `read`; `user` when the line does not say."""
        info = read.info
        owner = self.uid_names.get(info.st_uid, str(info.st_uid))
        added = []
        for count, (line, text, line_user) in enumerate(found):
            if count >= MAX_ENTRIES_PER_FILE or self.per_scope.get(scope.name, 0) >= MAX_ENTRIES_PER_SCOPE:
                scope.truncated.add(read.path)
                break
            self.per_scope[scope.name] = self.per_scope.get(scope.name, 0) + 1
            entry = PersistenceEntry(path=read.path, kind=kind, line=line, text=text[:MAX_LINE_CHARS],
                                     user=line_user or user, placement=placement, trigger=trigger, owner=owner,
                                     owner_uid=info.st_uid, mtime=info.st_mtime, ctime=info.st_ctime)
            self.entries.append(entry)
            added.append(entry)
        return added

    def host_path(self, path: str) -> str:
        """A path read below the scan root as the host names it (/etc/crontab, not /tmp/root/etc/crontab)."""
        root = self.root.rstrip("/")
        if root and path.startswith(root + "/"):
            return path[len(root):]
        return path


def guarded(scope: Scope, place: str, step: Callable[[], None]) -> None:
    """Run one place's reader; an unexpected error loses only that place, named in the coverage."""
    try:
        step()
    except RecursionError:
        scope.failed.add(f"{place}: too deeply nested")
    except Exception as exc:        # noqa: BLE001 - one place's bug must not cost the others' findings
        scope.failed.add(f"{place}: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}")


def is_world_writable(info: os.stat_result) -> bool:
    return bool(info.st_mode & 0o002)
