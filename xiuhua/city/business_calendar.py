"""Deadlines on a city's business calendar (工作日历): office hours, holidays and 调休 working weekends. Pure.

A year the city's calendar lists follows the official schedule exactly: its holidays are off, its adjusted
working days are worked, other days Monday–Friday. A year it does not list falls back to the rule-based public
holidays of the city's country (the `holidays` library: China's statutory days, or any other country's) on
Monday–Friday, without 调休 — so a deadline that counts a day of such a year is an estimate and says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays

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
        # The official schedules: a day off is False, an adjusted working day True.
        self._official: dict[date, bool] = {}
        for schedule in cfg.years.values():
            self._official.update({d: False for h in schedule.holidays for d in h.days()})
            self._official.update(dict.fromkeys(schedule.workdays, True))
        self._fallback: dict[int, holidays.HolidayBase] = {}
        # Every deadline walks a few days and asks of each; a day's answer never changes for a loaded city.
        self._known: dict[date, bool] = {}

    def known_years(self) -> list[int]:
        """The years whose official schedule the city's calendar lists."""
        return sorted(self.cfg.years)

    def is_estimated(self, day: date) -> bool:
        """Whether the day's answer comes from the rule-based fallback (its year is not listed)."""
        return day.year not in self.cfg.years

    def is_workday(self, day: date) -> bool:
        """The city's own days first, then the official schedule of the year, else the country's rule-based
        holidays on Monday–Friday."""
        known = self._known.get(day)
        if known is None:
            known = self._known[day] = self._is_workday(day)
        return known

    def _is_workday(self, day: date) -> bool:
        if day in self._holidays:
            return False
        if day in self._workdays:
            return True
        official = self._official.get(day)
        if official is not None:
            return official
        if day.weekday() >= 5:
            return False
        if not self.is_estimated(day):
            return True
        return day not in self._country_holidays(day.year)

    def _country_holidays(self, year: int) -> holidays.HolidayBase:
        found = self._fallback.get(year)
        if found is None:
            found = self._fallback[year] = holidays.country_holidays(
                self.cfg.country, subdiv=self.cfg.subdivision, years=year
            )
        return found

    def estimated(self, start: datetime, end: datetime, limit: str) -> bool:
        """Whether a deadline from `start` to `end` counted a day of a year the calendar does not list
        (natural-hour limits count no calendar: never)."""
        if parse_limit(limit)[1] == "nh":
            return False
        first, last = start.astimezone(self.tz).year, end.astimezone(self.tz).year
        return any(year not in self.cfg.years for year in range(first, last + 1))

    def missing_next_year(self, now: datetime) -> str | None:
        """From 1 December, a warning when next year's official schedule is not listed yet; else None."""
        local = now.astimezone(self.tz)
        if local.month < 12 or local.year + 1 in self.cfg.years:
            return None
        return (
            f"calendar.yaml has no official holiday schedule for {local.year + 1}: deadlines from 1 January "
            f"will be estimated from {self.cfg.country}'s rule-based holidays (no 调休) until it is entered"
        )

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
