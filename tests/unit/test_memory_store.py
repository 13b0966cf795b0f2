"""The in-memory store refuses what it does not answer, instead of answering it wrongly (what it answers is held
to the real stores by tests/integration/test_store_contract.py)."""

from __future__ import annotations

import pytest

from xiuhua.testing import MemoryStore
from xiuhua.testing.memory_store import Unsupported


async def test_an_unknown_query_operator_is_refused() -> None:
    store = MemoryStore()
    await store["a"].insert_one({"_id": "x", "name": "路灯"})
    with pytest.raises(Unsupported, match=r"\$regex"):
        [d async for d in store["a"].find({"name": {"$regex": "路"}})]


async def test_an_unknown_update_operator_is_refused_and_changes_nothing() -> None:
    store = MemoryStore()
    await store["a"].insert_one({"_id": "x", "tags": []})
    with pytest.raises(Unsupported, match=r"\$addToSet"):
        await store["a"].update_one({"_id": "x"}, {"$addToSet": {"tags": "a"}})
    assert await store["a"].find_one({"_id": "x"}) == {"_id": "x", "tags": []}


async def test_an_option_it_would_ignore_is_refused_but_a_session_is_taken() -> None:
    store = MemoryStore()
    with pytest.raises(Unsupported, match="option hint"):
        await store["a"].find_one({}, hint="_id_")
    assert await store["a"].find_one({}, session=None) is None
