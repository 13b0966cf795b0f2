"""Rebuild every score from the JetStream history into a fresh database and compare it with the live one.

The history is read with an ordered push consumer from sequence 1 (`XH_CASES` for the lifecycle, and the
`report.v1.in.merchant_check` subject of `XH_REPORTS` for duty checks) and applied by the same `Projection`
the live service uses. Because the fold keeps per-case facts and depends only on the set of events, the
rebuilt documents must equal the live ones field by field.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import registry, streams, subjects
from services.scoring.handlers import decode_merchant_check
from services.scoring.projection import COLLECTIONS, Projection
from xiuhua.bus import connect_options
from xiuhua.city import City
from xiuhua.settings import Settings
from xiuhua.store import Store

SOURCES: tuple[tuple[str, str], ...] = (
    (streams.CASES.name, subjects.CASE_ALL),
    (streams.REPORTS.name, subjects.report_subject("merchant_check")),
)
BATCH = 500


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


async def _last_seq(js: Any, stream: str, subject: str) -> int:
    """The last sequence the replay must reach (0: nothing to read)."""
    try:
        if subject.endswith(">") or "*" in subject:
            return int((await js.stream_info(stream)).state.last_seq)
        return int((await js.get_last_msg(stream, subject)).seq)
    except NotFoundError:
        return 0


async def history(js: Any, stream: str, subject: str, idle: float = 5.0) -> AsyncIterator[tuple[str, bytes]]:
    """Every stored message of `subject` in `stream`, oldest first, up to the last one at the start."""
    last = await _last_seq(js, stream, subject)
    if not last:
        return
    sub = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=idle)
            yield msg.subject, msg.data
            if msg.metadata.sequence.stream >= last:
                return
    finally:
        await sub.unsubscribe()


def _decode(subject: str, data: bytes) -> Any | None:
    if subject.startswith("report."):
        return decode_merchant_check(subject, data)
    try:
        return registry.decode(subject, data)
    except Exception:
        return None  # poison: the live consumer dead-lettered it and never applied it


async def replay(settings: Settings, city: City, database: str, progress: Callable[[str, int], None] | None = None
                 ) -> RebuildReport:
    """Fold the whole history into `database` (which should be empty)."""
    report = RebuildReport(database=database)
    nc = await nats.connect(settings.nats_url, **connect_options(settings))
    store = Store(settings.mongo_url, database, write_concern=settings.write_concern)
    try:
        await store.ensure_collections(COLLECTIONS)
        projection = Projection(store, city)
        js = nc.jetstream()
        for stream, subject in SOURCES:
            n = 0
            pending: list[Any] = []
            async for subj, data in history(js, stream, subject):
                message = _decode(subj, data)
                n += 1
                if message is None:
                    report.skipped += 1
                    continue
                pending.append(message)
                if len(pending) >= BATCH:
                    await projection.apply(pending)
                    pending = []
                    if progress:
                        progress(stream, n)
            if pending:
                await projection.apply(pending)
            report.replayed[stream] = n
    finally:
        await store.close()
        await nc.close()
    return report


def _diff(live: dict[str, Any], rebuilt: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    keys = sorted(live.keys() | rebuilt.keys())
    return {k: (live.get(k), rebuilt.get(k)) for k in keys if live.get(k) != rebuilt.get(k)}


async def compare(settings: Settings, live_db: str, fresh_db: str, report: RebuildReport) -> None:
    """Document by document, every scoring collection."""
    live = Store(settings.mongo_url, live_db, write_concern=settings.write_concern)
    fresh = Store(settings.mongo_url, fresh_db, write_concern=settings.write_concern)
    try:
        for coll in COLLECTIONS:
            a = {d["_id"]: d async for d in live[coll].find({})}
            b = {d["_id"]: d async for d in fresh[coll].find({})}
            report.compared[coll] = len(a.keys() | b.keys())
            for key in sorted(a.keys() | b.keys(), key=str):
                if key not in a:
                    report.differences.append(Difference(coll, str(key), "missing_in_live"))
                elif key not in b:
                    report.differences.append(Difference(coll, str(key), "missing_in_rebuild"))
                elif fields := _diff(a[key], b[key]):
                    report.differences.append(Difference(coll, str(key), "fields", fields))
    finally:
        await live.close()
        await fresh.close()


async def rebuild_and_check(
    settings: Settings, city: City, *, keep: bool = False, progress: Callable[[str, int], None] | None = None
) -> RebuildReport:
    """Replay into a fresh database, compare with the live one, drop the fresh one unless `keep`."""
    live_db = settings.database("scoring")
    fresh_db = f"{live_db}_rebuild_{uuid.uuid4().hex[:8]}"
    report = await replay(settings, city, fresh_db, progress)
    await compare(settings, live_db, fresh_db, report)
    if not keep:
        store = Store(settings.mongo_url, fresh_db)
        try:
            await store.client.drop_database(fresh_db)
        finally:
            await store.close()
    return report


def run(settings: Settings, city: City, **kwargs: Any) -> RebuildReport:
    """Synchronous entry for the CLI."""
    return asyncio.run(rebuild_and_check(settings, city, **kwargs))
