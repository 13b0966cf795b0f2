"""`/health` carries what a service adds about itself: intake names the classifier in use."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from services.intake.app import SPEC
from services.intake.cases import domain_of
from xiuhua.observability import Metrics, routes


async def _ok() -> bool:
    return True


async def _down() -> bool:
    return False


async def test_health_shows_the_service_s_own_information_beside_its_checks(city) -> None:
    class Rt:
        pass

    rt = Rt()
    rt.city = city  # type: ignore[attr-defined]
    assert SPEC.health_info is not None
    info = SPEC.health_info(rt)  # type: ignore[arg-type]
    app = Starlette(routes=routes(Metrics("intake"), {"nats": _ok}, info=lambda: info))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        body = (await client.get("/health")).json()
    card = domain_of(city).classifier_info
    assert body["classifier"] == card and card["kind"] == "model" and card["trained_on"] >= 1400
    assert {"version", "trained_at"} <= card.keys() and body["status"] == "ok"
    app = Starlette(routes=routes(Metrics("intake"), {"nats": _down}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/health")
    assert r.status_code == 503 and "classifier" not in r.json()
