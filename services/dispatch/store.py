"""Dispatch's store access: the `cases` collection, one document per case (`services.dispatch.case`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from services.dispatch.case import CLOSED_FIELD, TIMER_FIELD
from xiuhua.retention import Retained
from xiuhua.store import Store, backfill_seconds

CASES = "cases"
TIMER_SCAN = 500  # due cases per scan

# Closed and cancelled cases go by the city's archive rule (`retention.yaml`, closed_cases) after they ended.
RETAINED = (Retained(CASES, CLOSED_FIELD, "closed_cases"),)


async def ensure_indexes(store: Store) -> None:
    """The due moments the timer loop scans; the cases an older build wrote with only the date."""
    cases = store[CASES]
    await cases.create_index([(TIMER_FIELD, ASCENDING)])
    # Finds the cases an older build wrote with only the date, on MongoDB without reading every case.
    await cases.create_index([("next_timer_at", ASCENDING)])


async def due_case_ids(cases: Any, now: datetime, limit: int = TIMER_SCAN) -> list[str]:
    """Ids of the cases whose next timer has fallen due, earliest first (the scan of the timer loop)."""
    scan = cases.find({TIMER_FIELD: {"$lte": now.timestamp()}}, {"_id": 1}).sort(TIMER_FIELD, 1).limit(limit)
    return [d["_id"] async for d in scan]


async def index_legacy_timers(cases: Any) -> int:
    """Give `next_timer_s` to cases that have a next timer but not that field (written by a build that stored only
    `next_timer_at`), whose timers the scan would otherwise never see; returns how many."""
    return await backfill_seconds(cases, "next_timer_at", TIMER_FIELD)


async def kept(store: Store, ids: list[str], reads: AsyncClientSession | None) -> dict[str, dict[str, Any] | None]:
    """Which of these cases are kept already, with what their opening published (`Case.outbox`)."""
    found = store[CASES].find({"_id": {"$in": ids}}, {"outbox": 1}, session=reads)
    return {d["_id"]: d.get("outbox") async for d in found}


async def find(store: Store, case_id: str, session: AsyncClientSession | None) -> dict[str, Any] | None:
    """A case's document, or None."""
    return await store[CASES].find_one({"_id": case_id}, session=session)


async def find_all(store: Store, ids: list[str], session: AsyncClientSession | None) -> dict[str, dict[str, Any]]:
    """These cases' documents, by id."""
    return {d["_id"]: d async for d in store[CASES].find({"_id": {"$in": ids}}, session=session)}


async def replace_if_version(
    store: Store, case_id: str, version: int, doc: dict[str, Any], session: AsyncClientSession | None
) -> bool:
    """Replace a case if nobody moved it on since `version` was read. The whole document, not `$set`: nx-27017 stores
    a datetime given to `$set` as a string."""
    res = await store[CASES].replace_one({"_id": case_id, "version": version}, doc, session=session)
    return res.matched_count == 1
