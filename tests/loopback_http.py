"""A scriptable HTTP server on 127.0.0.1 in a thread, for push and rule-update tests (never beyond loopback)."""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0                       # seconds to sleep before answering (a slow receiver)
    files: dict[str, bytes] = field(default_factory=dict)   # GET path -> body


class LoopbackServer:
    """`with LoopbackServer() as server:` then server.url, server.behaviour, server.received."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.received: list[Received] = []
        self.attempts = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, body: bytes = b"") -> None:
                behaviour = owner.behaviour
                if behaviour.delay:
                    time.sleep(behaviour.delay)
                try:
                    self.send_response(behaviour.status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass                      # the client gave up (timeout)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                owner.attempts += 1
                if 200 <= owner.behaviour.status < 300 and not owner.behaviour.delay:
                    owner.received.append(Received(self.path, dict(self.headers), body))
                self._answer()

            def do_GET(self) -> None:
                body = owner.behaviour.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._answer(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
