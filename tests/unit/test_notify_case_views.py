"""Where planning's view of a case is kept and read, one event after the other as the case consumer plans a batch:
in the bulletin's record once a dispatch gave it one, else an older build's view apart, which is dated for the
purge when its case ends or a dispatch supersedes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contracts.cases import CaseCancelled, CaseClosed, CaseDispatched, CaseOverdue, CaseReopened
from contracts.values import UnitRef, UnitRole
from services.notify.handlers import NotifyHandlers
from services.notify.planning import Plan, Planner, holds_view, view_of, views_apart
from xiuhua.city import City
from xiuhua.clock import FrozenClock

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SAN = UnitRef(unit_id="CD-SAN", name="城东环卫所", role=UnitRole.sanitation)
ENF = UnitRef(unit_id="CD-ENF", name="城东综合执法中队", role=UnitRole.enforcement)
OLDER = {"cooperating": ["CD-ENF"], "street_code": "CD", "urgency": "normal", "address": "解放路 18 号"}


def _planning(city: City) -> NotifyHandlers:
    h = NotifyHandlers.__new__(NotifyHandlers)  # planning alone: no runtime, no store
    h.planner = Planner(city, ZoneInfo(city.info.timezone), FrozenClock(T0))
    return h


def _dispatched(at: datetime, lead: UnitRef = SAN, cooperating: tuple[UnitRef, ...] = ()) -> CaseDispatched:
    return CaseDispatched(
        case_id="C-1",
        street_code="CD",
        category_code="0201",
        lead_unit=lead,
        cooperating_units=list(cooperating),
        rule_id="r",
        due_at=at + timedelta(hours=4),
        time_limit="4h",
        occurred_at=at,
    )


def _closed(at: datetime) -> CaseClosed:
    return CaseClosed(
        case_id="C-1", street_code="CD", unit_id="CD-SAN", on_time=True, closed_by="verification", occurred_at=at
    )


def _run(
    h: NotifyHandlers, events: list[Any], record: dict[str, Any] | None, views: dict[str, dict[str, Any]] | None = None
) -> tuple[Plan, dict[str, Any]]:
    """Plan `events` of case C-1 in order, the record changing as the bulletin's fold would change it at a dispatch."""
    plan, changed = Plan(), {}
    for ev in events:
        before = changed.get("C-1", record)
        if isinstance(ev, CaseDispatched):
            changed["C-1"] = {**(before or {}), "unit_id": ev.lead_unit.unit_id}
        h._plan(plan, ev, before, changed, views or {})
    return plan, changed.get("C-1", record or {})


def test_a_dispatch_puts_planning_s_view_into_the_record_and_dates_no_older_view(city: City) -> None:
    plan, record = _run(_planning(city), [_dispatched(T0, cooperating=(ENF,))], {"status": "open"})
    assert holds_view(record) and record["cooperating"] == ["CD-ENF"] and record["street_code"] == "CD"
    assert not plan.cases and not plan.ended  # nothing written apart


def test_a_re_dispatch_of_a_case_dispatched_before_dates_the_older_view_it_supersedes(city: City) -> None:
    at = T0 + timedelta(hours=2)
    plan, record = _run(_planning(city), [_dispatched(at, lead=ENF)], {"status": "open", "unit_id": "CD-SAN"})
    assert plan.ended == {"C-1": at.timestamp()} and record["unit_id"] == "CD-ENF" and holds_view(record)
    # Closed and reopened in the same batch after it: the record keeps those moments, the older view its date.
    later = [
        _dispatched(at, lead=ENF),
        _closed(at + timedelta(hours=1)),
        CaseReopened(case_id="C-1", street_code="CD", unit_id="CD-ENF", reason="复发", due_at=at),
    ]
    for n in (2, 3):
        plan, _ = _run(_planning(city), later[:n], {"status": "open", "unit_id": "CD-SAN"})
        assert plan.ended == {"C-1": at.timestamp()}


def test_the_end_of_a_case_whose_record_holds_no_view_dates_the_older_view(city: City) -> None:
    at = T0 + timedelta(days=1)
    cancelled = CaseCancelled(case_id="C-1", street_code="CD", unit_id="CD-SAN", reason="重复", occurred_at=at)
    for ended in (_closed(at), cancelled):
        plan, _ = _run(_planning(city), [ended], {"status": "open", "unit_id": "CD-SAN"})
        assert plan.ended == {"C-1": at.timestamp()}
        plan, _ = _run(_planning(city), [ended], {"status": "open", "unit_id": "CD-SAN", **OLDER})
        assert plan.ended == {}  # the record holds the view: nothing apart to date


def test_a_warning_reads_the_record_s_view_or_else_the_older_one(city: City) -> None:
    overdue = CaseOverdue(case_id="C-1", street_code="CD", unit_id="CD-SAN", due_at=T0)
    h = _planning(city)
    for record, views in (
        ({"status": "open", "category_code": "0201", **OLDER}, {}),
        ({"status": "open", "category_code": "0201"}, {"C-1": {"category_code": "0201", **OLDER}}),
    ):
        plan, _ = _run(h, [overdue], record, views)
        (d,) = [d for d in plan.deliveries.values() if d["contact_id"] == "CD-SAN-duty"] or [None]
        assert d is not None and "位置：解放路 18 号" in d["message"]["lines"]
    plan, _ = _run(h, [overdue], {"status": "open", "category_code": "0201"}, {})
    assert all("位置：解放路 18 号" not in d["message"]["lines"] for d in plan.deliveries.values())


def test_view_of_keeps_only_what_warnings_read_besides_the_record() -> None:
    planned = {
        "_id": "C-1",
        "lead": "CD-SAN",
        "lead_name": "城东环卫所",
        "category_code": "0201",
        "applied": ["e"],
        **OLDER,
        "map": "https://example.org/m",
    }
    assert view_of(planned) == {**OLDER, "map": "https://example.org/m"}
    assert not holds_view(None) and not holds_view({"unit_id": "CD-SAN"}) and holds_view({"cooperating": []})


def test_the_views_apart_read_are_those_of_warned_cases_whose_record_holds_none() -> None:
    def overdue(case_id: str) -> CaseOverdue:
        return CaseOverdue(case_id=case_id, street_code="CD", unit_id="CD-SAN", due_at=T0)

    records = {"C-1": {"status": "open", **OLDER}, "C-2": {"status": "open"}}  # C-3: no record at all
    events = [overdue("C-3"), overdue("C-1"), overdue("C-2"), overdue("C-2"), _dispatched(T0)]
    assert views_apart(events, records) == ["C-2", "C-3"]  # once each, in order; a dispatch reads none
    assert views_apart(list(reversed(events)), records) == ["C-2", "C-3"]
    assert views_apart([_dispatched(T0)], {}) == []
