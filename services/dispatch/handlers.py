"""Dispatch's thin edge: route new cases, apply commands, fire deadline timers; persist and publish."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from contracts.cases import CaseDispatched, CaseOpened
from contracts.commands import CaseCommand
from contracts.merchants import MerchantEscalated
from contracts.values import Place, ReportSource
from services.dispatch import lifecycle, timers
from services.dispatch.case import TIMER_FIELD, Case
from services.dispatch.commands import InvalidCommand
from xiuhua.bus import Outgoing
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.consumer import Batch, Item, count
from xiuhua.service import Runtime
from xiuhua.store import backfill_seconds

log = logging.getLogger("xiuhua.dispatch")

CASES = "cases"
CONFLICT_RETRIES = 3
TIMER_SCAN = 500  # due cases per scan
TIMER_BATCH = 100  # cases claimed per transaction


async def due_case_ids(cases: Any, now: datetime, limit: int = TIMER_SCAN) -> list[str]:
    """Ids of the cases whose next timer has fallen due, earliest first (the scan of the timer loop)."""
    scan = cases.find({TIMER_FIELD: {"$lte": now.timestamp()}}, {"_id": 1}).sort(TIMER_FIELD, 1).limit(limit)
    return [d["_id"] async for d in scan]


async def index_legacy_timers(cases: Any) -> int:
    """Give `next_timer_s` to cases that have a next timer but not that field (written by a build that stored only
    `next_timer_at`), whose timers the scan would otherwise never see; returns how many."""
    return await backfill_seconds(cases, "next_timer_at", TIMER_FIELD)


class DispatchHandlers:
    """Applies case events and commands, and runs the deadline timers."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.calendar = BusinessCalendar(rt.city.calendar)
        m = rt.metrics
        self.dispatched = m.counter("xiuhua_cases_dispatched", "Cases dispatched", ("role",))
        self.estimated = m.counter(
            "xiuhua_deadlines_estimated",
            "Dispatches whose deadline counted a year the city's calendar has no official schedule for",
            ("role",),
        )
        self.commands = m.counter("xiuhua_case_commands", "Case commands by outcome", ("action", "outcome"))
        self.timer_events = m.counter("xiuhua_case_timers", "Deadline warnings, overdue and escalations", ("kind",))

    def _ctx(self) -> lifecycle.Context:
        return lifecycle.Context(self.rt.clock.now(), self.rt.city, self.calendar)

    async def on_opened(self, batch: Batch) -> None:
        """A new case: choose units, compute the deadline, keep the case, publish the dispatch."""
        await self._open_all(batch, [(item, item.message) for item in batch.items])

    async def _open_all(
        self, batch: Batch, opened: list[tuple[Item, CaseOpened]]
    ) -> list[tuple[Item, CaseOpened]]:
        """Open the batch's cases that are new (one read for the whole batch, skipped for a small batch of first
        deliveries, and the inserts sent with the batch's ledger entries); returns the messages that opened one. A
        case already kept, or opened earlier in the batch, is left alone."""
        cases = self.rt.store[CASES]
        ids = sorted({ev.case_id for _, ev in opened})
        if not ids:
            return []
        kept: set[str] = set()
        if batch.look_first:  # else a case kept already refuses the insert, and the batch comes again looking
            kept = {d["_id"] async for d in cases.find({"_id": {"$in": ids}}, {"_id": 1}, session=batch.reads)}
        docs: list[dict[str, Any]] = []
        done: list[tuple[Item, CaseOpened]] = []
        ctx = self._ctx()
        for item, ev in opened:
            if ev.case_id in kept:
                continue
            kept.add(ev.case_id)
            case, out = lifecycle.open_case(ev, ctx)
            docs.append(case.to_doc())
            done.append((item, ev))
            batch.emit(item, out)
            self._count_dispatch(out)
        batch.later().insert(CASES, docs)  # with the ledger entries: one command for a small batch
        return done

    async def on_command(self, batch: Batch) -> None:
        """A unit's or the command centre's command: apply it to the case, or say why not."""
        for item in batch.items:
            msg: CaseCommand | InvalidCommand = item.message
            if isinstance(msg, InvalidCommand):
                doc = await self.rt.store[CASES].find_one({"_id": msg.case_id}, session=batch.session)
                case = Case.from_doc(doc) if doc else None
                batch.emit(
                    item,
                    lifecycle.reject_event(
                        msg.command_id,
                        msg.action,
                        msg.case_id,
                        lifecycle.Rejected("invalid", msg.detail),
                        case,
                        self.rt.clock.now(),
                    ),
                )
                count(self.commands.labels(msg.action, "invalid"))
                continue
            await self._command(batch, item, msg)

    async def _command(self, batch: Batch, item: Item, c: CaseCommand) -> None:
        cases = self.rt.store[CASES]
        outcome: lifecycle.Applied | lifecycle.Rejected = lifecycle.Rejected("conflict", "")
        case: Case | None = None
        for _ in range(CONFLICT_RETRIES):
            doc = await cases.find_one({"_id": c.case_id}, session=batch.session)
            if doc is None:
                outcome, case = lifecycle.Rejected("unknown_case", f"no case {c.case_id}"), None
                break
            case = Case.from_doc(doc)
            if c.command_id in case.command_ids:
                count(self.commands.labels(c.action, "duplicate"))
                return  # applied before (a resend under a new message id): its events went out then
            outcome = lifecycle.decide(case, c, self._ctx())
            if isinstance(outcome, lifecycle.Rejected):
                break
            # The whole document, not `$set`: nx-27017 stores a datetime given to `$set` as a string.
            res = await cases.replace_one(
                {"_id": case.case_id, "version": case.version}, outcome.case.to_doc(), session=batch.session
            )
            if res.matched_count == 1:
                break
            # Another writer moved the case on: decide again on its fresh state.
            outcome = lifecycle.Rejected("conflict", f"case {c.case_id} kept changing under the command")
        if isinstance(outcome, lifecycle.Rejected):
            batch.emit(
                item, lifecycle.reject_event(c.command_id, c.action, c.case_id, outcome, case, self.rt.clock.now())
            )
            count(self.commands.labels(c.action, outcome.reason))
            return
        for ev in outcome.events:
            batch.emit(item, ev)
        count(self.commands.labels(c.action, "applied"))
        for ev in outcome.events:
            if isinstance(ev, CaseDispatched):
                self._count_dispatch(ev)

    def _count_dispatch(self, ev: CaseDispatched) -> None:
        count(self.dispatched.labels(ev.lead_unit.role))
        if ev.due_at_estimated:
            count(self.estimated.labels(ev.lead_unit.role))

    async def on_merchant_escalated(self, batch: Batch) -> None:
        """A merchant failed its 门前三包 duty again: open an enforcement case (source merchant_check) and
        dispatch it."""
        opened = [(item, self.merchant_case(item.message)) for item in batch.items]
        for item, ev in await self._open_all(batch, opened):
            # Published before the dispatch so every consumer sees the case opened first.
            item.out.insert(0, Outgoing.of(ev))

    def merchant_case(self, ev: MerchantEscalated) -> CaseOpened:
        """The enforcement case of an escalated merchant; its id is stable per merchant and period."""
        city = self.rt.city
        merchant = city.merchants.get(ev.merchant_id)
        place = self._merchant_place(ev, merchant)
        category = city.category(city.routing.merchant_category)
        ref = f"{ev.merchant_id}:{ev.period}"
        name = ev.merchant_name or (merchant.name if merchant else ev.merchant_id)
        return CaseOpened(
            occurred_at=self.rt.clock.now(),
            correlation_id=ev.correlation_id or f"merchant:{ref}",
            case_id="M-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{ev.merchant_id}-{ev.period}"),
            street_code=place.street_code or ev.street_code,
            source=ReportSource.merchant_check,
            source_ref=ref,
            category_code=city.routing.merchant_category,
            category_name=category.name_zh if category else "",
            description=f"{name} 门前责任区多次检查不合格 ({ev.violations} 次, {ev.period}): {ev.reason}".strip(),
            place=place,
            reported_at=ev.occurred_at,
            merchant_id=ev.merchant_id,
        )

    def _merchant_place(self, ev: MerchantEscalated, merchant: Any) -> Place:
        areas = self.rt.city.areas
        if merchant is not None and merchant.lng is not None and merchant.lat is not None:
            found = areas.place_of_point(merchant.lng, merchant.lat, merchant.address)
            if found is not None:
                return found
        for code in (merchant.area if merchant else None, ev.community_code, ev.street_code):
            if code and code in areas.by_code:
                return areas.place_of_area(code, address=merchant.address if merchant else None)
        return Place(street_code=ev.street_code, community_code=ev.community_code)

    async def tick(self) -> int:
        """Publish every warning, overdue and escalation that has fallen due; returns how many this instance
        published. Safe with any number of instances: each (case, cycle, kind, level) is claimed once."""
        cases = self.rt.store[CASES]
        now = self.rt.clock.now()
        ids = await due_case_ids(cases, now)
        published = 0
        for start in range(0, len(ids), TIMER_BATCH):
            chunk = ids[start : start + TIMER_BATCH]
            claimed = await self.rt.store.in_transaction(lambda s, chunk=chunk: self._claim_timers(s, chunk, now))
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
        cases = self.rt.store[CASES]
        cfg = self.rt.city.calendar
        docs = {d["_id"]: d async for d in cases.find({"_id": {"$in": ids}}, session=session)}
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
            res = await cases.replace_one(
                {"_id": case.case_id, "version": case.version}, after.to_doc(), session=session
            )
            if res.matched_count == 1:
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
