"""A FUSE file system that stops answering on demand: the hostile mount of issue 13.

    python stallfs.py MOUNTPOINT [PROGRAM]

Serves `/unit.service` (a small unit file) and, when PROGRAM is given, `/prog`
(PROGRAM's bytes, executable). Mounted with allow_other, as a user would mount
it over their unit folder or to run a program from. Once the file MOUNTPOINT.stall
exists, every request (getattr, readdir, open, read) blocks until the server is
killed: the kernel then makes the waiters fail (ENOTCONN), which is how the test
cleans up. (A flag file, not a signal: the main thread sits in libfuse's C loop,
where Python signal handlers never run.) When the flag file holds a word, only
processes whose command line contains it are stalled: the rest of a shared host
(other scans running meanwhile) is answered normally.
Prints "mounted" once the mount answers.
"""
from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import time

from fuse import FUSE, FuseOSError, Operations, fuse_get_context

UNIT = b"[Service]\nExecStart=/opt/stall/prog --serve\n"


class StallFS(Operations):
    def __init__(self, program: str | None, flag: str) -> None:
        self.flag = flag
        self.files = {"/unit.service": (UNIT, 0o644)}
        if program:
            with open(program, "rb") as handle:
                self.files["/prog"] = (handle.read(), 0o755)
        self.started = time.time()

    def stall(self) -> None:
        while self.stalls_caller():             # never answers: until the process is killed
            time.sleep(0.5)

    def stalls_caller(self) -> bool:
        try:
            with open(self.flag, "rb") as handle:
                word = handle.read().strip()
        except OSError:
            return False
        if not word:
            return True
        try:
            with open(f"/proc/{fuse_get_context()[2]}/cmdline", "rb") as handle:
                return word in handle.read()
        except OSError:
            return False

    def getattr(self, path, fh=None):
        self.stall()
        now = self.started
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_atime": now, "st_mtime": now,
                    "st_ctime": now}
        if path not in self.files:
            raise FuseOSError(errno.ENOENT)
        data, mode = self.files[path]
        return {"st_mode": stat.S_IFREG | mode, "st_nlink": 1, "st_size": len(data), "st_atime": now,
                "st_mtime": now, "st_ctime": now}

    def readdir(self, path, fh):
        self.stall()
        return [".", "..", *(name.lstrip("/") for name in self.files)]

    def open(self, path, flags):
        self.stall()
        if path not in self.files:
            raise FuseOSError(errno.ENOENT)
        return 0

    def read(self, path, size, offset, fh):
        self.stall()
        return self.files[path][0][offset:offset + size]


def main() -> None:
    mountpoint = sys.argv[1]
    fs = StallFS(sys.argv[2] if len(sys.argv) > 2 else None, mountpoint.rstrip("/") + ".stall")

    def announce() -> None:
        for _ in range(200):
            if os.path.ismount(mountpoint):
                print("mounted", flush=True)
                return
            time.sleep(0.05)
        print("mount failed", flush=True)
    threading.Thread(target=announce, daemon=True).start()
    # attr/entry caching off: every stat reaches this server, as it would on a hostile mount
    FUSE(fs, mountpoint, foreground=True, allow_other=True, nothreads=False, attr_timeout=0, entry_timeout=0,
         default_permissions=True)


if __name__ == "__main__":
    main()
