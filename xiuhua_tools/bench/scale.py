"""The jobs that grow with history: the weekly bulletin over N cases, a full score rebuild from N events, and the
queries of the pipeline's hops over N cases of history.

Both run against servers of their own with no service attached (so nothing else folds the generated data), and
the data is generated straight into the store or the stream, then the real code is timed on it:
- bulletin: the pre-aggregated documents notify's projection keeps (`services/notify/bulletin/projection.py`)
  for N cases over a year of weeks — per week counters, facets by source, category, grid cell, community and
  unit, listed overdue and escalated cases, the unit ranking, merchant changes — then `build_bulletin` of the
  last week (HTML, Markdown, charts, both languages; PDF only when asked). The build reads two weeks of those
  documents by `_id` and the indexed `week` and never the per-case records, which are not generated.
- rebuild: N lifecycle events of the contracts (opened, dispatched, acknowledged, resolved, verified, closed,
  rated: seven per case) published to `XH_CASES`, then `services/scoring/rebuild.replay` into a fresh database.
- history: N cases as dispatch stores them, intake's copies of them (a tenth open) and their Open311 view (over a
  year), then dispatch's deadline scan (every few seconds) with its repair round, intake's merge lookup (every
  report batch) and the Open311 listing, each the median of 20, beside the query it replaced.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from pymongo import InsertOne

from contracts import cases as c
from contracts import registry
from xiuhua import embedded
from xiuhua.city import City
from xiuhua.settings import Settings
from xiuhua.store import Store

Progress = Callable[[str], None]
WEEKS = 52
GRIDS, COMMUNITIES, UNITS = 1500, 200, 300
SOURCES = (("grid", 0.55), ("hotline", 0.3), ("sensor", 0.08), ("inspection", 0.05), ("open311", 0.02))
END = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # a Friday of 2026-W47: the last week of generated history


def _week_ids(n: int) -> list[str]:
    from services.notify.bulletin.weeks import week_of

    return [week_of(END - timedelta(weeks=n - 1 - i)) for i in range(n)]


# ---- the bulletin over N cases ---------------------------------------------------------------------------


def _pick(r: float, weighted: tuple[tuple[str, float], ...]) -> str:
    for name, w in weighted:
        if r < w:
            return name
        r -= w
    return weighted[-1][0]


def bulletin_documents(city: City, cases: int, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """The projection's documents for `cases` cases spread evenly over a year of weeks, by collection.

    The same fields and `_id`s as `services/notify/bulletin/projection.py` gives them when it folds each case's
    opened, dispatched, resolved, verified, closed, rated, overdue and escalated events.
    """
    from services.notify.bulletin.projection import FACETS, LISTED, MERCHANTS, RANKINGS
    from services.notify.bulletin.projection import WEEKS as WEEK_DOCS

    rng = random.Random(seed)
    weeks = _week_ids(WEEKS)
    categories = [(i.code, i.name_zh) for i in city.catalogue.items()]
    counters: dict[tuple[str, str], dict[str, int]] = {}  # (collection, _id) → counters
    labels: dict[tuple[str, str], dict[str, Any]] = {}
    listed: list[dict[str, Any]] = []
    for n in range(cases):
        week, k = weeks[n % WEEKS], n // WEEKS  # k: the case's number within its week, so each week covers all
        src = _pick(rng.random(), SOURCES)
        code, name = categories[(k * 7919) % len(categories)]
        grid, comm, unit = f"G{k % GRIDS:04d}", f"SQ{(k * 7) % COMMUNITIES:03d}", f"U{(k * 31) % UNITS:03d}"
        counts, by_unit, overdue, escalated = _case_counts(rng)
        _add_counts(counters, (WEEK_DOCS, week), counts)
        for facet, key, label, fields in (
            ("source", src, src, {"count": 1}),
            ("category", code, name, {"count": 1}),
            ("grid", grid, grid, {"count": 1}),
            ("community", comm, f"社区{comm[2:]}", {"count": 1}),
            ("unit", unit, f"单位{unit[1:]}", by_unit),
        ):
            _id = f"{week}:{facet}:{key}"
            _add_counts(counters, (FACETS, _id), fields)
            labels.setdefault((FACETS, _id), {"week": week, "facet": facet, "key": key, "label": label})
        if overdue or escalated:
            case_id = f"C-B{n:09d}"
            listed.append(
                {
                    "_id": f"{week}:{case_id}",
                    "week": week,
                    "case_id": case_id,
                    "category_code": code,
                    "category_name": name,
                    "street_name": "街道",
                    "community_name": f"社区{comm[2:]}",
                    "grid": grid,
                    "unit_id": unit,
                    "unit_name": f"单位{unit[1:]}",
                    "overdue": overdue,
                    "due_at": END,
                    **({"level": 1, "escalated_at": END} if escalated else {}),
                }
            )
    out: dict[str, list[dict[str, Any]]] = {LISTED: listed, RANKINGS: [], MERCHANTS: []}
    for (coll, _id), fields in counters.items():
        out.setdefault(coll, []).append({"_id": _id, **labels.get((coll, _id), {"week": _id}), **fields})
    for week in weeks:
        out[RANKINGS].append(_ranking_document(week))
        out[MERCHANTS] += _merchant_changes(week)
    return out


def _add_counts(counters: dict[tuple[str, str], dict[str, int]], key: tuple[str, str], fields: dict[str, int]) -> None:
    """Add `fields` to the counters of the document `key` (collection, _id), as the projection's `$inc` does."""
    doc = counters.get(key)
    if doc is None:
        counters[key] = dict(fields)
        return
    for k, v in fields.items():
        doc[k] = doc.get(k, 0) + v


def _case_counts(rng: random.Random) -> tuple[dict[str, int], dict[str, int], bool, bool]:
    """One case's drawn outcome: its weekly counters, its unit's (责任单位) counters, overdue, escalated."""
    moods = (("satisfied", 0.85), ("basic", 0.1), ("unsatisfied", 0.05))
    resolved, on_time, failed = rng.random() < 0.95, int(rng.random() < 0.96), int(rng.random() < 0.01)
    overdue, escalated = rng.random() < 0.02, rng.random() < 0.005
    counts = {"opened": 1, "dispatched": 1}
    by_unit = {"dispatched": 1}
    if resolved:
        counts |= {"resolved": 1, "resolved_on_time": on_time, "verified": 1, "verify_failed": failed}
        by_unit |= {"resolved": 1, "resolved_on_time": on_time, "verified": 1, "rework": failed}
        if not failed:
            counts |= {"closed": 1, "closed_on_time": on_time, "cohort_closed": 1}
            by_unit["closed"] = 1
    if rng.random() < 0.3:
        counts |= {"rated": 1, _pick(rng.random(), moods): 1}
    if overdue:
        counts["overdue"] = by_unit["overdue"] = 1
    if escalated:
        counts["escalated"] = by_unit["escalated"] = 1
    return counts, by_unit, overdue, escalated


def _ranking_document(week: str) -> dict[str, Any]:
    """The unit ranking (排名) of one week: a tenth of the units, the last three at the bottom."""
    rows = [
        {
            "rank": r + 1,
            "id": f"U{r:03d}",
            "name": f"单位{r:03d}",
            "score": round(100 - r * 0.1, 2),
            "board": "unit",
            "bottom": r >= UNITS // 10 - 3,
            "figures": {"on_time_rate": 0.96},
        }
        for r in range(UNITS // 10)
    ]
    return {"_id": week, "week": week, "tables": {"sanitation": rows}, "at": END}


def _merchant_changes(week: str) -> list[dict[str, Any]]:
    """Twenty merchants (商户) whose grade changed in one week."""
    return [
        {
            "_id": f"{week}:M-{m:04d}",
            "week": week,
            "merchant_id": f"M-{m:04d}",
            "merchant_name": f"商户{m:04d}",
            "street_code": None,
            "at": END,
            "previous_grade": "A",
            "grade": "B",
            "points": 80,
        }
        for m in range(20)
    ]


async def bulletin_at_scale(
    store_url: str, city: City, cases: int, out_dir: Path, *, pdf: bool, progress: Progress
) -> dict[str, Any]:
    """Generate the projection of `cases` cases into a fresh database, then build the last week's bulletin."""
    from services.notify.bulletin.builder import build_bulletin
    from services.notify.bulletin.figures import ensure_indexes, load_week
    from services.notify.bulletin.projection import COLLECTIONS

    t0 = time.perf_counter()
    docs = await asyncio.to_thread(bulletin_documents, city, cases)
    gen_s = time.perf_counter() - t0
    store = Store(store_url, f"bench_bulletin_{int(time.time())}")
    try:
        await store.ensure_collections(COLLECTIONS)
        await ensure_indexes(store)
        t0 = time.perf_counter()
        written = 0
        for coll, items in docs.items():
            for start in range(0, len(items), 1000):
                await store[coll].bulk_write([InsertOne(d) for d in items[start : start + 1000]], ordered=False)
                written += len(items[start : start + 1000])
        load_s = time.perf_counter() - t0
        progress(f"bulletin: {written} projection documents for {cases} cases written in {load_s:.1f}s")
        week = _week_ids(WEEKS)[-1]
        t0 = time.perf_counter()
        this = await load_week(store, week)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        built = await build_bulletin(store, city, week, out_dir, END + timedelta(days=3), pdf=pdf)
        build_s = time.perf_counter() - t0
        await store.client.drop_database(store.db.name)
    finally:
        await store.close()
    return {
        "cases": cases,
        "weeks": WEEKS,
        "documents": written,
        "generate_s": gen_s,
        "write_s": load_s,
        "week": week,
        "week_opened": this.counters.get("opened", 0),
        "read_week_s": read_s,
        "build_s": build_s,
        "pdf": built.event.pdf,
        "pdf_skipped": built.event.pdf_skipped_reason,
    }


# ---- the score rebuild from N events ---------------------------------------------------------------------

LIFECYCLE = (
    c.CaseOpened,
    c.CaseDispatched,
    c.CaseAcknowledged,
    c.CaseResolved,
    c.CaseVerified,
    c.CaseClosed,
    c.CaseRated,
)


def _templates() -> list[tuple[str, dict[str, Any]]]:
    """(event name, example body) of each lifecycle event, each checked by its model once."""
    out = []
    for model in LIFECYCLE:
        body = model.example()
        model.model_validate(body)
        out.append((model.event_type.split(".", 1)[1], body))
    return out


def lifecycle_events(city: City, events: int, seed: int = 11) -> list[tuple[str, bytes]]:
    """`events` (subject, body) of whole case lifecycles, oldest first, spread over a year."""
    rng = random.Random(seed)
    units = sorted(city.units.values(), key=lambda u: u.id)
    templates = _templates()
    streets = sorted({a.code for a in city.areas.of_level("street")}) or ["CD"]
    cases = -(-events // len(templates))
    span = timedelta(weeks=WEEKS).total_seconds()
    out: list[tuple[str, bytes]] = []
    n = 0
    for i in range(cases):
        unit = units[i % len(units)]
        street = streets[i % len(streets)]
        t = END - timedelta(seconds=span * (1 - i / cases))
        case_id = f"C-R{i:09d}"
        on_time = rng.random() < 0.95
        for step, (name, tpl) in enumerate(templates):
            if n >= events:
                break
            body = {
                **tpl,
                "event_id": f"00000000-0000-7000-8000-{n:012d}",
                "case_id": case_id,
                "street_code": street,
                "correlation_id": f"bench:{case_id}",
                "occurred_at": (t + timedelta(hours=step * 3)).isoformat(),
            }
            if "unit_id" in body:
                body["unit_id"] = unit.id
                body["actor"] = {"unit_id": unit.id, "role": unit.role.value, "name": unit.name}
            if name == "dispatched":
                body["lead_unit"] = {"unit_id": unit.id, "name": unit.name, "role": unit.role.value}
                body["due_at"] = (t + timedelta(days=2)).isoformat()
            if name in ("resolved", "closed"):
                body["on_time"] = on_time
            if name == "opened":
                body["place"] = {**body["place"], "street_code": street}
            out.append((f"case.v1.{name}.{street}", json.dumps(body, ensure_ascii=False).encode()))
            n += 1
    for subject, data in out[:: max(1, len(out) // 200)]:  # a sample through the real decoder
        registry.decode(subject, data)
    return out


async def rebuild_at_scale(
    store_url: str, city: City, events: int, work: Path, *, progress: Progress
) -> dict[str, Any]:
    """Publish `events` lifecycle events to a stream of their own, then time a full replay into a fresh database."""
    from services.scoring.rebuild import replay
    from xiuhua.bus import provision_streams

    srv = embedded.nats_server(work / "nats-rebuild")
    await asyncio.to_thread(srv.start)
    try:
        url = embedded.nats_url(srv)
        await provision_streams(url)
        t0 = time.perf_counter()
        items = await asyncio.to_thread(lifecycle_events, city, events)
        gen_s = time.perf_counter() - t0
        nc = await nats.connect(url)
        js = nc.jetstream()
        t0 = time.perf_counter()
        for start in range(0, len(items), 2000):
            await asyncio.gather(*(js.publish(s, d, timeout=60) for s, d in items[start : start + 2000]))
            if start and start % 100_000 == 0:
                progress(f"rebuild: {start} events published")
        pub_s = time.perf_counter() - t0
        await nc.close()
        progress(f"rebuild: {len(items)} events published in {pub_s:.1f}s; replaying")
        settings = Settings(nats_url=url, mongo_url=store_url, var_dir=work, db_prefix="bench_")
        database = f"bench_scoring_rebuild_{int(time.time())}"
        last = [time.perf_counter()]

        def tick(stream: str, n: int, total: int) -> None:
            if time.perf_counter() - last[0] > 30:
                last[0] = time.perf_counter()
                progress(f"rebuild: {n} events replayed")

        t0 = time.perf_counter()
        report = await replay(settings, city, database, tick)
        replay_s = time.perf_counter() - t0
        store = Store(store_url, database)
        try:
            unit_docs = await store["unit_periods"].estimated_document_count()
            await store.client.drop_database(database)
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(srv.stop)
    replayed = sum(report.replayed.values())
    return {
        "events": len(items),
        "generate_s": gen_s,
        "publish_s": pub_s,
        "replayed": replayed,
        "skipped": report.skipped,
        "seconds": replay_s,
        "events_per_s": replayed / replay_s if replay_s else 0.0,
        "unit_period_documents": unit_docs,
    }


# ---- the hot queries over N cases of history ------------------------------------------------------------------

OPEN_SHARE = 0.1  # cases still open (a deadline running); the rest closed
DUE_S = 600  # how far back the earliest next timer lies
MERGE_KEYS = 3_000  # grid cells × categories the cases fall in (the lookups' keys)


def case_documents(cases: int, now: datetime, seed: int = 13) -> list[dict[str, Any]]:
    """`cases` stored cases as dispatch writes them (`Case.to_doc`): a tenth with a deadline running, its next
    timer spread over the two days after `now`, a few fallen due in the last minutes (the loop fires what is due
    every few seconds, so no more wait); the rest closed."""
    from services.dispatch.case import Case, State

    rng = random.Random(seed)
    start = now - timedelta(days=1)
    template = Case.model_validate(
        {
            "case_id": "C-0",
            "state": "acknowledged",
            "correlation_id": "bench",
            "street_code": "CD",
            "category_code": "0201",
            "source": "grid",
            "rule_id": "sanitation-street",
            "time_limit": "4h",
            "place": {
                "lng": 104.08,
                "lat": 30.66,
                "address": "春熙路 1 号",
                "street_code": "CD",
                "community_code": "CD01",
            },
            "lead_unit": {"unit_id": "CD-SAN", "name": "春熙路街道环卫所", "role": "sanitation"},
            "dispatched_at": start,
            "started_at": start,
            "due_at": now,
            "ack_due_at": start,
            "timers_fired": [],
            "command_ids": [f"cmd-{i}" for i in range(4)],
        }
    )
    docs = []
    for i in range(cases):
        if rng.random() < OPEN_SHARE:
            case = template.model_copy(
                update={
                    "case_id": f"C-S{i:09d}",
                    "next_timer_at": now + timedelta(seconds=rng.uniform(-DUE_S, 2 * 86_400)),
                }
            )
        else:
            case = template.model_copy(update={"case_id": f"C-S{i:09d}", "state": State.closed, "closed_at": now})
        docs.append(case.to_doc())
    return docs


def open_case_documents(cases: list[dict[str, Any]], now: datetime, seed: int = 17) -> list[dict[str, Any]]:
    """Intake's open-case entries of the same cases (kept in their Open311 requests), spread over `MERGE_KEYS` merge
    keys, open where the case is (a next timer)."""
    rng = random.Random(seed)
    return [
        {
            "_id": d["_id"],
            "key": f"0201:30:{rng.randrange(MERGE_KEYS)}:0",
            "category_code": "0201",
            "lng": 104.08,
            "lat": 30.66,
            "street_code": "CD",
            "opened_at": now,
            "open": "next_timer_s" in d,
            "reporters": 1,
            "source": "grid",
        }
        for d in cases
    ]


async def _median_ms(fn: Any, rounds: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        out = await fn()
        times.append((time.perf_counter() - t) * 1000)
    return sorted(times)[len(times) // 2], out


async def _deadline_scan(store: Store, docs: list[dict[str, Any]], now: datetime, rounds: int) -> dict[str, Any]:
    from pymongo import ASCENDING

    from services.dispatch.case import TIMER_FIELD
    from services.dispatch.store import CASES, TIMER_SCAN, due_case_ids, index_legacy_timers

    col = store[CASES]
    for field in (TIMER_FIELD, "next_timer_at"):  # as dispatch's start-up creates them
        await col.create_index([(field, ASCENDING)])
    for start in range(0, len(docs), 1000):
        await col.insert_many(docs[start : start + 1000], ordered=False)

    async def by_date() -> list[str]:
        scan = col.find({"next_timer_at": {"$lte": now}}, {"_id": 1}).sort("next_timer_at", 1).limit(TIMER_SCAN)
        return [d["_id"] async for d in scan]

    scan_ms, due = await _median_ms(lambda: due_case_ids(col, now), rounds)
    date_ms, due_by_date = await _median_ms(by_date, rounds)
    repair_ms, repaired = await _median_ms(lambda: index_legacy_timers(col), rounds)
    if sorted(due) != sorted(due_by_date) or repaired:
        raise RuntimeError("the deadline scans disagree")  # the figures would compare different work
    return {
        "open": sum(1 for d in docs if TIMER_FIELD in d),
        "due": len(due),
        "scan_ms": scan_ms,
        "scan_by_date_ms": date_ms,
        "repair_ms": repair_ms,
    }


def request_documents(cases: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The Open311 view of the same cases, requested over the last year."""
    from services.intake.open311.projection import REQUESTED_S

    year = timedelta(days=365).total_seconds()
    docs = []
    for i, d in enumerate(cases):
        at = now - timedelta(seconds=year * i / len(cases))
        docs.append(
            {
                "_id": d["_id"],
                "status": "open" if "next_timer_s" in d else "closed",
                "service_code": "0201",
                "service_name": "垃圾箱满溢",
                "description": "垃圾箱满溢",
                "address": "春熙路 1 号",
                "requested_datetime": at,
                "updated_datetime": at,
                REQUESTED_S: at.timestamp(),
                "version": 2,
            }
        )
    return docs


async def _requests(store: Store, entries: list[dict[str, Any]], views: list[dict[str, Any]]) -> None:
    """The documents intake keeps per case, each the request with the open-case entry in it, indexed first as
    intake's start-up does (and by what the queries timed beside them used before)."""
    from pymongo import ASCENDING, DESCENDING

    from services.intake.open311.projection import REQUESTED_S
    from services.intake.store import ENTRIES

    col = store[ENTRIES]
    await col.create_index([(REQUESTED_S, DESCENDING)])
    await col.create_index([("key", ASCENDING), ("open", ASCENDING)])
    await col.create_index([("requested_datetime", DESCENDING)])
    docs = [{**view, **entry} for view, entry in zip(views, entries, strict=True)]
    for start in range(0, len(docs), 1000):
        await col.insert_many(docs[start : start + 1000], ordered=False)


async def _merge_lookup(store: Store, now: datetime, rounds: int) -> dict[str, Any]:
    from services.intake.store import ENTRIES, BatchIO, list_open_cases

    col = store[ENTRIES]
    listed = await list_open_cases(store, entries=ENTRIES)  # the merge directory, as intake's openings list them
    keys = [f"0201:30:{k}:0" for k in range(0, MERGE_KEYS, MERGE_KEYS // 9)][:9]  # a report's nine cells

    async def lookup() -> list[str]:
        return sorted(d["_id"] for d in await BatchIO(store, None, now, reads=None).candidates(keys, []))  # type: ignore[arg-type]

    async def by_key() -> list[str]:
        return sorted([d["_id"] async for d in col.find({"key": {"$in": keys}, "open": True})])

    lookup_ms, found = await _median_ms(lookup, rounds)
    key_ms, found_by_key = await _median_ms(by_key, rounds)
    if found != found_by_key:
        raise RuntimeError("the merge lookups disagree")
    return {"listed": listed, "found": len(found), "lookup_ms": lookup_ms, "lookup_by_key_ms": key_ms}


async def _open311_listing(store: Store, now: datetime, rounds: int) -> dict[str, Any]:
    from services.intake.open311.projection import REQUESTED_S, REQUESTS
    from services.intake.open311.routes import DEFAULT_DAYS, MAX_LIMIT

    col = store[REQUESTS]
    since = now - timedelta(days=DEFAULT_DAYS)  # what `GET requests` without filters lists, newest first

    async def listing() -> list[str]:
        cursor = col.find({REQUESTED_S: {"$gte": since.timestamp()}}).sort(REQUESTED_S, -1).limit(MAX_LIMIT)
        return [d["_id"] async for d in cursor]

    async def by_date() -> list[str]:
        cursor = col.find({"requested_datetime": {"$gte": since}}).sort("requested_datetime", -1).limit(MAX_LIMIT)
        return [d["_id"] async for d in cursor]

    listing_ms, rows = await _median_ms(listing, rounds)
    date_ms, rows_by_date = await _median_ms(by_date, rounds)
    if rows != rows_by_date:
        raise RuntimeError("the Open311 listings disagree")
    return {"rows": len(rows), "listing_ms": listing_ms, "listing_by_date_ms": date_ms}


async def _ledger_purge(store: Store, entries: int, now: datetime, rounds: int) -> dict[str, Any]:
    """A ledger of `entries` applied messages over the last 30 days, purged past the default 7-day horizon: the
    selection of one chunk by the indexed number (what the purge sends) beside the same by the date (what a TTL
    index ranges over), and one purge run (as many as a run reads at most)."""
    from xiuhua.city.retention import RetentionFile
    from xiuhua.ledger import AT_S, RETAINED
    from xiuhua.ledger import COLLECTION as LEDGER
    from xiuhua.retention import CHUNK, cutoff, ensure_indexes, purge

    col = store[LEDGER]
    await ensure_indexes(store, [RETAINED])  # as every service's start-up creates it
    span = timedelta(days=30).total_seconds()
    for start in range(0, entries, 1000):
        docs = []
        for i in range(start, min(entries, start + 1000)):
            at = now - timedelta(seconds=span * i / entries)
            docs.append(
                {"_id": f"bench-consumer:e-{i}", "events": [], "published": True, "at": at, AT_S: at.timestamp()}
            )
        await col.insert_many(docs, ordered=False)
    before_s = cutoff(now.timestamp(), RetentionFile().ledger)
    before = datetime.fromtimestamp(before_s, UTC)

    async def by_number() -> list[str]:
        return [d["_id"] async for d in col.find({AT_S: {"$lt": before_s}}, {"_id": 1}).sort(AT_S, 1).limit(CHUNK)]

    async def by_date() -> list[str]:
        return [d["_id"] async for d in col.find({"at": {"$lt": before}}, {"_id": 1}).sort("at", 1).limit(CHUNK)]

    number_ms, chosen = await _median_ms(by_number, rounds)
    date_ms, chosen_by_date = await _median_ms(by_date, rounds)
    if chosen != chosen_by_date:
        raise RuntimeError("the purge selections disagree")
    t = time.perf_counter()
    deleted = await purge(store, RETAINED, before_s)
    run_ms = (time.perf_counter() - t) * 1000
    return {
        "entries": entries,
        "select_ms": number_ms,
        "select_by_date_ms": date_ms,
        "deleted": deleted,
        "run_ms": run_ms,
    }


async def history_at_scale(
    store_url: str, cases: int, *, progress: Progress, rounds: int = 20, now: datetime | None = None
) -> dict[str, Any]:
    """Over `cases` cases of history, a tenth still open, time the queries that run whatever the history:
    dispatch's deadline scan (`due_case_ids`, every few seconds) with its repair round, intake's merge lookup
    (`BatchIO.candidates`, every report batch), the Open311 listing `GET requests` runs without filters (the
    last 90 days, newest first, up to 1,000) and the ledger purge (every hour); each beside the query it replaced
    or avoids, in the same run for the ratio (a range on the date `next_timer_at`; an `$in` on the `key` field; a
    range on the date `requested_datetime`; a range on the ledger's date `at`, as a TTL index would).
    Each figure is the median of `rounds`."""
    now = now or datetime.now(UTC)
    store = Store(store_url, f"bench_history_{int(time.time() * 1000)}")
    try:
        t0 = time.perf_counter()
        docs = await asyncio.to_thread(case_documents, cases, now)
        timers = await _deadline_scan(store, docs, now, rounds)
        progress(f"history: deadline scan timed; merge lookup over {cases} open-case entries")
        await _requests(store, open_case_documents(docs, now), request_documents(docs, now))
        lookup = await _merge_lookup(store, now, rounds)
        progress(f"history: merge lookup timed; Open311 listing over {cases} requests")
        listing = await _open311_listing(store, now, rounds)
        progress(f"history: Open311 listing timed; ledger purge over {cases} entries")
        ledger = await _ledger_purge(store, cases, now, rounds)
        await store.client.drop_database(store.db.name)
    finally:
        await store.close()
    return {
        "cases": cases,
        "seconds": time.perf_counter() - t0,
        "timers": timers,
        "merge": lookup,
        "open311": listing,
        "purge": ledger,
    }


async def run_scale(
    *, bulletin_cases: int, rebuild_events: int, pdf: bool, city: City, progress: Progress, history_cases: int = 0
) -> dict[str, Any]:
    """The jobs on a store and a NATS server of their own (the pipeline's services are stopped by then)."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="xiuhua-bench-scale-") as tmp:
        work = Path(tmp)
        store_srv = embedded.store_server(work / "store")
        await asyncio.to_thread(store_srv.start)
        try:
            url = embedded.mongo_url(store_srv)
            if bulletin_cases:
                progress(f"bulletin over {bulletin_cases} cases")
                results["bulletin"] = await _recorded(
                    bulletin_at_scale(url, city, bulletin_cases, work / "bulletins", pdf=pdf, progress=progress),
                    {"cases": bulletin_cases},
                )
            if rebuild_events:
                progress(f"score rebuild from {rebuild_events} events")
                results["rebuild"] = await _recorded(
                    rebuild_at_scale(url, city, rebuild_events, work, progress=progress), {"events": rebuild_events}
                )
            if history_cases:
                progress(f"deadline scan and merge lookup over {history_cases} cases")
                results["history"] = await _recorded(
                    history_at_scale(url, history_cases, progress=progress), {"cases": history_cases}
                )
        finally:
            await asyncio.to_thread(store_srv.stop)
    return results


async def _recorded(job: Any, given: dict[str, Any]) -> dict[str, Any]:
    """A job's figures, or what it was asked and why it failed: the pipeline's figures are kept either way."""
    try:
        return await job
    except Exception as exc:
        return {**given, "error": f"{type(exc).__name__}: {exc}"}
