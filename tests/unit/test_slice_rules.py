"""The slice's pure rules: parsing with reasons, masking, drafting a case, routing, deadlines, periods."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from contracts.reports import GridReport
from services.dispatch.business_calendar import BusinessCalendar
from services.dispatch.routing import CaseFacts, route
from services.intake import privacy
from services.intake.cases import Draft, draft_case
from services.intake.parsing import parse_inbound
from services.scoring.periods import periods_of
from xiuhua.city.calendar import CalendarFile

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SH = ZoneInfo("Asia/Shanghai")


def _grid(**over) -> bytes:
    body = {"report_id": "R-1", "reported_at": "2026-11-23T09:58:00+08:00", "inspector_id": "G-1",
            "description": "垃圾箱满溢", "category_code": "0201", "location": {"lng": 120.16, "lat": 30.255}}
    body.update(over)
    return json.dumps(body).encode()


def test_parse_accepts_a_valid_report_and_names_each_bad_field() -> None:
    assert isinstance(parse_inbound("grid", _grid(), NOW), GridReport)
    reasons = parse_inbound("grid", _grid(location={"lng": 500, "lat": 30}, report_id=7), NOW)
    assert {(r.code, r.field) for r in reasons} == {("out_of_range", "location.lng"), ("wrong_type", "report_id")}
    assert parse_inbound("grid", b"{", NOW)[0].code == "invalid_json"
    assert parse_inbound("grid", b"[1]", NOW)[0].code == "wrong_type"
    assert parse_inbound("grid", _grid(reported_at="2030-01-01T00:00:00Z"), NOW)[0].code == "in_future"
    assert parse_inbound("grid", _grid(reported_at="2026-11-23T09:58:00"), NOW)[0].code == "naive_time"
    assert parse_inbound("grid", b" " * 300_000, NOW)[0].code == "too_large"
    assert parse_inbound("telepathy", b"{}", NOW)[0].code == "unknown_source"


def test_masking_keeps_no_full_phone_or_name() -> None:
    assert privacy.mask_phone("13812345678") == "138****5678"
    assert privacy.mask_name("欧阳娜娜") == "欧***"
    assert privacy.pseudonym("k", "13812345678") == privacy.pseudonym("k", " 13812345678 ")
    assert privacy.pseudonym("k", "13812345678") != privacy.pseudonym("other", "13812345678")


def test_draft_places_and_classifies(city) -> None:
    report = parse_inbound("grid", _grid(), NOW)
    draft = draft_case(report, city)
    assert isinstance(draft, Draft)
    assert (draft.category_code, draft.place.grid_code, draft.urgency) == ("0201", "CD01-01", "normal")
    outside = draft_case(parse_inbound("grid", _grid(location={"lng": 121.5, "lat": 31.2}), NOW), city)
    assert outside[0].code == "out_of_city"
    free_text = parse_inbound("grid", _grid(category_code=None, description="小区消防通道被杂物堵塞"), NOW)
    assert draft_case(free_text, city).category_code == "0103"


def test_route_by_default_rule_and_by_named_rule(city) -> None:
    place = city.areas.place_of_area("JQ02-01")
    d = route(CaseFacts("0201", place, "grid", "normal", NOW), city)
    assert (d.rule_id, d.lead.unit_id) == ("default-by-category", "JQ-SAN")
    assert [u.unit_id for u in d.cooperating] == ["JQ02"]
    night = datetime(2026, 11, 23, 23, 0, tzinfo=SH)
    assert route(CaseFacts("0202", place, "grid", "normal", night), city).lead.role == "traffic_police"
    assert route(CaseFacts("0202", place, "grid", "normal", NOW), city).lead.role == "enforcement"
    returned = route(CaseFacts("0201", place, "grid", "normal", NOW), city, exclude={"JQ-SAN"})
    assert returned.rule_id == "manual-triage" and returned.lead.role == "command_centre"


def test_deadlines_count_office_hours_weekends_and_holidays() -> None:
    cal = BusinessCalendar(CalendarFile())
    friday_4pm = datetime(2026, 11, 20, 16, 0, tzinfo=SH)
    assert cal.due(friday_4pm, "4h") == datetime(2026, 11, 23, 11, 0, tzinfo=SH)  # 1.5h Fri + 2.5h Mon
    assert cal.due(friday_4pm, "4nh") == friday_4pm + timedelta(hours=4)
    before_national_day = datetime(2026, 9, 30, 17, 0, tzinfo=SH)
    assert cal.due(before_national_day, "1h").date().isoformat() > "2026-10-07"
    assert cal.working_between(friday_4pm, cal.due(friday_4pm, "1d")) == 7.5


def test_periods_use_city_time() -> None:
    sunday_night_utc = datetime(2026, 11, 22, 17, 30, tzinfo=UTC)  # Monday 01:30 in Shanghai
    expected = {"week": "2026-W48", "month": "2026-11", "quarter": "2026-Q4", "year": "2026"}
    assert periods_of(sunday_night_utc) == expected

