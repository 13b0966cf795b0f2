"""Plausible case histories for scoring: every branch dispatch can take, around a year end."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.cases import (
    CaseAcknowledged,
    CaseCancelled,
    CaseClosed,
    CaseDispatched,
    CaseEscalated,
    CaseEvent,
    CaseExtensionApproved,
    CaseOpened,
    CaseOverdue,
    CaseRated,
    CaseReopened,
    CaseResolved,
    CaseReturned,
    CaseVerified,
)
from contracts.values import Place, UnitRef

UNITS = [
    UnitRef(unit_id="CD-SAN", name="城东环卫所", role="sanitation"),
    UnitRef(unit_id="JQ-SAN", name="金桥环卫所", role="sanitation"),
    UnitRef(unit_id="CD-ENF", name="城东综合执法队", role="enforcement"),
    UnitRef(unit_id="JQ-ENF", name="金桥综合执法队", role="enforcement"),
]


# Around a year end and a quarter end, so week/month/quarter/year boundaries are crossed (city time).
START = datetime(2026, 12, 27, 10, 0, tzinfo=UTC)


def case_history(rnd: random.Random, n: int) -> list[CaseEvent]:
    """One plausible lifecycle, with the branches dispatch can take."""
    cid = f"C-{n:05d}"
    t = START + timedelta(hours=rnd.randint(-24 * 40, 24 * 40))
    evs: list[CaseEvent] = []

    def at() -> datetime:
        nonlocal t
        t += timedelta(minutes=rnd.randint(1, 60 * 30))
        return t

    common: dict[str, Any] = {"case_id": cid, "street_code": "CD", "correlation_id": f"grid:{cid}"}
    urgent = rnd.random() < 0.2
    evs.append(
        CaseOpened(
            **common,
            occurred_at=at(),
            source="inspection" if rnd.random() < 0.15 else "grid",
            source_ref=cid,
            category_code="0201",
            description="x",
            place=Place(street_code="CD"),
            reported_at=t,
            urgency="urgent" if urgent else "normal",
            supervisor_found=rnd.random() < 0.15,
        )
    )
    unit = rnd.choice(UNITS)
    rounds = 1

    def dispatch() -> None:
        evs.append(
            CaseDispatched(
                **common,
                occurred_at=at(),
                category_code="0201",
                lead_unit=unit,
                rule_id="r",
                due_at=t + timedelta(hours=8),
                time_limit="8h",
                dispatch_round=rounds,
                urgency="urgent" if urgent else "normal",
            )
        )

    def u(cls: type, **kw: Any) -> None:
        evs.append(cls(**common, occurred_at=at(), unit_id=unit.unit_id, **kw))

    dispatch()
    while rnd.random() < 0.25 and rounds < 3:
        if rnd.random() < 0.5:
            u(CaseAcknowledged, in_time=rnd.random() < 0.8)
        u(CaseReturned, reason="不属于本单位", returns=rounds)
        unit = rnd.choice([x for x in UNITS if x != unit])
        rounds += 1
        dispatch()
    if rnd.random() < 0.05:
        u(CaseCancelled, reason="虚假")
        return evs
    u(CaseAcknowledged, in_time=rnd.random() < 0.85)
    if rnd.random() < 0.15:
        u(CaseExtensionApproved, hours=8, due_at=t + timedelta(hours=16))
    if rnd.random() < 0.2:
        u(CaseOverdue, due_at=t)
        if rnd.random() < 0.5:
            u(CaseOverdue, due_at=t)  # a second warning of the same overdue: counted once
        if rnd.random() < 0.5:
            u(CaseEscalated, level=1, due_at=t)
    if rnd.random() < 0.1:
        return evs  # still open
    for k in range(rnd.choice([0, 0, 0, 1, 2, 3, 4])):
        u(CaseResolved, on_time=rnd.random() < 0.7)
        u(CaseVerified, passed=False, rework_count=k + 1)
    u(CaseResolved, on_time=rnd.random() < 0.8)
    u(CaseVerified, passed=True)
    u(CaseClosed, on_time=rnd.random() < 0.8, closed_by="verification")
    if rnd.random() < 0.7:
        u(CaseRated, satisfaction=rnd.choice(["satisfied", "satisfied", "basic", "unsatisfied"]))
    if rnd.random() < 0.08:
        u(CaseReopened, reason="复发")
        if rnd.random() < 0.6:
            u(CaseResolved, on_time=True)
            u(CaseVerified, passed=True)
            u(CaseClosed, on_time=False, closed_by="verification")
    return evs


def history(seed: int, cases: int) -> list[CaseEvent]:
    rnd = random.Random(seed)
    return [e for n in range(cases) for e in case_history(rnd, n)]


def aged(events: list, prefix: str, days: int) -> list:
    """The same lifecycles under other case ids, `days` earlier."""
    out = []
    for e in events:
        update: dict = {"case_id": f"{prefix}{e.case_id}", "occurred_at": e.occurred_at - timedelta(days=days)}
        if hasattr(e, "reported_at"):
            update["reported_at"] = e.reported_at - timedelta(days=days)
        out.append(e.model_copy(update=update))
    return out
