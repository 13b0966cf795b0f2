"""The purge every service runs (保存期限): documents past the city's horizon go, by a range on a number.

Each retained collection keeps beside its date the same moment in seconds since the epoch, under a single-field
index: nx-27017 answers a range on such a number from the index (a TTL index would purge with a range on a date,
which it answers by reading the whole collection, before every find: docs/decisions/0005-no-ttl-indexes.md),
MongoDB natively. The job reads the ids past the horizon oldest first, skips what a rule keeps whatever its age
(an outbox entry not yet published), and deletes them by `_id` in chunks, reading at most `most` a run so that a
first run over years of history does not hold the store for long; the next run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pymongo import ASCENDING

from xiuhua.city.retention import LONGEST_DUPLICATE_WINDOW_S, RetentionFile
from xiuhua.clock import Clock
from xiuhua.store import Store

log = logging.getLogger("xiuhua.retention")

CHUNK = 500  # ids per delete command
MOST_PER_RUN = 20_000  # documents one run reads at most per collection (the next run goes on)
Horizon = Literal["ledger", "raw_reports", "closed_cases", "deliveries", "telemetry"]
NAK_BACKOFF_CAP_S = 30.0  # the longest a message handed back for a retry waits (`xiuhua.consumer.backoff`'s cap)
AT_S = "at_s"  # a record's `at` in seconds since the epoch, where the purge ranges over when it was written


def dated(at: datetime) -> dict[str, Any]:
    """A record's `at` and, beside it, the same moment in seconds (`at_s`) that the purge ranges over."""
    return {"at": at, AT_S: at.timestamp()}


@dataclass(frozen=True)
class Retained:
    """A collection whose documents go once `field` (seconds since the epoch) is older than a horizon."""

    collection: str
    field: str
    horizon: Horizon  # the RetentionFile field that sets it
    keep: Callable[[Mapping[str, Any]], bool] | None = None  # kept whatever its age (reads `keep_fields`)
    keep_fields: tuple[str, ...] = ()
    # Kept at least as long as this stream keeps a message (its max age): for what a replay of the stream
    # needs beside it, whatever shorter horizon the city sets.
    at_least_stream: str | None = None


def cutoff(now_s: float, horizon_s: float) -> float:
    """The oldest moment kept: a document whose field is below it is past the horizon; one at it is kept."""
    return now_s - horizon_s


def horizon_s(policy: RetentionFile, r: Retained) -> float:
    """How long the city keeps `r`: its horizon, or its stream's max age where that is longer."""
    own = float(getattr(policy, r.horizon))
    return max(own, policy.stream_ages()[r.at_least_stream]) if r.at_least_stream else own


def shortest_ledger_horizon(ack_wait_s: float) -> float:
    """The least a ledger entry must live: a copy of its message can still come as long as the bus drops copies
    by id (the duplicate window) plus the wait before JetStream redelivers one whose acknowledgement was lost
    (the ack wait) or that was handed back for a retry (the back-off cap)."""
    return LONGEST_DUPLICATE_WINDOW_S + max(ack_wait_s, NAK_BACKOFF_CAP_S)


def check_ledger_horizon(policy: RetentionFile, ack_wait_s: float, where: str) -> None:
    """Refuse a ledger horizon that would let a redelivered or re-published copy be applied twice."""
    least = shortest_ledger_horizon(ack_wait_s)
    if policy.ledger <= least:
        raise ValueError(
            f"{where}: ledger: {policy.ledger:g} s is too short: a copy of an applied message may still arrive "
            f"{least:g} s after it (duplicate window {LONGEST_DUPLICATE_WINDOW_S:g} s + XIUHUA_ACK_WAIT "
            f"{ack_wait_s:g} s or the retry back-off's {NAK_BACKOFF_CAP_S:g} s)"
        )


async def ensure_indexes(store: Store, retained: Sequence[Retained]) -> None:
    """The single-field index each range is answered from."""
    for r in retained:
        await store[r.collection].create_index([(r.field, ASCENDING)])


async def purge(store: Store, r: Retained, before_s: float, *, most: int = MOST_PER_RUN, chunk: int = CHUNK) -> int:
    """Delete the documents of `r` whose field is below `before_s` (but those `r.keep` keeps); returns how many."""
    col = store[r.collection]
    projection = {f: 1 for f in (r.field, *r.keep_fields)}
    deleted = 0
    ids: list[Any] = []
    cursor = col.find({r.field: {"$lt": before_s}}, projection).sort(r.field, ASCENDING).limit(most)
    async for doc in cursor:
        if r.keep is not None and r.keep(doc):
            continue
        ids.append(doc["_id"])
        if len(ids) >= chunk:
            deleted += await _delete(col, r, ids, before_s)
            ids = []
    if ids:
        deleted += await _delete(col, r, ids, before_s)
    return deleted


async def _delete(col: Any, r: Retained, ids: list[Any], before_s: float) -> int:
    # By `_id` (an index on both stores), the range repeated: a document rewritten since it was read (a case
    # reopened) stays.
    res = await col.delete_many({"_id": {"$in": ids}, r.field: {"$lt": before_s}})
    return int(res.deleted_count)


class RetentionJob:
    """One service's purge: every retained collection against the city's horizons."""

    def __init__(
        self,
        store: Store,
        policy: RetentionFile,
        retained: Sequence[Retained],
        clock: Clock,
        *,
        on_deleted: Callable[[str, int], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.retained = list(retained)
        self._clock = clock
        self._on_deleted = on_deleted
        unknown: list[str] = sorted({r.horizon for r in self.retained} - set(RetentionFile.model_fields))
        unknown += sorted({r.at_least_stream for r in self.retained if r.at_least_stream} - set(policy.stream_ages()))
        if unknown:
            raise ValueError(f"no such retention horizon: {', '.join(unknown)}")

    def horizon_s(self, r: Retained) -> float:
        """The horizon the city sets for `r` (no shorter than its stream's age, where it names one)."""
        return horizon_s(self.policy, r)

    async def run(self) -> dict[str, int]:
        """Purge every retained collection once; returns the documents deleted by collection."""
        now = self._clock.now().timestamp()
        out: dict[str, int] = {}
        for r in self.retained:
            n = await purge(self.store, r, cutoff(now, self.horizon_s(r)))
            out[r.collection] = out.get(r.collection, 0) + n
            if n and self._on_deleted is not None:
                self._on_deleted(r.collection, n)
        if any(out.values()):
            log.info("retention: deleted %s", ", ".join(f"{c} {n}" for c, n in out.items() if n))
        return out
