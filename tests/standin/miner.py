"""A stand-in CPU miner: takes xmrig-style arguments (-o URL -u WALLET -p PASS, or -c config.json;
-x HOST:PORT goes through a SOCKS5 proxy),
logs in to the pool over Stratum, then burns CPU hashing and submits "shares".

The environment variable STANDIN_NAME renames the process (prctl PR_SET_NAME,
as real miners do), so tests can disguise it as `kworker/0:1` without the
disguise showing in the command line.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import socket
import sys
import time
from urllib.parse import urlsplit


def set_process_name(name: str) -> None:
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)     # PR_SET_NAME: what ps and /proc/PID/comm show
    except (OSError, AttributeError):
        pass


def pool_from_config(path: str) -> tuple[str, str]:
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    pool = config["pools"][0]
    return pool["url"], pool.get("user", "")


def main() -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-o", "--url")
    parser.add_argument("-u", "--user", default="")
    parser.add_argument("-p", "--pass", dest="password", default="x")
    parser.add_argument("-c", "--config")
    parser.add_argument("--donate-level")
    parser.add_argument("-a", "--algo")
    parser.add_argument("-x", "--proxy", help="SOCKS5 proxy HOST:PORT, as xmrig's --proxy")
    args, _ = parser.parse_known_args()
    if os.environ.get("STANDIN_NAME"):
        set_process_name(os.environ["STANDIN_NAME"])
    url, user = args.url, args.user
    if args.config or not url:
        url, user = pool_from_config(args.config or "config.json")
    target = urlsplit(url if "://" in url else f"stratum+tcp://{url}")
    if args.proxy:
        from tests.standin.socks import connect_via
        conn = connect_via(args.proxy, target.hostname, target.port)
    else:
        conn = socket.create_connection((target.hostname, target.port), timeout=10)
    stream = conn.makefile("rwb")
    stream.write(json.dumps({"id": 1, "jsonrpc": "2.0", "method": "login",
                             "params": {"login": user, "pass": args.password, "agent": "XMRig/6.21.0"}}).encode() + b"\n")
    stream.flush()
    stream.readline()
    print("ready", flush=True)
    deadline = time.monotonic() + float(os.environ.get("STANDIN_SECONDS", "600"))
    nonce = 0
    last_submit = time.monotonic()
    while time.monotonic() < deadline:
        for _ in range(20000):
            hashlib.sha256(nonce.to_bytes(8, "little")).digest()
            nonce += 1
        if time.monotonic() - last_submit > 2:
            stream.write(json.dumps({"id": 2, "jsonrpc": "2.0", "method": "submit",
                                     "params": {"id": "1", "job_id": "1", "nonce": f"{nonce:08x}"}}).encode() + b"\n")
            stream.flush()
            stream.readline()
            last_submit = time.monotonic()
    return 0


if __name__ == "__main__":
    sys.exit(main())
