"""The dispatch service: cases routed to their units with a working-time deadline, commands, deadline timers."""

from __future__ import annotations

from contracts import subjects
from services.dispatch import routing, store
from services.dispatch.case import CLOSED_FIELD
from services.dispatch.commands import NotDispatchs, decode_command
from services.dispatch.deadlines import DeadlineTimers
from services.dispatch.handlers import DispatchHandlers
from services.dispatch.timers import TIMER_PREFIX
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.consumer import Subscription
from xiuhua.service import Job, Runtime, Service, ServiceSpec
from xiuhua.store import backfill_seconds


class Dispatch(Service):
    """New cases, commands on cases, merchants escalated by scoring; the deadline timers."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.handlers = DispatchHandlers(rt)
        self.timers = DeadlineTimers(rt)

    def subscriptions(self) -> list[Subscription]:
        """New cases, commands on cases, merchants escalated by scoring."""
        h = self.handlers
        return [
            Subscription("dispatch-opened", "case.v1.opened.*", h.on_opened, description="Cases opened by intake"),
            Subscription(
                "dispatch-commands",
                subjects.COMMAND_ALL,
                h.on_command,
                decode=decode_command,
                description="Commands of units, the command centre and the hotline",
                ignores=lambda m: isinstance(m, NotDispatchs),  # another service's command (correct_transfer)
            ),
            Subscription(
                "dispatch-merchants",
                subjects.SCORE.format(event="merchant_escalated"),
                h.on_merchant_escalated,
                description="Merchants escalated to enforcement by scoring",
            ),
        ]

    def jobs(self) -> list[Job]:
        """The deadline timers, as often as the city's calendar says."""
        return [Job("deadline-timers", self.rt.city.calendar.timer_interval_s, self.timers.tick)]

    async def on_start(self) -> None:
        """Check the routing table against the city, index the due moments the timer loop scans."""
        rt = self.rt
        routing.validate(rt.city)
        await store.ensure_indexes(rt.store)
        cases = rt.store[store.CASES]
        await rt.repair_older_builds(lambda: store.index_legacy_timers(cases), name="legacy-timers")
        # Timer claims a build before retention wrote have no moment to range over: dated once, or kept for good.
        # Purging them is safe: the case records the timers it fired, and that, not the claim, stops a second firing.
        rt.repair_once(lambda: rt.ledger.backfill_moments([TIMER_PREFIX]), name="timer-moments")
        # Cases an older build closed get the number the purge ranges over; once a start, in the background: the
        # selection reads every case on nx-27017, and the purge is hours away anyway.
        rt.in_background(lambda: backfill_seconds(cases, "closed_at", CLOSED_FIELD), name="legacy-closed")


def of(rt: Runtime) -> Dispatch:
    """The dispatch service a runtime runs (its handlers, its deadline timers)."""
    if not isinstance(rt.service, Dispatch):
        raise TypeError(f"{rt.name} does not run the dispatch service")
    return rt.service


def health_info(rt: Runtime) -> dict[str, list[str]]:
    """`/health` `warnings`, which leave the service healthy: from 1 December, next year's official holiday
    schedule missing from calendar.yaml."""
    warning = BusinessCalendar(rt.city.calendar).missing_next_year(rt.clock.now())
    return {"warnings": [warning] if warning else []}


SPEC = ServiceSpec(
    name="dispatch",
    service=Dispatch,
    collections=(store.CASES,),
    health_info=health_info,
    check_city=routing.validate,
    retained=store.RETAINED,
)
