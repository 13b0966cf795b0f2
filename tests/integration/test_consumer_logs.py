"""What a consumer logs about one message names it: a retried or failing message's line carries its msg_id,
correlation_id and case_id, with the service and consumer, in the JSON ops ship and the text people read."""

from __future__ import annotations

import json
import logging

from pymongo.errors import AutoReconnect

from contracts.cases import CaseDispatched
from tests.helpers import as_operator, eventually, publish
from xiuhua import logs
from xiuhua.consumer import Batch, Subscription
from xiuhua.service import ServiceSpec, running


async def test_a_retried_and_a_failing_message_are_logged_with_their_ids(settings, city, caplog) -> None:
    calls: dict[str, int] = {}

    async def handle(batch: Batch) -> None:
        for item in batch.items:
            case_id = item.message.case_id
            calls[case_id] = calls.get(case_id, 0) + 1
            if case_id == "C-away" and calls[case_id] == 1:
                raise AutoReconnect("store away")  # transient: back for retry, not a failure
            if case_id == "C-bad" and calls[case_id] == 1:
                raise ValueError("cannot apply")

    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [Subscription("probe-logs", "case.v1.>", handle)])
    base = CaseDispatched.model_validate(CaseDispatched.example())
    away = base.model_copy(update={"case_id": "C-away", "event_id": "e-away", "correlation_id": "grid:away"})
    bad = base.model_copy(update={"case_id": "C-bad", "event_id": "e-bad", "correlation_id": "grid:bad"})
    caplog.set_level(logging.WARNING, logger="xiuhua.consumer")
    async with running(spec, as_operator(settings), city=city):  # a test-only service: the operator's
        await publish(settings.nats_url, "case.v1.dispatched.CD", away.to_json(), msg_id=away.event_id)
        await eventually(lambda: calls.get("C-away", 0) >= 2, timeout=30)
        await publish(settings.nats_url, "case.v1.dispatched.CD", bad.to_json(), msg_id=bad.event_id)
        await eventually(lambda: calls.get("C-bad", 0) >= 2, timeout=30)

    def line_of(case_id: str, words: str) -> dict[str, object]:
        found = [r for r in caplog.records if words in r.getMessage() and logs.fields_of(r).get("case_id") == case_id]
        assert found, [r.getMessage() for r in caplog.records]
        return json.loads(logs.json_formatter().format(found[0]))

    retried = line_of("C-away", "back for retry")
    assert {k: retried[k] for k in logs.FIELDS} == {
        "service": "probe",
        "consumer": "probe-logs",
        "msg_id": "e-away",
        "correlation_id": "grid:away",
        "case_id": "C-away",
    }
    assert "AutoReconnect: store away" in str(retried["message"])
    failed = line_of("C-bad", "failed (1 of 3)")
    assert (failed["msg_id"], failed["consumer"]) == ("e-bad", "probe-logs")
    assert "ValueError: cannot apply" in str(failed["traceback"])
    text = logs.TextFormatter().format(next(r for r in caplog.records if "back for retry" in r.getMessage()))
    assert "[consumer=probe-logs msg_id=e-away correlation_id=grid:away case_id=C-away]" in text
