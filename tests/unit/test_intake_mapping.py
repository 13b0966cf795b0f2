"""Each source's payload mapped to a case draft, a transfer or reasons; the catalogue's shape; masking."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from contracts.reports import MerchantCheck, Open311Request
from contracts.values import Reporter
from services.intake.cases import Draft, TransferDraft, draft_case, failed_items, merchant_drafts
from services.intake.parsing import parse_inbound
from services.intake.reports import reporter_of

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
KEEP = {
    "0101": "占道经营",
    "0102": "露天烧烤",
    "0103": "堆放物占用消防通道",
    "0201": "垃圾箱满溢",
    "0202": "渣土车辆未封闭苫盖、沿途洒落",
    "0301": "井盖破损缺失",
    "0302": "路灯不亮",
    "0401": "门前三包责任未落实",
}


def _p(source: str, body: dict) -> object:
    return parse_inbound(source, json.dumps(body, ensure_ascii=False).encode(), NOW)


def test_catalogue_has_sixty_items_in_the_group_scheme_and_keeps_the_original_codes(city) -> None:
    items = city.catalogue.items()
    assert len(items) >= 60
    assert {g.code for g in city.catalogue.groups} >= {f"{i:02d}" for i in range(1, 14)}
    for code, name in KEEP.items():
        assert city.category(code).name_zh == name
    assert {i.kind for i in items} == {"component", "event"}
    assert all(i.service_code and i.name_en and i.name_zh for i in items)
    roles = {
        c: city.category(c).lead_role
        for c in (
            "0801",
            "0110",
            "0103",
            "0301",
            "0302",
            "0303",
            "0304",
            "0902",
            "0901",
            "0101",
            "0102",
            "0105",
            "0501",
            "0401",
            "0701",
        )
    }
    assert roles == {
        "0801": "traffic_police",
        "0110": "market_supervision",
        "0103": "emergency",
        "0301": "construction",
        "0302": "construction",
        "0303": "construction",
        "0304": "construction",
        "0902": "property",
        "0901": "property",
        "0101": "enforcement",
        "0102": "enforcement",
        "0105": "enforcement",
        "0501": "enforcement",
        "0401": "community",
        "0701": "construction",
    }
    assert "community" in city.category("0902").cooperating_roles
    assert "ecology" in city.category("0701").cooperating_roles
    assert city.category("9901").lead_role == "command_centre"


def test_grid_report_with_category_and_gcj_point(city) -> None:
    d = draft_case(
        _p(
            "grid",
            {
                "report_id": "R-1",
                "reported_at": "2026-11-23T09:58:00+08:00",
                "inspector_id": "G-1",
                "description": "井盖缺失",
                "category_code": "0301",
                "location": {"lng": 120.1649, "lat": 30.2526, "coord_system": "gcj02"},
            },
        ),
        city,
    )
    assert isinstance(d, Draft)
    assert (d.category_code, d.confidence, d.urgency, d.verdict) == ("0301", 1.0, "urgent", None)
    assert d.place.street_code == "CD" and d.place.lng != 120.1649


def test_grid_report_with_an_unknown_category_is_rejected(city) -> None:
    d = draft_case(
        _p(
            "grid",
            {
                "report_id": "R-2",
                "reported_at": "2026-11-23T09:58:00+08:00",
                "inspector_id": "G-1",
                "description": "x",
                "category_code": "7777",
            },
        ),
        city,
    )
    assert d[0].code == "unknown_category"


def test_hotline_order_is_classified_placed_by_address_and_its_caller_masked(city) -> None:
    body = {
        "order_no": "12345-1",
        "received_at": "2026-11-23T09:58:00+08:00",
        "channel": "12345",
        "title": "路灯问题",
        "content": "湖滨路的路灯不亮好几天了，晚上一片漆黑",
        "address": "金桥街道湖滨路",
        "caller": {"name": "张三丰", "phone": "13812345678"},
        "urgent": True,
    }
    report = _p("hotline", body)
    d = draft_case(report, city)
    assert isinstance(d, Draft) and d.category_code == "0302" and d.verdict.kind == "category"
    assert d.place.community_code == "JQ03" and d.urgency == "urgent"
    r = reporter_of(report, "secret")
    assert r.display == "张** 138****5678" and "13812345678" not in r.model_dump_json() and r.key.startswith("p-")


def test_hotline_matters_outside_city_management_are_transfers(city) -> None:
    body = {
        "order_no": "12345-2",
        "received_at": "2026-11-23T09:58:00+08:00",
        "channel": "12345",
        "title": "欠薪",
        "content": "我在工地干了三个月，老板拖欠工资不发",
    }
    d = draft_case(_p("hotline", body), city)
    assert isinstance(d, TransferDraft) and "人力资源和社会保障" in d.department and "欠薪" in d.matter


def test_vague_hotline_text_goes_to_manual_triage(city) -> None:
    body = {
        "order_no": "12345-3",
        "received_at": "2026-11-23T09:58:00+08:00",
        "channel": "12345",
        "title": "反映问题",
        "content": "请相关部门尽快派人来处理一下",
    }
    d = draft_case(_p("hotline", body), city)
    assert isinstance(d, Draft) and d.category_code == "9901" and d.confidence < 0.5


def test_a_triaged_case_carries_the_classifier_s_best_guess(city) -> None:
    body = {
        "order_no": "12345-4",
        "received_at": "2026-11-23T09:58:00+08:00",
        "channel": "12345",
        "title": "反映问题",
        "content": "小区门口那块地方乱糟糟的",
    }
    d = draft_case(_p("hotline", body), city)
    assert isinstance(d, Draft) and d.category_code == "9901"
    code, confidence = d.suggestion
    assert code is not None and city.category(code) is not None and code != "9901"
    assert confidence is not None and 0 < confidence < 0.5 and confidence == d.verdict.best_guess_confidence
    named = draft_case(_p("hotline", {**body, "content": "湖滨路的路灯不亮好几天了"}), city)
    assert isinstance(named, Draft) and named.category_code == "0302" and named.suggestion == (None, None)


def test_inspection_finding_without_category_is_classified(city) -> None:
    body = {
        "finding_id": "F-1",
        "inspected_at": "2026-11-23T09:58:00+08:00",
        "team": "督查一组",
        "kind": "暗访",
        "description": "望江花苑楼道堆放大量杂物",
        "address": "望江花苑",
    }
    d = draft_case(_p("inspection", body), city)
    assert isinstance(d, Draft) and d.category_code == "0902" and d.place.grid_code == "CD03-04"


def test_open311_request_maps_by_service_code_and_keeps_its_reporter(city) -> None:
    body = {
        "request_id": "tok-1",
        "reported_at": "2026-11-23T09:58:00+08:00",
        "service_code": "0302",
        "description": "路灯坏了",
        "address": "望江路",
        "reporter": {"kind": "citizen", "key": "p-abc", "display": "李*"},
    }
    report = _p("open311", body)
    assert isinstance(report, Open311Request)
    d = draft_case(report, city)
    assert isinstance(d, Draft) and d.category_code == "0302" and d.place.community_code == "CD03"
    assert reporter_of(report, "k") == Reporter(kind="citizen", key="p-abc", display="李*")


def test_merchant_check_failures_become_one_violation_each(city) -> None:
    check = _p(
        "merchant_check",
        {
            "check_id": "K-1",
            "merchant_id": "M-CD-0001",
            "checked_at": "2026-11-23T09:00:00+08:00",
            "inspector_id": "G-2",
            "items": {"hygiene": "fail", "order": "pass", "greenery": "fail"},
            "note": "门口油污",
        },
    )
    assert isinstance(check, MerchantCheck)
    failed = failed_items(check.items)
    assert failed == ["greenery", "hygiene"]
    drafts = merchant_drafts(city, check.merchant_id, failed, check.note)
    assert [(i, d.category_code) for i, d in drafts] == [("greenery", "0404"), ("hygiene", "0402")]
    assert all(d.place.grid_code == "CD01-03" and "东园小吃店" in d.description for _, d in drafts)
    assert merchant_drafts(city, "M-CD-0001", ["包容貌"], None)[0][1].category_code == "0401"
