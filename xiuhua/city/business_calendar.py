"""Deadlines on a Chinese business calendar (工作日历): office hours, holidays and 调休 working weekends. Pure."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from xiuhua.city.calendar import CalendarFile

_LIMIT = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>nh|h|d)$")


def parse_limit(limit: str) -> tuple[float, str]:
    """'4h' → (4, 'h'); '2d' → (2, 'd'); '4nh' → (4, 'nh')."""
    m = _LIMIT.match(limit.strip())
    if not m:
        raise ValueError(f"time limit {limit!r} is not like 4h, 2d or 4nh")
    return float(m["n"]), m["unit"]


class BusinessCalendar:
    """Working days and hours of one city."""

    def __init__(self, cfg: CalendarFile) -> None:
        self.cfg = cfg
        self.tz = ZoneInfo(cfg.timezone)
        self._holidays = set(cfg.extra_holidays)
        self._workdays = set(cfg.extra_workdays)
        # Every deadline walks a few days and asks of each; chinese_calendar validates and looks up the date
        # each time (a fifth of dispatch's CPU under load). A day's answer never changes for a loaded city.
        self._known: dict[date, bool] = {}

    def is_workday(self, day: date) -> bool:
        """The city's own list first, then the national calendar (holidays and 调休), else Mon–Fri."""
        known = self._known.get(day)
        if known is None:
            known = self._known[day] = self._is_workday(day)
        return known

    def _is_workday(self, day: date) -> bool:
        if day in self._holidays:
            return False
        if day in self._workdays:
            return True
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            # Years the library does not cover yet: weekdays work; the city file adds the rest.
            return day.weekday() < 5

    def _periods(self, day: date) -> list[tuple[datetime, datetime]]:
        return [
            (datetime.combine(day, s, self.tz), datetime.combine(day, e, self.tz)) for s, e in self.cfg.office_hours
        ]

    def add_working(self, start: datetime, hours: float) -> datetime:
        """The moment `hours` of working time after `start`."""
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        remaining = timedelta(hours=hours)
        local = start.astimezone(self.tz)
        day = local.date()
        for _ in range(3660):  # ten years of days: a limit no city sets
            if self.is_workday(day):
                for p_start, p_end in self._periods(day):
                    begin = max(p_start, local)
                    if begin >= p_end:
                        continue
                    available = p_end - begin
                    if remaining <= available:
                        return (begin + remaining).astimezone(start.tzinfo)
                    remaining -= available
            day += timedelta(days=1)
            local = datetime.combine(day, datetime.min.time(), self.tz)
        raise ValueError("deadline beyond ten years")

    def working_between(self, start: datetime, end: datetime) -> float:
        """Working hours between two moments (0 if end is before start)."""
        if end <= start:
            return 0.0
        total = timedelta()
        day = start.astimezone(self.tz).date()
        last = end.astimezone(self.tz).date()
        while day <= last:
            if self.is_workday(day):
                for p_start, p_end in self._periods(day):
                    lo, hi = max(p_start, start), min(p_end, end)
                    if hi > lo:
                        total += hi - lo
            day += timedelta(days=1)
        return total.total_seconds() / 3600

    def due(self, start: datetime, limit: str) -> datetime:
        """The deadline for a limit like '4h' (working hours), '2d' (working days) or '4nh' (natural hours)."""
        n, unit = parse_limit(limit)
        if unit == "nh":
            return start + timedelta(hours=n)
        hours = n * self.cfg.day_hours() if unit == "d" else n
        return self.add_working(start, hours)

    def at_share(self, start: datetime, limit: str, share: float) -> datetime:
        """The moment a share of the limit has passed (e.g. 0.8 for the warning)."""
        n, unit = parse_limit(limit)
        return self.due(start, f"{n * share:g}{unit}")


def calendar_for(cfg: CalendarFile) -> BusinessCalendar:
    """A calendar for the city's settings."""
    return BusinessCalendar(cfg)


Workday = Callable[[date], bool]
