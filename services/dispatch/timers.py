"""Deadline timers of a case (预警, 超期, 升级督办): when each falls due and the event it publishes. Pure.

Per deadline cycle a case has: a warning at `warn_at` (default 80 %) of its limit, overdue at 100 %, and one
escalation per entry of `escalate_after` — level n at the deadline plus that share of the limit (defaults
0, 0.5, 1.0: 1 unit head 单位负责人, 2 street leadership 街道领导, 3 挂牌督办). Shares count the same kind of
time as the limit: working time for `h`/`d`, natural time for `nh`. Each timer is claimed once in the ledger
under `timer:<case>:<cycle>:<kind>:<level>`, so two instances, a restart or a replayed scan never repeat it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.cases import CaseDeadlineWarning, CaseEscalated, CaseEvent, CaseOverdue
from services.dispatch.case import TIMED_STATES, Case
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.city.calendar import CalendarFile


@dataclass(frozen=True)
class Timer:
    """One moment of a case's deadline cycle."""

    kind: str  # warning, overdue, escalated
    level: int
    at: datetime

    @property
    def name(self) -> str:
        """`kind:level`, as kept in the case's `timers_fired`."""
        return f"{self.kind}:{self.level}"


def _natural(case: Case) -> bool:
    return case.time_limit.endswith("nh")


def _after(case: Case, cal: BusinessCalendar, start: datetime, span_share: float) -> datetime:
    """`start` plus a share of the case's (possibly extended) limit, in the limit's kind of time."""
    if span_share <= 0:
        return start
    if _natural(case):
        return start + (case.due_at - case.started_at) * span_share
    hours = cal.working_between(case.started_at, case.due_at) * span_share
    return cal.add_working(start, hours)


def schedule(case: Case, cal: BusinessCalendar, cfg: CalendarFile) -> list[Timer]:
    """Every timer of the case's current deadline cycle, in time order."""
    timers = [
        Timer("warning", 0, _after(case, cal, case.started_at, cfg.warn_at)),
        Timer("overdue", 0, case.due_at),
    ]
    timers += [Timer("escalated", i + 1, _after(case, cal, case.due_at, s)) for i, s in enumerate(cfg.escalate_after)]
    return sorted(timers, key=lambda t: (t.at, t.kind != "warning", t.kind != "overdue", t.level))


def reschedule(case: Case, cal: BusinessCalendar, cfg: CalendarFile) -> Case:
    """The case with `next_timer_at` set to its next unfired timer (none when its deadline does not run)."""
    nxt = None
    if case.state in TIMED_STATES:
        pending = [t.at for t in schedule(case, cal, cfg) if t.name not in case.timers_fired]
        nxt = min(pending, default=None)
    return case.model_copy(update={"next_timer_at": nxt})


TIMER_PREFIX = "timer"  # a timer's ledger claim is `timer:<case>:<cycle>:<kind>:<level>`


def timer_key(case: Case, timer: Timer) -> str:
    """The ledger key that makes a timer's event happen once."""
    return f"{TIMER_PREFIX}:{case.case_id}:{case.cycle}:{timer.kind}:{timer.level}"


def due_timers(case: Case, now: datetime, cal: BusinessCalendar, cfg: CalendarFile) -> list[Timer]:
    """Timers that have fallen due by `now` and were not fired in this cycle."""
    if case.state not in TIMED_STATES:
        return []
    return [t for t in schedule(case, cal, cfg) if t.at <= now and t.name not in case.timers_fired]


def event_for(case: Case, timer: Timer, cfg: CalendarFile) -> CaseEvent:
    """The event a timer publishes, dated at the moment it fell due."""
    fields: dict[str, Any] = {
        "occurred_at": timer.at,
        "correlation_id": case.correlation_id,
        "case_id": case.case_id,
        "street_code": case.street_code,
        "unit_id": case.lead_unit.unit_id,
        "version": case.version,
        "supervisor_found": case.supervisor_found,
    }
    if timer.kind == "warning":
        return CaseDeadlineWarning(**fields, due_at=case.due_at, share=cfg.warn_at)
    if timer.kind == "overdue":
        return CaseOverdue(**fields, due_at=case.due_at)
    return CaseEscalated(**fields, level=timer.level, due_at=case.due_at)


def fired(case: Case, timers: list[Timer], cal: BusinessCalendar, cfg: CalendarFile) -> Case:
    """The case once `timers` have been published."""
    done = [*case.timers_fired, *(t.name for t in timers if t.name not in case.timers_fired)]
    return reschedule(case.model_copy(update={"timers_fired": done}), cal, cfg)
