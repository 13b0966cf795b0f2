"""Notify started over what the build with two case consumers left: the alert consumer (`notify-cases`) and the
bulletin's (`notify-bulletin-cases`) at their own positions, notify's views of the cases apart (`alert_cases`), the
bulletin's records without them. Nothing is planned twice or skipped, nothing counted twice, and the older views
serve the warnings of the cases they describe."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

from nats.js.errors import NotFoundError

from contracts.cases import CaseClosed, CaseOverdue
from contracts.values import UnitRef, UnitRole
from services.notify.bulletin.projection import CASES as BULLETIN_CASES
from services.notify.bulletin.projection import WEEKS
from services.notify.bulletin.weeks import week_of
from services.notify.handover import CONSUMER as FORMER
from services.notify.handover import RETIRED
from services.notify.store import CASES as ALERT_CASES
from services.notify.store import DELIVERIES
from tests.helpers import connect, eventually, publish
from tests.helpers.bulletin import BULLETIN_ONLY
from tests.helpers.channels import receiver
from tests.helpers.notify import CASE_CONSUMER, T0, alert_city, all_acknowledged, dispatched, notify, planned
from xiuhua.city import City
from xiuhua.city.alerts import AlertRule
from xiuhua.clock import FrozenClock
from xiuhua.service import running
from xiuhua.settings import Settings
from xiuhua.store import Store

ENF = UnitRef(unit_id="CD-ENF", name="城东综合执法中队", role=UnitRole.enforcement)


async def _publish(settings: Settings, event: Any) -> None:
    await publish(settings.nats_url, event.subject_for(), json.loads(event.to_json()), msg_id=event.event_id)


async def _former_alert_consumer_at(settings: Settings, acknowledged: int) -> None:
    """The former alert consumer as the older build left it: the first `acknowledged` case events taken."""
    nc = await connect(settings.nats_url, "notify")
    try:
        sub = await nc.jetstream().pull_subscribe("case.v1.>", durable=FORMER, stream="XH_CASES")
        for msg in await sub.fetch(acknowledged, timeout=5) if acknowledged else []:
            await msg.ack_sync()
        await sub.unsubscribe()
    finally:
        await nc.close()


async def _former_exists(settings: Settings) -> bool:
    nc = await connect(settings.nats_url, "notify")
    try:
        await nc.jetstream().consumer_info("XH_CASES", FORMER)
        return True
    except NotFoundError:
        return False
    finally:
        await nc.close()


async def _cases(rt: Any, case_id: str) -> set[str]:
    return {d["kind"] async for d in rt.store[DELIVERIES].find({"case_id": case_id})}


async def test_the_former_alert_consumer_plans_what_it_had_not_and_then_retires(settings, city: City) -> None:
    # The older build's bulletin consumer folded all four dispatches; its alert consumer planned the first two.
    events = [dispatched(f"C-H{i}") for i in range(1, 5)]
    for ev in events:
        await _publish(settings, ev)
    async with running(BULLETIN_ONLY, settings, clock=FrozenClock(T0)) as older:
        await eventually(lambda: all_acknowledged(settings, CASE_CONSUMER))
        week = week_of(events[0].occurred_at)
        assert (await older.store[WEEKS].find_one({"_id": week}))["dispatched"] == 4
    await _former_alert_consumer_at(settings, 2)
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/h")), clock) as (rt, _):
        # The alerts the former consumer had not planned are planned now, the others not again.
        await planned(rt, 2)
        await eventually(lambda: all_acknowledged(settings, FORMER))
        assert [await _cases(rt, f"C-H{i}") for i in range(1, 5)] == [set(), set(), {"new_case"}, {"new_case"}]
        assert not await rt.ledger.seen([RETIRED])  # nothing past the end it found yet
        later = dispatched("C-H5")
        await _publish(settings, later)
        await planned(rt, 3)
        await eventually(lambda: rt.ledger.seen([RETIRED]))
        record = await rt.store[BULLETIN_CASES].find_one({"_id": "C-H5"})
        assert record["unit_id"] == "CD-SAN" and record["cooperating"] == []  # planning's view in the record
        assert await rt.store[ALERT_CASES].find_one({"_id": "C-H5"}) is None
        assert (await rt.store[WEEKS].find_one({"_id": week}))["dispatched"] == 5  # nothing counted twice
    # Retired for good: another start deletes it from the server, and the case consumer alone plans and counts.
    assert await _former_exists(settings)
    async with notify(settings, alert_city(city, r.url("/h")), clock) as (rt, _):
        assert not await _former_exists(settings)
        assert FORMER not in {c.sub.name for c in rt.consumers}
        await _publish(settings, dispatched("C-H6"))
        await planned(rt, 4)
        assert (await rt.store[WEEKS].find_one({"_id": week}))["dispatched"] == 6
        assert len([d async for d in rt.store[DELIVERIES].find({})]) == 4
    async with notify(settings, alert_city(city, r.url("/h")), clock) as (rt, _):
        assert not await _former_exists(settings)  # and it is not created again


async def test_a_consumer_the_older_build_left_unretired_is_taken_up_on_every_start(settings, city: City) -> None:
    # It existed, acknowledged nothing, and this build has not met it yet: it is pulled (and retires, having
    # nothing before the end it found); only the start after that deletes it.
    await _former_alert_consumer_at(settings, 0)
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/u")), clock) as (rt, _):
        assert FORMER in {c.sub.name for c in rt.consumers}
        await _publish(settings, dispatched("C-U1"))
        await planned(rt, 1)
        await eventually(lambda: rt.ledger.seen([RETIRED]))
        assert await _former_exists(settings)


async def test_a_fresh_deployment_never_creates_the_former_consumer(settings, city: City) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/f")), clock) as (rt, _):
        await _publish(settings, dispatched("C-F1"))
        await planned(rt, 1)
        assert FORMER not in {c.sub.name for c in rt.consumers}
        assert not await _former_exists(settings)  # the server delivers nothing to it
        assert await rt.ledger.seen([RETIRED])  # nothing to hand over
        assert await rt.store.count(ALERT_CASES) == 0  # the former way wrote no view


def _cooperating_city(city: City, hook: str) -> City:
    """Overdue alerts also to the cooperating units (their duty contacts, on the file channel)."""
    c = alert_city(city, hook)
    rule = AlertRule(kind="overdue", to=["cooperating_units"], duties=["duty"], channels=["file"], urgent=True)
    return dataclasses.replace(c, alerts=c.alerts.model_copy(update={"rules": [*c.alerts.rules, rule]}))


async def test_an_older_view_serves_the_warnings_of_its_case_until_a_dispatch_gives_the_record_one(
    settings, city: City
) -> None:
    # C-OLD was dispatched by the older build: its record holds no view, the view apart names a cooperating unit
    # and the place. Its overdue alert reaches that unit and says where; its closing dates the view for the purge.
    # C-RE, dispatched before too, is dispatched again now: the record takes the view, the older one is dated.
    live = Store(settings.mongo_url, settings.database("notify"))
    try:
        await live[BULLETIN_CASES].insert_many(
            [
                {"_id": "C-OLD", "status": "open", "unit_id": "CD-SAN", "category_code": "0201", "applied": ["e-old"]},
                {"_id": "C-RE", "status": "open", "unit_id": "CD-SAN", "category_code": "0201", "applied": ["e-re"]},
            ]
        )
        await live[ALERT_CASES].insert_many(
            [
                {
                    "_id": c,
                    "lead": "CD-SAN",
                    "lead_name": "城东环卫所",
                    "cooperating": ["CD-ENF"],
                    "street_code": "CD",
                    "category_code": "0201",
                    "urgency": "normal",
                    "address": "城东街道（解放路 18 号）",
                    "applied": [f"e-{c}"],
                }
                for c in ("C-OLD", "C-RE")
            ]
        )
    finally:
        await live.close()
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, _cooperating_city(city, r.url("/o")), clock) as (rt, _):
        await _publish(settings, CaseOverdue(case_id="C-OLD", street_code="CD", unit_id="CD-SAN", due_at=T0))
        docs = await planned(rt, 2, case_id="C-OLD")
        assert {d["unit_id"] for d in docs} == {"CD-SAN", "CD-ENF"}  # the cooperating unit from the older view
        assert all("位置：城东街道（解放路 18 号）" in d["message"]["lines"] for d in docs)
        closed_at = T0 + timedelta(days=1)
        await _publish(
            settings,
            CaseClosed(
                case_id="C-OLD",
                street_code="CD",
                unit_id="CD-SAN",
                on_time=True,
                closed_by="verification",
                occurred_at=closed_at,
            ),
        )
        again = dispatched("C-RE").model_copy(
            update={"lead_unit": ENF, "dispatch_round": 2, "occurred_at": T0 + timedelta(hours=2)}
        )
        await _publish(settings, again)

        async def dated() -> dict[str, Any] | None:
            views = {d["_id"]: d.get("closed_s") async for d in rt.store[ALERT_CASES].find({})}
            return views if None not in views.values() and len(views) == 2 else None

        views = await eventually(dated)
        assert views == {"C-OLD": closed_at.timestamp(), "C-RE": again.occurred_at.timestamp()}
        record = await rt.store[BULLETIN_CASES].find_one({"_id": "C-RE"})
        assert record["unit_id"] == "CD-ENF" and record["cooperating"] == []
        assert "cooperating" not in await rt.store[BULLETIN_CASES].find_one({"_id": "C-OLD"})


async def test_older_views_of_cases_the_record_describes_now_are_dated_once_handed_over(settings, city: City) -> None:
    # A view the former alert consumer wrote for a dispatch the case consumer also folded (both took it during the
    # handover) is read by nothing: dated when the handover is over, so the purge takes it a horizon later. A view
    # of a case whose record holds none stays, undated: its case is open.
    live = Store(settings.mongo_url, settings.database("notify"))
    try:
        await live[BULLETIN_CASES].insert_many(
            [
                {"_id": "C-BOTH", "status": "open", "unit_id": "CD-SAN", "cooperating": [], "street_code": "CD"},
                {"_id": "C-OPEN", "status": "open", "unit_id": "CD-SAN"},
            ]
        )
        await live[ALERT_CASES].insert_many([{"_id": "C-BOTH", "lead": "CD-SAN"}, {"_id": "C-OPEN", "lead": "CD-SAN"}])
    finally:
        await live.close()
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/s")), clock) as (rt, _):
        await _publish(settings, dispatched("C-NEW"))
        await eventually(lambda: rt.ledger.seen(["repaired:alert-views-superseded"]))
        views = {d["_id"]: d.get("closed_s") async for d in rt.store[ALERT_CASES].find({})}
        assert views == {"C-BOTH": T0.timestamp(), "C-OPEN": None}
