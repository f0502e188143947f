"""Byte and character caps on what other users' processes hand us: memory stays bounded, whatever they do.

550 processes with 1 MiB command lines once cost the agent over 512 MiB (and the shipped unit's OOM kill,
with no report). A command line is kept up to PER_PROCESS characters as its head and its tail (a miner's
pool flags may sit at either end), with a marker that says how long it really was; once the whole scan
has kept PER_SCAN characters of command lines, each further process keeps only LEAN characters.
Reads of /proc files that a process fills (cmdline, environ) stop at READ_LIMIT bytes.
"""
from __future__ import annotations

import threading

PER_PROCESS = 64 * 1024
TAIL = 4 * 1024
PER_SCAN = 8 * 1024 * 1024
LEAN = 1024
READ_LIMIT = 4 * 1024 * 1024      # above the kernel's usual ARG_MAX (2 MiB): a normal block is read whole


class ScanBudget:
    """Characters of command lines kept so far in this scan."""

    def __init__(self) -> None:
        self.kept = 0
        self._lock = threading.Lock()

    def allowance(self) -> int:
        return PER_PROCESS if self.kept < PER_SCAN else LEAN

    def spend(self, chars: int) -> None:
        with self._lock:
            self.kept += chars


_budget = ScanBudget()


def new_scan() -> None:
    global _budget
    _budget = ScanBudget()


def allowance() -> int:
    """Characters the next command line may keep."""
    return _budget.allowance()


def spend(chars: int) -> None:
    _budget.spend(chars)
