"""A deadline counted on a year the city's calendar does not list: marked on `case.v1.dispatched`, counted by a
metric, and dispatch's /health warns from 1 December until next year's schedule is entered."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import httpx

from contracts.cases import CaseOpened
from services.dispatch.app import SPEC
from tests.helpers import BusRecorder, eventually, publish
from xiuhua.clock import FrozenClock
from xiuhua.service import asgi_app, running

SH = ZoneInfo("Asia/Shanghai")


def _opened(city, case_id: str, at: datetime) -> CaseOpened:
    return CaseOpened(
        occurred_at=at,
        correlation_id=f"grid:{case_id}",
        case_id=case_id,
        street_code="CD",
        source="grid",
        source_ref=case_id,
        category_code="0201",
        description="垃圾箱满溢",
        place=city.areas.place_of_area("CD01"),
        reported_at=at,
    )


async def _get(rt, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=asgi_app(SPEC, rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://dispatch") as http:
        return await http.get(path)


async def test_estimated_deadlines_are_marked_counted_and_warned_about(settings, city):
    clock = FrozenClock(datetime(2026, 11, 30, 23, 59, tzinfo=SH))
    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=clock, city=city) as rt:
        health = await _get(rt, "/health")
        assert health.status_code == 200 and health.json()["warnings"] == []  # November: nothing to say yet

        clock.set(datetime(2026, 12, 31, 9, 0, tzinfo=SH))  # a 4h case is due the same day: exact
        ev = _opened(city, "C-E1", clock.now())
        await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)
        await eventually(lambda: len(bus.on("case.v1.dispatched.")) == 1, timeout=30)
        clock.set(datetime(2026, 12, 31, 16, 0, tzinfo=SH))  # due in January 2027: estimated
        ev = _opened(city, "C-E2", clock.now())
        await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)
        await eventually(lambda: len(bus.on("case.v1.dispatched.")) == 2, timeout=30)

        marks = {b["case_id"]: b["due_at_estimated"] for b in bus.on("case.v1.dispatched.")}
        assert marks == {"C-E1": False, "C-E2": True}
        metrics = (await _get(rt, "/metrics")).text
        assert 'xiuhua_deadlines_estimated_total{role="sanitation"} 1.0' in metrics
        health = await _get(rt, "/health")
        body = health.json()
        assert health.status_code == 200 and body["status"] == "ok"  # a warning, not an outage
        assert len(body["warnings"]) == 1 and "2027" in body["warnings"][0]
