"""A unit's case system with a NATS client of its own (not `xiuhua.client`), as docs/integrating/permissions.md
tells it to connect: its user, its password and its own inbox prefix. It reads its dispatches through its durable
and sends a command, with no violation in the server's log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.commands import Acknowledge, Actor
from contracts.reports import GridReport


async def test_a_plain_nats_client_with_its_inbox_prefix_follows_its_durable(xiuhua, tmp_path: Path) -> None:
    login = xiuhua.login("units")
    assert login["inbox_prefix"] == "_INBOX_units" and login["user"] == "units"
    await xiuhua.publish(
        GridReport(
            report_id="OWN-1",
            reported_at=datetime.now(UTC),
            inspector_id="G-017",
            description="解放路口垃圾箱满溢，垃圾散落",
            category_code="0201",
            location={"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"},
        )
    )
    dispatched = await xiuhua.wait_for("case.v1.dispatched", lead_unit__unit_id="CD-SAN")
    nc = await nats.connect(xiuhua.nats_url, **login)
    try:
        js = nc.jetstream()
        config = ConsumerConfig(
            durable_name="units",
            filter_subject="case.v1.dispatched.>",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
        )
        await js.add_consumer("XH_CASES", config)
        pull = await js.pull_subscribe_bind(durable="units", stream="XH_CASES")
        (msg,) = await pull.fetch(1, timeout=10)
        assert json.loads(msg.data)["case_id"] == dispatched.case_id
        await msg.ack_sync()  # the acknowledgement's answer comes back under `_INBOX_units` too
        signed = Acknowledge(
            command_id="OWN-1:ack",
            case_id=dispatched.case_id,
            at=datetime.now(UTC),
            actor=Actor(unit_id="CD-SAN", role="sanitation", name="王强"),
        )
        ack = await js.publish(
            signed.subject(), signed.model_dump_json().encode(), headers={"Nats-Msg-Id": signed.command_id}
        )
        assert ack.stream == "XH_COMMANDS" and not ack.duplicate
    finally:
        await nc.close()
    acknowledged = await xiuhua.wait_for("case.v1.acknowledged", case_id=dispatched.case_id)
    assert acknowledged.unit_id == "CD-SAN"
    log = (tmp_path / "xiuhua-nats" / "nats-server.log").read_text(errors="replace")
    assert "Violation" not in log, [line for line in log.splitlines() if "Violation" in line][:5]
