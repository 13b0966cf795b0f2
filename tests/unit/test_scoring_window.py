"""The rebuild window: whatever is not left out is reproduced exactly by a replay of the messages still held."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.cases import CaseClosed, CaseDispatched, CaseEvent, CaseOpened, CaseRated
from contracts.reports import MerchantCheck
from contracts.values import Place, UnitRef
from services.scoring import merchants as m
from services.scoring import units
from services.scoring.store import facts_document
from services.scoring.window import Window, comparable, outside
from tests.helpers.scoring import START, history
from xiuhua.city.assessment import MerchantRules


def _unit_docs(events: list) -> dict[str, dict[str, Any]]:
    fold = units.UnitFold()
    for e in events:
        fold.apply(e)
    return {
        "case_facts": {cid: facts_document(cid, f) for cid, f in fold.cases.items()},
        "unit_periods": {k: {"_id": k, **d} for k, d in fold.docs.items()},
    }


def _merchant_docs(checks: list[MerchantCheck], rules: Any, registered: dict[str, str]) -> dict[str, Any]:
    fold = m.MerchantFold(rules, registered)
    for c in checks:
        fold.apply(c.merchant_id, m.check_fact(c, rules))
    return {
        "merchant_periods": {k: {"_id": k, "facts": f} for k, f in fold.facts.items()},
        "merchants": fold.cards,
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    cut_days=st.integers(-45, 45),
    checks=st.lists(
        st.tuples(st.sampled_from(["M-CD-0001", "M-CD-0003"]), st.integers(-150, 60), st.booleans()),
        min_size=1,
        max_size=25,
    ),
)
def test_what_the_window_keeps_a_replay_of_the_newer_messages_reproduces(city, seed, cut_days, checks) -> None:
    r = city.assessment.merchants
    registered = {mid: city.merchants[mid].grade for mid in ("M-CD-0001", "M-CD-0003")}
    horizon = START + timedelta(days=cut_days)
    events = history(seed, 30)
    duty = [
        MerchantCheck(
            check_id=f"K{i}",
            merchant_id=mid,
            checked_at=START + timedelta(days=d, hours=i),
            inspector_id="G-1",
            items={"hygiene": "fail" if bad else "pass", "order": "pass"},
        )
        for i, (mid, d, bad) in enumerate(checks)
    ]
    live = {**_unit_docs(events), **_merchant_docs(duty, r, registered)}
    # The streams have dropped everything older than the horizon; the replay sees the rest.
    rebuilt = {
        **_unit_docs([e for e in events if e.occurred_at >= horizon]),
        **_merchant_docs([c for c in duty if c.checked_at >= horizon], r, registered),
    }
    window = Window(cases_from=horizon, checks_from=horizon)
    left_out = outside(live, rebuilt, window, r)
    for coll, docs in live.items():
        for key in (docs.keys() | rebuilt[coll].keys()) - left_out[coll]:
            a, b = docs.get(key), rebuilt[coll].get(key)
            assert a is not None and b is not None, (coll, key)
            assert comparable(coll, a, left_out["merchant_periods"]) == comparable(
                coll, b, left_out["merchant_periods"]
            ), (coll, key)
    # Nothing is left out when nothing has expired, and what starts after the horizon is always compared.
    assert outside(live, live, Window(), r) == {k: set() for k in left_out}
    fresh = [e.case_id for e in events if e.occurred_at >= horizon]
    whole = {e.case_id for e in events} - {e.case_id for e in events if e.occurred_at < horizon}
    assert whole <= set(fresh) and not (whole & left_out["case_facts"])


def _purged(docs: dict[str, Any], before: datetime) -> dict[str, Any]:
    """The documents once the facts of cases ended before `before` are purged (the unit documents stay)."""
    kept = {
        cid: d for cid, d in docs["case_facts"].items() if d["closed_s"] is None or d["closed_s"] >= before.timestamp()
    }
    return {**docs, "case_facts": kept}


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cut_days=st.integers(-45, 45),
    earlier_days=st.integers(0, 40),
    lag_days=st.integers(0, 3),
)
def test_with_facts_purged_what_the_window_keeps_a_replay_of_the_newer_messages_reproduces(
    seed, cut_days, earlier_days, lag_days
) -> None:
    """The facts outlive the case stream's messages (kept at least as long): the purge's cutoff is at or before
    the oldest message held. The live purge ran a while ago (an older cutoff); the rebuild purges its replay with
    the cutoff of now."""
    horizon = START + timedelta(days=cut_days)
    cutoff = horizon - timedelta(days=earlier_days)
    events = history(seed, 30)
    live = _purged(_unit_docs(events), cutoff - timedelta(days=lag_days))
    rebuilt = _purged(_unit_docs([e for e in events if e.occurred_at >= horizon]), cutoff)
    left_out = outside(live, rebuilt, Window(cases_from=horizon), MerchantRules(), cutoff.timestamp())
    for coll in ("case_facts", "unit_periods"):
        for key in (live[coll].keys() | rebuilt[coll].keys()) - left_out[coll]:
            assert live[coll].get(key) == rebuilt[coll].get(key), (coll, key)
    # A case wholly after the horizon and not past the cutoff is still compared.
    whole = {e.case_id for e in events} - {e.case_id for e in events if e.occurred_at < horizon}
    assert not (whole & left_out["case_facts"] & set(live["case_facts"]))


def _one_case(opened: datetime) -> list[CaseEvent]:
    """Opened, dispatched, closed on time two days later, rated two days after its close."""
    common: dict[str, Any] = {"case_id": "C-OLD", "street_code": "CD", "correlation_id": "grid:C-OLD"}
    unit = UnitRef(unit_id="CD-SAN", name="城东环卫所", role="sanitation")
    at = [opened + timedelta(days=d) for d in (0, 0.1, 2, 4)]
    return [
        CaseOpened(
            **common,
            occurred_at=at[0],
            source="grid",
            source_ref="C-OLD",
            category_code="0201",
            description="x",
            place=Place(street_code="CD"),
            reported_at=at[0],
        ),
        CaseDispatched(
            **common,
            occurred_at=at[1],
            category_code="0201",
            lead_unit=unit,
            rule_id="r",
            due_at=at[1] + timedelta(days=3),
            time_limit="3d",
            dispatch_round=1,
        ),
        CaseClosed(**common, occurred_at=at[2], unit_id=unit.unit_id, on_time=True, closed_by="verification"),
        CaseRated(**common, occurred_at=at[3], unit_id=unit.unit_id, satisfaction="satisfied"),
    ]


def test_a_purged_case_whose_start_expired_is_left_out_not_a_difference() -> None:
    """Closed before the cutoff, rated after the stream's horizon: its facts are gone from the live store and the
    replay holds only its rating. Without the rules for purged facts, its rating's facts and the unit documents it
    counted in would show as differences."""
    events = _one_case(START)
    closed = events[2].occurred_at
    horizon = closed + timedelta(days=1)  # the stream holds the rating only
    cutoff = closed + timedelta(seconds=1)
    live = _purged(_unit_docs(events), cutoff)
    rebuilt = _purged(_unit_docs([e for e in events if e.occurred_at >= horizon]), cutoff)
    assert not live["case_facts"] and set(rebuilt["case_facts"]) == {"C-OLD"}
    assert live["unit_periods"] and not rebuilt["unit_periods"]
    left_out = outside(live, rebuilt, Window(cases_from=horizon), MerchantRules(), cutoff.timestamp())
    assert left_out["case_facts"] == {"C-OLD"}
    assert left_out["unit_periods"] == set(live["unit_periods"])
    # Without the purge's cutoff, the periods it counted in would be compared (and differ).
    assert outside(live, rebuilt, Window(cases_from=horizon), MerchantRules())["unit_periods"] == set()


def test_facts_past_the_cutoff_the_live_purge_has_not_reached_yet_are_left_out() -> None:
    events = _one_case(START)
    closed_s = events[2].occurred_at.timestamp()
    live, rebuilt = _unit_docs(events), _unit_docs(events)
    for cutoff_s, left in ((closed_s + 1, {"C-OLD"}), (closed_s, set())):  # one second past it, and at it
        rebuilt_now = {**rebuilt, "case_facts": {} if left else rebuilt["case_facts"]}
        assert outside(live, rebuilt_now, Window(), MerchantRules(), cutoff_s)["case_facts"] == left


def test_a_month_whose_repeat_window_reaches_an_expired_month_two_back_follows_it_out(city) -> None:
    """1 March counts a failure of 30 January (February is shorter than the 30-day window): once January's check
    has expired, March cannot be reproduced, though February, the month between, has nothing."""
    r = city.assessment.merchants
    registered = {"M-CD-0001": city.merchants["M-CD-0001"].grade}
    march = datetime(2026, 3, 1, 10, tzinfo=m.CITY_TZ)

    def check(cid: str, at: datetime) -> MerchantCheck:
        items = {"hygiene": "fail", "order": "pass"}
        return MerchantCheck(check_id=cid, merchant_id="M-CD-0001", checked_at=at, inspector_id="G-1", items=items)

    duty = [check("K1", march - timedelta(days=30)), check("K2", march)]
    horizon = datetime(2026, 2, 15, tzinfo=m.CITY_TZ)
    live = _merchant_docs(duty, r, registered)
    rebuilt = _merchant_docs([c for c in duty if c.checked_at >= horizon], r, registered)
    assert live["merchants"]["M-CD-0001"]["months"]["2026-03"]["escalated"]
    assert not rebuilt["merchants"]["M-CD-0001"]["months"]["2026-03"]["escalated"]
    left_out = outside(live, rebuilt, Window(checks_from=horizon), r)
    assert left_out["merchant_periods"] == {"M-CD-0001:2026-01", "M-CD-0001:2026-03"}


def test_an_ordinary_opening_an_older_build_kept_is_set_aside_and_a_merchants_is_not() -> None:
    from services.scoring.window import starts, without_older_openings

    opened = {"id": "o", "at": "2026-11-23T02:00:00+00:00", "t": "opened", "sf": False, "urgent": False}
    merchant = {**opened, "id": "m", "merchant": "M-CD-0001", "src": "grid", "cat": "0407"}
    dispatched = {"id": "d", "at": "2026-11-23T03:00:00+00:00", "t": "dispatched", "round": 1, "unit": "CD-SAN"}
    docs = {
        "C-1": {"_id": "C-1", "facts": [opened, dispatched], "closed_s": None},
        "C-2": {"_id": "C-2", "facts": [opened]},  # opened, never dispatched
        "C-3": {"_id": "C-3", "facts": [merchant]},
        "C-4": {"_id": "C-4", "facts": [dispatched]},
    }
    got = without_older_openings(docs)
    assert got == {
        "C-1": {"_id": "C-1", "facts": [dispatched], "closed_s": None},
        "C-3": docs["C-3"],
        "C-4": docs["C-4"],
    }
    # A case starts with its first dispatch or a merchant's opening, not a later round.
    assert [starts(f) for f in (opened, merchant, dispatched, {**dispatched, "round": 2})] == [True, True, True, False]
