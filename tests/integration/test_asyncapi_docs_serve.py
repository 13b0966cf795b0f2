"""`xiuhua docs --serve`: the documents as browsable HTML on a free port, without any CDN."""

from __future__ import annotations

import asyncio
import json

import httpx
import yaml

from contracts import asyncapi
from xiuhua.commands.docs import serve_in_background


async def test_served_page_lists_every_channel_with_schema_and_example() -> None:
    server, base = serve_in_background()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            page = await http.get("/")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            html = page.text
            doc = asyncapi.document()
            for channel in doc["channels"].values():
                # A request's reply channel has no address (the requester's inbox): it is shown by its title.
                assert (channel["address"] or f"{channel['title']} (reply inbox)") in html
            assert "score.query.v1.ranking" in html and "unknown_unit" in html
            assert "case.v1.dispatched.{street_code}" in html and "解放路口垃圾箱满溢" in html
            assert "http://" not in html.replace(base, "") and "https://cdn" not in html  # self-contained
            served = (await http.get("/asyncapi.json")).json()
            assert served == json.loads(asyncapi.render_json(doc))
            assert yaml.safe_load((await http.get("/asyncapi.yaml")).text) == served
            schema = (await http.get("/schemas/cmd.case.verify.json")).json()
            assert "passed" in schema["properties"]
            assert (await http.get("/schemas/case.dispatched.json")).status_code == 200
            assert (await http.get("/no-such-page")).status_code == 404
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()
