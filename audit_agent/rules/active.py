"""Where the active rule pack lives: an installed (updated) pack under the state dir, else the shipped one.

`audit-agent rules update` installs into installed_rules_dir(); scan and watch
use it when it holds a pack, so an update takes effect without reinstalling.
"""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STATE_DIR = "/var/lib/audit-agent"


def state_dir() -> Path:
    return Path(os.environ.get("AUDIT_AGENT_STATE_DIR") or DEFAULT_STATE_DIR)


def installed_rules_dir() -> Path:
    """Where `rules update` installs by default: $AUDIT_AGENT_RULES_DIR, else <state dir>/rules."""
    return Path(os.environ.get("AUDIT_AGENT_RULES_DIR") or state_dir() / "rules")


def active_rules_path(explicit: str | Path | None = None) -> Path | None:
    """The pack to load: the one asked for, else an installed pack, else None (the shipped default)."""
    if explicit:
        return Path(explicit)
    installed = installed_rules_dir()
    try:
        return installed if (installed / "pack.yaml").is_file() else None
    except PermissionError:     # root's state folder, seen by an ordinary user: the shipped pack it is
        return None
