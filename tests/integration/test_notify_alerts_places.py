"""Alerts name the place as people say it: a case placed by its point alone (a manhole-tilt alarm, a patrol's
photo) names its street, community, grid cell and nearest landmark, with a map link beside them."""

from __future__ import annotations

import json
from datetime import timedelta

from contracts.cases import CaseDispatched, CaseOpened, CaseOverdue
from contracts.values import ReportSource, Urgency
from services.notify.store import DELIVERIES
from tests.helpers import eventually
from tests.helpers.channels import receiver
from tests.helpers.notify import CASE_CONSUMER, T0, alert_city, all_acknowledged, lead, notify, send
from xiuhua.clock import FrozenClock


async def test_a_case_placed_by_its_point_alone_is_named_in_every_alert(settings, city) -> None:
    clock = FrozenClock(T0)
    place = city.areas.place_of_point(120.161, 30.2655)  # no address: only the point a sensor sent
    assert place is not None and place.address is None
    async with receiver() as r, notify(settings, alert_city(city, r.url("/s")), clock) as (rt, h):
        opened = CaseOpened(
            case_id="C-P1",
            street_code="CD",
            source=ReportSource.sensor,
            source_ref="manhole-tilt-7",
            category_code="0101",
            category_name="井盖",
            description="井盖倾斜报警",
            urgency=Urgency.urgent,
            place=place,
            reported_at=T0,
        )
        await send(settings, opened)
        await send(
            settings,
            CaseDispatched(
                case_id="C-P1",
                street_code="CD",
                category_code="0101",
                lead_unit=lead(),
                rule_id="r",
                due_at=T0 + timedelta(hours=4),
                time_limit="4nh",
                place=place,
            ),
        )
        await eventually(lambda: all_acknowledged(settings, CASE_CONSUMER))
        await send(settings, CaseOverdue(case_id="C-P1", street_code="CD", unit_id="CD-SAN", due_at=T0))
        await eventually(lambda: all_acknowledged(settings, CASE_CONSUMER))
        assert await h.deliver_due() >= 3

        said = "位置：城东街道 东园社区 东园社区第3网格，东园菜市场附近（约 110 米）"
        link = "地图：https://www.openstreetmap.org/?mlat=30.265500&mlon=120.161000#map=18/30.265500/120.161000"
        outbox = (settings.var_dir / "outbox" / "xh-cc.jsonl").read_text()
        emergency = json.loads(outbox.splitlines()[0])
        assert said in emergency["lines"] and link in emergency["lines"]
        docs = [d async for d in rt.store[DELIVERIES].find({"case_id": "C-P1"})]
        lines = {d["kind"]: d["message"]["lines"] for d in docs}
        assert said in lines["new_case"] and link in lines["new_case"]
        assert said in lines["overdue"] and link in lines["overdue"]  # the overdue event carries no place itself


async def test_a_merchant_is_told_of_its_first_failure_but_not_of_the_enforcement_case(settings, city) -> None:
    from dataclasses import replace

    from xiuhua.city.alerts import AlertRule

    clock = FrozenClock(T0)
    base = alert_city(city, "http://127.0.0.1:9/unused")
    told = replace(
        base,
        alerts=base.alerts.model_copy(
            update={
                "rules": [
                    *base.alerts.rules,
                    AlertRule(kind="merchant_notice", to=["merchant"], channels=["file", "sms"]),
                ]
            }
        ),
    )
    shop = city.merchants["M-CD-0001"]
    assert shop.channels == {"file": "merchants"}  # no SMS number in the demo: the file channel only
    async with notify(settings, told, clock) as (rt, h):
        for case_id, category in (("C-M1", "0402"), ("M-M-CD-0001-2026-11", city.routing.merchant_category)):
            await send(
                settings,
                CaseOpened(
                    case_id=case_id,
                    street_code="CD",
                    source=ReportSource.merchant_check,
                    source_ref=f"K1:{case_id}",
                    category_code=category,
                    description="门前卫生不洁",
                    merchant_id="M-CD-0001",
                    place=city.areas.place_of_area(shop.area, address=shop.address),
                    reported_at=T0,
                ),
            )
        await eventually(lambda: all_acknowledged(settings, CASE_CONSUMER))
        docs = [d async for d in rt.store[DELIVERIES].find({"kind": "merchant_notice"})]
        assert [(d["case_id"], d["channel"], d["address"]) for d in docs] == [("C-M1", "file", "merchants")]
        lines = docs[0]["message"]["lines"]
        assert "商户：东园小吃店" in lines and any("移交综合执法队" in ln for ln in lines)
        assert any(ln.startswith("位置：城东街道 东园社区 东园社区第3网格") for ln in lines)
        assert await h.deliver_due() >= 1
        outbox = (settings.var_dir / "outbox" / "merchants.jsonl").read_text()
        assert json.loads(outbox.splitlines()[0])["title"] == "门前责任整改通知（批评教育）"
