"""Scoring's thin edge: fold case events into per-unit, per-period counters."""

from __future__ import annotations

from contracts.cases import CaseDispatched
from contracts.scores import UnitScoreUpdated
from services.scoring.periods import periods_of
from xiuhua.consumer import Batch
from xiuhua.service import Runtime

UNIT_PERIODS = "unit_periods"
COUNTERS = ("dispatched",)


class ScoringHandlers:
    """Applies lifecycle events to counters."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def on_case_event(self, batch: Batch) -> None:
        """Count dispatches per lead unit and week (more events and periods as the assessment grows)."""
        col = self.rt.store[UNIT_PERIODS]
        for item in batch.items:
            ev = item.message
            if not isinstance(ev, CaseDispatched):
                continue
            week = periods_of(ev.occurred_at)["week"]
            key = f"{ev.lead_unit.unit_id}:{week}"
            await col.update_one(
                {"_id": key},
                # Counters are top-level fields: an upsert that inserts with a dotted path is stored
                # literally by nx-27017 ("counters.dispatched"), unlike MongoDB.
                {"$inc": {"dispatched": 1}, "$set": {"unit_id": ev.lead_unit.unit_id, "period": week}},
                upsert=True,
                session=batch.session,
            )
            doc = await col.find_one({"_id": key}, session=batch.session)
            assert doc is not None
            batch.emit(item, UnitScoreUpdated(
                correlation_id=ev.correlation_id, unit_id=ev.lead_unit.unit_id, period=week,
                counters={k: doc[k] for k in COUNTERS if k in doc}, case_id=ev.case_id,
            ))
