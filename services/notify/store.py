"""Notify's store access: the delivery log (`deliveries`), notify's view of the cases it alerts on, the places the
bulletin's projection knows.

A delivery moves on by a conditional whole-document replace on its version `v`: atomic on MongoDB, and it keeps
datetimes and sub-documents intact on nx-27017 (whose `$set` stores datetimes as text and whose `$push` stores
sub-documents as JSON strings). Lease renewals do not move `v`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from services.notify.bulletin.projection import CASES as BULLETIN_CASES
from services.notify.bulletin.projection import CLOSED_S as BULLETIN_CLOSED_S
from services.notify.digest import PLACES
from xiuhua.ledger import COLLECTION as LEDGER
from xiuhua.ledger import date_older_entries
from xiuhua.retention import Retained
from xiuhua.store import Store, update_in_chunks

log = logging.getLogger("xiuhua.notify")

DELIVERIES = "deliveries"
# Notify's view of the cases it alerts on (who leads and cooperates, where, what) as builds before the one case
# consumer kept it apart; now the bulletin's record of the case holds it (`planning.VIEW`). Read for the cases
# dispatched before, purged as they end.
CASES = "alert_cases"
FINISHED = ("delivered", "failed")  # a delivery's final states: sent, or given up
FINISHED_S = "finished_s"  # when a delivery reached one of them, in seconds: what the purge ranges over
CLOSED_S = "closed_s"  # when an alerted case closed or was cancelled, in seconds (null once reopened)
ENDED = ("closed", "cancelled")  # the bulletin's record of a case that ended
OUTCOME_CLAIMS = ("delivered:", "failed:")  # ledger keys of a delivery's outcome events (`outcomes`)


def finished_at(now: datetime) -> dict[str, Any]:
    """The field a delivery reaching a final state gets beside its `delivered_at` or `failed_at`."""
    return {FINISHED_S: now.timestamp()}


def _unfinished(doc: Mapping[str, Any]) -> bool:
    """Pending (held by the rate limit or waiting for a retry) or being sent: never purged, whatever its age."""
    return doc.get("status") not in FINISHED


# A finished delivery goes after the city's delivery horizon, counted from when it finished; notify's view of a
# case goes when closed cases go (`retention.yaml`).
RETAINED = (
    Retained(DELIVERIES, FINISHED_S, "deliveries", keep=_unfinished, keep_fields=("status",)),
    Retained(CASES, CLOSED_S, "closed_cases"),
)


async def ensure_indexes(store: Store) -> None:
    """The worker looks for pending deliveries that are due; the log is read by case."""
    col = store[DELIVERIES]
    await col.create_index([("status", ASCENDING), ("next_at", ASCENDING)])
    # nx-27017 answers an equality on a single-field index without a scan, but not a range on a compound one
    # (33 ms a round at 30,000 deliveries): the worker selects pending deliveries by status, then time.
    await col.create_index([("status", ASCENDING)])
    await col.create_index([("case_id", ASCENDING)])


async def finish_older_deliveries(store: Store) -> int:
    """Give `finished_s` to the deliveries a build before retention finished without it (else kept for good), from
    their `delivered_at` or `failed_at`, and `at_s` to their outcomes' claims in the ledger; returns how many. One
    query per final state, an equality on the status index, and one over the ledger's entries without a moment."""

    async def moves() -> AsyncIterator[UpdateOne]:
        for status, when in (("delivered", "delivered_at"), ("failed", "failed_at")):
            async for d in store[DELIVERIES].find({"status": status}, {when: 1, FINISHED_S: 1}):
                if FINISHED_S not in d and isinstance(d.get(when), datetime):
                    yield UpdateOne(
                        {"_id": d["_id"], "status": status, FINISHED_S: {"$exists": False}},
                        {"$set": {FINISHED_S: d[when].timestamp()}},
                    )

    return await update_in_chunks(store[DELIVERIES], moves()) + await date_older_claims(store)


async def date_older_claims(store: Store) -> int:
    """Give `at_s` to the `delivered:<id>` and `failed:<id>` claims an older build wrote without it, from their
    `at`; returns how many. They are the outbox of a delivery's outcome, past any use once published like any
    applied message's entry, but keyed by no consumer, so the runtime's pass over the ledger leaves them."""

    return await date_older_entries(store[LEDGER], OUTCOME_CLAIMS)


async def close_older_views(store: Store, now: datetime) -> int:
    """Give `closed_s` to notify's view of the cases that closed before it listened for closings, from the bulletin's
    record of each (same moment, same service); returns how many. A range on that record's number, read once.

    A record that itself closed before the bulletin kept the moment (closed or cancelled, without `closed_s`) takes
    `now` first: the latest the case can have ended, so it and its view go a horizon after this pass at the latest,
    never before their time. A view whose case the bulletin never recorded keeps as it is: nothing here tells
    whether that case is still open."""
    ended = await _close_older_records(store, now)

    async def moves() -> AsyncIterator[UpdateOne]:
        async for c in store[BULLETIN_CASES].find({BULLETIN_CLOSED_S: {"$gte": 0}}, {BULLETIN_CLOSED_S: 1}):
            yield UpdateOne({"_id": c["_id"], CLOSED_S: {"$exists": False}}, {"$set": {CLOSED_S: c[BULLETIN_CLOSED_S]}})

    views = await update_in_chunks(store[CASES], moves())
    if ended:
        log.info("%d bulletin records of cases that ended before they kept the moment dated %s", ended, now)
    return views + ended


async def supersede_older_views(store: Store, now: datetime) -> int:
    """Give `closed_s` = `now` to the views an older build kept apart of the cases whose bulletin record now holds
    planning's view (a dispatch the case consumer folded), which nothing reads again; returns how many. Run once the
    former alert consumer has handed over, so no view is written after it; a view of a case re-dispatched later is
    dated by that dispatch. The records are read once, and not at all where there is no view apart (a deployment
    that began with this build)."""
    if await store[CASES].find_one({}, {"_id": 1}) is None:
        return 0

    async def moves() -> AsyncIterator[UpdateOne]:
        async for c in store[BULLETIN_CASES].find({"cooperating": {"$exists": True}}, {"_id": 1}):
            yield UpdateOne({"_id": c["_id"], CLOSED_S: {"$exists": False}}, {"$set": {CLOSED_S: now.timestamp()}})

    return await update_in_chunks(store[CASES], moves())


def record_closing(record: Mapping[str, Any], now: datetime) -> UpdateOne | None:
    """`closed_s` = `now` for a bulletin record of a case that ended without it (None for any other); conditional
    on the status read, so a case reopened meanwhile stays open (nx-27017 cannot tell the null a reopening writes
    from a missing field: the status says which records ended)."""
    if record.get("status") not in ENDED or record.get(BULLETIN_CLOSED_S) is not None:
        return None
    return UpdateOne(
        {"_id": record["_id"], "status": record["status"], BULLETIN_CLOSED_S: {"$exists": False}},
        {"$set": {BULLETIN_CLOSED_S: now.timestamp()}},
    )


async def _close_older_records(store: Store, now: datetime) -> int:
    async def moves() -> AsyncIterator[UpdateOne]:
        async for c in store[BULLETIN_CASES].find(
            {"status": {"$in": list(ENDED)}}, {"status": 1, BULLETIN_CLOSED_S: 1}
        ):
            if (move := record_closing(c, now)) is not None:
                yield move

    return await update_in_chunks(store[BULLETIN_CASES], moves())


def _next(doc: dict[str, Any], changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, replacement) that move a delivery on if nobody moved it since `doc` was read (version `v`)."""
    v = doc.get("v")
    cond = {"_id": doc["_id"], "v": v} if v is not None else {"_id": doc["_id"], "v": {"$exists": False}}
    return cond, {k: val for k, val in doc.items() if k != "_id"} | changes | {"v": (v or 0) + 1}


async def transition(
    store: Store, doc: dict[str, Any], expect: dict[str, Any] | None = None, **changes: Any
) -> dict[str, Any] | None:
    """Move a delivery to its next state if nobody moved it since `doc` was read (and it matches `expect`); None if
    somebody did."""
    cond, new = _next(doc, changes)
    async with store.outside_transactions():
        res = await store[DELIVERIES].replace_one(cond | (expect or {}), new)
    return {"_id": doc["_id"], **new} if res.modified_count == 1 else None


async def transition_all(
    store: Store, moves: list[tuple[dict[str, Any], dict[str, Any]]]
) -> tuple[int, list[dict[str, Any]]]:
    """Several `transition`s in one unordered bulk write; returns how many went through, and each delivery as the
    write would leave it (in the order of `moves`)."""
    if not moves:
        return 0, []
    nexts = [_next(doc, changes) for doc, changes in moves]
    async with store.outside_transactions():
        res = await store[DELIVERIES].bulk_write([ReplaceOne(*n) for n in nexts], ordered=False)
    return res.modified_count, [{"_id": cond["_id"], **new} for cond, new in nexts]


async def cases(store: Store, ids: list[str], reads: AsyncClientSession | None) -> dict[str, dict[str, Any]]:
    """Notify's view of these cases, by id."""
    if not ids:
        return {}
    return {d["_id"]: d async for d in store[CASES].find({"_id": {"$in": ids}}, session=reads)}


async def logged(store: Store, ids: list[str], reads: AsyncClientSession | None) -> set[str]:
    """Which of these notification ids the delivery log holds already."""
    return {d["_id"] async for d in store[DELIVERIES].find({"_id": {"$in": ids}}, {"_id": 1}, session=reads)}


async def owned(store: Store, ids: list[str], owner: str) -> set[str]:
    """Which of these deliveries `owner` holds the claim of."""
    found = store[DELIVERIES].find({"_id": {"$in": ids}}, {"owner": 1})
    return {d["_id"] async for d in found if d.get("owner") == owner}


async def renew(store: Store, ids: list[str], owner: str, lease_s: float, older_than: float | None = None) -> None:
    """Extend the leases of `owner`'s claims (one write for all of them); with `older_than`, only those whose lease
    runs out before it (a claim made or renewed a moment ago is not written again: in a burst most claims are
    sent before they need it)."""
    query: dict[str, Any] = {"_id": {"$in": ids}, "status": "sending", "owner": owner}
    if older_than is not None:
        query["lease_s"] = {"$lt": older_than}
    async with store.outside_transactions():
        # `lease_s` a number: `$set` keeps numbers intact on nx-27017
        await store[DELIVERIES].update_many(query, {"$set": {"lease_s": lease_s}})


async def mark_digest(store: Store, ids: list[str], nid: str, places: dict[str, str], owner: str) -> int:
    """Store a digest's id (and the places it names from the bulletin) on `owner`'s claims of its alerts before it
    is sent; returns how many it reached (a claim another instance took over meanwhile is not `owner`'s). Not a
    versioned move: the claims stay as their owner holds them."""
    mark: dict[str, Any] = {"digest": nid} | ({PLACES: places} if places else {})
    async with store.outside_transactions():
        res = await store[DELIVERIES].update_many(
            {"_id": {"$in": ids}, "status": "sending", "owner": owner}, {"$set": mark}
        )
    return int(res.matched_count)


async def digest_members(store: Store, nid: str) -> list[dict[str, Any]]:
    """The alerts a digest was sent with, whatever became of them since. Read only when a dead owner's digest is
    sent again (rare): by a field no index holds, not worth an index every delivery's write would maintain."""
    return [d async for d in store[DELIVERIES].find({"digest": nid})]


async def pending_times(store: Store) -> list[dict[str, Any]]:
    """Every pending delivery's time, lane and hold (an equality both stores answer from an index, small documents)."""
    fields = {"next_at": 1, "contact_id": 1, "channel": 1, "urgent": 1, "held_at": 1}
    return [d async for d in store[DELIVERIES].find({"status": "pending"}, fields)]


async def pending(store: Store, ids: list[str]) -> list[dict[str, Any]]:
    """These deliveries in full, if still pending."""
    return [d async for d in store[DELIVERIES].find({"_id": {"$in": ids}, "status": "pending"})]


async def sending(store: Store) -> list[dict[str, Any]]:
    """The claims in flight, by their status alone: nx-27017 reads every delivery ever logged for the status with an
    `$or` of lease conditions added (68 ms at 50,000, every second), and claims are few."""
    return [d async for d in store[DELIVERIES].find({"status": "sending"})]


async def unsettled(store: Store, ids: list[str]) -> list[dict[str, Any]]:
    """These deliveries if they hold no final outcome yet (pending or sending)."""
    return [d async for d in store[DELIVERIES].find({"_id": {"$in": ids}, "status": {"$in": ["pending", "sending"]}})]


async def status_of(store: Store, nid: str) -> str | None:
    """A delivery's status; None if the log does not hold it."""
    cur = await store[DELIVERIES].find_one({"_id": nid}, {"status": 1})
    return None if cur is None else cur.get("status")


async def bulletin_places(store: Store, case_ids: list[str]) -> list[dict[str, Any]]:
    """The street, community and grid the bulletin's projection holds for these cases (from their openings)."""
    found = store[BULLETIN_CASES].find({"_id": {"$in": case_ids}}, {"street_name": 1, "community_name": 1, "grid": 1})
    return [c async for c in found]
