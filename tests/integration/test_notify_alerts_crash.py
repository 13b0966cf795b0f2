"""Alerts delivered or visibly failed, once, when a notify instance or the store dies mid-delivery.

- a dead instance's claim is taken up after its lease (seconds), re-sent under the same notification id;
- a living instance renews its leases, so nobody else takes its claim up while it sends;
- an outcome the store could not take is kept in memory and recorded when the store is back, never re-sent;
- the `file` channel drops a re-send it already holds;
- the worker runs as soon as planning commits (not at its next poll);
- an alert claimed and recorded while a dead instance's transaction is still open is recorded for good, not
  rolled back with that transaction and sent again.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path

from services.notify.app import SPEC, of
from services.notify.channels import FileChannel
from services.notify.store import DELIVERIES
from services.notify.worker import CLAIM_LEASE_S
from tests.helpers import BusRecorder, eventually
from tests.helpers.channels import receiver
from tests.helpers.notify import T0, alert_city, doc, notify, overdue, planned, send
from tests.helpers.store_orphan import killed_inside_a_transaction
from xiuhua import embedded
from xiuhua.clock import FrozenClock
from xiuhua.service import running
from xiuhua.settings import Settings

NID = "overdue:C-K1:0:CD-SAN-duty:webhook"


async def test_file_channel_drops_a_resend_it_already_holds(tmp_path: Path) -> None:
    one, two = FileChannel(tmp_path), FileChannel(tmp_path)  # two processes writing one outbox
    msg = {"notification_id": "n-1", "title": "超期"}
    await one.send("cd-san", msg)
    await two.send("cd-san", msg)  # the re-send after a crash, by the instance that took the claim up
    await asyncio.gather(*(c.send("cd-san", msg | {"notification_id": "n-2"}) for c in (one, two, one)))
    await one.send("cd-san", msg)
    lines = [json.loads(x) for x in (tmp_path / "cd-san.jsonl").read_text().splitlines()]
    assert [x["notification_id"] for x in lines] == ["n-1", "n-2"]
    assert one.dropped + two.dropped == 4


async def test_a_dead_instances_claim_is_taken_up_after_its_lease_and_resent_under_the_same_id(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/k")), clock) as (rt, h):
        await send(settings, overdue("C-K1"))
        (d,) = await planned(rt, 1)
        # Another instance planned it, claimed for its own worker, or claimed it, and died (SIGKILL) before recording
        # anything: its lease is no longer renewed. (This instance, which planned it here, forgets that it did.)
        h.planning.take_hints()
        h.planning.claimed.clear()
        dead = {k: v for k, v in d.items() if k != "_id"} | {
            "status": "sending",
            "attempts": 1,
            "claimed_at": T0,
            "owner": "host:4242:dead",
            "v": d["v"] + 1,
            "lease_s": T0.timestamp() + CLAIM_LEASE_S,
        }
        await rt.store[DELIVERIES].replace_one({"_id": NID}, dead)
        assert await h.deliver_due() == 0
        clock.advance(timedelta(seconds=CLAIM_LEASE_S - 1))
        assert await h.deliver_due() == 0 and not r.got  # the lease still runs: the owner may be alive
        clock.advance(timedelta(seconds=2))
        assert await h.deliver_due() == 1
        assert [g.headers["x-xiuhua-notification-id"] for g in r.got] == [NID]
        after = await doc(rt, NID)
        assert after["status"] == "delivered" and after["attempts"] == 2 and after["owner"] is None
        assert "claim of host:4242:dead expired" in after["history"][0]["error"]


async def test_a_living_owner_renews_its_lease_and_keeps_its_claim(settings, city) -> None:
    clock = FrozenClock(T0)
    gate = asyncio.Event()
    async with receiver(hold=gate) as r:
        c = alert_city(city, r.url("/slow"))
        async with notify(settings, c, clock) as (rt, h1), notify(settings, c, clock) as (_, h2):
            await send(settings, overdue("C-K1"))
            await planned(rt, 1)
            # The instance that planned it claimed it for its own worker: that one sends it.
            await eventually(lambda: NID in h1.planning.claimed | h2.planning.claimed)
            if NID in h2.planning.claimed:
                h1, h2 = h2, h1
            sending = asyncio.create_task(h1.deliver_due())  # the receiver holds the request: h1 is mid-send
            await eventually(lambda: r.attempts == 1)
            for _ in range(3):  # 24 s of sending, well past one lease, renewed as it goes
                clock.advance(timedelta(seconds=8))
                await h1.renew_leases()
                assert await h2.deliver_due() == 0
            assert r.attempts == 1 and (await doc(rt, NID))["owner"] == h1.instance
            gate.set()
            assert await sending == 1
            assert (await doc(rt, NID))["status"] == "delivered" and r.attempts == 1


async def test_an_outcome_the_store_could_not_take_is_recorded_when_it_is_back_not_resent(
    settings: Settings, city, tmp_path: Path
) -> None:
    store = embedded.store_server(tmp_path / "own-store")  # this test kills its store
    store.start()
    try:
        own = settings.model_copy(update={"mongo_url": embedded.mongo_url(store)})
        clock = FrozenClock(T0)
        async with receiver() as r, BusRecorder(settings.nats_url) as bus:
            r.on_receive = store.kill  # the store dies between the send and its record
            c = alert_city(city, r.url("/o"))
            async with running(SPEC, own, clock=clock, city=c) as rt:
                h = of(rt).worker
                for task in rt.tasks:
                    if task.get_name().endswith("delivery-worker"):
                        task.cancel()
                await send(settings, overdue("C-K1"))
                await planned(rt, 1)
                assert await h.deliver_due() == 1  # sent; the outcome could not be recorded
                assert len(r.got) == 1 and NID in h._outcomes
                r.on_receive = None
                assert await h.deliver_due() == 0  # the store is still away: the outcome waits in memory
                store.start()  # back on the same data
                clock.advance(timedelta(seconds=CLAIM_LEASE_S * 3))  # every lease ran out meanwhile
                deadline = time.monotonic() + 20
                while NID in h._outcomes and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    await h.deliver_due()
                after = await doc(rt, NID)
                assert after["status"] == "delivered" and after["attempts"] == 1
                clock.advance(timedelta(seconds=CLAIM_LEASE_S * 3))
                assert await h.deliver_due() == 0
            await eventually(lambda: len(bus.on("notify.v1.delivered")) == 1)
            await asyncio.sleep(0.5)
            assert len(r.got) == 1 and len(bus.on("notify.v1.delivered")) == 1
    finally:
        store.stop()


async def test_the_worker_runs_as_soon_as_planning_commits(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/w"))
        assert c.alerts.poll_seconds == 3600  # the poll alone would take an hour
        async with running(SPEC, settings, clock=clock, city=c) as rt:
            await asyncio.sleep(1.0)  # the worker's first wait has begun
            t0 = time.monotonic()
            await send(settings, overdue("C-K1"))
            await eventually(lambda: len(r.got) == 1, timeout=10)
            assert time.monotonic() - t0 < 5

            async def recorded() -> bool:  # the record follows the send by a moment
                return (await doc(rt, NID))["status"] == "delivered"

            await eventually(recorded, timeout=5)


async def test_an_alert_sent_while_a_dead_instances_transaction_is_open_is_sent_and_recorded_once(
    settings, city
) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r, BusRecorder(settings.nats_url) as bus:
        async with notify(settings, alert_city(city, r.url("/k")), clock) as (rt, h):
            for task in rt.tasks:  # the periodic check must not end the orphan before the worker has sent
                if task.get_name() == f"{rt.name}:orphan-transactions":
                    task.cancel()
            await send(settings, overdue("C-K1"))
            await planned(rt, 1)
            await rt.store.ensure_collections(["cases"])  # what the killed instance writes into
            # The other instance, SIGKILLed inside a batch's transaction, which stays open on notify's database.
            assert settings.mongo_url is not None and settings.store_tx_lock_dir is not None
            await killed_inside_a_transaction(settings.mongo_url, settings.store_tx_lock_dir, rt.store.db.name)
            assert await h.deliver_due() == 1
            await rt.store.end_orphaned_transaction()  # as the periodic check or the next batch would
            after = await doc(rt, NID)
            assert after["status"] == "delivered" and after["attempts"] == 1
            clock.advance(timedelta(seconds=CLAIM_LEASE_S * 3))
            assert await h.deliver_due() == 0
        await eventually(lambda: len(bus.on("notify.v1.delivered")) >= 1)
        await asyncio.sleep(0.5)  # time for a second send or delivered event to show up
        assert len(r.got) == 1
        assert len({b["event_id"] for b in bus.on("notify.v1.delivered")}) == 1
