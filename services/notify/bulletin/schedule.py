"""When the bulletin goes out: Monday 15:00 city time for the week before; a holiday Monday moves it to the
next working day (城管执法周报: 每周一下午3:00定时印发, 节假日顺延). Pure: the calendar and the clock are passed in."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from services.notify.bulletin.weeks import CITY_TZ, monday_of, shift_week, week_of

PUBLISH_AT = time(15, 0)
CATCH_UP = timedelta(days=7)  # a bulletin missed by longer (service down) waits for the command


class WorkdayCalendar(Protocol):
    """Anything that knows the city's working days (xiuhua.city.business_calendar.BusinessCalendar)."""

    def is_workday(self, day: date) -> bool: ...


def bulletin_at(week: str, calendar: WorkdayCalendar, tz: ZoneInfo = CITY_TZ) -> datetime:
    """The moment the bulletin of `week` is due: the first working day from the next Monday, at 15:00."""
    day = monday_of(week) + timedelta(days=7)
    for _ in range(60):  # no holiday lasts two months; the bound keeps a broken calendar from looping
        if calendar.is_workday(day):
            break
        day += timedelta(days=1)
    else:
        raise ValueError(f"no working day within 60 days after {monday_of(week)}")
    return datetime.combine(day, PUBLISH_AT, tz)


def next_bulletin(now: datetime, calendar: WorkdayCalendar, tz: ZoneInfo = CITY_TZ) -> tuple[str, datetime]:
    """The next bulletin due at or after `now`: (week it covers, moment in city time)."""
    current = week_of(now, tz)
    candidates = [(w, bulletin_at(w, calendar, tz)) for w in (shift_week(current, -k) for k in range(4, -1, -1))]
    return min(((w, at) for w, at in candidates if at >= now), key=lambda c: (c[1], c[0]))


def next_bulletin_at(now: datetime, calendar: WorkdayCalendar, tz: ZoneInfo = CITY_TZ) -> datetime:
    """The next moment a bulletin is due at or after `now` (city time)."""
    return next_bulletin(now, calendar, tz)[1]


def due_weeks(now: datetime, calendar: WorkdayCalendar, tz: ZoneInfo = CITY_TZ) -> list[str]:
    """Weeks whose bulletin moment has passed within the catch-up window, oldest first.

    Usually one week; two after Spring Festival, when two Mondays in a row are holidays and both bulletins
    fall on the same working day.
    """
    current = week_of(now, tz)
    weeks = [shift_week(current, -k) for k in range(4, 0, -1)]
    return [w for w in weeks if (at := bulletin_at(w, calendar, tz)) <= now < at + CATCH_UP]
