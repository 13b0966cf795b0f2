"""Intake decides a whole batch against one bulk read and writes it in one bulk call per collection: reports of
one batch still see each other (a resend, a near report, a device's earlier reading), and the store sees a few
commands per batch, not several per report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import monitoring

from contracts.cases import CaseClosed
from contracts.reports import SENSOR_NORMAL
from contracts.values import Place
from services.intake import duplicates
from services.intake.app import SPEC, of
from services.intake.store import COLLECTIONS, ENTRIES, LOCKS, OPEN, OPEN_KEYS, BatchIO, list_open_cases
from tests.helpers import BusRecorder, Commands, eventually, publish
from xiuhua.city import load_city
from xiuhua.city.intake import Duplicates
from xiuhua.clock import FrozenClock
from xiuhua.service import running
from xiuhua.settings import Settings
from xiuhua.store import Store

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
REPORT_COLLECTIONS = {
    "raw_reports",
    "source_refs",
    "open_cases",
    "open311_requests",
    "open_keys",
    "devices",
    "merge_locks",
}


def _grid(report_id: str, lng: float, lat: float) -> dict[str, Any]:
    return {
        "report_id": report_id,
        "reported_at": (NOW - timedelta(minutes=1)).isoformat(),
        "inspector_id": "G-1",
        "description": "垃圾箱满溢",
        "category_code": "0201",
        "location": {"lng": lng, "lat": lat},
    }


async def _intake_store(settings: Settings, tx_lock_dir: Path | None = None) -> tuple[Store, Duplicates]:
    """Intake's database with its collections, and the city's merge settings, for BatchIO on its own."""
    store = Store(settings.mongo_url, settings.database("intake"), tx_lock_dir=tx_lock_dir)  # type: ignore[arg-type]
    await store.ensure_collections(COLLECTIONS)
    return store, load_city(settings.city_dir).intake.duplicates


def _tilt(minute: int, tilt: float) -> dict[str, Any]:
    return {
        "device_id": "MH-B1",
        "device_type": "manhole_tilt",
        "values": {"tilt_deg": tilt},
        "measured_at": (NOW - timedelta(minutes=10 - minute)).isoformat(),
        "location": {"lng": 120.11, "lat": 30.265},
    }


@pytest.mark.parametrize("combined", [False, True], ids=["per-collection", "combined"])
async def test_one_batch_sees_its_own_reports_and_costs_a_few_commands(settings, combined: bool) -> None:
    settings = settings.model_copy(update={"store_combined_writes": combined})
    url = settings.nats_url
    # Everything is on the stream before intake starts, so it arrives in one batch (or very few).
    for spot in range(6):  # six bins 150 m apart, each reported by three people within 20 m, each sent twice
        lng = 120.155 + spot * 0.0016
        for who in range(3):
            body = _grid(f"RB-{spot}-{who}", lng + who * 0.00007, 30.255)
            await publish(url, "report.v1.in.grid", body)
            await publish(url, "report.v1.in.grid", body)
    await publish(url, "report.v1.in.grid", b"{not json")
    # One manhole: tilted (a case at once), still tilted, back level (the cause has gone), tilted again while its
    # case is still open (no second case).
    for minute, tilt in enumerate((30, 31, 5, 32)):
        await publish(url, "report.v1.in.sensor", _tilt(minute, tilt))
    messages = 6 * 3 * 2 + 1 + 4

    commands = Commands(settings.database("intake"))
    monitoring.register(commands)
    try:
        async with BusRecorder(url) as bus, running(SPEC, settings, clock=FrozenClock(NOW)) as rt:

            async def settled() -> bool:
                # 36 grid reports, the broken one, and the sensor's case and return to normal
                return await rt.store.count("raw_reports", {}) == 6 * 3 * 2 + 1 + 2

            await eventually(settled, timeout=60)
            await eventually(lambda: len(bus.on("case.v1.merged.")) >= 12 and bus.on(SENSOR_NORMAL))
            batches = commands.touching({"ledger:intake-reports"})
            report_commands = commands.touching(REPORT_COLLECTIONS)
            writes = sum(
                n
                for (c, coll), n in commands.by_collection.items()
                if c != "find" and set(coll.split("+")) & REPORT_COLLECTIONS
            )
            commands.active = False

            opened = bus.on("case.v1.opened.")
            merged = bus.on("case.v1.merged.")
            grid_cases = [e for e in opened if e["source"] == "grid"]
            assert len(grid_cases) == 6 and len(merged) == 12
            assert {m["case_id"] for m in merged} == {e["case_id"] for e in grid_cases}
            assert sorted(m["reporters_count"] for m in merged) == [2] * 6 + [3] * 6
            assert await rt.store.count("raw_reports", {"status": "duplicate"}) == 18
            assert await rt.store.count("raw_reports", {"status": "rejected"}) == 1
            counts = {d["_id"]: d["reporters"] async for d in rt.store[ENTRIES].find({"source": "grid"})}
            assert sorted(counts.values()) == [3] * 6
            sensor_cases = [e for e in opened if e["source"] == "sensor"]
            assert len(sensor_cases) == 1
            assert [e["case_id"] for e in bus.on(SENSOR_NORMAL)] == [sensor_cases[0]["case_id"]]
            device = await rt.store["devices"].find_one({"_id": "MH-B1"})
            assert device["status"] == "alarm" and device["case_id"] == sensor_cases[0]["case_id"]
            applied = [d["_id"] async for d in rt.store["ledger"].find({}, {"_id": 1})]
            # Every message but the reading that changed nothing (still tilted, its case open): a copy of it would
            # be judged again, so it needs no ledger entry (`Batch.no_effect`); and but the 18 grid reports that
            # opened or joined a case, whose raw copy under the reference keeps what they published instead.
            assert len([k for k in applied if k.startswith("intake-reports:")]) == messages - 1 - 18
            kept = [d async for d in rt.store["raw_reports"].find({"outbox": {"$exists": True}})]
            assert len(kept) == 18 and {d["status"] for d in kept} == {"case", "merged"}
            assert all(d["outbox"]["key"].startswith("intake-reports:") and d["outbox"]["events"] for d in kept)

            # A fixed number of commands per batch whatever its size (one report at a time took over 160 here):
            # reads up front (refs, merge locks, open cases, devices, their cases), the lock and lookup a sensor
            # alarm needs, and the writes at the end (raw, refs, open inserts and updates, devices, ledger): one
            # command where the store takes a client-level bulkWrite and a batch is small, else one per collection.
            assert 1 <= batches <= messages
            assert report_commands <= 12 * batches, (commands.by_collection, batches)
            if combined and await rt.store.takes_client_bulk_write():  # a batch's writes in one command
                assert writes == batches, commands.by_collection

            # The next batch reads what the first one wrote: a fourth reporter merges, a resend is a duplicate.
            await publish(url, "report.v1.in.grid", _grid("RB-0-9", 120.155 + 0.00003, 30.255))
            await publish(url, "report.v1.in.grid", _grid("RB-1-0", 120.155 + 0.0016, 30.255))
            await eventually(lambda: len(bus.on("case.v1.merged.")) >= 13)

            async def resend_dropped() -> bool:
                return await rt.store.count("raw_reports", {"status": "duplicate"}) == 19

            await eventually(resend_dropped)
            assert max(m["reporters_count"] for m in bus.on("case.v1.merged.")) == 4
    finally:
        commands.active = False


async def test_a_lookup_touches_its_own_locks_even_when_its_keys_were_loaded_for_others(settings) -> None:
    # Another report's lookup may already have loaded every key of this one (its neighbours cover them), but the
    # locks that make two instances conflict are this report's own blocks: they are touched all the same.
    store, dup = await _intake_store(settings)
    here, there = Place(lng=120.155, lat=30.255), Place(lng=120.1556, lat=30.2554)  # neighbouring cells
    try:
        async with store.client.start_session() as session:
            io = BatchIO(store, session, NOW, reads=session)
            ours = duplicates.lock_keys("0201", here, dup)
            for place in (here, there):  # keys loaded for others, under others' locks
                await io.lock_and_load(duplicates.keys_of("0201", place, dup)[1], ours)
            mine = duplicates.lock_keys("0201", there, dup)
            assert set(duplicates.keys_of("0201", there, dup)[1]) <= set(io.by_key)
            await io.lock_and_load(duplicates.keys_of("0201", there, dup)[1], mine)  # every key loaded already
        touched = {d["_id"] async for d in store[LOCKS].find({})}
        assert set(mine) <= touched
    finally:
        await store.close()


async def test_no_lock_is_written_where_the_store_runs_one_transaction_at_a_time(settings, tmp_path) -> None:
    # The embedded store's file lock keeps any two transactions on intake's database apart, so the lock documents,
    # which exist to make overlapping ones collide, would be writes for nothing; the lookup itself is unchanged.
    store, dup = await _intake_store(settings, tx_lock_dir=tmp_path)
    here = Place(lng=120.2, lat=30.3)
    key = duplicates.keys_of("0201", here, dup)[0]
    await store[OPEN].insert_one({"_id": "C-serial", "key": key, "open": True, "reporters": 1})
    assert await list_open_cases(store) == 1  # as an older build left it: listed in the merge directory
    try:
        assert store.serializes_transactions
        locks = duplicates.lock_keys("0201", here, dup)
        found: list[dict[str, Any]] = []

        async def look(session: Any) -> None:
            io = BatchIO(store, session, NOW, reads=session)
            found.extend(await io.candidates(duplicates.keys_of("0201", here, dup)[1], locks))

        await store.in_transaction(look)
        assert [d["_id"] for d in found] == ["C-serial"]
        assert await store.count(LOCKS, {"_id": {"$in": locks}}) == 0
    finally:
        await store[OPEN].delete_one({"_id": "C-serial"})
        await store[OPEN_KEYS].delete_one({"_id": key})
        await store.close()


async def test_a_resend_taken_as_new_is_still_a_duplicate_whatever_its_outcome_would_be(settings) -> None:
    # A small batch of first deliveries takes its source references as new without reading them. A resend whose
    # first copy made a case is then refused by the reference's unique key (the batch comes again, reading), and
    # one that would now be rejected (its category since dropped from the catalogue), which records no reference
    # to be refused, reads its reference before it is rejected: a duplicate either way, as when read up front.
    url = settings.nats_url
    async with BusRecorder(url) as bus, running(SPEC, settings, clock=FrozenClock(NOW)) as rt:
        await publish(url, "report.v1.in.grid", _grid("RR-1", 120.17, 30.26))
        await eventually(lambda: len(bus.on("case.v1.opened.")) == 1)
        await rt.store["raw_reports"].insert_one(
            {"_id": "grid:RR-2", "case_id": "C-earlier", "status": "case", "received_at": NOW}
        )
        await publish(url, "report.v1.in.grid", _grid("RR-1", 120.17, 30.26))  # a resend: a new message to the bus
        await publish(url, "report.v1.in.grid", {**_grid("RR-2", 120.18, 30.26), "category_code": "9999"})

        async def both_dropped() -> bool:
            return await rt.store.count("raw_reports", {"status": "duplicate"}) == 2

        await eventually(both_dropped)
        assert await rt.store.count("raw_reports", {"status": "rejected"}) == 0
        assert len(bus.on("case.v1.opened.")) == 1 and bus.on("report.v1.rejected") == []
        labels = {"service": "intake", "consumer": "intake-reports"}
        assert rt.metrics.registry.get_sample_value("xiuhua_batches_relooked_total", labels) >= 1


async def test_a_report_is_kept_once_under_its_reference_and_an_older_builds_references_still_count(settings) -> None:
    # A report that becomes a case is one document: its raw copy, kept under its source reference. References an
    # older build kept apart (`source_refs`) are read beside them while there are any, and a small batch then never
    # takes a reference as new unread (an older reference refuses no insert): its resend is a duplicate.
    store, _ = await _intake_store(settings)
    await store["source_refs"].insert_one({"_id": "grid:RF-old", "case_id": "C-older", "outcome": "case", "at": NOW})
    await store.close()
    url = settings.nats_url
    async with BusRecorder(url) as bus, running(SPEC, settings, clock=FrozenClock(NOW)) as rt:
        assert of(rt).handlers.older_refs
        await publish(url, "report.v1.in.grid", _grid("RF-old", 120.17, 30.26))
        await publish(url, "report.v1.in.grid", _grid("RF-new", 120.19, 30.26))
        await eventually(lambda: len(bus.on("case.v1.opened.")) == 1)
        await eventually(lambda: rt.store.count("raw_reports", {"status": "duplicate"}))
        opened = bus.on("case.v1.opened.")[0]
        raw = await rt.store["raw_reports"].find_one({"_id": "grid:RF-new"})
        assert (raw["status"], raw["case_id"], raw["correlation_id"]) == ("case", opened["case_id"], "grid:RF-new")
        assert await rt.store.count("raw_reports", {}) == 2 and await rt.store.count("source_refs", {}) == 1
        # Once the older references are gone (purged by the archive rule), small batches take references as new.
        await rt.store["source_refs"].delete_many({})
        assert await of(rt).handlers.look_for_older_references() is False and not of(rt).handlers.older_refs
        await publish(url, "report.v1.in.grid", _grid("RF-new", 120.19, 30.26))  # a resend: refused by the key

        async def two_dropped() -> bool:
            return await rt.store.count("raw_reports", {"status": "duplicate"}) == 2

        await eventually(two_dropped)
        assert len(bus.on("case.v1.opened.")) == 1
        labels = {"service": "intake", "consumer": "intake-reports"}
        assert rt.metrics.registry.get_sample_value("xiuhua_batches_relooked_total", labels) == 1


async def test_intake_builds_its_city_domain_before_the_first_report(settings) -> None:
    # The classifier trained on the city's examples, the gazetteer and the grid: about 45 ms to build, which the
    # first report (and those behind it) waited when it was built on demand.
    from services.intake import cases

    async with running(SPEC, settings, clock=FrozenClock(NOW)) as rt:
        assert cases._DOMAINS.get(id(rt.city)) is not None and cases._DOMAINS[id(rt.city)].city is rt.city


async def test_a_case_an_older_build_opened_absorbs_near_reports_and_closes_where_it_is(settings) -> None:
    # An older build kept open cases without listing them in the merge directory (it looked them up by `key`):
    # intake lists them when it starts, so the next near report merges instead of opening a case of its own. Its
    # entry stays in `open_cases` (the older shape, apart from the Open311 view), which merging reads for the cases
    # it does not find among the requests, and where its reporters and its closing are written.
    store, dup = await _intake_store(settings)
    here = Place(lng=120.17, lat=30.27)
    key = duplicates.keys_of("0201", here, dup)[0]
    await store[OPEN].insert_one(
        {
            "_id": "C-older",
            "key": key,
            "category_code": "0201",
            "lng": 120.17,
            "lat": 30.27,
            "street_code": "CD",
            "opened_at": NOW - timedelta(hours=1),
            "open": True,
            "reporters": 1,
            "source": "grid",
        }
    )
    await store.close()
    url = settings.nats_url
    async with BusRecorder(url) as bus, running(SPEC, settings, clock=FrozenClock(NOW)) as rt:
        await publish(url, "report.v1.in.grid", _grid("RO-1", 120.17002, 30.27001))
        merged = await eventually(lambda: bus.on("case.v1.merged."))
        assert merged[0]["case_id"] == "C-older" and merged[0]["reporters_count"] == 2
        assert bus.on("case.v1.opened.") == []
        assert (await rt.store[OPEN_KEYS].find_one({"_id": key}))["ids"] == ["C-older"]
        assert (await rt.store[OPEN].find_one({"_id": "C-older"}))["reporters"] == 2
        # The view folds the merge into a request of its own, which holds no entry: the older one is still read.
        await eventually(lambda: rt.store[ENTRIES].find_one({"_id": "C-older", "reports": 2}))
        await publish(url, "report.v1.in.grid", _grid("RO-2", 120.17001, 30.27002))
        await eventually(lambda: len(bus.on("case.v1.merged.")) == 2)
        assert bus.on("case.v1.merged.")[1]["reporters_count"] == 3
        closed = CaseClosed(
            case_id="C-older", street_code="CD", unit_id="CD-SAN", on_time=True, closed_by="verification"
        )
        await publish(url, closed.subject_for(), closed.to_json(), msg_id=closed.event_id)
        entry = await eventually(lambda: rt.store[OPEN].find_one({"_id": "C-older", "open": False}))
        assert entry["closed_s"] == NOW.timestamp() and entry["reporters"] == 3
        assert (await rt.store[OPEN_KEYS].find_one({"_id": key}))["ids"] == []
        assert "open" not in await rt.store[ENTRIES].find_one({"_id": "C-older"})  # no entry made in the request


async def test_each_report_is_keyed_for_merging_once(settings, monkeypatch) -> None:
    """A batch drafts each new report once and computes its merge keys once: the keys that find its neighbourhood
    are the ones its case is filed under."""
    keyed: list[str] = []
    keys_of = duplicates.keys_of

    def counting(category: str, place: Place, dup: Duplicates) -> tuple[str | None, list[str]]:
        keyed.append(category)
        return keys_of(category, place, dup)

    monkeypatch.setattr(duplicates, "keys_of", counting)
    for spot in range(3):  # 150 m apart: three cases, none merged
        await publish(settings.nats_url, "report.v1.in.grid", _grid(f"RK-{spot}", 120.155 + spot * 0.0016, 30.255))
    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=FrozenClock(NOW)):
        await eventually(lambda: len(bus.on("case.v1.opened.")) == 3)
    assert keyed == ["0201"] * 3
