"""Per-recipient rate limits: a token bucket per (contact, channel) kept in the store.

The bucket lives in the `rate_buckets` collection, not in memory, so the limit holds however many notify instances
run: each take is a compare-and-set (a conditional replace) on the bucket's version (`v`); an instance that loses
the race re-reads and tries again. One document per bucket keyed by `_id`; no dotted paths, no transaction.
`take_many` serves a worker round's recipients with one read and one bulk write; a replace names its writer
(`by`), so a bucket another instance moved in between is found and taken from again, one by one. A bucket asked
to `bundle` gives a single token when it is short of what was asked: the one a digest of them all is sent for.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pymongo import ReplaceOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.notify.policy import refill, wait_for_token
from xiuhua.city.alerts import RateLimit

RATE_BUCKETS = "rate_buckets"


class TokenBuckets:
    """Token buckets in a collection, safe across instances."""

    def __init__(self, col: Any, limit: RateLimit, tries: int = 8) -> None:
        self.col, self.limit, self.tries = col, limit, tries

    async def take(self, key: str, now: datetime, n: int = 1, bundle: bool = False) -> tuple[int, float]:
        """Take up to `n` tokens at once (with `bundle`, one when fewer than `n` are there): how many were taken
        and, when fewer than `n`, the seconds until the next one is there."""
        for _ in range(self.tries):
            doc = await self.col.find_one({"_id": key})
            taken, wait, state = self._decide(doc, n, now, bundle)
            if state is None:
                return taken, wait
            if doc is None:
                try:
                    await self.col.insert_one({"_id": key, **state})
                except DuplicateKeyError:
                    continue  # another instance created it first: take from it
                return taken, wait
            res = await self.col.replace_one({"_id": key, "v": doc["v"]}, state)
            if res.modified_count == 1:
                return taken, wait
        return 0, wait_for_token(0.0, self.limit) / 4  # heavy contention: come back a little later

    async def take_many(
        self, wants: dict[str, int], now: datetime, bundle: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, tuple[int, float]]:
        """`take` for several buckets at once (key → tokens wanted; the keys in `bundle` bundled): one read, one
        insert of the new buckets and one bulk compare-and-set; the buckets another instance moved meanwhile are
        taken from again one by one."""
        docs = {d["_id"]: d async for d in self.col.find({"_id": {"$in": sorted(wants)}})}
        out: dict[str, tuple[int, float]] = {}
        new: list[dict[str, Any]] = []
        moves: list[ReplaceOne[Any]] = []
        moved: list[str] = []
        by = uuid.uuid4().hex  # names this take's writes: a bucket whose `by` is another's was lost in a race
        for key, n in wants.items():
            doc = docs.get(key)
            taken, wait, state = self._decide(doc, n, now, key in bundle)
            out[key] = (taken, wait)
            if state is None:
                continue
            if doc is None:
                new.append({"_id": key, **state, "by": by})
            else:
                moved.append(key)
                moves.append(ReplaceOne({"_id": key, "v": doc["v"]}, {**state, "by": by}))
        lost: set[str] = set()
        if new:
            try:
                await self.col.insert_many(new, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != 11000 for e in errors):
                    raise
                lost |= {new[e["index"]]["_id"] for e in errors}
        if moves:
            res = await self.col.bulk_write(moves, ordered=False)
            if res.modified_count < len(moves):
                found = self.col.find({"_id": {"$in": moved}}, {"by": 1})
                lost |= {d["_id"] async for d in found if d.get("by") != by}
        for key in sorted(lost):
            out[key] = await self.take(key, now, wants[key], key in bundle)
        return out

    def _decide(
        self, doc: dict[str, Any] | None, n: int, now: datetime, bundle: bool = False
    ) -> tuple[int, float, dict[str, Any] | None]:
        """What taking up to `n` tokens from a bucket as read (None: no bucket yet) gives: the tokens taken, the
        wait for the next one when short, and the bucket's next state to write (None: nothing to write)."""
        cap = self.limit.capacity
        if doc is None:
            taken = self._count(n, cap, bundle)
            return taken, self._wait(taken, n, float(cap - taken)), {"tokens": float(cap - taken), "at": now, "v": 1}
        at = doc["at"]
        tokens = refill(float(doc["tokens"]), at, now, self.limit)
        taken = self._count(n, int(tokens), bundle)
        if taken == 0:
            return 0, wait_for_token(tokens, self.limit), None
        # `at` never moves back: a slower clock on another instance must not mint tokens twice.
        # A whole-document replace, not `$set`: nx-27017 stores a `$set` datetime as text.
        return (
            taken,
            self._wait(taken, n, tokens - taken),
            {"tokens": tokens - taken, "at": max(at, now), "v": doc["v"] + 1},
        )

    @staticmethod
    def _count(n: int, whole: int, bundle: bool) -> int:
        """Tokens to take for `n` wanted from a bucket holding `whole` whole ones."""
        return 1 if bundle and 0 < whole < n else min(n, whole)

    def _wait(self, taken: int, n: int, left: float) -> float:
        return 0.0 if taken == n else wait_for_token(left, self.limit)
