"""Idempotency and outbox in one collection (`ledger`).

Each applied message leaves one document, keyed by consumer and message id, written in the same transaction
as its effect and holding the events it caused. A redelivered message finds its document and re-publishes
those events (JetStream drops the copy inside the duplicate window; consumers drop it after). Timers claim a
key the same way, so two instances emit a warning once. A sweeper publishes what a crash left unpublished.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from xiuhua.bus import Outgoing, Publisher
from xiuhua.clock import Clock
from xiuhua.store import Store

log = logging.getLogger("xiuhua.ledger")

COLLECTION = "ledger"


def _doc(key: str, out: Sequence[Outgoing], at: datetime) -> dict[str, Any]:
    return {
        "_id": key,
        "events": [{"s": o.subject, "b": o.body.decode(), "id": o.msg_id} for o in out],
        "published": not out,
        "at": at,
    }


def outgoing_of(doc: dict[str, Any]) -> list[Outgoing]:
    """The events a ledger document holds."""
    return [Outgoing(e["s"], e["b"].encode(), e["id"]) for e in doc.get("events", [])]


class Ledger:
    """Applied-message records and the outbox of what they caused."""

    def __init__(self, store: Store, publisher: Publisher, clock: Clock) -> None:
        self._col = store[COLLECTION]
        self._publisher = publisher
        self._clock = clock

    async def ensure_indexes(self) -> None:
        """Index the unpublished entries the sweeper looks for: a single-field index, which both stores answer
        an equality on without a scan (nx-27017 scans for a range, and for an equality on the first field of a
        compound index: 24 ms a sweep at 30,000 entries, every 5 s in every service, against under 1 ms)."""
        await self._col.create_index([("published", ASCENDING)])
        with contextlib.suppress(OperationFailure):  # the compound index earlier versions made: one less to keep
            await self._col.drop_index([("published", ASCENDING), ("at", ASCENDING)])

    async def seen(self, keys: Iterable[str], session: AsyncClientSession | None = None) -> dict[str, dict[str, Any]]:
        """The documents of keys already applied (inside the caller's transaction when a session is given)."""
        ids = list(keys)
        if not ids:
            return {}
        return {d["_id"]: d async for d in self._col.find({"_id": {"$in": ids}}, session=session)}

    async def record(
        self, session: AsyncClientSession, entries: Sequence[tuple[str, Sequence[Outgoing]]]
    ) -> None:
        """Record applied keys with their events, inside the caller's transaction."""
        if entries:
            now = self._clock.now()
            await self._col.insert_many([_doc(k, out, now) for k, out in entries], session=session)

    async def claim(
        self, key: str, out: Sequence[Outgoing], session: AsyncClientSession | None = None
    ) -> bool:
        """Record a key once; False if it was claimed before (by this or another instance)."""
        try:
            await self._col.insert_one(_doc(key, out, self._clock.now()), session=session)
            return True
        except DuplicateKeyError:
            return False

    async def claim_many(
        self, entries: Sequence[tuple[str, Sequence[Outgoing]]]
    ) -> list[tuple[str, list[Outgoing]]]:
        """Record keys once each (one unordered insert); returns what to publish now: the entries claimed here,
        and those claimed before (a retried record) whose events are still unpublished (the bus drops the copy
        by message id)."""
        if not entries:
            return []
        now = self._clock.now()
        taken: set[str] = set()
        try:
            await self._col.insert_many([_doc(k, out, now) for k, out in entries], ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            taken = {entries[e["index"]][0] for e in errors}
        fresh = [(k, list(out)) for k, out in entries if k not in taken]
        earlier = await self.seen(taken)
        return fresh + [(k, outgoing_of(d)) for k, d in earlier.items() if not d.get("published")]

    async def publish(self, entries: Sequence[tuple[str, Sequence[Outgoing]]]) -> None:
        """Publish the events of entries and mark them published."""
        pending = [(k, out) for k, out in entries if out]
        if not pending:
            return
        await self._publisher.send(o for _, out in pending for o in out)
        await self._col.update_many({"_id": {"$in": [k for k, _ in pending]}}, {"$set": {"published": True}})

    async def sweep(self, older_than: timedelta = timedelta(seconds=15), limit: int = 500) -> int:
        """Publish entries a crash left unpublished; returns how many."""
        cutoff = self._clock.now() - older_than
        # Unpublished entries are few (those in flight, and what a crash left): select them by equality, then age.
        unpublished = [d async for d in self._col.find({"published": False})]
        docs = sorted((d for d in unpublished if d["at"] < cutoff), key=lambda d: d["at"])[:limit]
        if docs:
            log.warning("re-publishing %d outbox entries left unpublished", len(docs))
            await self.publish([(d["_id"], outgoing_of(d)) for d in docs])
        return len(docs)
