"""An opening is recorded by the case it keeps, not by a ledger entry: the case refuses a second insert and keeps
the dispatch it published, which a redelivered opening publishes again with its id (the stream drops the copy)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.dispatch.app import SPEC
from tests.helpers import BusRecorder, connect, eventually, publish
from tests.helpers.dispatch import T0, opened
from xiuhua.bus import Outgoing
from xiuhua.clock import FrozenClock
from xiuhua.service import Runtime, running


def opened_case(city, case_id: str):
    return opened(city, case_id=case_id, source_ref=case_id, correlation_id=f"grid:{case_id}", occurred_at=T0)


def fail_once(rt: Runtime, *, after_sending: bool) -> list[str]:
    """Make the first publish of a dispatch fail, before or after it reached the bus (a crash there); returns the
    ids of the dispatches that failed so."""
    send = rt.publisher.send
    failed: list[str] = []

    async def sending(items: Iterable[Outgoing]) -> None:
        out = list(items)
        dispatches = [o.msg_id for o in out if o.subject.startswith("case.v1.dispatched.")]
        if dispatches and not failed:
            failed.extend(dispatches)
            if after_sending:
                await send(out)
            raise TimeoutError("the bus went away")
        await send(out)

    rt.publisher.send = sending  # type: ignore[method-assign]
    return failed


async def _drained(url: str) -> Any:
    nc = await connect(url, "operator")
    try:
        info = await nc.jetstream().consumer_info("XH_CASES", "dispatch-opened")
        return info if info.num_pending == 0 and info.num_ack_pending == 0 else None
    finally:
        await nc.close()


async def _stored_dispatches(url: str) -> int:
    nc = await connect(url, "operator")
    try:
        info = await nc.jetstream().stream_info("XH_CASES", subjects_filter="case.v1.dispatched.>")
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def test_an_opening_whose_dispatch_did_not_go_out_is_dispatched_once_by_its_redelivery(settings, city):
    clock = FrozenClock(T0)
    ev = opened_case(city, "C-O1")
    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=clock, city=city) as rt:
        failed = fail_once(rt, after_sending=False)
        await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)
        await eventually(lambda: bus.on("case.v1.dispatched."), timeout=30)
        await eventually(lambda: _drained(settings.nats_url), timeout=30)
        case = await rt.store["cases"].find_one({"_id": "C-O1"})
        assert case is not None and [e["id"] for e in case["outbox"]["events"]] == failed
        assert case["outbox"]["q"] >= 1  # the opening's stream sequence: what tells its redelivery
        # Published by the redelivery, from the case: the dispatch the commit made, not a second one.
        assert [e["event_id"] for e in bus.on("case.v1.dispatched.")] == failed
        assert await rt.store.count("cases") == 1
        assert await rt.store.count("ledger", {"_id": {"$regex": "^dispatch-opened:"}}) == 0
        assert await _stored_dispatches(settings.nats_url) == 1


async def test_a_dispatch_published_again_by_a_redelivered_opening_is_dropped_by_the_stream(settings, city):
    clock = FrozenClock(T0)
    ev = opened_case(city, "C-O2")
    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=clock, city=city) as rt:
        failed = fail_once(rt, after_sending=True)  # out on the bus, the opening not acknowledged
        await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)
        await eventually(lambda: len(bus.on("case.v1.dispatched.")) == 2, timeout=30)
        await eventually(lambda: _drained(settings.nats_url), timeout=30)
        # Two copies with one id on the wire; the stream's duplicate window kept one.
        assert [e["event_id"] for e in bus.on("case.v1.dispatched.")] == failed * 2
        assert await _stored_dispatches(settings.nats_url) == 1
        assert await rt.store.count("cases") == 1
        assert await rt.store.count("ledger", {"_id": {"$regex": "^dispatch-opened:"}}) == 0


async def test_a_first_delivery_of_an_opening_kept_already_publishes_nothing(settings, city):
    """A copy of an opening under another message id (a resend after the duplicate window): the case refuses it and
    nothing is published again, while the original, acknowledged, is not coming back."""
    clock = FrozenClock(T0)
    ev = opened_case(city, "C-O3")
    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=clock, city=city) as rt:
        await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)
        await eventually(lambda: bus.on("case.v1.dispatched."), timeout=30)
        await eventually(lambda: _drained(settings.nats_url), timeout=30)
        await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=f"{ev.event_id}-resent")
        labels = {"service": "dispatch", "consumer": "dispatch-opened"}
        await eventually(lambda: rt.metrics.registry.get_sample_value("xiuhua_batches_relooked_total", labels))
        await eventually(lambda: _drained(settings.nats_url), timeout=30)
        assert len(bus.on("case.v1.dispatched.")) == 1
        assert await rt.store.count("cases") == 1
