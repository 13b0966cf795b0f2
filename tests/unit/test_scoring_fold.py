"""The unit assessment fold: any order, any redelivery, the same numbers (hypothesis over long histories)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from services.scoring import units
from services.scoring.periods import periods_of
from services.scoring.rates import rates
from xiuhua.city.assessment import AssessmentFile

UNITS = [
    UnitRef(unit_id="CD-SAN", name="城东环卫所", role="sanitation"),
    UnitRef(unit_id="JQ-SAN", name="金桥环卫所", role="sanitation"),
    UnitRef(unit_id="CD-ENF", name="城东综合执法队", role="enforcement"),
    UnitRef(unit_id="JQ-ENF", name="金桥综合执法队", role="enforcement"),
]
# Around a year end and a quarter end, so week/month/quarter/year boundaries are crossed (city time).
START = datetime(2026, 12, 27, 10, 0, tzinfo=UTC)


def _case_history(rnd: random.Random, n: int) -> list[CaseEvent]:
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
    evs.append(CaseOpened(
        **common, occurred_at=at(), source="inspection" if rnd.random() < 0.15 else "grid", source_ref=cid,
        category_code="0201", description="x", place=Place(street_code="CD"), reported_at=t,
        urgency="urgent" if urgent else "normal", supervisor_found=rnd.random() < 0.15,
    ))
    unit = rnd.choice(UNITS)
    rounds = 1

    def dispatch() -> None:
        evs.append(CaseDispatched(
            **common, occurred_at=at(), category_code="0201", lead_unit=unit, rule_id="r",
            due_at=t + timedelta(hours=8), time_limit="8h", dispatch_round=rounds,
            urgency="urgent" if urgent else "normal",
        ))

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


def _history(seed: int, cases: int) -> list[CaseEvent]:
    rnd = random.Random(seed)
    return [e for n in range(cases) for e in _case_history(rnd, n)]


def _fold(events: list[CaseEvent]) -> units.UnitFold:
    f = units.UnitFold()
    for e in events:
        f.apply(e)
    return f


def _disorder(events: list[CaseEvent], rnd: random.Random, dup_share: float) -> list[CaseEvent]:
    """Shuffled, with redelivered copies (the same event id) sprinkled anywhere, even before the original."""
    out = list(events)
    out += [rnd.choice(events) for _ in range(int(len(events) * dup_share))]
    rnd.shuffle(out)
    return out


def _batch_definition(events: list[CaseEvent]) -> dict[str, dict[str, Any]]:
    """The documents by definition: the sum over cases of each case's contribution from all its facts."""
    facts: dict[str, dict[str, units.Fact]] = {}
    for e in events:
        if (f := units.fact_of(e)) is not None:
            facts.setdefault(e.case_id, {})[f["id"]] = f
    docs: dict[str, dict[str, Any]] = {}
    for fs in facts.values():
        units.apply_delta(docs, units.contribution(fs.values()))
    return docs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), cases=st.integers(1, 60), order=st.randoms(use_true_random=False),
       dup_share=st.floats(0, 0.5))
def test_any_order_and_redelivery_give_the_same_documents(seed, cases, order, dup_share) -> None:
    events = _history(seed, cases)
    in_order = _fold(events)
    shuffled = _fold(_disorder(events, order, dup_share))
    assert shuffled.docs == in_order.docs
    assert shuffled.cases == in_order.cases
    assert in_order.docs == _batch_definition(events)
    for doc in in_order.docs.values():  # every rate is a share, whatever the history
        for name, rate in rates(doc["c"], AssessmentFile()).items():
            assert rate is None or 0.0 <= rate <= 1.0, (name, rate, doc)


def test_a_long_random_history_replays_exactly() -> None:
    """About 20,000 events over three months around a year end, shuffled and 30 % redelivered."""
    events = _history(7, 2000)
    assert len(events) > 15_000
    live = _fold(_disorder(events, random.Random(1), 0.3))
    rebuilt = _fold(events)
    assert live.docs == rebuilt.docs

    # The totals mean what they say.
    weeks = [d for d in rebuilt.docs.values() if d["kind"] == "week"]
    dispatches = [e for e in events if isinstance(e, CaseDispatched)]
    assert sum(d["c"].get("dispatched", 0) for d in weeks) == len(dispatches)
    cancelled = {e.case_id for e in events if isinstance(e, CaseCancelled)}
    assert sum(d["c"].get("due", 0) for d in weeks) == len({e.case_id for e in dispatches} - cancelled)
    for kind in ("month", "quarter", "year"):
        same = [d for d in rebuilt.docs.values() if d["kind"] == kind]
        assert sum(d["c"].get("dispatched", 0) for d in same) == len(dispatches)


def test_events_before_their_dispatch_wait_for_it() -> None:
    histories = (_history(seed, 1) for seed in range(100))
    evs = next(h for h in histories if sum(isinstance(e, CaseDispatched) for e in h) == 1 and len(h) > 5)
    dispatch = next(e for e in evs if isinstance(e, CaseDispatched))
    rest = [e for e in evs if e is not dispatch]
    f = units.UnitFold()
    for e in rest:
        f.apply(e)
    assert f.docs == {}  # nothing can be attributed without the dispatch
    f.apply(dispatch)
    assert f.docs == _fold(evs).docs


def _case(*specs: tuple[type, dict[str, Any]]) -> list[CaseEvent]:
    t = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai: 2026-W48
    out = []
    for i, (cls, kw) in enumerate(specs):
        base: dict[str, Any] = {"case_id": "C-1", "street_code": "CD", "occurred_at": t + timedelta(hours=i)}
        if cls is CaseDispatched:
            base |= {"category_code": "0201", "rule_id": "r", "due_at": t + timedelta(days=1), "time_limit": "1d"}
        elif cls is CaseOpened:
            base |= {"source": "inspection", "source_ref": "F-1", "category_code": "0201", "description": "x",
                     "place": Place(), "reported_at": t}
        else:
            base |= {"unit_id": kw.pop("unit", "CD-SAN")}
        out.append(cls(**base, **kw))
    return out


def test_a_returned_case_counts_its_outcome_for_the_unit_that_finally_had_it() -> None:
    san, enf = UNITS[0], UNITS[2]
    f = _fold(_case(
        (CaseOpened, {"supervisor_found": True}),
        (CaseDispatched, {"lead_unit": san}),
        (CaseReturned, {"reason": "职责", "returns": 1}),
        (CaseDispatched, {"lead_unit": enf, "dispatch_round": 2}),
        (CaseAcknowledged, {"unit": "CD-ENF", "in_time": True}),
        (CaseResolved, {"unit": "CD-ENF", "on_time": True}),
        (CaseVerified, {"unit": "CD-ENF", "passed": False, "rework_count": 1}),
        (CaseResolved, {"unit": "CD-ENF", "on_time": False}),
        (CaseVerified, {"unit": "CD-ENF", "passed": True}),
        (CaseClosed, {"unit": "CD-ENF", "on_time": False, "closed_by": "verification"}),
        (CaseRated, {"unit": "CD-ENF", "satisfaction": "basic"}),
    ))
    week = periods_of(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))["week"]
    assert week == "2026-W48"
    assert f.docs[f"CD-SAN:{week}"]["c"] == {"dispatched": 1, "returned": 1}
    assert f.docs[f"CD-ENF:{week}"]["c"] == {
        "dispatched": 1, "acknowledged": 1, "acknowledged_in_time": 1, "reworked": 1, "due": 1, "resolved": 1,
        "closed": 1, "reworked_cases": 1, "supervisor_found": 1, "rated": 1, "basic": 1,
    }
    assert f.docs[f"CD-ENF:{week}"]["role"] == "enforcement"


def test_a_cancelled_case_has_no_outcome_and_a_reopened_case_is_not_closed() -> None:
    san = UNITS[0]
    cancelled = _fold(_case((CaseDispatched, {"lead_unit": san}), (CaseCancelled, {"reason": "虚假"})))
    assert next(d["c"] for d in cancelled.docs.values()) == {"dispatched": 1}
    reopened = _fold(_case(
        (CaseDispatched, {"lead_unit": san}),
        (CaseClosed, {"on_time": True, "closed_by": "verification"}),
        (CaseReopened, {"reason": "复发"}),
    ))
    c = next(d["c"] for d in reopened.docs.values())
    assert c.get("closed", 0) == 0 and c["reopened"] == 1 and c["due"] == 1


def test_a_case_closed_as_cancelled_counts_like_a_cancelled_one_in_any_order() -> None:
    """Dispatch ends a cancelled case with `case.closed` (outcome cancelled) and `case.cancelled`: not due, not
    closed, not on time, whichever of the two arrives, and in either order."""
    san = UNITS[0]
    ack = (CaseAcknowledged, {"in_time": True})
    closed = (CaseClosed, {"on_time": False, "closed_by": "cancel", "outcome": "cancelled", "reason": "虚假"})
    cancelled = (CaseCancelled, {"reason": "虚假"})
    expected = {"dispatched": 1, "acknowledged": 1, "acknowledged_in_time": 1}
    for tail in ([closed, cancelled], [cancelled, closed], [closed]):
        events = _case((CaseDispatched, {"lead_unit": san}), ack, *tail)
        for order in (events, list(reversed(events))):
            assert next(d["c"] for d in _fold(order).docs.values()) == expected, (tail, order)
    # The older shape (closed_by cancel without an outcome) is read the same way.
    legacy = _case((CaseDispatched, {"lead_unit": san}), (CaseClosed, {"on_time": True, "closed_by": "cancel"}))
    assert next(d["c"] for d in _fold(legacy).docs.values()) == {"dispatched": 1}


def test_the_third_failed_verification_and_after_are_repeats() -> None:
    specs: list[tuple[type, dict[str, Any]]] = [(CaseDispatched, {"lead_unit": UNITS[0]})]
    specs += [(CaseVerified, {"passed": False, "rework_count": k}) for k in range(1, 5)]
    c = next(d["c"] for d in _fold(_case(*specs)).docs.values())
    assert c["reworked"] == 4 and c["rework_repeat"] == 2 and c["reworked_cases"] == 1


def test_the_types_scoring_skips_unread_are_exactly_those_that_leave_no_fact() -> None:
    # Skipped by subject before decoding: each must be a type no event of which ever counts.
    from contracts import cases as c
    from contracts import registry

    kinds = [m for m in registry.patterns().values() if issubclass(m, c.CaseEvent)]
    for kind in kinds:
        event = kind.model_validate(kind.example())
        assert (units.fact_of(event) is None) == units.uncounted(kind), kind
    closed = c.CaseClosed.model_validate(c.CaseClosed.example())
    assert units.fact_of(closed.model_copy(update={"outcome": "cancelled"})) is not None  # counted either way
    assert {k.__name__ for k in kinds if units.uncounted(k)} == {
        "CaseCommandRejected", "CaseDeadlineWarning", "CaseExtensionRequested", "CaseMerged", "CaseTransferred"}
