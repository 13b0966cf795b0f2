"""Deadline timers: warning at 80 %, overdue at 100 %, escalation levels after, in the limit's kind of time."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from contracts.values import Urgency
from services.dispatch.case import State
from services.dispatch.lifecycle import Context, open_case
from services.dispatch.timers import due_timers, event_for, fired, schedule, timer_key
from tests.helpers.dispatch import opened
from xiuhua.city.business_calendar import BusinessCalendar

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=SH)


def _case(city, **over):
    case, _ = open_case(opened(city, **over), Context(T0, city, BusinessCalendar(city.calendar)))
    return case


def test_schedule_in_working_time(city) -> None:
    cal = BusinessCalendar(city.calendar)
    case = _case(city)  # 0201, 4 working hours from Monday 09:00 → due 14:30
    got = [(t.name, t.at) for t in schedule(case, cal, city.calendar)]
    assert got == [
        ("warning:0", datetime(2026, 11, 23, 13, 42, tzinfo=SH)),  # 3.2 working hours
        ("overdue:0", datetime(2026, 11, 23, 14, 30, tzinfo=SH)),
        ("escalated:1", datetime(2026, 11, 23, 14, 30, tzinfo=SH)),  # unit head at the deadline
        ("escalated:2", datetime(2026, 11, 23, 16, 30, tzinfo=SH)),  # street leadership at +50 %
        ("escalated:3", datetime(2026, 11, 24, 9, 30, tzinfo=SH)),  # 挂牌督办 at +100 %, next working day
    ]


def test_schedule_in_natural_hours_for_urgent_items(city) -> None:
    cal = BusinessCalendar(city.calendar)
    case = _case(city, code="0301", urgency=Urgency.urgent)  # 4nh
    got = {t.name: t.at for t in schedule(case, cal, city.calendar)}
    assert got["warning:0"] == T0 + timedelta(hours=3, minutes=12)
    assert got["overdue:0"] == T0 + timedelta(hours=4)
    assert got["escalated:2"] == T0 + timedelta(hours=6)
    assert got["escalated:3"] == T0 + timedelta(hours=8)


def test_due_timers_fire_once_each_and_move_the_next_moment(city) -> None:
    cal, cfg = BusinessCalendar(city.calendar), city.calendar
    case = _case(city)
    assert due_timers(case, datetime(2026, 11, 23, 13, 41, tzinfo=SH), cal, cfg) == []
    warn = due_timers(case, datetime(2026, 11, 23, 13, 42, tzinfo=SH), cal, cfg)
    assert [t.name for t in warn] == ["warning:0"]
    ev = event_for(case, warn[0], cfg)
    assert ev.event_type == "case.deadline_warning" and ev.share == 0.8 and ev.unit_id == "CD-SAN"
    assert timer_key(case, warn[0]) == "timer:C-1:1:warning:0"
    case = fired(case, warn, cal, cfg)
    assert case.next_timer_at == datetime(2026, 11, 23, 14, 30, tzinfo=SH)
    late = due_timers(case, datetime(2026, 11, 25, 9, 0, tzinfo=SH), cal, cfg)
    assert [t.name for t in late] == ["overdue:0", "escalated:1", "escalated:2", "escalated:3"]
    assert [event_for(case, t, cfg).event_type for t in late][:2] == ["case.overdue", "case.escalated"]
    case = fired(case, late, cal, cfg)
    assert case.next_timer_at is None and due_timers(case, datetime(2027, 1, 1, tzinfo=SH), cal, cfg) == []


def test_no_timers_while_waiting_for_verification(city) -> None:
    cal, cfg = BusinessCalendar(city.calendar), city.calendar
    case = _case(city).model_copy(update={"state": State.resolved})
    assert due_timers(case, datetime(2026, 12, 1, tzinfo=SH), cal, cfg) == []
