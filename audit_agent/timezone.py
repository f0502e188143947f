"""The institution's time zone: the one filings are judged in and times are shown in.

The notice's deadlines and a filing's validity are calendar days of the institution, not of UTC:
a filing valid until 31 March ends at midnight in Beijing, eight hours before midnight UTC.
The zone comes from the `timezone` setting (an IANA name such as Asia/Shanghai); without it,
the host's own zone (TZ, then /etc/localtime, then the C library's offset).
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ZONEINFO_MARK = "zoneinfo/"


def zone_by_name(name: str) -> dt.tzinfo:
    """An IANA zone by name; ValueError (one line) for a name the system does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Asia/Shanghai or UTC)") from None


def host_zone_name(etc_root: str = "/etc") -> str:
    """The host's IANA zone name, or "" when the host does not say one."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and not tz.startswith("/"):
        return tz
    try:
        target = os.readlink(tz or Path(etc_root) / "localtime")
    except OSError:
        target = ""
    if ZONEINFO_MARK in target:
        return target.split(ZONEINFO_MARK, 1)[1]
    try:
        return (Path(etc_root) / "timezone").read_text(encoding="utf-8", errors="replace").strip()[:64]
    except OSError:
        return ""


def institution_zone(name: str = "") -> dt.tzinfo:
    """The zone named by the `timezone` setting, else the host's zone."""
    if name:
        return zone_by_name(name)
    host = host_zone_name()
    if host:
        try:
            return zone_by_name(host)
        except ValueError:
            pass
    return dt.datetime.now().astimezone().tzinfo or dt.timezone.utc


def zone_label(zone: dt.tzinfo) -> str:
    """Asia/Shanghai, UTC, or the C library's abbreviation."""
    return getattr(zone, "key", None) or dt.datetime.now(zone).tzname() or "UTC"


def local_day(timestamp: float, zone: dt.tzinfo) -> dt.date:
    """The calendar day of an instant in the given zone."""
    return dt.datetime.fromtimestamp(timestamp, tz=zone).date()


def format_with_offset(moment: dt.datetime | float, zone: dt.tzinfo | None = None) -> str:
    """'2026-11-24 22:05:00 +08:00': a time in the zone with its UTC offset, readable and unambiguous.

    A float is a Unix timestamp; a naive datetime is taken as UTC.
    """
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.fromtimestamp(float(moment), tz=dt.timezone.utc)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    local = moment.astimezone(zone or dt.timezone.utc)
    offset = local.strftime("%z") or "+0000"
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"
