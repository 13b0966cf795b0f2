"""The runtime's consumer on a real bus and store: poison and failing handlers end in the DLQ, nothing blocks."""

from __future__ import annotations

import base64
import json

from contracts.cases import CaseDispatched
from tests.conftest import eventually
from tests.helpers import BusRecorder, publish
from xiuhua.consumer import Batch, Subscription
from xiuhua.service import ServiceSpec, running


async def test_poison_and_failing_messages_are_dead_lettered_while_the_rest_flows(settings, city):
    applied: list[str] = []

    async def handle(batch: Batch) -> None:
        for item in batch.items:
            if item.message.rule_id == "explode":
                raise RuntimeError("handler bug")
            applied.append(item.message.case_id)

    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [Subscription("probe-cases", "case.v1.>", handle)])
    good = CaseDispatched.model_validate(CaseDispatched.example())
    bad = good.model_copy(update={"rule_id": "explode", "case_id": "C-bad", "event_id": "e-bad"})
    async with BusRecorder(settings.nats_url) as bus, running(spec, settings, city=city):
        await publish(settings.nats_url, "case.v1.dispatched.CD", b"{not json", msg_id="poison-1")
        await publish(settings.nats_url, "case.v1.dispatched.CD", bad.to_json(), msg_id=bad.event_id)
        await publish(settings.nats_url, "case.v1.dispatched.CD", good.to_json(), msg_id=good.event_id)
        await publish(settings.nats_url, "case.v1.dispatched.CD", good.to_json(), msg_id=good.event_id + "x")
        letters = await eventually(lambda: len(bus.on("dlq.v1.probe")) == 2 and bus.on("dlq.v1.probe"), timeout=30)
    assert applied.count(good.case_id) == 2  # two distinct message ids: both applied, by design
    by_id = {letter["original_msg_id"]: letter for letter in letters}
    assert base64.b64decode(by_id["poison-1"]["payload_b64"]) == b"{not json"
    assert by_id["poison-1"]["deliveries"] == 1 and "ValidationError" in by_id["poison-1"]["error"]
    assert by_id["e-bad"]["deliveries"] == settings.max_deliver
    assert by_id["e-bad"]["error"] == "RuntimeError: handler bug"
    assert json.loads(base64.b64decode(by_id["e-bad"]["payload_b64"]))["case_id"] == "C-bad"
