"""Rebuild every score from the JetStream history into a fresh database and compare it with the live one.

The history is read with a pull consumer of its own from the first stored message (`XH_CASES` for the
lifecycle, and `XH_CHECKS`, the archive of `report.v1.in.merchant_check`, for duty checks) and applied by the
same `Projection` the live service uses, a batch at a time. Because the fold keeps per-case facts and depends
only on the set of events, the rebuilt documents must equal the live ones field by field.

The fresh database then loses what the live one's purge deletes (the facts of cases ended past the closed-cases
horizon, `store.RETAINED`), with the same cutoff, before the two are compared.

Streams drop their oldest messages (`XH_CHECKS` and `XH_CASES` after 800 days). The rebuild window is,
per source, the moment of the oldest message the stream still holds; documents that depend on anything older
cannot be reproduced and are counted as outside the window instead of compared (`services/scoring/window.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import registry, streams, subjects
from services.scoring.handlers import decode_merchant_check
from services.scoring.store import CASE_FACTS, COLLECTIONS, RETAINED, Projection
from services.scoring.window import Window, comparable, outside, without_older_openings
from xiuhua.bus import connect_once, connect_options
from xiuhua.city import City
from xiuhua.retention import cutoff, horizon_s, purge
from xiuhua.settings import Settings
from xiuhua.store import Store

SOURCES: tuple[tuple[str, str], ...] = (
    (streams.CASES.name, subjects.CASE_ALL),
    (streams.CHECKS.name, subjects.report_subject("merchant_check")),
)
# Events folded per store round: the replay publishes nothing, so a batch only bounds memory and the size of its
# bulk writes (a few thousand case documents); larger batches spend far less on round trips than 500 did.
BATCH = 5000


@dataclass
class Difference:
    """One document that differs between the live store and the rebuild."""

    collection: str
    id: str
    problem: str  # missing_in_live, missing_in_rebuild, fields
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field → (live, rebuilt)


@dataclass
class RebuildReport:
    """What a rebuild replayed, compared and found."""

    database: str
    replayed: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    compared: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    # stream → ISO time of the oldest message it still holds; None: nothing has expired (complete history)
    window: dict[str, str | None] = field(default_factory=dict)
    outside_window: dict[str, int] = field(default_factory=dict)  # collection → documents not compared
    purged: dict[str, int] = field(default_factory=dict)  # collection → rebuilt documents past the city's horizon
    applied: dict[str, int] = field(default_factory=dict)  # collection → live documents replaced (`--apply`)


def _mongo_url(settings: Settings) -> str:
    """The live store's URL: a rebuild needs one."""
    if not settings.mongo_url:
        raise ValueError("a rebuild needs the store's URL (XIUHUA_MONGO_URL)")
    return settings.mongo_url


async def _last_seq(js: Any, stream: str, subject: str) -> int:
    """The last sequence the replay must reach (0: nothing to read)."""
    try:
        if subject.endswith(">") or "*" in subject:
            return int((await js.stream_info(stream)).state.last_seq)
        return int((await js.get_last_msg(stream, subject)).seq)
    except NotFoundError:
        return 0


async def history(
    js: Any, stream: str, subject: str, idle: float = 5.0, stall_limit: float = 120.0, batch: int = 500
) -> AsyncIterator[tuple[str, bytes]]:
    """Every stored message of `subject` in `stream`, oldest first, up to the last one at the start.

    Read with a pull consumer of its own (no acknowledgements), so the replay asks for the next batch when it is
    ready for it: an ordered push consumer stalled for good, here, somewhere past 800,000 events of a 1,000,000
    event rebuild. The messages are known to be there, so a slow answer is waited out; only `stall_limit`
    seconds without one end the replay with an error."""
    last = await _last_seq(js, stream, subject)
    if not last:
        return
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=stall_limit, mem_storage=True
    )
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    stalled = 0.0
    try:
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=idle)
            except NatsTimeoutError:
                stalled += idle
                if stalled >= stall_limit:
                    raise
                continue
            stalled = 0.0
            for msg in msgs:
                yield msg.subject, msg.data
                meta = msg.metadata
                if meta.sequence.stream >= last or meta.num_pending == 0:
                    return
    finally:
        await sub.unsubscribe()
        with contextlib.suppress(Exception):  # else it goes by itself after `stall_limit` idle
            await js.delete_consumer(stream, config.name)  # pull_subscribe named it


async def held_from(js: Any, stream: str) -> datetime | None:
    """The moment of the oldest message `stream` still holds, or None when it still has its first message."""
    try:
        state = (await js.stream_info(stream)).state
    except NotFoundError:
        return None
    if state.first_seq <= 1:
        return None
    if not state.messages:
        return datetime.now(UTC)  # everything it ever stored has expired
    at = (await js.get_msg(stream, seq=state.first_seq)).time
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def rebuild_window(settings: Settings) -> Window:
    """What the bus still holds of each source of the fold."""
    nc = await connect_once(settings.nats_url, **connect_options(settings))
    try:
        js = nc.jetstream()
        return Window(
            cases_from=await held_from(js, streams.CASES.name), checks_from=await held_from(js, streams.CHECKS.name)
        )
    finally:
        await nc.close()


async def archive_caught_up(js: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait (bounded) until the checks' archive holds the last check XH_REPORTS holds, so a check the live fold
    has applied a moment ago is in the replay too.

    Each archived message names the sequence it was copied from (header `Nats-Stream-Source`, "XH_REPORTS 5
    ..."). The source's `lag` is no guide: it reads 0 until the server first measures it."""
    try:
        want = (await js.get_last_msg(streams.REPORTS.name, subjects.report_subject("merchant_check"))).seq
    except NotFoundError:
        return  # no check in the source (none yet, or all expired there): nothing to wait for
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if archived_up_to(await _last_archived(js)) >= want:
            return
        await asyncio.sleep(0.05)


async def _last_archived(js: Any) -> Any | None:
    try:
        return await js.get_last_msg(streams.CHECKS.name, subjects.report_subject("merchant_check"))
    except NotFoundError:
        return None


def archived_up_to(msg: Any | None) -> int:
    """The source sequence an archived message was copied from (0: none, or a header this build cannot read)."""
    header = ((msg.headers or {}) if msg is not None else {}).get("Nats-Stream-Source", "")
    parts = header.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _decode(subject: str, data: bytes) -> Any | None:
    if subject.startswith("report."):
        return decode_merchant_check(subject, data)
    try:
        return registry.decode(subject, data)
    except Exception:
        return None  # poison: the live consumer dead-lettered it and never applied it


async def stored(js: Any, stream: str, subject: str) -> int:
    """How many messages of `subject` the stream holds now (what a replay of it will read, about)."""
    try:
        state = (await js.stream_info(stream, subjects_filter=subject)).state
    except NotFoundError:
        return 0
    return sum((state.subjects or {}).values()) if state.subjects else int(state.messages or 0)


async def replay(
    settings: Settings, city: City, database: str, progress: Callable[[str, int, int], None] | None = None
) -> RebuildReport:
    """Fold the whole history into `database` (which should be empty); `progress(stream, done, total)` as it goes."""
    report = RebuildReport(database=database)
    nc = await connect_once(settings.nats_url, **connect_options(settings))
    store = Store(_mongo_url(settings), database, write_concern=settings.write_concern)
    try:
        await store.ensure_collections(COLLECTIONS)
        projection = Projection(store, city)
        js = nc.jetstream()
        await archive_caught_up(js)
        for stream, subject in SOURCES:
            n = 0
            total = await stored(js, stream, subject) if progress else 0
            if progress:
                progress(stream, 0, total)
            pending: list[Any] = []
            # One batch is applied while the next is read and decoded (the store works in its own process);
            # batches are still applied one after the other, in stream order.
            applying: asyncio.Task[None] | None = None
            try:
                async for subj, data in history(js, stream, subject):
                    message = _decode(subj, data)
                    n += 1
                    if message is None:
                        report.skipped += 1
                        continue
                    pending.append(message)
                    if len(pending) >= BATCH:
                        if applying is not None:
                            await applying
                        applying = asyncio.create_task(projection.apply(pending, events=False))
                        pending = []
                        if progress:
                            progress(stream, n, total)
                if applying is not None:
                    await applying
            finally:
                if applying is not None and not applying.done():
                    applying.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await applying
            if pending:
                await projection.apply(pending, events=False)
            if progress and n:  # an empty stream was said in full by its first call
                progress(stream, n, max(n, total))
            report.replayed[stream] = n
    finally:
        await store.close()
        await nc.close()
    return report


def _diff(live: dict[str, Any], rebuilt: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    keys = sorted(live.keys() | rebuilt.keys())
    return {k: (live.get(k), rebuilt.get(k)) for k in keys if live.get(k) != rebuilt.get(k)}


def purge_cutoffs(city: City, now: datetime) -> dict[str, float]:
    """Per purged collection, the oldest moment (seconds) the live purge keeps at `now`."""
    return {r.collection: cutoff(now.timestamp(), horizon_s(city.retention, r)) for r in RETAINED}


async def purge_rebuilt(settings: Settings, database: str, cutoffs: dict[str, float]) -> dict[str, int]:
    """Delete from the rebuilt database what the live purge deletes, with the same cutoffs; returns how many."""
    store = Store(_mongo_url(settings), database, write_concern=settings.write_concern)
    out: dict[str, int] = {}
    try:
        for r in RETAINED:
            out[r.collection] = 0
            while n := await purge(store, r, cutoffs[r.collection]):
                out[r.collection] += n
    finally:
        await store.close()
    return out


async def compare(
    settings: Settings,
    live_db: str,
    fresh_db: str,
    report: RebuildReport,
    window: Window,
    city: City,
    purged_before: float | None = None,
) -> None:
    """Document by document, every scoring collection, inside the rebuild window; `purged_before`: the facts'
    purge cutoff both databases are held to."""
    live = Store(_mongo_url(settings), live_db, write_concern=settings.write_concern)
    fresh = Store(_mongo_url(settings), fresh_db, write_concern=settings.write_concern)
    try:
        a_all = {coll: {d["_id"]: d async for d in live[coll].find({})} for coll in COLLECTIONS}
        b_all = {coll: {d["_id"]: d async for d in fresh[coll].find({})} for coll in COLLECTIONS}
    finally:
        await live.close()
        await fresh.close()
    for docs in (a_all, b_all):
        docs[CASE_FACTS] = without_older_openings(docs[CASE_FACTS])
    left_out = outside(a_all, b_all, window, city.assessment.merchants, purged_before)
    report.window = {
        streams.CASES.name: window.cases_from.isoformat() if window.cases_from else None,
        streams.CHECKS.name: window.checks_from.isoformat() if window.checks_from else None,
    }
    for coll in COLLECTIONS:
        a, b = a_all[coll], b_all[coll]
        skip = left_out.get(coll, set())
        keys = (a.keys() | b.keys()) - skip
        report.compared[coll] = len(keys)
        report.outside_window[coll] = len((a.keys() | b.keys()) & skip)
        for key in sorted(keys, key=str):
            if key not in a:
                report.differences.append(Difference(coll, str(key), "missing_in_live"))
            elif key not in b:
                report.differences.append(Difference(coll, str(key), "missing_in_rebuild"))
            elif fields := _diff(
                comparable(coll, a[key], left_out["merchant_periods"]),
                comparable(coll, b[key], left_out["merchant_periods"]),
            ):
                report.differences.append(Difference(coll, str(key), "fields", fields))


async def apply_rebuild(
    settings: Settings,
    live_db: str,
    fresh_db: str,
    window: Window,
    city: City,
    purged_before: float | None = None,
) -> dict[str, int]:
    """Make the live scoring collections what the rebuild made them, inside the rebuild window: the way stored
    figures move to new rules (or a changed fold). Documents that depend on expired messages stay as they are.
    Run it with the scoring service stopped: its consumer would write between the delete and the insert."""
    live = Store(_mongo_url(settings), live_db, write_concern=settings.write_concern)
    fresh = Store(_mongo_url(settings), fresh_db, write_concern=settings.write_concern)
    applied: dict[str, int] = {}
    try:
        a_all = {coll: {d["_id"]: d async for d in live[coll].find({})} for coll in COLLECTIONS}
        b_all = {coll: {d["_id"]: d async for d in fresh[coll].find({})} for coll in COLLECTIONS}
        left_out = outside(a_all, b_all, window, city.assessment.merchants, purged_before)
        for coll in COLLECTIONS:
            ids = sorted((a_all[coll].keys() | b_all[coll].keys()) - left_out.get(coll, set()), key=str)
            for start in range(0, len(ids), BATCH):
                chunk = ids[start : start + BATCH]
                await live[coll].delete_many({"_id": {"$in": chunk}})
                docs = [b_all[coll][i] for i in chunk if i in b_all[coll]]
                if docs:
                    await live[coll].insert_many(docs, ordered=False)
            applied[coll] = sum(1 for i in ids if i in b_all[coll])
    finally:
        await live.close()
        await fresh.close()
    return applied


async def rebuild_and_check(
    settings: Settings,
    city: City,
    *,
    keep: bool = False,
    apply: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    window: Window | None = None,
    now: datetime | None = None,
) -> RebuildReport:
    """Replay into a fresh database, purge from it what the live purge deletes at `now` (the wall clock unless
    given), compare with the live one inside the rebuild window (read from the streams unless given), with
    `apply` make the live documents the rebuilt ones, drop the fresh database unless `keep`."""
    live_db = settings.database("scoring")
    fresh_db = f"{live_db}_rebuild_{uuid.uuid4().hex[:8]}"
    report = await replay(settings, city, fresh_db, progress)
    cutoffs = purge_cutoffs(city, now or datetime.now(UTC))
    report.purged = await purge_rebuilt(settings, fresh_db, cutoffs)
    purged_before = cutoffs[RETAINED[0].collection]
    # Read after the replay: a message that expired while it ran is then older than the window's start, so
    # what it contributed is left out rather than reported as missing from the rebuild.
    window = window if window is not None else await rebuild_window(settings)
    await compare(settings, live_db, fresh_db, report, window, city, purged_before)
    if apply:
        report.applied = await apply_rebuild(settings, live_db, fresh_db, window, city, purged_before)
    if not keep:
        store = Store(_mongo_url(settings), fresh_db)
        try:
            await store.client.drop_database(fresh_db)
        finally:
            await store.close()
    return report


def run(settings: Settings, city: City, **kwargs: Any) -> RebuildReport:
    """Synchronous entry for the CLI."""
    return asyncio.run(rebuild_and_check(settings, city, **kwargs))
