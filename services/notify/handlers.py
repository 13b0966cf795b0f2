"""Notify's handlers: case and scoring events become pending deliveries, handed to the delivery worker.

Planned in memory for the whole batch (`services.notify.planning`): two reads, and the writes sent with the batch
(`Batch.later`). A delivery's `_id` is its notification id (kind, case, level, contact, channel): planning finds
before inserting, so redelivered events and restarts never plan it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from pymongo.asynchronous.client_session import AsyncClientSession

from contracts.cases import CaseDispatched
from services.notify import store
from services.notify.planning import WARNINGS, Plan, Planner
from xiuhua.consumer import Batch, folded_before
from xiuhua.service import Runtime
from xiuhua.store import Writes


class NotifyHandlers:
    """Plans deliveries from events and wakes the delivery worker once they are committed."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.planner = Planner(rt.city, ZoneInfo(rt.city.info.timezone), rt.clock)
        self.wake = asyncio.Event()  # set when planning commits deliveries: the worker runs at once
        self._planned = 0
        # Deliveries planning wrote, handed to the worker's next round as they were written, so a round woken by
        # planning need not look them up (a hint whose write did not commit fails its claim and is dropped; the
        # periodic scan finds every pending delivery whatever becomes of the hints).
        self._hints: dict[str, dict[str, Any]] = {}

    async def on_case_event(self, batch: Batch) -> None:
        """Case events that alert: dispatched (new case), deadline warning, overdue, escalated, urgent sensor case.

        Each is applied once without a ledger entry (`Batch.guarded`): a delivery's id names its case, kind, level,
        recipient and channel, and planning skips what the log holds; a dispatch also names itself in notify's view
        of the case (`applied`), so a copy of an earlier dispatch cannot put back the unit a later one replaced."""
        plan = Plan()
        looked = sorted({ev.case_id for i in batch.items if isinstance(ev := i.message, (CaseDispatched, *WARNINGS))})
        known = await store.cases(self.rt.store, looked, batch.reads)
        for item in batch.items:
            ev = item.message
            batch.guarded(item)
            if isinstance(ev, CaseDispatched) and folded_before(known.get(ev.case_id), ev.event_id):
                continue  # this dispatch was planned before
            self.planner.case_event(plan, ev, known)
        await self._write(batch.later(), plan, batch.reads)

    async def on_score_event(self, batch: Batch) -> None:
        """Scoring events that alert: a unit ranking's black list (bottom_ranking), a merchant's escalation."""
        plan = Plan()
        for item in batch.items:
            self.planner.score_event(plan, item.subject, item.message)
        await self._write(batch.later(), plan, batch.reads)

    async def plan_now(self, planning: Callable[[Plan], None]) -> None:
        """Plan outside any consumer's transaction (the worker's notice of a delivery given up): visible at once."""
        plan = Plan()
        planning(plan)
        writes = self.rt.store.writes()
        async with self.rt.store.outside_transactions():
            await self._write(writes, plan, None)
            await self.rt.store.write_together(writes)
        self.on_committed()

    async def _write(self, writes: Writes, plan: Plan, reads: AsyncClientSession | None) -> None:
        """Add to `writes` notify's view of the plan's cases, and its planned deliveries not yet in the log (one
        planned before, by a redelivered or repeated event, keeps its state), read with `reads`."""
        for c, doc in plan.cases.items():
            # Replaced by `_id` with upsert: no find first, and no duplicate-key error inside the transaction.
            writes.replace(store.CASES, {"_id": c}, doc, upsert=True)
        for c, closed_s in plan.ended.items():  # no upsert: a case notify never alerted on has no view
            writes.update(store.CASES, {"_id": c}, {"$set": {store.CLOSED_S: closed_s}})
        if not plan.deliveries:
            return
        logged = await store.logged(self.rt.store, sorted(plan.deliveries), reads)
        new = [doc for nid, doc in plan.deliveries.items() if nid not in logged]
        if new:
            writes.insert(store.DELIVERIES, new)
            self._planned += len(new)
            self._hints.update((doc["_id"], dict(doc)) for doc in new)

    def on_committed(self) -> None:
        """After a consumer's transaction commits: deliveries it planned are visible now, so wake the worker."""
        if self._planned:
            self._planned = 0
            self.wake.set()

    def take_hints(self) -> dict[str, dict[str, Any]]:
        """The deliveries planned since the worker's last round, handed over (and forgotten here)."""
        hints, self._hints = self._hints, {}
        return hints
