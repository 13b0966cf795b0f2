"""`xiuhua docs --serve`: the documents and the documentation pages as browsable HTML on a free port, without any
CDN."""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import urljoin

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


async def test_the_documentation_is_served_rendered_and_every_link_on_it_resolves() -> None:
    server, base = serve_in_background()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            index = await http.get("/docs/")
            assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
            assert '<h1 id="xiuhua-documentation">Xiuhua documentation</h1>' in index.text
            assert "<table>" in index.text and 'href="operating/running.md"' in index.text  # tables render
            assert index.text == (await http.get("/docs/README.md")).text
            # The AsyncAPI page links to the docs, and the docs back to it.
            assert "href='docs/'" in (await http.get("/")).text and "href='/'" in index.text
            page = (await http.get("/docs/design/exactly-once.md")).text
            assert '<h2 id="the-streams">' in page and "<code>XH_CHECKS</code>" in page
            # Every relative link of every served page leads to a served page, and to a heading on it.
            pages = ["/README.md", "/CHANGELOG.md", "/docs/", *(f"/{p}" for p in _docs_paths())]
            checked = 0
            for path in pages:
                html = (await http.get(path)).text
                for href in re.findall(r'href="([^"]+)"', html):
                    if href.startswith(("http://", "https://", "mailto:")):
                        continue
                    target = urljoin(base + path.lstrip("/"), href)
                    url, _, fragment = target.partition("#")
                    answer = await http.get(url)
                    assert answer.status_code == 200, f"{path}: {href}"
                    if fragment:
                        assert f'id="{fragment}"' in answer.text, f"{path}: {href}"
                    checked += 1
            assert checked > 100
            assert (await http.get("/docs/no-such-page.md")).status_code == 404
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()


def _docs_paths() -> list[str]:
    from xiuhua.docs_site import markdown_files
    from xiuhua.settings import PROJECT_ROOT

    return [p.relative_to(PROJECT_ROOT).as_posix() for p in markdown_files()]
