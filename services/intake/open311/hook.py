"""What intake's app wires in for Open311: collections, the projection's subscription, indexes, routes."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne

from contracts import subjects
from services.intake.open311.definitions import load_open311
from services.intake.open311.projection import CLOSED_S, REQUESTED_S, REQUESTS, TOKENS, Projection, ignored
from services.intake.open311.render import as_datetime
from services.intake.open311.routes import REFUSED, SUBMISSIONS, routes
from xiuhua.consumer import Subscription
from xiuhua.retention import AT_S, Retained
from xiuhua.service import Runtime
from xiuhua.store import backfill_seconds, drop_index_on, pages_in_order

__all__ = ["COLLECTIONS", "RETAINED", "on_start", "routes", "subscriptions"]

COLLECTIONS = (REQUESTS, TOKENS, SUBMISSIONS, REFUSED)
# A closed request's public view goes when closed cases go (`retention.yaml`, closed_cases), from its last change;
# a submission (the citizen's contact details, kept here only) and its token's answer go when the raw report they
# came with goes (raw_reports), from when they were written; so do the raw bytes of a refused request.
RETAINED = (
    Retained(REQUESTS, CLOSED_S, "closed_cases"),
    Retained(SUBMISSIONS, AT_S, "raw_reports"),
    Retained(TOKENS, AT_S, "raw_reports"),
    Retained(REFUSED, AT_S, "raw_reports"),
)


def subscriptions(rt: Runtime) -> list[Subscription]:
    """Case events into the Open311 view (durable `intake-open311`); rejected Open311 reports for their tokens.
    Both linger only briefly (`prompt_linger`): a citizen's POST waits for its token to resolve."""
    p = Projection(rt.city, rt.store)
    return [
        Subscription(
            "intake-open311",
            subjects.CASE_ALL,
            p.on_case_events,
            skips_type=ignored,
            description="Case events into the Open311 requests view",
            linger=rt.settings.prompt_linger,
        ),
        Subscription(
            "intake-open311-rejected",
            subjects.REPORT_REJECTED,
            p.on_rejections,
            description="Open311 reports intake refused: their tokens answer with the reason",
            linger=rt.settings.prompt_linger,
        ),
    ]


async def on_start(rt: Runtime) -> None:
    """Check open311.yaml (errors name file and line) however the service runs; indexes for the queries."""
    load_open311(rt.city)
    requests = rt.store[REQUESTS]
    # `GET requests` selects a span of dates and sorts by date: on the number, which nx-27017 answers from the
    # index (on the date it reads every request ever kept); the compound ones serve MongoDB's filtered listings.
    await requests.create_index([(REQUESTED_S, DESCENDING)])
    await requests.create_index([("status", ASCENDING), (REQUESTED_S, DESCENDING)])
    await requests.create_index([("service_code", ASCENDING), (REQUESTED_S, DESCENDING)])
    for old in ("status", "service_code", None):  # what earlier versions listed by: indexes less to keep
        await drop_index_on(requests, [*([(old, ASCENDING)] if old else []), ("requested_datetime", DESCENDING)])
    await rt.repair_older_builds(
        lambda: backfill_seconds(requests, "requested_datetime", REQUESTED_S), name="open311-request-dates"
    )
    # After the dates' numbers above: the closed requests of a build before retention, in one pass over them.
    rt.repair_once(lambda: close_older_requests(requests), name="open311-closed-moments")
    # One field: nx-27017 answers an equality on a single-field index without a scan, not on a compound one.
    await rt.store[SUBMISSIONS].create_index([("fingerprint", ASCENDING)])
    # What earlier versions made: one index less to keep.
    await drop_index_on(rt.store[SUBMISSIONS], [("fingerprint", ASCENDING), ("at", DESCENDING)])


async def close_older_requests(requests: Any) -> int:
    """Give `closed_s` (the purge's range) to the closed requests a build before retention wrote without it, from
    their last change as the projection does; returns how many. One pass in `requested_s` order, a range on its
    index a page at a time."""
    done = 0
    fields = {"status": 1, "updated_datetime": 1, CLOSED_S: 1}
    async for page in pages_in_order(requests, REQUESTED_S, -1e18, 1e18, fields):
        moves = [
            UpdateOne(
                {"_id": d["_id"], "status": "closed", CLOSED_S: {"$exists": False}},
                {"$set": {CLOSED_S: changed.timestamp()}},
            )
            for d in page
            if d.get("status") == "closed"
            and CLOSED_S not in d
            and (changed := as_datetime(d.get("updated_datetime"))) is not None
        ]
        if moves:
            done += (await requests.bulk_write(moves, ordered=False)).modified_count
    return done
