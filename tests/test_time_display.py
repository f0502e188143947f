"""Every time a report shows is in the institution's zone with its UTC offset (issue 14, item 5)."""
from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from audit_agent.i18n import translator
from audit_agent.render import RenderOptions, render

# 2026-03-01 19:30:00 UTC = 2026-03-02 03:30:00 in Beijing: the day a filing's validity turns on.
MOMENT = dt.datetime(2026, 3, 1, 19, 30, tzinfo=dt.timezone.utc).timestamp()


@pytest.mark.parametrize("lang, zone, expected", [
    ("en", "Asia/Shanghai", "2 Mar 2026 03:30:00 UTC+08:00"),
    ("zh-CN", "Asia/Shanghai", "2026年3月2日 03:30:00（UTC+08:00）"),
    ("en", "America/New_York", "1 Mar 2026 14:30:00 UTC-05:00"),
    ("en", "", "1 Mar 2026 19:30:00 UTC+00:00"),
    ("en", "Not/AZone", "1 Mar 2026 19:30:00 UTC+00:00"),
])
def test_times_are_shown_in_the_zone_with_their_offset(lang, zone, expected):
    assert translator(lang, zone).datetime(MOMENT) == expected


@pytest.mark.parametrize("fmt", ["html", "markdown", "text"])
def test_each_report_format_shows_its_times_in_the_reports_zone(demo_reports, fmt):
    report = next(iter(demo_reports.values()))
    report = msgspec.structs.replace(report, timezone="Asia/Shanghai", collected_at=MOMENT, generated_at=MOMENT)
    shown = render(fmt, report, RenderOptions(lang="en"))
    assert "+08:00" in shown
    assert "19:30:00" not in shown          # no time left in UTC
