"""Per-recipient rate limits: a token bucket per (contact, channel) kept in the store.

The bucket lives in the `rate_buckets` collection, not in memory, so the limit holds however many notify instances
run: each take is a compare-and-set (a conditional replace) on the bucket's version (`v`); an instance that loses
the race re-reads and tries again. One document per bucket keyed by `_id`; no dotted paths, no transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.notify.policy import refill, wait_for_token
from xiuhua.city.alerts import RateLimit

RATE_BUCKETS = "rate_buckets"


class TokenBuckets:
    """Token buckets in a collection, safe across instances."""

    def __init__(self, col: Any, limit: RateLimit, tries: int = 8) -> None:
        self.col, self.limit, self.tries = col, limit, tries

    async def take(self, key: str, now: datetime, n: int = 1) -> tuple[int, float]:
        """Take up to `n` tokens at once: how many were taken and, when fewer than `n`, the seconds until the
        next one is there."""
        cap = self.limit.capacity
        for _ in range(self.tries):
            doc = await self.col.find_one({"_id": key})
            if doc is None:
                taken = min(n, cap)
                try:
                    await self.col.insert_one({"_id": key, "tokens": float(cap - taken), "at": now, "v": 1})
                except DuplicateKeyError:
                    continue  # another instance created it first: take from it
                return taken, self._wait(taken, n, float(cap - taken))
            at = doc["at"]
            tokens = refill(float(doc["tokens"]), at, now, self.limit)
            taken = min(n, int(tokens))
            if taken == 0:
                return 0, wait_for_token(tokens, self.limit)
            res = await self.col.replace_one(
                {"_id": key, "v": doc["v"]},
                # `at` never moves back: a slower clock on another instance must not mint tokens twice.
                # A whole-document replace, not `$set`: nx-27017 stores a `$set` datetime as text.
                {"tokens": tokens - taken, "at": max(at, now), "v": doc["v"] + 1},
            )
            if res.modified_count == 1:
                return taken, self._wait(taken, n, tokens - taken)
        return 0, wait_for_token(0.0, self.limit) / 4  # heavy contention: come back a little later

    def _wait(self, taken: int, n: int, left: float) -> float:
        return 0.0 if taken == n else wait_for_token(left, self.limit)
