"""Notify's handlers: case and scoring events become deliveries, handed to the delivery worker.

Planned in memory for the whole batch (`services.notify.planning`): the records of the batch's cases and the
log's ids read once each, and the writes sent with the batch (`Batch.later`). A delivery's `_id` is its
notification id (kind, case, level, contact, channel): planning finds before inserting, so redelivered events and
restarts never plan it twice. A delivery due at once is written
claimed by this instance's worker (sending, with a lease), which takes it from planning's hand-over once the
transaction has committed and sends it with no claim of its own: one write of the delivery log fewer per alert.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pymongo.asynchronous.client_session import AsyncClientSession

from contracts.cases import CaseDispatched, CaseEvent
from services.notify import planning, store
from services.notify.bulletin import handlers as bulletin
from services.notify.bulletin.projection import Writes as BulletinWrites
from services.notify.planning import WARNINGS, Plan, Planner
from services.notify.policy import claimed, quiet_until
from xiuhua.consumer import Batch, Item, count, folded_before
from xiuhua.service import Runtime
from xiuhua.store import Writes


class NotifyHandlers:
    """Plans deliveries from events and wakes the delivery worker once they are committed."""

    def __init__(self, rt: Runtime, folded: Any) -> None:
        self.rt = rt
        self.folded = folded  # the bulletin's count of case events folded (`xiuhua_bulletin_events{kind="case"}`)
        self.planner = Planner(rt.city, ZoneInfo(rt.city.info.timezone), rt.clock)
        self.wake = asyncio.Event()  # set when planning commits deliveries: the worker runs at once
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"  # owner of this one's claims
        # Deliveries planning wrote, handed to the worker's next round as they were written once their transaction
        # has committed, so a round woken by planning need not look them up (the periodic scan finds every pending
        # delivery whatever becomes of the hints). Kept per consumer until its commit (`on_committed`): a retried
        # transaction plans again, and a claim whose write did not commit must never be sent.
        self._hints: dict[str, dict[str, Any]] = {}
        self._staged: dict[str, dict[str, dict[str, Any]]] = {}
        # The hints written claimed by this instance (`claimed`), not yet taken by a round: renewed with the
        # worker's claims, and given back (or left to expire) if no round sends them.
        self.claimed: set[str] = set()

    async def on_case_event(self, batch: Batch) -> None:
        """Every case event, in one pass: folded into the weekly bulletin's figures and its record of the case
        (案件记录), and, for those that alert (dispatched, deadline warning, overdue, escalated, an urgent sensor
        case, a failed duty check), planned into deliveries. The record holds planning's view of the case too (who
        cooperates, where, how urgent: `planning.VIEW`), so a batch writes one document per case for both.

        Guarded as the bulletin's fold is: an event that changes the record is named in it (`applied`) and needs no
        ledger entry, one that moves only counters keeps its entry; a delivery's id names its case, kind, level,
        recipient and channel, and planning skips what the log holds. A dispatch named in the record was planned
        before, so a copy of an earlier dispatch cannot put back the unit a later one replaced."""
        items = [i for i in batch.items if isinstance(i.message, CaseEvent)]
        plan, staged, w = Plan(), self._stage("cases"), BulletinWrites()
        known = await bulletin.records(self.rt.store, (i.message.case_id for i in items), batch.reads)
        older = planning.views_apart([i.message for i in items], known)
        views = await store.cases(self.rt.store, older, batch.reads)
        changed: dict[str, dict[str, Any]] = {}
        for item in items:
            ev = item.message
            record = changed.get(ev.case_id, known.get(ev.case_id))
            if folded_before(record, ev.event_id):
                batch.guarded(item)  # folded and planned before, with the record that names it
                continue
            if (new := bulletin.fold(batch, item, record, w)) is not None:
                changed[ev.case_id] = new
            if not planning.ignores(ev):
                self._plan(plan, ev, record, changed, views)
        bulletin.keep_records(w, changed)
        bulletin.write(w, batch)
        count(self.folded, len(items))
        await self._write(batch.later(), plan, batch.reads, staged)

    def _plan(
        self,
        plan: Plan,
        ev: Any,
        record: dict[str, Any] | None,
        changed: dict[str, dict[str, Any]],
        views: dict[str, dict[str, Any]],
    ) -> None:
        """Plan one case event's alerts; a dispatch's view of the case goes into the case's record (`changed`)."""
        c = ev.case_id
        current = changed.get(c, record)
        if isinstance(ev, CaseDispatched):
            self.planner.case_event(plan, ev, {})
            changed[c] = {**changed[c], **planning.view_of(plan.cases.pop(c))}
            if record and record.get("unit_id") and not planning.holds_view(record):
                plan.ended[c] = ev.occurred_at.timestamp()  # the older build's view of a re-dispatched case: unused
            return
        view = current if current is not None and planning.holds_view(current) else views.get(c, {})
        dated = c in plan.ended, plan.ended.get(c)
        self.planner.case_event(plan, ev, {c: view})
        if c in plan.ended and planning.holds_view(current):
            # The record keeps the moment the case ended; an older view is dated only by a dispatch superseding it.
            if dated[0]:
                plan.ended[c] = dated[1]
            else:
                del plan.ended[c]

    async def plan_alerts(self, batch: Batch, items: list[Item], stage: str) -> None:
        """Plan the alerts of case events the way the builds before the one case consumer did, with notify's view of
        the cases apart (`alert_cases`): for the events the former alert consumer takes over (`handover`)."""
        plan, staged = Plan(), self._stage(stage)
        looked = sorted({ev.case_id for i in items if isinstance(ev := i.message, (CaseDispatched, *WARNINGS))})
        known = await store.cases(self.rt.store, looked, batch.reads)
        for item in items:
            ev = item.message
            batch.guarded(item)
            if isinstance(ev, CaseDispatched) and folded_before(known.get(ev.case_id), ev.event_id):
                continue  # this dispatch was planned before
            self.planner.case_event(plan, ev, known)
        await self._write(batch.later(), plan, batch.reads, staged)

    async def on_score_event(self, batch: Batch, stage: str = "scores") -> None:
        """Scoring events that alert: a unit ranking's black list (bottom_ranking), a merchant's escalation (each
        consumer its own `stage`, named again in its `on_committed`)."""
        plan, staged = Plan(), self._stage(stage)
        for item in batch.items:
            self.planner.score_event(plan, item.subject, item.message)
        await self._write(batch.later(), plan, batch.reads, staged)

    async def plan_now(self, planning: Callable[[Plan], None]) -> None:
        """Plan outside any consumer's transaction (the worker's notice of a delivery given up): visible at once."""
        plan, staged = Plan(), self._stage("now")
        planning(plan)
        writes = self.rt.store.writes()
        async with self.rt.store.outside_transactions():
            await self._write(writes, plan, None, staged)
            await self.rt.store.write_together(writes)
        self.on_committed("now")

    def _stage(self, stage: str) -> dict[str, dict[str, Any]]:
        """A fresh hand-over for one run of a consumer's handler (a retried transaction's run starts over)."""
        staged: dict[str, dict[str, Any]] = {}
        self._staged[stage] = staged
        return staged

    def _at_once(self, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
        """A new delivery claimed by this instance's worker if it is to go now (due, and not held by quiet hours:
        the worker judges those as it would at its claim); else pending, for whichever worker finds it."""
        alerts = self.rt.city.alerts
        quiet = not doc.get("urgent") and alerts.respects_quiet_hours(doc["channel"])
        if doc["next_at"] > now or (quiet and quiet_until(now, alerts.quiet_hours, self.planner.tz)):
            return doc
        return doc | claimed(doc, self.instance, now)

    async def _write(
        self, writes: Writes, plan: Plan, reads: AsyncClientSession | None, staged: dict[str, dict[str, Any]]
    ) -> None:
        """Add to `writes` notify's view of the plan's cases, and its planned deliveries not yet in the log (one
        planned before, by a redelivered or repeated event, keeps its state), read with `reads`; the new ones are
        handed over through `staged`."""
        for c, doc in plan.cases.items():
            # Replaced by `_id` with upsert: no find first, and no duplicate-key error inside the transaction.
            writes.replace(store.CASES, {"_id": c}, doc, upsert=True)
        for c, closed_s in plan.ended.items():  # no upsert: a case notify never alerted on has no view
            writes.update(store.CASES, {"_id": c}, {"$set": {store.CLOSED_S: closed_s}})
        if not plan.deliveries:
            return
        logged = await store.logged(self.rt.store, sorted(plan.deliveries), reads)
        now = self.rt.clock.now()
        new = [self._at_once(doc, now) for nid, doc in plan.deliveries.items() if nid not in logged]
        if new:
            writes.insert(store.DELIVERIES, new)
            staged.update((doc["_id"], dict(doc)) for doc in new)

    def on_committed(self, stage: str = "cases") -> None:
        """After a consumer's transaction commits: the deliveries it planned are in the log now, handed to the
        worker, which is woken."""
        staged = self._staged.pop(stage, {})
        if staged:
            self._hints.update(staged)
            self.claimed.update(nid for nid, doc in staged.items() if doc["status"] == "sending")
            self.wake.set()

    def hand_back(self, docs: list[dict[str, Any]]) -> None:
        """Deliveries a round left for the next one, handed over again; the worker runs again at once."""
        if docs:
            self._hints.update((d["_id"], d) for d in docs)
            self.wake.set()

    def take_hints(self) -> dict[str, dict[str, Any]]:
        """The deliveries planned since the worker's last round, handed over (and forgotten here)."""
        hints, self._hints = self._hints, {}
        return hints
