"""The notify service."""

from __future__ import annotations

import asyncio

from services.notify.bulletin import service as bulletin
from services.notify.channels import build_channels, close_channels
from services.notify.handlers import CASES, DELIVERIES, RENEW_EVERY_S, NotifyHandlers
from services.notify.ratelimit import RATE_BUCKETS
from xiuhua.consumer import Subscription, decode_tolerant
from xiuhua.service import Runtime, ServiceSpec

WORKER = "delivery-worker"  # the worker task's name (tests that drive deliveries by hand cancel it)


def _handlers(rt: Runtime) -> NotifyHandlers:
    if "handlers" not in rt.state:
        channels = build_channels(rt.city.alerts, rt.settings.var_dir / "outbox", rt.clock)
        rt.state["handlers"] = NotifyHandlers(rt, channels)
    return rt.state["handlers"]


def subscriptions(rt: Runtime) -> list[Subscription]:
    """Case events; the scoring events that alert (ranking black list, merchant escalation)."""
    h = _handlers(rt)
    return [
        # Alerts reach people through gateways that take seconds: a moment's linger costs them nothing and spares
        # the store a transaction per case event at a modest rate (the store is what report → dispatch waits on).
        # A short one: the alert is still what somebody waits for.
        Subscription("notify-cases", "case.v1.>", h.on_case_event, description="Case events",
                     on_commit=h.on_committed, skips_type=h.skips_type, ignores=h.ignores,
                     linger=rt.settings.prompt_linger),
        Subscription("notify-rankings", "score.v1.ranking_published", h.on_score_event, decode=decode_tolerant,
                     description="Rankings: black lists alert", on_commit=h.on_committed),
        Subscription("notify-merchants", "score.v1.merchant_escalated", h.on_score_event, decode=decode_tolerant,
                     description="Merchant escalations alert", on_commit=h.on_committed),
        *bulletin.subscriptions(rt),  # the weekly bulletin's own projection consumers
    ]


async def on_start(rt: Runtime) -> None:
    """Indexes, the delivery worker (woken by planning, polling besides) and the renewal of its claims' leases."""
    h = _handlers(rt)
    await h.ensure_indexes()
    rt.tasks.append(asyncio.create_task(h.run_worker(), name=f"{rt.name}:{WORKER}"))
    rt.every(RENEW_EVERY_S, h.renew_leases, name="claim-leases")
    await bulletin.on_start(rt)  # week indexes and the Monday 15:00 schedule


async def on_stop(rt: Runtime) -> None:
    """The channels' HTTP connections, once the worker has stopped."""
    if "handlers" in rt.state:
        await close_channels(rt.state["handlers"].channels)


SPEC = ServiceSpec(
    name="notify", subscriptions=subscriptions, collections=(DELIVERIES, CASES, RATE_BUCKETS, *bulletin.COLLECTIONS),
    on_start=on_start, http_routes=bulletin.routes,  # the bulletin archive at /bulletins/
    on_stop=on_stop,
    retained=bulletin.RETAINED,
)
