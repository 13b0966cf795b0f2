"""The notify service."""

from __future__ import annotations

from services.notify.bulletin import service as bulletin
from services.notify.channels import build_channels
from services.notify.handlers import CASES, DELIVERIES, NotifyHandlers
from services.notify.ratelimit import RATE_BUCKETS
from xiuhua.consumer import Subscription, decode_tolerant
from xiuhua.service import Runtime, ServiceSpec


def _handlers(rt: Runtime) -> NotifyHandlers:
    if "handlers" not in rt.state:
        channels = build_channels(rt.city.alerts, rt.settings.var_dir / "outbox", rt.clock)
        rt.state["handlers"] = NotifyHandlers(rt, channels)
    return rt.state["handlers"]


def subscriptions(rt: Runtime) -> list[Subscription]:
    """Case events; the scoring events that alert (ranking black list, merchant escalation)."""
    h = _handlers(rt)
    return [
        Subscription("notify-cases", "case.v1.>", h.on_case_event, description="Case events"),
        Subscription("notify-rankings", "score.v1.ranking_published", h.on_score_event, decode=decode_tolerant,
                     description="Rankings: black lists alert"),
        Subscription("notify-merchants", "score.v1.merchant_escalated", h.on_score_event, decode=decode_tolerant,
                     description="Merchant escalations alert"),
        *bulletin.subscriptions(rt),  # the weekly bulletin's own projection consumers
    ]


async def on_start(rt: Runtime) -> None:
    """Indexes, and the delivery worker."""
    h = _handlers(rt)
    await h.ensure_indexes()
    rt.every(rt.city.alerts.poll_seconds, h.deliver_due, name="delivery-worker")
    await bulletin.on_start(rt)  # week indexes and the Monday 15:00 schedule


SPEC = ServiceSpec(
    name="notify", subscriptions=subscriptions, collections=(DELIVERIES, CASES, RATE_BUCKETS, *bulletin.COLLECTIONS),
    on_start=on_start,
)
