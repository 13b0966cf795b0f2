"""Holidays as city data: the official schedule for the years listed, the country's rule-based holidays for the
others (marked estimated), loud from 1 December when next year is missing, any country."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from tests.helpers.calendar import CAL, DEMO, sh
from xiuhua.city import CityDataError, load_city
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.city.calendar import CalendarFile
from xiuhua.settings import DEMO_CITY
from xiuhua_tools.cli import main


def test_the_demo_city_lists_2025_and_2026_with_their_sources() -> None:
    assert CAL.known_years() == [2025, 2026]
    assert all("国务院办公厅关于" in DEMO.years[y].source for y in (2025, 2026))
    spring = next(h for h in DEMO.years[2026].holidays if h.name.startswith("春节"))
    assert (spring.first, spring.last) == (date(2026, 2, 15), date(2026, 2, 23))
    assert DEMO.years[2026].workdays == [
        date(2026, 1, 4),
        date(2026, 2, 14),
        date(2026, 2, 28),
        date(2026, 5, 9),
        date(2026, 9, 20),
        date(2026, 10, 10),
    ]


def test_a_listed_year_is_exact_and_an_unlisted_one_is_estimated_from_the_country() -> None:
    # 2027: the holidays library's rule-based National Day (1-3 October, observed to the 5th), no 调休.
    assert not CAL.is_workday(date(2027, 10, 1)) and not CAL.is_workday(date(2027, 10, 5))
    assert CAL.is_workday(date(2027, 10, 6)) and CAL.is_estimated(date(2027, 10, 6))
    # A listed year ignores the library: 2026-10-08 (Thursday) works per the notice.
    assert CAL.is_workday(date(2026, 10, 8)) and not CAL.is_estimated(date(2026, 10, 8))


def test_national_day_2027_deadline_is_estimated_and_2026_is_not() -> None:
    d27 = CAL.due(sh(2027, 9, 30, 16), "2d")
    assert d27 == sh(2027, 10, 7, 16)  # 1.5 h on 30 Sep, 1-5 Oct off, 7.5 h on the 6th, 6 h on the 7th
    assert CAL.estimated(sh(2027, 9, 30, 16), d27, "2d") is True
    d26 = CAL.due(sh(2026, 9, 30, 16), "2d")
    assert d26 == sh(2026, 10, 9, 16) and CAL.estimated(sh(2026, 9, 30, 16), d26, "2d") is False


def test_a_deadline_is_estimated_exactly_when_it_reaches_an_unlisted_year() -> None:
    inside = CAL.due(sh(2026, 12, 31, 16), "1h")
    assert inside == sh(2026, 12, 31, 17) and not CAL.estimated(sh(2026, 12, 31, 16), inside, "1h")
    across = CAL.due(sh(2026, 12, 31, 17), "1h")  # 30 min left on the 31st; 1 January 2027 off; then a weekend
    assert across == sh(2027, 1, 4, 9) and CAL.estimated(sh(2026, 12, 31, 17), across, "1h")
    # Natural hours count no calendar: never estimated.
    assert not CAL.estimated(sh(2026, 12, 31, 23), CAL.due(sh(2026, 12, 31, 23), "4nh"), "4nh")


def test_next_years_schedule_is_missed_from_the_first_of_december_city_time() -> None:
    assert CAL.missing_next_year(sh(2026, 11, 30, 23, 59)) is None
    warning = CAL.missing_next_year(sh(2026, 12, 1, 0, 0))
    assert warning is not None and "2027" in warning
    listed = DEMO.model_copy(update={"years": {**DEMO.years, 2027: DEMO.years[2026]}})
    assert BusinessCalendar(listed).missing_next_year(sh(2026, 12, 1)) is None


def test_a_foreign_city_names_its_country_and_region() -> None:
    us = BusinessCalendar(CalendarFile(timezone="America/New_York", country="US"))
    assert not us.is_workday(date(2026, 7, 3))  # Independence Day observed (Friday)
    assert us.is_workday(date(2026, 10, 1))  # China's National Day is an ordinary Thursday there
    ca = BusinessCalendar(CalendarFile(timezone="America/Toronto", country="CA", subdivision="QC"))
    assert not ca.is_workday(date(2026, 6, 24))  # Fête nationale du Québec, Quebec only
    assert BusinessCalendar(CalendarFile(timezone="America/Toronto", country="CA", subdivision="ON")).is_workday(
        date(2026, 6, 24)
    )


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("country: CN", "country: XX"), "calendar.yaml:10: country: Value error, 'XX' is not a country"),
        (("subdivision: null", "subdivision: ZZ"), "subdivision 'ZZ' is not one of CN's"),
        (("from: 2026-02-15, to: 2026-02-23", "from: 2026-02-23, to: 2026-02-15"), "'to' (2026-02-15) is before"),
        (("workdays: [2026-01-04,", "workdays: [2026-02-16,"), "2026-02-16 is both a holiday and an adjusted"),
    ],
)
def test_a_wrong_calendar_is_refused_with_file_line_and_field(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    city = tmp_path / "city"
    shutil.copytree(DEMO_CITY, city)
    path = city / "calendar.yaml"
    text = path.read_text(encoding="utf-8")
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(CityDataError) as exc:
        load_city(city)
    assert expected in str(exc.value)


def test_calendar_commands(capsys) -> None:
    assert main(["calendar", "due", "--start", "2027-09-30T16:00:00+08:00", "--limit", "2d", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["due_at"], out["estimated"]) == ("2027-10-07T16:00:00+08:00", True)
    assert main(["calendar", "due", "--start", "2026-09-30T16:00:00+08:00", "--limit", "2d", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["due_at"], out["estimated"]) == ("2026-10-09T16:00:00+08:00", False)
    assert main(["calendar", "due", "--start", "2027-09-30T16:00:00+08:00", "--limit", "2d"]) == 0
    assert "estimated: no official schedule for 2027" in capsys.readouterr().out
    assert main(["calendar", "check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [y["year"] for y in out["years"]] == [2025, 2026] and out["country"] == "CN"
    assert out["years"][1]["workdays"] == 6
