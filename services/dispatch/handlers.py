"""Dispatch's handlers: route new cases, apply commands; persist and publish (the deadline timers: `deadlines`)."""

from __future__ import annotations

from typing import Any

from contracts.cases import CaseDispatched, CaseOpened
from contracts.commands import CaseCommand
from services.dispatch import lifecycle, store
from services.dispatch.case import Case
from services.dispatch.commands import InvalidCommand, NotDispatchs
from services.dispatch.escalations import merchant_case
from xiuhua.bus import Outgoing
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.consumer import Batch, Item, count, outbox_of
from xiuhua.service import Runtime

CONFLICT_RETRIES = 3


class DispatchHandlers:
    """Opens the cases intake and scoring report, and applies commands to them."""

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

    def _ctx(self) -> lifecycle.Context:
        return lifecycle.Context(self.rt.clock.now(), self.rt.city, self.calendar)

    async def on_opened(self, batch: Batch) -> None:
        """A new case: choose units, compute the deadline, keep the case, publish the dispatch.

        The case is the opening's only record (`Batch.guarded`): its id refuses a second insert, and it keeps the
        dispatch it published, which a redelivered opening (a crash between the commit and the publish) emits
        again with its id. Another opening of a case kept (a copy under another id) leaves it alone."""
        await self._open_all(batch, [(item, item.message) for item in batch.items], guarded=True)

    async def _open_all(
        self, batch: Batch, opened: list[tuple[Item, CaseOpened]], *, guarded: bool = False
    ) -> list[tuple[Item, CaseOpened]]:
        """Open the batch's cases that are new (one read for the whole batch, skipped for a small batch of first
        deliveries, and the inserts sent with the batch's ledger entries); returns the messages that opened one. A
        case already kept, or opened earlier in the batch, is left alone."""
        ids = sorted({ev.case_id for _, ev in opened})
        if not ids:
            return []
        kept: dict[str, dict[str, Any] | None] = {}
        if batch.look_first:  # else a case kept already refuses the insert, and the batch comes again looking
            kept = await store.kept(self.rt.store, ids, batch.reads)
        docs: list[dict[str, Any]] = []
        done: list[tuple[Item, CaseOpened]] = []
        ctx = self._ctx()
        for item, ev in opened:
            if guarded:
                batch.guarded(item, emits_again=True)
            if ev.case_id in kept:
                if guarded:  # published again if this is the opening that kept the case, delivered again
                    batch.emit_kept(item, kept[ev.case_id])
                continue
            case, out = lifecycle.open_case(ev, ctx)
            batch.emit(item, out)
            case.outbox = outbox_of(item)
            kept[ev.case_id] = case.outbox
            docs.append(case.to_doc())
            done.append((item, ev))
            self._count_dispatch(out)
        batch.later().insert(store.CASES, docs)  # with the ledger entries: one command for a small batch
        return done

    async def on_command(self, batch: Batch) -> None:
        """A unit's or the command centre's command: apply it to the case, or say why not."""
        for item in batch.items:
            msg: CaseCommand | InvalidCommand | NotDispatchs = item.message
            if isinstance(msg, NotDispatchs):
                continue
            if isinstance(msg, InvalidCommand):
                doc = await store.find(self.rt.store, msg.case_id, batch.session)
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
        outcome: lifecycle.Applied | lifecycle.Rejected = lifecycle.Rejected("conflict", "")
        case: Case | None = None
        for _ in range(CONFLICT_RETRIES):
            doc = await store.find(self.rt.store, c.case_id, batch.session)
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
            if await store.replace_if_version(
                self.rt.store, case.case_id, case.version, outcome.case.to_doc(), batch.session
            ):
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
        opened = [(item, merchant_case(item.message, self.rt.city, self.rt.clock.now())) for item in batch.items]
        for item, ev in await self._open_all(batch, opened):
            # Published before the dispatch so every consumer sees the case opened first.
            item.out.insert(0, Outgoing.of(ev))
