"""Intake on the real bus and store: every source, duplicates, merges, transfers, rejections, sensor debounce."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from contracts.cases import CaseClosed, CaseReopened
from services.intake.cases import domain_of
from tests.helpers import BusRecorder, eventually, publish, system
from xiuhua.clock import FrozenClock

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.isoformat()


def grid(report_id: str, lng: float = 120.16, lat: float = 30.255, code: str | None = "0201", **over) -> dict:
    body = {
        "report_id": report_id,
        "reported_at": _iso(NOW - timedelta(minutes=2)),
        "inspector_id": "G-017",
        "description": "解放路口垃圾箱满溢，垃圾散落",
        "category_code": code,
        "location": {"lng": lng, "lat": lat, "coord_system": "wgs84"},
    }
    body.update(over)
    return body


def hotline(order_no: str, content: str, **over) -> dict:
    body = {
        "order_no": order_no,
        "received_at": _iso(NOW - timedelta(minutes=5)),
        "channel": "12345",
        "title": "市民来电",
        "content": content,
        "caller": {"name": "王小明", "phone": "13912345678"},
    }
    body.update(over)
    return body


async def test_every_source_becomes_a_case_with_its_mapping(settings):
    async with BusRecorder(settings.nats_url) as bus, system(settings, clock=FrozenClock(NOW), only=("intake",)):
        url = settings.nats_url
        await publish(url, "report.v1.in.grid", grid("R-1"))
        await publish(
            url,
            "report.v1.in.hotline",
            hotline("12345-1", "湖滨路的路灯不亮好几天了，晚上一片漆黑", address="金桥街道湖滨路"),
        )
        await publish(
            url,
            "report.v1.in.inspection",
            {
                "finding_id": "F-1",
                "inspected_at": _iso(NOW - timedelta(hours=1)),
                "team": "督查一组",
                "kind": "暗访",
                "description": "望江花苑楼道堆放大量杂物",
                "address": "望江花苑",
            },
        )
        await publish(
            url,
            "report.v1.in.merchant_check",
            {
                "check_id": "K-1",
                "merchant_id": "M-CD-0001",
                "checked_at": _iso(NOW - timedelta(hours=1)),
                "inspector_id": "G-2",
                "items": {"hygiene": "fail", "order": "pass", "greenery": "fail"},
            },
        )
        await publish(
            url,
            "report.v1.in.open311",
            {
                "request_id": "tok-1",
                "reported_at": _iso(NOW - timedelta(minutes=1)),
                "service_code": "0301",
                "description": "井盖不见了",
                "location": {"lng": 120.19, "lat": 30.30, "coord_system": "gcj02"},
                "reporter": {"kind": "citizen", "key": "p-abc", "display": "李*"},
            },
        )

        opened = await eventually(lambda: len(bus.on("case.v1.opened.")) == 6 and bus.on("case.v1.opened."))
        by_source: dict[str, list[dict]] = {}
        for e in opened:
            by_source.setdefault(e["source"], []).append(e)
        g, h, i, o = by_source["grid"][0], by_source["hotline"][0], by_source["inspection"][0], by_source["open311"][0]
        assert (g["category_code"], g["place"]["grid_code"], g["category_confidence"]) == ("0201", "CD01-01", 1.0)
        assert (h["category_code"], h["place"]["community_code"]) == ("0302", "JQ03")
        assert 0.5 <= h["category_confidence"] < 1.0
        assert h["reporter"]["display"] == "王** 139****5678" and h["reporter"]["kind"] == "caller"
        assert (i["category_code"], i["supervisor_found"], i["place"]["grid_code"]) == ("0902", True, "CD03-04")
        assert (o["category_code"], o["urgency"], o["place"]["street_code"]) == ("0301", "urgent", "CD")
        merchant = sorted(by_source["merchant_check"], key=lambda e: e["category_code"])
        assert [(e["category_code"], e["merchant_id"]) for e in merchant] == [
            ("0402", "M-CD-0001"),
            ("0404", "M-CD-0001"),
        ]
        assert {e["source_ref"] for e in merchant} == {"K-1:hygiene", "K-1:greenery"}
        # Personal data never travels in clear in what intake publishes (the inbound order is the source's own).
        wire = json.dumps(
            [b for s, b in bus.messages if isinstance(b, dict) and not s.startswith("report.v1.in.")],
            ensure_ascii=False,
        )
        assert "13912345678" not in wire and "王小明" not in wire


async def test_duplicates_merges_and_a_closed_case_stops_absorbing(settings):
    clock = FrozenClock(NOW)
    async with BusRecorder(settings.nats_url) as bus, system(settings, clock=clock, only=("intake",)) as rts:
        url = settings.nats_url
        await publish(url, "report.v1.in.grid", grid("R-10"))
        first = await eventually(lambda: bus.on("case.v1.opened."))
        case_id = first[0]["case_id"]
        await publish(url, "report.v1.in.grid", grid("R-10"), msg_id="resend")  # same reference: one case
        # The same bin reported by a caller 30 m away: merged, with a second reporter.
        await publish(
            url,
            "report.v1.in.hotline",
            hotline("12345-9", "解放路口的垃圾桶都满了", location={"lng": 120.1603, "lat": 30.2551}),
        )
        merged = await eventually(lambda: bus.on("case.v1.merged."))
        assert merged[0]["case_id"] == case_id and merged[0]["reporters_count"] == 2
        assert 0 < merged[0]["distance_m"] < 50 and merged[0]["reporter"]["display"] == "王** 139****5678"
        # Another category at the same spot, and the same category 200 m away, are new cases.
        await publish(url, "report.v1.in.grid", grid("R-11", code="0302", description="路灯不亮"))
        await publish(url, "report.v1.in.grid", grid("R-12", lng=120.162))
        await eventually(lambda: len(bus.on("case.v1.opened.")) == 3)
        # The case is closed: the next report there opens a new case.
        closed = CaseClosed(case_id=case_id, street_code="CD", unit_id="CD-SAN", on_time=True, closed_by="verification")
        await publish(url, closed.subject_for(), closed.to_json(), msg_id=closed.event_id)

        async def projected() -> bool:
            doc = await rts["intake"].store["open311_requests"].find_one({"_id": case_id})
            return doc is not None and not doc["open"] and doc["status"] == "closed"

        await eventually(projected)
        store = rts["intake"].store
        key = (await store["open311_requests"].find_one({"_id": case_id}))["key"]
        # When it closed (its request's last change), as the number the purge of closed cases ranges over.
        doc = await store["open311_requests"].find_one({"_id": case_id})
        assert doc["closed_s"] == closed.occurred_at.timestamp()

        async def listed() -> list[str]:
            return (await store["open_keys"].find_one({"_id": key}) or {}).get("ids", [])

        assert case_id not in await listed()  # the merge directory lists open cases only
        await publish(url, "report.v1.in.grid", grid("R-13", lng=120.16001))
        await eventually(lambda: len(bus.on("case.v1.opened.")) == 4)
        assert len(bus.on("case.v1.merged.")) == 1
        # Reopened, it absorbs reports again (the nearest open case wins).
        reopened = CaseReopened(case_id=case_id, street_code="CD", unit_id="CD-SAN", reason="问题复发")
        await publish(url, reopened.subject_for(), reopened.to_json(), msg_id=reopened.event_id)

        async def reprojected() -> bool:
            doc = await rts["intake"].store["open311_requests"].find_one({"_id": case_id})
            return bool(doc and doc["open"] and doc["status"] == "open")

        await eventually(reprojected)
        assert (await listed()).count(case_id) == 1  # listed again, once
        assert "closed_s" not in await store["open311_requests"].find_one({"_id": case_id})  # open: out of the purge
        await publish(url, "report.v1.in.grid", grid("R-14"))
        merged_again = await eventually(lambda: len(bus.on("case.v1.merged.")) == 2 and bus.on("case.v1.merged.")[1])
        assert merged_again["case_id"] == case_id and merged_again["reporters_count"] == 3
        assert len(bus.on("case.v1.opened.")) == 4
        store = rts["intake"].store
        assert await store.count("raw_reports", {"status": "duplicate"}) == 1
        assert await store.count("raw_reports", {"status": "merged", "case_id": case_id}) == 2


async def test_transfers_triage_and_rejections(settings):
    async with BusRecorder(settings.nats_url) as bus, system(settings, clock=FrozenClock(NOW), only=("intake",)) as rts:
        url = settings.nats_url
        await publish(url, "report.v1.in.hotline", hotline("12345-20", "我在工地干了三个月，老板一直拖欠工资不发"))
        await publish(url, "report.v1.in.hotline", hotline("12345-21", "请相关部门尽快派人来处理一下"))
        await publish(
            url,
            "report.v1.in.merchant_check",
            {
                "check_id": "K-9",
                "merchant_id": "M-NOPE",
                "checked_at": _iso(NOW),
                "inspector_id": "G-2",
                "items": {"hygiene": "fail"},
            },
        )
        await publish(url, "report.v1.in.grid", grid("R-out", lng=121.47, lat=31.23))
        await publish(url, "report.v1.in.sensor", b'{"device_id": "D-1", "device_type": "dust", "values": [1]}')

        transferred = await eventually(lambda: bus.on("case.v1.transferred."))
        assert "人力资源和社会保障" in transferred[0]["department"] and transferred[0]["source_ref"] == "12345-20"
        triaged = await eventually(lambda: bus.on("case.v1.opened."))
        assert triaged[0]["category_code"] == "9901" and triaged[0]["category_confidence"] < 0.5
        # The classifier's best guess travels with the triaged case, for the command centre to start from.
        assert triaged[0]["suggested_category_code"] not in (None, "9901")
        assert 0 <= triaged[0]["suggested_category_confidence"] < 0.5
        # Every case names the classifier in use (the city's learnt model).
        assert triaged[0]["classifier_version"] == domain_of(rts["intake"].city).classifier.version
        assert triaged[0]["classifier_version"].startswith("demo-")
        rejected = await eventually(lambda: len(bus.on("report.v1.rejected")) == 3 and bus.on("report.v1.rejected"))
        codes = {r["reasons"][0]["code"] for r in rejected}
        assert {"unknown_merchant", "out_of_city"} <= codes
        sensor = next(r for r in rejected if r["source"] == "sensor")
        assert {x["field"] for x in sensor["reasons"]} >= {"measured_at", "values"}
        kept = await rts["intake"].store.count("raw_reports", {"status": "rejected"})
        assert kept == 3
        assert len(bus.on("case.v1.opened.")) == 1


async def test_sensor_debounce_fault_and_return_to_normal(settings):
    clock = FrozenClock(NOW)
    async with BusRecorder(settings.nats_url) as bus, system(settings, clock=clock, only=("intake",)) as rts:
        url = settings.nats_url

        async def reading(device: str, minutes_ago: int, **values) -> None:
            body = {
                "device_id": device,
                "device_type": "dust",
                "site_id": "桥西建筑工地",
                "measured_at": _iso(NOW - timedelta(minutes=minutes_ago)),
                "values": values,
            }
            if device == "DUST-1":  # DUST-2 sends no point: its site name places it
                body["location"] = {"lng": 120.11, "lat": 30.285}
            await publish(url, "report.v1.in.sensor", body)

        for m in (45, 35, 25):  # 20 minutes over the limit: not yet
            await reading("DUST-1", m, pm10=180.0)
        await eventually(lambda: rts["intake"].store["devices"].find_one({"_id": "DUST-1", "status": "breach"}))
        assert not bus.on("case.v1.opened.")
        for m in (14, 10, 5):  # past 30 minutes: one case, however many readings
            await reading("DUST-1", m, pm10=200.0)
        opened = await eventually(lambda: bus.on("case.v1.opened."))
        assert (opened[0]["category_code"], opened[0]["source"], opened[0]["place"]["grid_code"]) == (
            "0701",
            "sensor",
            "JQ02-03",
        )
        await reading("DUST-1", 4, pm10=60.0)
        normal = await eventually(lambda: bus.on("report.v1.sensor_normal"))
        assert normal[0]["case_id"] == opened[0]["case_id"] and normal[0]["device_id"] == "DUST-1"
        # A stuck-at-full-scale monitor is a device fault for the owner, once.
        await reading("DUST-2", 3, pm10=1000.0)
        await reading("DUST-2", 2, pm10=1000.0)
        faults = await eventually(lambda: len(bus.on("case.v1.opened.")) == 2 and bus.on("case.v1.opened.")[1:])
        assert faults[0]["category_code"] == "1301"
        assert faults[0]["place"]["grid_code"] == "JQ02-03"
        await reading("DUST-1", 1, pm10=70.0)
        await eventually(lambda: rts["intake"].store.count("raw_reports", {"source": "sensor"}))
        assert len(bus.on("case.v1.opened.")) == 2
        # Readings that change nothing leave no raw copy: only the transitions are kept.
        assert await rts["intake"].store.count("raw_reports", {"source": "sensor"}) == 3
