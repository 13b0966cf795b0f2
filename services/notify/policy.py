"""Delivery policies: back-off with jitter, quiet hours, expired claims; the token bucket's arithmetic is shared
(`xiuhua.token_bucket`). Pure."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from xiuhua.city.alerts import RetryPolicy
from xiuhua.token_bucket import refill, wait_for_token

__all__ = ["CLAIM_LEASE_S", "backoff_seconds", "claim_expired", "quiet_until", "refill", "wait_for_token"]

LEGACY_STALE = timedelta(minutes=5)  # claims written before leases existed (no `lease_s`)
CLAIM_LEASE_S = 10.0  # a claim not renewed for this long was left by a dead instance: taken up again


def claimed(doc: dict[str, Any], owner: str, now: datetime) -> dict[str, Any]:
    """The changes a claim of `owner` makes to a pending delivery: its attempt begun (pending → sending), with a
    lease."""
    return {
        "status": "sending",
        "claimed_at": now,
        "attempts": doc["attempts"] + 1,
        "owner": owner,
        "lease_s": now.timestamp() + CLAIM_LEASE_S,
    }


def unclaimed(doc: dict[str, Any]) -> dict[str, Any]:
    """The changes that give a claim up before its attempt was made (back to pending, the attempt not spent)."""
    return {"status": "pending", "attempts": doc["attempts"] - 1, "owner": None, "lease_s": None}


def claim_expired(claim: dict[str, Any], now: datetime) -> bool:
    """Whether a claim's owner stopped renewing it: its lease ran out (or, made before leases, it is old)."""
    lease = claim.get("lease_s")
    if lease is not None:
        return bool(lease < now.timestamp())
    claimed = claim.get("claimed_at")
    return "lease_s" not in claim and isinstance(claimed, datetime) and claimed < now - LEGACY_STALE


def backoff_seconds(attempts: int, policy: RetryPolicy, rnd: random.Random | None = None) -> float:
    """Delay after the n-th failed attempt: min(max_s, base_s·2^(n−1)), of which a `jitter` share is random.

    With jitter 0.5 the delay lies in [d/2, d]: retries of many deliveries that failed together spread out.
    """
    delay = min(policy.max_s, policy.base_s * 2 ** max(0, attempts - 1))
    r = (rnd or random).random()
    return delay * (1 - policy.jitter) + delay * policy.jitter * r


def _parse(hhmm: str) -> time:
    h, m = hhmm.split(":")
    return time(int(h), int(m))


def quiet_until(now: datetime, quiet_hours: str | None, tz: ZoneInfo) -> datetime | None:
    """When quiet hours (city time, e.g. 22:00-07:30) end, if `now` lies inside them; None otherwise."""
    if not quiet_hours:
        return None
    start_s, end_s = quiet_hours.split("-")
    start, end = _parse(start_s), _parse(end_s)
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if start == end:
        return None
    if start < end:  # same-day window, e.g. 12:00-14:00
        inside = start <= t < end
        end_day = local.date()
    else:  # across midnight, e.g. 22:00-07:30
        inside = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(now.tzinfo)
