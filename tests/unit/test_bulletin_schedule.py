"""The bulletin's schedule: Monday 15:00 city time for the week before, a holiday Monday moves it to the next
working day (城管执法精细化管理: 每周一下午3:00定时印发，节假日顺延), on the city's business calendar."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from services.notify.bulletin.schedule import bulletin_at, due_weeks, next_bulletin, next_bulletin_at
from services.notify.bulletin.weeks import monday_of, parse_week, previous_week, shift_week, week_days, week_of
from xiuhua.city import City
from xiuhua.city.business_calendar import BusinessCalendar

SH = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


@pytest.fixture(scope="module")
def cal(city: City) -> BusinessCalendar:
    return BusinessCalendar(city.calendar)


@pytest.mark.parametrize(
    ("now", "expected", "week"),
    [
        # A normal Monday, before and at 15:00: today; just after: next Monday.
        ("2026-11-23T10:00", "2026-11-23T15:00", "2026-W47"),
        ("2026-11-23T15:00", "2026-11-23T15:00", "2026-W47"),
        ("2026-11-23T15:00:01", "2026-11-30T15:00", "2026-W48"),
        ("2026-11-18T09:00", "2026-11-23T15:00", "2026-W47"),  # mid-week
        ("2026-11-22T23:59", "2026-11-23T15:00", "2026-W47"),  # Sunday night, the week itself not over
        # National Day 2026: Monday 5 October is a holiday (1–7 October off); the next working day is Thursday 8th.
        ("2026-10-05T15:00", "2026-10-08T15:00", "2026-W40"),
        ("2026-10-02T12:00", "2026-10-08T15:00", "2026-W40"),
        ("2026-10-08T15:00:01", "2026-10-12T15:00", "2026-W41"),
        # Spring Festival 2026: 15–23 February off, so Mondays 16th and 23rd are holidays; both the bulletin of
        # W07 (9–15 Feb) and that of W08 (16–22 Feb) go out on Tuesday 24 February, W07 first.
        ("2026-02-16T15:00", "2026-02-24T15:00", "2026-W07"),
        ("2026-02-23T09:00", "2026-02-24T15:00", "2026-W07"),
        # The Monday after (2 March) is normal again; the 调休 Saturday 28 February is not a Monday.
        ("2026-02-24T15:00:01", "2026-03-02T15:00", "2026-W09"),
        # Year boundary: W53 of 2026 ends on Sunday 3 January 2027; 4 January 2027 is a normal Monday.
        ("2027-01-01T12:00", "2027-01-04T15:00", "2026-W53"),
    ],
)
def test_next_bulletin_at(cal: BusinessCalendar, now: str, expected: str, week: str) -> None:
    assert next_bulletin_at(at(now), cal) == at(expected)
    assert next_bulletin(at(now), cal) == (week, at(expected))


def test_spring_festival_both_weeks_are_due_on_the_same_afternoon(cal: BusinessCalendar) -> None:
    assert bulletin_at("2026-W07", cal) == bulletin_at("2026-W08", cal) == at("2026-02-24T15:00")
    assert due_weeks(at("2026-02-24T14:59"), cal) == []
    assert due_weeks(at("2026-02-24T15:00"), cal) == ["2026-W07", "2026-W08"]


def test_due_weeks_on_a_normal_monday_and_the_catch_up_window(cal: BusinessCalendar) -> None:
    assert due_weeks(at("2026-11-23T14:59"), cal) == ["2026-W46"]  # last Monday's, still inside its window
    assert due_weeks(at("2026-11-23T15:00"), cal) == ["2026-W47"]
    assert due_weeks(at("2026-11-27T09:00"), cal) == ["2026-W47"]  # instance down on Monday: caught up
    assert due_weeks(at("2026-10-06T10:00"), cal) == []  # holiday: W40 waits for the 8th, W39's window is over


def test_a_city_holiday_moves_the_bulletin_too(city: City) -> None:
    cfg = city.calendar.model_copy(update={"extra_holidays": [date(2026, 11, 23)]})
    assert next_bulletin_at(at("2026-11-23T10:00"), BusinessCalendar(cfg)) == at("2026-11-24T15:00")


def test_iso_weeks_in_city_time() -> None:
    assert week_of(datetime.fromisoformat("2026-11-22T16:30:00+00:00")) == "2026-W48"  # Monday 00:30 in Shanghai
    assert week_of(datetime.fromisoformat("2026-11-22T15:59:00+00:00")) == "2026-W47"
    assert week_days("2026-W47") == (date(2026, 11, 16), date(2026, 11, 22))
    assert previous_week("2027-W01") == "2026-W53"
    assert shift_week("2026-W53", 1) == "2027-W01"
    assert monday_of("2026-W01") == date(2025, 12, 29)
    for bad in ("2026-47", "2025-W53", "W47"):
        with pytest.raises(ValueError):
            parse_week(bad)
