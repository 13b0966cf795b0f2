"""The dispatch service."""

from __future__ import annotations

from pymongo import ASCENDING

from contracts import subjects
from services.dispatch import routing
from services.dispatch.case import CLOSED_FIELD, TIMER_FIELD
from services.dispatch.commands import decode_command
from services.dispatch.handlers import CASES, DispatchHandlers, index_legacy_timers
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.consumer import Subscription
from xiuhua.retention import Retained
from xiuhua.service import Runtime, ServiceSpec
from xiuhua.store import backfill_seconds


def subscriptions(rt: Runtime) -> list[Subscription]:
    """New cases, commands on cases, merchants escalated by scoring."""
    h = DispatchHandlers(rt)
    rt.state["dispatch"] = h
    return [
        Subscription("dispatch-opened", "case.v1.opened.*", h.on_opened, description="Cases opened by intake"),
        Subscription(
            "dispatch-commands",
            subjects.COMMAND_ALL,
            h.on_command,
            decode=decode_command,
            description="Commands of units, the command centre and the hotline",
        ),
        Subscription(
            "dispatch-merchants",
            subjects.SCORE.format(event="merchant_escalated"),
            h.on_merchant_escalated,
            description="Merchants escalated to enforcement by scoring",
        ),
    ]


async def on_start(rt: Runtime) -> None:
    """Check the routing table against the city, index the due moments the timer loop scans, and start it."""
    routing.validate(rt.city)
    cases = rt.store[CASES]
    await cases.create_index([(TIMER_FIELD, ASCENDING)])
    # Finds the cases an older build wrote with only the date, on MongoDB without reading every case.
    await cases.create_index([("next_timer_at", ASCENDING)])
    await rt.repair_older_builds(lambda: index_legacy_timers(cases), name="legacy-timers")
    # Cases an older build closed get the number the purge ranges over; once a start, in the background: the
    # selection reads every case on nx-27017, and the purge is hours away anyway.
    rt.in_background(lambda: backfill_seconds(cases, "closed_at", CLOSED_FIELD), name="legacy-closed")
    h: DispatchHandlers = rt.state["dispatch"]
    rt.every(rt.city.calendar.timer_interval_s, h.tick, name="deadline-timers")


def health_warnings(rt: Runtime) -> list[str]:
    """From 1 December: next year's official holiday schedule is missing from calendar.yaml."""
    warning = BusinessCalendar(rt.city.calendar).missing_next_year(rt.clock.now())
    return [warning] if warning else []


# Closed and cancelled cases go by the city's archive rule (`retention.yaml`, closed_cases) after they ended.
RETAINED = (Retained(CASES, CLOSED_FIELD, "closed_cases"),)

SPEC = ServiceSpec(
    name="dispatch", subscriptions=subscriptions, collections=(CASES,), on_start=on_start,
    health_warnings=health_warnings, check_city=routing.validate, retained=RETAINED,
)
