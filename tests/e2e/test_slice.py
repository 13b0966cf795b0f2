"""The walking skeleton's slice on a real nats-server and a real store: report → case → dispatch → score → alert."""

from __future__ import annotations

import asyncio
from datetime import datetime

from tests.helpers import BusRecorder, eventually, patrol_report, publish, system


async def test_patrol_report_flows_to_dispatch_score_and_alert(settings):
    async with BusRecorder(settings.nats_url) as bus, system(settings) as rts:
        await publish(settings.nats_url, "report.v1.in.grid", patrol_report(), msg_id="grid:R-1")

        dispatched = await eventually(lambda: _one(bus.on("case.v1.dispatched.")))
        assert dispatched["lead_unit"]["unit_id"] == "CD-SAN"
        assert dispatched["rule_id"] == "default-by-category"
        assert dispatched["street_code"] == "CD"
        assert datetime.fromisoformat(dispatched["due_at"]) > datetime.fromisoformat(dispatched["occurred_at"])

        score = await eventually(lambda: _one(bus.on("score.v1.unit_updated")))
        assert score["unit_id"] == "CD-SAN" and score["counters"]["dispatched"] == 1

        delivered = await eventually(lambda: _one(bus.on("notify.v1.delivered")))
        assert delivered["case_id"] == dispatched["case_id"] and delivered["channel"] == "file"
        outbox = settings.var_dir / "outbox" / "cd-san.jsonl"
        assert dispatched["case_id"] in outbox.read_text()

        doc = await rts["scoring"].store["unit_periods"].find_one({"unit_id": "CD-SAN"})
        assert doc["dispatched"] == 1

        # The same report again, with a new message id (a resend by the app): nothing changes.
        await publish(settings.nats_url, "report.v1.in.grid", patrol_report(), msg_id="resend-1")
        # And the same message id again inside the duplicate window: JetStream drops it.
        await publish(settings.nats_url, "report.v1.in.grid", patrol_report(), msg_id="grid:R-1")
        await eventually(lambda: _raw_count(rts, 2))
        await asyncio.sleep(1.0)
        counts = bus.counts()
        assert counts["case.v1.opened"] == 1
        assert counts["case.v1.dispatched"] == 1
        assert counts["score.v1.unit_updated"] == 1
        assert counts["notify.v1.delivered"] == 1
        doc = await rts["scoring"].store["unit_periods"].find_one({"unit_id": "CD-SAN"})
        assert doc["dispatched"] == 1
        assert len([ln for ln in outbox.read_text().splitlines() if dispatched["case_id"] in ln]) == 1


async def test_malformed_report_is_rejected_with_reason_and_kept(settings):
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake",)) as rts:
        bad = patrol_report("R-bad")
        del bad["description"]
        bad["location"]["lat"] = 123.0
        await publish(settings.nats_url, "report.v1.in.grid", bad)
        await publish(settings.nats_url, "report.v1.in.grid", b"\xff\xfe not json")

        rejected = await eventually(lambda: len(bus.on("report.v1.rejected")) == 2 and bus.on("report.v1.rejected"))
        reasons = {tuple(sorted((r["code"], r["field"] or "") for r in rej["reasons"])) for rej in rejected}
        assert reasons == {
            (("missing_field", "description"), ("out_of_range", "location.lat")),
            (("invalid_utf8", ""),),
        }
        raws = [d async for d in rts["intake"].store["raw_reports"].find({"status": "rejected"})]
        assert len(raws) == 2
        assert {bytes(d["body"]) for d in raws} >= {b"\xff\xfe not json"}
        assert not bus.on("case.v1.")


def _one(items: list) -> object:
    return items[0] if items else None


async def _raw_count(rts, n: int) -> bool:
    return await rts["intake"].store.count("raw_reports", {}) >= n
