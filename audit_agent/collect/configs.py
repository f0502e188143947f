"""configs collector (being written)."""
from __future__ import annotations

from audit_agent.model import Coverage


def collect_configs(snapshot, options) -> list[Coverage]:
    return []
