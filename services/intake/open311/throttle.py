"""Rate limits of the Open311 edge (限流): a token bucket per api key and one per client address, POST and GET apart.

A request spends one token from its address's bucket and, when it carries a known api key, one from the key's;
if either is empty nothing is spent and the client gets 429 with `Retry-After` (whole seconds until both hold a
token) in the spec's error format. The buckets live in this intake instance's memory: with several instances
behind a balancer each one enforces the limits for what it serves. Address buckets are bounded (least recently
used forgotten first); key buckets are as many as the configured keys.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from services.intake.open311.definitions import Open311Config, Rate
from services.intake.open311.validation import Invalid
from xiuhua.clock import Clock
from xiuhua.token_bucket import MemoryBuckets, retry_after, wait_for_token

MAX_ADDRESSES = 100_000  # address buckets kept (a few MB); more clients than that and the idlest are forgotten


class Throttled(Invalid):
    """429: over a rate limit; `Retry-After` says when to come back."""

    def __init__(self, description: str, wait_s: float) -> None:
        super().__init__(429, description)
        self.retry_after = retry_after(wait_s)

    @property
    def headers(self) -> dict[str, str]:
        """The response headers this refusal adds (a citizens' web app on another origin may read Retry-After)."""
        return {"Retry-After": str(self.retry_after), "Access-Control-Expose-Headers": "Retry-After"}


def client_address(request: Request) -> str:
    """The caller's address as the server sees it (behind a reverse proxy, uvicorn takes it from
    X-Forwarded-For when the proxy is listed in FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


class Throttle:
    """The edge's buckets and the counter of what they refused."""

    def __init__(self, config: Open311Config, clock: Clock, refused: Any, max_addresses: int = MAX_ADDRESSES) -> None:
        self.config, self.clock, self.refused = config, clock, refused
        self.keys = MemoryBuckets(max_keys=max(1, 2 * len(config.api_keys)))
        self.addresses = MemoryBuckets(max_keys=max_addresses)

    def admit(self, method: str, address: str, key: str | None) -> None:
        """Spend a token for a request, or raise `Throttled` (nothing spent) when a bucket is empty."""
        m = "post" if method == "POST" else "get"
        client = self.config.api_keys.get(key) if key else None
        limits = self.config.limits.get(key, self.config.anonymous) if client and key else self.config.anonymous
        # A key that sets its own per-address rates (an app whose server posts for all its users) gets its own
        # address buckets: its traffic neither spends nor is held by the address's other callers.
        own = f"|{key}" if client and limits.own_address else ""
        spends: list[tuple[str, MemoryBuckets, str, Rate, str]] = [
            ("address", self.addresses, f"{m}:{address}{own}", limits.rates[("per_address", m)], "this address"),
        ]
        if client and key:
            spends.append(("key", self.keys, f"{m}:{key}", limits.rates[("per_key", m)], "this api_key"))
        now = self.clock.now()
        short = [
            (scope, wait_for_token(left, rate), rate, whose)
            for scope, buckets, bucket, rate, whose in spends
            if (left := buckets.available(bucket, rate, now)) < 1.0
        ]
        if short:
            for scope, *_ in short:
                self.refused.labels(scope, method, client or "-").inc()
            scope, wait, rate, whose = max(short, key=lambda s: s[1])
            raise Throttled(
                f"too many {method} requests from {whose}: at most {rate.capacity} at once and "
                f"{rate.per_minute:g} a minute; retry after {retry_after(wait)} s",
                wait,
            )
        for _, buckets, bucket, rate, _ in spends:
            buckets.spend(bucket, rate, now)
