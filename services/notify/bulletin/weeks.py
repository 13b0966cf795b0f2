"""ISO weeks in city time (Asia/Shanghai), the bulletin's period. Pure."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

CITY_TZ = ZoneInfo("Asia/Shanghai")
_WEEK = re.compile(r"^(?P<year>\d{4})-W(?P<week>\d{2})$")


def week_of(at: datetime | date, tz: ZoneInfo = CITY_TZ) -> str:
    """The ISO week a moment (city time) or a day falls in, e.g. '2026-W47'."""
    day = at.astimezone(tz).date() if isinstance(at, datetime) else at
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def parse_week(week: str) -> tuple[int, int]:
    """'2026-W47' → (2026, 47); ValueError for anything else."""
    m = _WEEK.match(week.strip())
    if not m:
        raise ValueError(f"week {week!r} is not like 2026-W47")
    year, num = int(m["year"]), int(m["week"])
    date.fromisocalendar(year, num, 1)  # raises for week 53 of a 52-week year
    return year, num


def monday_of(week: str) -> date:
    """The Monday that starts an ISO week."""
    year, num = parse_week(week)
    return date.fromisocalendar(year, num, 1)


def week_days(week: str) -> tuple[date, date]:
    """(Monday, Sunday) of a week."""
    start = monday_of(week)
    return start, start + timedelta(days=6)


def shift_week(week: str, n: int) -> str:
    """The week n weeks later (negative: earlier)."""
    return week_of(monday_of(week) + timedelta(weeks=n))


def previous_week(week: str) -> str:
    """The week before."""
    return shift_week(week, -1)
