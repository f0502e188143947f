"""Time limits for everything that touches the host: a stuck file system cannot stop the scan.

A local user controls file systems the agent must look at: a FUSE server with
allow_other mounted on their unit folder or serving a running program's
executable, an NFS home whose server is gone. A stat, open, read or readdir
there blocks until the server answers, possibly forever, in an uninterruptible
wait that no signal ends.

So such calls go through `call()`: the caller waits at most `timeout` seconds.
On a FUSE or network mount the call runs in a forked child process: a request
the FUSE server has read but never answers is waited out by the kernel even
through SIGKILL, and a thread stuck so would keep the whole agent from exiting;
a stuck child is simply left behind (it ends when the server does). Elsewhere
the call runs in a worker thread; one that does not come back is abandoned (a
daemon thread) and a fresh one takes the next call. The mount that stalled is remembered, and later calls on
paths under it fail at once rather than each waiting its full timeout. Every
call that did not answer is logged, so the report can say what timed out.

`TimedOut` is an OSError (ETIMEDOUT): collectors that already count an
unreadable file as denied or skipped treat a stuck one the same way.

The scan's own ceiling and each step's budget are deadlines on the monotonic
clock; `call()` never waits past the step's deadline, and once a step has been
given up, its guarded calls fail at once so its thread unwinds.
"""
from __future__ import annotations

import errno
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")
CALL_TIMEOUT = 5.0          # seconds one file-system call may take before its mount counts as stuck
MAX_ABANDONED = 16          # stuck worker threads kept at most; beyond that, guarded calls fail at once
MAX_LOGGED = 50
CHECK = "deadline"          # the coverage check that lists what did not answer
NEVER_STUCK = {"/", "/proc", "/sys", "/dev"}    # one slow call there must not blind the rest of the scan


class TimedOut(OSError):
    """A call on the host did not answer within its time limit (or its mount stalled before)."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(errno.ETIMEDOUT, f"no answer within {seconds:g}s", what)
        self.seconds = seconds

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return TimedOut, (self.filename, self.seconds)


class _Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="audit-agent-fs", daemon=True)
        self.jobs: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[tuple[bool, Any]]] | None] = \
            queue.SimpleQueue()

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            action, reply = job
            try:
                reply.put((True, action()))
            except BaseException as exc:        # noqa: BLE001 - handed to the caller, raised there
                reply.put((False, exc))


class Deadlines:
    """The scan's clock: its ceiling, the running step's budget, stuck mounts and the timeout log."""

    def __init__(self, ceiling: float | None = None, call_timeout: float = CALL_TIMEOUT) -> None:
        self.ceiling = time.monotonic() + ceiling if ceiling else None
        self.call_timeout = call_timeout
        self.timed_out: list[str] = []          # "what: after Ns", for the report
        self.stuck_mounts: set[str] = set()
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._abandoned = 0
        self.abandoned_steps = 0                # steps given up (their threads may still write)
        self._local = threading.local()         # per thread: the step deadline and whether it was given up
        self._pid = os.getpid()                 # in a forked child, calls run directly (no worker threads there)

    # -- deadlines

    def left(self) -> float | None:
        """Seconds until the nearest deadline that applies to this thread (None: no limit)."""
        ends = [d for d in (self.ceiling, getattr(self._local, "step_end", None)) if d is not None]
        return max(0.0, min(ends) - time.monotonic()) if ends else None

    def expired(self) -> bool:
        left = self.left()
        return getattr(self._local, "abandoned", None) is not None and self._local.abandoned.is_set() \
            or (left is not None and left <= 0)

    def note(self, what: str) -> None:
        with self._lock:
            if len(self.timed_out) < MAX_LOGGED:
                self.timed_out.append(what)
            elif len(self.timed_out) == MAX_LOGGED:
                self.timed_out.append("…")

    # -- guarded calls

    def call(self, action: Callable[..., T], *args: Any, path: str = "", what: str = "",
             timeout: float | None = None) -> T:
        """`action(*args)` in a worker thread; TimedOut when it does not return in time (the worker is left)."""
        if os.getpid() != self._pid:
            return action(*args)
        label = what or path or getattr(action, "__name__", "call")
        # Which mount a path is on matters only where one can stall (a FUSE or network mount, or one that
        # already did): on a host with neither, no per-call lookup (a readlink and a walk of the mount table).
        mount = mount_of(path) if path and (self.stuck_mounts or remote_mount_points()) else ""
        if mount and mount in self.stuck_mounts:
            raise TimedOut(f"{label} (the file system at {mount} stopped answering)", 0)
        limit = self.call_timeout if timeout is None else timeout
        left = self.left()
        if left is not None:
            limit = min(limit, left)
        if self.expired() or limit <= 0:
            raise TimedOut(f"{label} (time limit of the scan reached)", 0)
        if mount and is_remote(fstype_of(mount)) and hasattr(os, "fork"):
            return self._call_forked(action, args, label, mount, limit)
        worker = self._take_worker()
        if worker is None:
            raise TimedOut(f"{label} (too many calls already stuck)", 0)
        reply: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        worker.jobs.put((lambda: action(*args), reply))
        try:
            ok, value = reply.get(timeout=limit)
        except queue.Empty:
            with self._lock:
                self._abandoned += 1
            mount = mount or (mount_of(path) if path else "")
            if mount and mount not in NEVER_STUCK:
                self.stuck_mounts.add(mount)
            self.note(f"{label} ({limit:.3g} s)")
            raise TimedOut(label, limit) from None
        self._give_back(worker)
        if ok:
            return cast(T, value)
        raise value

    def _call_forked(self, action: Callable[..., T], args: tuple[Any, ...], label: str, mount: str,
                     limit: float) -> T:
        """`action(*args)` in a child process; its result or exception comes back pickled through a pipe."""
        import pickle
        import select
        with self._lock:
            if self._abandoned >= MAX_ABANDONED:
                raise TimedOut(f"{label} (too many calls already stuck)", 0)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:        # the child: run, send, leave at once (no atexit, no flushing of inherited buffers)
            try:
                # nothing inherited stays open: a child stuck on the mount must not hold the agent's
                # stdout, stderr or report files (whoever reads them would wait for it too)
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.closerange(3, write_end)
                os.closerange(write_end + 1, 65536)
                try:
                    payload = pickle.dumps((True, action(*args)))
                except BaseException as exc:        # noqa: BLE001 - sent to the parent
                    payload = pickle.dumps((False, exc))
                view = memoryview(payload)
                while view:
                    view = view[os.write(write_end, view):]
            finally:
                os._exit(0)
        os.close(write_end)
        chunks: list[bytes] = []
        end = time.monotonic() + limit
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0 or not select.select([read_end], [], [], left)[0]:
                    break
                chunk = os.read(read_end, 1 << 20)
                if not chunk:
                    os.waitpid(pid, 0)
                    ok, value = pickle.loads(b"".join(chunks))
                    if ok:
                        return cast(T, value)
                    raise value
                chunks.append(chunk)
        finally:
            os.close(read_end)
        os.kill(pid, 9)     # it dies when the server answers or goes; never waited for
        with self._lock:
            self._abandoned += 1
        if mount not in NEVER_STUCK:
            self.stuck_mounts.add(mount)
        self.note(f"{label} ({limit:.3g} s)")
        raise TimedOut(label, limit)

    def _take_worker(self) -> _Worker | None:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._abandoned >= MAX_ABANDONED:
                return None
        worker = _Worker()
        worker.start()
        return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < 4:
                self._idle.append(worker)
                return
        worker.jobs.put(None)

    # -- steps

    def run_step(self, action: Callable[[], T], budget: float) -> tuple[bool, T | None]:
        """(finished, result) of `action` run in its own thread for at most `budget` seconds (and the ceiling).

        A step that overruns is given up: its thread is left running, but every guarded call it
        makes from then on fails at once, so it unwinds soon; its result is never used."""
        left = self.left()
        limit = budget if left is None else min(budget, left)
        given_up = threading.Event()
        box: dict[str, Any] = {}

        def body() -> None:
            self._local.step_end = time.monotonic() + limit
            self._local.abandoned = given_up
            try:
                box["result"] = action()
            except BaseException as exc:    # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=body, name="audit-agent-step", daemon=True)
        thread.start()
        thread.join(limit if limit > 0 else 0)
        if thread.is_alive():
            given_up.set()
            self.abandoned_steps += 1
            return False, None
        if "error" in box:
            raise box["error"]
        return True, box.get("result")


_current = Deadlines()


def current() -> Deadlines:
    """The running scan's deadlines (a default without a ceiling outside a scan)."""
    return _current


def start_scan(ceiling: float | None, call_timeout: float = CALL_TIMEOUT) -> Deadlines:
    global _current
    _current = Deadlines(ceiling, call_timeout)
    return _current


def end_scan(clock: Deadlines) -> None:
    """The scan's ceiling ends with its collection: a later guarded call (the next scan in a long-lived process,
    a test session) must not fail because an earlier scan's ceiling has passed. Steps given up stay given up."""
    clock.ceiling = None


def call(action: Callable[..., T], *args: Any, path: str = "", what: str = "", timeout: float | None = None) -> T:
    """Shorthand for current().call(...): use it for any blocking call on a path another user controls."""
    return _current.call(action, *args, path=path, what=what, timeout=timeout)


def answers(path: str) -> bool:
    """False when `path` lies on a FUSE or network mount that does not answer (probed in a child process,
    within the call timeout; a stalled mount is remembered). Code that must keep descriptors in this
    process (openat walks) asks first; a mount that stalls right after the probe is not covered."""
    if not remote_mount_of(path):      # most hosts have no such mount: no walk of the mount table per path
        return True
    try:
        call(_probe, path, path=path)
    except TimedOut:
        return False
    except OSError:
        pass            # missing or denied: the caller's own call sees it
    return True


def stat_path(path: str, follow_symlinks: bool = False) -> os.stat_result:
    """os.stat of a path another user may control: on a FUSE or network mount in a child process under the
    call timeout (TimedOut), elsewhere directly (a local disk answers, and this runs thousands of times)."""
    if remote_mount_of(path):
        return call(_stat, path, follow_symlinks, path=path)
    return os.stat(path, follow_symlinks=follow_symlinks)


def _stat(path: str, follow_symlinks: bool) -> os.stat_result:
    return os.stat(path, follow_symlinks=follow_symlinks)


def _probe(path: str) -> None:
    import stat as stat_module
    if stat_module.S_ISDIR(os.lstat(path).st_mode):
        os.listdir(path)


# ---------------------------------------------------------------- mounts


# Where a server another user (or another host) runs answers each request: calls there go to a child process.
FORK_FSTYPES = ("fuse", "nfs", "cifs", "smb", "9p", "ceph", "glusterfs", "afs", "sshfs", "davfs", "lustre",
                "gpfs", "beegfs", "ncpfs", "virtiofs")
# Named like one, but the kernel answers (FUSE's control file system, mounted on most hosts): not remote.
KERNEL_FSTYPES = frozenset({"fusectl"})
_MOUNTS: tuple[float, dict[str, str]] = (0.0, {})
PROC_LINK = re.compile(r"^(/proc/\d+/(?:task/\d+/)?(?:root|cwd|exe))(/.*)?$")


def mount_table() -> dict[str, str]:
    """Mount point -> file-system type, longest point first (re-read at most once a second)."""
    global _MOUNTS
    read_at, table = _MOUNTS
    if time.monotonic() - read_at < 1.0:
        return table
    found: dict[str, str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4 and " - " in line:
                    point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
                    found[point] = line.split(" - ", 1)[1].split()[0]
    except OSError:
        found = {"/": ""}
    table = dict(sorted(found.items(), key=lambda item: len(item[0]), reverse=True))
    _MOUNTS = (time.monotonic(), table)
    return table


_REMOTE: tuple[dict[str, str] | None, frozenset[str]] = (None, frozenset())


def remote_mount_points() -> frozenset[str]:
    """The FUSE and network mount points, worked out once per reading of the mount table (a walk asks per
    folder)."""
    global _REMOTE
    table = mount_table()
    if _REMOTE[0] is not table:
        _REMOTE = (table, frozenset(p for p, fstype in table.items() if is_remote(fstype)))
    return _REMOTE[1]


def is_remote(fstype: str) -> bool:
    """Whether a server another user or host runs answers this file system's requests."""
    return fstype.startswith(FORK_FSTYPES) and fstype not in KERNEL_FSTYPES


def mount_points() -> list[str]:
    return list(mount_table())


def fstype_of(mount: str) -> str:
    return mount_table().get(mount, "")


def remote_mount_of(path: str) -> str:
    """The FUSE or network mount an absolute path lies on ("" on a local file system): cheap enough to ask
    for every folder of a walk (a host has few such mounts)."""
    remote = remote_mount_points()
    if not remote:
        return ""
    if not path.startswith("/proc/"):
        # Under none of the remote points (a host mounts fusectl at /sys/fs/fuse/connections): then no need
        # to find which local mount it is on, which walks the whole mount table (persistence asks per file).
        plain = os.path.normpath(path) if path.startswith("/") else os.path.abspath(path)
        if not any(plain == point or plain.startswith(point.rstrip("/") + "/") for point in remote):
            return ""
    point = mount_of(path)      # /proc/PID/root/... and /proc/PID/cwd/... judged by where they lead
    return point if point in remote else ""


def mount_of(path: str) -> str:
    """The mount point a path (as named, symlinks not resolved) lies on; /proc/PID/exe is resolved by readlink,
    which never touches the file system the executable lives on."""
    match = PROC_LINK.match(path)
    if match:           # /proc/PID/root/x, /proc/PID/cwd/x, /proc/PID/exe: where the link really leads
        try:
            target = os.readlink(match.group(1))
        except OSError:
            return ""
        path = target + match.group(2) if match.group(2) and target != "/" else (match.group(2) or target)
    path = os.path.normpath(path) if path.startswith("/") else os.path.abspath(path)
    for point in mount_points():
        if path == point or path.startswith(point.rstrip("/") + "/"):
            return point
    return "/"
