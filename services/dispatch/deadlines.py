"""The deadline timers (时限预警): a periodic job that publishes every warning, overdue and escalation that has
fallen due (`services.dispatch.timers` decides which)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from services.dispatch import store, timers
from services.dispatch.case import Case
from xiuhua.bus import Outgoing
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.service import Runtime

TIMER_BATCH = 100  # cases claimed per transaction


class DeadlineTimers:
    """Fires the deadline timers of the cases whose next timer has fallen due."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.calendar = BusinessCalendar(rt.city.calendar)
        self.timer_events = rt.metrics.counter(
            "xiuhua_case_timers", "Deadline warnings, overdue and escalations", ("kind",)
        )

    async def tick(self) -> int:
        """Publish every warning, overdue and escalation that has fallen due; returns how many this instance
        published. Safe with any number of instances: each (case, cycle, kind, level) is claimed once."""
        now = self.rt.clock.now()
        ids = await store.due_case_ids(self.rt.store[store.CASES], now)
        published = 0
        for start in range(0, len(ids), TIMER_BATCH):
            chunk = ids[start : start + TIMER_BATCH]
            claimed = await self.rt.store.in_transaction(functools.partial(self._claim_timers, ids=chunk, now=now))
            await self.rt.ledger.publish([(key, [out]) for key, _, out in claimed])
            for _, kind, _ in claimed:
                self.timer_events.labels(kind).inc()  # after the commit, outside any batch
            published += len(claimed)
        return published

    async def _claim_timers(self, session: Any, ids: list[str], now: datetime) -> list[tuple[str, str, Outgoing]]:
        """In one transaction: read the cases again, claim the timers that the case *as it now stands* warrants,
        and mark them fired with a write conditioned on the version read.

        The scan ran outside any transaction, so a command (resolve, cancel, an approved extension, a return)
        may have committed since; deciding on the scanned copy would publish a warning or an overdue for a
        case that no longer has one. Here the read, the ledger claims and the write commit together: with the
        embedded store transactions run one at a time, and on MongoDB a command writing the same case makes
        one of the two transactions retry on the other's result. Returns (ledger key, kind, event) to publish.
        """
        cfg = self.rt.city.calendar
        docs = await store.find_all(self.rt.store, ids, session)
        plans: list[tuple[Case, list[tuple[str, timers.Timer]]]] = []
        for case_id in ids:
            if case_id not in docs:
                continue
            case = Case.from_doc(docs[case_id])
            due = timers.due_timers(case, now, self.calendar, cfg)
            after = timers.fired(case, due, self.calendar, cfg)
            if after == case:
                continue  # nothing due any more (the case moved on, or another instance fired them)
            # The version stays: timer bookkeeping is not a change of the case. Read and write share the
            # transaction, so the filter holds unless a concurrent writer aborts this attempt (then it retries).
            if await store.replace_if_version(self.rt.store, case.case_id, case.version, after.to_doc(), session):
                plans.append((case, [(timers.timer_key(case, t), t) for t in due]))
        # Inside a transaction look before inserting (a duplicate key would abort it): a key is taken when
        # another instance, or this one before a crash, claimed it already.
        taken = await self.rt.ledger.seen([k for _, keyed in plans for k, _ in keyed], session=session)
        claimed = [
            (key, t.kind, Outgoing.of(timers.event_for(case, t, cfg)))
            for case, keyed in plans
            for key, t in keyed
            if key not in taken
        ]
        await self.rt.ledger.record(session, [(key, [out]) for key, _, out in claimed])
        return claimed
