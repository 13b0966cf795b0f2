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
from contracts.values import Place
from services.scoring import units
from services.scoring.periods import periods_of
from services.scoring.rates import rates
from tests.helpers.scoring import UNITS, history
from xiuhua.city.assessment import AssessmentFile


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
@given(
    seed=st.integers(0, 2**32 - 1),
    cases=st.integers(1, 60),
    order=st.randoms(use_true_random=False),
    dup_share=st.floats(0, 0.5),
)
def test_any_order_and_redelivery_give_the_same_documents(seed, cases, order, dup_share) -> None:
    events = history(seed, cases)
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
    events = history(7, 2000)
    assert len(events) > 15_000
    live = _fold(_disorder(events, random.Random(1), 0.3))
    rebuilt = _fold(events)
    assert live.docs == rebuilt.docs

    # The totals mean what they say.
    weeks = [d for d in rebuilt.docs.values() if d["kind"] == "week"]
    dispatches = [e for e in events if isinstance(e, CaseDispatched)]
    assert sum(d["c"].get("dispatched", 0) for d in weeks) == len(dispatches)
    cancelled = {e.case_id for e in events if isinstance(e, CaseCancelled)}
    # 应结案: closed, or its last dispatch's deadline passed (an event at or after it); the rest are still in time.
    closed = {e.case_id for e in events if isinstance(e, CaseClosed)}
    last_dispatch = {e.case_id: e for e in dispatches}
    latest = {e.case_id: e.occurred_at for e in events}
    past_deadline = {c for c, d in last_dispatch.items() if latest[c] >= d.due_at}
    fell_due = (closed | past_deadline) - cancelled
    assert 0 < len(fell_due) < len(last_dispatch) - len(cancelled)
    assert sum(d["c"].get("due", 0) for d in weeks) == len(fell_due)
    for kind in ("month", "quarter", "year"):
        same = [d for d in rebuilt.docs.values() if d["kind"] == kind]
        assert sum(d["c"].get("dispatched", 0) for d in same) == len(dispatches)


def test_events_before_their_dispatch_wait_for_it() -> None:
    histories = (history(seed, 1) for seed in range(100))
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
            base |= {
                "source": "inspection",
                "source_ref": "F-1",
                "category_code": "0201",
                "description": "x",
                "place": Place(),
                "reported_at": t,
            }
        else:
            base |= {"unit_id": kw.pop("unit", "CD-SAN")}
        out.append(cls(**base, **kw))
    return out


def test_a_returned_case_counts_its_outcome_for_the_unit_that_finally_had_it() -> None:
    san, enf = UNITS[0], UNITS[2]
    f = _fold(
        _case(
            (CaseOpened, {"supervisor_found": True}),
            # Every dispatch carries the case's supervisor_found, as dispatch publishes it.
            (CaseDispatched, {"lead_unit": san, "supervisor_found": True}),
            (CaseReturned, {"reason": "职责", "returns": 1}),
            (CaseDispatched, {"lead_unit": enf, "dispatch_round": 2, "supervisor_found": True}),
            (CaseAcknowledged, {"unit": "CD-ENF", "in_time": True}),
            (CaseResolved, {"unit": "CD-ENF", "on_time": True}),
            (CaseVerified, {"unit": "CD-ENF", "passed": False, "rework_count": 1}),
            (CaseResolved, {"unit": "CD-ENF", "on_time": False}),
            (CaseVerified, {"unit": "CD-ENF", "passed": True}),
            (CaseClosed, {"unit": "CD-ENF", "on_time": False, "closed_by": "verification"}),
            (CaseRated, {"unit": "CD-ENF", "satisfaction": "basic"}),
        )
    )
    week = periods_of(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))["week"]
    assert week == "2026-W48"
    assert f.docs[f"CD-SAN:{week}"]["c"] == {"dispatched": 1, "returned": 1}
    assert f.docs[f"CD-ENF:{week}"]["c"] == {
        "dispatched": 1,
        "acknowledged": 1,
        "acknowledged_in_time": 1,
        "reworked": 1,
        "due": 1,
        "resolved": 1,
        "closed": 1,
        "reworked_cases": 1,
        "supervisor_found": 1,
        "rated": 1,
        "basic": 1,
    }
    assert f.docs[f"CD-ENF:{week}"]["role"] == "enforcement"


def test_a_cancelled_case_has_no_outcome_and_a_reopened_case_is_not_closed() -> None:
    san = UNITS[0]
    cancelled = _fold(_case((CaseDispatched, {"lead_unit": san}), (CaseCancelled, {"reason": "虚假"})))
    assert next(d["c"] for d in cancelled.docs.values()) == {"dispatched": 1}
    reopened = _fold(
        _case(
            (CaseDispatched, {"lead_unit": san}),
            (CaseClosed, {"on_time": True, "closed_by": "verification"}),
            (CaseReopened, {"reason": "复发"}),
        )
    )
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
    specs += [(CaseClosed, {"on_time": True, "closed_by": "verification"})]  # closed: the case has fallen due
    c = next(d["c"] for d in _fold(_case(*specs)).docs.values())
    assert c["reworked"] == 4 and c["rework_repeat"] == 2 and c["reworked_cases"] == 1


def test_the_types_scoring_skips_unread_are_exactly_those_that_leave_no_fact() -> None:
    # Skipped by subject before decoding: each must be a type no event of which ever counts.
    from contracts import cases as c
    from contracts import registry

    kinds = [m for m in registry.patterns().values() if issubclass(m, c.CaseEvent)]
    for kind in kinds:
        event = kind.model_validate(kind.example())
        if kind is c.CaseOpened:  # a merchant's opening leaves a fact, an ordinary one none (below)
            event = event.model_copy(update={"merchant_id": "M-CD-0001"})
        assert (units.fact_of(event) is None) == units.uncounted(kind), kind
    opened = c.CaseOpened.model_validate(c.CaseOpened.example())
    assert opened.merchant_id is None and units.fact_of(opened) is None
    closed = c.CaseClosed.model_validate(c.CaseClosed.example())
    assert units.fact_of(closed.model_copy(update={"outcome": "cancelled"})) is not None  # counted either way
    assert {k.__name__ for k in kinds if units.uncounted(k)} == {
        "CaseCommandRejected",
        "CaseDeadlineWarning",
        "CaseExtensionRequested",
        "CaseMerged",
        "CaseTransferred",
        "CaseTransferCorrected",
    }


# 应结案: a case counts in `due` (and every rate built on it) in the period it fell due — its deadline passed or it
# was closed, whichever came first — and not at all while it is open inside its deadline.

T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # Friday 10:00 in Shanghai, 2026-W48


def _at(*specs: tuple[timedelta, type, dict[str, Any]], due: timedelta = timedelta(days=4)) -> list[CaseEvent]:
    """One case dispatched at T0 with its deadline at T0 + due (Tuesday of the next week by default)."""
    out: list[CaseEvent] = []
    for offset, cls, kw in specs:
        base: dict[str, Any] = {"case_id": "C-1", "street_code": "CD", "occurred_at": T0 + offset}
        if cls is CaseDispatched:
            base |= {
                "category_code": "0201",
                "rule_id": "r",
                "due_at": T0 + due,
                "time_limit": "2d",
                "lead_unit": UNITS[0],
            }
        else:
            base |= {"unit_id": "CD-SAN"}
        out.append(cls(**base, **kw))
    return out


def _weeks(events: list[CaseEvent]) -> dict[str, dict[str, int]]:
    return {d["period"]: d["c"] for d in _fold(events).docs.values() if d["kind"] == "week"}


DISPATCH = (timedelta(0), CaseDispatched, {})


def test_a_fresh_case_inside_its_deadline_is_not_due_and_the_unit_scores_full() -> None:
    from services.scoring.rates import figures

    weeks = _weeks(_at(DISPATCH, (timedelta(hours=1), CaseAcknowledged, {"in_time": True})))
    assert weeks == {"2026-W48": {"dispatched": 1, "acknowledged": 1, "acknowledged_in_time": 1}}
    assert figures(weeks["2026-W48"], AssessmentFile())["score"] == 100


def test_a_case_falls_due_exactly_at_its_deadline_in_the_deadlines_period() -> None:
    # Dispatch's overdue mark is dated at the deadline: from that moment the case is due (and not closed).
    at_deadline = _weeks(_at(DISPATCH, (timedelta(days=4), CaseOverdue, {"due_at": T0 + timedelta(days=4)})))
    # `overdue` is a per-dispatch counter (the dispatch's week); `due` is the deadline's week.
    assert at_deadline == {"2026-W48": {"dispatched": 1, "overdue": 1}, "2026-W49": {"due": 1}}
    # A second before the deadline it is still in time.
    before = _weeks(_at(DISPATCH, (timedelta(days=4, seconds=-1), CaseAcknowledged, {"in_time": False})))
    assert "due" not in before["2026-W48"] and "2026-W49" not in before


def test_a_case_closed_before_its_deadline_is_due_when_it_was_closed() -> None:
    weeks = _weeks(_at(DISPATCH, (timedelta(hours=2), CaseClosed, {"on_time": True, "closed_by": "verification"})))
    assert weeks == {"2026-W48": {"dispatched": 1, "due": 1, "closed": 1, "closed_on_time": 1}}
    # Closed in the next week but before the deadline: due in the week of the closure.
    later = _weeks(_at(DISPATCH, (timedelta(days=3), CaseClosed, {"on_time": True, "closed_by": "verification"})))
    assert later == {"2026-W48": {"dispatched": 1}, "2026-W49": {"due": 1, "closed": 1, "closed_on_time": 1}}


def test_a_case_closed_after_its_deadline_is_due_in_the_deadlines_period() -> None:
    weeks = _weeks(
        _at(
            DISPATCH,
            (timedelta(days=11), CaseClosed, {"on_time": False, "closed_by": "verification"}),
            due=timedelta(days=1),
        )
    )
    assert weeks == {"2026-W48": {"dispatched": 1, "due": 1, "closed": 1}}


def test_an_extended_case_falls_due_at_the_first_deadline_that_passed() -> None:
    ext = (timedelta(hours=5), CaseExtensionApproved, {"hours": 16, "due_at": T0 + timedelta(days=6)})
    # Only the extension: inside both deadlines, not due.
    assert "due" not in _weeks(_at(DISPATCH, ext))["2026-W48"]
    # A fact after the original deadline (Tuesday) but before the extended one: due on Tuesday, as 缓办.
    weeks = _weeks(_at(DISPATCH, ext, (timedelta(days=5), CaseAcknowledged, {"in_time": False})))
    assert weeks["2026-W49"] == {"due": 1, "deferred": 1}


def test_a_reopened_case_stays_due_from_its_first_closure() -> None:
    weeks = _weeks(
        _at(
            DISPATCH,
            (timedelta(hours=2), CaseClosed, {"on_time": True, "closed_by": "verification"}),
            (timedelta(days=3), CaseReopened, {"reason": "复发", "due_at": T0 + timedelta(days=8)}),
        )
    )
    assert weeks == {"2026-W48": {"dispatched": 1, "due": 1, "reopened": 1}}


def test_a_dispatch_fact_stored_without_its_deadline_fell_due_when_it_was_made() -> None:
    """Facts an older build stored carry no deadline: they keep the rule they were counted under."""
    facts = [units.fact_of(e) for e in _at(DISPATCH)]
    assert facts[0] is not None and "due" in facts[0]
    legacy = [{k: v for k, v in f.items() if k != "due"} for f in facts if f is not None]
    c = units.contribution(legacy)
    assert next(v["c"] for k, v in c.items() if k.endswith("W48")) == {"dispatched": 1, "due": 1}
