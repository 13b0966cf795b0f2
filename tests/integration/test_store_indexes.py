"""Indexes an earlier build made are dropped on the real store, whatever their directions (`drop_index_on`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import OperationFailure

from xiuhua.store import Store, drop_index_on


@pytest.fixture
async def store(mongo_url: str) -> AsyncIterator[Store]:
    name = f"indexes_{uuid.uuid4().hex[:8]}"
    s = Store(mongo_url, name)
    await s.ensure_collections(["c"])
    try:
        yield s
    finally:
        await s.client.drop_database(name)
        await s.close()


async def _fields(s: Store) -> list[list[str]]:
    return sorted([list(i["key"]) async for i in await s["c"].list_indexes()])


@pytest.mark.parametrize(
    "old",
    [
        [("status", ASCENDING), ("requested_datetime", DESCENDING)],  # nx-27017 refused to drop this by its pattern
        [("published", ASCENDING), ("at", ASCENDING)],
    ],
)
async def test_an_old_index_is_dropped_and_the_others_stay(store: Store, old: list[tuple[str, int]]) -> None:
    await store["c"].create_index(old)
    await store["c"].create_index([("kept", ASCENDING)])
    assert [f for f, _ in old] in await _fields(store)

    assert await drop_index_on(store["c"], old) is True
    assert await _fields(store) == [["_id"], ["kept"]]
    assert await drop_index_on(store["c"], old) is False  # gone: nothing to drop, no error
    assert await _fields(store) == [["_id"], ["kept"]]


class _Listed:
    """A collection as MongoDB lists its indexes: the directions as made, the conventional names."""

    def __init__(self, *indexes: dict) -> None:
        self.indexes = list(indexes)
        self.dropped: list[str] = []

    async def list_indexes(self) -> AsyncIterator[dict]:
        async def gen() -> AsyncIterator[dict]:
            for i in self.indexes:
                yield i

        return gen()

    async def drop_index(self, name: str) -> None:
        self.dropped.append(name)


async def test_on_mongodb_an_index_on_the_same_fields_in_other_directions_is_another_one() -> None:
    col = _Listed({"name": "_id_", "key": {"_id": 1}}, {"name": "a_1_b_1", "key": {"a": 1, "b": 1}})
    assert await drop_index_on(col, [("a", ASCENDING), ("b", DESCENDING)]) is False
    assert col.dropped == []
    col.indexes.append({"name": "a_1_b_-1", "key": {"a": 1, "b": -1}})
    assert await drop_index_on(col, [("a", ASCENDING), ("b", DESCENDING)]) is True
    assert col.dropped == ["a_1_b_-1"]


async def test_an_index_another_instance_dropped_first_is_no_error() -> None:
    class DroppedMeanwhile(_Listed):
        name = "c"

        async def drop_index(self, name: str) -> None:
            raise OperationFailure("index not found with name [a_1_b_-1]", code=27)

    col = DroppedMeanwhile({"name": "a_1_b_-1", "key": {"a": 1, "b": -1}})
    assert await drop_index_on(col, [("a", ASCENDING), ("b", DESCENDING)]) is False
