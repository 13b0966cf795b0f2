"""The runtime's consumer on a real bus and store: poison and failing handlers end in the DLQ, nothing blocks."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import nats

from contracts.cases import CaseDispatched
from tests.helpers import BusRecorder, as_operator, connect, eventually, publish
from xiuhua.consumer import Batch, Subscription, count
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
    async with BusRecorder(settings.nats_url) as bus, running(spec, as_operator(settings), city=city):
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


async def test_redeliveries_that_were_not_failures_do_not_spend_the_dead_letter_budget(settings, city):
    """A message JetStream redelivered twice (an instance died holding it, the store was away) and then failing
    once is retried, not dead-lettered: the budget counts the handler's failures, not deliveries."""
    failures: list[int] = []
    applied: list[str] = []

    async def handle(batch: Batch) -> None:
        for item in batch.items:
            if not failures:
                failures.append(item.delivered)
                raise RuntimeError("fails once")
            applied.append(item.message.case_id)

    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [Subscription("probe-cases", "case.v1.>", handle)])
    event = CaseDispatched.model_validate(CaseDispatched.example())
    async with running(spec, as_operator(settings), city=city):
        pass  # creates the durable consumer with the default ack wait; the setting then changes it
    settings = settings.model_copy(update={"ack_wait": 7.0})
    async with running(spec, as_operator(settings), city=city):
        pass
    await publish(settings.nats_url, "case.v1.dispatched.CD", event.to_json(), msg_id=event.event_id)
    nc = await connect(settings.nats_url, "operator")
    try:
        js = nc.jetstream()
        info = await js.consumer_info("XH_CASES", "probe-cases")
        assert info.config.ack_wait == 7.0
        pulled = await js.pull_subscribe_bind("probe-cases", stream="XH_CASES")
        for _ in range(2):  # delivered and given back twice without a handler ever failing
            (msg,) = await pulled.fetch(1, timeout=5)
            await msg.nak()
        await pulled.unsubscribe()
    finally:
        await nc.close()
    async with BusRecorder(settings.nats_url) as bus, running(spec, as_operator(settings), city=city):
        await eventually(lambda: applied, timeout=30)
    assert failures == [3] and settings.max_deliver == 3  # the third delivery failed: one failure, not three
    assert applied == [event.case_id]
    assert bus.on("dlq.v1.probe") == []


async def test_a_message_declared_without_effect_leaves_no_ledger_entry_unless_it_emitted(settings, city):
    """`Batch.no_effect` spares the ledger a document for a message that changed nothing (telemetry); one that
    emitted an event keeps its entry, so its event is re-published from the ledger if it comes again."""
    seen: list[str] = []

    async def handle(batch: Batch) -> None:
        for item in batch.items:
            seen.append(item.message.case_id)
            batch.no_effect(item)
            if item.message.case_id == "C-emits":
                batch.emit(item, item.message.model_copy(update={"case_id": "C-emitted", "event_id": "e-out"}))

    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [Subscription("probe-quiet", "case.v1.>", handle)])
    base = CaseDispatched.model_validate(CaseDispatched.example())
    quiet = [base.model_copy(update={"case_id": f"C-quiet-{i}", "event_id": f"e-q{i}"}) for i in range(5)]
    loud = base.model_copy(update={"case_id": "C-emits", "event_id": "e-loud"})
    async with BusRecorder(settings.nats_url) as bus, running(spec, as_operator(settings), city=city) as rt:
        for event in [*quiet, loud]:
            await publish(settings.nats_url, "case.v1.dispatched.CD", event.to_json(), msg_id=event.event_id)
        # The emitted event comes back to the probe too (it consumes case.v1.>) and is a quiet one itself.
        await eventually(lambda: len(seen) >= 7, timeout=30)
        keys = [d["_id"] async for d in rt.store["ledger"].find({"_id": {"$regex": "^probe-quiet:"}})]
        assert keys == ["probe-quiet:e-loud"]
        # Applied once each (acknowledged, not redelivered), the emitted event published once.
        assert sorted(seen) == sorted(["C-emitted", *(e.case_id for e in [*quiet, loud])])
        assert [e["case_id"] for e in bus.on("case.v1.dispatched.") if e["case_id"] == "C-emitted"] == ["C-emitted"]


async def test_messages_a_subscription_ignores_are_acknowledged_without_touching_the_store(settings, city):
    seen: list[str] = []

    async def handle(batch: Batch) -> None:
        seen.extend(item.message.case_id for item in batch.items)

    def ignores(message: CaseDispatched) -> bool:
        return message.case_id.startswith("C-skip")

    spec = ServiceSpec(
        name="probe", subscriptions=lambda rt: [Subscription("probe-some", "case.v1.>", handle, ignores=ignores)]
    )
    base = CaseDispatched.model_validate(CaseDispatched.example())
    events = [
        base.model_copy(update={"case_id": f"C-{kind}-{i}", "event_id": f"e-{kind}{i}"})
        for i in range(3)
        for kind in ("skip", "keep")
    ]
    async with running(spec, as_operator(settings), city=city) as rt:
        for event in events:
            await publish(settings.nats_url, "case.v1.dispatched.CD", event.to_json(), msg_id=event.event_id)
        await eventually(lambda: len(seen) == 3, timeout=30)
        nc = await connect(settings.nats_url, "operator")
        try:
            info = await eventually(lambda: _drained(nc, "probe-some"), timeout=30)
        finally:
            await nc.close()
        assert info.num_ack_pending == 0 and info.num_redelivered == 0  # the ignored ones acknowledged, once
        assert sorted(seen) == [f"C-keep-{i}" for i in range(3)]
        keys = sorted([d["_id"] async for d in rt.store["ledger"].find({"_id": {"$regex": "^probe-some:"}})])
        assert keys == [f"probe-some:e-keep{i}" for i in range(3)]


async def test_types_a_subscription_skips_are_acknowledged_from_their_subject_without_decoding(settings, city):
    seen: list[str] = []

    async def handle(batch: Batch) -> None:
        seen.extend(item.message.case_id for item in batch.items)

    spec = ServiceSpec(
        name="probe",
        subscriptions=lambda rt: [
            Subscription("probe-typed", "case.v1.>", handle, skips_type=lambda kind: kind is not CaseDispatched)
        ],
    )
    dispatched = CaseDispatched.model_validate(CaseDispatched.example())
    async with BusRecorder(settings.nats_url) as bus, running(spec, as_operator(settings), city=city) as rt:
        # A body no model accepts, on a skipped type's subject: never parsed, so acknowledged, not dead-lettered.
        await publish(settings.nats_url, "case.v1.acknowledged.CD", b"{not json", msg_id="skipped-1")
        await publish(settings.nats_url, "case.v1.dispatched.CD", dispatched.to_json(), msg_id=dispatched.event_id)
        await eventually(lambda: seen == [dispatched.case_id], timeout=30)
        nc = await connect(settings.nats_url, "operator")
        try:
            info = await eventually(lambda: _drained(nc, "probe-typed"), timeout=30)
        finally:
            await nc.close()
        assert info.num_redelivered == 0 and not bus.on("dlq.v1.probe")
        keys = [d["_id"] async for d in rt.store["ledger"].find({"_id": {"$regex": "^probe-typed:"}})]
        assert keys == [f"probe-typed:{dispatched.event_id}"]
        skipped = rt.metrics.registry.get_sample_value(
            "xiuhua_messages_ignored_total", {"service": "probe", "consumer": "probe-typed"}
        )
        assert skipped == 1


async def _drained(nc: nats.NATS, durable: str):
    info = await nc.jetstream().consumer_info("XH_CASES", durable)
    return info if info.num_pending == 0 and info.num_ack_pending == 0 else None


async def test_a_stopping_instance_gives_back_the_messages_it_holds(settings, city):
    """An instance stopped while it holds messages it has not handled (lingering for more, or between a fetch and
    its handler) hands them back: the next instance gets them at once, not after the ack wait."""
    applied: list[str] = []

    async def handle(batch: Batch) -> None:
        applied.extend(item.message.case_id for item in batch.items)

    def probe(linger: float) -> ServiceSpec:
        return ServiceSpec(
            name="probe", subscriptions=lambda rt: [Subscription("probe-cases", "case.v1.>", handle, linger=linger)]
        )

    event = CaseDispatched.model_validate(CaseDispatched.example())
    async with running(probe(30.0), as_operator(settings), city=city):  # lingers longer than the test waits
        await publish(settings.nats_url, "case.v1.dispatched.CD", event.to_json(), msg_id=event.event_id)
        await eventually(lambda: _acks_pending(settings.nats_url, "probe-cases"), timeout=10)  # in hand
    assert applied == []
    started = time.monotonic()
    async with running(probe(0.0), as_operator(settings), city=city):
        await eventually(lambda: applied, timeout=settings.ack_wait)
    assert time.monotonic() - started < 10 < settings.ack_wait
    assert applied == [event.case_id]


async def _acks_pending(url: str, durable: str) -> int:
    nc = await connect(url, "operator")
    try:
        return (await nc.jetstream().consumer_info("XH_CASES", durable)).num_ack_pending
    finally:
        await nc.close()


async def test_the_sweeper_publishes_what_a_crash_left_in_the_outbox_once_it_is_old_enough(settings, city):
    from datetime import UTC, datetime, timedelta

    from xiuhua.bus import Outgoing
    from xiuhua.clock import FrozenClock

    clock = FrozenClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [])
    base = CaseDispatched.model_validate(CaseDispatched.example())
    left = base.model_copy(update={"case_id": "C-left", "event_id": "e-left"})
    fresh = base.model_copy(update={"case_id": "C-fresh", "event_id": "e-fresh"})
    async with (
        BusRecorder(settings.nats_url) as bus,
        running(spec, as_operator(settings), clock=clock, city=city) as rt,
    ):
        # Committed with their effects, never published (the process died before): the outbox holds them.
        await rt.store.in_transaction(lambda s: rt.ledger.record(s, [("probe:left", [Outgoing.of(left)])]))
        clock.advance(timedelta(seconds=20))
        await rt.store.in_transaction(lambda s: rt.ledger.record(s, [("probe:fresh", [Outgoing.of(fresh)])]))
        assert await rt.ledger.sweep() == 1  # the one older than 15 s; the fresh one may still be in flight
        await eventually(lambda: bus.on("case.v1.dispatched."), timeout=10)
        assert [e["case_id"] for e in bus.on("case.v1.dispatched.")] == ["C-left"]
        states = {d["_id"]: d["published"] async for d in rt.store["ledger"].find({"_id": {"$regex": "^probe:"}})}
        assert states == {"probe:left": True, "probe:fresh": False}
        assert await rt.ledger.sweep() == 0  # published once


async def test_a_first_delivery_of_a_message_applied_before_is_answered_from_the_ledger(settings, city):
    """A message applied before that JetStream delivers as new (a producer's resend after the bus's duplicate
    window, say) has no second effect: the ledger answers it, and the events it caused then are published
    again if they had not gone out."""
    from xiuhua.bus import Outgoing

    async def handle(batch: Batch) -> None:
        for item in batch.items:
            await batch_store["effects"].insert_one({"case_id": item.message.case_id}, session=batch.session)
            count(effects_counted)  # a business counter: counted once its batch commits

    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [Subscription("probe-once", "case.v1.>", handle)])
    base = CaseDispatched.model_validate(CaseDispatched.example())
    before = base.model_copy(update={"case_id": "C-before", "event_id": "e-before"})
    new = base.model_copy(update={"case_id": "C-new", "event_id": "e-new"})
    caused = base.model_copy(update={"case_id": "C-caused", "event_id": "e-caused"})
    async with BusRecorder(settings.nats_url) as bus, running(spec, as_operator(settings), city=city) as rt:
        batch_store = rt.store
        effects_counted = rt.metrics.counter("probe_effects", "Effects the probe's handler made")
        await rt.store.ensure_collections(["effects"])
        # Applied before, by an earlier life of this consumer: its entry holds what it caused, never published.
        await rt.store.in_transaction(lambda s: rt.ledger.record(s, [("probe-once:e-before", [Outgoing.of(caused)])]))
        for event in (before, new):
            await publish(settings.nats_url, "case.v1.dispatched.CD", event.to_json(), msg_id=event.event_id)
        await eventually(lambda: [e for e in bus.on("case.v1.dispatched.") if e["case_id"] == "C-caused"], timeout=30)
        nc = await connect(settings.nats_url, "operator")
        try:
            await eventually(lambda: _drained(nc, "probe-once"), timeout=30)
        finally:
            await nc.close()
        effects = sorted([d["case_id"] async for d in rt.store["effects"].find({})])
        # No second effect of C-before; C-caused, published again from the ledger, is a new message to the probe.
        assert effects == ["C-caused", "C-new"]
        # A first delivery goes to its transaction without looking: the ledger's key refused it, the transaction
        # (with the handler's effect) was rolled back, and the batch applied again looking first.
        labels = {"service": "probe", "consumer": "probe-once"}
        assert rt.metrics.registry.get_sample_value("xiuhua_batches_relooked_total", labels) >= 1
        # The handler ran in the refused attempt too; what it counted there was rolled back with it.
        assert rt.metrics.registry.get_sample_value("probe_effects_total") == len(effects) == 2
        # Marked published (together with other entries, a moment after the publish).
        assert await eventually(lambda: rt.store["ledger"].find_one({"_id": "probe-once:e-before", "published": True}))


async def test_a_redelivery_publishes_again_what_its_message_caused_from_an_entry_never_marked(settings, city):
    """A consumed message's ledger entry holds what it caused and is one document: never marked published. The
    message is acknowledged only after its events went out, so when the publish after the commit fails (as a
    crash there would leave it), its redelivery finds the entry and publishes them; a re-driven copy (a first
    delivery of the same message) finds the entry and publishes nothing; the sweeper never looks at it."""
    from datetime import timedelta

    from xiuhua.bus import Outgoing

    async def handle(batch: Batch) -> None:
        for item in batch.items:
            if item.message.case_id == "C-origin":  # what it causes comes to this consumer too: no effect
                await effects.insert_one({"delivered": item.delivered}, session=batch.session)
                batch.emit(item, caused)

    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [Subscription("probe-out", "case.v1.>", handle)])
    base = CaseDispatched.model_validate(CaseDispatched.example())
    origin = base.model_copy(update={"case_id": "C-origin", "event_id": "e-origin"})
    caused = base.model_copy(update={"case_id": "C-caused", "event_id": "e-caused"})
    async with BusRecorder(settings.nats_url) as bus, running(spec, as_operator(settings), city=city) as rt:
        await rt.store.ensure_collections(["effects"])
        effects = rt.store["effects"]
        send = rt.publisher.send
        failed: list[int] = []

        async def fails_once(items: object) -> None:
            outgoing = list(items)  # type: ignore[call-overload]
            if any(isinstance(o, Outgoing) and o.msg_id == "e-caused" for o in outgoing) and not failed:
                failed.append(1)
                raise TimeoutError("the bus went away after the commit")
            await send(outgoing)

        rt.publisher.send = fails_once  # type: ignore[method-assign]
        await publish(settings.nats_url, "case.v1.dispatched.CD", origin.to_json(), msg_id=origin.event_id)
        await eventually(lambda: [e for e in bus.on("case.v1.dispatched.") if e["case_id"] == "C-caused"], timeout=30)
        nc = await connect(settings.nats_url, "operator")
        try:
            await eventually(lambda: _drained(nc, "probe-out"), timeout=30)
            # A re-drive of the applied message: a first delivery of the same ledger key.
            await publish(settings.nats_url, "case.v1.dispatched.CD", origin.to_json(), msg_id="e-origin~r1")
            labels = {"service": "probe", "consumer": "probe-out"}
            # Found applied twice: by the redelivery, then by the re-driven copy.
            await eventually(
                lambda: rt.metrics.registry.get_sample_value("xiuhua_messages_duplicate_total", labels) == 2, timeout=30
            )
            await eventually(lambda: _drained(nc, "probe-out"), timeout=30)
        finally:
            await nc.close()
        assert failed == [1]
        # Applied once, by its first delivery; the redelivery and the copy were answered from the ledger.
        assert [d["delivered"] async for d in effects.find({})] == [1]
        caused_copies = [e for e in bus.on("case.v1.dispatched.") if e["case_id"] == "C-caused"]
        assert len(caused_copies) == 1  # published by the redelivery, not again for the re-driven copy
        entry = await rt.store["ledger"].find_one({"_id": "probe-out:e-origin"})
        assert entry is not None and "published" not in entry and [e["id"] for e in entry["events"]] == ["e-caused"]
        # One entry each for the message and for what it caused, which came to this consumer too.
        assert await rt.store.count("ledger", {"_id": {"$regex": "^probe-out:"}}) == 2
        await asyncio.sleep(0.5)  # past the moment marks are written
        assert "published" not in (await rt.store["ledger"].find_one({"_id": "probe-out:e-origin"}) or {})
        assert await rt.ledger.sweep(older_than=timedelta(0)) == 0


async def test_the_wait_before_a_message_is_applied_is_measured_from_its_storage(settings, city):
    """`xiuhua_message_wait_seconds`: a message stored while its consumer was away waited that long; one applied
    at once, a moment."""
    applied: list[str] = []

    async def handle(batch: Batch) -> None:
        applied.extend(item.message.case_id for item in batch.items)

    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [Subscription("probe-cases", "case.v1.>", handle)])
    first = CaseDispatched.model_validate(CaseDispatched.example())
    second = first.model_copy(update={"case_id": "C-later", "event_id": "e-later"})
    async with running(spec, as_operator(settings), city=city):
        pass  # the durable consumer exists from here on
    await publish(settings.nats_url, "case.v1.dispatched.CD", first.to_json(), msg_id=first.event_id)
    await asyncio.sleep(1.5)  # the consumer is away: the message waits in the stream
    async with running(spec, as_operator(settings), city=city) as rt:
        await eventually(lambda: applied == [first.case_id])
        await publish(settings.nats_url, "case.v1.dispatched.CD", second.to_json(), msg_id=second.event_id)
        await eventually(lambda: applied == [first.case_id, second.case_id])
        registry = rt.metrics.registry
        labels = {"service": "probe", "consumer": "probe-cases"}

        def bucket(le: str) -> float:
            return registry.get_sample_value("xiuhua_message_wait_seconds_bucket", {**labels, "le": le}) or 0.0

        assert registry.get_sample_value("xiuhua_message_wait_seconds_count", labels) == 2
        assert bucket("1.0") == 1  # the second, applied at once; the first waited 1.5 s and the start-up
        assert registry.get_sample_value("xiuhua_message_wait_seconds_sum", labels) >= 1.5


async def test_a_service_indexes_the_contracts_before_its_first_message(settings, city, monkeypatch):
    """Importing and indexing every contract module took about 45 ms on the first message a process decoded, which
    that message and those behind it waited (a fresh dispatch's first case): it happens at start-up now."""
    from contracts import registry

    calls: list[int] = []
    patterns = registry.patterns
    monkeypatch.setattr(registry, "patterns", lambda: calls.append(1) or patterns())
    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [])
    async with running(spec, as_operator(settings), city=city):
        assert calls
