"""The store contract: what the services and the runtime ask of their store, run against every backend.

nx-27017 always; MongoDB under testcontainers where a Docker engine answers (skipped, saying why, elsewhere); and
`xiuhua.testing.MemoryStore`, the in-memory fake handler tests may use. Each test is one promise the code relies on
(named where it does): a backend that breaks one, or a fake that answers differently from the real stores, fails
here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import ASCENDING, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from xiuhua.retention import Retained, purge
from xiuhua.store import Store, backfill_seconds, drop_index_on, pages_in_order, update_in_chunks
from xiuhua.testing import MemoryStore

BACKENDS = ("nx-27017", "mongodb", "memory")
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """An empty database on each backend in turn (the embedded store with its transaction lock, as services run
    it)."""
    if request.param == "memory":
        yield MemoryStore("contract")
        return
    url = request.getfixturevalue("nx27017_url" if request.param == "nx-27017" else "docker_mongo_url")
    name = f"contract_{uuid.uuid4().hex[:8]}"
    s = Store(url, name, tx_lock_dir=tmp_path / "locks" if request.param == "nx-27017" else None)
    await s.ensure_collections(["a", "b"])
    try:
        yield s
    finally:
        await s.client.drop_database(name)
        await s.close()


async def _all(col: Any, query: dict[str, Any] | None = None, projection: dict[str, Any] | None = None) -> list:
    return [d async for d in col.find(query or {}, projection).sort("_id", ASCENDING)]


# --- inserts and keys -------------------------------------------------------------------------------------------


async def test_a_document_reads_back_as_written_dates_with_their_zone(store) -> None:
    doc = {"_id": "C-1", "n": 3, "x": 1.5, "at": T0, "tags": ["a", "b"], "sub": {"k": "v"}, "none": None}
    await store["a"].insert_one(doc)
    assert await store["a"].find_one({"_id": "C-1"}) == doc
    assert (await store["a"].find_one({"_id": "C-1"}))["at"].utcoffset() == timedelta(0)
    assert await store["a"].find_one({"_id": "C-2"}) is None


async def test_a_taken_id_is_refused_with_the_duplicate_key_code(store) -> None:
    await store["a"].insert_one({"_id": "k", "v": 1})
    with pytest.raises(DuplicateKeyError) as caught:
        await store["a"].insert_one({"_id": "k", "v": 2})
    assert caught.value.code == 11000
    assert await _all(store["a"]) == [{"_id": "k", "v": 1}]


async def test_an_unordered_insert_of_many_inserts_the_rest_and_names_each_taken_key(store) -> None:
    """`Ledger.claim_many`: which claims were taken before, by their index in the batch."""
    await store["a"].insert_many([{"_id": "k1"}, {"_id": "k3"}])
    with pytest.raises(BulkWriteError) as caught:
        await store["a"].insert_many([{"_id": k} for k in ("k1", "k2", "k3", "k4")], ordered=False)
    errors = caught.value.details["writeErrors"]
    assert sorted(e["index"] for e in errors) == [0, 2] and {e["code"] for e in errors} == {11000}
    assert [d["_id"] for d in await _all(store["a"])] == ["k1", "k2", "k3", "k4"]


async def test_an_ordered_bulk_write_stops_at_the_first_refused(store) -> None:
    await store["a"].insert_one({"_id": "k2"})
    with pytest.raises(BulkWriteError):
        await store["a"].bulk_write([InsertOne({"_id": "k1"}), InsertOne({"_id": "k2"}), InsertOne({"_id": "k3"})])
    assert [d["_id"] for d in await _all(store["a"])] == ["k1", "k2"]


# --- queries ----------------------------------------------------------------------------------------------------


async def _numbers(store: Any) -> None:
    await store["a"].insert_many(
        [{"_id": f"d{i}", "s": float(i), "kind": "odd" if i % 2 else "even"} for i in range(6)]
    )


async def test_ranges_on_a_number_include_or_exclude_their_bound(store) -> None:
    """The purge's `$lt` keeps a document at the cutoff; the timer scan's `$lte` takes one due now."""
    await _numbers(store)
    assert [d["_id"] for d in await _all(store["a"], {"s": {"$lt": 2.0}})] == ["d0", "d1"]
    assert [d["_id"] for d in await _all(store["a"], {"s": {"$lte": 2.0}})] == ["d0", "d1", "d2"]
    assert [d["_id"] for d in await _all(store["a"], {"s": {"$gte": 4.0}})] == ["d4", "d5"]
    assert [d["_id"] for d in await _all(store["a"], {"s": {"$gte": 1.0, "$lt": 3.0}})] == ["d1", "d2"]


async def test_sort_limit_and_projection(store) -> None:
    """`dispatch.store.due_case_ids`: the earliest due first, ids only."""
    await _numbers(store)
    found = [d async for d in store["a"].find({"s": {"$lte": 4.0}}, {"_id": 1}).sort("s", -1).limit(2)]
    assert found == [{"_id": "d4"}, {"_id": "d3"}]
    assert await store["a"].find_one({"_id": "d1"}, {"kind": 1}) == {"_id": "d1", "kind": "odd"}
    both = [d async for d in store["a"].find({}).sort([("kind", 1), ("s", -1)]).limit(3)]
    assert [d["_id"] for d in both] == ["d4", "d2", "d0"]


async def test_in_exists_and_or(store) -> None:
    await _numbers(store)
    await store["a"].insert_one({"_id": "no-s"})
    assert [d["_id"] for d in await _all(store["a"], {"_id": {"$in": ["d1", "d3", "zz"]}})] == ["d1", "d3"]
    assert [d["_id"] for d in await _all(store["a"], {"s": {"$exists": False}})] == ["no-s"]
    assert len(await _all(store["a"], {"s": {"$exists": True}})) == 6
    found = await _all(store["a"], {"$or": [{"_id": "no-s"}, {"s": {"$gte": 5.0}}]})
    assert [d["_id"] for d in found] == ["d5", "no-s"]


async def test_count_by_the_count_command(store) -> None:
    """`Store.count`: never an aggregation (the suite fails any test that sends one)."""
    await _numbers(store)
    assert await store.count("a") == 6
    assert await store.count("a", {"kind": "odd"}) == 3
    assert await store.count("b") == 0


# --- updates ----------------------------------------------------------------------------------------------------


async def test_upserts_by_id_create_then_increment(store) -> None:
    """The once-per-period counters and claims: `$inc` upserted by `_id`."""
    col = store["a"]
    first = await col.update_one({"_id": "u:1"}, {"$inc": {"n": 1}, "$set": {"at_s": 1.0}}, upsert=True)
    assert first.upserted_id == "u:1" and first.matched_count == 0
    again = await col.update_one({"_id": "u:1"}, {"$inc": {"n": 1}, "$set": {"at_s": 2.0}}, upsert=True)
    assert again.upserted_id is None and again.matched_count == 1 and again.modified_count == 1
    assert await col.find_one({"_id": "u:1"}) == {"_id": "u:1", "n": 2, "at_s": 2.0}


async def test_push_pull_and_unset(store) -> None:
    """intake's open-case keys: ids pushed (the first creating the list), pulled, and a field unset."""
    col = store["a"]
    await col.update_one({"_id": "key"}, {"$push": {"ids": "C-1"}}, upsert=True)
    await col.update_one({"_id": "key"}, {"$push": {"ids": "C-2"}}, upsert=True)
    await col.update_one({"_id": "key"}, {"$pull": {"ids": "C-1"}})
    assert await col.find_one({"_id": "key"}) == {"_id": "key", "ids": ["C-2"]}
    await col.insert_one({"_id": "case", "open": False, "closed_s": 5.0})
    await col.update_one({"_id": "case"}, {"$set": {"open": True}, "$unset": {"closed_s": ""}})
    assert await col.find_one({"_id": "case"}) == {"_id": "case", "open": True}


async def test_a_replace_conditional_on_the_version_has_one_winner(store) -> None:
    """`dispatch.store.replace_if_version`: the writer that read an older version matches nothing."""
    col = store["a"]
    await col.insert_one({"_id": "C-1", "version": 1, "state": "dispatched"})
    won = await col.replace_one({"_id": "C-1", "version": 1}, {"_id": "C-1", "version": 2, "state": "acknowledged"})
    lost = await col.replace_one({"_id": "C-1", "version": 1}, {"_id": "C-1", "version": 2, "state": "returned"})
    assert (won.matched_count, lost.matched_count) == (1, 0)
    assert (await col.find_one({"_id": "C-1"}))["state"] == "acknowledged"


async def test_update_many_counts_what_it_changed(store) -> None:
    """`Ledger.mark`: one update marks many entries published; one already marked is not counted."""
    await store["a"].insert_many([{"_id": "e1", "published": False}, {"_id": "e2", "published": True}])
    res = await store["a"].update_many({"_id": {"$in": ["e1", "e2", "e3"]}}, {"$set": {"published": True}})
    assert (res.matched_count, res.modified_count) == (2, 1)


async def test_a_bulk_write_of_every_kind_counts_each(store) -> None:
    await store["a"].insert_many([{"_id": "r", "v": 0}, {"_id": "gone"}, {"_id": "m1", "g": 1}, {"_id": "m2", "g": 1}])
    res = await store["a"].bulk_write(
        [
            UpdateOne({"_id": "new"}, {"$inc": {"n": 1}}, upsert=True),
            ReplaceOne({"_id": "r"}, {"_id": "r", "v": 1}),
            DeleteOne({"_id": "gone"}),
            UpdateMany({"g": 1}, {"$set": {"g": 2}}),
            InsertOne({"_id": "ins"}),
        ],
        ordered=True,
    )
    assert (res.upserted_count, res.matched_count, res.modified_count) == (1, 3, 3)
    assert (res.deleted_count, res.inserted_count) == (1, 1)
    assert await _all(store["a"]) == [
        {"_id": "ins"},
        {"_id": "m1", "g": 2},
        {"_id": "m2", "g": 2},
        {"_id": "new", "n": 1},
        {"_id": "r", "v": 1},
    ]


# --- deletes by a range on a number -----------------------------------------------------------------------------


async def test_the_purge_deletes_below_the_cutoff_by_id_in_chunks_and_keeps_what_a_rule_keeps(store) -> None:
    """`xiuhua.retention.purge` (保存期限): at the cutoff is kept, below goes, an unpublished entry stays."""
    docs = [{"_id": f"L{i}", "at_s": float(i), "published": i != 1} for i in range(6)]
    await store["a"].insert_many(docs)
    rule = Retained("a", "at_s", "ledger", keep=lambda d: not d.get("published"), keep_fields=("published",))
    assert await purge(store, rule, 4.0, chunk=2) == 3  # L0, L2, L3: L1 is unpublished, L4 is at the cutoff
    assert [d["_id"] for d in await _all(store["a"])] == ["L1", "L4", "L5"]
    assert await purge(store, rule, 4.0) == 0


async def test_a_range_delete_leaves_what_was_rewritten_past_it(store) -> None:
    """The purge repeats the range with the ids: a case reopened since it was read stays."""
    await store["a"].insert_many([{"_id": "C-1", "closed_s": 1.0}, {"_id": "C-2", "closed_s": 1.0}])
    await store["a"].update_one({"_id": "C-2"}, {"$set": {"closed_s": 9.0}})
    res = await store["a"].delete_many({"_id": {"$in": ["C-1", "C-2"]}, "closed_s": {"$lt": 5.0}})
    assert res.deleted_count == 1
    assert [d["_id"] for d in await _all(store["a"])] == ["C-2"]


# --- the runtime's passes over a collection ---------------------------------------------------------------------


async def test_backfill_gives_the_number_to_what_has_only_the_date(store) -> None:
    await store["a"].insert_many([{"_id": "old", "at": T0}, {"_id": "new", "at": T0, "at_s": 1.0}, {"_id": "none"}])
    assert await backfill_seconds(store["a"], "at", "at_s", batch=1) == 1
    assert (await store["a"].find_one({"_id": "old"}))["at_s"] == T0.timestamp()
    assert (await store["a"].find_one({"_id": "new"}))["at_s"] == 1.0


async def test_pages_in_order_read_each_document_once_across_equal_values(store) -> None:
    await store["a"].insert_many([{"_id": f"p{i}", "w": float(i // 3)} for i in range(8)])  # w: 0,0,0,1,1,1,2,2
    pages = [page async for page in pages_in_order(store["a"], "w", 0.0, 2.0, {"_id": 1}, batch=2)]
    ids = [d["_id"] for page in pages for d in page]
    assert sorted(ids) == [f"p{i}" for i in range(6)] and len(ids) == 6


async def test_updates_in_chunks_count_what_changed(store) -> None:
    await store["a"].insert_many([{"_id": f"c{i}", "v": 0} for i in range(5)])

    async def moves() -> AsyncIterator[UpdateOne]:
        for i in range(5):
            yield UpdateOne({"_id": f"c{i}"}, {"$set": {"v": 1 if i else 0}})

    assert await update_in_chunks(store["a"], moves(), chunk=2) == 4


# --- indexes ----------------------------------------------------------------------------------------------------


async def test_an_index_is_made_once_listed_and_dropped_by_its_keys(store) -> None:
    """`drop_index_on` finds an index by its fields whatever name the store gave it."""
    await store["a"].create_index([("status", ASCENDING), ("at", ASCENDING)])
    await store["a"].create_index([("status", ASCENDING), ("at", ASCENDING)])  # again: no error, no second one
    await store["a"].create_index("week")
    listed = [list(i["key"]) async for i in await store["a"].list_indexes()]
    assert sorted(listed) == [["_id"], ["status", "at"], ["week"]]
    assert await drop_index_on(store["a"], [("status", ASCENDING), ("at", ASCENDING)]) is True
    assert await drop_index_on(store["a"], [("status", ASCENDING), ("at", ASCENDING)]) is False
    assert sorted([list(i["key"]) async for i in await store["a"].list_indexes()]) == [["_id"], ["week"]]


# --- transactions and writes together ---------------------------------------------------------------------------


async def test_a_transaction_commits_its_writes_together(store) -> None:
    async def effect(session: Any) -> str:
        await store["a"].insert_one({"_id": "effect"}, session=session)
        await store["b"].insert_one({"_id": "ledger-entry"}, session=session)
        return "done"

    assert await store.in_transaction(effect) == "done"
    assert await _all(store["a"]) == [{"_id": "effect"}] and await _all(store["b"]) == [{"_id": "ledger-entry"}]


async def test_a_transaction_that_fails_leaves_nothing(store) -> None:
    """The effect and its ledger entry go together or not at all: a refused write takes the batch with it."""
    await store["b"].insert_one({"_id": "taken"})

    async def effect(session: Any) -> None:
        await store["a"].insert_one({"_id": "effect"}, session=session)
        await store["a"].update_one({"_id": "n"}, {"$inc": {"n": 1}}, upsert=True, session=session)
        await store["b"].insert_one({"_id": "taken"}, session=session)

    with pytest.raises(DuplicateKeyError):
        await store.in_transaction(effect)
    assert await _all(store["a"]) == [] and await _all(store["b"]) == [{"_id": "taken"}]


async def test_writes_together_keep_their_order_across_collections(store) -> None:
    """A batch's writes (`Store.writes`, `Batch.later`): sent in order, in the batch's transaction."""
    w = store.writes()
    w.insert("a", [{"_id": "a1"}])
    w.update("b", {"_id": "counter"}, {"$inc": {"n": 2}}, upsert=True)
    w.replace("b", {"_id": "view"}, {"_id": "view", "last": 1}, upsert=True)
    w.insert("a", [{"_id": "a0"}])
    await store.in_transaction(lambda session: store.write_together(w, session))
    assert await _all(store["a"]) == [{"_id": "a0"}, {"_id": "a1"}]
    assert await _all(store["b"]) == [{"_id": "counter", "n": 2}, {"_id": "view", "last": 1}]
