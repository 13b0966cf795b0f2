"""A batch's writes sent together (`Store.write_together`) against the real store: one command where the server
takes MongoDB 8.0's client-level bulkWrite and it pays, one per collection otherwise, the same documents either way,
and a refused write takes the whole transaction with it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pymongo import monitoring

from tests.helpers import Commands, Started
from xiuhua.consumer import _duplicate_key
from xiuhua.observability import Metrics, StoreCommands
from xiuhua.store import COMBINED_PER_COMMAND_SAVED, Store, Writes


@pytest.fixture
async def store(mongo_url: str) -> AsyncIterator[tuple[Store, Commands, Metrics]]:
    name = f"writes_{uuid.uuid4().hex[:8]}"
    metrics = Metrics("test")
    commands = Commands(name)
    monitoring.register(commands)
    s = Store(mongo_url, name, listeners=[StoreCommands(metrics)], combine_writes=True)
    await s.ensure_collections(["a", "b", "c"])
    try:
        yield s, commands, metrics
    finally:
        commands.active = False
        await s.client.drop_database(name)
        await s.close()


def _batch(w: Writes, n: int = 1) -> None:
    w.insert("a", [{"_id": f"a{i}", "v": i} for i in range(n)])
    w.update("b", {"_id": "counter"}, {"$inc": {"n": n}}, upsert=True)
    w.replace("c", {"_id": "view"}, {"_id": "view", "last": n - 1}, upsert=True)
    w.insert("a", [{"_id": "a-last"}])  # back to a collection written before: order is kept


async def _contents(s: Store) -> dict[str, list[dict]]:
    return {c: [d async for d in s[c].find({}).sort("_id", 1)] for c in ("a", "b", "c")}


def _writes(commands: Commands) -> dict[tuple[str, str], int]:
    return {k: n for k, n in commands.by_collection.items() if k[0] != "find"}


async def test_a_small_batch_goes_in_one_command_a_large_one_per_collection(store) -> None:
    s, commands, metrics = store
    combined = await s.takes_client_bulk_write()
    w = s.writes()
    _batch(w)
    await s.in_transaction(lambda session: s.write_together(w, session))
    assert await _contents(s) == {
        "a": [{"_id": "a-last"}, {"_id": "a0", "v": 0}],
        "b": [{"_id": "counter", "n": 1}],
        "c": [{"_id": "view", "last": 0}],
    }
    if combined:
        assert _writes(commands) == {("bulkWrite", "a+b+c"): 1}
        # The documents a bulkWrite wrote still count by collection, as the benchmark reads them.
        docs = metrics.registry.get_sample_value
        assert docs("xiuhua_store_documents_total", {"service": "test", "command": "insert", "collection": "a"}) == 2
        assert docs("xiuhua_store_documents_total", {"service": "test", "command": "update", "collection": "c"}) == 1
    else:  # MongoDB before 8.0
        assert _writes(commands) == {("insert", "a"): 2, ("update", "b"): 1, ("update", "c"): 1}

    # Past the point where one command costs more than it saves (nx-27017 writes its documents one by one).
    commands.by_collection.clear()
    big = s.writes()
    _batch(big, n=COMBINED_PER_COMMAND_SAVED * 3)
    await s.client.drop_database(s.db.name)
    await s.ensure_collections(["a", "b", "c"])
    await s.in_transaction(lambda session: s.write_together(big, session))
    assert _writes(commands) == {("insert", "a"): 2, ("update", "b"): 1, ("update", "c"): 1}
    assert await s.count("a") == COMBINED_PER_COMMAND_SAVED * 3 + 1


async def test_a_transaction_begun_by_a_read_writes_per_collection(store) -> None:
    # nx-27017 refuses the client-level command (sent to `admin`) in a transaction begun on the database.
    s, commands, _ = store
    w = s.writes()
    _batch(w)

    async def work(session) -> None:
        assert await s["a"].find_one({"_id": "a0"}, session=session) is None
        await s.write_together(w, session)

    await s.in_transaction(work)
    assert _writes(commands) == {("insert", "a"): 2, ("update", "b"): 1, ("update", "c"): 1}
    assert len((await _contents(s))["a"]) == 2


async def test_the_fallback_for_servers_before_mongodb_8_writes_the_same(store) -> None:
    s, commands, _ = store
    s._client_bulk = False  # as a MongoDB 7 answers `hello`
    w = s.writes()
    _batch(w)
    await s.in_transaction(lambda session: s.write_together(w, session))
    assert _writes(commands) == {("insert", "a"): 2, ("update", "b"): 1, ("update", "c"): 1}
    assert (await _contents(s))["b"] == [{"_id": "counter", "n": 1}]


@pytest.mark.parametrize("client_bulk", [True, False])
async def test_a_key_taken_refuses_the_whole_transaction(store, client_bulk: bool) -> None:
    s, _, _ = store
    if client_bulk and not await s.takes_client_bulk_write():
        pytest.skip("the server has no client-level bulkWrite")
    s._client_bulk = client_bulk
    await s["a"].insert_one({"_id": "a0", "v": "before"})
    w = s.writes()
    _batch(w)  # inserts a0 again, after nothing: the first write is refused
    w2 = s.writes()
    w2.update("b", {"_id": "counter"}, {"$inc": {"n": 1}}, upsert=True)
    w2.insert("a", [{"_id": "a0"}])  # refused after a write to another collection
    for writes in (w, w2):
        with pytest.raises(Exception) as refused:
            await s.in_transaction(lambda session, writes=writes: s.write_together(writes, session))
        assert _duplicate_key(refused.value), refused.value  # the consumer applies the batch again, looking first
    assert await _contents(s) == {"a": [{"_id": "a0", "v": "before"}], "b": [], "c": []}


async def test_outside_a_transaction_the_command_keeps_the_databases_write_concern(mongo_url: str) -> None:
    name = f"writes_{uuid.uuid4().hex[:8]}"
    concern = Started(lambda e: dict(e.command.get("writeConcern") or {}) if e.command_name == "bulkWrite" else None)
    s = Store(mongo_url, name, write_concern="1", listeners=[concern], combine_writes=True)
    try:
        if not await s.takes_client_bulk_write():
            pytest.skip("the server has no client-level bulkWrite")
        w = s.writes()
        _batch(w)
        await s.write_together(w)  # outside any transaction (notify's plan of a failed delivery's notice)
        assert concern.seen == [{"w": 1}]
        assert len((await _contents(s))["a"]) == 2
    finally:
        await s.client.drop_database(name)
        await s.close()


async def test_counting_sends_no_aggregation(store: tuple[Store, Commands, Metrics], mongo_url: str) -> None:
    """`Store.count` asks the `count` command, which nx-27017 answers without the savepoint an aggregation opens on
    the connection a concurrent transaction shares."""
    s, _, _ = store
    sent = Started(lambda e: e.command_name if e.database_name == s.db.name else None)
    counting = Store(mongo_url, s.db.name, listeners=[sent])
    try:
        await s["a"].insert_many([{"_id": i, "k": i % 3} for i in range(10)])
        assert await counting.count("a", {"k": 1}) == 3
        assert await counting.count("a") == 10
        assert await counting.count("missing") == 0
        assert sent.seen == ["count", "count", "count"]
    finally:
        await counting.close()
