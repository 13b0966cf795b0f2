"""A burst against the Open311 edge on a real bus and store: 429s with Retry-After, and nothing accepted lost."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter

import httpx
from starlette.applications import Starlette

from services.intake.open311.routes import Open311Api, Open311Settings
from tests.helpers import BusRecorder, eventually, system
from tests.helpers.open311 import BASE, KEY
from xiuhua.clock import FrozenClock
from xiuhua.settings import DEMO_CITY

LIMITS = """
rate_limits:
  per_address: {post: {capacity: 1000, per_minute: 6000}, get: {capacity: 1000, per_minute: 6000}}
api_keys:
  - client: 示范市民App demo citizens' app
    key: demo-open311-key-0001
    rate_limits: {per_key: {post: {capacity: 20, per_minute: 60}}}
"""


def city_with_limits(tmp_path):
    """The demo city whose key may POST 20 at once and one a second after."""
    folder = tmp_path / "city"
    shutil.copytree(DEMO_CITY, folder)
    text = (folder / "open311.yaml").read_text(encoding="utf-8")
    head, _, rest = text.partition("rate_limits:")
    services = rest[rest.index("services:") :]
    (folder / "open311.yaml").write_text(head + LIMITS.lstrip() + services, encoding="utf-8")
    return folder


def form(i: int) -> dict[str, str]:
    """A distinct request each (its own text and place), so none is taken for an app's retry of another."""
    return {
        "api_key": KEY,
        "service_code": "0201",
        "lat": f"{30.2501 + i * 0.0001:.4f}",
        "long": "120.16",
        "attribute[BIN_TYPE]": "kitchen",
        "description": f"第{i}号垃圾桶满了",
    }


async def test_200_posts_in_a_second_with_one_key_get_429s_and_nothing_accepted_is_lost(settings, tmp_path):
    from datetime import UTC, datetime, timedelta

    clock = FrozenClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))  # the whole burst falls in one instant
    settings = settings.model_copy(update={"city_dir": city_with_limits(tmp_path)})
    async with system(settings, clock=clock, only=("intake",)) as rts, BusRecorder(settings.nats_url) as bus:
        rt = rts["intake"]
        app = Starlette(routes=Open311Api(rt, Open311Settings(wait_s=0)).routes())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, timeout=30) as http:
            gate = asyncio.Semaphore(25)

            async def post(i: int) -> httpx.Response:
                async with gate:
                    return await http.post("/requests.json", data=form(i))

            answers = await asyncio.gather(*(post(i) for i in range(200)))
            by_status = Counter(r.status_code for r in answers)
            assert by_status == {202: 20, 429: 180}, by_status
            for r in answers:
                if r.status_code == 429:
                    assert r.headers["retry-after"] == "1"
                    assert r.headers["access-control-expose-headers"] == "Retry-After"  # readable by a web app
                    assert r.json() == [
                        {
                            "code": 429,
                            "description": "too many POST requests from this api_key: "
                            "at most 20 at once and 60 a minute; retry after 1 s",
                        }
                    ]
            tokens = [r.json()[0]["token"] for r in answers if r.status_code == 202]
            assert len(set(tokens)) == 20

            # Nothing accepted is lost: each token's report went out on the bus once and became a case.
            def reports() -> list[str]:
                return [m["request_id"] for m in bus.on("report.v1.in.open311")]

            await eventually(lambda: len(reports()) >= 20)
            assert sorted(reports()) == sorted(tokens)

            async def resolved() -> bool:
                rows = [(await http.get(f"/tokens/{t}.json")).json()[0] for t in tokens]
                return all(row.get("service_request_id") for row in rows)

            await eventually(resolved, timeout=30)
            assert (
                rt.metrics.registry.get_sample_value(
                    "xiuhua_open311_throttled_total",
                    {"scope": "key", "method": "POST", "client": "示范市民App demo citizens' app"},
                )
                == 180
            )
            assert (
                rt.metrics.registry.get_sample_value(
                    "xiuhua_open311_calls_total", {"endpoint": "requests", "status": "429"}
                )
                == 180
            )
            # The refill: one second later one more is taken, the next waits again.
            clock.advance(timedelta(seconds=1))
            assert (await http.post("/requests.json", data=form(200))).status_code == 202
            assert (await http.post("/requests.xml", data=form(201))).status_code == 429
