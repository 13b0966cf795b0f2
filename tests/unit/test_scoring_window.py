"""The rebuild window: whatever is not left out is reproduced exactly by a replay of the messages still held."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.reports import MerchantCheck
from services.scoring import merchants as m
from services.scoring import units
from services.scoring.window import Window, comparable, outside
from tests.helpers.scoring import START, history


def _unit_docs(events: list) -> dict[str, dict[str, Any]]:
    fold = units.UnitFold()
    for e in events:
        fold.apply(e)
    return {
        "case_facts": {cid: {"_id": cid, "facts": f} for cid, f in fold.cases.items()},
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
