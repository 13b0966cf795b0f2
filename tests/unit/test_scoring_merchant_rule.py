"""门前三包: a first failure of a duty item is 批评教育 by the community; the same item failing again within the city's
window, or the case not put right by its deadline, is escalated to the enforcement team (处罚)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts.cases import CaseOpened, CaseOverdue
from contracts.reports import MerchantCheck
from contracts.values import Place
from services.scoring import merchants as m
from services.scoring import units
from services.scoring.periods import CITY_TZ
from xiuhua.city.assessment import MerchantRules

R = MerchantRules()  # escalate_from 2, repeat_window_days 30
T = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)


def _check(cid: str, at: datetime, **items: str) -> m.Fact:
    chk = MerchantCheck(check_id=cid, merchant_id="M-CD-0001", checked_at=at, inspector_id="G-1", items=items)
    return m.check_fact(chk, R)


def _facts(*fs: m.Fact) -> list[m.Fact]:
    out: list[m.Fact] = []
    for f in fs:
        out = m.add_fact(out, f) or out
    return out


def test_a_first_failure_is_a_warning_not_an_escalation() -> None:
    f = m.month_figures(_facts(_check("K1", T, hygiene="fail", order="pass")), R)
    assert (f["warned"], f["escalated"], f["repeated_items"]) == (True, False, [])


def test_a_second_failure_of_another_item_is_not_a_repeat() -> None:
    f = m.month_figures(_facts(_check("K1", T, hygiene="fail"), _check("K2", T + timedelta(days=3), order="fail")), R)
    assert (f["failures"], f["escalated"]) == (2, False)


def test_the_same_item_again_within_the_window_escalates_exactly_at_its_edge() -> None:
    first = _check("K1", T - timedelta(days=20), hygiene="fail")
    edge = _check("K2", T + timedelta(days=10), hygiene="fail")  # exactly 30 days later
    assert m.month_figures(_facts(first, edge), R)["repeated_items"] == ["hygiene"]
    late = _check("K2", T + timedelta(days=10, seconds=1), hygiene="fail")  # a second past the window
    assert m.month_figures(_facts(first, late), R)["escalated"] is False


def test_a_repeat_reaches_into_the_previous_month() -> None:
    october = _facts(_check("K1", datetime(2026, 10, 25, 2, tzinfo=UTC), order="fail"))
    november = _facts(_check("K2", datetime(2026, 11, 3, 2, tzinfo=UTC), order="fail"))
    assert m.month_figures(november, R, october)["repeated_items"] == ["order"]
    assert m.month_figures(november, R)["escalated"] is False  # without October it is a first failure
    assert m.month_figures(october, R)["escalated"] is False  # a later repeat does not escalate the earlier month


@pytest.mark.parametrize(
    ("month", "days", "earlier"),
    [
        ("2026-03", 28, ["2026-02"]),  # 1 March less 28 days is 1 February
        ("2026-03", 29, ["2026-01", "2026-02"]),  # less 29 days is 31 January
        ("2026-05", 30, ["2026-04"]),  # April has 30 days
        ("2026-05", 31, ["2026-03", "2026-04"]),
        ("2026-01", 31, ["2025-12"]),  # across the year
        ("2028-03", 29, ["2028-02"]),  # a leap February
        ("2028-03", 30, ["2028-01", "2028-02"]),
    ],
)
def test_the_months_a_repeat_window_reaches_back_to(month, days, earlier) -> None:
    assert m.earlier_months(month, days) == earlier
    for e in earlier:  # and each of those months knows it is reached from this one
        assert month in m.later_months(e, days)
    assert month not in m.later_months(m.neighbours(earlier[0])[0], days)


def _fold(*facts: m.Fact) -> m.MerchantFold:
    fold = m.MerchantFold(R, {"M-CD-0001": "A"})
    for f in facts:
        fold.apply("M-CD-0001", f)
    return fold


def test_early_march_counts_a_failure_of_late_january_within_the_window_in_either_order() -> None:
    march = datetime(2026, 3, 1, 10, 0, tzinfo=CITY_TZ)
    again = _check("K2", march, hygiene="fail")
    at_edge = _check("K1", march - timedelta(days=30), hygiene="fail")  # 30 January, exactly 30 days before
    past_edge = _check("K1", march - timedelta(days=30, seconds=1), hygiene="fail")
    for first, second in ((at_edge, again), (again, at_edge)):
        months = _fold(first, second).cards["M-CD-0001"]["months"]
        assert (months["2026-01"]["escalated"], months["2026-03"]["escalated"]) == (False, True)
    for first, second in ((past_edge, again), (again, past_edge)):
        assert _fold(first, second).cards["M-CD-0001"]["months"]["2026-03"]["escalated"] is False


def test_the_city_sets_the_count_and_the_window() -> None:
    strict = MerchantRules(escalate_from=3, repeat_window_days=7)
    two = _facts(_check("K1", T, safety="fail"), _check("K2", T + timedelta(days=1), safety="fail"))
    assert m.month_figures(two, R)["escalated"] and not m.month_figures(two, strict)["escalated"]
    three = _facts(*two, _check("K3", T + timedelta(days=2), safety="fail"))
    assert m.month_figures(three, strict)["escalated"]
    spread = _facts(
        _check("K1", T, safety="fail"),
        _check("K2", T + timedelta(days=8), safety="fail"),
        _check("K3", T + timedelta(days=9), safety="fail"),
    )
    assert not m.month_figures(spread, strict)["escalated"]  # only two within seven days


def _case_events(category: str, source: str = "merchant_check") -> tuple[CaseOpened, CaseOverdue]:
    opened = CaseOpened(
        occurred_at=T,
        correlation_id="merchant_check:K1",
        case_id="C-M1",
        street_code="CD",
        source=source,
        source_ref="K1:hygiene",
        category_code=category,
        description="门前卫生不洁",
        place=Place(street_code="CD"),
        reported_at=T,
        merchant_id="M-CD-0001",
    )
    overdue = CaseOverdue(
        occurred_at=T + timedelta(days=1),
        correlation_id="c",
        case_id="C-M1",
        street_code="CD",
        unit_id="CD03",
        due_at=T + timedelta(days=1),
    )
    return opened, overdue


def test_a_first_failure_not_put_right_by_its_deadline_escalates_in_either_order() -> None:
    opened, overdue = _case_events("0402")
    for order in ((opened, overdue), (overdue, opened)):
        facts = _facts(*(units.fact_of(e) for e in order))
        late = m.overdue_of("C-M1", facts, "0407")
        assert late is not None and late[1] == "M-CD-0001"
        fig = m.month_figures(_facts(late[0]), R)
        assert fig["escalated"] and fig["overdue"] and fig["points"] == R.base  # no points of its own
    assert m.overdue_of("C-M1", _facts(units.fact_of(opened)), "0407") is None  # still in time
    assert (
        m.month_figures(
            _facts(m.overdue_fact("C-M1", T, "0402")), R.model_copy(update={"escalate_when_overdue": False})
        )["escalated"]
        is False
    )


def test_the_enforcement_case_and_other_sources_going_overdue_do_not_escalate_again() -> None:
    for category, source in (("0407", "merchant_check"), ("0402", "grid")):
        opened, overdue = _case_events(category, source)
        assert m.overdue_of("C-M1", _facts(units.fact_of(opened), units.fact_of(overdue)), "0407") is None
