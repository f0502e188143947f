"""Hostile pieces the tests start themselves: a second local user (created and removed by the test)."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass

import pytest


@dataclass
class LocalUser:
    name: str
    uid: int
    gid: int

    def command(self, *args: str) -> list[str]:
        """`args` run as this user (setpriv: no login, no PAM)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", *args]


@pytest.fixture
def other_user():
    """A throw-away local user (the would-be miner), removed with its files after the test."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("needs root with useradd and setpriv to create a second user")
    name = f"aatest{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        import pwd
        entry = pwd.getpwnam(name)
        yield LocalUser(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
