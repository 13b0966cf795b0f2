"""An in-memory stand-in for `xiuhua.store.Store`, for handler tests that need no server.

It answers what the services ask of their store and no more — the queries, updates, bulk writes, counts, indexes,
the numeric-range deletes and transactions that the store contract suite (tests/integration/test_store_contract.py)
pins on nx-27017 and MongoDB alike — and refuses what it does not know, so a handler that starts using something
new fails here first, instead of passing against a fake that answers wrongly:

    store = MemoryStore("dispatch")
    await store["cases"].insert_one({"_id": "C-1", "state": "dispatched"})
    rt = SimpleNamespace(store=store, clock=..., city=..., metrics=...)  # what the handler reads of its runtime

Transactions run one at a time; a transaction that raises leaves the collections as they were before it began
(writes made meanwhile outside it are rolled back with it: the fake is for one test's handler, not concurrency).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
from pymongo.results import BulkWriteResult, DeleteResult, InsertManyResult, InsertOneResult, UpdateResult

from xiuhua.store import Writes

T = TypeVar("T")
_MISSING = object()


class Unsupported(NotImplementedError):
    """Something the fake does not answer (an operator, an option): test that code against a real store."""


def _options(kw: Mapping[str, Any], *known: str) -> None:
    """Refuse an option the fake would silently ignore (a session is accepted: transactions are the store's)."""
    if unknown := sorted(set(kw) - {"session", *known}):
        raise Unsupported(f"option {', '.join(unknown)}")


def _get(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _parent(doc: dict[str, Any], path: str, create: bool) -> tuple[dict[str, Any] | None, str]:
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        if part not in node and create:
            node[part] = {}
        node = node.get(part)  # type: ignore[assignment]
        if not isinstance(node, dict):
            return None, last
    return node, last


def _key(value: Any) -> tuple[int, Any]:
    """Order of a sort: missing and null first, then numbers, strings, the rest by their text (MongoDB's order for
    the types the services sort on)."""
    if value is _MISSING or value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (4, value)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, value) if hasattr(value, "timestamp") else (5, repr(value))


def _sort_value(path: str, doc: Mapping[str, Any]) -> tuple[int, Any]:
    return _key(_get(doc, path))


def _compare(value: Any, op: str, arg: Any) -> bool:
    if value is _MISSING or value is None or arg is None:
        return False
    if isinstance(value, int | float) != isinstance(arg, int | float):
        return False  # MongoDB compares within a type only
    try:
        return {"$lt": value < arg, "$lte": value <= arg, "$gt": value > arg, "$gte": value >= arg}[op]
    except TypeError:
        return False


def _equal(value: Any, arg: Any) -> bool:
    if value is _MISSING:
        return arg is None
    return value == arg or (isinstance(value, list) and not isinstance(arg, list) and arg in value)


def _matches_value(value: Any, cond: Any) -> bool:
    if not (isinstance(cond, Mapping) and cond and all(str(k).startswith("$") for k in cond)):
        return _equal(value, cond)
    for op, arg in cond.items():
        if op in ("$lt", "$lte", "$gt", "$gte"):
            values = value if isinstance(value, list) else [value]
            ok = any(_compare(v, op, arg) for v in values)
        elif op == "$in":
            ok = any(_equal(value, a) for a in arg)
        elif op == "$nin":
            ok = not any(_equal(value, a) for a in arg)
        elif op == "$ne":
            ok = not _equal(value, arg)
        elif op == "$exists":
            ok = (value is not _MISSING) == bool(arg)
        else:
            raise Unsupported(f"query operator {op}")
        if not ok:
            return False
    return True


def matches(doc: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """Whether `doc` matches a query of the operators the services use."""
    for key, cond in query.items():
        if key == "$or":
            ok = any(matches(doc, q) for q in cond)
        elif key == "$and":
            ok = all(matches(doc, q) for q in cond)
        elif key.startswith("$"):
            raise Unsupported(f"query operator {key}")
        else:
            ok = _matches_value(_get(doc, key), cond)
        if not ok:
            return False
    return True


def _apply(doc: dict[str, Any], update: Mapping[str, Any], inserting: bool) -> None:
    for op, fields in update.items():
        for path, arg in fields.items():
            node, last = _parent(doc, path, create=op != "$unset")
            if node is None:
                raise OperationFailure(f"cannot apply {op} to {path}: a parent is not a document", 28)
            if op == "$set" or (op == "$setOnInsert" and inserting):
                node[last] = copy.deepcopy(arg)
            elif op == "$unset":
                node.pop(last, None)
            elif op == "$inc":
                node[last] = node.get(last, 0) + arg
            elif op == "$push":
                items = arg["$each"] if isinstance(arg, Mapping) and "$each" in arg else [arg]
                node.setdefault(last, []).extend(copy.deepcopy(items))
            elif op == "$pull":
                node[last] = [v for v in node.get(last, []) if not _matches_value(v, arg)]
            elif op != "$setOnInsert":
                raise Unsupported(f"update operator {op}")


def _project(doc: Mapping[str, Any], projection: Mapping[str, Any] | None) -> dict[str, Any]:
    out = copy.deepcopy(dict(doc))
    if not projection:
        return out
    if any("." in k for k in projection):
        raise Unsupported("projection of a dotted field")
    if any(v for k, v in projection.items() if k != "_id") or (projection.get("_id") and len(projection) == 1):
        keep = {k for k, v in projection.items() if v} | ({"_id"} if projection.get("_id", 1) else set())
        return {k: v for k, v in out.items() if k in keep}
    return {k: v for k, v in out.items() if projection.get(k, 1)}


def _sort_keys(key: str | Sequence[tuple[str, int]], direction: int | None) -> list[tuple[str, int]]:
    return [(key, direction if direction is not None else 1)] if isinstance(key, str) else list(key)


class MemoryCursor:
    """`find`'s answer: `sort` and `limit` before it is iterated (`async for`)."""

    def __init__(self, docs: Callable[[], list[dict[str, Any]]], projection: Mapping[str, Any] | None) -> None:
        self._docs, self._projection = docs, projection
        self._sort: list[tuple[str, int]] = []
        self._limit = 0

    def sort(self, key: str | Sequence[tuple[str, int]], direction: int | None = None) -> MemoryCursor:
        self._sort = _sort_keys(key, direction)
        return self

    def limit(self, n: int) -> MemoryCursor:
        self._limit = n
        return self

    def _result(self) -> list[dict[str, Any]]:
        docs = self._docs()
        for path, direction in reversed(self._sort):  # stable sorts, least significant key first
            docs.sort(key=functools.partial(_sort_value, path), reverse=direction < 0)
        docs = docs[: self._limit] if self._limit else docs
        return [_project(d, self._projection) for d in docs]

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        return self._result()[:length] if length else self._result()

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for doc in self._result():
            yield doc


@dataclass
class _Index:
    keys: list[tuple[str, int]]
    name: str
    unique: bool = False


class MemoryCollection:
    """One collection: documents by `_id`, in insertion order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.docs: dict[Any, dict[str, Any]] = {}
        self.indexes: dict[str, _Index] = {"_id_": _Index([("_id", 1)], "_id_", unique=True)}

    def _taken(self, doc: Mapping[str, Any], other_than: Any = _MISSING) -> str | None:
        """The unique index `doc` would break, if any."""
        for index in self.indexes.values():
            if not index.unique:
                continue
            if index.name == "_id_" and isinstance(_id := doc.get("_id"), Hashable):
                # The documents are keyed by `_id` already: no scan per insert (a batch of n would be n²).
                if _id in self.docs and _id != other_than:
                    return index.name
                continue
            values = [_get(doc, f) for f, _ in index.keys]
            for _id, existing in self.docs.items():
                if _id != other_than and [_get(existing, f) for f, _ in index.keys] == values:
                    return index.name
        return None

    def _put(self, doc: dict[str, Any], replacing: Any = _MISSING) -> None:
        if (index := self._taken(doc, replacing)) is not None:
            raise DuplicateKeyError(f"E11000 duplicate key error collection: {self.name} index: {index}", 11000)
        if replacing is not _MISSING and replacing != doc["_id"]:
            raise OperationFailure("the (immutable) field '_id' was found to have been altered", 66)
        self.docs[doc["_id"]] = doc

    def _matching(self, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        by_id = query.get("_id")
        if isinstance(by_id, str | int) and len(query) == 1:  # by `_id`: no scan
            doc = self.docs.get(by_id)
            return [doc] if doc is not None else []
        listed = by_id.get("$in") if isinstance(by_id, Mapping) and list(by_id) == ["$in"] else None
        if isinstance(listed, list) and all(isinstance(i, str | int) for i in listed):
            # `_id` among a list (a batch's lookups): the keys alone are compared, in the stored order, and only
            # those documents matched against the whole query (a match per document took seconds at thousands).
            wanted = set(listed)
            return [d for k, d in self.docs.items() if k in wanted and matches(d, query)]
        return [d for d in self.docs.values() if matches(d, query)]

    def find(
        self, filter: Mapping[str, Any] | None = None, projection: Mapping[str, Any] | None = None, **kw: Any
    ) -> MemoryCursor:
        _options(kw)
        query = dict(filter or {})
        return MemoryCursor(lambda: list(self._matching(query)), projection)

    async def find_one(
        self, filter: Mapping[str, Any] | None = None, projection: Mapping[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any] | None:
        _options(kw)
        found = self._matching(dict(filter or {}))
        return _project(found[0], projection) if found else None

    def _insert(self, doc: Mapping[str, Any]) -> Any:
        stored = copy.deepcopy(dict(doc))
        stored.setdefault("_id", ObjectId())
        self._put(stored)
        if isinstance(doc, dict) and "_id" not in doc:
            doc["_id"] = stored["_id"]  # as PyMongo does to the caller's document
        return stored["_id"]

    async def insert_one(self, document: Mapping[str, Any], **kw: Any) -> InsertOneResult:
        _options(kw)
        return InsertOneResult(self._insert(document), True)

    async def insert_many(
        self, documents: Iterable[Mapping[str, Any]], ordered: bool = True, **kw: Any
    ) -> InsertManyResult:
        _options(kw)
        docs = list(documents)
        await self.bulk_write([InsertOne(d) for d in docs], ordered=ordered)
        return InsertManyResult([d.get("_id") for d in docs], True)

    def _update(self, query: Mapping[str, Any], update: Any, upsert: bool, many: bool, replace: bool) -> dict:
        if not replace and not (isinstance(update, Mapping) and update and all(k.startswith("$") for k in update)):
            raise ValueError("update only works with $ operators")
        found = self._matching(query)[: None if many else 1]
        modified = 0
        for doc in found:
            new = {"_id": doc["_id"], **copy.deepcopy(dict(update))} if replace else copy.deepcopy(doc)
            if not replace:
                _apply(new, update, inserting=False)
            if new != doc:
                self._put(new, replacing=doc["_id"])
                modified += 1
        if found or not upsert:
            return {"n": len(found), "nModified": modified}
        seed: dict[str, Any] = {}
        for k, v in query.items():  # the query's equalities seed the new document, as on MongoDB
            if not k.startswith("$") and not (isinstance(v, Mapping) and any(str(o).startswith("$") for o in v)):
                node, last = _parent(seed, k, create=True)
                if node is not None:
                    node[last] = copy.deepcopy(v)
        new = seed
        if replace:
            new = {**({"_id": new["_id"]} if "_id" in new else {}), **copy.deepcopy(dict(update))}
        else:
            _apply(new, update, inserting=True)
        return {"n": 1, "nModified": 0, "upserted": self._insert(new)}

    async def update_one(self, filter: Mapping[str, Any], update: Any, upsert: bool = False, **kw: Any) -> UpdateResult:
        _options(kw)
        return UpdateResult(self._update(filter, update, upsert, many=False, replace=False), True)

    async def update_many(
        self, filter: Mapping[str, Any], update: Any, upsert: bool = False, **kw: Any
    ) -> UpdateResult:
        _options(kw)
        return UpdateResult(self._update(filter, update, upsert, many=True, replace=False), True)

    async def replace_one(
        self, filter: Mapping[str, Any], replacement: Mapping[str, Any], upsert: bool = False, **kw: Any
    ) -> UpdateResult:
        _options(kw)
        return UpdateResult(self._update(filter, replacement, upsert, many=False, replace=True), True)

    def _delete(self, query: Mapping[str, Any], many: bool) -> int:
        found = self._matching(query)[: None if many else 1]
        for doc in found:
            del self.docs[doc["_id"]]
        return len(found)

    async def delete_one(self, filter: Mapping[str, Any], **kw: Any) -> DeleteResult:
        _options(kw)
        return DeleteResult({"n": self._delete(filter, many=False)}, True)

    async def delete_many(self, filter: Mapping[str, Any], **kw: Any) -> DeleteResult:
        _options(kw)
        return DeleteResult({"n": self._delete(filter, many=True)}, True)

    def _one(self, op: Any) -> dict[str, Any]:
        """Apply one of PyMongo's write models (read through their fields: PyMongo gives them no public ones; the
        contract suite writes each kind, so a PyMongo that renames them fails there)."""
        if isinstance(op, InsertOne):
            self._insert(op._doc)
            return {"nInserted": 1}
        if isinstance(op, DeleteOne | DeleteMany):
            return {"nRemoved": self._delete(op._filter, many=isinstance(op, DeleteMany))}
        if isinstance(op, UpdateOne | UpdateMany | ReplaceOne):
            many, replace = isinstance(op, UpdateMany), isinstance(op, ReplaceOne)
            raw = self._update(op._filter, op._doc, bool(op._upsert), many=many, replace=replace)
            upserted = "upserted" in raw
            return {
                "nMatched": 0 if upserted else raw["n"],
                "nModified": raw["nModified"],
                "nUpserted": int(upserted),
                "upserted": [raw["upserted"]] if upserted else [],
            }
        raise Unsupported(f"write model {type(op).__name__}")

    async def bulk_write(self, requests: Sequence[Any], ordered: bool = True, **kw: Any) -> BulkWriteResult:
        _options(kw)
        totals: dict[str, Any] = {
            "nInserted": 0,
            "nUpserted": 0,
            "nMatched": 0,
            "nModified": 0,
            "nRemoved": 0,
            "upserted": [],
            "writeErrors": [],
            "writeConcernErrors": [],
        }
        for i, op in enumerate(requests):
            try:
                done = self._one(op)
            except DuplicateKeyError as exc:
                totals["writeErrors"].append({"index": i, "code": 11000, "errmsg": str(exc), "op": op})
                if ordered:
                    break
                continue
            for k, v in done.items():
                totals[k] = totals[k] + v
        if totals["writeErrors"]:
            raise BulkWriteError(totals)
        return BulkWriteResult(totals, True)

    async def create_index(self, keys: str | Sequence[tuple[str, int]], unique: bool = False, **kw: Any) -> str:
        _options(kw, "name")
        pairs = _sort_keys(keys, None)
        name = kw.get("name") or "_".join(f"{f}_{d}" for f, d in pairs)
        if name in self.indexes:
            return name
        self.indexes[name] = _Index(pairs, name, unique)
        if unique and any(self._taken(d, d["_id"]) for d in self.docs.values()):
            del self.indexes[name]
            raise DuplicateKeyError(f"E11000 duplicate key error collection: {self.name} index: {name}", 11000)
        return name

    async def list_indexes(self, **kw: Any) -> MemoryCursor:
        _options(kw)
        docs = [
            {"name": i.name, "key": dict(i.keys), **({"unique": True} if i.unique else {})}
            for i in self.indexes.values()
        ]
        return MemoryCursor(lambda: list(docs), None)

    async def drop_index(self, name: str, **kw: Any) -> None:
        _options(kw)
        if name == "_id_" or name not in self.indexes:
            raise OperationFailure(f"index not found with name [{name}]", 27)
        del self.indexes[name]


@dataclass
class MemorySession:
    """What a handler sees of a transaction's session."""

    in_transaction: bool = True


@dataclass
class _Database:
    name: str
    collections: dict[str, MemoryCollection] = field(default_factory=dict)

    def __getitem__(self, name: str) -> MemoryCollection:
        if name not in self.collections:
            self.collections[name] = MemoryCollection(name)
        return self.collections[name]


class MemoryStore:
    """A service's database in memory, with `xiuhua.store.Store`'s methods."""

    serializes_transactions = False
    reads_outside = False

    def __init__(self, database: str = "test") -> None:
        self.db = _Database(database)
        self.combine_writes = False
        self._lock = asyncio.Lock()

    def __getitem__(self, name: str) -> MemoryCollection:
        return self.db[name]

    def writes(self) -> Writes:
        return Writes(self.db.name)

    async def write_together(self, writes: Writes, session: MemorySession | None = None) -> None:
        for collection, ops in writes.runs():
            await self.db[collection].bulk_write(ops, ordered=True)

    async def count(self, collection: str, filter: Mapping[str, Any] | None = None) -> int:
        return len(self.db[collection]._matching(dict(filter or {})))

    async def ensure_collections(self, names: Iterable[str]) -> None:
        for name in names:
            self.db[name]

    async def in_transaction(self, fn: Callable[[MemorySession], Awaitable[T]]) -> T:
        async with self._lock:
            before = {name: (dict(c.docs), dict(c.indexes)) for name, c in self.db.collections.items()}
            before = copy.deepcopy(before)
            try:
                return await fn(MemorySession())
            except BaseException:
                for name in list(self.db.collections):
                    if name in before:
                        self.db.collections[name].docs, self.db.collections[name].indexes = before[name]
                    else:
                        del self.db.collections[name]
                raise

    @contextlib.asynccontextmanager
    async def outside_transactions(self) -> AsyncIterator[None]:
        yield

    async def end_orphaned_transaction(self) -> bool:
        return False

    async def takes_client_bulk_write(self) -> bool:
        return False

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass
