"""Business-calendar arithmetic across weekends, holidays and 调休, from the 2025/2026 official schedules."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest

from tests.helpers.calendar import CAL, DEMO, SH, sh
from xiuhua.city.business_calendar import BusinessCalendar, parse_limit
from xiuhua_tools.cli import main


def test_deadlines_count_office_hours_weekends_and_holidays() -> None:
    cal = BusinessCalendar(DEMO)
    friday_4pm = datetime(2026, 11, 20, 16, 0, tzinfo=SH)
    assert cal.due(friday_4pm, "4h") == datetime(2026, 11, 23, 11, 0, tzinfo=SH)  # 1.5h Fri + 2.5h Mon
    assert cal.due(friday_4pm, "4nh") == friday_4pm + timedelta(hours=4)
    before_national_day = datetime(2026, 9, 30, 17, 0, tzinfo=SH)
    assert cal.due(before_national_day, "1h").date().isoformat() > "2026-10-07"
    assert cal.working_between(friday_4pm, cal.due(friday_4pm, "1d")) == 7.5


WORKDAYS = [
    (date(2025, 1, 26), True),  # Sunday, 调休 for the Spring Festival 2025
    (date(2025, 1, 28), False),  # 除夕 2025
    (date(2025, 2, 4), False),  # last day of the Spring Festival 2025
    (date(2025, 2, 8), True),  # Saturday, 调休
    (date(2025, 9, 28), True),  # Sunday, 调休 for National Day 2025
    (date(2025, 10, 8), False),  # National Day + Mid-Autumn 2025
    (date(2025, 10, 11), True),  # Saturday, 调休
    (date(2026, 1, 1), False),  # New Year 2026
    (date(2026, 1, 2), False),
    (date(2026, 1, 4), True),  # Sunday, 调休
    (date(2026, 2, 14), True),  # Saturday, 调休 before the Spring Festival 2026
    (date(2026, 2, 16), False),  # 除夕 2026
    (date(2026, 2, 23), False),  # last day of the Spring Festival 2026
    (date(2026, 2, 24), True),
    (date(2026, 2, 28), True),  # Saturday, 调休
    (date(2026, 5, 5), False),  # Labour Day 2026
    (date(2026, 5, 9), True),  # Saturday, 调休
    (date(2026, 9, 20), True),  # Sunday, 调休 for National Day 2026
    (date(2026, 10, 7), False),
    (date(2026, 10, 10), True),  # Saturday, 调休
    (date(2026, 11, 21), False),  # an ordinary Saturday
    (date(2026, 11, 23), True),  # an ordinary Monday
]


@pytest.mark.parametrize(("day", "working"), WORKDAYS)
def test_workdays_follow_the_national_schedule(day: date, working: bool) -> None:
    assert CAL.is_workday(day) is working


DUE = [
    # start, limit, due — office hours 08:30-12:00, 13:30-17:30 (7.5 h a day)
    (sh(2026, 11, 23, 9), "2h", sh(2026, 11, 23, 11)),  # inside the morning
    (sh(2026, 11, 23, 11), "2h", sh(2026, 11, 23, 14, 30)),  # across lunch
    (sh(2026, 11, 23, 7), "1h", sh(2026, 11, 23, 9, 30)),  # before office hours: starts 08:30
    (sh(2026, 11, 23, 20), "1h", sh(2026, 11, 24, 9, 30)),  # after hours: next morning
    (sh(2026, 11, 20, 16), "4h", sh(2026, 11, 23, 11)),  # Friday → Monday
    (sh(2026, 11, 21, 10), "1h", sh(2026, 11, 23, 9, 30)),  # Saturday: nothing counts
    (sh(2026, 11, 23, 8, 30), "1d", sh(2026, 11, 23, 17, 30)),  # one working day
    (sh(2026, 11, 20, 13, 30), "2d", sh(2026, 11, 24, 12)),  # two days over a weekend
    (sh(2026, 9, 30, 17), "1h", sh(2026, 10, 8, 9, 0)),  # National Day 2026: Oct 1-7 off
    (sh(2026, 10, 9, 17), "1h", sh(2026, 10, 10, 9, 0)),  # Saturday Oct 10 is a 调休 working day
    (sh(2026, 2, 13, 17), "1h", sh(2026, 2, 14, 9, 0)),  # Saturday Feb 14 2026 works (调休)
    (sh(2026, 2, 14, 17), "1h", sh(2026, 2, 24, 9, 0)),  # Spring Festival 2026: Feb 15-23 off
    (sh(2025, 1, 24, 17), "1h", sh(2025, 1, 26, 9, 0)),  # Sunday Jan 26 2025 works (调休)
    (sh(2025, 9, 30, 16), "1d", sh(2025, 10, 9, 16, 0)),  # National Day 2025: Oct 1-8 off
    (sh(2026, 2, 14, 17), "6nh", sh(2026, 2, 14, 23)),  # natural hours ignore the calendar
    (sh(2025, 12, 31, 16), "3h", sh(2026, 1, 4, 10, 0)),  # New Year 2026, then Sunday 调休
]


@pytest.mark.parametrize(("start", "limit", "due"), DUE)
def test_due_times(start: datetime, limit: str, due: datetime) -> None:
    assert CAL.due(start, limit) == due
    if not limit.endswith("nh"):
        n, unit = parse_limit(limit)
        assert CAL.working_between(start, due) == pytest.approx(n * (7.5 if unit == "d" else 1))


def test_the_city_file_overrides_the_national_calendar() -> None:
    cal = BusinessCalendar(
        DEMO.model_copy(update={"extra_holidays": [date(2026, 11, 23)], "extra_workdays": [date(2026, 11, 22)]})
    )
    assert not cal.is_workday(date(2026, 11, 23)) and cal.is_workday(date(2026, 11, 22))
    assert cal.due(sh(2026, 11, 20, 17), "1h") == sh(2026, 11, 22, 9, 0)  # Sunday works, Monday is off
    assert cal.due(sh(2026, 11, 22, 17), "1h") == sh(2026, 11, 24, 9, 0)


def test_warning_share_of_a_limit() -> None:
    start = sh(2026, 11, 20, 16)
    assert CAL.at_share(start, "4h", 0.8) == sh(2026, 11, 23, 10, 12)  # 3.2 working hours: 1.5 Fri + 1.7 Mon
    assert CAL.at_share(start, "10nh", 0.8) == start + timedelta(hours=8)


def test_calendar_due_command_json(capsys) -> None:
    assert main(["calendar", "due", "--start", "2026-09-30T17:00", "--limit", "1h", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "start": "2026-09-30T17:00:00+08:00",
        "limit": "1h",
        "due": "2026-10-08T09:00:00+08:00",
        "due_at": "2026-10-08T09:00:00+08:00",
        "estimated": False,
    }
    assert main(["calendar", "due", "--start", "2026-11-23T01:00:00Z", "--limit", "4nh", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["due"] == "2026-11-23T13:00:00+08:00"
    assert main(["calendar", "due", "--start", "2026-11-20T16:00+08:00", "--limit", "4h"]) == 0
    assert "due 2026-11-23T11:00:00+08:00" in capsys.readouterr().out
    assert main(["calendar", "due", "--start", "2026-11-20T16:00", "--limit", "4 weeks"]) == 1
