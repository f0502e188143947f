"""Persistence: every place a miner comes back from, system-wide and for every user, tied to what it starts.

Roots. Everything is read below ONE root so that tests point the collector at a
small fake tree: the configuration root is `options.etc_root` (default /etc)
and the scan root is its parent (`/` on a real host). Users come from
ROOT/etc/passwd (and unnamed folders of ROOT/home); their homes are read below
the root too.

Order and budgets. The system places are read first, with the system's
budget; then each user's home with a budget of its own (files, bytes, names
listed, seconds: collect.persistence.fs). So a flood in one home costs that
user's budget only, and the coverage names the scope that ran out and what it
skipped. A place whose reader fails unexpectedly loses only its own entries
(named in the coverage as an error of that place).

What is kept. Only lines that start or load something, as PersistenceEntry
(file, line, text, placement, trigger, the account it runs as, who owns the
file and when it changed). Each entry is then resolved (resolve.py) to what it
starts: the decoded payloads, the URLs it downloads and runs, and each program
on disk (owner, mode, ages, content scan, packer marks, miner configs next to
it), so the detector can judge a program that is not running now.

Safety. Reading never follows a symlink out of the tree it belongs to (see
fs.py), walks are iterative with depth caps, and nothing is opened but
regular files (O_PATH first).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from audit_agent.collect import linux_only, observed
from audit_agent.collect.coverage import because, coverage
from audit_agent.collect.persistence import fs  # noqa: F401 - tests reach the limits through the package
from audit_agent.collect.persistence import reuse
from audit_agent.collect.persistence.baseline import read_baseline
from audit_agent.collect.persistence.containers import read_containers
from audit_agent.collect.persistence.fs import (
    SYSTEM_LIMITS,
    USER_LIMITS,
    Limits,
    Scope,
    Tree,
    iter_tallies,
)
from audit_agent.collect.persistence.resolve import PROGRAM_LIMITS, resolve_entries
from audit_agent.collect.persistence.state import Collected, guarded
from audit_agent.collect.persistence.system import PLACES
from audit_agent.collect.persistence.users import read_accounts, read_users
from audit_agent.model import Coverage, CoverageStatus, Snapshot

CHECK = "persistence"
MAX_EXAMPLES = 5


def collect_persistence(snapshot: Snapshot, options: Any) -> list[Coverage]:
    """Persistence: cron, at, systemd, udev, boot and login scripts, loader, SSH, autostart, containers."""
    not_here = linux_only(CHECK)
    if not_here:
        return [not_here]
    etc = Path(options.etc_root)
    if not etc.is_dir():
        return [coverage(CHECK, CoverageStatus.SKIPPED, because("not_a_directory", path=str(etc)))]
    strings = list(getattr(options, "signature_strings", []) or [])
    from audit_agent.collect.binaries import cache_folder
    folder = cache_folder(options)
    key = reuse.key_of(getattr(options, "rules_fingerprint", None), etc, (SYSTEM_LIMITS, USER_LIMITS, PROGRAM_LIMITS),
                       strings)
    saved = reuse.reusable(folder, key)
    if saved is not None:
        snapshot.persistence = saved.entries
        snapshot.persistence_baseline = read_baseline(str(etc.parent))
        return [reuse.reused_coverage(saved)]
    read_at = time.time()
    with observed.recording() as record:
        out = read_persistence(etc, scan_strings=strings)
    snapshot.persistence = out.entries
    snapshot.persistence_baseline = read_baseline(out.root)
    result = persistence_coverage(out)
    reuse.keep(folder, key, record, read_at, out.entries, result)
    return [result]


def read_persistence(etc: Path, system_limits: Limits = SYSTEM_LIMITS, user_limits: Limits = USER_LIMITS,
                     scan_strings: list[str] | None = None, resolve: bool = True) -> Collected:
    """Read every place below etc's parent (see the module docstring): system first, then each user."""
    root = str(etc.parent)
    out = Collected(root=root)
    system = Scope("system", system_limits)
    out.scopes.append(system)
    accounts = read_accounts(root, system, out.seen)
    out.uid_names = {a.uid: a.name for a in accounts if a.uid is not None}
    out.homes = {a.name: a.home for a in accounts if a.home}
    with Tree(root, system, out.seen) as tree:
        for place, step in PLACES:
            guarded(system, place, lambda step=step: step(tree, out))      # type: ignore[misc]
        guarded(system, "containers", lambda: read_containers(tree, out))
    left_out = read_users(out, accounts, user_limits, out.ssh_files)
    if left_out:
        system.skipped.add(f"{len(left_out)} home folder(s) not read (limit of users or of time), e.g. "
                           + ", ".join(left_out[:5]))
    if resolve:
        started = time.monotonic()
        guarded(system, "resolving programs", lambda: resolve_entries(out, scan_strings or []))
        out.resolve_seconds = time.monotonic() - started
    return out


def persistence_coverage(out: Collected) -> Coverage:
    """ok, or partial naming each scope that could not see everything and what it left out."""
    problems = []
    denied = 0
    unreadable: list[str] = []
    for scope in out.scopes:
        parts = []
        for name, tally in iter_tallies(scope):
            if tally.count:
                examples = ", ".join(tally.examples[:MAX_EXAMPLES])
                parts.append(because(f"persistence_{name}", n=tally.count, examples=examples))
                if name in ("denied", "refused", "stalled"):
                    unreadable += tally.examples[:MAX_EXAMPLES]
        if name_limit := scope.limit_hit:
            parts.insert(0, because("persistence_limit", limit=name_limit))
        denied += scope.denied.count + scope.refused.count
        if parts:
            user = scope.name[len("user "):] if scope.name.startswith("user ") else ""
            problems += [because("scope_user", user=user) if user else because("scope_system"), *parts]
    files = sum(scope.files for scope in out.scopes)
    users = sum(1 for scope in out.scopes if scope.name.startswith("user "))
    summary = because("persistence_read", entries=len(out.entries), files=files, users=users)
    if problems:
        return coverage(CHECK, CoverageStatus.PARTIAL, summary, *problems, inspected=files, denied=denied,
                        unreadable=unreadable)
    return coverage(CHECK, CoverageStatus.OK, summary, inspected=files, denied=denied)
