"""What the store metrics count, against the real store: commands by collection, and the documents writes touch."""

from __future__ import annotations

import uuid

from pymongo import UpdateOne

from xiuhua.observability import Metrics, StoreCommands
from xiuhua.store import Store


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"service": "test", **labels}) or 0.0


async def test_writes_count_the_documents_they_touch_not_the_commands(mongo_url: str) -> None:
    metrics = Metrics("test")
    store = Store(mongo_url, f"metrics_{uuid.uuid4().hex[:8]}", listeners=[StoreCommands(metrics)])
    try:
        col = store["things"]
        await col.insert_many([{"_id": i, "n": 0} for i in range(5)])
        await col.update_many({"_id": {"$in": [0, 1, 2]}}, {"$set": {"n": 1}})  # one update spec, three documents
        await col.bulk_write(
            [UpdateOne({"_id": 9}, {"$inc": {"n": 1}}, upsert=True), UpdateOne({"_id": 4}, {"$inc": {"n": 1}})]
        )
        await col.delete_many({"_id": {"$in": [0, 1]}})
        await col.update_one({"_id": "absent"}, {"$set": {"n": 1}})  # matches nothing: no document written
        assert [d async for d in col.find({"_id": 9})] == [{"_id": 9, "n": 1}]

        docs = "xiuhua_store_documents_total"
        assert _value(metrics, docs, command="insert", collection="things") == 5
        assert _value(metrics, docs, command="update", collection="things") == 3 + 2
        assert _value(metrics, docs, command="delete", collection="things") == 2
        assert _value(metrics, "xiuhua_store_commands_total", command="update", collection="things") == 3
        assert _value(metrics, "xiuhua_store_commands_total", command="find", collection="things") == 1
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
