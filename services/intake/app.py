"""The intake service."""

from __future__ import annotations

from pymongo import ASCENDING

from contracts import subjects
from services.intake.handlers import RAW, IntakeHandlers, decode_raw
from xiuhua.consumer import Subscription
from xiuhua.service import Runtime, ServiceSpec


def subscriptions(rt: Runtime) -> list[Subscription]:
    """Raw reports from every source."""
    h = IntakeHandlers(rt)
    return [
        Subscription("intake-reports", subjects.REPORT_IN_ALL, h.on_reports, decode=decode_raw,
                     description="Raw reports from every source"),
    ]


async def on_start(rt: Runtime) -> None:
    """Indexes for the raw-report archive."""
    await rt.store[RAW].create_index([("status", ASCENDING), ("received_at", ASCENDING)])


SPEC = ServiceSpec(
    name="intake", subscriptions=subscriptions, collections=("raw_reports", "source_refs"), on_start=on_start
)
