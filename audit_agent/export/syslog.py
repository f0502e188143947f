"""Events to syslog as RFC 5424 messages, over a local unix datagram socket (/dev/log, rsyslog/journald)
or UDP to the loopback address (a local relay): the agent never sends to another host itself.

    <PRI>1 TIMESTAMP HOSTNAME audit-agent PROCID MSGID [audit-agent@32473 fp="..." rule="..."] BOM{ECS JSON}

PRI = facility * 8 + severity (RFC 5424 section 6.2.1); MSGID is the event action; the MSG is the
event's JSON in UTF-8 after a BOM (section 6.4). 32473 is the enterprise number RFC 5612 reserves for
documentation and examples: sites with their own number can change SD_ID.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from audit_agent.export.events import line
from audit_agent.yamlfile import ConfigError

FACILITY_LOCAL0 = 16
SD_ID = "audit-agent@32473"
# RFC 5424 severities: 2 critical, 3 error, 4 warning, 5 notice, 6 informational.
SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
MAX_DATAGRAM = 8192


def parse_target(target: str) -> tuple[int, Any]:
    """'unix:/dev/log' or an absolute path -> (AF_UNIX, path); 'udp:127.0.0.1:514' -> (AF_INET, (host, port))."""
    if target.startswith("unix:") or target.startswith("/"):
        path = target[len("unix:"):] if target.startswith("unix:") else target
        if not path.startswith("/"):
            raise ConfigError(f"--syslog {target}: a unix socket needs an absolute path")
        return socket.AF_UNIX, path
    if target.startswith("udp:"):
        host, _, port = target[len("udp:"):].rpartition(":")
        host = host.strip("[]")
        try:
            address = ipaddress.ip_address(host)
            number = int(port)
        except ValueError:
            raise ConfigError(f"--syslog {target}: expected udp:127.0.0.1:PORT") from None
        if not address.is_loopback or not 0 < number < 65536:
            raise ConfigError(f"--syslog {target}: only a loopback relay (127.0.0.1 or ::1) and a valid port")
        return (socket.AF_INET6 if address.version == 6 else socket.AF_INET), (host, number)
    raise ConfigError(f"--syslog {target}: use unix:/dev/log (or a socket path) or udp:127.0.0.1:PORT")


def format_message(event: dict[str, Any], hostname: str) -> bytes:
    labels = event.get("labels") or {}
    severity = SEVERITY.get(str(labels.get("severity", "")), 5 if event.get("event", {}).get("kind") == "event" else 6)
    action = str(event.get("event", {}).get("action", "-"))[:32]
    params = [("fp", str(event.get("event", {}).get("id") or "")), ("rule", str(event.get("rule", {}).get("id") or ""))]
    data = " ".join(f'{name}="{sd_escape(value)}"' for name, value in params if value)
    structured = f"[{SD_ID} {data}]" if data else "-"
    header = (f"<{FACILITY_LOCAL0 * 8 + severity}>1 {event.get('@timestamp', '-')} {printable(hostname, 255) or '-'} "
              f"audit-agent {os.getpid()} {printable(action, 32) or '-'} {structured} ")
    message = header.encode("utf-8") + b"\xef\xbb\xbf" + line(event).encode("ascii")
    return message[:MAX_DATAGRAM]


def sd_escape(value: str) -> str:
    """PARAM-VALUE escaping (RFC 5424 section 6.3.3): '"', '\\' and ']' take a backslash."""
    return printable(value, 200).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def printable(text: str, cap: int) -> str:
    """Header fields are PRINTUSASCII without spaces (section 6)."""
    return "".join(ch for ch in text if 33 <= ord(ch) <= 126)[:cap]


def send(target: str, events: list[dict[str, Any]], hostname: str) -> int:
    """Send each event as one datagram; return how many were sent. OSError when the receiver is absent."""
    family, address = parse_target(target)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for event in events:
            sock.sendto(format_message(event, hostname), address)
    return len(events)
