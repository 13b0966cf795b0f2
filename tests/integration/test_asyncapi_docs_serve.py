"""`xiuhua docs --serve`: the documents and the documentation pages as browsable HTML on a free port, without any
CDN."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from urllib.parse import urljoin

import httpx
import pytest
import yaml

from contracts import asyncapi
from xiuhua.settings import PROJECT_ROOT
from xiuhua_tools.commands.docs import serve_in_background
from xiuhua_tools.docs_site import markdown_files


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A client of `xiuhua docs --serve`, served in the background on a free port for the test."""
    server, base = serve_in_background()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield client
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()


async def test_served_page_lists_every_channel_with_schema_and_example(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    doc = asyncapi.document()
    for channel in doc["channels"].values():
        # A request's reply channel has no address (the requester's inbox): it is shown by its title.
        assert (channel["address"] or f"{channel['title']} (reply inbox)") in html
    assert "score.query.v1.ranking" in html and "unknown_unit" in html
    assert "case.v1.dispatched.{street_code}" in html and "解放路口垃圾箱满溢" in html
    assert "http://" not in html.replace(str(http.base_url), "") and "https://cdn" not in html  # self-contained
    served = (await http.get("/asyncapi.json")).json()
    assert served == json.loads(asyncapi.render_json(doc))
    assert yaml.safe_load((await http.get("/asyncapi.yaml")).text) == served
    schema = (await http.get("/schemas/cmd.case.verify.json")).json()
    assert "passed" in schema["properties"]
    assert (await http.get("/schemas/case.dispatched.json")).status_code == 200
    assert (await http.get("/no-such-page")).status_code == 404


async def test_the_documentation_is_served_rendered_and_every_link_on_it_resolves(http: httpx.AsyncClient) -> None:
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
    pages = ["/docs/", *(f"/{p.relative_to(PROJECT_ROOT).as_posix()}" for p in markdown_files())]
    checked = 0
    for path in pages:
        for href in re.findall(r'href="([^"]+)"', (await http.get(path)).text):
            if href.startswith(("http://", "https://", "mailto:")):
                continue
            url, _, fragment = urljoin(str(http.base_url.join(path)), href).partition("#")
            answer = await http.get(url)
            assert answer.status_code == 200, f"{path}: {href}"
            assert not fragment or f'id="{fragment}"' in answer.text, f"{path}: {href}"
            checked += 1
    assert checked > 100
    assert (await http.get("/docs/no-such-page.md")).status_code == 404
