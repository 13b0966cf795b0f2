"""A recipient over its rate limit on a real bus and store: held alerts go out as one digest at the next token,
urgent alerts have a lane of their own, and the backlog metric returns to zero once a flood has drained.

As in test_notify_alerts_delivery, the worker is stopped and `deliver_due` driven by hand under a FrozenClock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from contracts.cases import CaseOpened
from contracts.envelope import Event
from contracts.values import ReportSource
from services.notify.bulletin.projection import CASES as BULLETIN_CASES
from services.notify.delivery_log import by_case, render
from services.notify.store import DELIVERIES
from services.notify.worker import DeliveryWorker
from tests.helpers import eventually
from tests.helpers.channels import receiver
from tests.helpers.notify import T0, alert_city, dispatched, notify, overdue, planned, send
from xiuhua.city.alerts import RateLimit
from xiuhua.clock import FrozenClock
from xiuhua.service import Runtime
from xiuhua.settings import Settings

RECIPIENT = {"recipient": "CD-SAN-duty", "channel": "webhook"}


async def pending(rt: Runtime) -> list[dict[str, Any]]:
    return sorted([d async for d in rt.store[DELIVERIES].find({"status": "pending"})], key=lambda d: d["case_id"])


async def arrive(settings: Settings, rt: Runtime, *events: Event, total: int) -> None:
    """Publish events as their producers would and wait until `total` deliveries are planned in all."""
    for event in events:
        await send(settings, event)
    await planned(rt, total)


async def handed_over(h: DeliveryWorker, nid: str) -> None:
    """Wait until planning has handed a delivery to the worker's next round (its transaction committed)."""
    await eventually(lambda: nid in h.planning._hints)


def backlog(rt: Runtime) -> float | None:
    return rt.metrics.registry.get_sample_value("xiuhua_alerts_backlog", RECIPIENT)


def oldest(rt: Runtime) -> float | None:
    return rt.metrics.registry.get_sample_value("xiuhua_alerts_backlog_oldest_seconds", RECIPIENT)


async def test_exactly_at_the_limit_none_held_one_past_held_until_the_token_then_one_digest(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/edge"), rate=RateLimit(capacity=3, per_minute=6))  # a token every 10 s
        async with notify(settings, c, clock) as (rt, h):
            await arrive(settings, rt, *(dispatched(f"C-E{i}") for i in range(3)), total=3)
            assert await h.deliver_due() == 3 and await pending(rt) == []  # exactly the capacity: nothing held
            assert await h.deliver_due() == 0 and backlog(rt) is None  # nobody was ever held
            await arrive(settings, rt, dispatched("C-E3"), total=4)
            assert await h.deliver_due() == 0
            (held,) = await pending(rt)  # one past: held, no attempt spent, until the next token
            assert (held["case_id"], held["deferred"], held["attempts"]) == ("C-E3", "rate_limit", 0)
            assert (held["held_at"], held["next_at"]) == (T0, T0 + timedelta(seconds=10))
            assert await h.deliver_due() == 0 and backlog(rt) == 1
            clock.set(T0 + timedelta(seconds=5))  # another comes while one is held: it waits for the same token
            await arrive(settings, rt, dispatched("C-E4"), total=5)
            assert await h.deliver_due() == 0
            assert [d["next_at"] for d in await pending(rt)] == [T0 + timedelta(seconds=10)] * 2
            clock.set(T0 + timedelta(seconds=10) - timedelta(milliseconds=1))
            assert await h.deliver_due() == 0 and len(r.got) == 3 and backlog(rt) == 2 and oldest(rt) == 9.999
            clock.set(T0 + timedelta(seconds=10))  # the refill: both in one digest, for one token
            assert await h.deliver_due() == 2 and len(r.got) == 4
            sent = r.got[3].json()
            assert sent["kind"] == "digest" and sent["case_ids"] == ["C-E3", "C-E4"]
            assert r.got[3].headers["x-xiuhua-notification-id"].startswith("digest:CD-SAN-duty:webhook:")
            assert await pending(rt) == [] and await h.deliver_due() == 0 and backlog(rt) == oldest(rt) == 0
            logged = await rt.store[DELIVERIES].find_one({"case_id": "C-E3"})
            assert logged["status"] == "delivered" and logged["digest"] == sent["notification_id"]
            assert logged["history"][-1]["digest"] == sent["notification_id"]
            (entry,) = await by_case(rt.store[DELIVERIES], "C-E3")
            assert (entry["digest"], entry["held_at"]) == (sent["notification_id"], T0.isoformat())
            assert "(in a digest)" in render("C-E3", [entry])
            clock.set(T0 + timedelta(seconds=20))  # the next alone after a token: itself, not a digest of one
            await arrive(settings, rt, dispatched("C-E5"), total=6)
            assert await h.deliver_due() == 1 and r.got[4].json()["case_id"] == "C-E5"


async def test_urgent_alerts_are_never_held_behind_routine_ones_in_either_order(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/lanes"), rate=RateLimit(capacity=1, per_minute=6))
        async with notify(settings, c, clock) as (rt, h):
            # Routine first: it takes the routine token and the next routine one is held; an urgent one still goes.
            await arrive(settings, rt, dispatched("C-R1"), dispatched("C-R2"), total=2)
            assert await h.deliver_due() == 1
            await arrive(settings, rt, overdue("C-U1"), total=3)
            assert await h.deliver_due() == 1 and r.got[-1].json()["case_id"] == "C-U1"
            assert [d["case_id"] for d in await pending(rt)] == ["C-R2"]
            # Urgent first, with both buckets full again: the urgent lane empties, routine still goes.
            clock.set(T0 + timedelta(hours=1))
            assert await h.deliver_due() == 1  # C-R2, held, alone at its token
            clock.set(T0 + timedelta(hours=2))
            await arrive(settings, rt, overdue("C-U2"), overdue("C-U3"), total=5)
            assert await h.deliver_due() == 1
            await arrive(settings, rt, dispatched("C-R3"), total=6)
            assert await h.deliver_due() == 1 and r.got[-1].json()["case_id"] == "C-R3"
            assert [d["case_id"] for d in await pending(rt)] == ["C-U3"]
            # Both in one round, whichever came first: each lane spends its own token.
            clock.set(T0 + timedelta(hours=3))
            assert await h.deliver_due() == 1  # C-U3
            clock.set(T0 + timedelta(hours=4))
            await arrive(
                settings, rt, dispatched("C-R4"), overdue("C-U4"), overdue("C-U5"), dispatched("C-R5"), total=10
            )
            assert await h.deliver_due() == 2
            assert sorted(g.json()["case_id"] for g in r.got[-2:]) == ["C-R4", "C-U4"]
            assert [d["case_id"] for d in await pending(rt)] == ["C-R5", "C-U5"]


async def test_a_flood_drains_in_one_digest_a_refill_and_the_backlog_returns_to_zero(settings, city) -> None:
    clock = FrozenClock(T0)
    grid, grid2 = [a for a in city.areas.of_level("grid") if city.areas.chain(a.code)["street"].code == "CD"][:2]
    place, place2 = city.areas.place_of_area(grid.code), city.areas.place_of_area(grid2.code)
    async with receiver() as r:
        c = alert_city(city, r.url("/flood"), rate=RateLimit(capacity=5, per_minute=6))
        async with notify(settings, c, clock) as (rt, h):
            # The most pressing of the flood (nearest deadline) comes from an older build's dispatch, without its place:
            # the digest names it as its opening gave it. The next one's dispatch says where it is.
            await send(
                settings,
                CaseOpened(
                    case_id="C-F29",
                    street_code="CD",
                    source=ReportSource.grid,
                    source_ref="g-29",
                    category_code="0201",
                    description="垃圾满溢",
                    place=place,
                    reported_at=T0,
                ),
            )
            await eventually(lambda: rt.store[BULLETIN_CASES].find_one({"_id": "C-F29"}))
            for i in range(30):
                due = T0 + timedelta(hours={29: 1, 28: 2}.get(i, 4), minutes=i)
                await send(
                    settings,
                    dispatched(f"C-F{i:02d}").model_copy(update={"due_at": due, "place": place2 if i == 28 else None}),
                )
            await planned(rt, 30)
            assert await h.deliver_due() == 5
            assert await h.deliver_due() == 0 and backlog(rt) == 25
            clock.set(T0 + timedelta(seconds=10))
            assert await h.deliver_due() == 25 and len(r.got) == 6
            sent = r.got[5].json()
            assert sent["counts"] == {"new_case": 25} and len(sent["case_ids"]) == 25
            assert sent["lines"][2] == (
                f"1. 新案件待处置 · C-F29 · 城东街道 {place.community_name} {grid.name} · "
                "城东环卫所 · 时限 2026-11-23 11:29"
            )
            assert sent["lines"][3] == (
                f"2. 新案件待处置 · C-F28 · 城东街道 {place2.community_name} {grid2.name} · "
                "城东环卫所 · 时限 2026-11-23 12:28"
            )
            assert await h.deliver_due() == 0 and backlog(rt) == 0
            # The flood goes on: what comes within a refill waits for the next one, never longer.
            clock.set(T0 + timedelta(seconds=12))
            await arrive(settings, rt, *(dispatched(f"C-G{i}") for i in range(10)), total=40)
            assert await h.deliver_due() == 0 and {d["next_at"] for d in await pending(rt)} == {
                T0 + timedelta(seconds=20)
            }
            assert await h.deliver_due() == 0 and backlog(rt) == 10
            clock.set(T0 + timedelta(seconds=20))
            assert await h.deliver_due() == 10 and len(r.got) == 7
            assert await h.deliver_due() == 0 and backlog(rt) == 0
            assert rt.metrics.registry.get_sample_value("xiuhua_alerts_digests_total", {"channel": "webhook"}) == 2
            assert (
                rt.metrics.registry.get_sample_value(
                    "xiuhua_alerts_sent_total", {"channel": "webhook", "kind": "new_case"}
                )
                == 40
            )
            assert {d["status"] async for d in rt.store[DELIVERIES].find({})} == {"delivered"}


async def test_a_digest_that_fails_is_retried_as_one(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/retry"), rate=RateLimit(capacity=1, per_minute=6))
        async with notify(settings, c, clock) as (rt, h):
            await arrive(settings, rt, *(dispatched(f"C-T{i}") for i in range(3)), total=3)
            assert await h.deliver_due() == 1
            clock.set(T0 + timedelta(seconds=10))
            r.fail_next = 1
            assert await h.deliver_due() == 0
            waiting = await pending(rt)
            assert len(waiting) == 2 and len({d["next_at"] for d in waiting}) == 1  # one back-off for both
            assert all(d["attempts"] == 1 and d["held_at"] == T0 and "digest" not in d for d in waiting)
            clock.set(waiting[0]["next_at"] + timedelta(seconds=10))
            assert await h.deliver_due() == 2 and r.got[-1].json()["case_ids"] == ["C-T1", "C-T2"]


async def test_a_digest_spends_one_token_however_many_the_bucket_holds_by_then(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/late"), rate=RateLimit(capacity=3, per_minute=6))
        async with notify(settings, c, clock) as (rt, h):
            await arrive(settings, rt, *(dispatched(f"C-L{i}") for i in range(6)), total=6)
            assert await h.deliver_due() == 3
            # The worker comes back late (2.5 tokens by then): one digest for the three held, for one token ...
            clock.set(T0 + timedelta(seconds=25))
            assert await h.deliver_due() == 3 and r.got[-1].json()["case_ids"] == ["C-L3", "C-L4", "C-L5"]
            # ... so the next alert still finds one.
            await arrive(settings, rt, dispatched("C-L6"), total=7)
            assert await h.deliver_due() == 1 and r.got[-1].json()["case_id"] == "C-L6"


async def test_a_fresh_alert_at_the_refill_joins_the_held_ones_in_their_digest(settings, city) -> None:
    # A round woken by planning looks only at what planning wrote; at the refill it must not send the fresh alert
    # alone with the token while the held ones wait another refill.
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/fresh"), rate=RateLimit(capacity=1, per_minute=6))
        async with notify(settings, c, clock) as (rt, h):
            await arrive(settings, rt, *(dispatched(f"C-N{i}") for i in range(2)), total=2)
            assert await h.deliver_due() == 1
            clock.set(T0 + timedelta(seconds=10))
            await arrive(settings, rt, dispatched("C-N2"), total=3)
            await handed_over(h, "new_case:C-N2:0:CD-SAN-duty:webhook")
            assert await h.deliver_due(scan=False) == 2
            assert r.got[-1].json()["case_ids"] == ["C-N1", "C-N2"] and await pending(rt) == []


async def test_a_lane_a_round_leaves_for_later_keeps_its_fresh_alerts_for_later_too(settings, city) -> None:
    # Two lanes' held alerts fall due together and a round takes only one of them (limit 4): a fresh alert of the
    # other lane waits with that lane's held ones for the next round, instead of taking their token alone.
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/later"), rate=RateLimit(capacity=1, per_minute=6))
        async with notify(settings, c, clock) as (rt, h):
            await arrive(
                settings, rt, *(e for i in range(4) for e in (dispatched(f"C-R{i}"), overdue(f"C-U{i}"))), total=8
            )
            assert await h.deliver_due() == 2  # one of each lane; three of each held until T0 + 10 s
            clock.set(T0 + timedelta(seconds=10))
            await arrive(settings, rt, overdue("C-U9"), total=9)
            await handed_over(h, "overdue:C-U9:0:CD-SAN-duty:webhook")
            assert await h.deliver_due(limit=4, scan=False) == 3
            assert r.got[-1].json()["case_ids"] == ["C-R1", "C-R2", "C-R3"]
            assert await h.deliver_due(limit=4) == 4
            assert r.got[-1].json()["case_ids"] == ["C-U1", "C-U2", "C-U3", "C-U9"] and await pending(rt) == []


class TickingClock(FrozenClock):
    """A frozen clock that moves on by `step` each time it is read."""

    step = timedelta(0)

    def now(self) -> datetime:
        t = super().now()
        self.advance(self.step)
        return t


async def test_a_round_counts_tokens_at_the_moment_it_chose_its_alerts(settings, city) -> None:
    # A millisecond before the refill a round finds the held alert not due; were its tokens counted when it sends,
    # a moment later, the fresh alert would take the new token alone ahead of the held one.
    clock = TickingClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/moment"), rate=RateLimit(capacity=1, per_minute=6))
        async with notify(settings, c, clock) as (rt, h):
            await arrive(settings, rt, *(dispatched(f"C-M{i}") for i in range(2)), total=2)
            assert await h.deliver_due() == 1
            await arrive(settings, rt, dispatched("C-M2"), total=3)
            await handed_over(h, "new_case:C-M2:0:CD-SAN-duty:webhook")
            clock.set(T0 + timedelta(seconds=10) - timedelta(milliseconds=1))
            clock.step = timedelta(milliseconds=1)
            assert await h.deliver_due(scan=False) == 0
            clock.step = timedelta(0)
            clock.set(T0 + timedelta(seconds=10, milliseconds=5))
            assert await h.deliver_due() == 2 and r.got[-1].json()["case_ids"] == ["C-M1", "C-M2"]
