"""A publish the server refuses (a permission) is dead-lettered with the refusal as its reason, counted, and the
service's connection survives and goes on working: never retried for ever as a passing fault."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from contracts.merchants import MerchantEscalated
from tests.helpers import CREDENTIALS, BusRecorder, eventually, login, publish, system
from xiuhua import embedded, security
from xiuhua.bus import provision_streams
from xiuhua.settings import DEMO_CITY, Settings

GRID = {
    "report_id": "REF-1",
    "reported_at": "2026-11-23T02:00:00+00:00",
    "inspector_id": "G-017",
    "description": "解放路口垃圾箱满溢，垃圾散落",
    "category_code": "0201",
    "location": {"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"},
}


@pytest.fixture
async def narrowed(tmp_path: Path, mongo_url: str, monkeypatch: pytest.MonkeyPatch, service_bindings):
    """Settings for a server whose model denies dispatch `case.v1.opened` (as it did before dispatch opened
    merchants' enforcement cases itself): a refusal on demand."""
    monkeypatch.setitem(security.SERVICE_DENIES, "dispatch", ("case.v1.opened.>", "case.v1.merged.>"))
    conf, passwords = security.write_embedded_config(tmp_path / "var", service_bindings)
    srv = embedded.nats_server(tmp_path / "nats", config=conf)
    srv.start()
    url = embedded.nats_url(srv)
    CREDENTIALS[url] = passwords
    try:
        await provision_streams(url, connect_opts=login(url, security.OPERATOR))
        yield (
            srv,
            Settings(
                nats_url=url,
                mongo_url=mongo_url,
                db_prefix=f"t{uuid.uuid4().hex[:10]}_",
                var_dir=tmp_path / "var",
                city_dir=DEMO_CITY,
                max_deliver=3,
                store_tx_lock_dir=tmp_path / "locks",
            ),
        )
    finally:
        srv.stop()
        CREDENTIALS.pop(url, None)


async def test_a_refused_publish_is_dead_lettered_counted_and_the_connection_survives(narrowed):
    srv, settings = narrowed
    escalated = MerchantEscalated.model_validate(MerchantEscalated.example())
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake", "dispatch")) as rts:
        dispatch = rts["dispatch"]
        await publish(settings.nats_url, escalated.subject_for(), escalated.to_json(), msg_id=escalated.event_id)
        (letter,) = await eventually(lambda: bus.on("dlq.v1.dispatch"), timeout=30)
        assert letter["original_subject"] == escalated.subject_for()
        assert letter["error"].startswith("publish to case.v1.opened.CD refused by the server: ")
        assert "permissions violation" in letter["error"]
        assert letter["deliveries"] == 1  # at once: no retry could have succeeded
        refused = dispatch.metrics.registry.get_sample_value(
            "xiuhua_publish_refused_total", {"service": "dispatch", "consumer": "dispatch-merchants"}
        )
        assert refused == 1
        entry = await dispatch.store["ledger"].find_one({"refused": {"$exists": True}})
        assert entry["published"] and "permissions violation" in entry["refused"]

        # The same connection goes on: a grid report's case (opened by intake) is dispatched by dispatch.
        await publish(settings.nats_url, "report.v1.in.grid", GRID, msg_id="grid:REF-1")
        await eventually(lambda: bus.on("case.v1.dispatched."), timeout=30)
        assert dispatch.broker.config.connection_state.connection.is_connected
        assert len(bus.on("dlq.")) == 1
    log = srv.log_path.read_text(errors="replace")
    assert log.count("Publish Violation") == 1, log[-2000:]  # one try: not a retry loop
