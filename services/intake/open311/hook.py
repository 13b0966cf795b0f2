"""What intake's app wires in for Open311: collections, the projection's subscription, indexes, routes."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING

from contracts import subjects
from services.intake.open311.projection import REQUESTS, TOKENS, Projection
from services.intake.open311.routes import SUBMISSIONS, routes
from xiuhua.consumer import Subscription
from xiuhua.service import Runtime

__all__ = ["COLLECTIONS", "on_start", "routes", "subscription"]

COLLECTIONS = (REQUESTS, TOKENS, SUBMISSIONS)


def subscription(rt: Runtime) -> Subscription:
    """Case events into the Open311 view (durable `intake-open311`)."""
    return Subscription("intake-open311", subjects.CASE_ALL, Projection(rt.city, rt.store).on_case_events,
                        description="Case events into the Open311 requests view")


async def on_start(rt: Runtime) -> None:
    """Indexes for the GET requests filters."""
    await rt.store[REQUESTS].create_index([("requested_datetime", DESCENDING)])
    await rt.store[REQUESTS].create_index([("status", ASCENDING), ("requested_datetime", DESCENDING)])
    await rt.store[REQUESTS].create_index([("service_code", ASCENDING), ("requested_datetime", DESCENDING)])
