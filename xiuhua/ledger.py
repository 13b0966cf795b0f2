"""Idempotency and outbox in one collection (`ledger`).

Each applied message leaves one document, keyed by consumer and message id, written in the same transaction
as its effect and holding the events it caused. A redelivered message finds its document and re-publishes
those events (JetStream drops the copy inside the duplicate window; consumers drop it after). Timers claim a
key the same way, so two instances emit a warning once. A sweeper publishes what a crash left unpublished.

An entry of a consumed message is never marked published: its message is acknowledged only once its events went
out, and until then JetStream delivers it again, which finds the entry and publishes them again. So the
redelivery is its outbox's sweeper, and the entry is one document written, not an insert and a mark
(`add(..., swept=False)`). What no message brings back (a timer's claim, a bulletin's) is marked published once
out, and swept until then. Marks are off the consumers' path: the keys of what went out are written together a
moment later (`MARK_AFTER_S`), one update for many claims. Until then the process knows them as published; a
crash in between leaves them to the sweeper, which publishes them again as it would after a crash just before
the mark (the bus or the consumers drop the copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, DuplicateKeyError

from xiuhua.bus import Outgoing, PublishDenied, Publisher
from xiuhua.clock import Clock
from xiuhua.retention import AT_S, Retained
from xiuhua.store import Store, Writes, drop_index_on, update_in_chunks

log = logging.getLogger("xiuhua.ledger")

COLLECTION = "ledger"
SEQ = "q"  # in an entry, or in a document that keeps what a message published: that message's stream sequence
MARK_AFTER_S = 0.25  # how long published keys wait to be marked together


def _doc(
    key: str,
    out: Sequence[Outgoing],
    at: datetime,
    *,
    expires: bool = True,
    swept: bool = True,
    seq: int | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": key, "events": [_event_doc(o) for o in out], "at": at}
    if swept:  # what the sweeper looks for; an entry without it is published again by its message's redelivery
        doc["published"] = not out
    if seq is not None:  # the stream sequence of the message that made it: what tells its redelivery (`SEQ`)
        doc[SEQ] = seq
    if expires:  # what the purge ranges over (`RETAINED`): an entry without it is kept for good
        doc[AT_S] = at.timestamp()
    return doc


def _unpublished(doc: Mapping[str, Any]) -> bool:
    """An outbox entry the sweeper watches whose events have not gone out: it still needs it, whatever its age. A
    consumed message's entry (no `published`) goes with the horizon: its message, unacknowledged until its events
    went out, comes back within the ack wait or the back-off cap, far inside any horizon the city may set."""
    return doc.get("published") is False


# Entries of applied messages go after the city's ledger horizon (`retention.yaml`), but swept ones unpublished.
RETAINED = Retained(COLLECTION, AT_S, "ledger", keep=_unpublished, keep_fields=("published",))


def _event_doc(o: Outgoing) -> dict[str, Any]:
    doc: dict[str, Any] = {"s": o.subject, "b": o.body.decode(), "id": o.msg_id}
    if o.headers:  # kept so that a republished event carries the same trace context
        doc["h"] = dict(o.headers)
    return doc


def redelivery_of(doc: Mapping[str, Any] | None, *, redelivered: bool, seq: int | None) -> bool:
    """Whether a message is the one that wrote `doc` (its `SEQ`) delivered again: by its stream sequence, or, where
    either does not know it, by JetStream's delivery count."""
    if doc is not None and seq is not None and doc.get(SEQ) is not None:
        return bool(doc[SEQ] == seq)
    return redelivered


def event_docs(out: Sequence[Outgoing]) -> list[dict[str, Any]]:
    """Events as an outbox keeps them (`outgoing_of` reads them back)."""
    return [_event_doc(o) for o in out]


def outgoing_of(doc: Mapping[str, Any]) -> list[Outgoing]:
    """The events a ledger document holds."""
    return [Outgoing(e["s"], e["b"].encode(), e["id"], tuple(e.get("h", {}).items())) for e in doc.get("events", [])]


class Ledger:
    """Applied-message records and the outbox of what they caused."""

    def __init__(self, store: Store, publisher: Publisher, clock: Clock) -> None:
        self._store = store
        self._col = store[COLLECTION]
        self._publisher = publisher
        self._clock = clock
        self._unmarked: set[str] = set()  # published, not yet marked so in the store
        self._found_unpublished: set[str] = set()  # swept entries a message found unpublished (`to_publish_again`)
        self._marker: asyncio.Task[None] | None = None
        self.refused = 0  # entries the sweeper gave up because the server refused them (counted by the service)

    async def ensure_indexes(self) -> None:
        """Index the unpublished entries the sweeper looks for: a single-field index, which both stores answer
        an equality on without a scan (nx-27017 scans for a range, and for an equality on the first field of a
        compound index: 24 ms a sweep at 30,000 entries, every 5 s in every service, against under 1 ms)."""
        await self._col.create_index([("published", ASCENDING)])
        # The compound index earlier versions made: one less to keep.
        await drop_index_on(self._col, [("published", ASCENDING), ("at", ASCENDING)])

    async def backfill_moments(self, consumers: Sequence[str]) -> int:
        """Give `at_s` to the entries keyed `<name>:...` (a consumer's applied messages, or a service's own claims
        such as dispatch's `timer`) that a build before retention wrote without it (else kept for good); returns
        how many. The once-per-period claims are keyed otherwise and stay as they are."""
        return await date_older_entries(self._col, tuple(f"{name}:" for name in consumers))

    async def seen(self, keys: Iterable[str], session: AsyncClientSession | None = None) -> dict[str, dict[str, Any]]:
        """The documents of keys already applied (inside the caller's transaction when a session is given)."""
        ids = list(keys)
        if not ids:
            return {}
        return {d["_id"]: d async for d in self._col.find({"_id": {"$in": ids}}, session=session)}

    async def record(self, session: AsyncClientSession, entries: Sequence[tuple[str, Sequence[Outgoing]]]) -> None:
        """Record applied keys with their events, inside the caller's transaction."""
        if entries:
            writes = self._store.writes()
            self.add(writes, entries)
            await self._store.write_together(writes, session)

    def add(
        self,
        writes: Writes,
        entries: Sequence[tuple[str, Sequence[Outgoing]]],
        *,
        swept: bool = True,
        seqs: Sequence[int | None] = (),
    ) -> None:
        """Add the entries of applied keys to a batch's writes (sent in its transaction with its effects).

        `swept=False` for consumed messages, with their stream sequences (`seqs`, in the order of `entries`): no
        mark and no sweep, their redelivery publishes what they caused again until they are acknowledged
        (`to_publish_again`)."""
        if entries:
            now = self._clock.now()
            at = list(seqs) + [None] * (len(entries) - len(seqs))
            writes.insert(
                COLLECTION, [_doc(k, out, now, swept=swept, seq=q) for (k, out), q in zip(entries, at, strict=True)]
            )

    async def claim(self, key: str, out: Sequence[Outgoing], session: AsyncClientSession | None = None) -> bool:
        """Record a key once; False if it was claimed before (by this or another instance).

        Kept for good, past any horizon: such a claim says that something due once per period (a week's bulletin,
        a period's ranking) was done, which a later look for what is due relies on; there are few of them.
        Without a session it waits for an open transaction, as `claim_many` does: a claim lost with another's
        transaction is made again, and its events published again under new ids."""
        doc = _doc(key, out, self._clock.now(), expires=False)
        try:
            if session is not None:
                await self._col.insert_one(doc, session=session)
                return True
            async with self._store.outside_transactions():
                await self._col.insert_one(doc)
            return True
        except DuplicateKeyError:
            return False

    async def claim_many(self, entries: Sequence[tuple[str, Sequence[Outgoing]]]) -> list[tuple[str, list[Outgoing]]]:
        """Record keys once each (one unordered insert); returns what to publish now: the entries claimed here,
        and those claimed before (a retried record) whose events are still unpublished (the bus drops the copy
        by message id)."""
        if not entries:
            return []
        now = self._clock.now()
        taken: set[str] = set()
        try:
            async with self._store.outside_transactions():  # a claim lost with another's transaction repeats
                await self._col.insert_many([_doc(k, out, now) for k, out in entries], ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            taken = {entries[e["index"]][0] for e in errors}
        fresh = [(k, list(out)) for k, out in entries if k not in taken]
        earlier = await self.seen(taken)
        return fresh + [(k, outgoing_of(d)) for k, d in earlier.items() if not self.published(d)]

    def to_publish_again(self, doc: dict[str, Any], *, redelivered: bool, seq: int | None = None) -> list[Outgoing]:
        """The events a message found applied must publish again before it is acknowledged.

        A swept entry says whether they went out. A consumed message's entry does not: a message acknowledged
        only after publishing, JetStream's redelivery of it may be the only one to publish them (a crash after the
        commit), so a redelivery publishes them again, and the bus drops the copy within its duplicate window,
        the consumers' ledgers and guards after it. A redelivery is told by the stream sequence the entry keeps
        (a broker killed before it saved its delivery counts hands an unacknowledged message out again as a first
        delivery), or by the count where the sequence is unknown. Another message with the same id (a producer's
        resend, a re-drive) publishes nothing: the original, if unacknowledged, comes back itself."""
        if "published" in doc:
            if self.published(doc):
                return []
            self._found_unpublished.add(doc["_id"])  # marked once out, though published for a message
            return outgoing_of(doc)
        return outgoing_of(doc) if redelivery_of(doc, redelivered=redelivered, seq=seq) else []

    def published(self, doc: dict[str, Any]) -> bool:
        """Whether the events of a ledger document have gone out (marked, or about to be by this process)."""
        return bool(doc.get("published")) or doc["_id"] in self._unmarked

    async def publish(
        self, entries: Sequence[tuple[str, Sequence[Outgoing]]], *, mark_now: bool = False, marks: bool = True
    ) -> None:
        """Publish the events of entries; they are marked published a moment later, together with others
        (`mark_now`: before returning; `marks=False`: only those a sweeper watches, for a consumer's entries)."""
        pending = [(k, out) for k, out in entries if out]
        if not pending:
            return
        await self._publisher.send(o for _, out in pending for o in out)
        if not marks:
            pending = [(k, out) for k, out in pending if k in self._found_unpublished]
            self._found_unpublished.difference_update(k for k, _ in pending)
            if not pending:
                return
        self._unmarked.update(k for k, _ in pending)
        if mark_now:
            await self.mark()
        elif self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._mark_soon(), name="ledger-marks")

    async def abandon(self, key: str, refusal: PublishDenied) -> None:
        """Give up publishing an entry the server refuses (a permission: no retry can succeed); the refusal is kept
        on it and the sweeper leaves it."""
        await self._col.update_one({"_id": key}, {"$set": {"published": True, "refused": str(refusal)}})

    async def mark(self) -> None:
        """Mark what this process published in one update (those published meanwhile wait for the next)."""
        keys = sorted(self._unmarked)
        if keys:
            await self._col.update_many({"_id": {"$in": keys}}, {"$set": {"published": True}})
            self._unmarked.difference_update(keys)

    async def _mark_soon(self) -> None:
        while self._unmarked:
            await asyncio.sleep(MARK_AFTER_S)
            try:
                await self.mark()
            except Exception as exc:  # the store away: kept in memory for the next try (or the sweeper)
                log.debug("published entries not marked yet: %s", exc)

    async def close(self) -> None:
        """Mark what is still unmarked (a service stopping); what fails here is left to the sweeper."""
        if self._marker is not None:
            self._marker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._marker
        with contextlib.suppress(Exception):
            await self.mark()

    async def sweep(self, older_than: timedelta = timedelta(seconds=15), limit: int = 500) -> int:
        """Publish entries a crash left unpublished; returns how many."""
        cutoff = self._clock.now() - older_than
        # Unpublished entries are few (those in flight, and what a crash left): select them by equality, then age.
        unpublished = [d async for d in self._col.find({"published": False}) if not self.published(d)]
        docs = sorted((d for d in unpublished if d["at"] < cutoff), key=lambda d: d["at"])[:limit]
        if not docs:
            return 0
        log.warning("re-publishing %d outbox entries left unpublished", len(docs))
        try:
            await self.publish([(d["_id"], outgoing_of(d)) for d in docs], mark_now=True)
        except PublishDenied:
            for d in docs:  # which of them the server refuses: those are given up, the rest go out
                try:
                    await self.publish([(d["_id"], outgoing_of(d))], mark_now=True)
                except PublishDenied as exc:
                    log.error("outbox entry %s given up: %s", d["_id"], exc)
                    await self.abandon(d["_id"], exc)
                    self.refused += 1
        return len(docs)


async def date_older_entries(col: Any, prefixes: tuple[str, ...]) -> int:
    """Give `at_s`, from `at`, to the ledger entries whose key starts with one of `prefixes` and that a build
    before retention wrote without it; returns how many. One query reading the collection once (a range on `_id`
    is no cheaper: nx-27017 reads the whole collection for each page of one, 0.8 s at 100,000 entries)."""

    async def moves() -> AsyncIterator[UpdateOne]:
        async for d in col.find({AT_S: {"$exists": False}}, {"at": 1}):
            if str(d["_id"]).startswith(prefixes) and isinstance(d.get("at"), datetime):
                yield UpdateOne({"_id": d["_id"], AT_S: {"$exists": False}}, {"$set": {AT_S: d["at"].timestamp()}})

    return await update_in_chunks(col, moves())
