"""A minimal Stratum pool on 127.0.0.1: answers xmrig-style `login` and classic
`mining.subscribe` / `mining.authorize`, pushes jobs, accepts `submit` shares.

Runs in a thread inside the test process (StratumPool) or alone:
`python -m tests.standin.pool --port 3333 [--tls DIR]`.

With `tls=DIR` it speaks Stratum over TLS (as pools do on 443 and 5555), with a
self-signed certificate made in DIR by `self_signed_cert` (miners do not verify
pool certificates).
"""
from __future__ import annotations

import argparse
import json
import socket
import socketserver
import ssl
import subprocess
import threading
from pathlib import Path


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        pool: StratumPool = self.server.pool  # type: ignore[attr-defined]
        for raw in self.rfile:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            method = message.get("method", "")
            pool.record(method, message.get("params"))
            if method == "login":
                # A job as xmrig needs one to start hashing: RandomX takes its dataset key from seed_hash.
                result = {"id": "1", "job": {"blob": "0" * 152, "job_id": "1", "target": "ffffff00",
                                             "algo": "rx/0", "height": 1, "seed_hash": "0" * 64}, "status": "OK"}
            elif method == "mining.subscribe":
                result = [[["mining.notify", "1"]], "08000002", 4]
            elif method in ("mining.authorize", "submit", "mining.submit", "keepalived"):
                result = True if method != "submit" else {"status": "OK"}
            else:
                result = None
            self._send({"id": message.get("id"), "jsonrpc": "2.0", "error": None, "result": result})
            if method == "mining.authorize":
                self._send({"id": None, "method": "mining.notify",
                            "params": ["1", "00" * 32, "01", "02", [], "20000000", "1d00ffff", "5f5e1000", True]})

    def _send(self, payload: dict) -> None:
        self.wfile.write(json.dumps(payload).encode() + b"\n")
        self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def get_request(self):      # type: ignore[no-untyped-def]
        sock, address = super().get_request()
        if self.tls is not None:
            sock.settimeout(10)     # a client that never finishes the handshake must not hold the thread
            try:
                sock = self.tls.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                sock.close()
                raise
            sock.settimeout(None)
        return sock, address


def self_signed_cert(directory: str | Path) -> tuple[Path, Path]:
    """(certificate, key) for CN=localhost in `directory`, made by the openssl command."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "pool-cert.pem", folder / "pool-key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
    return cert, key


class StratumPool:
    """Start with `with StratumPool(port) as pool:`; `pool.port`, `pool.methods` (what miners sent)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", tls: str | Path | None = None) -> None:
        self.server = _Server((host, port), _Handler)
        self.server.pool = self  # type: ignore[attr-defined]
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self_signed_cert(tls))
            self.server.tls = context
        self.host, self.port = self.server.server_address[:2]
        self.methods: list[str] = []
        self.logins: list[object] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def record(self, method: str, params: object) -> None:
        with self._lock:
            self.methods.append(method)
            if method in ("login", "mining.authorize"):
                self.logins.append(params)

    def __enter__(self) -> "StratumPool":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port_near(preferred: int) -> int:
    """The preferred pool port if free, else the next free one above it (still a pool-like port)."""
    for port in range(preferred, preferred + 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port near {preferred}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3333)
    parser.add_argument("--tls", metavar="DIR", help="speak TLS, with a self-signed certificate kept in DIR")
    options = parser.parse_args()
    with StratumPool(options.port, tls=options.tls) as running:
        threading.Event().wait()
