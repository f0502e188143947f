"""System-wide places, read first and with their own budget: cron, at, anacron, systemd, udev, boot
scripts, profile scripts, the dynamic loader's preload and search paths, motd, ssh, XDG autostart.

Every place is a function of (tree, out) reading paths relative to the scan
root; `PLACES` lists them with the name the coverage uses for each.
"""
from __future__ import annotations

from collections.abc import Callable

from audit_agent.collect.persistence import lines as fmt
from audit_agent.collect.persistence.fs import Tree
from audit_agent.collect.persistence.state import Collected
from audit_agent.collect.persistence.units import read_generators, read_unit_dir

CRON_PERIODIC = ("cron.hourly", "cron.daily", "cron.weekly", "cron.monthly")
UNIT_DIRS = (("etc/systemd/system", "system unit"), ("run/systemd/system", "runtime unit"),
             ("usr/local/lib/systemd/system", "system unit"), ("usr/lib/systemd/system", "vendor unit"),
             ("lib/systemd/system", "vendor unit"), ("run/systemd/generator", "generator output"),
             ("run/systemd/generator.early", "generator output"), ("run/systemd/generator.late", "generator output"),
             ("run/systemd/transient", "transient unit"))
USER_UNIT_DIRS = ("etc/systemd/user", "usr/local/lib/systemd/user", "usr/lib/systemd/user", "lib/systemd/user")
GENERATOR_DIRS = ("etc/systemd/system-generators", "usr/local/lib/systemd/system-generators",
                  "usr/lib/systemd/system-generators", "lib/systemd/system-generators",
                  "etc/systemd/user-generators", "usr/local/lib/systemd/user-generators",
                  "usr/lib/systemd/user-generators")
UDEV_DIRS = ("etc/udev/rules.d", "run/udev/rules.d", "usr/local/lib/udev/rules.d", "usr/lib/udev/rules.d",
             "lib/udev/rules.d")
PROFILE_FILES = ("etc/profile", "etc/bash.bashrc", "etc/bashrc", "etc/bash.bash_logout", "etc/zshenv",
                 "etc/zprofile", "etc/zshrc", "etc/zlogin", "etc/zlogout", "etc/zsh/zshenv", "etc/zsh/zprofile",
                 "etc/zsh/zshrc", "etc/zsh/zlogin", "etc/zsh/zlogout", "etc/fish/config.fish", "etc/csh.cshrc",
                 "etc/csh.login", "etc/ksh.kshrc", "etc/mkshrc")
PROFILE_DIRS = ("etc/profile.d", "etc/fish/conf.d", "etc/bash_completion.d")
AT_SPOOLS = ("var/spool/cron/atjobs", "var/spool/at", "var/spool/atjobs")
QUADLET_DIRS = ("etc/containers/systemd", "usr/share/containers/systemd")


def read_cron(tree: Tree, out: Collected) -> None:
    for rel in ["etc/crontab", *tree.files("etc/cron.d")]:
        read = tree.read(rel)
        if read is not None:
            out.add(read, tree.scope, "cron", "system crontab", "schedule", fmt.cron_lines(read.lines(), system=True))
    for directory in CRON_PERIODIC:
        for rel in tree.files(f"etc/{directory}"):
            read = tree.read(rel)
            if read is not None:    # periodic scripts run as root; every command counts
                out.add(read, tree.scope, "cron", directory, "schedule",
                        ((n, t, "root") for n, t in fmt.script_lines(read.lines())))
    spools = [*tree.files("var/spool/cron/crontabs"), *tree.files("var/spool/cron/tabs"),
              *tree.files("var/spool/cron")]
    for rel in spools:
        read = tree.read(rel)       # the file name is the user
        if read is not None:
            user = rel.rsplit("/", 1)[-1]
            out.add(read, tree.scope, "cron", "user crontab", "schedule",
                    ((n, t, user) for n, t, _ in fmt.cron_lines(read.lines(), system=False)))


def read_anacron(tree: Tree, out: Collected) -> None:
    read = tree.read("etc/anacrontab")
    if read is not None:
        out.add(read, tree.scope, "anacron", "anacrontab", "schedule", fmt.anacron_lines(read.lines()))


def read_at(tree: Tree, out: Collected) -> None:
    for spool in AT_SPOOLS:
        for rel in tree.files(spool):
            if rel.rsplit("/", 1)[-1].startswith("."):      # .SEQ, the job counter
                continue
            read = tree.read(rel)
            if read is None:
                continue
            uid, commands = fmt.at_job_lines(read.lines())
            user = out.uid_names.get(int(uid), uid) if uid.isdigit() else ""
            out.add(read, tree.scope, "at", "at job", "schedule", ((n, t, user) for n, t in commands))


def read_systemd(tree: Tree, out: Collected) -> None:
    for rel, placement in UNIT_DIRS:
        read_unit_dir(tree, rel, out, "root", placement, "boot")
    for rel in USER_UNIT_DIRS:
        read_unit_dir(tree, rel, out, "*", "user unit for every user", "login")
    for rel in GENERATOR_DIRS:
        read_generators(tree, rel, out, "generator")
    for rel in QUADLET_DIRS:
        read_unit_dir(tree, rel, out, "root", "quadlet container", "boot")


def read_udev(tree: Tree, out: Collected) -> None:
    for directory in UDEV_DIRS:
        for rel in tree.files(directory):
            if rel.endswith(".rules"):
                read = tree.read(rel)
                if read is not None:
                    out.add(read, tree.scope, "udev", "udev rule", "device", fmt.udev_lines(read.lines()))


def read_boot_scripts(tree: Tree, out: Collected) -> None:
    for rel in ("etc/rc.local", "etc/rc.d/rc.local"):
        read = tree.read(rel)
        if read is not None:        # rc.local is a plain list of commands run at boot: keep them all
            out.add(read, tree.scope, "rc", "rc.local", "boot", ((n, t, "root") for n, t in fmt.script_lines(read.lines())))
    for rel in [*tree.files("etc/init.d"), *tree.files("etc/rc.d/init.d")]:
        read = tree.read(rel)
        if read is not None:
            out.add(read, tree.scope, "rc", "init.d script", "boot",
                    ((n, t, "root") for n, t in fmt.script_lines(read.lines(), filtered=True)))


def read_profiles(tree: Tree, out: Collected) -> None:
    paths = [*PROFILE_FILES, *(rel for d in PROFILE_DIRS for rel in tree.files(d))]
    for rel in paths:
        read = tree.read(rel)
        if read is not None:
            out.add(read, tree.scope, "profile", "system shell startup", "login",
                    ((n, t, "*") for n, t in fmt.script_lines(read.lines(), filtered=True)))
    read = tree.read("etc/environment")
    if read is not None:
        out.add(read, tree.scope, "profile", "pam environment", "login", fmt.environment_lines(read.lines()))


def read_loader(tree: Tree, out: Collected) -> None:
    read = tree.read("etc/ld.so.preload")
    if read is not None:
        out.add(read, tree.scope, "ld-preload", "ld.so.preload", "every-process", fmt.preload_lines(read.lines()))
    for rel in ["etc/ld.so.conf", *tree.files("etc/ld.so.conf.d")]:
        read = tree.read(rel)
        if read is not None:
            out.add(read, tree.scope, "ld-conf", "ld.so.conf", "every-process", fmt.ld_conf_lines(read.lines()))


def read_login_hooks(tree: Tree, out: Collected) -> None:
    """update-motd.d scripts (run as root by pam_motd at every login), sshrc, XDG autostart for everyone."""
    for rel in tree.files("etc/update-motd.d"):
        read = tree.read(rel)
        if read is not None:
            out.add(read, tree.scope, "motd", "update-motd script", "ssh-login",
                    ((n, t, "root") for n, t in fmt.script_lines(read.lines())))
    for rel in tree.files("etc/pam.d"):
        read = tree.read(rel)
        if read is not None:
            out.add(read, tree.scope, "pam", "pam_exec", "login", fmt.pam_exec_lines(read.lines()))
    read = tree.read("etc/ssh/sshd_config")
    if read is not None:
        out.add(read, tree.scope, "ssh", "sshd ForceCommand", "ssh-login", fmt.force_command_lines(read.lines()))
        out.ssh_files = fmt.sshd_authorized_keys_files(read.lines())
    read = tree.read("etc/ssh/sshrc")
    if read is not None:
        out.add(read, tree.scope, "ssh", "sshrc", "ssh-login", ((n, t, "*") for n, t in fmt.script_lines(read.lines())))
    for rel in tree.files("etc/xdg/autostart"):
        if rel.endswith(".desktop"):
            read = tree.read(rel)
            if read is not None:
                out.add(read, tree.scope, "autostart", "XDG autostart for every user", "login",
                        ((n, t, "*") for n, t, _ in fmt.desktop_lines(read.lines())))


PLACES: tuple[tuple[str, Callable[[Tree, Collected], None]], ...] = (
    ("crontabs", read_cron), ("anacron", read_anacron), ("at jobs", read_at), ("systemd", read_systemd),
    ("udev rules", read_udev), ("boot scripts", read_boot_scripts), ("shell startup", read_profiles),
    ("dynamic loader", read_loader), ("login hooks", read_login_hooks),
)
