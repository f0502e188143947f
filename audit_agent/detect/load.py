"""Signals from load evidence (being written)."""
from __future__ import annotations

from audit_agent.detect import Context, Signal


def signals(ctx: Context) -> list[Signal]:
    return []
