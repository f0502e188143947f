"""Benchmark: the cost of the persistence check on a host with 1,000 users.

Builds a temporary root: the system's places copied from this host's real /etc
(crontabs, cron.d, systemd units, udev rules, profile.d, ...; symlinks kept as
links), its vendor unit and udev folders, and 1,000 accounts in etc/passwd whose
homes hold what people's homes hold: .bashrc/.profile/.zshrc (a few hundred lines
of furniture, some with a background command), a systemd user unit and timer
for one user in five, an XDG autostart entry for one in ten, authorized_keys
(one forced command in twenty), and a user crontab in the spool for one in four.
Then it runs the check in this process (collection + resolution, no evaluation)
and prints wall and CPU time, files, entries, programs examined and peak RSS.

    .venv/bin/python bench/persistence_cost.py [--users 1000] [--repeat 3] [--scan]

--scan passes the default rule pack's signature strings, so resolved programs are
content-scanned like running executables (otherwise only stat'ed).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from audit_agent.collect.persistence import persistence_coverage, read_persistence

SYSTEM_COPY = ("etc/crontab", "etc/cron.d", "etc/cron.daily", "etc/cron.hourly", "etc/cron.weekly", "etc/anacrontab",
               "etc/systemd/system", "etc/systemd/user", "etc/udev/rules.d", "etc/profile", "etc/profile.d",
               "etc/bash.bashrc", "etc/rc.local", "etc/init.d", "etc/ld.so.conf", "etc/ld.so.conf.d",
               "etc/update-motd.d", "etc/xdg/autostart", "etc/environment", "usr/lib/systemd/system",
               "usr/lib/systemd/user", "usr/lib/udev/rules.d", "etc/ssh/sshd_config")
BASHRC = "".join(f"alias a{i}='ls -l --color=auto {i}'\nexport VAR{i}=value{i}\n" for i in range(120)) + \
    "if [ -f ~/.bash_aliases ]; then . ~/.bash_aliases; fi\ncase $- in *i*) ;; *) return;; esac\n"


def build(base: Path, users: int) -> None:
    for rel in SYSTEM_COPY:
        source = Path("/") / rel
        target = base / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if source.is_dir() and not source.is_symlink():
                shutil.copytree(source, target, symlinks=True, ignore_dangling_symlinks=True)
            elif source.exists():
                shutil.copy2(source, target, follow_symlinks=False)
        except (OSError, shutil.Error):
            continue
    passwd = ["root:x:0:0:root:/root:/bin/bash"]
    spool = base / "var/spool/cron/crontabs"
    spool.mkdir(parents=True, exist_ok=True)
    for index in range(users):
        name = f"user{index:04d}"
        uid = 2000 + index
        home = base / "home" / name
        passwd.append(f"{name}:x:{uid}:{uid}::/home/{name}:/bin/bash")
        (home / ".ssh").mkdir(parents=True)
        (home / ".bashrc").write_text(BASHRC + (f"nohup /home/{name}/bin/sync-agent >/dev/null 2>&1 &\n"
                                                if index % 7 == 0 else ""))
        (home / ".profile").write_text("if [ -n \"$BASH_VERSION\" ]; then . \"$HOME/.bashrc\"; fi\n"
                                       "PATH=\"$HOME/bin:$PATH\"\n")
        (home / ".zshrc").write_text("autoload -Uz compinit\ncompinit\nsetopt share_history\n")
        keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk user@laptop\n"
        if index % 20 == 0:
            keys = f'command="/home/{name}/bin/backup-receiver",no-pty {keys}'
        (home / ".ssh/authorized_keys").write_text(keys)
        if index % 5 == 0:
            units = home / ".config/systemd/user"
            units.mkdir(parents=True)
            (units / "notebook.service").write_text(
                f"[Service]\nExecStart=/home/{name}/.local/bin/jupyter lab --no-browser\n")
            (units / "notebook.timer").write_text("[Timer]\nOnCalendar=daily\n")
        if index % 10 == 0:
            autostart = home / ".config/autostart"
            autostart.mkdir(parents=True)
            (autostart / "sync.desktop").write_text(f"[Desktop Entry]\nExec=/home/{name}/bin/sync-agent\n")
        if index % 4 == 0:
            (spool / name).write_text(f"0 3 * * * /home/{name}/bin/backup.sh --quiet\n")
        os.makedirs(home / "bin", exist_ok=True)
        (home / "bin/backup.sh").write_text("#!/bin/sh\nrsync -a \"$HOME/data\" /backup/\n")
    (base / "etc").mkdir(exist_ok=True)
    (base / "etc/passwd").write_text("\n".join(passwd) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scan", action="store_true", help="content-scan resolved programs with the pack's strings")
    args = parser.parse_args()
    strings: list[str] = []
    if args.scan:
        from audit_agent.rules.compiler import CompiledRules
        from audit_agent.rules.loader import load_pack
        strings = CompiledRules(load_pack()).signature_strings()
    with tempfile.TemporaryDirectory(prefix="persistence-bench-") as tmp:
        base = Path(tmp) / "root"
        started = time.perf_counter()
        build(base, args.users)
        print(f"built a root with {args.users} users in {time.perf_counter() - started:.1f} s: {base}")
        walls, cpus = [], []
        out = None
        for _ in range(args.repeat):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            out = read_persistence(base / "etc", scan_strings=strings)
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
        assert out is not None
        coverage = persistence_coverage(out)
        programs = sum(len(e.programs) for e in out.entries)
        files = sum(s.files for s in out.scopes)
        print(f"users: {args.users}  scopes: {len(out.scopes)}  files read: {files}  entries: {len(out.entries)}  "
              f"programs examined (incl. via scripts): {programs}")
        print(f"wall: median {statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f})  "
              f"cpu: median {statistics.median(cpus):.2f} s  resolution: {out.resolve_seconds:.2f} s")
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        print(f"coverage: {coverage.status.value}: {coverage.reason[:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
