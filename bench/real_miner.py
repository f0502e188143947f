"""A real miner, the way campaigns run it: what the agent finds, and what it costs.

Takes an xmrig binary you provide (none is shipped: build it from Debian's source package, see
docs/performance.md "A real miner"), and runs it on this host against a Stratum pool on 127.0.0.1 that this
script starts (no share ever leaves the host), in the variants campaigns use:

  plain     renamed to a system program's name (--name, default python3) in a hidden, user-writable folder,
            no arguments: its config.json sits beside it, is read at start and then deleted;
            the pool speaks TLS on an ephemeral port
  packed    the same, packed with UPX (--upx PATH) and its marks scrubbed (UPX! and the $Info/$Id lines
            overwritten, as droppers do), so neither `strings` nor `upx -d` recognise it
  port443   packed and scrubbed, the pool on 127.0.0.1:443 (needs root)
  memfd     packed and scrubbed, started from an anonymous memfd (`-c FILE`), file and config deleted after start
  socks     packed and scrubbed, reaching the pool (on 443) through a SOCKS5 proxy on 127.0.0.1 (its own process)
  paused    packed and scrubbed, stopped (SIGSTOP) by a guard while any audit-agent process runs, as
            campaigns pause or kill themselves when a monitoring tool appears

For each variant: start it, wait for its login at the pool, then run `audit-agent scan --window W` and print
the findings about its PID (rule ids, severity) and the scan's CPU. Every process started here is ended by PID.

    python bench/real_miner.py --xmrig PATH [--upx PATH] [--variants plain,packed,port443,memfd,socks,paused]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import agent_command, measure  # noqa: E402
from tests.standin.pool import StratumPool  # noqa: E402

# A public example address (the Monero general fund), the kind of wallet a miner logs in with.
WALLET = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
UPX_MARKS = (re.compile(rb"UPX!"), re.compile(rb"\$Info: This file is packed with the UPX[^\n]*"),
             re.compile(rb"\$Id: UPX [^\n]*"))


def scrub(path: Path) -> int:
    """Overwrite UPX's marks in place with bytes of the same length; the stub does not read them to run."""
    data = path.read_bytes()
    count = 0
    for pattern in UPX_MARKS:
        data, n = pattern.subn(lambda m: bytes(len(m.group(0))), data)
        count += n
    path.write_bytes(data)
    return count


def stage(xmrig: Path, folder: Path, name: str, upx: Path | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    shutil.copy2(xmrig, exe)
    if upx is not None:
        subprocess.run([str(upx), "-q", "--best", str(exe)], check=True, capture_output=True)
        scrub(exe)
    exe.chmod(0o755)
    return exe


MEMFD_LAUNCHER = ("import os, sys; fd = os.memfd_create('x'); os.write(fd, open(sys.argv[1], 'rb').read()); "
                  "os.execv(f'/proc/self/fd/{fd}', [sys.argv[2], '-c', sys.argv[3]])")
GUARD = """
import os, signal, sys, time
pid, me, names = int(sys.argv[1]), str(os.getpid()), (b"audit_agent", b"audit-agent")
while True:
    watched = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                text = handle.read()
        except OSError:
            continue
        watched = watched or any(name in text for name in names)
    os.kill(pid, signal.SIGSTOP if watched else signal.SIGCONT)
    time.sleep(0.05)
"""


def config(port: int, socks: int | None = None) -> dict:
    pool = {"url": f"127.0.0.1:{port}", "user": WALLET, "pass": "x", "tls": True, "keepalive": True}
    if socks is not None:
        pool["socks5"] = f"127.0.0.1:{socks}"
    return {"autosave": False, "donate-level": 0, "colors": False, "background": False, "print-time": 3600,
            "cpu": {"enabled": True, "huge-pages": False, "max-threads-hint": 50},
            "randomx": {"mode": "light", "1gb-pages": False},
            "pools": [pool]}


def run_variant(variant: str, args: argparse.Namespace, out: Path) -> None:
    upx = None if variant == "plain" else (Path(args.upx) if args.upx else None)
    if upx is None and variant != "plain":
        print(f"{variant}: skipped (needs --upx)")
        return
    home = Path(tempfile.mkdtemp(prefix="real-miner-", dir="/var/tmp"))
    helpers: list[subprocess.Popen] = []
    try:
        exe = stage(Path(args.xmrig), home / ".cache" / ".x", args.name, upx)
        with StratumPool(443 if variant in ("port443", "socks") else 0, tls=home / "cert") as pool:
            socks = start_socks(helpers) if variant == "socks" else None
            settings = exe.parent / "config.json"
            settings.write_text(json.dumps(config(pool.port, socks)))
            command = [sys.executable, "-c", MEMFD_LAUNCHER, str(exe), args.name, str(settings)] \
                if variant == "memfd" else [str(exe)]
            miner = subprocess.Popen(command, cwd=exe.parent, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            helpers.append(miner)
            deadline = time.monotonic() + 60
            while not pool.logins and time.monotonic() < deadline and miner.poll() is None:
                time.sleep(0.2)
            if not pool.logins:
                print(f"{variant}: the miner did not log in (exit {miner.poll()})")
                return
            settings.unlink()                               # read at start, then gone from disk
            if variant == "memfd":
                exe.unlink()
            time.sleep(args.warm)                           # hashing, as it would be long before an audit
            if variant == "paused":
                helpers.append(subprocess.Popen([sys.executable, "-c", GUARD, str(miner.pid)]))
                time.sleep(0.5)
            report = out / f"{variant}.json"
            cost = measure([*agent_command(), "scan", "--window", str(args.window), "--quiet", "--fail-on",
                            "never", "--json", str(report)])
            show(variant, miner.pid, json.loads(report.read_text()), cost.cpu, pool)
    finally:
        for helper in reversed(helpers):
            if helper.poll() is None:
                os.kill(helper.pid, signal.SIGKILL)
            helper.wait()
        shutil.rmtree(home, ignore_errors=True)


def start_socks(helpers: list[subprocess.Popen]) -> int:
    """tests/standin/socks.py as its own process, as a real local proxy runs; its port."""
    proxy = subprocess.Popen([sys.executable, "-m", "tests.standin.socks", "--port", "0"], stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).resolve().parent.parent)
    helpers.append(proxy)
    assert proxy.stdout is not None
    return int(proxy.stdout.readline().split()[1])


def show(variant: str, pid: int, report: dict, cpu: float, pool: StratumPool) -> None:
    found = [f for f in report["findings"] if f["subject"].get("pid") == pid]
    memory = next((c["reason"] for c in report["coverage"] if c["check"] == "memory"), "")
    print(f"{variant}: pid {pid}, pool port {pool.port}, submits {pool.methods.count('submit')}; "
          f"scan CPU {cpu:.2f} s; memory coverage: {memory}")
    if not found:
        print("    NOT FOUND")
    for item in found:
        print(f"    {item['severity']:>8} {item.get('category', '')}: {', '.join(item['rule_ids'])}")
        for reason in item.get("reasons", [])[:8]:
            print(f"             {reason[:140]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xmrig", required=True, help="an xmrig executable")
    parser.add_argument("--upx", help="a upx executable, for the packed variants")
    parser.add_argument("--variants", default="plain,packed,port443,memfd,socks,paused")
    parser.add_argument("--name", default="python3", help="what the miner's file is named (its process name)")
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--warm", type=float, default=20.0, help="seconds it hashes before the audit")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="real-miner-reports-"))
    for variant in args.variants.split(","):
        run_variant(variant.strip(), args, out)
    print(f"reports in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
