"""Intake's store access: its collections, and what one batch reads once and writes once (a handful of round trips
per batch, not per report).

Collections (intake's own database):
- `raw_reports`: every report as received (bytes, status: case / merged / transferred / duplicate / rejected /
  passed / sensor_*), with the classifier's verdict; sensor readings are kept only when they change something.
  A report that became a case, joined one or was transferred is kept under its source reference
  (`_id` `<source>:<reference>`, with `case_id`): the raw copy is the reference, so the same reference twice is
  one case, and a report costs the store one document, not two.
- `source_refs`: the references an older build kept apart from the raw copy (`<source>:<reference>` → case). No
  longer written; read beside `raw_reports` while it holds any (`older_references`), until the archive rule
  purges them.
- `open311_requests` (`ENTRIES`): each case intake opened has one document there, its public Open311 request and
  its open-case entry for merging (category, grid-cell key, point, open, reporters) in one: written when the case
  opens, with the opening already folded into the request, so the view's consumer finds it folded and the dispatch
  is the document's next write. Merging reads only the entry's fields (`ENTRY_FIELDS`).
- `open_cases`: the open-case entries an older build kept apart. No longer written but for what changes on them
  (reporters, closing, reopening); read, for the cases not found among the requests, while they last (closed
  ones go by the closed-cases rule).
- `open_keys`: the merge directory 并案索引, one document per merge key listing the open cases under it; the
  lookup reads it by `_id` (nx-27017 reads a whole collection for an `$in` on any other field).
- `devices`: one state document per sensor, written on transitions only.
- `transfers`: each transferred report by its case id (转办台账): where it went, what the report said, and the
  correction when the command centre or the hotline corrected it (`cmd.v1.case.correct_transfer`); what
  `xiuhua classify learn` reads a corrected transfer from.
- `merge_locks`: one counter per merge key; touching the keys of a lookup makes two instances that place
  near reports of one category at once conflict (MongoDB write conflict → retried), so the second merges.

The handlers decide report by report, in order, against this in-memory view of their collections: source
references, open cases by merge key and by id, device states. The view is filled by bulk reads up front
(`prefetch_*`: one `$in` query each) and, for anything not prefetched, lazily on first use; what the batch
changes is kept here and written at the end by `flush` in one bulk call per collection. Everything runs in the
batch's transaction, so the ledger entries of the batch commit with these writes or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from services.intake.open311.projection import REQUESTS
from services.intake.sensors import DeviceState
from xiuhua.retention import AT_S, Retained
from xiuhua.store import Store, Writes, drop_index_on

RAW = "raw_reports"
REFS = "source_refs"
OPEN = "open_cases"  # an older build's open-case entries, kept apart from the Open311 view
ENTRIES = REQUESTS  # open-case entries 立案副本, each in its case's Open311 request document
# What merging reads of an entry (not the request's text): what `duplicates.pick` and the directory need.
ENTRY_FIELDS = dict.fromkeys(("key", "category_code", "lng", "lat", "street_code", "opened_at", "open", "reporters"), 1)
OPEN_KEYS = "open_keys"  # merge directory 并案索引: `_id` merge key → `ids`, the cases opened under it and not closed
DEVICES = "devices"
LOCKS = "merge_locks"
TRANSFERS = "transfers"  # `_id` the transferred case's id → the transfer, and its correction once corrected
RECEIVED_S = "received_s"  # a raw report's `received_at` in seconds since the epoch: what the purge ranges over
TELEMETRY_S = "telemetry_s"  # the same for a sensor reading that only moved its device's state (shorter horizon)
OUTBOX = "outbox"  # in a raw copy kept under its reference: what its report published (`BatchIO.keep_outbox`)
CLOSED_S = "closed_s"  # when an open-case entry closed, in seconds (gone again when the case is reopened)
COLLECTIONS = (RAW, REFS, OPEN, OPEN_KEYS, DEVICES, LOCKS, TRANSFERS)

# What the purge deletes past the city's horizons (`retention.yaml`): raw reports and the references that
# de-duplicate them by the archive rule, telemetry sooner, closed cases' entries as closed cases go. Each kind
# its own field: one range each, on its index.
RETAINED = (
    Retained(RAW, RECEIVED_S, "raw_reports"),
    Retained(RAW, TELEMETRY_S, "telemetry"),
    Retained(REFS, AT_S, "raw_reports"),
    Retained(TRANSFERS, AT_S, "raw_reports"),  # a transfer goes with its raw report, its text
    Retained(OPEN, CLOSED_S, "closed_cases"),
)


def is_telemetry(raw: dict[str, Any]) -> bool:
    """A raw sensor reading kept only as a device's history (监测数据): it opened or joined no case."""
    return raw.get("source") == "sensor" and raw.get("status") == "sensor_normal"


class BatchIO:
    """Reads and writes of intake's collections for one batch, inside its transaction."""

    def __init__(
        self,
        store: Store,
        session: AsyncClientSession,
        now: datetime,
        *,
        reads: AsyncClientSession | None,
        older_refs: bool = False,
    ) -> None:
        self.store = store
        self.older_refs = older_refs  # `source_refs` holds references an older build wrote: read it too
        self.session = session  # for the merge locks
        self.reads = reads  # the session reads go with: the batch's (`Batch.reads`), or None outside it
        self.now = now
        self.refs: dict[str, bool] = {}  # correlation id → already has a case (or was dropped, transferred)
        self.outboxes: dict[str, dict[str, Any]] = {}  # correlation id → what the report that took it published
        self.answered: dict[str, dict[str, Any]] = {}  # correlation id → its raw copy written this batch
        self.assumed: set[str] = set()  # references taken as new without reading (`assume_new`)
        self.cases: dict[str, dict[str, Any] | None] = {}  # case id → open-case document (None: not open/unknown)
        self.older: set[str] = set()  # case ids whose entries an older build kept in `open_cases`
        self.by_key: dict[str, list[dict[str, Any]]] = {}  # merge key (loaded this batch) → open cases under it
        self.locked: set[str] = set()  # merge locks touched this batch
        self.devices: dict[str, DeviceState | None] = {}
        self.raw: list[dict[str, Any]] = []
        self.new_cases: dict[str, dict[str, Any]] = {}
        self.merged: set[str] = set()  # existing open cases whose reporter count changed
        self.device_writes: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any] | None] = {}  # transferred case id → its record (None: unknown)
        self.new_transfers: list[dict[str, Any]] = []
        self.corrections: dict[str, dict[str, Any]] = {}  # transferred case id → its correction, to write

    # ---- reads ---------------------------------------------------------------------------------------------

    async def transfer(self, case_id: str) -> dict[str, Any] | None:
        """A transferred case's record as this batch leaves it (None: no such transfer)."""
        if case_id not in self.transfers:
            self.transfers[case_id] = await self.store[TRANSFERS].find_one({"_id": case_id}, session=self.reads)
        return self.transfers[case_id]

    async def prefetch_refs(self, correlations: Iterable[str]) -> None:
        """Which of these source references are known already: one query (the raw copies kept under them), two
        while an older build's `source_refs` hold any.

        Look first: inside a MongoDB transaction a duplicate-key error aborts the whole transaction. Two instances
        racing past this look conflict on the insert at flush; the loser's batch is retried and finds the ref.
        """
        ids = sorted({c for c in correlations if c not in self.refs})
        if not ids:
            return
        found: set[str] = set()
        async for d in self.store[RAW].find({"_id": {"$in": ids}}, {"_id": 1, OUTBOX: 1}, session=self.reads):
            found.add(d["_id"])
            if d.get(OUTBOX) is not None:
                self.outboxes[d["_id"]] = d[OUTBOX]
        if self.older_refs and (rest := [c for c in ids if c not in found]):
            found |= {
                d["_id"] async for d in self.store[REFS].find({"_id": {"$in": rest}}, {"_id": 1}, session=self.reads)
            }
        for c in ids:
            self.refs[c] = c in found

    def assume_new(self, correlations: Iterable[str]) -> None:
        """Take these source references as unknown without reading (a small batch of first deliveries, whose
        sources seldom resend): one known after all refuses its insert at flush, the duplicate-key error aborts the
        transaction, and the consumer applies the batch again with the references read
        (`xiuhua.consumer.Batch.look_first`)."""
        for c in correlations:
            if c not in self.refs:
                self.refs[c] = False
                self.assumed.add(c)

    async def known_after_all(self, correlation: str) -> bool:
        """For an outcome that records no reference (a rejection), where no refused insert would reveal a resend:
        read a reference taken as new after all (one query, for rejections only)."""
        if correlation in self.assumed:
            self.assumed.discard(correlation)
            del self.refs[correlation]
            await self.prefetch_refs([correlation])
        return self.refs[correlation]

    def outbox(self, correlation: str) -> dict[str, Any] | None:
        """What the report that took this source reference published, as its raw copy keeps it (`keep_outbox`;
        None: a raw copy of an older build, or a reference not read)."""
        return self.outboxes.get(correlation)

    async def seen(self, correlation: str) -> bool:
        """Whether a source reference already has its outcome (in the store or earlier in this batch)."""
        if correlation not in self.refs:
            await self.prefetch_refs([correlation])
        return self.refs[correlation]

    async def lock_and_load(self, keys: Iterable[str], locks: Iterable[str]) -> None:
        """Touch the merge locks (`duplicates.lock_keys`), then read the open cases under these keys: the merge
        directory's documents of the keys, then the cases they list (when they list any), each by `_id`.

        Concurrent transactions that touch the same lock documents conflict (MongoDB retries the loser, which
        then sees the winner's case and merges), so look-then-open stays serialised per neighbourhood across
        instances. Locks are taken in sorted order so two batches never wait on each other crosswise. Where the
        store runs one transaction at a time anyway (the embedded store's file lock), no transaction can overlap
        another and the locks are not written: a round trip a batch and four documents a report.
        """
        # The locks first, whatever is loaded already: keys another lookup loaded do not carry this one's locks.
        unlocked = sorted(set(locks) - self.locked)
        if unlocked and not self.store.serializes_transactions:
            await self.store[LOCKS].bulk_write(
                [UpdateOne({"_id": k}, {"$inc": {"n": 1}}, upsert=True) for k in unlocked],
                ordered=True,
                session=self.session,
            )
        self.locked.update(unlocked)
        missing = sorted({k for k in keys if k not in self.by_key})
        if not missing:
            return
        for k in missing:
            self.by_key[k] = [d for d in self.new_cases.values() if d["key"] == k]
        # By `_id` twice rather than one query on the `key` field: nx-27017 answers an `$in` on any other field by
        # reading every document, and open_cases keeps every case intake ever opened (17 ms a lookup at 20,000).
        listed = {
            d["_id"]: d.get("ids", [])
            async for d in self.store[OPEN_KEYS].find({"_id": {"$in": missing}}, session=self.reads)
        }
        await self.prefetch_cases(i for ids in listed.values() for i in ids)
        for k in missing:
            for case_id in dict.fromkeys(listed.get(k, [])):
                d = self.cases.get(case_id)  # the known copy carries this batch's changes
                if d is not None and d.get("open") and d.get("key") == k and case_id not in self.new_cases:
                    self.by_key[k].append(d)

    async def candidates(self, keys: list[str], locks: list[str]) -> list[dict[str, Any]]:
        """The open cases under the given merge keys, as this batch leaves them (their locks touched first)."""
        await self.lock_and_load(keys, locks)
        return [d for k in keys for d in self.by_key[k] if d.get("open", True)]

    async def prefetch_cases(self, case_ids: Iterable[str]) -> None:
        """Read open-case entries by id, their fields only: one query, two when some are an older build's."""
        ids = sorted({c for c in case_ids if c and c not in self.cases})
        if not ids:
            return
        found = {
            d["_id"]: d
            async for d in self.store[ENTRIES].find({"_id": {"$in": ids}}, ENTRY_FIELDS, session=self.reads)
            if "open" in d  # a request of a case intake did not open (a transfer) has no entry
        }
        if rest := [c for c in ids if c not in found]:
            async for d in self.store[OPEN].find({"_id": {"$in": rest}}, ENTRY_FIELDS, session=self.reads):
                found[d["_id"]] = d
                self.older.add(d["_id"])
        for c in ids:
            self.cases[c] = found.get(c)

    async def is_open(self, case_id: str) -> bool:
        """Whether intake's projection holds the case as open."""
        await self.prefetch_cases([case_id])
        doc = self.cases[case_id]
        return bool(doc and doc.get("open"))

    async def prefetch_devices(self, device_ids: Iterable[str]) -> None:
        """Read device states by id: one query."""
        ids = sorted({d for d in device_ids if d not in self.devices})
        if not ids:
            return
        found = {
            d["_id"]: DeviceState.from_doc(d)
            async for d in self.store[DEVICES].find({"_id": {"$in": ids}}, session=self.reads)
        }
        for d in ids:
            self.devices[d] = found.get(d)

    async def device(self, device_id: str) -> DeviceState | None:
        """A device's state as this batch leaves it (None: never seen)."""
        await self.prefetch_devices([device_id])
        return self.devices[device_id]

    # ---- writes (kept until flush) -------------------------------------------------------------------------

    def add_raw(self, doc: dict[str, Any]) -> None:
        """Archive a raw report."""
        doc[TELEMETRY_S if is_telemetry(doc) else RECEIVED_S] = doc["received_at"].timestamp()
        self.raw.append(doc)

    def answer(self, correlation: str, case_id: str, outcome: str, raw_doc: dict[str, Any]) -> str:
        """A report became a case, joined one or was transferred: its raw copy, kept under its source reference,
        names the case (one document: a second report with the reference finds it, or its insert is refused).
        Returns the raw copy's id: the reference."""
        self.refs[correlation] = True
        self.assumed.discard(correlation)
        doc = {**raw_doc, "_id": correlation, "status": outcome, "case_id": case_id, "correlation_id": correlation}
        self.answered[correlation] = doc
        self.add_raw(doc)
        return correlation

    def keep_outbox(self, correlation: str, outbox: dict[str, Any]) -> None:
        """Keep in the raw copy under this reference what its report published, with the message's ledger key and
        stream sequence: the report's only outbox (`xiuhua.consumer.Batch.guarded`), which its redelivery
        publishes again (`outbox`)."""
        self.answered[correlation][OUTBOX] = outbox
        self.outboxes[correlation] = outbox

    def add_transfer(self, doc: dict[str, Any]) -> None:
        """Record a transfer (its `_id` the case id), visible at once to later commands of the batch."""
        self.transfers[doc["_id"]] = doc
        self.new_transfers.append(doc)

    def correct(self, case_id: str, correction: dict[str, Any]) -> None:
        """A transfer's correction (its record must have been read: `transfer`)."""
        doc = self.transfers[case_id]
        assert doc is not None
        doc["correction"] = correction
        self.corrections[case_id] = correction

    def open_case(self, doc: dict[str, Any]) -> None:
        """A new open case, visible at once to later reports of the batch."""
        self.new_cases[doc["_id"]] = doc
        self.cases[doc["_id"]] = doc
        if doc["key"] is not None and doc["key"] in self.by_key:
            self.by_key[doc["key"]].append(doc)

    def merge_into(self, case_id: str, reporters: int) -> None:
        """A report merged into an open case: its reporter count."""
        doc = self.cases.get(case_id)
        if doc is not None:
            doc["reporters"] = reporters
        if case_id not in self.new_cases:
            self.merged.add(case_id)

    def put_device(self, state: DeviceState) -> None:
        """A device's new state (the last one of the batch is written)."""
        self.devices[state.device_id] = state
        self.device_writes[state.device_id] = state.to_doc()

    def flush(self, writes: Writes) -> None:
        """Add what the batch changed to its writes (sent with its ledger entries, `Batch.later`)."""
        writes.insert(RAW, self.raw)
        writes.insert(TRANSFERS, self.new_transfers)
        for case_id, correction in sorted(self.corrections.items()):
            writes.update(TRANSFERS, {"_id": case_id}, {"$set": {"correction": correction}})
        for d in self.new_cases.values():
            if d.get("key") is not None:
                writes.update(OPEN_KEYS, {"_id": d["key"]}, {"$push": {"ids": d["_id"]}}, upsert=True)
        writes.insert(ENTRIES, self.new_cases.values())
        for c in sorted(self.merged):
            if (entry := self.cases.get(c)) is not None:
                where = OPEN if c in self.older else ENTRIES
                writes.update(where, {"_id": c}, {"$set": {"reporters": int(entry["reporters"])}})
        for k, v in self.device_writes.items():
            writes.replace(DEVICES, {"_id": k}, v, upsert=True)


async def ensure_indexes(store: Store) -> None:
    """The raw-report archive by status and time; open cases by whether they are open; devices by their case."""
    await store[RAW].create_index([("status", ASCENDING), ("received_at", ASCENDING)])
    # Open cases are looked up through the merge directory (`open_keys`, by `_id`); this index finds the open ones
    # to list there (an equality on a single field: no scan on nx-27017).
    await store[OPEN].create_index([("open", ASCENDING)])
    # What earlier versions looked up by: one index less to keep.
    await drop_index_on(store[OPEN], [("key", ASCENDING), ("open", ASCENDING)])
    await store[DEVICES].create_index([("case_id", ASCENDING)])


async def older_references(store: Store) -> bool:
    """Whether `source_refs` holds references an older build wrote (read beside the raw copies while it does)."""
    return await store[REFS].find_one({}, {"_id": 1}) is not None


async def entries_of(
    store: Store, case_ids: list[str], reads: AsyncClientSession | None
) -> dict[str, tuple[str, str | None]]:
    """Where each of these cases' open-case entry is (its request, or an older build's `open_cases`), and the merge
    key it is listed under; cases intake has no entry for are left out."""
    found = {
        d["_id"]: (ENTRIES, d.get("key"))
        async for d in store[ENTRIES].find({"_id": {"$in": case_ids}}, {"key": 1, "open": 1}, session=reads)
        if "open" in d
    }
    if rest := [c for c in case_ids if c not in found]:
        async for d in store[OPEN].find({"_id": {"$in": rest}}, {"key": 1}, session=reads):
            found[d["_id"]] = (OPEN, d.get("key"))
    return found


def open_or_close(
    writes: Writes,
    changes: list[tuple[str, bool]],
    entries: dict[str, tuple[str, str | None]],
    last: dict[str, bool],
    now: datetime,
) -> None:
    """Apply closings and reopenings (case, open) to the open-case entries, in order, and follow them in the merge
    directory: a case leaves its key's list when it closes and joins it again when reopened (`last`: open as the
    batch leaves it). An entry in its request leaves `closed_s` to the view, which keeps it from the same events for
    the same purge; an older build's entry keeps its own."""
    for case_id, is_open in changes:  # in order: a close and a reopen in one batch leave it as the last says
        if (where := entries.get(case_id)) is None:
            continue
        older = where[0] == OPEN
        if is_open:
            change: dict[str, Any] = {"$set": {"open": True, "opened_at": now}}
            if older:
                change["$unset"] = {CLOSED_S: ""}
        else:
            change = {"$set": {"open": False, "closed_at": now, **({CLOSED_S: now.timestamp()} if older else {})}}
        writes.update(where[0], {"_id": case_id}, change)
    for case_id, (_, key) in sorted(entries.items()):
        if key is None:
            continue
        writes.update(OPEN_KEYS, {"_id": key}, {"$pull": {"ids": case_id}})  # never listed twice
        if last[case_id]:
            writes.update(OPEN_KEYS, {"_id": key}, {"$push": {"ids": case_id}}, upsert=True)


async def list_open_cases(store: Store, chunk: int = 1000, *, entries: str = OPEN) -> int:
    """Put every open case that its key's directory document does not list there; returns how many it added.

    Cases an older build opened have no directory entry (it looked cases up by their `key` field): run when intake
    starts and every few minutes after, so during a rolling upgrade a case the older instances open is found by
    the newer ones' lookups within minutes (until then a near report opens a case of its own: a missed merge,
    never a wrong one). Outside any transaction: what a crash loses here the next round adds again. `entries`: where
    the entries are (the benchmark lists those it generates in the requests, as intake's openings would have)."""
    by_key: dict[str, list[str]] = {}
    async for d in store[entries].find({"open": True}, {"key": 1}):
        if d.get("key") is not None:
            by_key.setdefault(d["key"], []).append(d["_id"])
    keys, added = sorted(by_key), 0
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        listed = {d["_id"]: set(d.get("ids", [])) async for d in store[OPEN_KEYS].find({"_id": {"$in": part}})}
        ops = [
            UpdateOne({"_id": k}, {"$push": {"ids": c}}, upsert=True)
            for k in part
            for c in by_key[k]
            if c not in listed.get(k, set())
        ]
        if ops:
            await store[OPEN_KEYS].bulk_write(ops, ordered=True)
            added += len(ops)
    return added
