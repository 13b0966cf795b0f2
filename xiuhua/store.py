"""The store: PyMongo's AsyncMongoClient, one database per service, transactions for effect + ledger."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any, TypeVar

from bson import Binary
from pymongo import ASCENDING, AsyncMongoClient, InsertOne, ReplaceOne, UpdateOne, WriteConcern, monitoring
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    ClientBulkWriteException,
    CollectionInvalid,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
)

T = TypeVar("T")

log = logging.getLogger("xiuhua.store")
OUTSIDE_WAIT_S = 5.0  # the longest a write waits in `outside_transactions` for an open transaction


def is_transient(exc: BaseException) -> bool:
    """True for failures that say 'try again later' (store unreachable, failover), not 'this is wrong'."""
    if isinstance(exc, ClientBulkWriteException) and exc.error is not None:
        return is_transient(exc.error)  # a client-level bulkWrite wraps the failure that ended it
    if isinstance(exc, ConnectionFailure):
        return True
    if isinstance(exc, PyMongoError) and (
        exc.has_error_label("TransientTransactionError") or exc.has_error_label("RetryableWriteError")
    ):
        return True
    return isinstance(exc, OperationFailure) and exc.code in {91, 189, 10107, 11600, 11602, 13435, 13436}


BACKFILL_EVERY_S = 600.0  # how often services give what an older build wrote the fields their queries select on


async def backfill_seconds(col: Any, date_field: str, seconds_field: str, batch: int = 500) -> int:
    """Give `seconds_field` (the date in seconds since the epoch) to the documents that have `date_field` but not
    it; returns how many it gave it.

    Queries select on such numbers because nx-27017 answers a range on a number from its index and a range on a
    date by reading the whole collection. A document without the number (written by a build before it, or by an
    instance not yet upgraded during a rolling upgrade) would be invisible to them: services run this when they
    start and every `BACKFILL_EVERY_S` after (`Runtime.repair_older_builds`). Conditional on the date read, so a
    document rewritten in between keeps what its writer put there."""
    done = 0
    while True:
        query = {date_field: {"$exists": True}, seconds_field: {"$exists": False}}
        docs = [d async for d in col.find(query, {date_field: 1}).limit(batch)]
        docs = [d for d in docs if hasattr(d[date_field], "timestamp")]
        if not docs:
            return done
        res = await col.bulk_write(
            [
                UpdateOne(
                    {"_id": d["_id"], date_field: d[date_field], seconds_field: {"$exists": False}},
                    {"$set": {seconds_field: d[date_field].timestamp()}},
                )
                for d in docs
            ],
            ordered=False,
        )
        done += res.modified_count
        if res.modified_count == 0:
            return done  # every one was rewritten meanwhile; what still lacks the field waits for the next round


async def update_in_chunks(col: Any, moves: AsyncIterable[UpdateOne], chunk: int = 500) -> int:
    """Send updates as they come, `chunk` to an unordered bulk write; returns how many documents they changed."""
    done = 0
    batch: list[UpdateOne] = []
    async for move in moves:
        batch.append(move)
        if len(batch) >= chunk:
            done += (await col.bulk_write(batch, ordered=False)).modified_count
            batch = []
    if batch:
        done += (await col.bulk_write(batch, ordered=False)).modified_count
    return done


async def pages_in_order(
    col: Any, field: str, low: Any, high: Any, projection: Mapping[str, int], batch: int = 500
) -> AsyncIterator[list[dict[str, Any]]]:
    """The documents whose `field` lies in [low, high), a page at a time in its order: each page a range on the
    field's index starting where the last one ended, so one pass reads each document once without a scan per page
    (documents sharing the value a page ended on are not read twice, nor skipped)."""
    last: Any = low
    at_last: set[Any] = set()  # ids already read whose field is `last`
    while True:
        query = {field: {"$gte": last, "$lt": high}}
        found = [
            d
            async for d in col.find(query, {**projection, field: 1}).sort(field, ASCENDING).limit(batch + len(at_last))
        ]
        page = [d for d in found if not (d.get(field) == last and d["_id"] in at_last)]
        if not page:
            return
        yield page
        if page[-1][field] != last:
            last, at_last = page[-1][field], set()
        at_last |= {d["_id"] for d in page if d[field] == last}


async def drop_index_on(col: Any, keys: Sequence[tuple[str, int]]) -> bool:
    """Drop the index on `keys` (one an earlier build made and this one no longer uses) if it is there; True if
    it was.

    Found in the server's list and dropped by the name listed there, not by the pattern: nx-27017 names indexes
    its own way and lists every field as ascending; asked to drop by a pattern it answers ok and drops nothing,
    or, for a descending field, fails (it puts the pattern's name, `..._-1`, into SQL unquoted). Until this such
    indexes stayed there for ever, each costing every write. An index listed with other directions counts only if
    the server renamed it, as nx-27017 does: on MongoDB it is another index."""
    fields = [f for f, _ in keys]
    async for index in await col.list_indexes():
        listed = [(f, int(d)) for f, d in index["key"].items()]
        if [f for f, _ in listed] != fields:
            continue
        as_made = listed == [(f, int(d)) for f, d in keys]
        renamed = index["name"] != "_".join(f"{f}_{d}" for f, d in listed)
        if as_made or renamed:
            try:
                await col.drop_index(index["name"])
            except OperationFailure as exc:  # another instance starting dropped it first, or the store refuses
                log.warning("%s: index %s not dropped: %s", col.name, index["name"], exc)
                return False
            return True
    return False


# One command instead of one per collection pays off for small batches only: on nx-27017 a command costs about
# 0.9 ms of its own, and a document written through the client-level command about 0.02 ms more than through its
# collection's (it writes them one by one). Combined while the writes are at most this many per command saved.
COMBINED_PER_COMMAND_SAVED = 40

Write = InsertOne[Any] | UpdateOne | ReplaceOne[Any]


class Writes:
    """Writes to several collections of one database, in order, sent together: as one client-level `bulkWrite`
    (MongoDB 8.0, nx-27017) while they are few and the store combines writes (`XIUHUA_STORE_COMBINED_WRITES`, on
    by default), else one `bulk_write` per run of writes to the same collection.

    A batch of first deliveries on the path from report to dispatch writes a document or two into each of five
    or six collections: one command for all of them instead of one each is most of its transaction's round trips
    (measured on nx-27017: 6.1 ms for a transaction inserting into five collections one command each, 2.5 ms in
    one). Each write carries its namespace, which the client-level command needs and a collection's ignores."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.ops: list[tuple[str, Write]] = []

    def __len__(self) -> int:
        return len(self.ops)

    def _ns(self, collection: str) -> str:
        return f"{self.database}.{collection}"

    def insert(self, collection: str, docs: Iterable[dict[str, Any]]) -> None:
        """Insert documents (a unique key already taken refuses the whole transaction)."""
        ns = self._ns(collection)
        self.ops += [(collection, InsertOne(d, namespace=ns)) for d in docs]

    def update(
        self, collection: str, filter: Mapping[str, Any], update: Mapping[str, Any], *, upsert: bool = False
    ) -> None:
        """Update one document."""
        self.ops.append((collection, UpdateOne(filter, update, upsert=upsert, namespace=self._ns(collection))))

    def replace(
        self, collection: str, filter: Mapping[str, Any], doc: Mapping[str, Any], *, upsert: bool = False
    ) -> None:
        """Replace one document."""
        self.ops.append((collection, ReplaceOne(filter, doc, upsert=upsert, namespace=self._ns(collection))))

    def runs(self) -> list[tuple[str, list[Write]]]:
        """The writes as runs to one collection each, in order."""
        return [(c, [op for _, op in run]) for c, run in groupby(self.ops, key=lambda pair: pair[0])]


def _opens_transaction(session: AsyncClientSession | None) -> bool:
    """Whether a command with this session would be the first of its transaction (or is in none). nx-27017 refuses
    the client-level bulkWrite (a command on `admin`) in a transaction already begun on a service's database;
    PyMongo offers no public way to ask, so an unknown answer means begun."""
    if session is None or not session.in_transaction:
        return True
    return bool(getattr(session, "_starting_transaction", False))


class Store:
    """A service's own database."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        write_concern: str = "majority",
        tx_lock_dir: Path | None = None,
        listeners: Sequence[monitoring.CommandListener] = (),
        combine_writes: bool = True,
    ) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=3000,
            connectTimeoutMS=3000,
            appname="xiuhua",
            event_listeners=list(listeners),
        )
        w: int | str = int(write_concern) if write_concern.isdigit() else write_concern
        self._w = w
        self.db: AsyncDatabase[dict[str, Any]] = self.client.get_database(database, write_concern=WriteConcern(w=w))
        # nx-27017 keeps a database in one SQLite connection and interleaves concurrent transactions' savepoints
        # (it reports errors yet commits both). Transactions on one database therefore run one at a time: an
        # asyncio lock in the process, and a file lock across processes when the store is the embedded one.
        # MongoDB needs neither; the cost is small because a transaction carries a whole batch.
        self._tx_lock = asyncio.Lock()
        self._tx_lock_file = tx_lock_dir / f"{database}.txlock" if tx_lock_dir else None
        # nx-27017 neither aborts a transaction when its client dies nor times it out: the dead client's open
        # BEGIN becomes the outer SQLite transaction, so every later write lands inside it (visible, never
        # durable) and its half-done batch shows through. The lock holder therefore names its session in
        # this marker while its transaction is open; whoever takes the lock next and finds a marker ends that
        # session, which rolls the orphan back (MongoDB aborts such transactions by itself).
        self._tx_marker = tx_lock_dir / f"{database}.txopen" if tx_lock_dir else None
        self._outside_holder: asyncio.Task[Any] | None = None  # the task in `outside_transactions`, if any
        self._client_bulk: bool | None = None  # whether the server takes a client-level bulkWrite (asked once)
        self.combine_writes = combine_writes  # `write_together` may use it (`XIUHUA_STORE_COMBINED_WRITES`)

    @property
    def serializes_transactions(self) -> bool:
        """Whether transactions on this database run one at a time across every process using it (the embedded
        store's file lock): conflict documents that only make concurrent transactions collide are then moot."""
        return self._tx_lock_file is not None

    def __getitem__(self, name: str):
        return self.db[name]

    @property
    def reads_outside(self) -> bool:
        """Whether a batch's handler reads outside its transaction (`Batch.reads`): where transactions run one at a
        time and a batch's writes may go as one command, which nx-27017 takes only as a transaction's first."""
        return self.serializes_transactions and self.combine_writes

    def writes(self) -> Writes:
        """An empty set of writes to this database (`write_together`)."""
        return Writes(self.db.name)

    async def takes_client_bulk_write(self) -> bool:
        """Whether the server takes MongoDB 8.0's client-level bulkWrite (wire version 25: MongoDB 8.0, nx-27017)."""
        if self._client_bulk is None:
            hello = await self.client.admin.command("hello")
            self._client_bulk = int(hello.get("maxWireVersion", 0)) >= 25
        return self._client_bulk

    async def write_together(self, writes: Writes, session: AsyncClientSession | None = None) -> None:
        """Apply `writes` in order, stopping at the first refused: one command while that saves more than it costs
        (`COMBINED_PER_COMMAND_SAVED`), else one per run of writes to the same collection."""
        runs = writes.runs()
        if not runs:
            return
        if (
            self.combine_writes
            and len(runs) > 1
            and len(writes) <= COMBINED_PER_COMMAND_SAVED * (len(runs) - 1)
            and _opens_transaction(session)
            and await self.takes_client_bulk_write()
        ):
            # The client-level command takes the client's write concern, not this database's; a transaction's is
            # set when it commits.
            in_tx = session is not None and session.in_transaction
            await self.client.bulk_write(
                [op for _, op in writes.ops],
                ordered=True,
                session=session,
                write_concern=None if in_tx else self.db.write_concern,
            )
            return
        for collection, ops in runs:
            await self.db[collection].bulk_write(ops, ordered=True, session=session)

    async def ping(self) -> bool:
        """True when the server answers."""
        try:
            await self.client.admin.command("ping")
            return True
        except PyMongoError:
            return False

    async def count(self, collection: str, filter: Mapping[str, Any] | None = None) -> int:
        """How many documents of `collection` match `filter`, by the `count` command.

        Not `count_documents`: PyMongo sends that as an aggregation, and nx-27017 runs an aggregation inside a
        savepoint on the SQLite connection every session of the database shares. A transaction another client
        begins meanwhile nests in that savepoint, and the aggregation's `ROLLBACK TO` takes the transaction's
        savepoint with it: its commit then fails with "no such savepoint", leaving the session open on the
        server for good (measured: a count loop against a transaction loop also left a stale temporary table
        behind and stalled the server). MongoDB answers the command alike
        (docs/decisions/0002-count-without-aggregation.md)."""
        reply = await self.db.command({"count": collection, "query": dict(filter or {})})
        return int(reply["n"])

    async def ensure_collections(self, names: Iterable[str]) -> None:
        """Create collections up front: creating one inside a transaction breaks nx-27017's transaction."""
        existing = set(await self.db.list_collection_names())
        for name in names:
            if name not in existing:
                with contextlib.suppress(CollectionInvalid, OperationFailure):
                    await self.db.create_collection(name)

    @contextlib.asynccontextmanager
    async def _serialized(self, within: float | None = None) -> AsyncIterator[None]:
        """One holder at a time per database: the asyncio lock in the process and, for the embedded store, the file
        lock across processes. `within`: give up after that many seconds with a transient error, for a caller that
        must not hang behind a transaction the driver keeps retrying against a store that is away (it does so for
        up to two minutes)."""
        away = f"{self.db.name}: a transaction has held the database for over {within:g} s" if within else ""
        try:
            async with asyncio.timeout(within):
                await self._tx_lock.acquire()
        except TimeoutError:
            raise AutoReconnect(away) from None
        try:
            if self._tx_lock_file is None:
                yield
                return
            self._tx_lock_file.parent.mkdir(parents=True, exist_ok=True)
            with self._tx_lock_file.open("a") as fh:
                if within is None:
                    try:  # free most of the time: no thread hop for a lock nobody holds
                        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        await asyncio.to_thread(fcntl.flock, fh.fileno(), fcntl.LOCK_EX)
                else:
                    deadline = time.monotonic() + within
                    while True:
                        try:
                            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            if time.monotonic() > deadline:
                                raise AutoReconnect(away) from None
                            await asyncio.sleep(0.005)
                try:
                    yield
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._tx_lock.release()

    @contextlib.asynccontextmanager
    async def outside_transactions(self) -> AsyncIterator[None]:
        """For writes outside a transaction whose loss would repeat an effect (a delivery's claim or record): wait
        until no transaction is open on this database. nx-27017 keeps a database in one SQLite connection, so a
        write made while another client's transaction is open lands inside that transaction: acknowledged, and
        lost with it if the store dies before the commit (measured). MongoDB needs no such wait.

        The lock free does not mean no transaction is open: a client killed inside one (a service SIGKILLed
        mid-batch) released the lock and left its transaction open, and these writes would land in it, to be
        rolled back with it by whoever ends it next: a delivery claimed, sent and recorded would be pending again
        and sent again. So the orphan is ended first, as the next transaction would (`_named`); what these writes
        read then no longer shows the dead client's half-done writes either.

        Only where the lock is set (`XIUHUA_STORE_TX_LOCK_DIR`: the embedded store); re-entrant within a task, so a
        caller may hold it across several such writes (one wait, not one each)."""
        task = asyncio.current_task()
        if self._tx_lock_file is None or (task is not None and self._outside_holder is task):
            yield
            return
        async with self._serialized(within=OUTSIDE_WAIT_S):
            await self._end_orphan()
            self._outside_holder = task
            try:
                yield
            finally:
                self._outside_holder = None

    async def in_transaction(self, fn: Callable[[AsyncClientSession], Awaitable[T]]) -> T:
        """Run `fn(session)` in a transaction, retried by the driver on transient errors."""
        async with self._serialized(), self.client.start_session() as session, self._named(session):
            return await session.with_transaction(fn, write_concern=WriteConcern(w=self._w))

    @contextlib.asynccontextmanager
    async def _named(self, session: AsyncClientSession) -> AsyncIterator[None]:
        """With the lock held: end an orphan, then name this session in the marker while its transaction runs."""
        if self._tx_marker is None:
            yield
            return
        await self._end_orphan()
        self._tx_marker.write_bytes(bytes(session.session_id["id"]))
        try:
            yield
        finally:
            self._tx_marker.unlink(missing_ok=True)

    async def end_orphaned_transaction(self) -> bool:
        """End a transaction a dead process left open on this database; True if there was one."""
        if self._tx_marker is None or not self._tx_marker.exists():
            return False
        async with self._serialized():
            return await self._end_orphan()

    async def _end_orphan(self) -> bool:
        # Called with the lock held: a marker here means its writer died between naming and clearing it.
        if self._tx_marker is None or not self._tx_marker.exists():
            return False
        lsid = self._tx_marker.read_bytes()
        if lsid:
            log.warning("%s: rolling back a transaction its dead client left open", self.db.name)
            await self.client.admin.command({"endSessions": [{"id": Binary(lsid, 4)}]})
        self._tx_marker.unlink(missing_ok=True)
        return bool(lsid)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.close()
