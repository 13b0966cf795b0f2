"""Warnings, overdue and escalations on a real bus and store with an injected clock: each published once per case
and level, with two dispatch instances scanning at once and after a restart."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts.cases import CaseOpened
from services.dispatch.app import SPEC, of
from services.dispatch.case import TIMER_FIELD
from services.dispatch.store import index_legacy_timers
from tests.helpers import BusRecorder, eventually, publish
from xiuhua.clock import FrozenClock
from xiuhua.service import running

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=SH)  # Monday 09:00; a 4h case is due 14:30
TIMER_KINDS = ("case.v1.deadline_warning.", "case.v1.overdue.", "case.v1.escalated.")


def opened_case(city, case_id: str, code: str = "0201") -> CaseOpened:
    return CaseOpened(
        occurred_at=T0,
        correlation_id=f"grid:{case_id}",
        case_id=case_id,
        street_code="CD",
        source="grid",
        source_ref=case_id,
        category_code=code,
        description="垃圾箱满溢",
        place=city.areas.place_of_area("CD01"),
        reported_at=T0,
    )


def timer_events(bus: BusRecorder) -> list[tuple[str, str, int]]:
    """(case, kind, level) of every timer message seen on the bus, duplicates included."""
    out = []
    for prefix in TIMER_KINDS:
        for body in bus.on(prefix):
            out.append((body["case_id"], prefix.split(".")[2], body.get("level", 0)))
    return out


async def tick_both(rts) -> None:
    await asyncio.gather(*(of(rt).timers.tick() for rt in rts))


async def test_timers_fire_once_with_two_instances_and_after_a_restart(settings, city):
    clock = FrozenClock(T0)
    ids = [f"C-T{i}" for i in range(4)]
    async with BusRecorder(settings.nats_url) as bus:
        async with (
            running(SPEC, settings, clock=clock, city=city) as a,
            running(SPEC, settings, clock=clock, city=city) as b,
        ):
            for cid in ids:
                ev = opened_case(city, cid)
                await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)
            await eventually(lambda: len(bus.on("case.v1.dispatched.")) == len(ids), timeout=30)

            clock.set(datetime(2026, 11, 23, 13, 41, tzinfo=SH))  # just before 80 %
            await tick_both((a, b))
            assert timer_events(bus) == []

            clock.set(datetime(2026, 11, 23, 13, 42, tzinfo=SH))  # 80 %: the warning
            await tick_both((a, b))
            await tick_both((a, b))  # a second scan finds nothing new
            await eventually(lambda: len(timer_events(bus)) == len(ids))
            assert Counter(timer_events(bus)) == Counter({(c, "deadline_warning", 0): 1 for c in ids})

            clock.set(datetime(2026, 11, 23, 14, 30, tzinfo=SH))  # the deadline: overdue and level 1
            await tick_both((a, b))
            await eventually(lambda: len(timer_events(bus)) == 3 * len(ids))
            doc = await a.store["cases"].find_one({"_id": ids[0]})
            assert doc["timers_fired"] == ["warning:0", "overdue:0", "escalated:1"]
            assert doc["next_timer_at"] == datetime(2026, 11, 23, 16, 30, tzinfo=SH)
            assert doc[TIMER_FIELD] == datetime(2026, 11, 23, 16, 30, tzinfo=SH).timestamp()

        # Both instances stop; one starts again later and scans a clock far past every level.
        clock.set(datetime(2026, 11, 26, 9, 0, tzinfo=SH))
        async with running(SPEC, settings, clock=clock, city=city) as c:
            await of(c).timers.tick()
            await of(c).timers.tick()
            await eventually(lambda: len(timer_events(bus)) == 5 * len(ids))
            await asyncio.sleep(0.5)
        seen = Counter(timer_events(bus))
        expected = {
            (cid, kind, lvl): 1
            for cid in ids
            for kind, lvl in (
                ("deadline_warning", 0),
                ("overdue", 0),
                ("escalated", 1),
                ("escalated", 2),
                ("escalated", 3),
            )
        }
        assert seen == Counter(expected)
        esc = [e for e in bus.on("case.v1.escalated.") if e["case_id"] == ids[0]]
        assert sorted(e["level"] for e in esc) == [1, 2, 3]
        assert all(e["unit_id"] == "CD-SAN" and e["due_at"].startswith("2026-11-23T06:30") for e in esc)


async def test_resolution_stops_the_timers_and_an_extension_moves_them(settings, city):
    clock = FrozenClock(T0)
    centre = {"unit_id": "XH-CC", "role": "command_centre", "name": "值班长"}
    lead = {"unit_id": "CD-SAN", "role": "sanitation", "name": "王强"}

    def command(action: str, cid: str, n: int, actor: dict, **extra) -> dict:
        return {"command_id": f"{cid}-{action}-{n}", "case_id": cid, "actor": actor, "at": T0.isoformat(), **extra}

    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=clock, city=city) as rt:
        for cid in ("C-R", "C-X"):
            ev = opened_case(city, cid)
            await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)
        await eventually(lambda: len(bus.on("case.v1.dispatched.")) == 2, timeout=30)
        for cid in ("C-R", "C-X"):
            await publish(settings.nats_url, "cmd.v1.case.acknowledge", command("acknowledge", cid, 1, lead))
        await eventually(lambda: len(bus.on("case.v1.acknowledged.")) == 2)
        await publish(settings.nats_url, "cmd.v1.case.resolve", command("resolve", "C-R", 1, lead, note="已清运"))
        await publish(
            settings.nats_url,
            "cmd.v1.case.request_extension",
            command("request_extension", "C-X", 1, lead, hours=8, reason="需协调"),
        )
        await eventually(lambda: bus.on("case.v1.resolved.") and bus.on("case.v1.extension_requested."))
        await publish(
            settings.nats_url, "cmd.v1.case.approve_extension", command("approve_extension", "C-X", 1, centre)
        )
        approved = await eventually(lambda: bus.on("case.v1.extension_approved."))
        assert approved[0]["due_at"] == "2026-11-24T07:00:00Z"  # Tuesday 15:00 in Shanghai

        clock.set(datetime(2026, 11, 23, 15, 0, tzinfo=SH))  # past the original deadline (14:30)
        await of(rt).timers.tick()
        await asyncio.sleep(0.5)
        assert timer_events(bus) == []  # C-R waits for verification; C-X's deadline moved to Tuesday 15:00

        clock.set(datetime(2026, 11, 24, 15, 0, tzinfo=SH))
        await of(rt).timers.tick()
        await eventually(lambda: len(timer_events(bus)) == 3)
        assert sorted(timer_events(bus)) == [
            ("C-X", "deadline_warning", 0),
            ("C-X", "escalated", 1),
            ("C-X", "overdue", 0),
        ]
        warning = bus.on("case.v1.deadline_warning.")[0]
        assert warning["occurred_at"] == "2026-11-24T03:06:00Z"  # 80 % of 12 working hours: Tuesday 11:06
        assert bus.on("case.v1.overdue.")[0]["due_at"] == "2026-11-24T07:00:00Z"


class _ScanThenCommand:
    """The real `cases` collection, except that the timer scan (the find on `next_timer_s`) runs `race` once,
    right after it has read the due cases: a command that commits while the timer loop is between its scan and
    its publish."""

    def __init__(self, col: Any, race: Callable[[], Awaitable[None]]) -> None:
        self._col, self._race = col, race

    def __getattr__(self, name: str) -> Any:
        return getattr(self._col, name)

    def find(self, query: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        cursor = self._col.find(query, *args, **kwargs)
        if query and TIMER_FIELD in query and self._race is not None:
            race, self._race = self._race, None
            return _CursorThen(cursor, race)
        return cursor


class _CursorThen:
    def __init__(self, cursor: Any, then: Callable[[], Awaitable[None]]) -> None:
        self._cursor, self._then = cursor, then

    def sort(self, *args: Any, **kwargs: Any) -> _CursorThen:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def limit(self, n: int) -> _CursorThen:
        self._cursor = self._cursor.limit(n)
        return self

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        docs = [d async for d in self._cursor]
        await self._then()
        for d in docs:
            yield d


class _Db:
    def __init__(self, db: Any, cases: _ScanThenCommand) -> None:
        self._db, self._cases = db, cases

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def __getitem__(self, name: str) -> Any:
        return self._cases if name == "cases" else self._db[name]


@pytest.mark.parametrize("action", ["resolve", "cancel", "approve_extension"])
async def test_a_timer_never_publishes_for_a_case_a_command_moved_on_after_the_scan(settings, city, action):
    """The timer loop reads the due cases, then a command resolves / cancels the case or approves an extension
    (committed by the running consumer), then the loop goes on: it must publish nothing for the old version."""
    quiet = dataclasses.replace(city, calendar=city.calendar.model_copy(update={"timer_interval_s": 3600.0}))
    clock = FrozenClock(T0)
    lead = {"unit_id": "CD-SAN", "role": "sanitation", "name": "王强"}
    centre = {"unit_id": "XH-CC", "role": "command_centre", "name": "值班长"}

    def command(name: str, actor: dict, **extra: Any) -> dict:
        return {"command_id": f"race-{name}", "case_id": "C-RACE", "actor": actor, "at": T0.isoformat(), **extra}

    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=clock, city=quiet) as rt:
        ev = opened_case(city, "C-RACE")
        await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)
        await eventually(lambda: bus.on("case.v1.dispatched."), timeout=30)
        await publish(settings.nats_url, "cmd.v1.case.acknowledge", command("acknowledge", lead))
        await eventually(lambda: bus.on("case.v1.acknowledged."))
        if action == "approve_extension":
            await publish(
                settings.nats_url,
                "cmd.v1.case.request_extension",
                command("request_extension", lead, hours=8, reason="需协调"),
            )
            await eventually(lambda: bus.on("case.v1.extension_requested."))
        cases = rt.store["cases"]
        before = await cases.find_one({"_id": "C-RACE"})
        racing = {
            "resolve": ("resolve", lead, {"note": "已清运"}),
            "cancel": ("cancel", centre, {"reason": "重复上报"}),
            "approve_extension": ("approve_extension", centre, {}),
        }[action]

        async def race() -> None:
            name, actor, extra = racing
            await publish(settings.nats_url, f"cmd.v1.case.{name}", command(name, actor, **extra))

            async def moved_on() -> bool:
                doc = await cases.find_one({"_id": "C-RACE"})
                return doc["version"] > before["version"]

            await eventually(moved_on)

        # Monday 14:30: the warning (13:42), overdue and escalation level 1 of the 4h deadline have all fallen due.
        clock.set(datetime(2026, 11, 23, 14, 30, tzinfo=SH))
        rt.store.db = _Db(rt.store.db, _ScanThenCommand(rt.store.db["cases"], race))
        published = await of(rt).timers.tick()
        await of(rt).timers.tick()  # and a scan after the command finds nothing either
        await asyncio.sleep(0.5)
        assert (published, timer_events(bus)) == (0, [])
        doc = await cases.find_one({"_id": "C-RACE"})
        assert doc["version"] == before["version"] + 1 and doc["timers_fired"] == []
        if action == "approve_extension":  # the moved deadline still runs: Tuesday 15:00, warned at 11:06
            assert doc["state"] == "acknowledged"
            assert doc["next_timer_at"] == datetime(2026, 11, 24, 11, 6, tzinfo=SH)
        else:
            assert "next_timer_at" not in doc and TIMER_FIELD not in doc


async def test_timers_of_cases_written_by_an_older_build_still_fire(settings, city):
    """An older build stored only `next_timer_at`: such cases get `next_timer_s` when dispatch starts, and from
    the periodic repair for those an instance not yet upgraded writes while this one runs."""
    clock = FrozenClock(T0)
    ids = ("C-OLD1", "C-OLD2")

    async def as_older_build(rt: Any, case_id: str) -> None:
        await rt.store["cases"].update_one({"_id": case_id}, {"$unset": {TIMER_FIELD: ""}})

    async with BusRecorder(settings.nats_url) as bus:
        async with running(SPEC, settings, clock=clock, city=city) as rt:
            for cid in ids:
                ev = opened_case(city, cid)
                await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)
            await eventually(lambda: len(bus.on("case.v1.dispatched.")) == 2, timeout=30)
            await as_older_build(rt, "C-OLD1")
        async with running(SPEC, settings, clock=clock, city=city) as rt:
            doc = await rt.store["cases"].find_one({"_id": "C-OLD1"})
            assert doc[TIMER_FIELD] == datetime(2026, 11, 23, 13, 42, tzinfo=SH).timestamp()  # given at start
            clock.set(datetime(2026, 11, 23, 13, 42, tzinfo=SH))
            await of(rt).timers.tick()
            await eventually(lambda: len(timer_events(bus)) == 2)

            await as_older_build(rt, "C-OLD2")  # written meanwhile by an instance of the older build
            clock.set(datetime(2026, 11, 23, 14, 30, tzinfo=SH))
            await of(rt).timers.tick()
            await eventually(lambda: Counter(c for c, _, _ in timer_events(bus)) == {"C-OLD1": 3, "C-OLD2": 1})
            assert await index_legacy_timers(rt.store["cases"]) == 1
            await of(rt).timers.tick()
            await eventually(lambda: len(timer_events(bus)) == 6)
        fired = (("deadline_warning", 0), ("overdue", 0), ("escalated", 1))
        assert Counter(timer_events(bus)) == Counter({(c, kind, lvl): 1 for c in ids for kind, lvl in fired})


async def test_a_batch_of_openings_dispatches_each_case_once(settings, city):
    # On the stream before dispatch starts, so they come in one batch: three cases, one of them sent twice under
    # two message ids (a producer's resend after the duplicate window), one already kept from an earlier batch.
    clock = FrozenClock(T0)
    first = opened_case(city, "C-B0")
    async with BusRecorder(settings.nats_url) as bus:
        async with running(SPEC, settings, clock=clock, city=city):
            await publish(settings.nats_url, first.subject_for(), first.to_json(), msg_id=first.event_id)
            await eventually(lambda: len(bus.on("case.v1.dispatched.")) == 1, timeout=30)
        again = [first, opened_case(city, "C-B1"), opened_case(city, "C-B2")]
        again.append(again[1].model_copy(update={"event_id": "resent-B1"}))
        for ev in again:
            await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=f"{ev.event_id}-2")
        async with running(SPEC, settings, clock=clock, city=city) as rt:
            await eventually(lambda: len(bus.on("case.v1.dispatched.")) >= 3, timeout=30)
            await asyncio.sleep(0.5)
            assert sorted(e["case_id"] for e in bus.on("case.v1.dispatched.")) == ["C-B0", "C-B1", "C-B2"]
            assert sorted([d["_id"] async for d in rt.store["cases"].find({}, {"_id": 1})]) == ["C-B0", "C-B1", "C-B2"]
            # A small batch of first deliveries inserts without reading what is kept: C-B0's insert was refused
            # and the batch applied again, reading.
            labels = {"service": "dispatch", "consumer": "dispatch-opened"}
            assert rt.metrics.registry.get_sample_value("xiuhua_batches_relooked_total", labels) >= 1
