"""A report that opened, joined or was transferred to a case is recorded by its raw copy under its source reference,
not by a ledger entry: the copy refuses a second report with the reference and keeps what the report published,
which its redelivery publishes again with the same ids (the stream drops the copy); another message with the
reference is a duplicate, and the same message delivered anew (a re-drive) publishes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from services.intake.app import SPEC
from tests.helpers import BusRecorder, connect, eventually, publish
from xiuhua.bus import Outgoing
from xiuhua.clock import FrozenClock
from xiuhua.service import Runtime, running

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
CONSUMER = "intake-reports"


def _grid(report_id: str, lng: float = 120.155, category: str = "0201") -> dict[str, Any]:
    return {
        "report_id": report_id,
        "reported_at": (NOW - timedelta(minutes=1)).isoformat(),
        "inspector_id": "G-1",
        "description": "垃圾箱满溢",
        "category_code": category,
        "location": {"lng": lng, "lat": 30.255},
    }


def fail_once(rt: Runtime, prefix: str, *, after_sending: bool, then: Any = None) -> list[str]:
    """Make the first publish of an event under `prefix` fail, before or after it reached the bus (a crash there);
    returns the ids of the events that failed so. `then` runs at the failure (the clock moved on, say)."""
    send = rt.publisher.send
    failed: list[str] = []

    async def sending(items: Iterable[Outgoing]) -> None:
        out = list(items)
        ours = [o.msg_id for o in out if o.subject.startswith(prefix)]
        if ours and not failed:
            failed.extend(ours)
            if after_sending:
                await send(out)
            if then is not None:
                then()
            raise TimeoutError("the bus went away")
        await send(out)

    rt.publisher.send = sending  # type: ignore[method-assign]
    return failed


async def _drained(url: str) -> Any:
    nc = await connect(url, "operator")
    try:
        info = await nc.jetstream().consumer_info("XH_REPORTS", CONSUMER)
        return info if info.num_pending == 0 and info.num_ack_pending == 0 else None
    finally:
        await nc.close()


async def _stored(url: str, subjects: str) -> int:
    nc = await connect(url, "operator")
    try:
        info = await nc.jetstream().stream_info("XH_CASES", subjects_filter=subjects)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def _entries(rt: Runtime) -> int:
    return await rt.store.count("ledger", {"_id": {"$regex": f"^{CONSUMER}:"}})


async def test_an_opening_that_did_not_go_out_is_published_once_by_its_redelivery(settings) -> None:
    clock = FrozenClock(NOW)
    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=clock) as rt:
        failed = fail_once(rt, "case.v1.opened.", after_sending=False)
        await publish(settings.nats_url, "report.v1.in.grid", _grid("RD-1"), msg_id="rd-1")
        await eventually(lambda: bus.on("case.v1.opened."), timeout=30)
        await eventually(lambda: _drained(settings.nats_url), timeout=30)
        raw = await rt.store["raw_reports"].find_one({"_id": "grid:RD-1"})
        assert raw is not None and raw["status"] == "case"
        assert [e["id"] for e in raw["outbox"]["events"]] == failed
        assert raw["outbox"]["key"] == f"{CONSUMER}:rd-1" and raw["outbox"]["q"] >= 1
        # Published by the redelivery, from the raw copy: the opening the commit made, not a second case.
        opened = bus.on("case.v1.opened.")
        assert [e["event_id"] for e in opened] == failed and opened[0]["case_id"] == raw["case_id"]
        assert await rt.store.count("raw_reports") == 1  # no duplicate kept for the redelivery
        assert await rt.store.count("open_keys") == 1
        assert await _entries(rt) == 0
        assert await _stored(settings.nats_url, "case.v1.opened.>") == 1


async def test_a_merge_published_again_by_its_redelivery_is_dropped_by_the_stream_and_counted_once(settings) -> None:
    clock = FrozenClock(NOW)
    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=clock) as rt:
        await publish(settings.nats_url, "report.v1.in.grid", _grid("RD-2"), msg_id="rd-2")
        await eventually(lambda: bus.on("case.v1.opened."), timeout=30)
        failed = fail_once(rt, "case.v1.merged.", after_sending=True)  # out on the bus, the report not acknowledged
        await publish(settings.nats_url, "report.v1.in.grid", _grid("RD-3", lng=120.15503), msg_id="rd-3")
        await eventually(lambda: len(bus.on("case.v1.merged.")) == 2, timeout=30)
        await eventually(lambda: _drained(settings.nats_url), timeout=30)
        merged = bus.on("case.v1.merged.")
        assert [e["event_id"] for e in merged] == failed * 2  # two copies with one id on the wire
        assert [e["reporters_count"] for e in merged] == [2, 2]
        assert await _stored(settings.nats_url, "case.v1.merged.>") == 1
        case_id = merged[0]["case_id"]
        assert (await rt.store["open311_requests"].find_one({"_id": case_id}))["reporters"] == 2
        assert await rt.store.count("raw_reports") == 2
        assert await _entries(rt) == 0


async def test_a_redelivery_refused_as_too_old_now_still_publishes_what_it_caused(settings) -> None:
    """Applied while young enough, redelivered once the city's horizon has passed: the same message, so what its raw
    copy keeps is published again, not a rejection."""
    clock = FrozenClock(NOW)
    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=clock) as rt:
        failed = fail_once(rt, "case.v1.opened.", after_sending=False, then=lambda: clock.advance(timedelta(days=31)))
        await publish(settings.nats_url, "report.v1.in.grid", _grid("RD-4"), msg_id="rd-4")
        await eventually(lambda: bus.on("case.v1.opened."), timeout=30)
        await eventually(lambda: _drained(settings.nats_url), timeout=30)
        assert [e["event_id"] for e in bus.on("case.v1.opened.")] == failed
        assert not bus.on("report.v1.rejected")
        assert await rt.store.count("raw_reports") == 1
        # Another message with the same report, now too old, is refused as any would be.
        await publish(settings.nats_url, "report.v1.in.grid", _grid("RD-4"), msg_id="rd-4-again")
        await eventually(lambda: bus.on("report.v1.rejected"), timeout=30)
        assert await rt.store.count("raw_reports", {"status": "rejected"}) == 1


async def test_the_same_message_again_publishes_nothing_and_another_with_its_reference_is_a_duplicate(
    settings,
) -> None:
    clock = FrozenClock(NOW)
    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=clock) as rt:
        await publish(settings.nats_url, "report.v1.in.grid", _grid("RD-5"), msg_id="rd-5")
        await eventually(lambda: bus.on("case.v1.opened."), timeout=30)
        await eventually(lambda: _drained(settings.nats_url), timeout=30)
        # A re-drive counts as the original (`~r<n>` stripped): acknowledged without effect, nothing published.
        await publish(settings.nats_url, "report.v1.in.grid", _grid("RD-5"), msg_id="rd-5~r1")
        await eventually(lambda: _drained(settings.nats_url), timeout=30)
        assert len(bus.on("case.v1.opened.")) == 1
        assert await rt.store.count("raw_reports") == 1
        assert await _entries(rt) == 0
        # Under another id (a source's resend): a duplicate, kept and counted, nothing opened.
        await publish(settings.nats_url, "report.v1.in.grid", _grid("RD-5"), msg_id="rd-5-resent")
        await eventually(lambda: _drained(settings.nats_url), timeout=30)
        assert len(bus.on("case.v1.opened.")) == 1
        assert await rt.store.count("raw_reports", {"status": "duplicate"}) == 1
        assert await _entries(rt) == 1
