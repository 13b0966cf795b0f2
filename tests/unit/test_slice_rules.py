"""The slice's pure rules: parsing with reasons, masking, drafting a case, periods (dispatch: test_dispatch_*)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from contracts.reports import INBOUND_BY_SOURCE, GridReport
from services.intake import privacy
from services.intake.cases import Draft, draft_case
from services.intake.parsing import parse_inbound
from services.scoring.periods import periods_of

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SH = ZoneInfo("Asia/Shanghai")


def _grid(**over) -> bytes:
    body = {
        "report_id": "R-1",
        "reported_at": "2026-11-23T09:58:00+08:00",
        "inspector_id": "G-1",
        "description": "垃圾箱满溢",
        "category_code": "0201",
        "location": {"lng": 120.16, "lat": 30.255},
    }
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


def test_periods_use_city_time() -> None:
    sunday_night_utc = datetime(2026, 11, 22, 17, 30, tzinfo=UTC)  # Monday 01:30 in Shanghai
    expected = {"week": "2026-W48", "month": "2026-11", "quarter": "2026-Q4", "year": "2026"}
    assert periods_of(sunday_night_utc) == expected


@pytest.mark.parametrize("source", sorted(INBOUND_BY_SOURCE))
def test_every_source_refuses_a_timestamp_without_offset_or_in_the_future(source: str) -> None:
    model = INBOUND_BY_SOURCE[source]
    stamp = next(k for k in model.example_fields if k.endswith("_at"))
    body = {**model.example_fields}
    # a day after the examples: within the city's horizon of past dates (30 days by default)
    assert isinstance(parse_inbound(source, json.dumps(body).encode(), datetime(2026, 11, 24, tzinfo=UTC)), model)
    future = parse_inbound(source, json.dumps({**body, stamp: "2030-01-02T00:00:00Z"}).encode(), NOW)
    assert [(r.code, r.field) for r in future] == [("in_future", stamp)]
    naive = parse_inbound(source, json.dumps({**body, stamp: "2026-11-23T09:58:00"}).encode(), NOW)
    assert [(r.code, r.field) for r in naive] == [("naive_time", stamp)]
