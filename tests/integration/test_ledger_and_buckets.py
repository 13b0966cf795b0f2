"""Store primitives on the real store: several tokens of a rate bucket in one compare-and-set, several ledger claims
in one insert (the delivery worker's, per recipient and round), and published entries marked together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.cases import CaseDispatched
from services.notify.ratelimit import TokenBuckets
from tests.helpers import eventually
from tests.helpers.store_orphan import killed_inside_a_transaction
from xiuhua.bus import Outgoing
from xiuhua.city.alerts import RateLimit
from xiuhua.clock import FrozenClock
from xiuhua.ledger import Ledger
from xiuhua.store import Store

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


class _NoBus:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, outgoing: object) -> None:
        self.sent.extend(o.msg_id for o in outgoing)  # type: ignore[attr-defined]


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


class _Racing:
    """The bucket collection as one instance sees it while another takes a token right after its read."""

    def __init__(self, col: object, other: TokenBuckets) -> None:
        self.col, self.other, self.raced = col, other, False

    def __getattr__(self, name: str) -> object:
        return getattr(self.col, name)

    def find(self, *args: object, **kwargs: object) -> object:
        cursor = self.col.find(*args, **kwargs)  # type: ignore[attr-defined]
        if self.raced:
            return cursor
        self.raced = True

        async def read_then_race():  # type: ignore[no-untyped-def]
            docs = [d async for d in cursor]
            assert await self.other.take("a:file", T0, 1) == (1, 0.0)
            for d in docs:
                yield d

        return read_then_race()


async def test_several_buckets_in_one_take_and_a_lost_race_taken_again(settings) -> None:
    store = Store(settings.mongo_url or "", settings.database("probe"))
    try:
        limit = RateLimit(capacity=3, per_minute=6)
        other = TokenBuckets(store["rate_buckets"], limit)
        assert await other.take("a:file", T0, 1) == (1, 0.0)  # a holds 2
        buckets = TokenBuckets(_Racing(store["rate_buckets"], other), limit)
        # This one reads a at 2 tokens; the other takes one before this one writes: its write loses, and a is taken
        # from again (1 left, given), so a hands out its capacity and no more. b is new: the burst of 3 of 5.
        got = await buckets.take_many({"a:file": 2, "b:file": 5, "c:file": 1}, T0)
        assert got == {"a:file": (1, 10.0), "b:file": (3, 10.0), "c:file": (1, 0.0)}
        assert await buckets.take_many({"a:file": 1, "b:file": 1}, T0 + timedelta(seconds=10)) == {
            "a:file": (1, 0.0),
            "b:file": (1, 0.0),
        }  # one token each 10 s later
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


async def test_a_claim_made_while_a_dead_clients_transaction_is_open_stays_claimed(settings) -> None:
    # A scoring instance SIGKILLed inside a batch leaves its transaction open; the other instance's ranking close
    # claims the period meanwhile. Rolled back with the orphan, the claim would be made and published again.
    locks = settings.store_tx_lock_dir
    assert settings.mongo_url is not None and locks is not None
    store = Store(settings.mongo_url, settings.database("probe"), tx_lock_dir=locks)
    try:
        await store.ensure_collections(["cases", "ledger"])
        ledger = Ledger(store, _NoBus(), FrozenClock(T0))  # type: ignore[arg-type]
        await killed_inside_a_transaction(settings.mongo_url, locks, store.db.name)
        assert await ledger.claim("ranking:unit:2026-W47", []) is True
        await store.end_orphaned_transaction()  # as the periodic check or the next batch would
        assert await ledger.claim("ranking:unit:2026-W47", []) is False
    finally:
        await store.close()


async def test_published_entries_are_marked_together_and_never_swept_again(settings) -> None:
    store = Store(settings.mongo_url or "", settings.database("probe"))
    try:
        await store.ensure_collections(["ledger"])
        clock = FrozenClock(T0)
        bus = _NoBus()
        ledger = Ledger(store, bus, clock)  # type: ignore[arg-type]
        base = CaseDispatched.model_validate(CaseDispatched.example())
        x, y, z = (Outgoing.of(base.model_copy(update={"event_id": f"m-{k}"})) for k in "xyz")
        await store.in_transaction(lambda s: ledger.record(s, [("m:x", [x]), ("m:y", [y]), ("m:z", [z])]))

        async def marked() -> dict[str, bool]:
            return {d["_id"]: d["published"] async for d in store["ledger"].find({"_id": {"$regex": "^m:"}})}

        async def all_marked() -> bool:
            return all((await marked()).values())

        await ledger.publish([("m:x", [x])])
        await ledger.publish([("m:y", [y])])
        # Gone out, whether or not the mark is written yet: the sweeper leaves them, a claim does not return them.
        clock.advance(timedelta(minutes=1))
        assert await ledger.sweep() == 1  # m:z only: committed, never published
        assert bus.sent == ["m-x", "m-y", "m-z"]
        assert await ledger.claim_many([("m:x", [x])]) == []
        assert await eventually(all_marked, timeout=5)
        assert await ledger.sweep() == 0

        # A stopping service marks what it published before it goes.
        w = Outgoing.of(base.model_copy(update={"event_id": "m-w"}))
        await store.in_transaction(lambda s: ledger.record(s, [("m:w", [w])]))
        await ledger.publish([("m:w", [w])])
        await ledger.close()
        assert (await marked())["m:w"]  # (nx-27017 answers a `$set` true as 1)
    finally:
        await store.close()
