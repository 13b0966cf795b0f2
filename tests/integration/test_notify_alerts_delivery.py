"""The notify service on a real bus and store: retries, give-up, quiet hours, rate limits, de-duplication, the log.

The delivery worker is switched off (its task cancelled, poll_seconds = 1 h); each test drives `deliver_due` by hand
after moving a FrozenClock, so schedules are exact and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import monitoring

from contracts.cases import CaseClosed, CaseEscalated, CaseOpened, CaseReopened
from contracts.values import Place, ReportSource, UnitRef, Urgency
from services.notify.bulletin.projection import CASES as BULLETIN_CASES
from services.notify.bulletin.weeks import week_of
from services.notify.delivery_log import by_case, render
from services.notify.outcomes import delivered_event_id
from services.notify.planning import Plan
from services.notify.store import CASES as ALERT_CASES
from services.notify.store import DELIVERIES
from services.notify.worker import CLAIM_LEASE_S, RENEW_EVERY_S
from tests.helpers import BusRecorder, Commands, connect, eventually, publish
from tests.helpers.channels import receiver, smtp_server
from tests.helpers.notify import (
    CASE_CONSUMER,
    SECRET,
    T0,
    alert_city,
    all_acknowledged,
    dispatched,
    doc,
    lead,
    notify,
    overdue,
    planned,
    send,
)
from xiuhua.city import City
from xiuhua.city.alerts import AlertRule, ChannelConfig, RateLimit
from xiuhua.clock import FrozenClock
from xiuhua.service import Runtime
from xiuhua.settings import PROJECT_ROOT, Settings


async def test_retries_back_off_with_jitter_then_succeed(settings, city) -> None:
    clock = FrozenClock(T0)
    async with (
        receiver(fail_next=2) as r,
        BusRecorder(settings.nats_url) as bus,
        notify(settings, alert_city(city, r.url("/a")), clock) as (rt, h),
    ):
        await send(settings, overdue("C-R1"))
        (d,) = await planned(rt, 1)
        nid = d["_id"]
        assert nid == "overdue:C-R1:0:CD-SAN-duty:webhook"

        assert await h.deliver_due() == 0
        first = await doc(rt, nid)
        assert first["status"] == "pending" and first["attempts"] == 1
        assert "HTTP 503" in first["last_error"]
        assert timedelta(seconds=1) <= first["next_at"] - T0 <= timedelta(seconds=2)  # 2 s, half of it jitter

        assert await h.deliver_due() == 0 and r.attempts == 1  # not due yet: nothing sent
        clock.set(first["next_at"])
        assert await h.deliver_due() == 0
        second = await doc(rt, nid)
        assert second["attempts"] == 2 and timedelta(seconds=2) <= second["next_at"] - clock.now() <= timedelta(
            seconds=4
        )
        clock.set(second["next_at"])
        assert await h.deliver_due() == 1
        done = await doc(rt, nid)
        assert done["status"] == "delivered" and done["attempts"] == 3
        assert "finished_s" not in first and "finished_s" not in second  # pending: out of the purge's range
        assert done["finished_s"] == done["delivered_at"].timestamp()  # what the delivery horizon counts from
        assert [x["ok"] for x in done["history"]] == [False, False, True]
        assert len(r.got) == 1 and r.attempts == 3

        delivered = await eventually(lambda: bus.on("notify.v1.delivered"))
        assert delivered[0]["notification_id"] == nid and delivered[0]["attempts"] == 3
        clock.advance(timedelta(hours=1))
        assert await h.deliver_due() == 0
        assert len(bus.on("notify.v1.delivered")) == 1 and not bus.on("notify.v1.failed")


async def test_a_delivery_due_at_once_is_planned_claimed_and_sent_with_one_write_more(settings, city) -> None:
    # Planning writes a delivery due at once claimed by its own instance's worker, which sends it with no claim
    # write: the insert and the record are the delivery's only writes (version 0, then 1).
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/once")), clock) as (rt, h):
        await send(settings, overdue("C-W1"))
        (d,) = await planned(rt, 1)
        assert (d["status"], d["owner"], d["attempts"], d["v"]) == ("sending", h.instance, 1, 0)
        assert d["lease_s"] == T0.timestamp() + CLAIM_LEASE_S and d["_id"] in h.planning.claimed
        # Renewed with the worker's claims, but only once its lease has less than a lease minus a renewal left.
        clock.advance(timedelta(seconds=RENEW_EVERY_S))
        await h.renew_leases()
        assert (await doc(rt, d["_id"]))["lease_s"] == T0.timestamp() + CLAIM_LEASE_S
        clock.advance(timedelta(milliseconds=1))
        await h.renew_leases()
        assert (await doc(rt, d["_id"]))["lease_s"] == clock.now().timestamp() + CLAIM_LEASE_S
        assert await h.deliver_due(scan=False) == 1 and len(r.got) == 1
        done = await doc(rt, d["_id"])
        assert (done["status"], done["attempts"], done["v"], done["owner"]) == ("delivered", 1, 1, None)
        assert not h.planning.claimed and not h._held


async def test_planned_claims_beyond_a_round_wait_for_the_next_one_still_claimed(settings, city) -> None:
    # Planning claimed four recipients' alerts; a round takes one lane: the other three stay this instance's, for
    # the next round at once, with no write between (given back, each would cost two more).
    clock = FrozenClock(T0)
    base = alert_city(city, "http://127.0.0.1:9/unused")
    rule = AlertRule(kind="new_case", to=["lead_unit"], duties=["duty"], channels=["file"])
    c = dataclasses.replace(base, alerts=base.alerts.model_copy(update={"rules": [rule]}))
    units = ["JQ-ENF", "JQ-TP", "JQ-MS", "JQ-EM"]
    async with notify(settings, c, clock) as (rt, h):
        for i, unit in enumerate(units):
            await send(
                settings,
                dispatched(f"C-B{i}").model_copy(
                    update={"lead_unit": UnitRef(unit_id=unit, name=unit, role="enforcement")}
                ),
            )
        await planned(rt, len(units))
        await eventually(lambda: len(h.planning.claimed) == len(units))
        assert await h.deliver_due(limit=1, scan=False) == 1
        assert len(h.planning.claimed) == len(units) - 1 and h.planning.wake.is_set()
        assert await rt.store.count(DELIVERIES, {"status": "sending", "v": 0}) == len(units) - 1
        assert await h.deliver_due(scan=False) == len(units) - 1
        assert await rt.store.count(DELIVERIES, {"status": "delivered", "v": 1}) == len(units)
        # Each round's delivered events in one outbox entry of the ledger: two rounds, two entries.
        outbox = [d async for d in rt.store["ledger"].find({}) if d["_id"].startswith("delivered:")]
        assert sorted(len(d["events"]) for d in outbox) == [1, len(units) - 1]


async def test_a_deliverys_event_keeps_its_id_however_often_its_outcome_is_recorded(settings, city) -> None:
    # The outcome recorded again (a retry after the store failed to answer, or the re-send after a crash between
    # send and record) publishes the same event id: the bus drops the copy, so `notify.v1.delivered` is one per
    # delivery without a ledger entry each.
    clock = FrozenClock(T0)
    async with (
        receiver() as r,
        BusRecorder(settings.nats_url) as bus,
        notify(settings, alert_city(city, r.url("/same")), clock) as (rt, h),
    ):
        await send(settings, overdue("C-E1"))
        await send(settings, overdue("C-E2"))
        await planned(rt, 2)
        claimed = [await doc(rt, f"overdue:C-E{i}:0:CD-SAN-duty:webhook") for i in (1, 2)]
        assert await h.deliver_due() == 2
        first = await eventually(lambda: len(bus.on("notify.v1.delivered")) == 2 and bus.on("notify.v1.delivered"))
        assert {e["event_id"] for e in first} == {delivered_event_id(c) for c in claimed}
        assert len({delivered_event_id(c) for c in claimed}) == 2
        again = await h._record_delivered([{**claimed[1], "attempts": 2}], now=clock.now())  # its own entry
        assert [o.msg_id for _, out in again for o in out] == [delivered_event_id(claimed[1])]
        await h._publish(again)
        await eventually(lambda: len(bus.on("notify.v1.delivered")) == 3)  # published again, as core NATS sees it
        nc = await connect(settings.nats_url, "operator")
        try:  # ... and kept once in the stream its readers read
            info = await nc.jetstream().stream_info("XH_NOTIFY", subjects_filter="notify.v1.delivered")
        finally:
            await nc.close()
        assert info.state.messages == 2


async def test_a_claim_planning_made_is_sent_only_once_committed_and_given_back_when_not_sent(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/back")), clock) as (rt, h):
        # A planning transaction that did not commit (aborted, retried): what it planned is never handed over.
        plan = Plan()
        h.planning.planner.case_event(plan, overdue("C-W2"), {})
        await h.planning._write(rt.store.writes(), plan, None, h.planning._stage("cases"))  # the writes go nowhere
        assert await h.deliver_due() == 0 and not r.attempts and not h.planning.claimed
        assert await rt.store.count(DELIVERIES, {}) == 0

        # Quiet hours began between planning and the round: the claim is given back, no attempt spent.
        night = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
        clock.set(night - timedelta(seconds=1))
        await send(settings, dispatched("C-W3"))
        (d,) = await planned(rt, 1, case_id="C-W3")
        assert d["status"] == "sending" and d["_id"] in h.planning.claimed
        clock.set(night)
        assert await h.deliver_due() == 0 and not r.attempts
        back = await doc(rt, d["_id"])
        assert (back["status"], back["attempts"], back["owner"], back["deferred"]) == (
            "pending",
            0,
            None,
            "quiet_hours",
        )
        assert back["next_at"] == datetime(2026, 11, 23, 23, 30, tzinfo=UTC) and not h.planning.claimed

        # The store was away since planning claimed it (its lease may have run out and another instance taken it
        # up): the claim is given back, not sent, and goes the way any pending delivery goes.
        clock.set(T0 + timedelta(hours=1))
        await send(settings, overdue("C-W4"))
        (d,) = await planned(rt, 1, case_id="C-W4")
        h._store_ok_since = None
        assert await h.deliver_due(scan=False) == 0 and not r.attempts
        back = await doc(rt, d["_id"])
        assert (back["status"], back["attempts"], back["owner"], back["v"]) == ("pending", 0, None, 1)
        assert await h.deliver_due() == 1 and [g.json()["case_id"] for g in r.got] == ["C-W4"]


async def test_exhausted_retries_publish_failed_once_and_keep_the_delivery(settings, city) -> None:
    clock = FrozenClock(T0)
    async with (
        receiver(fail_next=1000) as r,
        BusRecorder(settings.nats_url) as bus,
        notify(settings, alert_city(city, r.url("/hook/path-token?key=URLTOKEN")), clock) as (rt, h),
    ):
        await send(settings, overdue("C-F1"))
        (d,) = await planned(rt, 1)
        for _ in range(5):
            await h.deliver_due()
            clock.advance(timedelta(minutes=2))
        assert r.attempts == 3  # max_attempts, then it stops
        gone = await doc(rt, d["_id"])
        assert gone["status"] == "failed" and gone["attempts"] == 3
        assert gone["finished_s"] == gone["failed_at"].timestamp()
        failed = await eventually(lambda: bus.on("notify.v1.failed"))
        assert len(failed) == 1
        f = failed[0]
        assert f["notification_id"] == d["_id"] and f["attempts"] == 3 and f["case_id"] == "C-F1"
        assert f["recipient"] == "CD-SAN-duty" and f["error"] == f"DeliveryError: HTTP 503 from 127.0.0.1:{r.port}"
        text = json.dumps(f) + json.dumps(gone["history"], default=str)
        assert "URLTOKEN" not in text and "path-token" not in text and SECRET not in text
        assert d["_id"] not in {e["notification_id"] for e in bus.on("notify.v1.delivered")}
        # Still in the log, still failed; more passes of the worker change nothing.
        await h.deliver_due()
        log = await by_case(rt.store[DELIVERIES], "C-F1")
        assert [(e["kind"], e["status"], e["attempts"]) for e in log] == [
            ("overdue", "failed", 3),
            ("delivery_failed", "delivered", 1),
        ]
        assert log[0]["address"] == f"http://127.0.0.1:{r.port}/…"
        assert "failed" in render("C-F1", log) and "HTTP 503" in render("C-F1", log)
        assert len(bus.on("notify.v1.failed")) == 1
        # The command centre hears of it once, on its own channel.
        watch = await doc(rt, f"delivery_failed:{d['_id']}:0:XH-CC-duty:file")
        assert watch["status"] == "delivered" and watch["case_id"] == "C-F1"
        assert await rt.store.count(DELIVERIES, {"kind": "delivery_failed"}) == 1


async def test_quiet_hours_defer_non_urgent_alerts_but_not_urgent_ones(settings, city) -> None:
    night = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    clock = FrozenClock(night)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/q")), clock) as (rt, h):
        await send(settings, dispatched("C-Q1", night))
        await send(settings, overdue("C-Q2", night))
        await planned(rt, 2)
        assert await h.deliver_due() == 1  # the urgent overdue alert goes out at night
        assert [g.json()["kind"] for g in r.got] == ["overdue"]
        new_case = await doc(rt, "new_case:C-Q1:0:CD-SAN-duty:webhook")
        morning = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)  # 07:30 in Shanghai
        assert new_case["status"] == "pending" and new_case["deferred"] == "quiet_hours"
        assert new_case["next_at"] == morning and new_case["attempts"] == 0  # deferred, not dropped nor spent
        clock.set(morning - timedelta(minutes=1))
        assert await h.deliver_due() == 0
        clock.set(morning)
        assert await h.deliver_due() == 1
        assert [g.json()["kind"] for g in r.got] == ["overdue", "new_case"]


async def test_rate_limit_per_recipient_holds_across_two_instances(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/rl"), rate=RateLimit(capacity=2, per_minute=1))
        async with notify(settings, c, clock) as (rt, h1), notify(settings, c, clock) as (_, h2):
            for i in range(5):
                await send(settings, overdue(f"C-L{i}"))
            await planned(rt, 5)
            # Two instances drain at once: the bucket in the store lets exactly `capacity` through.
            sent = await asyncio.gather(h1.deliver_due(), h2.deliver_due())
            assert sum(sent) == 2 and len(r.got) == 2
            waiting = [d async for d in rt.store[DELIVERIES].find({"status": "pending"})]
            assert len(waiting) == 3 and {d["deferred"] for d in waiting} == {"rate_limit"}
            assert all(d["attempts"] == 0 for d in waiting)  # a deferral spends no attempt
            assert {d["next_at"] for d in waiting} == {T0 + timedelta(minutes=1)}  # held until the next token
            clock.advance(timedelta(minutes=1))
            sent = await asyncio.gather(h1.deliver_due(), h2.deliver_due())
            # One token a minute: the three held go as one digest, sent by one instance. (Which two went alone
            # depends on which instance planned which: each sends what it planned claimed for itself.)
            assert sum(sent) == 3 and len(r.got) == 3
            alone = sorted(g.json()["case_id"] for g in r.got[:2])
            assert r.got[2].json()["kind"] == "digest"
            assert r.got[2].json()["case_ids"] == sorted({f"C-L{i}" for i in range(5)} - set(alone))
            ids = [g.headers["x-xiuhua-notification-id"] for g in r.got]
            assert len(set(ids)) == 3  # each sent once, by one instance
            assert [d async for d in rt.store[DELIVERIES].find({"status": {"$ne": "delivered"}})] == []
            clock.advance(timedelta(minutes=2))
            assert sum(await asyncio.gather(h1.deliver_due(), h2.deliver_due())) == 0 and len(r.got) == 3


async def test_a_round_serves_every_recipient_with_a_few_store_commands(settings, city) -> None:
    # Four units' duty contacts get a new case each at once. One round takes every recipient's tokens together
    # and records them together (one recipient at a time cost five commands each); a round woken by planning
    # takes what planning wrote from it, claimed for it, without looking the deliveries up or claiming them.
    clock = FrozenClock(T0)
    base = alert_city(city, "http://127.0.0.1:9/unused")
    rule = AlertRule(kind="new_case", to=["lead_unit"], duties=["duty"], channels=["file"])
    c = dataclasses.replace(base, alerts=base.alerts.model_copy(update={"rules": [rule]}))
    units = ["JQ-ENF", "JQ-TP", "JQ-MS", "JQ-EM"]
    commands = Commands(settings.database("notify"))
    monitoring.register(commands)
    try:
        async with notify(settings, c, clock) as (rt, h):
            for i, unit in enumerate(units):
                ref = UnitRef(unit_id=unit, name=unit, role="enforcement")
                await send(settings, dispatched(f"C-N{i}").model_copy(update={"lead_unit": ref}))
            await planned(rt, len(units))
            await eventually(lambda: len(h.planning._hints) == len(units))  # the planning batches have committed
            commands.by_collection.clear()
            assert await h.deliver_due(scan=False) == len(units)
            # The round's own commands (the bulletin's projection may apply its batch of these events meanwhile).
            used = {
                k: n
                for k, n in commands.by_collection.items()
                if k[1] in ("deliveries", "rate_buckets", "ledger:delivered")
            }
            commands.active = False
            logged = [d async for d in rt.store[DELIVERIES].find({})]
            assert sorted(d["contact_id"] for d in logged if d["status"] == "delivered") == [
                f"{u}-duty" for u in sorted(units)
            ]
            assert ("find", "deliveries") not in used, used
            # bucket read, bucket insert, ledger claim, record (the ledger's published mark comes later)
            assert sum(used.values()) <= 4, used
    finally:
        commands.active = False


async def test_alerts_over_the_rate_wait_for_the_next_token_untouched_then_go_as_one_digest(settings, city) -> None:
    # A burst to one recipient: the ones over its rate are held, once, until its bucket's next token; then one
    # digest carries them all.
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/line"), rate=RateLimit(capacity=1, per_minute=6))
        async with notify(settings, c, clock) as (rt, h):
            for i in range(4):
                await send(settings, overdue(f"C-Q{i}"))
            await planned(rt, 4)
            assert await h.deliver_due() == 1
            waiting = [d async for d in rt.store[DELIVERIES].find({"status": "pending"})]
            assert {d["next_at"] - T0 for d in waiting} == {timedelta(seconds=10)}
            assert sorted(d["case_id"] for d in waiting) == ["C-Q1", "C-Q2", "C-Q3"]
            versions = {d["_id"]: d["v"] for d in waiting}
            for _ in range(3):  # rounds before the token move nothing
                assert await h.deliver_due() == 0
            assert {d["_id"]: d["v"] async for d in rt.store[DELIVERIES].find({"status": "pending"})} == versions
            clock.set(T0 + timedelta(seconds=10))
            assert await h.deliver_due() == 3
            assert [g.json()["case_id"] for g in r.got] == ["C-Q0", ""]
            assert r.got[1].json()["case_ids"] == ["C-Q1", "C-Q2", "C-Q3"]  # the order they came in


async def test_one_alert_per_case_kind_and_level_after_redelivery_and_restart(settings, city) -> None:
    clock = FrozenClock(T0)
    with smtp_server() as (ctl, mail):
        await _dedup_run(settings, city, clock, ctl, mail)


async def _dedup_run(settings: Settings, city: City, clock: FrozenClock, ctl: Any, mail: Any) -> None:
    async with receiver() as r, BusRecorder(settings.nats_url) as bus:
        c = alert_city(city, r.url("/d"), smtp_port=ctl.port)
        async with notify(settings, c, clock) as (rt, h):
            ev = overdue("C-D1")
            await send(settings, ev)
            await send(settings, ev)  # the same event again (a producer's resend)
            await send(settings, overdue("C-D1"))  # the same fact as a new event
            esc1 = CaseEscalated(case_id="C-D1", street_code="CD", unit_id="CD-SAN", level=1, due_at=T0)
            await send(settings, esc1)
            await planned(rt, 3)
            await eventually(lambda: _consumed(rt, 4))
            assert await h.deliver_due() == 3  # overdue (webhook), escalation level 1 (webhook + e-mail)
        async with notify(settings, c, clock) as (rt, h):  # a restart
            await send(settings, overdue("C-D1"))
            await send(settings, esc1)
            await send(settings, CaseEscalated(case_id="C-D1", street_code="CD", unit_id="CD-SAN", level=2, due_at=T0))
            await planned(rt, 5)
            await eventually(lambda: _consumed(rt, 3))
            assert await h.deliver_due() == 2  # only level 2 is new
            ids = sorted([d["_id"] async for d in rt.store[DELIVERIES].find({"case_id": "C-D1"})])
        delivered = await eventually(lambda: len(bus.on("notify.v1.delivered")) >= 5 and bus.on("notify.v1.delivered"))
        await asyncio.sleep(0.5)
        assert len(bus.on("notify.v1.delivered")) == 5
    assert {d["notification_id"] for d in delivered} == set(ids)
    assert ids == [
        "escalation:C-D1:1:CD-SAN-duty:email",
        "escalation:C-D1:1:CD-SAN-duty:webhook",
        "escalation:C-D1:2:CD-SAN-duty:email",
        "escalation:C-D1:2:CD-SAN-duty:webhook",
        "overdue:C-D1:0:CD-SAN-duty:webhook",
    ]
    assert sorted(g.json()["kind"] + str(g.json()["level"]) for g in r.got) == [
        "escalation1",
        "escalation2",
        "overdue0",
    ]
    assert len(mail.mails) == 2


async def _consumed(rt: Runtime, n: int) -> bool:
    """This instance's case consumer has taken n messages: applied, or known as applied before (a copy)."""
    labels = {"service": "notify", "consumer": CASE_CONSUMER}
    taken = [
        rt.metrics.registry.get_sample_value(f"xiuhua_messages_{m}_total", labels) or 0
        for m in ("applied", "duplicate")
    ]
    return sum(taken) >= n


async def test_sensor_emergency_ranking_and_merchant_alerts_from_the_bus(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/s")), clock) as (rt, h):
        opened = CaseOpened(
            case_id="C-S1",
            street_code="CD",
            source=ReportSource.sensor,
            source_ref="manhole-17",
            category_code="0101",
            category_name="井盖",
            description="井盖位移传感器报警",
            urgency=Urgency.urgent,
            place=Place(street_code="CD", address="解放路 18 号"),
            reported_at=T0,
        )
        await send(settings, opened)
        normal = opened.model_copy(update={"case_id": "C-S2", "urgency": Urgency.normal, "event_id": "x-2"})
        await send(settings, normal)
        ranking = {
            "event_id": "01935d1e-0000-7000-8000-000000000001",
            "occurred_at": T0.isoformat(),
            "schema_version": 1,
            "correlation_id": "",
            "kind": "unit",
            "period": "2026-W47",
            "period_kind": "week",
            "tables": {
                "sanitation": [
                    {"rank": 1, "id": "JQ-SAN", "score": 98.0, "board": "red"},
                    {"rank": 2, "id": "CD-SAN", "score": 61.5, "board": "black", "bottom": True},
                ]
            },
        }
        await publish(settings.nats_url, "score.v1.ranking_published", ranking)
        merchant = {
            "event_id": "01935d1e-0000-7000-8000-000000000002",
            "occurred_at": T0.isoformat(),
            "schema_version": 1,
            "correlation_id": "",
            "merchant_id": "M-CD-001",
            "merchant_name": "东园小吃店",
            "street_code": "CD",
            "period": "2026-11",
            "violations": 3,
            "reason": "门前乱堆放，屡教不改",
        }
        await publish(settings.nats_url, "score.v1.merchant_escalated", merchant)
        # Four: the emergency, the black list's head, and the escalation to the street office and to enforcement
        # (waiting for three let the test look before the lingering case consumer had planned the emergency).
        docs = await planned(rt, 4)
        ids = {d["_id"] for d in docs}
        assert "sensor_emergency:C-S1:0:XH-CC-duty:file" in ids
        assert "bottom_ranking:2026-W47:CD-SAN:0:CD-SAN-head:file" in ids
        assert any(i.startswith("merchant_escalation:M-CD-001:2026-11:0:CD-SO-duty") for i in ids)
        await eventually(lambda: all_acknowledged(settings, CASE_CONSUMER))  # C-S2 too: ignored, acknowledged
        assert not any("C-S2" in i for i in ids)  # a normal sensor case is no emergency
        assert await h.deliver_due() >= 3
        outbox = (settings.var_dir / "outbox" / "xh-cc.jsonl").read_text()
        line = json.loads(outbox.splitlines()[0])
        # The place as people say it: the street the case is in, then the address given.
        assert line["title"] == "【紧急】物联感知紧急告警" and "位置：城东街道（解放路 18 号）" in line["lines"]


async def test_deliveries_command_shows_the_log_of_a_case(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver(fail_next=1) as r, notify(settings, alert_city(city, r.url("/c")), clock) as (rt, h):
        await send(settings, overdue("C-CLI"))
        await planned(rt, 1)
        await h.deliver_due()
        clock.advance(timedelta(minutes=5))
        await h.deliver_due()
    env = {**os.environ, "XIUHUA_MONGO_URL": settings.mongo_url, "XIUHUA_DB_PREFIX": settings.db_prefix}

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "xiuhua", "deliveries", *args]
        return await asyncio.to_thread(
            subprocess.run, cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
        )

    out = await cli("--case", "C-CLI", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    (e,) = data["deliveries"]
    assert e["notification_id"] == "overdue:C-CLI:0:CD-SAN-duty:webhook"
    assert e["status"] == "delivered" and e["attempts"] == 2 and e["channel"] == "webhook"
    assert [x["ok"] for x in e["history"]] == [False, True]
    assert e["address"] == f"http://127.0.0.1:{r.port}/…"
    human = await cli("--case", "C-CLI")
    assert "delivered" in human.stdout and "CD-SAN-duty" in human.stdout
    none = await cli("--case", "C-NONE")
    assert "no deliveries for case C-NONE" in none.stdout


async def test_a_final_refusal_fails_at_once_and_a_crashed_claim_is_sent_again(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r, BusRecorder(settings.nats_url) as bus:
        c = alert_city(city, r.url("/p"))
        no_secret = c.alerts.model_copy(
            update={
                "channels": {
                    **c.alerts.channels,
                    "webhook": ChannelConfig(type="webhook", secret_env="XH_TEST_UNSET_SECRET"),
                }
            }
        )
        async with notify(settings, dataclasses.replace(c, alerts=no_secret), clock) as (rt, h):
            await send(settings, overdue("C-P1"))
            (d,) = await planned(rt, 1)
            await h.deliver_due()
            gone = await doc(rt, d["_id"])
            assert gone["status"] == "failed" and gone["attempts"] == 1  # no retry can help
            assert "XH_TEST_UNSET_SECRET" in gone["last_error"] and not r.attempts
            failed = await eventually(lambda: bus.on("notify.v1.failed"))
            assert failed[0]["permanent"] is True and failed[0]["attempts"] == 1

            # A delivery claimed by an instance that then died stays 'sending'; after 5 minutes it is sent again.
            await send(settings, overdue("C-P2"))
            (d2,) = await planned(rt, 1, case_id="C-P2")
            await rt.store[DELIVERIES].replace_one(
                {"_id": d2["_id"]},
                {k: v for k, v in d2.items() if k != "_id"}
                | {"status": "sending", "claimed_at": T0, "attempts": 1, "v": d2["v"] + 1},
            )
        async with notify(settings, c, clock) as (rt, h):  # the secret is back; another instance takes over
            await h.deliver_due()  # (sends the command centre's delivery_failed note about C-P1)
            assert (await doc(rt, d2["_id"]))["status"] == "sending" and not r.attempts  # claimed recently: leave it
            clock.advance(timedelta(minutes=6))
            assert await h.deliver_due() == 1
            back = await doc(rt, d2["_id"])
            assert back["status"] == "delivered" and back["attempts"] == 2
            assert [g.json()["case_id"] for g in r.got] == ["C-P2"]


async def test_a_copy_of_an_earlier_dispatch_plans_nothing_and_keeps_the_later_unit(settings, city) -> None:
    # A dispatch is named in the bulletin's record of its case, which holds planning's view of the case too: a copy
    # of the first dispatch arriving after the re-dispatch (a resend under a new message id) neither plans again,
    # nor counts again, nor puts the first unit back as the one later warnings go to.
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/k")), clock) as (rt, _):
        first = dispatched("C-RD")
        other = UnitRef(unit_id="CD-ENF", name="城东执法中队", role="enforcement")
        second = first.model_copy(
            update={
                "event_id": "01935d1e-7a4b-7c3d-8e9f-00000000bb02",
                "dispatch_round": 2,
                "lead_unit": other,
                "cooperating_units": [lead()],
            }
        )
        await send(settings, first)
        await planned(rt, 1, case_id="C-RD")
        await send(settings, second)

        async def led_by(unit: str, cooperating: list[str]) -> bool:
            record = await rt.store[BULLETIN_CASES].find_one({"_id": "C-RD"}) or {}
            return record.get("unit_id") == unit and record.get("cooperating") == cooperating

        await eventually(lambda: led_by("CD-ENF", ["CD-SAN"]))
        logged = sorted([d["_id"] async for d in rt.store[DELIVERIES].find({"case_id": "C-RD"})])
        await send(settings, first)  # the copy, after the re-dispatch
        await send(settings, overdue("C-RD"))  # a later event: once planned, the copy before it has been applied
        await planned(rt, len(logged) + 1, case_id="C-RD")
        assert await led_by("CD-ENF", ["CD-SAN"])
        after = sorted([d["_id"] async for d in rt.store[DELIVERIES].find({"case_id": "C-RD"})])
        assert set(logged) < set(after) and len(after) == len(logged) + 1  # the overdue alert, nothing for the copy
        week = await rt.store["bulletin_weeks"].find_one({"_id": week_of(first.occurred_at)})
        assert week["dispatched"] == 2 and week["overdue"] == 1  # the copy counted nothing
        # The dispatches are guarded by the record; the overdue event, which moves only counters, keeps its entry.
        keys = [d["_id"] async for d in rt.store["ledger"].find({}, {"_id": 1})]
        assert len([k for k in keys if k.startswith(f"{CASE_CONSUMER}:")]) == 1
        assert await rt.store.count(ALERT_CASES) == 0  # no view apart any more


async def test_a_closed_case_dates_its_record_and_a_reopening_takes_the_date_back(settings, city) -> None:
    # The case's record, which holds planning's view, goes when closed cases go (retention.yaml): its close and
    # reopen events, which alert nobody, set and clear the moment the purge ranges over, in the same write.
    clock = FrozenClock(T0)
    async with receiver() as r, notify(settings, alert_city(city, r.url("/k")), clock) as (rt, _):
        await send(settings, dispatched("C-END"))
        await planned(rt, 1, case_id="C-END")
        closed_at = T0 + timedelta(days=2)
        await send(
            settings,
            CaseClosed(
                case_id="C-END",
                street_code="CD",
                unit_id="CD-SAN",
                on_time=True,
                closed_by="verification",
                occurred_at=closed_at,
            ),
        )

        async def closed_s() -> Any:
            record = await rt.store[BULLETIN_CASES].find_one({"_id": "C-END"}) or {}
            return record.get("closed_s", "unset")

        assert await eventually(lambda: _is(closed_s, closed_at.timestamp()))
        await send(
            settings,
            CaseReopened(
                case_id="C-END",
                street_code="CD",
                unit_id="CD-SAN",
                reason="问题复发",
                due_at=closed_at + timedelta(hours=4),
            ),
        )
        assert await eventually(lambda: _is(closed_s, None))
        assert len([d async for d in rt.store[DELIVERIES].find({"case_id": "C-END"})]) == 1  # nobody was told
        assert await rt.store.count(ALERT_CASES) == 0


async def _is(read: Any, expected: Any) -> bool:
    return await read() == expected


async def test_a_channel_keeps_one_connection_for_its_alerts_and_closes_it_when_notify_stops(settings, city) -> None:
    clock = FrozenClock(T0)
    async with receiver() as r:
        c = alert_city(city, r.url("/conn"))
        async with notify(settings, c, clock) as (rt, h):
            for i in range(3):
                await send(settings, dispatched(f"C-K{i}"))
            await planned(rt, 3)
            assert await h.deliver_due() == 3
            assert len(r.got) == 3 and len({g.peer for g in r.got}) == 1  # no new connection (TLS handshake) each
            client = h.channels["webhook"].client
            assert not client.is_closed
        assert client.is_closed
