"""The Open311 client example against intake's Open311 API on an embedded Xiuhua: post, poll, see it closed."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from contracts.commands import Acknowledge, Actor, Close, Resolve
from examples.open311_client import Open311Client, Open311Error
from xiuhua.registry import spec
from xiuhua.service import asgi_app

KEY = "demo-open311-key-0001"  # the demo city's Open311 client key


@pytest.fixture
def xiuhua_services() -> tuple[str, ...]:
    return ("intake", "dispatch")


async def test_post_poll_and_see_the_request_closed(xiuhua) -> None:
    app = asgi_app(spec("intake"), xiuhua.runtimes["intake"])
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    client = Open311Client("http://xiuhua.test/open311/v2", KEY, http=http)
    try:
        assert any(s["service_code"] == "0201" for s in await client.services())
        posted = await client.post_request(
            "0201",
            lat=30.255,
            long=120.16,
            description="解放路口垃圾桶满了",
            attributes={"BIN_TYPE": "kitchen"},
        )
        assert set(posted) & {"service_request_id", "token"}
        opened = await client.poll(posted, until=lambda r: r.get("status") == "open", interval=0.2, timeout=20)
        case_id = opened["service_request_id"]

        now = datetime.now(UTC)
        unit = Actor(unit_id="CD-SAN", role="sanitation", name="王强")
        centre = Actor(unit_id="XH-CC", role="command_centre", name="李敏")
        await xiuhua.send_command(Acknowledge(command_id="o-1", case_id=case_id, actor=unit, at=now))
        await xiuhua.wait_for("case.v1.acknowledged", case_id=case_id)
        await xiuhua.send_command(Resolve(command_id="o-2", case_id=case_id, actor=unit, at=now, note="已清运"))
        await xiuhua.wait_for("case.v1.resolved", case_id=case_id)
        await xiuhua.send_command(Close(command_id="o-3", case_id=case_id, actor=centre, at=now))

        changes: list[str] = []
        closed = await client.poll(posted, interval=0.2, timeout=20, on_change=lambda r: changes.append(r["status"]))
        assert closed["status"] == "closed" and closed["service_request_id"] == case_id and changes[-1] == "closed"

        with pytest.raises(Open311Error) as missing:
            await client.post_request("0201", lat=30.255, long=120.16)  # BIN_TYPE is required
        assert missing.value.status == 400 and missing.value.errors[0]["code"]
    finally:
        await client.aclose()
