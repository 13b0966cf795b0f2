"""Open311's pure parts: form validation, attribute datatypes, XML rendering, the status fold, city-data errors."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import cases as ev
from contracts import registry
from contracts.values import Place, ReportSource, UnitRef, UnitRole
from services.intake.open311 import render
from services.intake.open311.definitions import load_open311
from services.intake.open311.projection import fold, ignored, token_of
from services.intake.open311.validation import Invalid, parse_submission, parse_w3c, split_form
from xiuhua.city import CityDataError, load_city
from xiuhua.settings import DEMO_CITY

TZ = ZoneInfo("Asia/Shanghai")
KEY = "demo-open311-key-0001"


@pytest.fixture(scope="module")
def config(city):
    return load_open311(city)


def form(**extra: str) -> list[tuple[str, str]]:
    base = {"api_key": KEY, "service_code": "0201", "lat": "30.255", "long": "120.16", "attribute[BIN_TYPE]": "kitchen"}
    base.update(extra)
    return list(base.items())


def error(pairs, config) -> tuple[int, str]:
    with pytest.raises(Invalid) as info:
        parse_submission(pairs, config, TZ)
    return info.value.status, info.value.description


def test_a_valid_form_with_every_kind_of_input(config):
    pairs = [
        *form(description="  桶满了\r\n很臭  ", lng="1", phone="", email="null"),
        ("attribute[SIGNS][]", "smell"),
        ("attribute[SIGNS][]", "leak"),
        ("attribute[SIGNS][]", "smell"),
        ("attribute[BIN_COUNT]", "3"),
    ]
    sub = parse_submission(pairs, config, TZ)
    assert sub.service.category.code == "0201" and (sub.lat, sub.lng) == (30.255, 120.16)  # `long` beats `lng`
    assert sub.description == "桶满了\n很臭"
    assert sub.attributes == {"BIN_TYPE": "kitchen", "SIGNS": ["smell", "leak"], "BIN_COUNT": "3"}
    assert sub.contact.phone is None and sub.contact.email is None


def test_lng_alias_string_numbers_and_null_island(config):
    assert parse_submission(form(long="", lng=" 120.16 "), config, TZ).lng == 120.16
    sub = parse_submission(form(lat="0", long="0", address_string="金桥街道"), config, TZ)
    assert sub.lat is None and sub.address == "金桥街道"
    assert error(form(lat="0", long="0"), config)[0] == 400


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"api_key": "x" * 20}, 403, "api_key"),
        ({"service_code": " "}, 400, "service_code"),
        ({"service_code": "nope"}, 404, "service_code"),
        ({"lat": "1e999"}, 400, "lat"),
        ({"lat": "-90.5"}, 400, "lat"),
        ({"long": "181"}, 400, "long"),
        ({"lat": ""}, 400, "lat"),
        ({"attribute[BIN_TYPE]": "null"}, 400, "attribute[BIN_TYPE]"),
        ({"coord_system": "mars"}, 400, "coord_system"),
        ({"phone": "call me maybe"}, 400, "phone"),
        ({"first_name": "名" * 101}, 400, "first_name"),
        ({"address_string": "路" * 501}, 400, "address_string"),
        ({"jurisdiction_id": "elsewhere"}, 404, "jurisdiction_id"),
    ],
)
def test_errors_name_the_field(config, change, status, field):
    got_status, description = error(form(**change), config)
    assert got_status == status and field in description


def test_attribute_datatypes(config):
    manhole = form(service_code="0301", **{"attribute[COVER_STATE]": "missing"})
    sub = parse_submission([*manhole, ("attribute[SEEN_AT]", "2026-11-23 08:30")], config, TZ)
    assert sub.attributes["SEEN_AT"] == "2026-11-23T08:30:00+08:00"  # naive = city time
    sub = parse_submission([*manhole, ("attribute[SAFETY]", "ignored")], config, TZ)
    assert "SAFETY" not in sub.attributes  # informational, not an answer
    assert "SEEN_AT" in error([*manhole, ("attribute[SEEN_AT]", "yesterday")], config)[1]
    assert "COVER_STATE" in error(form(service_code="0301"), config)[1]
    assert "one value" in error([*manhole, ("attribute[COVER_STATE]", "broken")], config)[1]
    lamp = form(service_code="0302")
    sub = parse_submission([*lamp, ("attribute[POLE_NO]", "CD\r\n0042"), ("attribute[DETAILS]", "a\r\nb")], config, TZ)
    assert sub.attributes == {"POLE_NO": "CD 0042", "DETAILS": "a\nb"}
    assert "BIN_COUNT" in error([*form(), ("attribute[BIN_COUNT]", "inf")], config)[1]
    assert "DETAILS" in error([*lamp, ("attribute[DETAILS]", "字" * 4001)], config)[1]


def test_w3c_times_with_offsets():
    assert parse_w3c("2026-11-23T10:00:00Z", TZ, "x") == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert parse_w3c("2026-11-23T18:00:00+0800", TZ, "x") == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert parse_w3c("2026-11-23T05:00:00-05:00", TZ, "x") == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert parse_w3c("2026-11-24", TZ, "x") == datetime(2026, 11, 23, 16, tzinfo=UTC)
    with pytest.raises(Invalid):
        parse_w3c("23/11/2026", TZ, "start_date")


def test_too_many_fields():
    with pytest.raises(Invalid):
        split_form([("f", "v")] * 201)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "api_key",
                    "service_code",
                    "lat",
                    "long",
                    "lng",
                    "address_string",
                    "attribute[BIN_TYPE]",
                    "attribute[SIGNS][]",
                    "email",
                    "phone",
                    "description",
                    "media_url",
                    "attribute[",
                    "x",
                ]
            ),
            st.text(max_size=60),
        ),
        max_size=15,
    )
)
def test_random_forms_never_crash(config, pairs):
    pairs = [("api_key", KEY), ("service_code", "0201"), *pairs]
    try:
        sub = parse_submission(pairs, config, TZ)
    except Invalid as exc:
        assert exc.status in (400, 403, 404) and exc.description
    else:
        assert sub.service.service_code in config.services


def test_xml_is_well_formed_and_escaped():
    rows = [
        {
            "service_request_id": "C-1",
            "description": '<b>&"垃圾"</b>',
            "lat": None,
            "flag": True,
            "attributes": [{"code": "A", "values": [{"key": "k", "name": "名"}]}],
        }
    ]
    root = ET.fromstring(render.to_xml("service_requests", rows))
    req = root.find("request")
    assert req.findtext("description") == '<b>&"垃圾"</b>' and req.findtext("lat") == ""
    assert req.findtext("flag") == "true"
    assert req.find("attributes/attribute/values/value/name").text == "名"
    err = ET.fromstring(render.errors("xml", 400, "lat: not a number").body)
    assert err.tag == "errors" and err.findtext("error/code") == "400"


def _opened(source=ReportSource.open311) -> ev.CaseOpened:
    return ev.CaseOpened(
        case_id="C-1",
        street_code="CD",
        correlation_id="open311:T-1",
        source=source,
        source_ref="T-1",
        category_code="0201",
        category_name="垃圾箱满溢",
        description="桶满了",
        reported_at=datetime(2026, 11, 23, 1, tzinfo=UTC),
        place=Place(lat=30.2, lng=120.1),
        photo_urls=["https://img.example/1.jpg"],
    )


def test_fold_follows_the_lifecycle(city):
    unit = UnitRef(unit_id="CD-SAN", name="城东环卫所", role=UnitRole.sanitation)
    due = datetime(2026, 11, 23, 6, tzinfo=UTC)
    common = {"case_id": "C-1", "street_code": "CD", "unit_id": "CD-SAN"}
    doc = fold(None, _opened(), city)
    assert (doc["status"], doc["service_code"], doc["media_url"]) == ("open", "0201", "https://img.example/1.jpg")
    dispatched = ev.CaseDispatched(
        case_id="C-1", category_code="0201", lead_unit=unit, rule_id="r", due_at=due, time_limit="4h"
    )
    doc = fold(doc, dispatched, city)
    assert doc["agency_responsible"] == "城东环卫所" and doc["expected_datetime"] == due
    assert fold(doc, dispatched, city) is None  # folded once: the request keeps the ids of its events
    assert doc["applied"][-1] == dispatched.event_id and len(doc["applied"]) == 2
    later = due + timedelta(hours=16)
    doc = fold(doc, ev.CaseExtensionApproved(**common, hours=16, due_at=later), city)
    assert doc["expected_datetime"] == later
    doc = fold(doc, ev.CaseResolved(**common, note="已清运", on_time=True), city)
    assert doc["status"] == "open" and "已清运" in doc["status_notes"]
    assert "closed_s" not in doc  # open: out of the purge's range
    closing = ev.CaseClosed(**common, on_time=True, closed_by="verification")
    doc = fold(doc, closing, city)
    assert doc["status"] == "closed"
    assert doc["closed_s"] == doc["updated_datetime"].timestamp() == closing.occurred_at.timestamp()
    doc = fold(doc, ev.CaseReopened(**common, reason="问题复发"), city)
    assert doc["status"] == "open" and "问题复发" in doc["status_notes"]
    assert "closed_s" not in doc
    doc = fold(
        doc, ev.CaseMerged(case_id="C-1", source=ReportSource.open311, source_ref="T-2", reporters_count=3), city
    )
    assert "3" in doc["service_notice"]
    assert fold(doc, ev.CaseRated(**common, satisfaction="satisfied"), city) is None
    assert doc["updated_datetime"] >= doc["requested_datetime"]


def test_the_view_ignores_only_events_that_change_nothing_public(city):
    # Ignored events are acknowledged unapplied: each must leave the request and the tokens exactly as they were.
    kinds = [k for k in registry.patterns().values() if issubclass(k, ev.CaseEvent)]
    seen = {k for k in kinds if ignored(k)}
    assert seen == {ev.CaseCommandRejected, ev.CaseDeadlineWarning, ev.CaseRated}
    doc = fold(None, _opened(), city)
    for kind in kinds:
        event = kind.model_validate(kind.example())
        if ignored(kind):
            assert fold(doc, event, city) is None and token_of(event) is None
        else:
            assert fold(doc, event, city) is not None  # everything else moves the request (notes, time, version)


def test_a_cancelled_case_reads_cancelled_whichever_of_its_two_events_comes_last(city):
    common = {"case_id": "C-1", "street_code": "CD", "unit_id": "CD-SAN"}
    closed = ev.CaseClosed(**common, on_time=False, closed_by="cancel", outcome="cancelled", reason="重复上报")
    cancelled = ev.CaseCancelled(**common, reason="重复上报")
    for first, second in ((closed, cancelled), (cancelled, closed)):
        doc = fold(fold(fold(None, _opened(), city), first, city), second, city)
        assert doc["status"] == "closed" and doc["status_notes"] == "已作废 cancelled: 重复上报"


def test_tokens_and_private_text(city):
    assert token_of(_opened()) == "T-1"
    assert token_of(_opened(ReportSource.grid)) is None
    merged = ev.CaseMerged(case_id="C-9", source=ReportSource.open311, source_ref="T-7")
    assert token_of(merged) == "T-7"  # the request points at the case it was merged into
    assert fold(None, _opened(ReportSource.hotline), city)["description"] == ""
    moved = fold(
        None,
        ev.CaseTransferred(
            case_id="C-5",
            source=ReportSource.open311,
            source_ref="T-5",
            department="人社局",
            matter="欠薪",
            description="拖欠工资",
        ),
        city,
    )
    assert moved["status"] == "closed" and "人社局" in moved["status_notes"]


def test_city_data_errors_name_file_and_line(tmp_path):
    folder = tmp_path / "city"
    shutil.copytree(DEMO_CITY, folder)
    bad = folder / "open311.yaml"
    bad.write_text(
        'services:\n  "0201":\n    attributes:\n      - code: A\n        datatype: singlevaluelist\n'
        "        order: 1\n        description: q\n",
        encoding="utf-8",
    )
    with pytest.raises(CityDataError, match=r"open311\.yaml:4: services\.0201\.attributes\.0: .*needs values"):
        load_open311(load_city(folder))
    bad.write_text(
        'services:\n  "0201": {attributes: [{code: A, datatype: string, order: 1, description: q}]}\n'
        '  "XX99": {attributes: [{code: A, datatype: color, order: 1, description: q}]}\n'
    )
    with pytest.raises(CityDataError, match=r"open311\.yaml:3: services\.XX99\.attributes\.0\.datatype"):
        load_open311(load_city(folder))
    bad.write_text(
        'services:\n  "0201": {attributes: [{code: A, datatype: string, order: 1, description: q}]}\n'
        '  "XX99": {attributes: [{code: A, datatype: string, order: 1, description: q}]}\n'
    )
    with pytest.raises(CityDataError, match=r"open311\.yaml:3: services\.XX99: no catalogue item"):
        load_open311(load_city(folder))


def test_contact_details_typed_into_text_are_masked(config):
    text = "联系我 13812345678 或 +86 139-0000-1111，座机 0571-88886666，alice.w@example.cn，单号 2026112312345678"
    sub = parse_submission([*form(description=text), ("attribute[BIN_COUNT]", "2")], config, TZ)
    assert sub.description == (
        "联系我 138****5678 或 139****1111，座机 057*****6666，a***@example.cn，单号 2026112312345678"
    )
    lamp = parse_submission([*form(service_code="0302"), ("attribute[DETAILS]", "call 13812345678")], config, TZ)
    assert lamp.attributes["DETAILS"] == "call 138****5678"


def test_times_stored_as_strings_still_render_and_fold(city):
    assert render.w3c("2026-11-23T02:00:00+00:00", TZ) == "2026-11-23T10:00:00+08:00"
    assert render.w3c("2026-11-23T02:00:00", TZ) == "2026-11-23T10:00:00+08:00"  # naive = UTC as stored
    doc = {**fold(None, _opened(), city), "updated_datetime": "2026-11-23T00:00:00+00:00"}
    later = fold(doc, ev.CaseClosed(case_id="C-1", unit_id="U", on_time=True, closed_by="verification"), city)
    assert isinstance(later["updated_datetime"], datetime) and later["status"] == "closed"


@pytest.mark.parametrize(
    ("passed", "notes"), [(True, "核查通过 verified"), (False, "核查未通过，返工 verification failed, rework")]
)
def test_a_verification_reads_passed_or_sent_back_for_rework(city, passed, notes):
    verified = ev.CaseVerified(case_id="C-1", street_code="CD", unit_id="CD-SAN", passed=passed)
    doc = fold(fold(None, _opened(), city), verified, city)
    assert doc["status_notes"] == notes
