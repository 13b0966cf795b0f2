"""Scoring's case facts under retention, on the real store: the facts of a case ended past the horizon go (the unit
documents stay), those at or inside it and of open cases stay; facts an older build stored get their moment once;
`xiuhua scoring rebuild --check` purges its replay the same way, so a purged store still matches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.cases import CaseCancelled, CaseClosed, CaseDispatched, CaseEvent, CaseOpened, CaseReopened
from contracts.values import Place, UnitRef
from services.scoring import units
from services.scoring.rebuild import rebuild_and_check
from services.scoring.store import (
    CASE_FACTS,
    CLOSED_S,
    COLLECTIONS,
    RETAINED,
    UNIT_PERIODS,
    Projection,
    close_older_facts,
    closing,
    facts_document,
)
from tests.helpers import as_operator, eventually
from tests.helpers.bus import publish_all
from tests.helpers.scoring import aged, history
from xiuhua.city.retention import DAY, RetentionFile
from xiuhua.clock import FrozenClock
from xiuhua.registry import spec
from xiuhua.retention import RetentionJob, ensure_indexes
from xiuhua.service import running
from xiuhua.store import Store

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DAY_ = timedelta(days=1)
UNIT = UnitRef(unit_id="CD-SAN", name="城东环卫所", role="sanitation")


def _case(cid: str, opened: datetime, *ends: tuple[type, datetime]) -> list[CaseEvent]:
    """Opened and dispatched at `opened`, then each (closed, cancelled or reopened) at its moment."""
    common: dict[str, Any] = {"case_id": cid, "street_code": "CD", "correlation_id": f"grid:{cid}"}
    out: list[CaseEvent] = [
        CaseOpened(
            **common,
            occurred_at=opened,
            source="grid",
            source_ref=cid,
            category_code="0201",
            description="x",
            place=Place(street_code="CD"),
            reported_at=opened,
        ),
        CaseDispatched(
            **common,
            occurred_at=opened + SECOND,
            category_code="0201",
            lead_unit=UNIT,
            rule_id="r",
            due_at=opened + timedelta(days=3),
            time_limit="3d",
            dispatch_round=1,
        ),
    ]
    for kind, at in ends:
        extra: dict[str, Any] = {"on_time": True, "closed_by": "verification"} if kind is CaseClosed else {}
        extra |= {"reason": "x"} if kind in (CaseCancelled, CaseReopened) else {}
        out.append(kind(**common, occurred_at=at, unit_id=UNIT.unit_id, **extra))
    return out


async def _ids(store: Store) -> set[str]:
    return {d["_id"] async for d in store[CASE_FACTS].find({}, {"_id": 1})}


async def test_facts_of_cases_ended_past_the_horizon_go_and_at_or_inside_it_they_stay(mongo_url, city) -> None:
    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_scoring")
    ended = T0 + timedelta(days=5)
    now = ended + timedelta(days=900)
    events = [
        *_case("C-past", T0, (CaseClosed, ended - SECOND)),  # one second older than the horizon
        *_case("C-at", T0, (CaseClosed, ended)),  # exactly at it
        *_case("C-inside", T0, (CaseClosed, ended + SECOND)),
        *_case("C-cancelled", T0, (CaseCancelled, ended - SECOND)),
        *_case("C-open", T0),  # never ended: kept whatever its age
        *_case("C-reopened", T0, (CaseClosed, T0 + DAY_), (CaseReopened, ended - SECOND)),
    ]
    clock = FrozenClock(now)
    job = RetentionJob(store, RetentionFile(closed_cases="900d"), RETAINED, clock)  # longer than XH_CASES' 800d
    try:
        await store.ensure_collections(COLLECTIONS)
        await ensure_indexes(store, RETAINED)
        await Projection(store, city).apply(events, events=False)
        periods = [d async for d in store[UNIT_PERIODS].find({})]
        assert await job.run() == {CASE_FACTS: 2}
        assert await _ids(store) == {"C-at", "C-inside", "C-open", "C-reopened"}
        clock.set(now + SECOND)  # the one at the horizon is past it now
        assert await job.run() == {CASE_FACTS: 1}
        assert await _ids(store) == {"C-inside", "C-open", "C-reopened"}
        # The figures the facts were counted into stay as they were.
        assert [d async for d in store[UNIT_PERIODS].find({})] == periods
    finally:
        await store.close()


async def test_facts_stay_while_the_case_stream_may_hold_the_cases_events(mongo_url, city) -> None:
    """A city horizon shorter than XH_CASES keeps its 800 days: the rebuild window learns from the facts which
    periods a replay can no longer reproduce."""
    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_scoring")
    ended = T0 + timedelta(days=5)
    clock = FrozenClock(ended + timedelta(days=800))
    job = RetentionJob(store, RetentionFile(closed_cases="30d"), RETAINED, clock)
    try:
        await store.ensure_collections(COLLECTIONS)
        await ensure_indexes(store, RETAINED)
        await Projection(store, city).apply(_case("C-1", T0, (CaseClosed, ended)), events=False)
        assert await job.run() == {CASE_FACTS: 0}
        clock.set(ended + timedelta(days=800) + SECOND)
        assert await job.run() == {CASE_FACTS: 1}
    finally:
        await store.close()


async def test_facts_an_older_build_stored_get_when_their_case_ended_once(mongo_url) -> None:
    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_scoring")

    def facts(*events: CaseEvent) -> list[units.Fact]:
        return sorted((f for e in events if (f := units.fact_of(e)) is not None), key=lambda f: (f["at"], f["id"]))

    closed = facts(*_case("C-closed", T0, (CaseClosed, T0 + DAY_)))
    try:
        await store[CASE_FACTS].insert_many(
            [
                {"_id": "C-closed", "facts": closed},
                {"_id": "C-cancelled", "facts": facts(*_case("C-cancelled", T0, (CaseCancelled, T0 + 2 * DAY_)))},
                {"_id": "C-open", "facts": facts(*_case("C-open", T0))},
                {
                    "_id": "C-reopened",
                    "facts": facts(*_case("C-reopened", T0, (CaseClosed, T0 + DAY_), (CaseReopened, T0 + 2 * DAY_))),
                },
                facts_document("C-new", facts(*_case("C-new", T0, (CaseClosed, T0 + 3 * DAY_)))),
            ]
        )
        assert await close_older_facts(store) == 2
        got = {d["_id"]: d.get(CLOSED_S, "unset") async for d in store[CASE_FACTS].find({})}
        assert got == {
            "C-closed": (T0 + DAY_).timestamp(),
            "C-cancelled": (T0 + 2 * DAY_).timestamp(),
            "C-open": "unset",
            "C-reopened": "unset",
            "C-new": (T0 + 3 * DAY_).timestamp(),
        }
        assert await close_older_facts(store) == 0
        # A case the fold rewrote after the pass read it (reopened since) keeps what the fold wrote.
        read = {"_id": "C-raced", "facts": closed}
        await store[CASE_FACTS].insert_one(read)
        move = closing(read)
        assert move is not None
        reopened = facts(*_case("C-closed", T0, (CaseClosed, T0 + DAY_), (CaseReopened, T0 + 2 * DAY_)))
        await store[CASE_FACTS].replace_one({"_id": "C-raced"}, facts_document("C-raced", reopened))
        assert (await store[CASE_FACTS].bulk_write([move])).modified_count == 0
        assert (await store[CASE_FACTS].find_one({"_id": "C-raced"}))[CLOSED_S] is None
    finally:
        await store.close()


async def test_a_rebuild_of_a_purged_store_purges_its_replay_the_same_way_and_matches(settings, city) -> None:
    old = aged(history(41, 10), "OLD-", 150)  # ended months before the newer cases began
    new = history(42, 10)
    expected = units.UnitFold()
    for e in [*old, *new]:
        expected.apply(e)
    facts = {cid: facts_document(cid, f) for cid, f in expected.cases.items()}
    old_ends = sorted(d[CLOSED_S] for cid, d in facts.items() if cid.startswith("OLD-") and d[CLOSED_S])
    assert len(old_ends) >= 4 and max(old_ends) < min(d[CLOSED_S] or 1e12 for c, d in facts.items() if c[:4] != "OLD-")
    horizon = 800 * DAY
    # The live purge last ran when half the old cases were past the horizon; the rebuild runs when all are.
    live_now = datetime.fromtimestamp(old_ends[len(old_ends) // 2] + horizon, UTC)
    rebuild_now = datetime.fromtimestamp(old_ends[-1] + horizon + 1, UTC)
    clock = FrozenClock(datetime(2027, 3, 1, tzinfo=UTC))
    async with running(spec("scoring"), settings, clock=clock, city=city) as rt:
        await publish_all(settings.nats_url, [(e.subject_for(), e.to_json(), e.event_id) for e in [*old, *new]])

        async def settled() -> bool:
            docs = {d["_id"]: d async for d in rt.store[UNIT_PERIODS].find({})}
            return docs.keys() == expected.docs.keys() and all(
                docs[k][c] == expected.docs[k]["c"].get(c, 0) for k in docs for c in units.COUNTERS
            )

        await eventually(settled, timeout=120, interval=0.5)
        clock.set(live_now)
        purged = (await RetentionJob(rt.store, city.retention, RETAINED, clock).run())[CASE_FACTS]
        assert purged == len(old_ends) // 2

    report = await rebuild_and_check(as_operator(settings), city, now=rebuild_now)
    assert report.differences == [], report.differences[:3]
    assert report.purged == {CASE_FACTS: len(old_ends)}
    assert report.compared[CASE_FACTS] == len(facts) - len(old_ends)  # those the live purge has not reached yet
    assert report.outside_window[CASE_FACTS] == len(old_ends) - purged  # are left out, not differences

    # A replay that is not purged differs from the purged store: the purge is what makes the check hold.
    unpurged = await rebuild_and_check(as_operator(settings), city, now=live_now - timedelta(days=400))
    assert {(d.collection, d.problem) for d in unpurged.differences} == {(CASE_FACTS, "missing_in_live")}
    assert len(unpurged.differences) == purged


async def test_scoring_dates_the_facts_an_older_build_stored_once_when_it_starts(settings, city) -> None:
    old = [f for e in _case("C-legacy", T0, (CaseClosed, T0 + DAY_)) if (f := units.fact_of(e)) is not None]
    live = Store(settings.mongo_url, settings.database("scoring"))
    try:
        await live[CASE_FACTS].insert_one({"_id": "C-legacy", "facts": old})
        async with running(spec("scoring"), settings, city=city) as rt:

            async def dated() -> bool:
                doc = await live[CASE_FACTS].find_one({"_id": "C-legacy"})
                return doc is not None and doc.get(CLOSED_S) == (T0 + DAY_).timestamp()

            await eventually(dated, timeout=30, interval=0.2)
            await eventually(lambda: rt.ledger.seen(["repaired:case-facts-moments"]), timeout=10)
    finally:
        await live.close()
