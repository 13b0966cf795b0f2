"""Rates, the composite score (Jinhua-style default), rankings and merchant duty points: pure rules."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.cases import CaseOpened
from contracts.reports import MerchantCheck
from contracts.values import Place
from services.scoring import merchants as m
from services.scoring.closing import last_closed
from services.scoring.ranking import unit_tables
from services.scoring.rates import figures
from xiuhua.city import CityDataError, load_city
from xiuhua.city.assessment import AssessmentFile, MerchantClassing, Ranking
from xiuhua.settings import DEMO_CITY


@pytest.fixture
def rules(city) -> AssessmentFile:
    return city.assessment


def test_a_perfect_unit_scores_100(rules) -> None:
    c = {
        "dispatched": 10,
        "acknowledged_in_time": 10,
        "due": 10,
        "resolved_on_time": 10,
        "closed": 10,
        "closed_on_time": 10,
        "rated": 10,
        "satisfied": 10,
    }
    f = figures(c, rules)
    assert f["score"] == 100.0 and f["flags"] == []
    assert f["rates"]["response_rate"] == 1.0 and f["rates"]["urgent_closure_rate"] is None


def test_jinhua_terms_and_deductions(rules) -> None:
    # 按期结案率 60 % (10 points below 70 %: 50 − 10), 结案率 85 % (5 below 90 %: 20 − 5),
    # satisfaction 80 % (5 below 85 %: 20 − 5), urgent: 1 of 2 closed (50 below 100 % → 10 − 25 → 0),
    # 3 failed verifications (−0.6), one of them a third (−0.5), 2 supervisor findings (−1.0).
    c = {
        "due": 22,
        "deferred": 2,
        "closed": 17,
        "closed_on_time": 12,
        "resolved_on_time": 19,
        "rated": 10,
        "satisfied": 6,
        "basic": 2,
        "unsatisfied": 2,
        "urgent_due": 2,
        "urgent_closed": 1,
        "urgent_closed_on_time": 1,
        "reworked": 3,
        "rework_repeat": 1,
        "supervisor_found": 2,
    }
    f = figures(c, rules)
    assert f["rates"]["on_time_closure_rate"] == 0.6  # (22 − 2 缓办) due
    assert f["terms"] == {"on_time_closure": 40.0, "closure": 15.0, "urgent": 0.0, "satisfaction": 15.0}
    assert f["deductions"] == {"rework": 0.6, "rework_repeat": 0.5, "supervisor_found": 1.0}
    assert f["score"] == 67.9
    assert f["rates"]["on_time_rate"] == 0.95 and "on_time_below_target" not in f["flags"]
    assert "satisfaction_below_target" in f["flags"]


def test_deferred_cases_stay_due_when_the_city_says_so(rules) -> None:
    strict = rules.model_copy(update={"due": rules.due.model_copy(update={"exclude_deferred": False})})
    c = {"due": 10, "deferred": 5, "closed_on_time": 5}
    assert figures(c, rules)["rates"]["on_time_closure_rate"] == 1.0
    assert figures(c, strict)["rates"]["on_time_closure_rate"] == 0.5


def _doc(unit: str, role: str, score: float) -> dict:
    return {"unit_id": unit, "role": role, "score": score, "rates": {}, "due": 1, "kind": "quarter"}


def test_rankings_are_within_roles_with_lists_and_the_bottom_three() -> None:
    docs = [_doc(f"S{i}", "sanitation", 100 - i) for i in range(8)] + [
        _doc("E1", "enforcement", 50),
        _doc("C1", "command_centre", 1),
    ]
    t, apart = unit_tables(docs, Ranking(red_list=2, black_list=2, bottom_flagged=3), {"S0": "零号"})
    assert apart == {}
    assert set(t) == {"sanitation", "enforcement"}
    san = t["sanitation"]
    assert [r["id"] for r in san] == [f"S{i}" for i in range(8)] and san[0]["name"] == "零号"
    assert [r["board"] for r in san] == ["red", "red", None, None, None, None, "black", "black"]
    assert [r["bottom"] for r in san] == [False] * 5 + [True] * 3
    assert t["enforcement"][0]["board"] is None and not t["enforcement"][0]["bottom"]  # alone: no list


def test_last_closed_periods_in_city_time() -> None:
    # 2027-01-03 16:30 UTC is Monday 2027-01-04 00:30 in Shanghai: week 2026-W53 has just closed.
    now = datetime(2027, 1, 3, 16, 30, tzinfo=UTC)
    assert [last_closed(now, k) for k in ("week", "month", "quarter", "year")] == [
        "2026-W53",
        "2026-12",
        "2026-Q4",
        "2026",
    ]


def _check(cid: str, day: int, **items: str) -> MerchantCheck:
    return MerchantCheck(
        check_id=cid,
        merchant_id="M-CD-0001",
        checked_at=datetime(2026, 11, day, 2, tzinfo=UTC),
        inspector_id="G-1",
        items=items,
    )


def test_merchant_first_failure_warns_and_the_second_escalates(rules) -> None:
    r = rules.merchants
    facts: list = []
    for chk in (_check("K1", 2, hygiene="pass", order="pass"), _check("K2", 9, hygiene="fail", order="pass")):
        facts = m.add_fact(facts, m.check_fact(chk, r))
    f = m.month_figures(facts, r)
    assert (f["points"], f["grade"], f["warned"], f["escalated"]) == (95.0, "A", True, False)
    facts = m.add_fact(facts, m.check_fact(_check("K3", 16, hygiene="fail", safety="fail"), r))
    f = m.month_figures(facts, r)
    assert (f["points"], f["grade"], f["failures"], f["escalated"]) == (80.0, "B", 2, True)
    assert m.add_fact(facts, m.check_fact(_check("K3", 16, hygiene="fail"), r)) is None  # the same check again


def test_an_exemplary_month_earns_the_bonus_and_cases_count_once(rules) -> None:
    r = rules.merchants
    facts: list = []
    for i in range(4):
        facts = m.add_fact(facts, m.check_fact(_check(f"K{i}", 2 + i, hygiene="pass"), r))
    assert m.month_figures(facts, r)["points"] == 105.0
    opened = dict(
        case_id="C-9",
        street_code="CD",
        category_code="0401",
        description="x",
        place=Place(),
        reported_at=datetime(2026, 11, 20, tzinfo=UTC),
        merchant_id="M-CD-0001",
        source_ref="R",
    )
    assert m.case_fact(CaseOpened(**opened, source="merchant_check"), r) is None  # the checks themselves
    fact = m.case_fact(CaseOpened(**opened, source="grid", urgency="urgent"), r)
    assert fact is not None and fact["points"] == 10.0
    assert m.month_figures(m.add_fact(facts, fact), r)["points"] == 90.0


def test_merchant_ranking() -> None:
    rows = [
        {"merchant_id": "B", "points": 90, "failures": 1, "grade": "A", "checks": 2},
        {"merchant_id": "A", "points": 90, "failures": 0, "grade": "A", "checks": 2},
        {"merchant_id": "C", "points": 70, "failures": 3, "grade": "C", "checks": 3},
    ]
    ranked = m.ranking(rows, 5)
    assert [r["id"] for r in ranked] == ["A", "B", "C"]
    # Equal points share the rank; the red list takes only those without a failure.
    assert [(r["rank"], r["tied"], r["board"]) for r in ranked] == [(1, True, "red"), (1, True, None), (3, False, None)]


def _months(**points: float | tuple[float, bool]) -> dict:
    """m2026_10=95 → {"2026-10": {points 95, escalated False}}; a tuple adds the escalation."""
    out = {}
    for key, v in points.items():
        p, esc = v if isinstance(v, tuple) else (v, False)
        out[key[1:].replace("_", "-")] = {"points": p, "grade": "?", "escalated": esc}
    return out


def test_merchant_class_follows_a_window_of_months_not_one_month(rules) -> None:
    r = rules.merchants  # A ≥ 90, B ≥ 75; window 3 months, 3 assessed months to rise, escalation → C

    def cls(months: dict, registered: str) -> str:
        return m.merchant_class(months, registered, r)["grade"]

    assert m.merchant_class({}, "C", r) == {"period": None, "grade": "C", "points": None, "basis": None}
    # A C shop (脏乱差易反弹) does not become A on one good month, nor on two: it needs a full window.
    assert cls(_months(m2026_10=95), "C") == "C"
    assert cls(_months(m2026_10=95, m2026_11=105), "C") == "C"
    assert cls(_months(m2026_09=95, m2026_10=100, m2026_11=105), "C") == "A"
    # A downgrade counts at once: an A bank with one bad month is judged on it.
    assert cls(_months(m2026_11=80), "A") == "B"
    got = m.merchant_class(_months(m2026_11=80), "A", r)
    assert got["basis"]["rule"] == "window_mean" and got["basis"]["mean_points"] == 80
    # The mean over the window's assessed months, not the latest month alone.
    assert cls(_months(m2026_09=100, m2026_10=70, m2026_11=100), "A") == "A"  # mean 90
    assert cls(_months(m2026_09=70, m2026_10=75, m2026_11=100), "A") == "B"  # mean 81.7
    # Months older than the window no longer count; calendar gaps are months without figures.
    assert cls(_months(m2026_06=20, m2026_09=100, m2026_10=100, m2026_11=100), "B") == "A"
    assert cls(_months(m2026_08=100, m2026_11=100), "B") == "B"  # only November is in Sep–Nov: one month
    # Across a year end.
    assert m.window_of("2027-01", 3) == ["2026-11", "2026-12", "2027-01"]
    # An escalation to enforcement keeps the merchant in C while its month is in the window.
    assert cls(_months(m2026_09=100, m2026_10=(92, True), m2026_11=105), "A") == "C"
    assert cls(_months(m2026_10=(92, True), m2026_11=105, m2026_12=105, m2027_01=105), "A") == "A"
    got = m.merchant_class(_months(m2026_11=(85, True)), "A", r)
    assert (
        got["grade"] == "C" and got["basis"]["rule"] == "escalated" and got["basis"]["escalated_months"] == ["2026-11"]
    )


def test_merchant_class_rules_are_city_data(rules) -> None:
    one_month = rules.merchants.model_copy(
        update={"classing": MerchantClassing(window_months=1, upgrade_min_months=1, escalated_class=None)}
    )
    assert m.merchant_class(_months(m2026_10=60, m2026_11=(95, True)), "C", one_month)["grade"] == "A"


def test_merchant_class_settings_are_validated_with_file_and_line(tmp_path) -> None:
    folder = tmp_path / "city"
    shutil.copytree(DEMO_CITY, folder)
    path = folder / "assessment.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    idx = next(i for i, ln in enumerate(lines) if "upgrade_min_months:" in ln)
    lines[idx] = "    upgrade_min_months: 5"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(
        CityDataError,
        match=rf"assessment.yaml:{idx + 1}: merchants.classing.upgrade_min_months: "
        r".*must not exceed window_months \(3\)",
    ):
        load_city(folder)
    lines[idx] = "    upgrade_min_months: 3"
    jdx = next(i for i, ln in enumerate(lines) if "escalated_class:" in ln)
    lines[jdx] = "    escalated_class: D"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CityDataError, match=rf"assessment.yaml:{jdx + 1}: merchants.classing.escalated_class"):
        load_city(folder)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    results=st.lists(
        st.tuples(st.integers(1, 28), st.lists(st.sampled_from(["pass", "fail"]), min_size=3, max_size=3)),
        min_size=1,
        max_size=12,
    ),
    order=st.randoms(use_true_random=False),
)
def test_merchant_months_do_not_depend_on_order_or_resends(city, results, order) -> None:
    r = city.assessment.merchants
    checks = [_check(f"K{i}", day, hygiene=a, order=b, safety=c) for i, (day, (a, b, c)) in enumerate(results)]
    facts_in_order: list = []
    for chk in checks:
        facts_in_order = m.add_fact(facts_in_order, m.check_fact(chk, r)) or facts_in_order
    shuffled = checks + [order.choice(checks) for _ in range(3)]
    order.shuffle(shuffled)
    facts_shuffled: list = []
    for chk in shuffled:
        facts_shuffled = m.add_fact(facts_shuffled, m.check_fact(chk, r)) or facts_shuffled
    assert facts_shuffled == facts_in_order
    f = m.month_figures(facts_in_order, r)
    failing = [c for c in checks if "fail" in c.items.values()]
    # Escalated when one duty item failed twice (the month's days are all within the 30-day window).
    per_item = {i: sum(1 for c in failing if c.items[i] == "fail") for i in ("hygiene", "order", "safety")}
    assert f["failures"] == len(failing) and f["escalated"] == (max(per_item.values()) >= 2)
    assert f["points"] == 100 - sum(r.item_points(i) for c in failing for i, v in c.items.items() if v == "fail") + (
        r.bonus if len(checks) >= r.bonus_min_checks and not failing else 0
    )


_MONTH_STARTS = [datetime(2026, mo, 1, tzinfo=UTC) for mo in range(7, 13)] + [datetime(2027, 1, 1, tzinfo=UTC)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    checks=st.lists(
        st.tuples(
            st.sampled_from(["M-CD-0001", "M-CD-0003"]),
            st.integers(0, len(_MONTH_STARTS) - 1),
            st.integers(0, 27),
            st.lists(st.sampled_from(["pass", "pass", "fail"]), min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=30,
    ),
    order=st.randoms(use_true_random=False),
)
def test_merchant_classes_over_many_months_do_not_depend_on_order_or_resends(city, checks, order) -> None:
    r = city.assessment.merchants
    registered = {mid: city.merchants[mid].grade for mid in ("M-CD-0001", "M-CD-0003")}
    facts = []
    for i, (mid, month, day, (a, b, c)) in enumerate(checks):
        at = _MONTH_STARTS[month].replace(day=day + 1, hour=2)
        chk = MerchantCheck(
            check_id=f"K{i}",
            merchant_id=mid,
            checked_at=at,
            inspector_id="G-1",
            items={"hygiene": a, "order": b, "safety": c},
        )
        facts.append((mid, m.check_fact(chk, r)))
    in_order = m.MerchantFold(r, registered)
    for mid, fact in facts:
        in_order.apply(mid, fact)
    shuffled = facts + [order.choice(facts) for _ in range(5)]
    order.shuffle(shuffled)
    replayed = m.MerchantFold(r, registered)
    for mid, fact in shuffled:
        replayed.apply(mid, fact)
    assert replayed.facts == in_order.facts and replayed.cards == in_order.cards
    # And each card is what the rule says of all its months at once.
    for mid, card in in_order.cards.items():
        # Each month with the months before it that its repeat window reaches: a repeat counts their failures.
        def before(merchant: str, month: str) -> list[m.Fact]:
            reached = m.earlier_months(month, r.repeat_window_days)
            return [f for e in reached for f in in_order.facts.get(m.period_id(merchant, e), [])]

        months = {
            k.split(":")[1]: m.month_entry(m.month_figures(f, r, before(mid, k.split(":")[1])))
            for k, f in in_order.facts.items()
            if k.startswith(f"{mid}:")
        }
        assert card == m.card_of(mid, None, months, registered[mid], r)
        window = m.window_of(max(months), r.classing.window_months)
        if any(months.get(w, {}).get("escalated") for w in window):
            assert card["grade"] == "C"
