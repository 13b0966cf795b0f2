"""Dispatch's thin edge: route new cases, set the deadline, keep the case, publish."""

from __future__ import annotations

from contracts.cases import CaseDispatched, CaseOpened
from services.dispatch.business_calendar import BusinessCalendar
from services.dispatch.routing import CaseFacts, route
from xiuhua.consumer import Batch
from xiuhua.service import Runtime

CASES = "cases"


class DispatchHandlers:
    """Applies case events and commands."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.calendar = BusinessCalendar(rt.city.calendar)
        self.dispatched = rt.metrics.counter("xiuhua_cases_dispatched", "Cases dispatched", ("role",))

    async def on_opened(self, batch: Batch) -> None:
        """A new case: choose units, compute the deadline, keep the case, publish the dispatch."""
        cases = self.rt.store[CASES]
        for item in batch.items:
            ev: CaseOpened = item.message
            if await cases.find_one({"_id": ev.case_id}, {"_id": 1}, session=batch.session):
                continue
            now = self.rt.clock.now()
            decision = route(
                CaseFacts(ev.category_code, ev.place, ev.source, ev.urgency, now), self.rt.city
            )
            category = self.rt.city.category(ev.category_code)
            limit = category.time_limit if category else "2d"
            due = self.calendar.due(now, limit)
            out = CaseDispatched(
                correlation_id=ev.correlation_id, case_id=ev.case_id, street_code=ev.street_code,
                category_code=ev.category_code, lead_unit=decision.lead, cooperating_units=decision.cooperating,
                rule_id=decision.rule_id, due_at=due, urgency=ev.urgency, time_limit=limit,
            )
            await cases.insert_one(
                {
                    "_id": ev.case_id, "version": 1, "state": "dispatched", "opened": ev.model_dump(mode="json"),
                    "lead_unit": decision.lead.model_dump(mode="json"), "rule_id": decision.rule_id,
                    "due_at": due, "dispatched_at": now, "returns": 0,
                },
                session=batch.session,
            )
            batch.emit(item, out)
            self.dispatched.labels(decision.lead.role).inc()
