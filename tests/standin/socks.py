"""A minimal SOCKS5 proxy (RFC 1928: no authentication, CONNECT to an IPv4/IPv6 address or a domain name),
run as its own process like a real local proxy (microsocks, dante, an ssh -D tunnel):
`python -m tests.standin.socks --port 1080` prints "ready PORT" once it listens on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import select
import socket
import socketserver
import struct


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        client: socket.socket = self.request
        try:
            version, methods = recv_exact(client, 2)
            recv_exact(client, methods)
            if version != 5:
                return
            client.sendall(b"\x05\x00")                              # no authentication
            _, command, _, kind = recv_exact(client, 4)
            if kind == 1:
                host = socket.inet_ntop(socket.AF_INET, recv_exact(client, 4))
            elif kind == 4:
                host = socket.inet_ntop(socket.AF_INET6, recv_exact(client, 16))
            else:
                host = recv_exact(client, recv_exact(client, 1)[0]).decode("idna")
            port = struct.unpack("!H", recv_exact(client, 2))[0]
            if command != 1:
                client.sendall(b"\x05\x07\x00\x01" + bytes(6))      # only CONNECT
                return
            try:
                upstream = socket.create_connection((host, port), timeout=10)
            except OSError:
                client.sendall(b"\x05\x05\x00\x01" + bytes(6))      # connection refused
                return
            client.sendall(b"\x05\x00\x00\x01" + bytes(6))
            relay(client, upstream)
        except (ConnectionError, OSError, ValueError):
            return


def relay(one: socket.socket, other: socket.socket) -> None:
    with other:
        other.settimeout(None)
        while True:
            ready, _, _ = select.select([one, other], [], [])
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                (other if source is one else one).sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def connect_via(proxy: str, host: str, port: int, timeout: float = 10) -> socket.socket:
    """A socket to host:port through the SOCKS5 proxy 'HOST:PORT' (the client side, as xmrig --proxy does)."""
    proxy_host, _, proxy_port = proxy.rpartition(":")
    sock = socket.create_connection((proxy_host, int(proxy_port)), timeout=timeout)
    sock.sendall(b"\x05\x01\x00")
    if recv_exact(sock, 2) != b"\x05\x00":
        raise ConnectionError("proxy refused the no-authentication method")
    name = host.encode("idna")
    sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
    reply = recv_exact(sock, 10)
    if reply[1] != 0:
        raise ConnectionError(f"proxy could not connect: code {reply[1]}")
    return sock


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    server = _Server(("127.0.0.1", parser.parse_args().port), _Handler)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()
