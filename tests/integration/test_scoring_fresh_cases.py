"""A unit that has just received cases well inside their deadlines is not failing: `score.v1.unit_updated` says
100 with nothing due, and the case counts as due (and closed) the moment it is closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.cases import CaseClosed, CaseDispatched
from contracts.values import UnitRef
from tests.helpers import BusRecorder, eventually, publish
from xiuhua.clock import FrozenClock
from xiuhua.registry import spec
from xiuhua.service import running

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai


async def test_fresh_cases_score_full_and_count_when_closed(settings, city):
    lead = UnitRef(unit_id="CD-SAN", name="城东环卫所", role="sanitation")
    fresh = [
        CaseDispatched(
            occurred_at=T0 + timedelta(minutes=i),
            case_id=f"C-F{i}",
            street_code="CD",
            category_code="0201",
            lead_unit=lead,
            rule_id="r",
            due_at=T0 + timedelta(days=2),
            time_limit="2d",
        )
        for i in range(3)
    ]
    async with (
        BusRecorder(settings.nats_url) as bus,
        running(spec("scoring"), settings, clock=FrozenClock(T0), city=city),
    ):
        for ev in fresh:
            await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)
        await eventually(lambda: len(bus.on("score.v1.unit_updated")) == 3, timeout=30)
        last = bus.on("score.v1.unit_updated")[-1]
        assert last["unit_id"] == "CD-SAN" and last["score"] == 100.0
        assert last["counters"] == {"dispatched": 3} and last["rates"]["on_time_closure_rate"] is None

        closed = CaseClosed(
            occurred_at=T0 + timedelta(hours=3),
            case_id="C-F0",
            street_code="CD",
            unit_id="CD-SAN",
            on_time=True,
            closed_by="verification",
        )
        await publish(settings.nats_url, closed.subject_for(), closed.to_json(), msg_id=closed.event_id)
        await eventually(lambda: len(bus.on("score.v1.unit_updated")) == 4, timeout=30)
        after = bus.on("score.v1.unit_updated")[-1]
        assert after["counters"] == {"dispatched": 3, "due": 1, "closed": 1, "closed_on_time": 1}
        assert after["rates"]["on_time_closure_rate"] == 1.0 and after["score"] == 100.0
