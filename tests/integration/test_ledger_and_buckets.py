"""Two store primitives the delivery worker uses per recipient and round, on the real store: several tokens of a
rate bucket in one compare-and-set, and several ledger claims in one insert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.cases import CaseDispatched
from services.notify.ratelimit import TokenBuckets
from xiuhua.bus import Outgoing
from xiuhua.city.alerts import RateLimit
from xiuhua.clock import FrozenClock
from xiuhua.ledger import Ledger
from xiuhua.store import Store

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


class _NoBus:
    async def send(self, outgoing: object) -> None:
        for _ in outgoing:  # type: ignore[attr-defined]
            pass


async def test_a_bucket_gives_up_to_n_tokens_and_says_when_the_next_is_due(settings) -> None:
    store = Store(settings.mongo_url or "", settings.database("probe"))
    try:
        buckets = TokenBuckets(store["rate_buckets"], RateLimit(capacity=3, per_minute=6))
        assert await buckets.take("c:file", T0, 5) == (3, 10.0)  # the burst, then one every 10 s
        assert await buckets.take("c:file", T0 + timedelta(seconds=5), 1) == (0, 5.0)
        assert await buckets.take("c:file", T0 + timedelta(seconds=25), 4) == (2, 5.0)  # 2.5 refilled
        assert await buckets.take("c:file", T0 + timedelta(seconds=30), 1) == (1, 0.0)
        assert await buckets.take("other:file", T0, 1) == (1, 0.0)  # per recipient and channel
    finally:
        await store.close()


async def test_claims_in_one_insert_return_what_is_still_to_publish(settings) -> None:
    store = Store(settings.mongo_url or "", settings.database("probe"))
    try:
        ledger = Ledger(store, _NoBus(), FrozenClock(T0))  # type: ignore[arg-type]
        base = CaseDispatched.model_validate(CaseDispatched.example())
        a, b, c = (Outgoing.of(base.model_copy(update={"event_id": f"e-{k}"})) for k in "abc")
        assert await ledger.claim_many([("k:a", [a])]) == [("k:a", [a])]
        await ledger.publish([("k:b", [b])])  # not claimed: publishing marks nothing
        # A retried record: k:a claimed before and still unpublished comes back to publish; k:b, k:c are new.
        again = await ledger.claim_many([("k:a", [a]), ("k:b", [b]), ("k:c", [c])])
        assert sorted(k for k, _ in again) == ["k:a", "k:b", "k:c"]
        await ledger.publish(again)
        assert await ledger.claim_many([("k:a", [a]), ("k:c", [c])]) == []  # published: nothing more to send
    finally:
        await store.close()
