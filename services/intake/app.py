"""The intake service."""

from __future__ import annotations

from pymongo import ASCENDING

from contracts import subjects
from services.intake import open311
from services.intake.handlers import RAW, IntakeHandlers, decode_raw
from xiuhua.consumer import Subscription
from xiuhua.service import Runtime, ServiceSpec


def subscriptions(rt: Runtime) -> list[Subscription]:
    """Raw reports from every source."""
    h = IntakeHandlers(rt)
    return [
        Subscription("intake-reports", subjects.REPORT_IN_ALL, h.on_reports, decode=decode_raw,
                     description="Raw reports from every source"),
        open311.subscription(rt),
    ]


async def on_start(rt: Runtime) -> None:
    """Indexes for the raw-report archive."""
    await rt.store[RAW].create_index([("status", ASCENDING), ("received_at", ASCENDING)])
    await open311.on_start(rt)


SPEC = ServiceSpec(
    name="intake", subscriptions=subscriptions, collections=("raw_reports", "source_refs", *open311.COLLECTIONS),
    on_start=on_start, http_routes=open311.routes,
)
