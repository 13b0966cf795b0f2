"""Two intake instances sharing the durable consumers: resends, near reports and sensor streams still give
exactly one case per problem, the rest merged or dropped."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from services.intake.app import SPEC
from tests.helpers import BusRecorder, eventually, publish
from xiuhua.clock import FrozenClock
from xiuhua.service import running

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _grid(report_id: str, lng: float, lat: float) -> dict:
    return {
        "report_id": report_id,
        "reported_at": (NOW - timedelta(minutes=1)).isoformat(),
        "inspector_id": "G-1",
        "description": "垃圾箱满溢",
        "category_code": "0201",
        "location": {"lng": lng, "lat": lat},
    }


async def test_two_instances_open_each_problem_once(settings):
    clock = FrozenClock(NOW)
    async with BusRecorder(settings.nats_url) as bus, contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(running(SPEC, settings, clock=clock))
        await stack.enter_async_context(running(SPEC, settings, clock=clock))
        url = settings.nats_url
        for spot in range(8):  # eight bins 150 m apart, each reported by three people within 20 m, each sent twice
            lng = 120.155 + spot * 0.0016
            for who in range(3):
                body = _grid(f"R-{spot}-{who}", lng + who * 0.00007, 30.255)
                await publish(url, "report.v1.in.grid", body)
                await publish(url, "report.v1.in.grid", body)
        for device in range(3):  # three manhole sensors tilting, four readings each
            for minute in range(4):
                await publish(
                    url,
                    "report.v1.in.sensor",
                    {
                        "device_id": f"MH-{device}",
                        "device_type": "manhole_tilt",
                        "measured_at": (NOW - timedelta(minutes=10 - minute)).isoformat(),
                        "values": {"tilt_deg": 30},
                        "location": {"lng": 120.11 + device * 0.01, "lat": 30.265},
                    },
                )

        async def settled() -> bool:
            return await a.store.count("raw_reports", {"source": "grid"}) == 48

        await eventually(settled, timeout=60)
        await eventually(lambda: len(bus.on("case.v1.opened.")) >= 11, timeout=30)
        opened = bus.on("case.v1.opened.")
        merged = bus.on("case.v1.merged.")
        grid_cases = [e for e in opened if e["source"] == "grid"]
        assert len(grid_cases) == 8 and len(merged) == 16
        assert len([e for e in opened if e["source"] == "sensor"]) == 3
        assert {m["case_id"] for m in merged} == {e["case_id"] for e in grid_cases}
        assert sorted(m["reporters_count"] for m in merged) == [2] * 8 + [3] * 8
        assert await a.store.count("raw_reports", {"status": "duplicate"}) == 24
