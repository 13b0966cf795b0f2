"""Token buckets (令牌桶): the arithmetic every rate limit of the system uses, and a bounded in-memory keyed set.

A bucket holds at most `capacity` tokens and gains `per_minute` a minute; a message or request spends one. Notify
keeps its per-recipient buckets in the store (shared by its instances); the Open311 edge keeps its per-key and
per-address buckets in memory (`MemoryBuckets`), one set per intake instance.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import datetime
from typing import Protocol


class Rate(Protocol):
    """A bucket's size and refill rate."""

    @property
    def capacity(self) -> int: ...

    @property
    def per_minute(self) -> float: ...


def refill(tokens: float, last: datetime, now: datetime, rate: Rate) -> float:
    """Tokens in a bucket at `now`, given what it held at `last`."""
    elapsed = max(0.0, (now - last).total_seconds())
    return min(float(rate.capacity), tokens + elapsed * rate.per_minute / 60.0)


def wait_for_token(tokens: float, rate: Rate) -> float:
    """Seconds until a bucket holding `tokens` (< 1) holds one."""
    return max(0.0, (1.0 - tokens) * 60.0 / rate.per_minute)


def retry_after(seconds: float) -> int:
    """An HTTP `Retry-After` (whole seconds, at least 1) no earlier than a wait of `seconds`."""
    return max(1, math.ceil(seconds - 1e-9))


class MemoryBuckets:
    """Buckets by key in this process, at most `max_keys` of them: the least recently used one is forgotten first
    (a forgotten bucket comes back full, which is what an idle one would be by then)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, datetime]] = OrderedDict()  # key → (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def available(self, key: str, rate: Rate, now: datetime) -> float:
        """Tokens in the bucket `key` at `now` (a bucket never seen is full)."""
        held = self._buckets.get(key)
        return float(rate.capacity) if held is None else refill(held[0], held[1], now, rate)

    def spend(self, key: str, rate: Rate, now: datetime) -> None:
        """Take one token (the caller checked `available` ≥ 1)."""
        left = self.available(key, rate, now) - 1.0
        at = max(now, self._buckets[key][1]) if key in self._buckets else now  # time never runs back in a bucket
        self._buckets[key] = (left, at)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
