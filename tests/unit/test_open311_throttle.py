"""Open311 rate limits: token buckets per api key and per client address, at their edges. Pure (a frozen clock)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, Counter

from services.intake.open311.definitions import (
    MethodRates,
    Open311Config,
    Rate,
    RateLimits,
    load_open311,
    resolve_limits,
)
from services.intake.open311.throttle import Throttle, Throttled
from xiuhua.city import load_city
from xiuhua.city.loading import CityDataError
from xiuhua.clock import FrozenClock
from xiuhua.settings import DEMO_CITY
from xiuhua.token_bucket import MemoryBuckets, retry_after

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
KEY, OTHER, SERVER = "k" * 16, "o" * 16, "s" * 16
ADDR = "203.0.113.7"


def throttle(clock: FrozenClock, max_addresses: int = 100) -> tuple[Throttle, Counter]:
    """Key: POST 3 at once, 6 a minute (a token every 10 s); address: POST 5 at once, 60 a minute. SERVER sets its
    own per-address rates."""
    defaults = RateLimits(
        per_key=MethodRates(post=Rate(capacity=3, per_minute=6), get=Rate(capacity=2, per_minute=6)),
        per_address=MethodRates(post=Rate(capacity=5, per_minute=60)),
    )
    own = RateLimits(per_address=MethodRates(post=Rate(capacity=50, per_minute=600)))
    config = Open311Config(
        jurisdiction_id=None,
        api_keys={KEY: "app", OTHER: "other", SERVER: "server"},
        services={},
        limits={KEY: resolve_limits(defaults), OTHER: resolve_limits(defaults), SERVER: resolve_limits(defaults, own)},
        anonymous=resolve_limits(defaults),
    )
    refused = Counter("throttled", "t", ["scope", "method", "client"], registry=CollectorRegistry())
    return Throttle(config, clock, refused, max_addresses=max_addresses), refused


def admitted(t: Throttle, method: str = "POST", address: str = ADDR, key: str | None = KEY) -> int | None:
    """None if admitted, else the Retry-After."""
    try:
        t.admit(method, address, key)
    except Throttled as exc:
        assert exc.status == 429 and exc.headers == {
            "Retry-After": str(exc.retry_after),
            "Access-Control-Expose-Headers": "Retry-After",
        }
        return exc.retry_after
    return None


def test_a_key_gets_exactly_its_capacity_then_429_until_the_next_token():
    clock = FrozenClock(T0)
    t, refused = throttle(clock)
    assert [admitted(t) for _ in range(3)] == [None, None, None]  # exactly at the capacity: all admitted
    assert admitted(t) == 10  # one past: refused, a token every 10 s
    clock.advance(timedelta(seconds=9.5))
    assert admitted(t) == 1  # half a second short: come back in (rounded up) one second
    clock.advance(timedelta(seconds=0.5))
    assert admitted(t) is None  # exactly at the refill
    assert admitted(t) == 10
    assert refused.labels("key", "POST", "app")._value.get() == 3
    assert refused.labels("address", "POST", "app")._value.get() == 0


def test_the_description_names_the_bucket_and_its_limits():
    t, _ = throttle(FrozenClock(T0))
    for _ in range(3):
        t.admit("POST", ADDR, KEY)
    with pytest.raises(Throttled) as exc:
        t.admit("POST", ADDR, KEY)
    assert exc.value.description == (
        "too many POST requests from this api_key: at most 3 at once and 6 a minute; retry after 10 s"
    )


def test_an_empty_address_refuses_without_spending_the_keys_token_and_the_other_way_round():
    clock = FrozenClock(T0)
    t, refused = throttle(clock)
    # The address empties first (five POSTs, keyless), then a keyed POST from it: refused, the key keeps its tokens.
    assert [admitted(t, key=None) for _ in range(5)] == [None] * 5
    assert admitted(t) == 1
    assert refused.labels("address", "POST", "app")._value.get() == 1
    assert [admitted(t, address=f"198.51.100.{i}") for i in range(3)] == [None] * 3  # all three key tokens left
    # The key empties first, then its next POST from a fresh address: refused, that address keeps its tokens.
    assert admitted(t, address="192.0.2.1") == 10
    assert [admitted(t, address="192.0.2.1", key=OTHER) for _ in range(3)] == [None] * 3
    assert [admitted(t, address="192.0.2.1", key=None) for _ in range(2)] == [None] * 2  # 5 − 3: nothing spent above


def test_the_longer_wait_of_two_empty_buckets_is_the_retry_after():
    clock = FrozenClock(T0)
    t, refused = throttle(clock)
    for _ in range(3):
        t.admit("POST", ADDR, KEY)
    for _ in range(2):
        t.admit("POST", ADDR, None)  # the address: 5 spent
    assert admitted(t) == 10  # address 1 s, key 10 s
    assert refused.labels("address", "POST", "app")._value.get() == 1
    assert refused.labels("key", "POST", "app")._value.get() == 1


def test_post_and_get_have_buckets_of_their_own_and_an_unknown_key_is_an_address_only():
    clock = FrozenClock(T0)
    t, _ = throttle(clock)
    for _ in range(3):
        t.admit("POST", ADDR, KEY)
    assert [admitted(t, "GET") for _ in range(2)] == [None, None]
    assert admitted(t, "GET") == 10
    assert admitted(t, key="not-a-key-at-all") is None  # no key bucket: the address's (2 of 5 left)
    assert len(t.keys) == 2


def test_a_key_with_its_own_address_rates_has_its_own_address_buckets():
    clock = FrozenClock(T0)
    t, _ = throttle(clock)
    for _ in range(5):
        t.admit("POST", ADDR, None)  # the address's shared bucket is empty
    assert admitted(t) == 1
    assert [admitted(t, key=SERVER) for _ in range(3)] == [None] * 3  # the server's own: 50 at once
    assert admitted(t, key=SERVER) == 10  # ... and its key bucket still holds


def test_address_buckets_are_bounded_the_idlest_forgotten_first():
    clock = FrozenClock(T0)
    t, _ = throttle(clock, max_addresses=3)
    for i in range(4):
        t.admit("POST", f"10.0.0.{i}", None)
    t.admit("POST", "10.0.0.1", None)  # touched again: the idlest is now 10.0.0.2
    t.admit("POST", "10.0.0.4", None)
    assert len(t.addresses) == 3
    rate = t.config.anonymous.rates[("per_address", "post")]
    assert t.addresses.available("post:10.0.0.2", rate, clock.now()) == 5.0  # forgotten: full again
    assert t.addresses.available("post:10.0.0.1", rate, clock.now()) == 3.0


def test_a_bucket_never_gains_from_a_clock_that_steps_back():
    clock = FrozenClock(T0)
    buckets, rate = MemoryBuckets(), Rate(capacity=2, per_minute=6)
    buckets.spend("a", rate, T0)
    buckets.spend("a", rate, T0 - timedelta(minutes=5))
    assert buckets.available("a", rate, clock.now()) == 0.0


@pytest.mark.parametrize(("wait", "header"), [(0.0, 1), (0.2, 1), (1.0, 1), (6.0, 6), (6.0001, 7)])
def test_retry_after_is_whole_seconds_never_early(wait, header):
    assert retry_after(wait) == header


def test_open311_yaml_rates_per_key_over_the_files_over_the_built_in_ones(tmp_path):
    folder = tmp_path / "city"
    shutil.copytree(DEMO_CITY, folder)
    (folder / "open311.yaml").write_text(
        "rate_limits:\n"
        "  per_key: {post: {capacity: 7, per_minute: 70}}\n"
        "api_keys:\n"
        "  - {client: a, key: aaaaaaaaaaaaaaaa, rate_limits: {per_key: {get: {capacity: 9, per_minute: 90}}}}\n"
        "  - {client: b, key: bbbbbbbbbbbbbbbb}\n",
        encoding="utf-8",
    )
    config = load_open311(load_city(folder), ("eeeeeeeeeeeeeeee",))
    a, b, env = (config.limits[k * 16].rates for k in "abe")
    assert (
        a[("per_key", "post")] == b[("per_key", "post")] == env[("per_key", "post")] == Rate(capacity=7, per_minute=70)
    )
    assert a[("per_key", "get")] == Rate(capacity=9, per_minute=90)
    assert b[("per_key", "get")] == Rate(capacity=120, per_minute=1200)  # built in
    assert b[("per_address", "post")] == Rate(capacity=20, per_minute=20)


def test_a_bad_rate_in_open311_yaml_names_file_and_line(tmp_path):
    folder = tmp_path / "city"
    shutil.copytree(DEMO_CITY, folder)
    (folder / "open311.yaml").write_text(
        "jurisdiction_id: x\nrate_limits:\n  per_address:\n    post: {capacity: 0, per_minute: 6}\n", encoding="utf-8"
    )
    with pytest.raises(CityDataError) as exc:
        load_open311(load_city(folder))
    assert "open311.yaml:4" in str(exc.value) and "capacity" in str(exc.value)
