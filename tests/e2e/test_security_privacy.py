"""Inbound limits and personal data: oversized messages refused by the server, over-long texts and lists
rejected with reasons (no internals), and no caller's name or phone in clear on any subject Xiuhua publishes
or in its logs."""

from __future__ import annotations

import json
import logging
import re

import nats
import pytest
from nats.errors import MaxPayloadError

from tests.helpers import BusRecorder, eventually, publish, system
from xiuhua import embedded, security
from xiuhua_tools.chaos.feed import reports

pytestmark = pytest.mark.e2e


async def test_the_server_refuses_messages_over_max_payload(tmp_path):
    conf, pw = security.write_embedded_config(tmp_path / "var")
    srv = embedded.nats_server(tmp_path / "nats", config=conf)
    srv.start()
    try:
        nc = await nats.connect(embedded.nats_url(srv), **security.login("patrol_app", pw["patrol_app"]))
        assert nc.max_payload == security.MAX_PAYLOAD
        with pytest.raises(MaxPayloadError):
            await nc.publish("report.v1.in.grid", b"x" * (security.MAX_PAYLOAD + 1))
        await nc.close()
    finally:
        srv.stop()


async def test_over_long_texts_and_lists_are_rejected_with_reasons_and_no_internals(settings, city):
    body = reports(city, 1, tag="LIMIT", hotline_share=0.0)[0].body
    body = {**body, "description": "满" * 4001, "photo_urls": [f"https://img.example/{i}.jpg" for i in range(21)]}
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake",)):
        await publish(settings.nats_url, "report.v1.in.grid", body, msg_id="grid:LIMIT")
        rejected = await eventually(lambda: bus.on("report.v1.rejected"), timeout=20)
    reasons = {(r["code"], r["field"]) for r in rejected[0]["reasons"]}
    assert {f for _, f in reasons} >= {"description", "photo_urls"}, reasons
    text = json.dumps(rejected[0], ensure_ascii=False)
    for internal in ("Traceback", 'File "', "errors.pydantic.dev", "/work/", "site-packages", "pymongo"):
        assert internal not in text
    assert not bus.on("case.v1.")


async def test_no_callers_name_or_phone_in_clear_on_the_bus_or_in_logs(settings, city, caplog):
    caplog.set_level(logging.INFO)  # what a service logs at its default XIUHUA_LOG_LEVEL
    items = reports(city, 12, tag="PII", hotline_share=1.0)
    callers = [r.body["caller"] for r in items]
    async with BusRecorder(settings.nats_url) as bus, system(settings):
        for r in items:
            await publish(settings.nats_url, r.subject, r.data, msg_id=r.msg_id)
        await eventually(
            lambda: len(bus.on("notify.v1.delivered")) >= 1 and len(bus.on("case.v1.dispatched")) >= 6, timeout=40
        )
    # What Xiuhua publishes: everything but the inbound orders themselves (the 12345 platform's own data).
    published = [(s, b) for s, b in bus.messages if not s.startswith("report.v1.in.")]
    assert any(s.startswith("case.v1.opened") for s, _ in published)
    outbox = "\n".join(p.read_text() for p in (settings.var_dir / "outbox").glob("*.jsonl"))
    haystacks = {
        "bus": "\n".join(json.dumps(b, ensure_ascii=False) if isinstance(b, dict) else repr(b) for _, b in published),
        "logs": caplog.text,
        "alerts": outbox,
    }
    for where, text in haystacks.items():
        for c in callers:
            assert c["phone"] not in text, f"phone in clear in {where}"
            assert c["name"] not in text, f"caller name in clear in {where}"
        # No 11-digit mobile number at all, in any form: eleven digits that stand alone, not the fractional part of a
        # number (confidences, rates, distances: "15964918546" once matched in a full run) nor a run inside a
        # hexadecimal identifier.
        mobile = re.search(r"(?<![0-9A-Za-z.])1[3-9]\d{9}(?![0-9A-Za-z])", text)
        assert not mobile, f"{where}: {text[max(0, mobile.start() - 80) : mobile.end() + 20]!r}"
