"""The notify service: alerts planned from case and scoring events, the delivery worker, the weekly bulletin."""

from __future__ import annotations

import functools

from starlette.routing import BaseRoute

from services.notify import store
from services.notify.bulletin.service import CASES_CONSUMER, Bulletin
from services.notify.bulletin.service import COLLECTIONS as BULLETIN_COLLECTIONS
from services.notify.bulletin.service import RETAINED as BULLETIN_RETAINED
from services.notify.channels import build_channels, close_channels
from services.notify.handlers import NotifyHandlers
from services.notify.handover import Handover
from services.notify.ratelimit import RATE_BUCKETS
from services.notify.worker import RENEW_EVERY_S, DeliveryWorker
from xiuhua.consumer import Subscription, decode_tolerant
from xiuhua.service import Job, Runtime, Service, ServiceSpec

WORKER = "delivery-worker"  # the worker task's name (tests that drive deliveries by hand cancel it)


class Notify(Service):
    """Planning (handlers) hands deliveries to the worker; the bulletin is a part of its own."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.bulletin = Bulletin(rt, folds_cases=False)  # notify's case consumer folds the case events
        self.handlers = NotifyHandlers(rt, self.bulletin.projection.applied.labels("case"))
        self.handover = Handover(rt, self.handlers)
        self.channels = build_channels(rt.city.alerts, rt.settings.var_dir / "outbox", rt.clock)
        self.worker = DeliveryWorker(rt, self.channels, self.handlers)

    def subscriptions(self) -> list[Subscription]:
        """Case events (alerts and the bulletin's figures, in one pass); the former alert consumer until it has
        handed over; the scoring events that alert (ranking black list, merchant escalation); the bulletin's."""
        h, rt = self.handlers, self.rt
        return [
            # Alerts reach people through gateways that take seconds: a moment's linger costs them nothing and
            # spares the store a transaction per case event at a modest rate (the store is what report → dispatch
            # waits on). A short one: the alert is still what somebody waits for. The bulletin's durable consumer,
            # which planning joined: its position and ledger entries guard the figures (`handover`).
            Subscription(
                CASES_CONSUMER,
                "case.v1.>",
                h.on_case_event,
                description="Case events: alerts planned, the weekly bulletin's figures folded",
                on_commit=h.on_committed,
                linger=rt.settings.prompt_linger,
            ),
            self.handover.subscription(),
            Subscription(
                "notify-rankings",
                "score.v1.ranking_published",
                functools.partial(h.on_score_event, stage="rankings"),
                decode=decode_tolerant,
                description="Rankings: black lists alert",
                on_commit=functools.partial(h.on_committed, "rankings"),
            ),
            Subscription(
                "notify-merchants",
                "score.v1.merchant_escalated",
                functools.partial(h.on_score_event, stage="merchants"),
                decode=decode_tolerant,
                description="Merchant escalations alert",
                on_commit=functools.partial(h.on_committed, "merchants"),
            ),
            *self.bulletin.subscriptions(),  # the weekly bulletin's own projection consumers
        ]

    def jobs(self) -> list[Job]:
        """The delivery worker (woken by planning, polling besides), the renewal of its claims' leases, the
        bulletin's Monday 15:00 schedule."""
        return [
            Job(WORKER, None, self.worker.run),
            Job("claim-leases", RENEW_EVERY_S, self.worker.renew_leases),
            *self.bulletin.jobs(),
        ]

    def routes(self) -> list[BaseRoute]:
        """The bulletin archive at /bulletins/."""
        return self.bulletin.routes()

    async def on_start(self) -> None:
        """Indexes: the delivery log's, the bulletin's week reads; whether the former alert consumer handed over;
        once, the moments older builds' deliveries, their outcomes' claims and the views of ended cases lack."""
        await store.ensure_indexes(self.rt.store)
        await self.handover.on_start()
        self.rt.repair_once(lambda: store.finish_older_deliveries(self.rt.store), name="delivery-moments")
        self.rt.repair_once(
            lambda: store.close_older_views(self.rt.store, self.rt.clock.now()), name="alert-view-moments"
        )
        await self.bulletin.on_start()

    async def on_stop(self) -> None:
        """Planning's claims the worker did not send, given back; the channels' HTTP connections, once the worker
        has stopped."""
        await self.worker.give_back_planned()
        await close_channels(self.channels)


def of(rt: Runtime) -> Notify:
    """The notify service a runtime runs (its handlers, its worker, its bulletin)."""
    if not isinstance(rt.service, Notify):
        raise TypeError(f"{rt.name} does not run the notify service")
    return rt.service


SPEC = ServiceSpec(
    name="notify",
    service=Notify,
    collections=(store.DELIVERIES, store.CASES, RATE_BUCKETS, *BULLETIN_COLLECTIONS),
    retained=(*store.RETAINED, *BULLETIN_RETAINED),
)
