"""systemd units (system and user), their timers, drop-ins, generators' output, and quadlet containers.

A unit folder can hold thousands of files (a flood planted to exhaust the
budget). The names are listed first (cheap), then files are read in the order
that matters: timers, then units enabled through a `*.wants/` or `*.requires/`
link or named by a timer, then the rest newest first, so the unit that really
starts is read before decoys that nothing starts.
"""
from __future__ import annotations

import posixpath

from audit_agent.collect.persistence.fs import Tree
from audit_agent.collect.persistence.lines import joined_lines, unit_lines
from audit_agent.collect.persistence.state import Collected

UNIT_SUFFIXES = (".service", ".timer", ".path", ".conf", ".container")
MAX_UNIT_DEPTH = 3              # dir/NAME.service.d/x.conf, dir/TARGET.wants/NAME.service
BOOT_TARGETS = ("multi-user.target", "default.target", "graphical.target", "basic.target", "sysinit.target",
                "network.target", "network-online.target", "local-fs.target", "getty.target")


def read_unit_dir(tree: Tree, rel: str, out: Collected, user: str, placement: str, session: str) -> None:
    """Every unit below `rel`. `session`: what starting it at boot means here ("boot", or "login" for
    a user manager, which starts with the user's first session or at boot with lingering)."""
    names: list[str] = []
    enabled: dict[str, str] = {}        # unit name -> the target or timer that pulls it in
    for path in tree.walk(rel, MAX_UNIT_DEPTH, lambda n: n.endswith(UNIT_SUFFIXES)):
        parent = posixpath.basename(posixpath.dirname(path))
        if parent.endswith((".wants", ".requires", ".upholds")):
            enabled.setdefault(posixpath.basename(path), parent.rsplit(".", 1)[0])
            continue                    # links to units read from their own folder
        if path.endswith(".conf") and not parent.endswith(".d"):
            continue
        names.append(path)

    def order(path: str) -> tuple[int, float]:
        name = posixpath.basename(path)
        owner = _unit_of(path)
        rank = 0 if name.endswith(".timer") else 1 if owner in enabled else 2
        info = tree.lstat(path)
        return rank, -(info.st_mtime if info else 0.0)

    timer_units: dict[str, str] = {}
    for path in sorted(names, key=order):
        unit = _unit_of(path)
        read = tree.read(path)
        if read is None:
            continue
        lines = read.lines()
        if unit.endswith(".timer"):
            target = _key_value(lines, "Unit") or unit[: -len(".timer")] + ".service"
            timer_units[target] = unit
            out.add(read, tree.scope, "systemd", "timer", "timer", ((n, t, user) for n, t in
                                                                      unit_lines(lines, timer=True)))
            continue
        if unit.endswith(".container"):
            out.add(read, tree.scope, "container", "quadlet container", session,
                    ((n, t, user) for n, t in joined_lines(lines) if t.startswith(("Exec=", "Image="))))
            continue
        runs_as = _key_value(lines, "User") or user
        pulled_by = enabled.get(unit) or (timer_units.get(unit, ""))
        wanted_by = _key_value(lines, "WantedBy")
        if unit in timer_units or (pulled_by and pulled_by.endswith(".timer")):
            trigger = "timer"
        elif pulled_by or any(t in wanted_by for t in BOOT_TARGETS):
            trigger = session
        else:
            trigger = "unit"
        kind_place = "drop-in" if path.endswith(".conf") else placement
        out.add(read, tree.scope, "systemd", kind_place, trigger,
                ((n, t, runs_as) for n, t in unit_lines(lines) if t.lstrip().startswith("Exec")
                 or ("LD_PRELOAD" in t and t.lstrip().startswith("Environment"))))


def read_generators(tree: Tree, rel: str, out: Collected, placement: str) -> None:
    """Generator programs: systemd runs each of them as root early at every boot."""
    for path in tree.files(rel):
        read = tree.look(path)          # the program itself is looked at when it is resolved
        if read is not None:
            out.add(read, tree.scope, "generator", placement, "boot", [(1, out.host_path(read.path), "root")])


def _unit_of(path: str) -> str:
    """The unit a file belongs to: its own name, or NAME for NAME.service.d/override.conf."""
    name = posixpath.basename(path)
    if name.endswith(".conf"):
        parent = posixpath.basename(posixpath.dirname(path))
        return parent[:-2] if parent.endswith(".d") else name
    return name


def _key_value(lines: list[str], key: str) -> str:
    """The last value of `Key=` in a unit (the one systemd uses)."""
    value = ""
    prefix = key + "="
    for _, text in joined_lines(lines):
        if text.startswith(prefix):
            value = text[len(prefix):].strip()
    return value
