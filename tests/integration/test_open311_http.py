"""The Open311 API over a real socket: intake served by uvicorn as `xiuhua run intake` serves it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import uvicorn

from tests.helpers import BusRecorder, eventually
from xiuhua.registry import spec
from xiuhua.service import asgi_app, build_runtime

KEY = "demo-open311-key-0001"


async def test_open311_over_http_with_a_streamed_oversized_body(settings):
    intake = spec("intake")
    app = asgi_app(intake, build_runtime(intake, settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with (
            BusRecorder(settings.nats_url) as bus,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/open311/v2", timeout=10) as http,
        ):
            r = await http.get("/services.json")
            assert r.status_code == 200 and any(s["service_code"] == "0201" for s in r.json())

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit must hold while streaming
                yield f"api_key={KEY}&service_code=0201&description=".encode()
                for _ in range(40):
                    yield b"x" * 4096

            r = await http.post(
                "/requests.json", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
            )
            assert r.status_code == 413 and r.json() == [{"code": 413, "description": "request body over 65536 bytes"}]

            form = {
                "api_key": KEY,
                "service_code": "0201",
                "lat": "30.255",
                "long": "120.16",
                "attribute[BIN_TYPE]": "residual",
                "description": "垃圾桶满了",
                "phone": "13812345678",
            }
            r = await http.post("/requests.json", data=form)
            assert r.status_code in (201, 202), r.text
            await eventually(lambda: bus.on("case.v1.opened."))
            assert "13812345678" not in str(bus.messages)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
