"""How old the host is, from its own files: the package database's last change and the installation's first.

An entry written long after the host was installed and after the last
package change is one nobody's package manager wrote. Only stat() of a few
root-owned paths: no content is read.
"""
from __future__ import annotations


from audit_agent.collect import deadline, observed
from audit_agent.model import PersistenceBaseline

PACKAGE_DBS = ("var/lib/dpkg/status", "var/lib/dpkg/info", "var/lib/rpm/rpmdb.sqlite", "var/lib/rpm/Packages",
               "usr/lib/sysimage/rpm/rpmdb.sqlite", "lib/apk/db/installed", "var/lib/pacman/local")
# Written once when the system is installed or first booted.
INSTALL_MARKS = ("var/log/installer", "etc/machine-id", "etc/hostname", "var/lib/dpkg/info/base-files.list",
                 "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_rsa_key", "root/.bashrc", "lost+found")


def read_baseline(root: str) -> PersistenceBaseline:
    base = root.rstrip("/")
    package = [t for t in (_mtime(base, rel) for rel in PACKAGE_DBS) if t is not None]
    install = [t for t in (_mtime(base, rel) for rel in INSTALL_MARKS) if t is not None]
    return PersistenceBaseline(package_db_mtime=max(package) if package else None,
                               install_time=min(install) if install else None,
                               root_prefix="" if base in ("", "/") else base)


def _mtime(base: str, rel: str) -> float | None:
    try:
        return observed.stat_path(f"{base}/{rel}").st_mtime
    except (OSError, deadline.TimedOut):
        return None
