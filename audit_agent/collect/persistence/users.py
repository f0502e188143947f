"""Every user's own places, each user with a budget of their own.

Users come from the password database (ROOT/etc/passwd: service accounts
such as www-data whose home is /var/www count as much as people), plus
folders under ROOT/home that no local account names (directory-service
users on a cluster). A home shared by several accounts is read once.
Everything in a home is read through a Tree rooted at that home, so a
link out of it is never followed.
"""
from __future__ import annotations

import stat
import posixpath
import time

from msgspec import Struct

from audit_agent.collect import deadline, observed
from audit_agent.collect.persistence import lines as fmt
from audit_agent.collect.persistence.fs import USER_LIMITS, Limits, Scope, Tree
from audit_agent.collect.persistence.state import Collected, guarded
from audit_agent.collect.persistence.units import read_unit_dir

MAX_USERS = 20000
MAX_USERS_SECONDS = 300.0       # all homes together; each home also has its own budget
MAX_PASSWD_BYTES = 8 * 1024 * 1024
SHELL_FILES = (".bashrc", ".bash_aliases", ".bash_profile", ".bash_login", ".profile", ".bash_logout", ".zshenv", ".zprofile",
               ".zshrc", ".zlogin", ".zlogout", ".kshrc", ".mkshrc", ".cshrc", ".tcshrc", ".login", ".xprofile",
               ".xsessionrc", ".xinitrc", ".config/fish/config.fish")
USER_UNIT_DIRS = (".config/systemd/user", ".local/share/systemd/user")
NO_HOME = {"", "/", "/nonexistent", "/dev/null", "/var/empty", "/bin", "/sbin", "/usr/sbin", "/usr/bin"}


class Account(Struct):
    name: str
    uid: int | None
    home: str                   # as the host names it (/home/alice)


def read_accounts(root: str, scope: Scope, seen: set[tuple[int, int]]) -> list[Account]:
    """Accounts of the password database, then unnamed folders of /home; bounded."""
    accounts: list[Account] = []
    with Tree(root, scope, seen) as tree:
        read = tree.read("etc/passwd", limit=MAX_PASSWD_BYTES)
        seen.discard((read.info.st_dev, read.info.st_ino)) if read is not None else None
        for line in read.lines() if read is not None else []:
            fields = line.split(":")
            if len(fields) >= 7 and fields[0] and not fields[0].startswith(("#", "+", "-")):
                uid = int(fields[2]) if fields[2].isdigit() else None
                accounts.append(Account(fields[0], uid, fields[5]))
        named_homes = {posixpath.normpath(a.home) for a in accounts if a.home}
        for name, kind in tree.listdir("home"):
            if kind == "dir" and f"/home/{name}" not in named_homes:
                info = tree.lstat(f"home/{name}")
                accounts.append(Account(name, info.st_uid if info else None, f"/home/{name}"))
        if not any(a.home == "/root" for a in accounts):
            accounts.append(Account("root", 0, "/root"))
    return accounts


def read_users(out: Collected, accounts: list[Account], limits: Limits = USER_LIMITS,
               ssh_files: list[str] | None = None) -> list[str]:
    """Read each account's home with its own scope; returns the accounts left out (MAX_USERS, or time)."""
    homes_done: set[str] = set()
    started = time.monotonic()
    for count, account in enumerate(accounts):
        if count >= MAX_USERS or time.monotonic() - started > MAX_USERS_SECONDS:
            return [a.name for a in accounts[count:]]
        home = posixpath.normpath(account.home) if account.home else ""
        if home in NO_HOME or not home.startswith("/") or home in homes_done:
            continue
        homes_done.add(home)
        top = out.root.rstrip("/") + home
        try:
            if not stat.S_ISDIR(observed.stat_path(top, follow_symlinks=True).st_mode):
                continue
        except (OSError, deadline.TimedOut):
            continue
        scope = Scope(f"user {account.name}", limits)
        out.scopes.append(scope)
        with Tree(top, scope, out.seen, owner_uid=account.uid if account.uid is not None else _owner(top)) as tree:
            if not tree.usable:
                continue
            for place, step in user_places(tree, out, account, ssh_files or []):
                guarded(scope, f"{place} of {account.name}", step)
    return []


def user_places(tree: Tree, out: Collected, account: Account, ssh_files: list[str]):  # type: ignore[no-untyped-def]
    user = account.name
    return (
        ("shell startup", lambda: read_shell_files(tree, out, user)),
        ("systemd user units", lambda: read_user_units(tree, out, user)),
        ("XDG autostart", lambda: read_autostart(tree, out, user)),
        ("SSH", lambda: read_ssh(tree, out, account, ssh_files)),
        ("quadlet containers", lambda: read_unit_dir(tree, ".config/containers/systemd", out, user,
                                                     "quadlet container", "login")),
    )


def read_user_units(tree: Tree, out: Collected, user: str) -> None:
    for rel in USER_UNIT_DIRS:
        read_unit_dir(tree, rel, out, user, "systemd user unit", "login")


def read_shell_files(tree: Tree, out: Collected, user: str) -> None:
    paths = [*SHELL_FILES, *(p for p in tree.files(".config/fish/conf.d") if p.endswith(".fish"))]
    for rel in paths:
        read = tree.read(rel)
        if read is not None:
            out.add(read, tree.scope, "profile", "user shell startup", "login",
                    ((n, t, user) for n, t in fmt.script_lines(read.lines(), filtered=True)))


def read_autostart(tree: Tree, out: Collected, user: str) -> None:
    for rel in tree.files(".config/autostart"):
        if rel.endswith(".desktop"):
            read = tree.read(rel)
            if read is not None:
                out.add(read, tree.scope, "autostart", "XDG autostart", "login",
                        ((n, t, user) for n, t, _ in fmt.desktop_lines(read.lines())))
    for rel in tree.files(".config/autostart-scripts"):         # KDE Plasma runs these at login
        read = tree.read(rel)
        if read is not None:
            out.add(read, tree.scope, "autostart", "autostart script", "login",
                    ((n, t, user) for n, t in fmt.script_lines(read.lines())))


def read_ssh(tree: Tree, out: Collected, account: Account, ssh_files: list[str]) -> None:
    """authorized_keys with command= / environment= options, and ~/.ssh/rc (run at every ssh login)."""
    for pattern in ssh_files or [".ssh/authorized_keys", ".ssh/authorized_keys2"]:
        rel = pattern.replace("%%", "%").replace("%u", account.name).replace("%h/", "").replace("%h", "")
        if rel.startswith("/"):
            continue                # an absolute AuthorizedKeysFile (/etc/ssh/keys/%u) is a system file
        read = tree.read(rel)
        if read is not None:
            out.add(read, tree.scope, "ssh", "authorized_keys", "ssh-login",
                    ((n, t, account.name) for n, t, _ in fmt.authorized_keys_lines(read.lines())))
    read = tree.read(".ssh/rc")
    if read is not None:
        out.add(read, tree.scope, "ssh", "ssh rc", "ssh-login",
                ((n, t, account.name) for n, t in fmt.script_lines(read.lines())))


def _owner(path: str) -> int | None:
    try:
        return observed.stat_path(path, follow_symlinks=True).st_uid
    except (OSError, deadline.TimedOut):
        return None
