"""Where things live on a Linux host: the path and name facts the stealth, persistence and load checks share."""
from __future__ import annotations

import re

# Package-managed locations: a deleted executable here is most likely an upgrade, not a dropper.
PACKAGE_DIRS = ("/usr/bin/", "/usr/sbin/", "/usr/lib", "/usr/libexec/", "/usr/local/", "/usr/share/", "/bin/",
                "/sbin/", "/lib/", "/lib64/", "/lib32/", "/opt/", "/snap/", "/nix/store/", "/gnu/store/")
# Anyone can write here: where droppers put miners.
WORLD_WRITABLE_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/", "/var/lock/", "/run/lock/", "/dev/mqueue/")
# Dot directories where people legitimately keep their own tool chains on research machines.
TOOLCHAIN_DOT_DIRS = {".local", ".cargo", ".rustup", ".pyenv", ".conda", ".mamba", ".micromamba", ".pixi",
                      ".venv", ".virtualenvs", ".nvm", ".npm", ".deno", ".bun", ".julia", ".juliaup", ".sdkman",
                      ".linuxbrew", ".nix-profile", ".guix-profile", ".vscode-server", ".vscode", ".cursor-server",
                      ".cache", ".spack", ".cabal", ".ghcup", ".go", ".gradle", ".m2", ".dotnet", ".elan",
                      ".opam", ".rbenv", ".rvm", ".asdf", ".poetry", ".theia", ".jupyter", ".ipython", ".config",
                      ".gem", ".miniconda3", ".anaconda3"}
# Names of kernel threads, which miners borrow. Real kernel threads have no executable, an empty command
# line and kthreadd (PID 2) as parent. Watchdog names are left out: the userland watchdog daemon uses them.
KERNEL_THREAD_NAME = re.compile(
    r"^\[?(?:kworker|kthreadd|ksoftirqd|migration/|rcu_|kswapd|khugepaged|kcompactd|jbd2/|ksmd|kauditd|"
    r"kdevtmpfs|kblockd|kintegrityd|cpuhp/|irq/|writeback|oom_reaper|kthrotld|netns$)")


def writable_root(path: str) -> str:
    """The world-writable directory `path` lies in ('' if none)."""
    return next((d.rstrip("/") for d in WORLD_WRITABLE_DIRS if path.startswith(d)), "")


# System trees, where even a tool-chain-looking dot directory (/opt/.cache) is out of place.
SYSTEM_TREES = ("/opt/", "/usr/", "/etc/", "/var/", "/lib", "/bin/", "/sbin/", "/boot/", "/dev/", "/run/", "/srv/",
                "/tmp/")


def hidden_component(path: str) -> str:
    """The first dot-named path component that is out of place ('' if none): any dot directory in a
    system tree, and outside them (homes, cluster file systems) any but the usual tool-chain ones."""
    if not path.startswith("/"):
        return ""
    in_system_tree = path.startswith(SYSTEM_TREES)
    for part in path.split("/")[1:]:
        if part.startswith(".") and part not in (".", "..") and (in_system_tree or part not in TOOLCHAIN_DOT_DIRS):
            return part
    return ""
